# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Did the drain repair the container (private module_utils): once a
container's last drain round is over, does the engine that runs it answer for
it again (the exec-store lock that hung it is free).  The one check is
``_engines.container_check``; this file applies it to a drain's result.

Target-side code: Python 3.6+ syntax and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import HangdoctorError


def no_engine(container_id):
    return None, 'no Docker Engine check configured'


def not_yet(container_id):
    return None, 'checked after the last round'


def verify_containers(result, engine):
    """One Engine check per drained container, after its last round: a drain
    whose container deadlocked again at once has not repaired it."""
    recurring = set(r['container_id'] for r in result['recurring'])
    checked = {}
    for entry in result['drained']:
        if not entry['unblocked']:
            continue
        cid = entry['container_id']
        if cid in recurring:
            entry['verified'], entry['verify_reason'] = False, 'the container deadlocked again (see recurring)'
            continue
        if cid not in checked:
            try:
                checked[cid] = engine(cid)
            except HangdoctorError as e:
                # the drain happened: its result and evidence paths must reach the user
                checked[cid] = None, 'engine check failed: %s' % e
        entry['verified'], entry['verify_reason'] = checked[cid]
