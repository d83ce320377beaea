# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Did the drain repair the container (private module_utils): once a
container's last drain round is over, does the Docker Engine answer an
inspect of it again (the exec-store lock that hung it is free).

Target-side code: Python 3.6+ syntax and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _engine_api


def engine_check(docker_host, timeout):
    """A function (container id) -> (verified, reason): does
    ``GET /containers/<id>/json`` answer within TIMEOUT seconds.  ``None`` when
    it cannot be asked (no socket)."""
    def check(container_id):
        if not docker_host:
            return None, 'no docker_host given'
        if docker_host.startswith('unix://'):
            sock = docker_host[len('unix://'):]
            if not os.path.exists(sock):
                return None, 'docker socket %s not found' % sock
        # one request under one deadline; only an HTTP answer counts as answered
        return _engine_api.inspect_answers(docker_host, container_id, timeout)
    return check


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
            checked[cid] = engine(cid)
        entry['verified'], entry['verify_reason'] = checked[cid]
