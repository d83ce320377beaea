# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decisions (private module_utils): which stuck execs may be drained, and the
eviction guard's verdict.  Pure functions of their inputs, kept apart from the
code that reads the node and from the code that presents results, so that a
policy change is one edit here and one set of tests.

Target-side code (node_doctor plans its drains on the node) and controller
side (the kube_guard filter): Python 3.6+ syntax and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import calendar
import re
import time

MAX_LISTED = 50


def get_path(d, *path):
    """d[path[0]][path[1]]..., or None where a level is missing or not a dict."""
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def record_age(record):
    """Seconds a stuck-exec record's writer has been stuck, or None."""
    a = record.get('age_seconds') if isinstance(record, dict) else None
    if a is None:
        a = get_path(record, 'runc_init', 'age_seconds')
    if isinstance(a, bool):
        return None
    try:
        return float(a)
    except (TypeError, ValueError):
        return None


def too_young(age, min_age_seconds):
    """The minimum-age rule, one home for the scan, the drain and the plan:
    a reason string when AGE (seconds) is below MIN_AGE_SECONDS, else None.
    An unknown age is not too young: the writer's identity checks decide."""
    if not min_age_seconds or age is None:
        return None
    if age < float(min_age_seconds):
        return 'younger than min_age_seconds (%.1fs < %ss)' % (age, min_age_seconds)
    return None


def drain_plan(stuck_execs, min_age_seconds=60, max_drains=1, guard=None, allow=True):
    """Which stuck execs of one host are handed to the drain.

    Returns {targets: [full stuck-exec records], skipped: [{container_id, reason, by}]}.
    Only confirmed stuck execs (not suspects) are candidates; the oldest go
    first because they have blocked the engine the longest.  A blocking guard
    verdict or ``allow=False`` drains nothing and says why for each record.
    """
    records = [r for r in (stuck_execs or []) if isinstance(r, dict)]
    targets, skipped = [], []
    blocked = isinstance(guard, dict) and guard.get('blocked')
    if blocked or not allow:
        reason = (guard or {}).get('reason') if blocked else 'drain disabled'
        for r in records:
            skipped.append({'container_id': r.get('container_id'), 'reason': reason, 'by': 'policy'})
        return {'targets': [], 'skipped': skipped}

    records.sort(key=lambda r: -(record_age(r) or 0))
    limit = int(max_drains) if max_drains is not None else len(records)
    for r in records:
        young = too_young(record_age(r), min_age_seconds)
        if young:
            skipped.append({'container_id': r.get('container_id'), 'by': 'policy', 'reason': young})
        elif limit >= 0 and len(targets) >= limit:
            skipped.append({'container_id': r.get('container_id'), 'by': 'policy',
                            'reason': 'over the per-host drain limit (%s)' % limit})
        else:
            targets.append(r)
    return {'targets': targets, 'skipped': skipped}


def _parse_time(value):
    if not value:
        return None
    value = str(value).replace('Z', '+00:00')
    m = re.match(r'^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(?:\+00:00)?$', value)
    if not m:
        return None
    return calendar.timegm(time.strptime(m.group(1), '%Y-%m-%dT%H:%M:%S'))


def kube_guard(node_result, pods_result, node_name=None, allow_pending_deletions=False,
               fail_closed=True, now=None, error=None):
    """The eviction guard's verdict from two kubernetes.core.k8s_info results.

    Pods bound to the node that carry a deletionTimestamp are deletions the
    kubelet will carry out once the node answers again; draining then is how a
    stuck node recreated every pod on the host.
    """
    now = float(now) if now is not None else time.time()
    verdict = {'enabled': True, 'ran': False, 'node': node_name, 'ready': None,
               'not_ready_seconds': None, 'unschedulable': None, 'pending_deletions': [], 'pending_count': 0,
               'blocked': False, 'reason': None, 'error': None}
    failed = error or (node_result or {}).get('failed') or (pods_result or {}).get('failed')
    nodes = (node_result or {}).get('resources')
    if failed or nodes is None or (pods_result or {}).get('resources') is None:
        msg = error or (node_result or {}).get('msg') or (pods_result or {}).get('msg') or 'no answer from the Kubernetes API'
        verdict['error'] = str(msg)[:500]
        verdict['blocked'] = bool(fail_closed)
        verdict['reason'] = 'eviction guard could not run (%s)%s' % (
            verdict['error'][:200], '; drain skipped (hangdoctor_kube_guard_fail_closed)' if fail_closed else '; drained anyway')
        return verdict
    verdict['ran'] = True
    if not nodes:
        # The host is a Kubernetes node (a kubelet runs) but the API does not
        # know it by that name: its pods cannot be judged either.
        verdict['blocked'] = bool(fail_closed)
        verdict['reason'] = ('node %s not found in the cluster (set hangdoctor_kube_node_name to its name)%s' % (
            node_name, '; drain skipped (hangdoctor_kube_guard_fail_closed)' if fail_closed else '; drained anyway'))
        return verdict
    verdict['unschedulable'] = bool(get_path(nodes[0], 'spec', 'unschedulable'))
    for cond in get_path(nodes[0], 'status', 'conditions') or []:
        if cond.get('type') == 'Ready':
            verdict['ready'] = cond.get('status') == 'True'
            since = _parse_time(cond.get('lastTransitionTime'))
            if not verdict['ready'] and since is not None:
                verdict['not_ready_seconds'] = int(max(0, now - since))
    pending = []
    for pod in pods_result.get('resources') or []:
        meta = pod.get('metadata') or {}
        if meta.get('deletionTimestamp'):
            pending.append('%s/%s' % (meta.get('namespace'), meta.get('name')))
    verdict['pending_count'] = len(pending)
    verdict['pending_deletions'] = sorted(pending)[:MAX_LISTED]
    if pending and not allow_pending_deletions:
        verdict['blocked'] = True
        verdict['reason'] = ('%d pod(s) bound to %s carry a deletionTimestamp (node %s%s): draining would let the '
                             'kubelet carry them out; drain skipped (set hangdoctor_allow_pending_deletions to drain)' % (
                                 len(pending), node_name,
                                 'Ready' if verdict['ready'] else 'NotReady',
                                 ' for %ss' % verdict['not_ready_seconds'] if verdict['not_ready_seconds'] is not None else ''))
    elif pending:
        verdict['reason'] = '%d pending pod deletion(s) on %s, drained anyway (hangdoctor_allow_pending_deletions)' % (
            len(pending), node_name)
    else:
        verdict['reason'] = 'no pending pod deletions on %s' % node_name
    return verdict
