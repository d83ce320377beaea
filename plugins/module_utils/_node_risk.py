# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One node's risk of the pipe deadlock, before it hangs (private module_utils).

Runs the checks (_pipe_risk, _headroom, _versions), sums them up as reasons,
renders the risk metrics and, when asked, raises ``fs.pipe-user-pages-soft``
(never lowering it).  Target-side code: Python 3.6+ syntax and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import glob
import json
import os
import re
import shutil
import time

from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import HangdoctorError
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _files
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _metrics
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _runtime_tree

SYSCTL_KEY = 'fs.pipe-user-pages-soft'
SYSCTL_DIRS = ('/etc/sysctl.d', '/run/sysctl.d', '/usr/local/lib/sysctl.d', '/usr/lib/sysctl.d', '/lib/sysctl.d')
REASONS = ('pipe_capacity', 'container_headroom', 'advisory')
MAX_SERIES = _metrics.MAX_SERIES_PER_METRIC

METRICS = (
    ('hangdoctor_node_at_risk', 'gauge', 'Whether the node is at risk of the pipe deadlock, by reason (1 at risk).'),
    ('hangdoctor_pipe_capacity_bytes', 'gauge',
     'Capacity of the next stderr pipe an engine\'s shim creates (probed with its credentials).'),
    ('hangdoctor_pipe_capacity_collapsed', 'gauge', 'Whether that capacity is below the default (1 collapsed).'),
    ('hangdoctor_pipe_user_pipes', 'gauge', 'Pipes held by the processes of the engine\'s user.'),
    ('hangdoctor_pipe_user_pages_soft', 'gauge', 'fs.pipe-user-pages-soft of the node (0 means no limit).'),
    ('hangdoctor_container_pids_headroom', 'gauge', 'Free pids in a container\'s pids cgroup (limited containers only).'),
    ('hangdoctor_containers_at_risk', 'gauge', 'Containers whose next runc init is likely to fail to create a thread.'),
    ('hangdoctor_advisory', 'gauge', 'A version advisory that matches a runtime component of the node (1).'),
    ('hangdoctor_risk_last_run_timestamp_seconds', 'gauge', 'When the node risk was last checked.'),
)


class NodeRiskError(HangdoctorError):
    """The risk check or the mitigation failed."""


def reasons(result):
    """{reason: [details]} of a node risk RESULT."""
    out = {}
    pipe = result.get('pipe') or {}
    for e in pipe.get('engines') or []:
        if e.get('collapsed'):
            out.setdefault('pipe_capacity', []).append('%s: %s bytes' % (e['engine'], e['capacity']))
    head = result.get('headroom') or {}
    for c in head.get('containers') or []:
        if c.get('at_risk'):
            out.setdefault('container_headroom', []).append('%s: %s' % (c.get('name') or c['container_id'][:12],
                                                                        ', '.join(c['risk_reasons'])))
    versions = result.get('versions') or {}
    for a in versions.get('advisories') or []:
        if a.get('severity') == 'warning':
            out.setdefault('advisory', []).append('%s %s: %s' % (a['component'], a['version'], a['id']))
    return out


def _labels(pairs):
    return ','.join('%s="%s"' % (k, _metrics.label_value(v)) for k, v in pairs)


def render_metrics(result, now=None):
    """The textfile content of the node risk RESULT."""
    rows = dict((name, []) for name, dummy, dummy2 in METRICS)
    found = reasons(result)
    for r in REASONS:
        rows['hangdoctor_node_at_risk'].append(('{%s}' % _labels([('reason', r)]), 1 if r in found else 0))
    pipe = result.get('pipe')
    if pipe:
        soft = (pipe.get('limits') or {}).get('soft_pages')
        if soft is not None:
            rows['hangdoctor_pipe_user_pages_soft'].append(('', soft))
        for e in (pipe.get('engines') or [])[:_metrics.MAX_ENGINES]:
            lab = '{%s}' % _labels([('engine', e['engine'])])
            if e.get('capacity') is not None:
                rows['hangdoctor_pipe_capacity_bytes'].append((lab, e['capacity']))
            if e.get('collapsed') is not None:
                rows['hangdoctor_pipe_capacity_collapsed'].append((lab, 1 if e['collapsed'] else 0))
            rows['hangdoctor_pipe_user_pipes'].append((lab, e.get('user_pipes') or 0))
    head = result.get('headroom')
    if head:
        rows['hangdoctor_containers_at_risk'].append(('', len(head.get('at_risk') or [])))
        limited = [c for c in head.get('containers') or [] if c.get('pids_headroom') is not None]
        for c in limited[:MAX_SERIES]:  # sorted by risk: the ones that matter are kept
            lab = '{%s}' % _labels([('namespace', c.get('pod_namespace') or ''), ('pod', c.get('pod_name') or ''),
                                    ('container', c.get('container_name') or c.get('name') or ''),
                                    ('container_id', c['container_id'][:12]),
                                    ('exec_probe', 'true' if c.get('exec_probe') else 'false')])
            rows['hangdoctor_container_pids_headroom'].append((lab, c['pids_headroom']))
    versions = result.get('versions')
    if versions:
        for a in versions.get('advisories') or []:
            lab = '{%s}' % _labels([('component', a['component']), ('version', a['version']), ('advisory', a['id']),
                                    ('severity', a.get('severity', 'warning'))])
            rows['hangdoctor_advisory'].append((lab, 1))
    rows['hangdoctor_risk_last_run_timestamp_seconds'].append(('', int(now if now is not None else time.time())))
    lines = []
    for name, kind, text in METRICS:
        if not rows[name]:
            continue
        lines += ['# HELP %s %s' % (name, text), '# TYPE %s %s' % (name, kind)]
        lines += ['%s%s %s' % (name, lab, v) for lab, v in sorted(set(rows[name]))]
    return '\n'.join(lines) + '\n'


