# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side filters of the detect and remediate roles.

They turn module results into the per-host fact ``hangdoctor``, decide which
stuck execs a host may drain (age, cap, eviction guard), and aggregate all
hosts into the run report (JSON, Markdown), the bounded ``set_stats`` payload
and the Prometheus textfile.  Pure functions of their inputs, so every branch
is unit-tested without a node.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import calendar
import json
import re
import time

# How much of a crash dump a report shows per stuck exec: enough for the
# "pthread_create failed" line and the signal, not the goroutine dump.
PEEK_LINES = 8
PEEK_LINE_CHARS = 200
# AWX stores artifacts in its database and shows them in the UI: keep them small.
STATS_MAX_BYTES = 16384
MAX_LISTED = 50

# Advice per root cause, used when the module's cause carries no hint.
ADVICE = (
    ('pthread', 'runc init could not create a thread in the container cgroup (memory or pids limit reached): '
                'raise the container memory/pids limit or fix the leak, and replace the exec probe '
                '(hangdoctor.runtime.exec_probe_swap) so the next probe cannot deadlock again.'),
    ('oom', 'the OOM killer is killing runc init inside the container cgroup: raise the memory limit or fix '
            'the leak; until then every exec probe will deadlock again.'),
    ('pids', 'the container reached its pids limit: raise pids.max or find the process leak; replace the '
             'exec probe meanwhile.'),
    ('memory', 'the container memory cgroup is at its limit: raise the limit or fix the leak; replace the '
               'exec probe meanwhile.'),
)
DEFAULT_ADVICE = ('the deadlock returns while its root cause persists: read the evidence file, fix the cause '
                  'in the container, and replace the exec probe (hangdoctor.runtime.exec_probe_swap).')


def _now(now=None):
    return float(now) if now is not None else time.time()


def _iso(epoch):
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(float(epoch)))


def _get(d, *path):
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def _same_container(a, b):
    """Container ids appear full (64 hex) or short (12): compare by prefix."""
    if not a or not b:
        return False
    a, b = str(a), str(b)
    return a.startswith(b) or b.startswith(a)


def _peek_head(peek, lines=PEEK_LINES):
    if not peek:
        return []
    if isinstance(peek, bytes):
        peek = peek.decode('utf-8', 'replace')
    out = []
    for line in str(peek).splitlines():
        if not line.strip() and not out:
            continue
        out.append(line[:PEEK_LINE_CHARS])
        if len(out) >= lines:
            break
    return out


def advice_for(cause):
    """Advice for a cause dict ({kind, summary, hint}) or a kind string."""
    if isinstance(cause, dict):
        if cause.get('hint'):
            return cause['hint']
        text = ' '.join(str(cause.get(k) or '') for k in ('kind', 'summary')).lower()
    else:
        text = str(cause or '').lower()
    for key, advice in ADVICE:
        if key in text:
            return advice
    return DEFAULT_ADVICE


def _cause(rec):
    cause = rec.get('cause') if isinstance(rec, dict) else None
    if not isinstance(cause, dict):
        return {'kind': str(cause) if cause else 'unknown', 'summary': '', 'hint': ''}
    return {
        'kind': cause.get('kind') or 'unknown',
        'summary': cause.get('summary') or '',
        'hint': cause.get('hint') or '',
        'oom_kills': cause.get('oom_kills'),
    }


def _compact_exec(rec, names):
    """The parts of a stuck-exec record a person acts on (the full record,
    with readers and syscall args, stays in the module result)."""
    cid = rec.get('container_id') or ''
    init = rec.get('runc_init') or {}
    writer = rec.get('writer') or {}
    pod = rec.get('pod') or {}
    return {
        'container_id': cid,
        'container_name': names.get(cid) or _lookup_name(names, cid),
        'pod': '%s/%s' % (pod.get('namespace'), pod.get('name')) if pod.get('name') else None,
        'pod_container': pod.get('container'),
        'writer': writer.get('role') or ('runc_init' if init else 'runc_exec'),
        'writer_pid': writer.get('pid') or init.get('pid'),
        'runc_init_pid': init.get('pid'),
        'runc_exec_pid': _get(rec, 'runc_exec', 'pid'),
        'shim_pid': _get(rec, 'shim', 'pid'),
        'shim_version': _get(rec, 'shim', 'version'),
        'wchan': init.get('wchan'),
        'age_seconds': _round(rec.get('age_seconds', init.get('age_seconds'))),
        'pipe_queued': _get(rec, 'pipe', 'queued'),
        'pipe_capacity': _get(rec, 'pipe', 'capacity'),
        'cause': _cause(rec),
        'dump_head': _peek_head(rec.get('peek')),
    }


