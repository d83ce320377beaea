# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Written by scripts/gen_option_docs.py from the TRIAGE group of plugins/module_utils/_options.py:
# change the group there and run the script, never this file.

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):

    # Naming the cause of a hung container and its safe actions.
    DOCUMENTATION = r'''
options:
  triage:
    description:
      - Name the cause of every container that does not answer, has a stuck exec, or has a process in an unusual
        state (D, a stopped shim, a runc init that was never started), with its wait chain and evidence (C(diagnosis)
        of each container). A node without such a container costs nothing extra.
    type: bool
    default: true
  stale_exec_min_age_seconds:
    description:
      - An exec process older than this counts as stale for C(exec_pileup).
      - Between 0 and 2592000.
    type: float
    default: 300
  pileup_min_count:
    description:
      - At least this many stale exec processes in one container make C(exec_pileup).
      - Between 1 and 100000.
    type: int
    default: 3
  shim_probe_timeout:
    description:
      - 'Seconds the shim of a diagnosed container (only those: never on a healthy node) has to answer one read-only
        call to its own task API (C(Connect) for a v2 shim, C(ShimInfo) for a v1 shim, over the ttrpc socket the
        shim listens on). A running shim without a runc child (no runtime call in flight, which would explain its
        silence) that does not answer in time is C(shim_unresponsive) (deadlocked), with the socket, the call, the
        time waited and its threads'' states as evidence.'
      - One call per shim and run. V(0) turns the probe off (a stopped shim is still named from its state).
      - Between 0 and 60.
    type: float
    default: 2.0
'''
