# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Written by scripts/gen_option_docs.py from the DRAIN group of plugins/module_utils/_options.py:
# change the group there and run the script, never this file.

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):

    # How the drain reads a stuck pipe.
    DOCUMENTATION = r'''
options:
  min_age_seconds:
    description:
      - Skip stuck execs whose writer started less than this many seconds ago (an exec that is merely slow).
      - Rounds after the first one (the same container deadlocking again) do not apply it.
      - Between 0 and 2592000.
    type: float
    default: 60
  timeout:
    description:
      - Seconds one drain may take before it gives up (or, with O(fallback=kill), kills the writer).
      - Greater than 0 and at most 3600.
    type: float
    default: 30
  fallback:
    description:
      - What to do with a writer still blocked at O(timeout).
      - V(none) leaves it and reports C(unblocked=false).
      - V(kill) re-checks its identity, sends it SIGKILL and reads what is left in the pipe (kept as evidence),
        because killing alone does not repair the hang (C(runc exec) then blocks writing its own error line). It
        kills only a writer still proven stuck at that moment (with reading paused, blocked in write(2) on the same
        pipe, without progress), through a pidfd where the kernel has one; else it says why in C(kill_note).
      - V(kill) is refused when O(proc_root) is not a procfs of the module's own pid namespace (for example the
        host's C(/proc) mounted in a pod without hostPID), where its pids would name other processes.
    type: str
    choices:
      - none
      - kill
    default: none
  max_rounds:
    description:
      - 'How many rounds of drains a container may get in one run: after each round the drained containers are diagnosed
        again, and one whose deadlock came back at once (the cause persists) is drained again.'
      - Between 1 and 100.
    type: int
    default: 3
'''

    # The same options as node_doctor names them (extends_documentation_fragment hangdoctor.runtime.drain.node_doctor).
    NODE_DOCTOR = r'''
options:
  drain_min_age_seconds:
    description:
      - Skip stuck execs whose writer started less than this many seconds ago (an exec that is merely slow).
      - Rounds after the first one (the same container deadlocking again) do not apply it.
      - Between 0 and 2592000.
    type: float
    default: 60
  drain_timeout:
    description:
      - Seconds one drain may take before it gives up (or, with O(fallback=kill), kills the writer).
      - Greater than 0 and at most 3600.
    type: float
    default: 30
  fallback:
    description:
      - What to do with a writer still blocked at O(drain_timeout).
      - V(none) leaves it and reports C(unblocked=false).
      - V(kill) re-checks its identity, sends it SIGKILL and reads what is left in the pipe (kept as evidence),
        because killing alone does not repair the hang (C(runc exec) then blocks writing its own error line). It
        kills only a writer still proven stuck at that moment (with reading paused, blocked in write(2) on the same
        pipe, without progress), through a pidfd where the kernel has one; else it says why in C(kill_note).
      - V(kill) is refused when O(proc_root) is not a procfs of the module's own pid namespace (for example the
        host's C(/proc) mounted in a pod without hostPID), where its pids would name other processes.
    type: str
    choices:
      - none
      - kill
    default: none
  max_rounds:
    description:
      - 'How many rounds of drains a container may get in one run: after each round the drained containers are diagnosed
        again, and one whose deadlock came back at once (the cause persists) is drained again.'
      - Between 1 and 100.
    type: int
    default: 3
'''