def _round(value):
    try:
        return round(float(value), 1)
    except (TypeError, ValueError):
        return value


def _lookup_name(names, cid):
    for known, name in names.items():
        if _same_container(known, cid):
            return name
    return None


def host_summary(exec_info, hung_info=None, host=None, now=None, engine_skipped=None):
    """Correlate runc_exec_info and hung_container_info of one host by container id.

    ``engine_skipped`` is the reason hung_container_info did not run (no Docker
    socket on this node), so the report can tell "not checked" from "answers".
    """
    exec_info = exec_info or {}
    hung_info = hung_info if isinstance(hung_info, dict) and hung_info.get('skipped') is not True else {}
    containers = hung_info.get('containers') or []
    names = dict((c.get('id'), c.get('name')) for c in containers if c.get('id'))
    by_id = dict((c.get('id'), c) for c in containers if c.get('id'))
    hung_ids = list(hung_info.get('hung') or [c['id'] for c in containers if c.get('id') and c.get('responsive') is False])
    stuck = [_compact_exec(r, names) for r in (exec_info.get('stuck_execs') or [])]
    suspects = []
    for r in exec_info.get('suspects') or []:
        s = _compact_exec(r, names)
        s['reason'] = r.get('reason')
        suspects.append(s)

    # One row per container that is hung, stuck, or both: the engine view and
    # the /proc view meet here.
    rows = []
    seen = []
    for cid in hung_ids + [s['container_id'] for s in stuck]:
        if not cid or any(_same_container(cid, x) for x in seen):
            continue
        seen.append(cid)
        info = by_id.get(cid) or next((c for k, c in by_id.items() if _same_container(k, cid)), {})
        mine = [s for s in stuck if _same_container(s['container_id'], cid)]
        pod = None
        if info.get('pod_name'):
            pod = '%s/%s' % (info.get('pod_namespace'), info.get('pod_name'))
        elif mine and mine[0]['pod']:
            pod = mine[0]['pod']
        rows.append({
            'container_id': info.get('id') or cid,
            'name': info.get('name') or (mine[0]['container_name'] if mine else None),
            'pod': pod,
            # None: the engine was not asked, or does not list this container
            # (a stuck exec of another daemon on the same node).
            'hung': (True if any(_same_container(cid, h) for h in hung_ids) else (False if info else None)) if hung_info else None,
            'latency_ms': info.get('latency_ms'),
            'error': info.get('error'),
            'stuck_execs': len(mine),
            'cause': mine[0]['cause']['kind'] if mine else None,
        })

    engine = dict(hung_info.get('engine') or {})
    if engine_skipped:
        engine = {'reachable': None, 'skipped': engine_skipped}
    return {
        'host': host,
        'checked_at': _now(now),
        'engine': engine,
        'hung': hung_ids,
        'containers': rows,
        'stuck_execs': stuck,
        'suspects': suspects,
        'scanned_processes': exec_info.get('scanned_processes'),
        'scan_seconds': exec_info.get('scan_seconds'),
        'drained': [],
        'skipped': [],
        'guard': None,
        'verify': None,
    }


