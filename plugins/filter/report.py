# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side filters that present a run: the fleet report over every
host's ``hangdoctor`` fact, its Markdown, the bounded ``set_stats`` payload,
the summary lines and the affected hosts.  They decide nothing: what is
drained is decided on the node (module_utils/_policy.py).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import re

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _summary
from ansible_collections.hangdoctor.runtime.plugins.filter.risk import risk_report, risk_lines

# AWX stores artifacts in its database and shows them in the UI: keep them small.
STATS_MAX_BYTES = 16384
MAX_LISTED = 50


def _busy(s):
    return bool(s.get('stuck_execs') or s.get('hung') or s.get('drained') or s.get('skipped')
                or (s.get('guard') or {}).get('blocked') or (s.get('verify') and not s['verify'].get('ok')))


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
            row = next((c for c in summary.get('containers') or [] if _summary.same_container(c['container_id'], cid)), {})
            out[cid] = {'host': host, 'container_id': cid, 'name': row.get('name'), 'pod': row.get('pod'),
                        'cause': d['cause']['kind'], 'rounds': rounds,
                        'advice': d.get('hint') or _summary.advice_for(d['cause'])}
    return [out[k] for k in sorted(out)]


def fleet_report(summaries, hosts=None, mode='detect', check_mode=False, now=None, pending=None):
    """One report over all hosts.  ``summaries`` is a list of host facts (or a
    dict host -> fact); ``hosts`` lists every host of the play so the ones
    that left no fact (unreachable, failed) are named; ``pending`` lists the
    hosts of later serial batches, not reached yet (not missing)."""
    if hosts is not None and not isinstance(summaries, (list, tuple, dict)) and hasattr(summaries, '__getitem__'):
        # hostvars: with serial batches the hosts of later batches have no
        # fact yet, and reading a missing key of their vars raises.
        found = []
        risk = risk_report(summaries, hosts)  # node_risk's facts, when the run checked the risk
        for h in hosts:
            try:
                # the inventory name, not the node's own host name
                found.append(dict(summaries[h]['hangdoctor'], host=h))
            except Exception:  # pylint: disable=broad-except
                continue
        summaries = found
    else:
        risk = None
    if isinstance(summaries, dict):
        summaries = [dict(v, host=v.get('host') or k) for k, v in summaries.items() if isinstance(v, dict)]
    summaries = [s for s in (summaries or []) if isinstance(s, dict) and s.get('host')]
    have = set(s['host'] for s in summaries)
    recurring = []
    for s in summaries:
        recurring.extend(_recurring(s['host'], s))
    waiting = set(pending or ()) - have
    pending_hosts = sorted(h for h in (hosts or []) if h in waiting)
    totals = {
        'hosts': len(hosts) if hosts is not None else len(summaries),
        'hosts_pending': len(pending_hosts),
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
        'generated_at': _summary.iso_time(now),
        'mode': mode,
        'check_mode': bool(check_mode),
        'totals': totals,
        'recurring': recurring,
        # hosts by cause and by goroutine-stack fingerprint ("37 nodes: engine_lock in ContainerInspect behind ...")
        'groups': _summary.fleet_groups(summaries),
        'missing_hosts': sorted(h for h in (hosts or []) if h not in have and h not in waiting),
        'pending_hosts': pending_hosts,
        'hosts': sorted(summaries, key=weight),
        # the hosts at risk only: the report of a large fleet stays small
        'risk': dict(risk, hosts=dict((h, f) for h, f in risk['hosts'].items() if f.get('at_risk')))
        if risk and risk['hosts_checked'] else None,
    }


# Backslash-escaped in every field: what could start a link, an autolink, an
# image, HTML, an entity, emphasis, a code span, a table cell or a heading.
_MD_SPECIAL = frozenset('\\`*_[]<>|!~&#@')


def _visible(text, keep=''):
    """TEXT with every character that is not printable (newlines, \\r, other
    controls, Unicode line separators) but those in KEEP written as its escape
    sequence, as repr() writes it: workload text never starts a new Markdown
    line."""
    return ''.join(c if c.isprintable() or c in keep else repr(c)[1:-1] for c in text)