def write_metrics(result, metrics_dir, metrics_file, now=None):
    """{'path', 'written', 'error', 'reason'}: the risk textfile, written as node_doctor writes its own."""
    path, create_dir, reason = _metrics.textfile_target(metrics_dir, metrics_file)
    if path is None:
        return {'path': None, 'written': False, 'error': None, 'reason': reason}
    try:
        _files.write_atomic(path, render_metrics(result, now).encode('utf-8'), 0o644, create_dir=create_dir,
                            durable=False, safe_dir=not create_dir)
    except _files.WriteError as e:
        return {'path': path, 'written': False, 'error': str(e), 'reason': None}
    return {'path': path, 'written': True, 'error': None, 'reason': None}


# ---- mitigation: raise fs.pipe-user-pages-soft, never lower it ---------------
_SYSCTL_LINE = re.compile(r'^\s*-?\s*fs[./]pipe-user-pages-soft\s*=\s*(\d+)\s*$')


def sysctl_settings(dirs=SYSCTL_DIRS, conf='/etc/sysctl.conf'):
    """[(path, value)] of every sysctl configuration file that sets the key,
    in the order systemd-sysctl applies them (by file name; a name in an
    earlier directory hides the same name in later ones), /etc/sysctl.conf last."""
    by_name = {}
    for d in dirs:
        for path in glob.glob(os.path.join(d, '*.conf')):
            by_name.setdefault(os.path.basename(path), path)
    paths = [by_name[n] for n in sorted(by_name)] + ([conf] if conf and os.path.isfile(conf) else [])
    out = []
    for path in paths:
        try:
            text = _files.read_small(path, 256 * 1024)
        except _files.WriteError:
            continue
        for line in text.splitlines():
            m = _SYSCTL_LINE.match(line)
            if m:
                out.append((path, int(m.group(1))))
    return out


def mitigation(result, opts, proc_root='/proc', check_mode=False):
    """Raise the soft limit when an engine's capacity collapsed.  OPTS: the
    RISK option object.  Returns {'changed', 'action', 'reason', 'before',
    'after', 'file', 'backup', 'overridden_by', 'diff'}."""
    live_path = os.path.join(proc_root, 'sys', 'fs', 'pipe-user-pages-soft')
    out = {'changed': False, 'action': 'none', 'reason': None, 'before': None, 'after': None,
           'file': opts.sysctl_file, 'backup': None, 'overridden_by': [], 'diff': None}
    collapsed = [e['engine'] for e in (result.get('pipe') or {}).get('engines') or [] if e.get('collapsed')]
    try:
        with open(live_path) as f:
            current = int(f.read().strip())
    except (IOError, OSError, ValueError) as e:
        raise NodeRiskError('cannot read %s: %s' % (live_path, getattr(e, 'strerror', None) or e))
    out['before'] = out['after'] = current
    if not collapsed:
        out['reason'] = 'no engine\'s pipe capacity has collapsed'
        return out
    if current == 0:
        out['reason'] = '%s is 0 (no limit): nothing to raise' % SYSCTL_KEY
        return out
    target = opts.pipe_user_pages_soft
    if current >= target:
        out['reason'] = ('%s is %d, not below %d: capacity collapsed for %s because that user holds that many pipe '
                         'pages (leaked pipes?); it is never lowered and not raised past the configured value'
                         % (SYSCTL_KEY, current, target, ', '.join(collapsed)))
        return out
    old_text = _files.read_small(opts.sysctl_file, 256 * 1024) if os.path.exists(opts.sysctl_file) else ''
    new_text = ('# Written by hangdoctor.runtime.node_risk: the engine\'s new pipes were cut to one or two pages\n'
                '# (%s). Raised from %d; never lowered by hangdoctor.\n%s = %d\n'
                % (', '.join(collapsed), current, SYSCTL_KEY, target))
    out.update(changed=True, action='raise', after=target,
               reason='pipe capacity collapsed for %s' % ', '.join(collapsed),
               diff=[{'before_header': live_path, 'after_header': live_path,
                      'before': '%s = %d\n' % (SYSCTL_KEY, current), 'after': '%s = %d\n' % (SYSCTL_KEY, target)},
                     {'before_header': opts.sysctl_file, 'after_header': opts.sysctl_file,
                      'before': old_text, 'after': new_text}])
    mine = os.path.basename(opts.sysctl_file)
    out['overridden_by'] = [{'path': p, 'value': v} for p, v in sysctl_settings()
                            if p != opts.sysctl_file and v < target
                            and (os.path.basename(p) > mine or p == '/etc/sysctl.conf')]
    if check_mode:
        return out
    if old_text:
        out['backup'] = '%s.%s.bak' % (opts.sysctl_file, time.strftime('%Y%m%dT%H%M%SZ', time.gmtime()))
        shutil.copy2(opts.sysctl_file, out['backup'])
    try:
        _files.write_atomic(opts.sysctl_file, new_text.encode('utf-8'), 0o644, create_dir=True)
    except _files.WriteError as e:
        raise NodeRiskError('cannot persist %s in %s: %s' % (SYSCTL_KEY, opts.sysctl_file, e))
    try:
        with open(live_path, 'w') as f:
            f.write('%d\n' % target)
    except (IOError, OSError) as e:
        raise NodeRiskError('persisted %s in %s but could not set it now: %s'
                            % (SYSCTL_KEY, opts.sysctl_file, e.strerror or e))
    return out