def drain_plan(exec_info, min_age_seconds=60, max_drains=1, guard=None, allow=True):
    """Which stuck execs of this host the role hands to runc_pipe_drain.

    Returns {targets: [full stuck-exec records], skipped: [{container_id, reason}]}.
    Only confirmed stuck execs (not suspects) are candidates; the oldest go
    first because they have blocked the engine the longest.
    """
    records = list((exec_info or {}).get('stuck_execs') or [])
    targets, skipped = [], []
    blocked = isinstance(guard, dict) and guard.get('blocked')
    if blocked or not allow:
        reason = (guard or {}).get('reason') if blocked else 'drain disabled'
        for r in records:
            skipped.append({'container_id': r.get('container_id'), 'reason': reason, 'by': 'role'})
        return {'targets': [], 'skipped': skipped}

    def age(r):
        a = r.get('age_seconds')
        if a is None:
            a = _get(r, 'runc_init', 'age_seconds')
        try:
            return float(a)
        except (TypeError, ValueError):
            return None

    records.sort(key=lambda r: -(age(r) or 0))
    limit = int(max_drains) if max_drains is not None else len(records)
    for r in records:
        a = age(r)
        if a is not None and a < float(min_age_seconds):
            skipped.append({'container_id': r.get('container_id'), 'by': 'role',
                            'reason': 'younger than min_age_seconds (%.0fs < %ss)' % (a, min_age_seconds)})
        elif limit >= 0 and len(targets) >= limit:
            skipped.append({'container_id': r.get('container_id'), 'by': 'role',
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
    now = _now(now)
    verdict = {'enabled': True, 'ran': False, 'node': node_name, 'ready': None,
               'not_ready_seconds': None, 'pending_deletions': [], 'pending_count': 0,
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
        verdict['reason'] = 'node %s not found in the cluster' % node_name
    else:
        for cond in _get(nodes[0], 'status', 'conditions') or []:
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
    elif verdict['reason'] is None:
        verdict['reason'] = 'no pending pod deletions on %s' % node_name
    return verdict


def remediation(summary, drain=None, plan=None, guard=None, verify_exec=None, verify_hung=None):
    """Fold the drain, the role's own skips, the guard and the verification
    into a host summary (a new dict)."""
    out = dict(summary or {})
    # A skipped task's register carries skipped: true; the module's own 'skipped' is a list.
    drain = drain if isinstance(drain, dict) and drain.get('skipped') is not True else {}
    drained = []
    hints = dict((r.get('container_id'), r) for r in drain.get('recurring') or [] if isinstance(r, dict))
    would = [dict(w, check_mode=True) for w in drain.get('would_drain') or []]
    for d in list(drain.get('drained') or []) + would:
        item = dict((k, d.get(k)) for k in ('container_id', 'pid', 'writer', 'bytes', 'sha256', 'evidence_path',
                                            'evidence_truncated', 'unblocked', 'verified', 'verify_reason', 'stop',
                                            'killed', 'seconds', 'recurring'))
        item['container_id'] = item['container_id'] or ''
        if d.get('check_mode'):
            item['bytes'] = d.get('queued')
        item['rounds'] = max(int(d.get('round') or d.get('rounds') or 1), int((hints.get(d.get('container_id')) or {}).get('rounds') or 0))
        if d.get('container_id') in hints:
            item['recurring'] = True
            item['hint'] = hints[d.get('container_id')].get('hint')
        item['cause'] = _cause(d)
        item['check_mode'] = bool(d.get('check_mode'))
        drained.append(item)
    skipped = list((plan or {}).get('skipped') or [])
    # runc_pipe_drain returns its skips as skipped_execs (a non-empty
    # 'skipped' would make Ansible report the whole task as skipped).
    for s in drain.get('skipped_execs') or []:
        reason = s.get('reason') or 'skipped'
        if s.get('detail'):
            reason = '%s (%s)' % (reason, s['detail'])
        skipped.append({'container_id': s.get('container_id'), 'reason': reason, 'by': 'runc_pipe_drain'})
    out['drained'] = drained
    out['skipped'] = skipped
    out['guard'] = guard if isinstance(guard, dict) and guard.get('enabled') else None
    if verify_exec is not None or verify_hung is not None:
        drained_ids = [d['container_id'] for d in drained]
        still_stuck = [r.get('container_id') for r in (verify_exec or {}).get('stuck_execs') or []
                       if any(_same_container(r.get('container_id'), c) for c in drained_ids)]
        still_hung = [c for c in (verify_hung or {}).get('hung') or []
                      if any(_same_container(c, x) for x in drained_ids)]
        out['verify'] = {'still_stuck': still_stuck, 'still_hung': still_hung,
                         'ok': not still_stuck and not still_hung}
        # A drained container that is stuck again at verification recurs even
        # when the module saw a single round.
        for d in drained:
            if any(_same_container(d['container_id'], c) for c in still_stuck):
                d['recurring'] = True
    return out


def host_line(summary):
    """One line per host for the play output: what is stuck, drained, skipped."""
    s = summary or {}
    parts = ['%d hung container(s), %d stuck exec(s)' % (len(s.get('hung') or []), len(s.get('stuck_execs') or []))]
    for x in s.get('stuck_execs') or []:
        parts.append('%s%s: %s pid %s stuck %ss, cause %s%s' % (
            x.get('container_name') or (x.get('container_id') or '')[:12],
            ' (pod %s)' % x['pod'] if x.get('pod') else '', x.get('writer'), x.get('writer_pid'),
            x.get('age_seconds'), x['cause']['kind'], ', dump: %s' % x['dump_head'][0] if x.get('dump_head') else ''))
    for d in s.get('drained') or []:
        if d.get('check_mode'):
            parts.append('would drain %s (%s bytes queued)' % (d['container_id'][:12], d.get('bytes')))
        else:
            parts.append('drained %s (%s bytes, unblocked %s, verified %s, evidence %s)' % (
                d['container_id'][:12], d.get('bytes'), d.get('unblocked'), d.get('verified'), d.get('evidence_path')))
    for k in s.get('skipped') or []:
        parts.append('skipped %s: %s' % ((k.get('container_id') or '-')[:12], k.get('reason')))
    if (s.get('guard') or {}).get('reason'):
        parts.append(s['guard']['reason'] if s['guard']['reason'].startswith('eviction guard') else 'eviction guard: %s' % s['guard']['reason'])
    return '; '.join(parts)


def _recurring(host, summary):
    """One row per container whose deadlock came back (several drain rounds
    of one container collapse into one row)."""
    out = {}
    for d in summary.get('drained') or []:
        rounds = d.get('rounds') or 0
        if d.get('recurring') or (isinstance(rounds, int) and rounds > 1):
            cid = d['container_id']
            if cid in out:
                out[cid]['rounds'] = max(out[cid]['rounds'], rounds)
                continue
            row = next((c for c in summary.get('containers') or [] if _same_container(c['container_id'], cid)), {})
            out[cid] = {'host': host, 'container_id': cid, 'name': row.get('name'), 'pod': row.get('pod'),
                        'cause': d['cause']['kind'], 'rounds': rounds,
                        'advice': d.get('hint') or advice_for(d['cause'])}
    return [out[k] for k in sorted(out)]


def fleet_report(summaries, hosts=None, mode='detect', check_mode=False, now=None):
    """One report over all hosts.  ``summaries`` is a list of host facts (or a
    dict host -> fact); ``hosts`` lists every host of the play so the ones
    that left no fact (unreachable, failed) are named."""
    if hosts is not None and not isinstance(summaries, (list, tuple, dict)) and hasattr(summaries, '__getitem__'):
        # hostvars: with serial batches the hosts of later batches have no
        # fact yet, and reading a missing key of their vars raises.
        found = []
        for h in hosts:
            try:
                found.append(summaries[h]['hangdoctor'])
            except Exception:  # pylint: disable=broad-except
                continue
        summaries = found
    if isinstance(summaries, dict):
        summaries = [dict(v, host=v.get('host') or k) for k, v in summaries.items() if isinstance(v, dict)]
    summaries = [s for s in (summaries or []) if isinstance(s, dict) and s.get('host')]
    have = set(s['host'] for s in summaries)
    recurring = []
    for s in summaries:
        recurring.extend(_recurring(s['host'], s))
    totals = {
        'hosts': len(hosts) if hosts is not None else len(summaries),
        'hosts_reported': len(summaries),
        'hosts_with_stuck_execs': sum(1 for s in summaries if s.get('stuck_execs')),
        'hung_containers': sum(len(s.get('hung') or []) for s in summaries),
        'stuck_execs': sum(len(s.get('stuck_execs') or []) for s in summaries),
        'suspects': sum(len(s.get('suspects') or []) for s in summaries),
        'drained': sum(len([d for d in s.get('drained') or [] if not d.get('check_mode')]) for s in summaries),
        'would_drain': sum(len([d for d in s.get('drained') or [] if d.get('check_mode')]) for s in summaries),
        'drained_bytes': sum(int(d.get('bytes') or 0) for s in summaries for d in s.get('drained') or []),
        'skipped': sum(len(s.get('skipped') or []) for s in summaries),
        'guard_blocked_hosts': sum(1 for s in summaries if (s.get('guard') or {}).get('blocked')),
        'verify_failed_hosts': sum(1 for s in summaries if s.get('verify') and not s['verify'].get('ok')),
        'recurring': len(recurring),
    }

    def weight(s):
        return (-len(s.get('stuck_execs') or []) - len(s.get('hung') or []) - len(s.get('skipped') or []), s['host'])

    return {
        'generated_at': _iso(_now(now)),
        'mode': mode,
        'check_mode': bool(check_mode),
        'totals': totals,
        'recurring': recurring,
        'missing_hosts': sorted(h for h in (hosts or []) if h not in have),
        'hosts': sorted(summaries, key=weight),
    }


def _md_escape(text):
    return str(text if text is not None else '-').replace('|', '\\|').replace('\n', ' ')


def report_markdown(report):
    """The run report for people: recurring deadlocks first, then each host
    with something to say, then the quiet ones in one line."""
    t = report.get('totals') or {}
    lines = ['# hangdoctor %s report' % report.get('mode', ''), '',
             '%s%s; %d host(s), %d reported. Hung containers: %d. Stuck execs: %d. Drained: %d%s. Skipped: %d.' % (
                 report.get('generated_at'), ' (check mode: nothing changed)' if report.get('check_mode') else '',
                 t.get('hosts', 0), t.get('hosts_reported', 0), t.get('hung_containers', 0), t.get('stuck_execs', 0),
                 t.get('drained', 0), ' (would drain %d)' % t['would_drain'] if t.get('would_drain') else '',
                 t.get('skipped', 0)), '']
    if report.get('recurring'):
        lines += ['## Recurring deadlocks: fix the root cause', '',
                  '| host | container | pod | cause | rounds | advice |', '|---|---|---|---|---|---|']
        for r in report['recurring']:
            lines.append('| %s | %s | %s | %s | %s | %s |' % tuple(_md_escape(x) for x in (
                r['host'], r.get('name') or r['container_id'][:12], r.get('pod'), r.get('cause'), r.get('rounds'), r.get('advice'))))
        lines.append('')
    if report.get('missing_hosts'):
        lines += ['Hosts without a result (unreachable or failed): %s' % ', '.join(report['missing_hosts']), '']
    quiet = []
    for s in report.get('hosts') or []:
        busy = s.get('stuck_execs') or s.get('hung') or s.get('drained') or s.get('skipped') or s.get('suspects') \
            or (s.get('guard') or {}).get('blocked') or (s.get('verify') and not s['verify'].get('ok'))
        if not busy:
            quiet.append(s['host'])
            continue
        lines += ['## %s' % s['host'], '']
        eng = s.get('engine') or {}
        if eng.get('skipped'):
            lines.append('- engine: not checked (%s)' % eng['skipped'])
        elif eng:
            version = ' (%s)' % eng['version'] if eng.get('version') else ''
            lines.append('- engine: %s%s' % ('reachable' if eng.get('reachable') else 'UNREACHABLE', version))
        if s.get('guard'):
            g = s['guard']
            lines.append('- eviction guard: %s' % _md_escape(g.get('reason')))
        if s.get('containers'):
            lines += ['', '| container | pod | inspect | stuck execs | cause |', '|---|---|---|---|---|']
            for c in s['containers']:
                state = {True: 'HANGS', False: 'answers', None: 'not checked' if not eng or eng.get('skipped') else 'not listed'}[c.get('hung')]
                lines.append('| %s | %s | %s | %s | %s |' % tuple(_md_escape(x) for x in (
                    c.get('name') or c['container_id'][:12], c.get('pod'), state, c.get('stuck_execs'), c.get('cause'))))
        for x in s.get('stuck_execs') or []:
            lines += ['', '### stuck exec in %s' % (x.get('container_name') or x['container_id'][:12]), '',
                      '- %s pid %s, age %ss, wchan %s, pipe %s/%s bytes queued, shim %s pid %s' % (
                          x.get('writer'), x.get('writer_pid'), x.get('age_seconds'), x.get('wchan'),
                          x.get('pipe_queued'), x.get('pipe_capacity'), x.get('shim_version'), x.get('shim_pid')),
                      '- pod: %s' % (x.get('pod') or '-'),
                      '- cause: %s%s' % (x['cause']['kind'], ' - ' + x['cause']['summary'] if x['cause'].get('summary') else '')]
            if x.get('dump_head'):
                lines += ['', '```'] + [ln.replace('```', "'''") for ln in x['dump_head']] + ['```']
        if s.get('drained'):
            lines += ['', '| drained | bytes | unblocked | verified | evidence |', '|---|---|---|---|---|']
            for d in s['drained']:
                lines.append('| %s%s | %s | %s | %s | %s |' % tuple(_md_escape(x) for x in (
                    d['container_id'][:12], ' (check mode)' if d.get('check_mode') else '', d.get('bytes'),
                    d.get('unblocked'), d.get('verified'), d.get('evidence_path'))))
        for k in s.get('skipped') or []:
            lines.append('- skipped %s: %s' % ((k.get('container_id') or '-')[:12], k.get('reason')))
        if s.get('verify'):
            v = s['verify']
            if v.get('ok'):
                lines.append('- verification: every drained container answers and no exec is stuck')
            else:
                lines.append('- verification: still stuck %s, still hung %s' % (v.get('still_stuck'), v.get('still_hung')))
        if s.get('suspects'):
            lines.append('- %d suspect(s) not confirmed: %s' % (len(s['suspects']), ', '.join(
                '%s (%s)' % ((x['container_id'] or '-')[:12], x.get('reason')) for x in s['suspects'][:10])))
        lines.append('')
    if quiet:
        lines += ['## Hosts without stuck execs', '', ', '.join(sorted(quiet)), '']
    return '\n'.join(lines)


def stats(report, max_bytes=STATS_MAX_BYTES):
    """The ``set_stats`` payload: totals, recurring deadlocks and one line per
    affected host, cut to ``max_bytes`` of JSON."""
    hosts = []
    for s in report.get('hosts') or []:
        if s.get('stuck_execs') or s.get('hung') or s.get('drained') or s.get('skipped'):
            hosts.append({'host': s['host'], 'hung': len(s.get('hung') or []), 'stuck': len(s.get('stuck_execs') or []),
                          'drained': len(s.get('drained') or []), 'skipped': len(s.get('skipped') or [])})
    out = {'generated_at': report.get('generated_at'), 'mode': report.get('mode'), 'check_mode': report.get('check_mode'),
           'totals': report.get('totals'), 'recurring': list(report.get('recurring') or [])[:MAX_LISTED],
           'hosts': hosts[:MAX_LISTED * 4], 'missing_hosts': list(report.get('missing_hosts') or [])[:MAX_LISTED],
           'truncated': False}
    for key in ('hosts', 'missing_hosts', 'recurring'):
        while len(json.dumps(out)) > max_bytes and out[key]:
            out[key] = out[key][:len(out[key]) // 2]
            out['truncated'] = True
    return out


_METRIC_HELP = (
    ('hangdoctor_stuck_execs', 'gauge', 'Confirmed stuck execs (runc init or runc exec blocked on a full shim pipe).'),
    ('hangdoctor_suspect_execs', 'gauge', 'Possible stuck execs that were not confirmed.'),
    ('hangdoctor_hung_containers', 'gauge', 'Containers whose inspect did not answer within the deadline.'),
    ('hangdoctor_engine_reachable', 'gauge', 'Docker engine answered (1), did not (0); absent when not checked.'),
    ('hangdoctor_drained_total', 'counter', 'Stuck execs drained by hangdoctor on this node.'),
    ('hangdoctor_drained_bytes_total', 'counter', 'Bytes read from blocked pipes and kept as evidence.'),
    ('hangdoctor_recurring_total', 'counter', 'Drains of a container whose deadlock came back.'),
    ('hangdoctor_skipped_drains', 'gauge', 'Stuck execs the last run did not drain (guards).'),
    ('hangdoctor_guard_blocked', 'gauge', '1 when the eviction guard stopped the last drain on this node.'),
    ('hangdoctor_last_run_timestamp_seconds', 'gauge', 'When hangdoctor last checked this node.'),
)


def _previous_counters(text):
    out = {}
    for line in (text or '').splitlines():
        m = re.match(r'^(hangdoctor_[a-z_]+_total)\s+([0-9.eE+-]+)\s*$', line)
        if m:
            try:
                out[m.group(1)] = float(m.group(2))
            except ValueError:
                pass
    return out


def prometheus_textfile(summary, previous=None, now=None):
    """Textfile-collector content for one node.  Counters continue from the
    ``previous`` file's values, so a scrape sees them only grow."""
    summary = summary or {}
    prev = _previous_counters(previous)
    real = [d for d in summary.get('drained') or [] if not d.get('check_mode')]
    values = {
        'hangdoctor_stuck_execs': len(summary.get('stuck_execs') or []),
        'hangdoctor_suspect_execs': len(summary.get('suspects') or []),
        'hangdoctor_hung_containers': len(summary.get('hung') or []),
        'hangdoctor_drained_total': prev.get('hangdoctor_drained_total', 0) + len(real),
        'hangdoctor_drained_bytes_total': prev.get('hangdoctor_drained_bytes_total', 0) + sum(int(d.get('bytes') or 0) for d in real),
        'hangdoctor_recurring_total': prev.get('hangdoctor_recurring_total', 0) + sum(1 for d in real if d.get('recurring')),
        'hangdoctor_skipped_drains': len(summary.get('skipped') or []),
        'hangdoctor_guard_blocked': 1 if (summary.get('guard') or {}).get('blocked') else 0,
        'hangdoctor_last_run_timestamp_seconds': int(_now(now)),
    }
    reachable = (summary.get('engine') or {}).get('reachable')
    if reachable is not None:
        values['hangdoctor_engine_reachable'] = 1 if reachable else 0
    lines = []
    for name, kind, text in _METRIC_HELP:
        if name not in values:
            continue
        v = values[name]
        lines += ['# HELP %s %s' % (name, text), '# TYPE %s %s' % (name, kind),
                  '%s %s' % (name, int(v) if float(v).is_integer() else v)]
    return '\n'.join(lines) + '\n'


def module_available(name):
    """Whether the controller can resolve the module NAME.  A task naming a
    module that is not installed is a parse error that no rescue catches, so
    the guard asks first (kubernetes.core is optional)."""
    try:
        from ansible.plugins.loader import module_loader
        ctx = module_loader.find_plugin_with_context(str(name))
        return bool(ctx.resolved)
    except Exception:  # pylint: disable=broad-except
        return False


class FilterModule(object):
    def filters(self):
        return {
            'hangdoctor_host_summary': host_summary,
            'hangdoctor_drain_plan': drain_plan,
            'hangdoctor_kube_guard': kube_guard,
            'hangdoctor_remediation': remediation,
            'hangdoctor_fleet_report': fleet_report,
            'hangdoctor_report_markdown': report_markdown,
            'hangdoctor_stats': stats,
            'hangdoctor_prometheus': prometheus_textfile,
            'hangdoctor_advice': advice_for,
            'hangdoctor_host_line': host_line,
            'hangdoctor_module_available': module_available,
        }