def _md_escape(text):
    """One field of workload text, inline: printable, every Markdown special
    character escaped (also ``://`` and ``www.``, which GFM links without
    brackets)."""
    text = _visible('-' if text is None else str(text))
    text = ''.join('\\' + c if c in _MD_SPECIAL else c for c in text)
    return re.sub(r'(?i)(www)\.', r'\1\\.', text).replace('://', '\\://')


def _md_path(path):
    """A path a workload may have named: quoted as repr() quotes it, then escaped."""
    return _md_escape(repr(path) if isinstance(path, str) else path)


def _md_list(items):
    return ', '.join(_md_escape(x) for x in items)


def _md_fence(lines):
    """LINES as a fenced code block: the fence is longer than any run of
    backticks in them, so no line closes it; line breaks inside a line are
    written as escapes."""
    lines = [_visible(str(ln), keep='\t') for ln in lines]
    run = max([len(m) for ln in lines for m in re.findall('`+', ln)] + [2])
    fence = '`' * (run + 1)
    return [fence] + lines + [fence]


def _md_groups(groups):
    """The fleet by cause and by stack fingerprint, largest group first."""
    lines = []
    if groups.get('by_cause'):
        lines += ['## Causes across the fleet', '', '| cause | hosts | containers | host names |', '|---|---|---|---|']
        for g in groups['by_cause']:
            names = g['hosts'][:MAX_LISTED]
            lines.append('| %s | %d | %d | %s%s |' % (_md_escape(g['cause']), len(g['hosts']), g.get('containers', 0),
                                                      _md_list(names), ' ...' if len(g['hosts']) > len(names) else ''))
        lines.append('')
    if groups.get('by_fingerprint'):
        lines += ['## Goroutine-stack fingerprints across the fleet', '']
        for g in groups['by_fingerprint']:
            names = g['hosts'][:MAX_LISTED]
            lines.append('- %s (%s%s)' % (_md_escape(g['text']), _md_list(names),
                                          ' ...' if len(g['hosts']) > len(names) else ''))
            lines.append('  - %s' % _md_escape(g['fingerprint']))
        lines.append('')
    return lines


