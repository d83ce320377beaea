# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus textfile-collector metrics of one node (private module_utils).

``render(summary)`` turns the host summary (the ``hangdoctor`` fact: hung
containers, stuck execs, drains, engines) into the text exposition format that
node_exporter's textfile collector reads.  Series that name a pod exist only
while its problem does: a run that finds nothing writes a file without them, so
an alert resolves by itself.  Counters (drains, evidence) continue from the
previous file.  ``find_textfile_dir()`` finds the collector's directory on a
node; ``textfile_target()`` resolves a writer's ``metrics_dir`` option.

Label values come from container labels and bundle annotations, which whoever
created the container controls: they are cut, stripped of control characters
and escaped, and the number of labelled series is capped, so a node with many
stuck containers cannot blow up Prometheus.

Target-side code: Python 3.6+ syntax and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import math
import os
import re
import time

from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import HangdoctorError

# The textfile directories that node_exporter packages, roles and guides use;
# the first one that exists on the node wins.
TEXTFILE_DIRS = (
    '/var/lib/node_exporter/textfile_collector',   # the most common convention in guides and charts
    '/var/lib/prometheus/node-exporter',           # Debian / Ubuntu prometheus-node-exporter
    '/var/lib/node-exporter/textfile-collector',   # seen in other guides and Helm values
    '/var/lib/node_exporter',                      # prometheus.prometheus node_exporter role default
)

# Bounds on what one node may publish (documented in docs/alerting.md).
MAX_SERIES_PER_METRIC = 50      # labelled series per metric name; the rest are counted
MAX_LABEL_CHARS = 128           # Kubernetes names fit (namespace 63, container 63, pod 253 is rare)
MAX_ENGINES = 8
MAX_PREVIOUS_BYTES = 1 << 20    # a previous file larger than this is not parsed
CAUSES = ('pthread_create_eagain', 'out_of_memory', 'go_runtime_abort', 'unknown',
          # the named causes of a hung container (_triage.CAUSE_IDS, docs/causes/)
          'pipe_full_init', 'frozen_cgroup', 'exec_fifo_wait', 'uninterruptible_io', 'stdio_stall',
          'shim_unresponsive', 'engine_lock', 'exec_pileup')

# The per-container stuck-exec series was named hangdoctor_stuck_exec, one
# letter from the node total hangdoctor_stuck_execs.  It is now
# hangdoctor_container_stuck_execs; the old name is still written, with the
# same series, until 1.0.0, so dashboards and alerts keep working while users
# move (changelog: deprecated_features).
DEPRECATED_STUCK_EXEC = 'hangdoctor_stuck_exec'

# name, type, help.  Order is the order in the file.
METRICS = (
    ('hangdoctor_stuck_execs', 'gauge',
     'Confirmed stuck execs on this node (runc init or runc exec blocked writing to a full shim pipe).'),
    ('hangdoctor_container_stuck_execs', 'gauge',
     'Confirmed stuck execs per container; the series exists only while the exec is stuck.'),
    (DEPRECATED_STUCK_EXEC, 'gauge',
     'Deprecated, removed in 1.0.0: the same series as hangdoctor_container_stuck_execs (read that one).'),
    ('hangdoctor_stuck_exec_age_seconds', 'gauge',
     'Age of the oldest stuck exec per container; the series exists only while the exec is stuck.'),
    ('hangdoctor_suspect_execs', 'gauge', 'Possible stuck execs that were not confirmed.'),
    ('hangdoctor_hung_containers', 'gauge', 'Containers whose inspect did not answer within the deadline.'),
    ('hangdoctor_hung_container', 'gauge',
     '1 per container whose inspect did not answer; the series exists only while it does not.'),
    ('hangdoctor_container_cause', 'gauge',
     '1 per container and named cause of its hang (docs/causes); the series exists while the cause holds.'),
    ('hangdoctor_recurring_drain', 'gauge',
     'Drain rounds of a container whose deadlock came back in the last run (root cause persists).'),
    ('hangdoctor_engine_present', 'gauge', 'The container engine socket exists on this node (1) or not (0).'),
    ('hangdoctor_engine_checked', 'gauge',
     'The last run asked this engine (1: its socket is there, answered or not) or did not (0: not on this node).'),
    ('hangdoctor_engine_reachable', 'gauge', 'The engine answered the last run (1); 0 when it did not or was not asked.'),
    ('hangdoctor_drained_total', 'counter', 'Stuck execs drained by hangdoctor on this node.'),
    ('hangdoctor_drained_bytes_total', 'counter', 'Bytes read from blocked pipes and kept as evidence.'),
    ('hangdoctor_evidence_files_total', 'counter', 'Evidence files written by drains on this node.'),
    ('hangdoctor_recurring_total', 'counter', 'Drains of a container whose deadlock came back.'),
    ('hangdoctor_skipped_drains', 'gauge', 'Stuck execs the last run did not drain (age, limits, guards).'),
    ('hangdoctor_guard_blocked', 'gauge', '1 when the eviction guard stopped the last drain on this node.'),
    ('hangdoctor_verify_failed', 'gauge', '1 when a drained container was still stuck or hung at verification.'),
    ('hangdoctor_series_dropped', 'gauge', 'Labelled series left out of this file by the per-metric cap.'),
    ('hangdoctor_scan_duration_seconds', 'gauge', 'How long the last /proc scan took.'),
    ('hangdoctor_scan_partial', 'gauge', '1 when the last /proc scan reached its deadline before it examined every '
     'possible stuck exec: zero stuck execs then means "not known".'),
    ('hangdoctor_last_run_timestamp_seconds', 'gauge', 'When hangdoctor last checked this node (Unix time).'),
)
COUNTERS = tuple(name for name, kind, dummy in METRICS if kind == 'counter')
CONTAINER_LABELS = ('namespace', 'pod', 'container', 'container_id', 'cause')

