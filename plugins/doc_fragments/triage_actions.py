# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Written by scripts/gen_option_docs.py from the TRIAGE_ACTIONS group of plugins/module_utils/_options.py:
# change the group there and run the script, never this file.

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):

    # The safe actions a node check may take on a diagnosed container (off by default).
    DOCUMENTATION = r'''
options:
  thaw:
    description:
      - With O(mode=remediate), thaw a container found in C(frozen_cgroup) (write C(THAWED) to its C(freezer.state),
        or C(0) to C(cgroup.freeze)). Only when the engine answered for the container and does not report it paused;
        never in check mode.
    type: bool
    default: false
  reap_stale_execs:
    description:
      - 'With O(mode=remediate), kill (SIGKILL) the stale exec processes of a container found in C(exec_pileup):
        children of its shim in its cgroup other than its init, older than O(stale_exec_min_age_seconds). Never
        the shim, the engine, a runc process or the container''s own processes; identity re-checked right before;
        never in check mode.'
    type: bool
    default: false
'''