def report_markdown(report):
    """The run report for people: recurring deadlocks first, then each host
    with something to say, then the quiet ones in one line."""
    t = report.get('totals') or {}
    e = _md_escape
    lines = ['# hangdoctor %s report' % e(report.get('mode', '')), '',
             '%s%s; %d host(s), %d reported. Hung containers: %d. Stuck execs: %d. Drained: %d%s. Skipped: %d.' % (
                 e(report.get('generated_at')), ' (check mode: nothing changed)' if report.get('check_mode') else '',
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
    lines += _md_groups(report.get('groups') or {})
    if report.get('missing_hosts'):
        lines += ['Hosts without a result (unreachable or failed): %s' % _md_list(report['missing_hosts']), '']
    if report.get('pending_hosts'):
        lines += ['Hosts of later serial batches, not reached yet: %s' % _md_list(report['pending_hosts']), '']
    quiet = []
    for s in report.get('hosts') or []:
        busy = s.get('stuck_execs') or s.get('hung') or s.get('drained') or s.get('skipped') or s.get('suspects') \
            or (s.get('guard') or {}).get('blocked') or (s.get('verify') and not s['verify'].get('ok'))
        if not busy:
            quiet.append(s['host'])
            continue
        lines += ['## %s' % e(s['host']), '']
        eng = s.get('engine') or {}
        if eng.get('skipped'):
            lines.append('- engine: not checked (%s)' % e(eng['skipped']))
        elif eng:
            version = ' (%s)' % e(eng['version']) if eng.get('version') else ''
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
            cause = x.get('cause') or {}
            lines += ['', '### stuck exec in %s' % e(x.get('container_name') or (x.get('container_id') or '-')[:12]), '',
                      '- %s pid %s, age %ss, wchan %s, pipe %s/%s bytes queued, shim %s pid %s' % tuple(e(v) for v in (
                          x.get('writer'), x.get('writer_pid'), x.get('age_seconds'), x.get('wchan'),
                          x.get('pipe_queued'), x.get('pipe_capacity'), x.get('shim_version'), x.get('shim_pid'))),
                      '- pod: %s' % e(x.get('pod') or '-'),
                      '- cause: %s%s' % (e(cause.get('kind')), ' - ' + e(cause['summary']) if cause.get('summary') else '')]
            if x.get('dump_head'):
                lines += [''] + _md_fence(x['dump_head'])
        if s.get('drained'):
            lines += ['', '| drained | bytes | unblocked | verified | evidence |', '|---|---|---|---|---|']
            for d in s['drained']:
                lines.append('| %s%s | %s | %s | %s | %s |' % (tuple(_md_escape(x) for x in (
                    d['container_id'][:12], ' (check mode)' if d.get('check_mode') else '', d.get('bytes'),
                    d.get('unblocked'), d.get('verified'))) + (_md_path(d.get('evidence_path')),)))
        for k in s.get('skipped') or []:
            lines.append('- skipped %s: %s' % (e((k.get('container_id') or '-')[:12]), e(k.get('reason'))))
        if s.get('verify'):
            v = s['verify']
            if v.get('ok'):
                lines.append('- verification: every drained container answers and no exec is stuck')
            else:
                lines.append('- verification: still stuck %s, still hung %s' % (e(v.get('still_stuck')), e(v.get('still_hung'))))
        if s.get('suspects'):
            lines.append('- %d suspect(s) not confirmed: %s' % (len(s['suspects']), ', '.join(
                '%s (%s)' % (e((x.get('container_id') or '-')[:12]), e(x.get('reason'))) for x in s['suspects'][:10])))
        lines.append('')
    if quiet:
        lines += ['## Hosts without stuck execs', '', _md_list(sorted(quiet)), '']
    if report.get('risk'):
        lines += ['## Node risk (before it hangs)', ''] + ['- ' + e(x) for x in risk_lines(report['risk'])] + ['']
    return '\n'.join(lines)


def report_stats(report, max_bytes=STATS_MAX_BYTES):
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
           'groups': [g['text'] for g in ((report.get('groups') or {}).get('by_fingerprint') or [])][:MAX_LISTED],
           'causes': [{'cause': g['cause'], 'hosts': len(g['hosts'])}
                      for g in ((report.get('groups') or {}).get('by_cause') or [])][:MAX_LISTED],
           'truncated': False}
    for key in ('hosts', 'missing_hosts', 'recurring', 'groups'):
        while len(json.dumps(out)) > max_bytes and out[key]:
            out[key] = out[key][:len(out[key]) // 2]
            out['truncated'] = True
    return out


def affected_hosts(report):
    """Hosts with stuck execs (what a remediate job should be limited to)."""
    return sorted(s['host'] for s in (report or {}).get('hosts') or [] if s.get('stuck_execs'))


def report_lines(report, report_dir=''):
    """The play's closing output: one total line, then one line per host with
    something to say (the host's own summary line)."""
    t = (report or {}).get('totals') or {}
    lines = ['%s/%s host(s): %s hung container(s), %s stuck exec(s), %s drained, %s would be drained, '
             '%s skipped, %s recurring.' % (
                 t.get('hosts_reported', 0), t.get('hosts', 0), t.get('hung_containers', 0), t.get('stuck_execs', 0),
                 t.get('drained', 0), t.get('would_drain', 0), t.get('skipped', 0), t.get('recurring', 0))]
    groups = (report or {}).get('groups') or {}
    for g in groups.get('by_cause') or []:
        n, k = len(g['hosts']), g.get('containers', 0)
        lines.append('%d node%s: %s (%d container%s)' % (n, '' if n == 1 else 's', g['cause'], k, '' if k == 1 else 's'))
    for g in groups.get('by_fingerprint') or []:
        lines.append(g['text'])
    for s in (report or {}).get('hosts') or []:
        if _busy(s):
            lines.append('%s: %s' % (s['host'], _summary.host_line(s)))
    if report.get('missing_hosts'):
        lines.append('no result (unreachable or failed): %s' % ', '.join(report['missing_hosts']))
    if report.get('pending_hosts'):
        lines.append('%d host(s) in later serial batches, not reached yet' % len(report['pending_hosts']))
    if report.get('risk'):
        lines += risk_lines(report['risk'])
    if report_dir:
        lines.append('Report: %s/hangdoctor-%s.md' % (report_dir, report.get('mode')))
    return lines


class FilterModule(object):
    def filters(self):
        return {
            'fleet_report': fleet_report,
            'report_markdown': report_markdown,
            'report_stats': report_stats,
            'report_lines': report_lines,
            'affected_hosts': affected_hosts,
        }