_COUNTER_LINE = re.compile(r'^(hangdoctor_[a-z_]+_total)(?:\{\})?[ \t]+([0-9][0-9.eE+]*)(?:[ \t]+-?[0-9]+)?[ \t]*$')
_CONTROL = re.compile('[\x00-\x1f\x7f-\x9f\u2028\u2029]')
_NAME_CHARS = re.compile(r'[^a-z0-9_]')


class MetricsError(HangdoctorError):
    """Bad input to render (the caller turns it into a module message)."""


def find_textfile_dir(candidates=None):
    """The first node_exporter textfile directory that exists, or None.

    A symlink is not followed: root writes the file there, and a link would
    let whoever placed it choose where."""
    for path in (TEXTFILE_DIRS if candidates is None else candidates):
        if path and os.path.isdir(path) and not os.path.islink(path):
            return path
    return None


def textfile_target(metrics_dir, metrics_file, candidates=None):
    """(path, create_dir, reason) of a node textfile, as every metrics writer
    resolves its ``metrics_dir`` option: ``auto`` is the first node_exporter
    textfile directory that exists (CANDIDATES, default TEXTFILE_DIRS), and
    nothing is written when there is none; a directory named by the user is
    created when missing (CREATE_DIR true); empty turns metrics off.  PATH is
    the file to write (REASON None), or None with the REASON nothing is
    written."""
    create_dir = metrics_dir != 'auto'
    if metrics_dir == 'auto':
        metrics_dir = find_textfile_dir(candidates)
        if not metrics_dir:
            return None, False, 'no node_exporter textfile directory on this node'
    if not metrics_dir:
        return None, create_dir, 'metrics turned off'
    return os.path.join(metrics_dir, metrics_file), create_dir, None


def label_value(value):
    """A label value that is safe to write: text, control characters
    replaced, cut to MAX_LABEL_CHARS, then escaped for the exposition format."""
    if value is None:
        value = ''
    if isinstance(value, bytes):
        value = value.decode('utf-8', 'replace')
    value = _CONTROL.sub('?', '%s' % (value,))
    if len(value) > MAX_LABEL_CHARS:
        value = value[:MAX_LABEL_CHARS - 1] + '~'
    return value.replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')


def _cause_label(cause):
    if isinstance(cause, dict):
        cause = cause.get('kind')
    cause = _NAME_CHARS.sub('_', str(cause or 'unknown').lower())[:40]
    return cause if cause in CAUSES else ('unknown' if not cause or cause == 'none' else 'other')


def _split_pod(pod):
    """'namespace/name' (the summary's form) -> (namespace, name)."""
    if not pod or not isinstance(pod, str):
        return '', ''
    if '/' in pod:
        ns, name = pod.split('/', 1)
        return ('' if ns in ('None', '') else ns), ('' if name == 'None' else name)
    return '', pod


