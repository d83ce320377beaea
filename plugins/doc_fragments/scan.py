# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Written by scripts/gen_option_docs.py from the SCAN group of plugins/module_utils/_options.py:
# change the group there and run the script, never this file.

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):

    # Options of the modules that diagnose stuck execs.
    DOCUMENTATION = r'''
options:
  container_ids:
    description:
      - Report only stuck execs in these containers (full 64-hex ids or unique prefixes).
      - The container is taken from the C(runc exec) argv (its last argument), never from shim v2's C(-id), which
        is the pod sandbox under Kubernetes CRI.
      - Empty means every container.
    type: list
    elements: str
    default: []
  min_age_seconds:
    description:
      - A stuck exec whose blocked writer is younger than this is returned in RV(suspects) instead of RV(stuck_execs).
      - Between 0 and 2592000.
    type: float
    default: 0
  kernel_log:
    description:
      - Read the kernel log (C(/dev/kmsg), non-blocking and bounded) for OOM-kill lines that name each stuck exec's
        container.
    type: bool
    default: true
  cmdline_timeout:
    description:
      - Deadline in seconds for reading the argv of one shim, C(runc exec) or dockerd.
      - Greater than 0 and at most 60.
    type: float
    default: 1.0
  scan_method:
    description:
      - How the scan finds stuck execs.
      - 'V(auto) first asks the containerd shims found from the runtime state folders (each running containerd,
        found by its socket, names its C(state) folder; shim v1 bundles hold C(shim.pid), shim v2 bundles C(init.pid))
        and measures the pipes they read: when every live shim is proven and none holds a full pipe, or bytes that
        do not move, the node has no stuck exec and no other process is read. Otherwise (a full pipe, a shim whose
        state folder is unknown, no containerd found) it falls back to the full scan.'
      - V(full) always reads every process (the reference; RV(scan_method) says which one ran).
      - Processes that only look like a stuck exec but whose pipe no shim reads are reported in RV(suspects) by
        the full scan only.
    type: str
    choices:
      - auto
      - full
    default: auto
'''
