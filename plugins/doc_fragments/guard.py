# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Written by scripts/gen_option_docs.py from the GUARD group of plugins/module_utils/_options.py:
# change the group there and run the script, never this file.

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):

    # Which stuck execs a node check may drain.
    DOCUMENTATION = r'''
options:
  drain:
    description:
      - With O(mode=remediate), whether drains may happen at all. V(false) reports every stuck exec as skipped.
    type: bool
    default: true
  max_drains:
    description:
      - At most this many stuck execs are drained on the node in one run (oldest first).
      - Between 0 and 1000.
    type: int
    default: 5
  require_guard:
    description:
      - When drains must wait for the eviction guard's verdict in O(guard). V(auto) on Kubernetes nodes (a C(kubelet),
        C(k3s-agent), C(k3s-server) or C(kubelite) process runs in the host's mount namespace, or a kubelet's files
        such as C(/var/lib/kubelet) are on the host; a node that cannot be told is one), V(always), or V(never).
    type: str
    choices:
      - auto
      - always
      - never
    default: auto
  guard:
    description:
      - The eviction guard's verdict (the C(hangdoctor.runtime.kube_guard) filter's output). A verdict with C(blocked=true)
        drains nothing and gives its reason for every stuck exec.
    type: dict
'''