def _same(a, b):
    if not a or not b:
        return False
    a, b = str(a), str(b)
    return a.startswith(b) or b.startswith(a)


def _short(cid):
    cid = _NAME_CHARS.sub('', str(cid or '').lower())
    return cid[:12]


def _number(value, default=0.0):
    try:
        v = float(value)
    except (TypeError, ValueError):
        return default
    if math.isnan(v) or math.isinf(v):
        return default
    return v


def _fmt(value):
    v = float(value)
    if v.is_integer() and abs(v) < 1e15:
        return '%d' % v
    return repr(v)


def previous_counters(text):
    """{counter name: value} from a previous file.  Lines that are not an
    unlabelled hangdoctor counter with a finite, non-negative value are
    ignored: a damaged file restarts the counters (Prometheus sees a reset),
    it never stops the run."""
    out = {}
    if not text:
        return out
    if isinstance(text, bytes):
        text = text.decode('utf-8', 'replace')
    if len(text) > MAX_PREVIOUS_BYTES:
        return out
    for line in text.splitlines():
        m = _COUNTER_LINE.match(line)
        if not m or m.group(1) not in COUNTERS:
            continue
        v = _number(m.group(2), default=None)
        if v is not None and v >= 0:
            out[m.group(1)] = v
    return out


# Docker names a kubelet's container k8s_<container>_<pod>_<namespace>_<uid>_<attempt>.
_DOCKERSHIM_NAME = re.compile(r'^k8s_([^_]+)_[^_]+_[^_]+_[^_]+_[0-9]+$')


def _container_name(summary, cid, row):
    """The pod's name for the container (as kubectl shows it) when known,
    else the engine's name."""
    for x in summary.get('stuck_execs') or []:
        if isinstance(x, dict) and _same(x.get('container_id'), cid) and x.get('pod_container'):
            return x['pod_container']
    for key in ('pod_container', 'container_name'):
        if row.get(key):
            return row[key]
    name = row.get('name') or ''
    m = _DOCKERSHIM_NAME.match(str(name))
    return m.group(1) if m else name


def _row_for(summary, cid):
    for row in summary.get('containers') or []:
        if isinstance(row, dict) and _same(row.get('container_id'), cid):
            return row
    return {}


def _labels(namespace, pod, container, cid, cause):
    return (label_value(namespace), label_value(pod), label_value(container), label_value(_short(cid)),
            label_value(_cause_label(cause)))


def _repaired(summary):
    """What this run repaired: ([(container id, writer pid)] drained for real
    with the writer unblocked, [container ids] that answer again), leaving
    out whatever verification found stuck or hung again.  A remediate run's
    summary still lists the stuck execs it found before draining; the metrics
    show what the run left behind."""
    verify = summary.get('verify') if isinstance(summary.get('verify'), dict) else None
    still_stuck = (verify or {}).get('still_stuck') or []
    still_hung = (verify or {}).get('still_hung') or []
    unstuck, answering = [], []
    for d in summary.get('drained') or []:
        if not isinstance(d, dict) or d.get('check_mode') or not d.get('container_id'):
            continue
        cid = d['container_id']
        if any(_same(cid, c) for c in still_stuck):
            continue
        if d.get('unblocked'):
            unstuck.append((cid, d.get('pid')))
        asked_again = verify is not None and not any(_same(cid, c) for c in still_hung)
        if d.get('verified') is True or (d.get('verified') is None and d.get('unblocked') and asked_again):
            answering.append(cid)
    return unstuck, answering


def _current_stuck(summary):
    unstuck, dummy = _repaired(summary)
    out = []
    for x in summary.get('stuck_execs') or []:
        if not isinstance(x, dict):
            continue
        pid = x.get('writer_pid')
        if x.get('resolved') is True:
            continue
        if any(_same(x.get('container_id'), cid) and (dpid is None or pid is None or dpid == pid)
               for cid, dpid in unstuck):
            continue
        out.append(x)
    return out


def _current_hung(summary):
    dummy, answering = _repaired(summary)
    answering += [c for c in summary.get('resolved') or [] if c]
    return [c for c in summary.get('hung') or [] if not any(_same(c, a) for a in answering)]


