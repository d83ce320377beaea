# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Written by scripts/gen_option_docs.py from the CONTAINERD group of plugins/module_utils/_options.py:
# change the group there and run the script, never this file.

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):

    # Options of the modules that also ask containerd's pod shims.
    DOCUMENTATION = r'''
options:
  containerd_address:
    description:
      - containerd's gRPC socket, as a path or C(unix:///path). Only the shims of this containerd are asked.
      - When the task does not set it, the E(CONTAINERD_ADDRESS) environment variable of the target is used if set.
      - Set it once for a play with C(module_defaults) and C(group/hangdoctor.runtime.containerd).
    type: str
    default: /run/containerd/containerd.sock
  containerd_namespace:
    description:
      - containerd namespace of the containers. Kubernetes (CRI) uses V(k8s.io).
      - When the task does not set it, the E(CONTAINERD_NAMESPACE) environment variable of the target is used if
        set.
    type: str
    default: k8s.io
'''
