# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Written by scripts/gen_option_docs.py from the ENGINE group of plugins/module_utils/_options.py:
# change the group there and run the script, never this file.

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):

    # Options of the modules that ask a container engine.
    DOCUMENTATION = r'''
options:
  docker_host:
    description:
      - Where the Docker daemon listens, as C(unix:///path/to/docker.sock), a bare absolute socket path, or C(tcp://host:port)
        / C(http://host:port) without TLS.
      - When the task does not set it, the E(DOCKER_HOST) environment variable of the target is used if set.
      - Set it once for a play with C(module_defaults) and C(group/hangdoctor.runtime.engine).
    type: str
    default: unix:///var/run/docker.sock
  inspect_timeout:
    description:
      - Seconds one Engine API request (a container's inspect, the version check, the list) may take in total, not
        per read. An inspect that gets no whole answer in that time marks the container as hung.
      - Greater than 0 and at most 600.
    type: float
    default: 5.0
'''