def _stuck_series(summary):
    """{label tuple: [count, oldest age]} of the confirmed stuck execs.  Two
    stuck execs of one container share a label set, so they are counted in one
    series (a duplicate series makes node_exporter reject the whole file)."""
    out = {}
    for x in _current_stuck(summary):
        cid = x.get('container_id')
        row = _row_for(summary, cid)
        ns, pod = _split_pod(x.get('pod') or row.get('pod'))
        container = x.get('pod_container') or _container_name(summary, cid, row) or x.get('container_name') or ''
        key = _labels(ns, pod, container, cid, cause=x.get('cause'))
        count, age = out.get(key, (0, 0.0))
        out[key] = (count + 1, max(age, _number(x.get('age_seconds'))))
    return out


def _hung_series(summary):
    out = {}
    hung = _current_hung(summary)
    for row in summary.get('containers') or []:
        if not isinstance(row, dict) or row.get('hung') is not True:
            continue
        if not any(_same(row.get('container_id'), c) for c in hung):
            continue
        ns, pod = _split_pod(row.get('pod'))
        # the first named cause when the triage ran (the stuck exec's dump kind before it)
        cause = row['causes'][0] if isinstance(row.get('causes'), list) and row['causes'] else row.get('cause')
        key = _labels(ns, pod, _container_name(summary, row.get('container_id'), row), row.get('container_id'),
                      cause=cause)
        out[key] = 1
    return out


def _cause_series(summary):
    """{label tuple: 1} for every named cause of every diagnosed container
    that this run did not repair."""
    out = {}
    dummy, answering = _repaired(summary)
    repaired = answering + [c for c in summary.get('resolved') or [] if c]
    for row in summary.get('containers') or []:
        if not isinstance(row, dict) or not isinstance(row.get('causes'), list):
            continue
        cid = row.get('container_id')
        if any(_same(cid, c) for c in repaired):
            continue
        ns, pod = _split_pod(row.get('pod'))
        for cause in row['causes']:
            out[_labels(ns, pod, _container_name(summary, cid, row), cid, cause=cause)] = 1
    return out


def _recurring_series(summary):
    out = {}
    for d in summary.get('drained') or []:
        if not isinstance(d, dict) or d.get('check_mode'):
            continue
        rounds = int(_number(d.get('rounds'), 1))
        if not (d.get('recurring') or rounds > 1):
            continue
        cid = d.get('container_id')
        row = _row_for(summary, cid)
        ns, pod = _split_pod(row.get('pod'))
        cause = _cause_label(d.get('cause'))
        key = _labels(ns, pod, _container_name(summary, cid, row), cid,
                      cause=row.get('cause') if cause == 'unknown' and row.get('cause') else cause)
        out[key] = max(out.get(key, 0), rounds)
    return out


def _absent(skipped):
    """"no Docker socket at …" is the one skip that means the engine is absent."""
    return bool(skipped) and 'socket' in str(skipped).lower()


def _engines(summary):
    """[(name, present, checked, reachable)] from the summary's ``engines``
    list, or from the older single ``engine`` dict (Docker)."""
    engines = summary.get('engines')
    out = []
    if isinstance(engines, list) and engines:
        for e in engines[:MAX_ENGINES]:
            if not isinstance(e, dict):
                continue
            name = _NAME_CHARS.sub('_', str(e.get('name') or 'unknown').lower())[:32] or 'unknown'
            present = bool(e.get('present', not _absent(e.get('skipped'))))
            checked = bool(e.get('checked', e.get('reachable') is not None)) and present
            out.append((name, present, checked, bool(checked and e.get('reachable'))))
        return out
    engine = summary.get('engine') or {}
    if isinstance(engine, dict) and engine:
        skipped = engine.get('skipped')
        checked = not skipped and engine.get('reachable') is not None
        present = not _absent(skipped)
        out.append(('docker', present, checked, bool(checked and engine.get('reachable'))))
    return out


