# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host summary (private module_utils): one dict per node that joins the
engine's view (which containers do not answer) and the /proc view (which
execs are stuck), then the drains, skips, guard and verification of a
remediation.  node_doctor publishes it as the host fact ``hangdoctor``; the
controller-side report filters read nothing else.

Target-side code: Python 3.6+ syntax and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
import time


# How much of a crash dump a summary shows per stuck exec: enough for the
# "pthread_create failed" line and the signal, not the goroutine dump.
PEEK_LINES = 8
PEEK_LINE_CHARS = 200


def _now(now=None):
    return float(now) if now is not None else time.time()


def iso_time(epoch=None):
    """UTC ISO 8601 of EPOCH (default: now)."""
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(_now(epoch)))


def same_container(a, b):
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
    """Advice for a cause dict ({kind, summary, hint}) or a cause kind: the
    hint the crash-dump classifier gave, else its table's text for the kind."""
    if isinstance(cause, dict):
        if cause.get('hint'):
            return cause['hint']
        kind = cause.get('kind')
    else:
        kind = cause
    # Imported here (as _policy below): a node with nothing stuck never needs them.
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _crash_dump
    return _crash_dump.HINTS.get(str(kind or 'unknown'), _crash_dump.HINTS['unknown'])


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
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _policy
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
        'runc_exec_pid': _policy.get_path(rec, 'runc_exec', 'pid'),
        'shim_pid': _policy.get_path(rec, 'shim', 'pid'),
        'shim_version': _policy.get_path(rec, 'shim', 'version'),
        'wchan': init.get('wchan'),
        'age_seconds': _round(rec.get('age_seconds', init.get('age_seconds'))),
        'pipe_queued': _policy.get_path(rec, 'pipe', 'queued'),
        'pipe_capacity': _policy.get_path(rec, 'pipe', 'capacity'),
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
        if same_container(known, cid):
            return name
    return None


