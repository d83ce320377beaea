# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Written by scripts/gen_option_docs.py from the METRICS group of plugins/module_utils/_options.py:
# change the group there and run the script, never this file.

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):

    # The node's Prometheus textfile metrics.
    DOCUMENTATION = r'''
options:
  metrics_dir:
    description:
      - The node_exporter textfile-collector directory to write O(metrics_file) in. V(auto) uses the first existing
        one of C(/var/lib/node_exporter/textfile_collector), C(/var/lib/prometheus/node-exporter), C(/var/lib/node-exporter/textfile-collector),
        and writes nothing when none exists. An empty string turns metrics off. A directory given by path is created
        (mode 0755) when it does not exist.
      - V(auto) writes only in a directory that root (or the user the module runs as) owns, that is not a symlink,
        and that no other user may write in; otherwise C(metrics) of RV(ansible_facts.hangdoctor) says why nothing
        was written. A directory given by path is trusted as given.
      - The metrics file is written through a temporary file created exclusively without following a symlink, its
        mode set on its descriptor, and renamed in place.
    type: str
    default: auto
  metrics_file:
    description:
      - File name of the metrics in O(metrics_dir).
    type: str
    default: hangdoctor.prom
'''