def render(summary, previous_text=None, now=None):
    """The textfile content for one node from its host summary.

    ``previous_text`` is the file this replaces (counters continue from it);
    ``now`` the run's Unix time (default: the summary's ``checked_at``, else
    the clock)."""
    if summary is None:
        summary = {}
    if not isinstance(summary, dict):
        raise MetricsError('the host summary must be a dict, got %s' % type(summary).__name__)
    prev = previous_counters(previous_text)
    real = [d for d in summary.get('drained') or [] if isinstance(d, dict) and not d.get('check_mode')]
    when = _number(now if now is not None else summary.get('checked_at'), default=None)
    if when is None:
        when = time.time()
    verify = summary.get('verify')

    values = {
        'hangdoctor_stuck_execs': len(_current_stuck(summary)),
        'hangdoctor_suspect_execs': len(summary.get('suspects') or []),
        'hangdoctor_hung_containers': len(_current_hung(summary)),
        'hangdoctor_drained_total': prev.get('hangdoctor_drained_total', 0) + len(real),
        'hangdoctor_drained_bytes_total': prev.get('hangdoctor_drained_bytes_total', 0) + sum(
            max(0, int(_number(d.get('bytes')))) for d in real),
        'hangdoctor_evidence_files_total': prev.get('hangdoctor_evidence_files_total', 0) + sum(
            1 for d in real if d.get('evidence_path')),
        'hangdoctor_recurring_total': prev.get('hangdoctor_recurring_total', 0) + sum(
            1 for d in real if d.get('recurring')),
        'hangdoctor_skipped_drains': len(summary.get('skipped') or []),
        'hangdoctor_guard_blocked': 1 if isinstance(summary.get('guard'), dict) and summary['guard'].get('blocked') else 0,
        'hangdoctor_verify_failed': 1 if isinstance(verify, dict) and verify.get('ok') is False else 0,
        'hangdoctor_last_run_timestamp_seconds': int(when),
    }
    if summary.get('scan_seconds') is not None:
        values['hangdoctor_scan_duration_seconds'] = round(_number(summary.get('scan_seconds')), 4)
        values['hangdoctor_scan_partial'] = 1 if summary.get('scan_partial') else 0

    labelled = {}
    stuck = _stuck_series(summary)
    labelled['hangdoctor_container_stuck_execs'] = dict((k, v[0]) for k, v in stuck.items())
    labelled['hangdoctor_stuck_exec_age_seconds'] = dict((k, round(v[1], 1)) for k, v in stuck.items())
    labelled['hangdoctor_hung_container'] = _hung_series(summary)
    labelled['hangdoctor_container_cause'] = _cause_series(summary)
    labelled['hangdoctor_recurring_drain'] = _recurring_series(summary)
    dropped = 0
    for name in list(labelled):
        series = labelled[name]
        if len(series) > MAX_SERIES_PER_METRIC:
            # Keep the same containers in every capped metric: sorted by label set.
            keep = sorted(series)[:MAX_SERIES_PER_METRIC]
            dropped += len(series) - len(keep)
            labelled[name] = dict((k, series[k]) for k in keep)
    labelled[DEPRECATED_STUCK_EXEC] = labelled['hangdoctor_container_stuck_execs']
    values['hangdoctor_series_dropped'] = dropped

    engine_series = {'hangdoctor_engine_present': {}, 'hangdoctor_engine_checked': {},
                     'hangdoctor_engine_reachable': {}}
    for name, present, checked, reachable in _engines(summary):
        key = (name,)
        engine_series['hangdoctor_engine_present'][key] = 1 if present else 0
        engine_series['hangdoctor_engine_checked'][key] = 1 if checked else 0
        engine_series['hangdoctor_engine_reachable'][key] = 1 if reachable else 0

    lines = []
    for name, kind, text in METRICS:
        if name in labelled:
            rows = ['%s{%s} %s' % (name, ','.join('%s="%s"' % kv for kv in zip(CONTAINER_LABELS, key)), _fmt(v))
                    for key, v in sorted(labelled[name].items())]
        elif name in engine_series:
            rows = ['%s{engine="%s"} %s' % (name, key[0], _fmt(v)) for key, v in sorted(engine_series[name].items())]
        elif name in values:
            rows = ['%s %s' % (name, _fmt(values[name]))]
        else:
            continue
        if not rows:
            # HELP/TYPE without samples is valid, but an empty family only
            # adds noise to promtool's lint and to every scrape.
            continue
        lines += ['# HELP %s %s' % (name, text), '# TYPE %s %s' % (name, kind)] + rows
    return '\n'.join(lines) + '\n'