def host_summary(exec_info, hung_info=None, host=None, now=None, engine_skipped=None):
    """Correlate the /proc scan (runc_exec_info's result) and the engine check
    (hung_container_info's result) of one host by container id.

    ``engine_skipped`` is the reason the engine was not asked (no Docker
    socket on this node), so the report can tell "not checked" from "answers".
    The engine check may name several engines (``engines``: docker,
    containerd); ``engine`` stays the first one that was checked.
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
        if not cid or any(same_container(cid, x) for x in seen):
            continue
        seen.append(cid)
        info = by_id.get(cid) or next((c for k, c in by_id.items() if same_container(k, cid)), {})
        mine = [s for s in stuck if same_container(s['container_id'], cid)]
        pod = None
        if info.get('pod_name'):
            pod = '%s/%s' % (info.get('pod_namespace'), info.get('pod_name'))
        elif mine and mine[0]['pod']:
            pod = mine[0]['pod']
        for x in mine:
            # the engine's pod labels name the pod when the bundle did not
            x['pod'] = x['pod'] or pod
        rows.append({
            'container_id': info.get('id') or cid,
            'name': info.get('name') or (mine[0]['container_name'] if mine else None),
            'pod': pod,
            # None: the engine was not asked, or does not list this container
            # (a stuck exec of another daemon on the same node).
            'hung': (True if any(same_container(cid, h) for h in hung_ids) else (False if info else None)) if hung_info else None,
            'latency_ms': info.get('latency_ms'),
            'error': info.get('error'),
            'stuck_execs': len(mine),
            'cause': mine[0]['cause']['kind'] if mine else None,
        })

    engines = [dict(e) for e in hung_info.get('engines') or [] if isinstance(e, dict)]
    engine = dict(hung_info.get('engine') or next((e for e in engines if e.get('checked')), {}))
    if engine_skipped:
        engine = {'reachable': None, 'skipped': engine_skipped}
    if not engines and engine:
        engines = [dict(engine, name=engine.get('name') or 'docker', checked=not engine_skipped)]
    return {
        'host': host,
        'checked_at': _now(now),
        'engine': engine,
        'engines': engines,
        'hung': hung_ids,
        'containers': rows,
        'stuck_execs': stuck,
        'suspects': suspects,
        'scanned_processes': exec_info.get('scanned_processes'),
        'scan_seconds': exec_info.get('scan_seconds'),
        # a scan cut short by its deadline proves nothing about what it did not examine
        'scan_partial': bool(exec_info.get('partial')),
        'scan_partial_reason': exec_info.get('partial_reason'),
        'drained': [],
        'skipped': [],
        'guard': None,
        'verify': None,
        'resolved': [],
    }


def container_row(cid, engine_report=None):
    """The summary row of a container that is neither hung nor stuck but
    whose processes the triage looked at (a frozen or D-state process under
    a container the engine answers for)."""
    info = next((c for c in (engine_report or {}).get('containers') or []
                 if isinstance(c, dict) and same_container(c.get('id'), cid)), {})
    return {
        'container_id': info.get('id') or cid,
        'name': info.get('name'),
        'pod': '%s/%s' % (info.get('pod_namespace'), info.get('pod_name')) if info.get('pod_name') else None,
        'hung': (info.get('responsive') is False) if info else None,
        'latency_ms': info.get('latency_ms'),
        'error': info.get('error'),
        'stuck_execs': 0,
        'cause': None,
    }


def remediation(summary, drain=None, plan=None, guard=None, verify_exec=None, verify_hung=None):
    """Fold the drain (runc_pipe_drain's result), the plan's own skips, the
    guard and the verification into a host summary (a new dict).

    Without ``verify_exec``/``verify_hung`` the verification comes from the
    drain itself: after its last round it looked at the drained containers
    again (``recurring``) and asked the engine about each (``verified``)."""
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
                       if any(same_container(r.get('container_id'), c) for c in drained_ids)]
        still_hung = [c for c in (verify_hung or {}).get('hung') or []
                      if any(same_container(c, x) for x in drained_ids)]
        out['verify'] = {'still_stuck': still_stuck, 'still_hung': still_hung,
                         'ok': not still_stuck and not still_hung}
        # A drained container that is stuck again at verification recurs even
        # when the module saw a single round.
        for d in drained:
            if any(same_container(d['container_id'], c) for c in still_stuck):
                d['recurring'] = True
    else:
        real = [d for d in drained if not d['check_mode']]
        if real:
            still_stuck = sorted(set(d['container_id'] for d in real if d.get('recurring')))
            still_hung = sorted(set(d['container_id'] for d in real
                                    if d.get('verified') is False and d['container_id'] not in still_stuck))
            out['verify'] = {'still_stuck': still_stuck, 'still_hung': still_hung,
                             'ok': not still_stuck and not still_hung}
    # What the drain repaired: unblocked, answering, not back.  The metrics
    # and the report count the node's state after the run, not before it.
    out['resolved'] = sorted(set(
        d['container_id'] for d in drained
        if not d['check_mode'] and d.get('unblocked') and d.get('verified') is not False and not d.get('recurring')))
    out['stuck_execs'] = [dict(x, resolved=any(same_container(x.get('container_id'), c) for c in out['resolved']))
                          for x in out.get('stuck_execs') or []]
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


# ---- the fleet by cause and by goroutine-stack fingerprint -------------------
_FP_HOLDER = re.compile(r'^[\w-]+: (\S+) waits for .+? held by (\S+)')
_FP_CALL = re.compile(r'^[\w-]+: (\S+) -> (.+)$')
_FP_WAIT = re.compile(r'^[\w-]+: (\S+) waits for (.+)$')


def fingerprint_phrase(fp):
    """The short words of a stack fingerprint for a fleet line:
    'dockerd: ContainerInspect waits for the container lock held by
    ContainerExecStart -> containerd Exec' -> 'ContainerInspect behind
    ContainerExecStart'."""
    fp = str(fp)
    m = _FP_HOLDER.match(fp)
    if m:
        return '%s behind %s' % (m.group(1), m.group(2))
    m = _FP_WAIT.match(fp)
    if m:
        return '%s waiting for %s' % (m.group(1), m.group(2))
    m = _FP_CALL.match(fp)
    if m:
        return '%s waiting on %s' % (m.group(1), m.group(2))
    return fp


def _is_lock_fp(fp):
    return ' waits for ' in str(fp)


def _row_causes(row):
    diag = row.get('diagnosis') if isinstance(row.get('diagnosis'), dict) else {}
    causes = [c for c in diag.get('causes') or [] if isinstance(c, str) and c]
    return causes


def _row_fingerprints(row, host_stacks):
    diag = row.get('diagnosis') if isinstance(row.get('diagnosis'), dict) else {}
    stacks = (diag.get('evidence') or {}).get('stacks') if isinstance(diag.get('evidence'), dict) else None
    stacks = stacks if isinstance(stacks, dict) else host_stacks
    return [str(f.get('fingerprint') if isinstance(f, dict) else f)
            for f in (stacks or {}).get('fingerprints') or [] if f]


def fleet_groups(summaries):
    """Hosts grouped by the causes of their hung containers and by the
    goroutine-stack fingerprints captured with them:
    ``{'by_cause': [{cause, hosts, containers}], 'by_fingerprint': [{cause,
    fingerprint, phrase, hosts, text}]}``, largest group first.  A lock
    fingerprint (a handler waits for a lock) goes with ``engine_lock``, any
    other with the container's other causes; without a named cause the
    fingerprint stands alone (cause None)."""
    by_cause = {}
    by_fp = {}
    for s in summaries or []:
        if not isinstance(s, dict) or not s.get('host'):
            continue
        host = s['host']
        host_stacks = s.get('stacks') if isinstance(s.get('stacks'), dict) else None
        for row in s.get('containers') or []:
            if not isinstance(row, dict):
                continue
            causes = _row_causes(row)
            for c in causes:
                entry = by_cause.setdefault(c, {'hosts': set(), 'containers': 0})
                entry['hosts'].add(host)
                entry['containers'] += 1
            for fp in _row_fingerprints(row, host_stacks):
                if _is_lock_fp(fp):
                    pair = ['engine_lock'] if 'engine_lock' in causes else causes[:1] or [None]
                else:
                    pair = [c for c in causes if c != 'engine_lock'] or (causes[:1] or [None])
                for c in pair:
                    by_fp.setdefault((c, fp), set()).add(host)
    causes_out = [{'cause': c, 'hosts': sorted(v['hosts']), 'containers': v['containers']}
                  for c, v in by_cause.items()]
    causes_out.sort(key=lambda g: (-len(g['hosts']), g['cause']))
    fps_out = []
    for (c, fp), hosts in by_fp.items():
        phrase = fingerprint_phrase(fp)
        what = '%s in %s' % (c, phrase) if c else phrase
        text = '%d node%s: %s' % (len(hosts), '' if len(hosts) == 1 else 's', what)
        fps_out.append({'cause': c, 'fingerprint': fp, 'phrase': phrase, 'hosts': sorted(hosts), 'text': text})
    fps_out.sort(key=lambda g: (-len(g['hosts']), g['cause'] or '', g['fingerprint']))
    return {'by_cause': causes_out, 'by_fingerprint': fps_out}