def host_fact(result, now=None):
    """The compact verdict the roles aggregate on the controller (host fact ``hangdoctor_node_risk``)."""
    pipe = result.get('pipe') or {}
    head = result.get('headroom') or {}
    versions = result.get('versions') or {}
    return {
        'at_risk': list(result.get('at_risk') or []),
        'reasons': dict((k, v[:10]) for k, v in (result.get('reasons') or {}).items()),
        'pipe_capacity': dict((e['engine'], e.get('capacity')) for e in pipe.get('engines') or []),
        'containers_at_risk': len(head.get('at_risk') or []),
        'advisories': sorted(set(a['id'] for a in versions.get('advisories') or [] if a.get('severity') == 'warning')),
        'checked_at': int(now if now is not None else time.time()),
    }


def load_state(path):
    """The previous run's state ({'memory_events': {cid: counters}}), or {}."""
    if not path:
        return {}
    try:
        text = _files.read_small(path)
    except _files.WriteError:
        return {}
    try:
        state = json.loads(text) if text else {}
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}


def save_state(path, headroom, check_mode=False):
    """Keep the running containers' memory event counters for the next run
    (0600; nothing in check mode).  Returns {'path', 'written', 'error'}."""
    if not path:
        return {'path': None, 'written': False, 'error': None}
    if check_mode:
        return {'path': path, 'written': False, 'error': None}
    events = dict((c['container_id'], c.get('memory_events') or {}) for c in headroom.get('containers') or [])
    try:
        _files.write_atomic(path, json.dumps({'memory_events': events}, sort_keys=True).encode('utf-8'), 0o600,
                            create_dir=True, durable=False)
    except _files.WriteError as e:
        return {'path': path, 'written': False, 'error': str(e)}
    return {'path': path, 'written': True, 'error': None}


def run(proc, opts, cgroup_root='/sys/fs/cgroup', check_mode=False):
    """The module's result (without metrics and mitigation): 'pipe', 'headroom',
    'versions' (None when not checked), 'reasons', 'at_risk', 'seconds'."""
    t0 = time.monotonic()
    # one /proc walk for both process checks; the versions need none
    table = _runtime_tree.ProcessTable.snapshot(proc) if set(opts.risk_checks) & set(['pipe', 'headroom']) else None
    result = {'pipe': None, 'headroom': None, 'versions': None}
    if 'pipe' in opts.risk_checks:
        from ansible_collections.hangdoctor.runtime.plugins.module_utils import _pipe_risk
        result['pipe'] = _pipe_risk.assess(proc, table, {'probe_timeout': opts.pipe_probe_timeout})
    if 'headroom' in opts.risk_checks:
        from ansible_collections.hangdoctor.runtime.plugins.module_utils import _headroom
        state = load_state(opts.risk_state_file)
        result['headroom'] = _headroom.assess(proc, table, {
            'cgroup_root': cgroup_root, 'pids_min': opts.pids_min_headroom,
            'memory_min_ratio': opts.memory_min_headroom_ratio,
            'exec_probe_containers': opts.exec_probe_containers, 'previous_events': state.get('memory_events')})
        result['headroom']['state'] = save_state(opts.risk_state_file, result['headroom'], check_mode)
    if 'versions' in opts.risk_checks:
        from ansible_collections.hangdoctor.runtime.plugins.module_utils import _versions
        result['versions'] = _versions.assess(proc, {'timeout': opts.version_timeout, 'cache_path': opts.version_cache,
                                                     'check_mode': check_mode})
    found = reasons(result)
    result['reasons'] = found
    result['at_risk'] = sorted(r for r in found if r in ('pipe_capacity', 'container_headroom', 'advisory'))
    result['seconds'] = round(time.monotonic() - t0, 3)
    return result
