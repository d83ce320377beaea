# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus textfile-collector metrics of one node (private module_utils),
rendered on the node from its host summary.

Target-side code: Python 3.6+ syntax and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import time

# Where node_exporter's textfile collector usually reads (first existing wins).
TEXTFILE_DIRS = (
    '/var/lib/node_exporter/textfile_collector',
    '/var/lib/prometheus/node-exporter',
    '/var/lib/node-exporter/textfile-collector',
)


def find_textfile_dir(candidates=None):
    """The first existing textfile-collector directory, or None."""
    for d in candidates or TEXTFILE_DIRS:
        if os.path.isdir(d) and not os.path.islink(d):
            return d
    return None


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


def render(summary, previous_text=None, now=None):
    """Textfile-collector content for one node.  Counters continue from the
    ``previous`` file's values, so a scrape sees them only grow."""
    summary = summary or {}
    prev = _previous_counters(previous_text)
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
        'hangdoctor_last_run_timestamp_seconds': int(time.time() if now is None else float(now)),
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
