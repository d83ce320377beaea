# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""node-problem-detector custom plugin: is an exec deadlocked on this node?

Follows NPD's custom plugin protocol: exit 0 = OK, 1 = problem, 2 = unknown;
the first line of standard output is the condition/event message, cut to
``--max-output`` characters (NPD's ``max_output_length``, 80 by default).

Two sources (docs/alerting.md explains when to use which):

``--source proc`` (default)
    Scan ``--proc-root`` itself with the collection's diagnosis code
    (``_stuck_exec.scan``: runc init or runc exec in write(2) on a full stderr
    pipe read by a shim, confirmed by two samples).  Needs root and the
    collection's ``plugins/module_utils`` (``--collection-path``: the directory
    that holds ``ansible_collections/``; found by itself when this file sits in
    an installed collection).  Never changes anything: no drain, no kill.

``--source textfile``
    Read the metrics file that the detect role / node_doctor writes for
    node_exporter (``--metrics-file``).  Needs no privileges; a file older than
    ``--max-age`` seconds is "unknown" (exit 2), never "OK".

Python 3.6+ standard library only, so it runs with a node's own python3:
    python3 hangdoctor_npd.py --proc-root /proc
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import errno
import math
import os
import re
import sys
import time

OK, PROBLEM, UNKNOWN = 0, 1, 2
DEFAULT_MAX_OUTPUT = 80
_LABELS = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_SAMPLE = re.compile(r'^(hangdoctor_[a-z_]+)(\{[^\n]*\})?[ \t]+(\S+)')
_UNPRINTABLE = re.compile(r'[^\x20-\x7e]')
# The per-container stuck-exec series: its name since 0.2.0, and the deprecated
# name that files of older releases (and 0.2.0, for compatibility) also carry.
PER_CONTAINER = ('hangdoctor_container_stuck_execs', 'hangdoctor_stuck_exec')
# Bounds on a metrics file read: the textfile is small; anything larger is not ours.
MAX_METRICS_BYTES = 1 << 20


class PluginError(Exception):
    """A check that could not be made: NPD's "unknown"."""


def _clean(text):
    return _UNPRINTABLE.sub('?', str(text))


def message(kind, names, total, limit):
    """One line for the node condition: how many, and which pods, cut to LIMIT."""
    names = [_clean(n) for n in names if n]
    head = '%d %s' % (total, kind)
    if not names:
        return head[:limit]
    line = head + ': ' + ', '.join(names)
    if len(line) <= limit:
        return line
    # Keep whole names while they fit, then say how many were left out.
    shown = []
    for n in names:
        rest = len(names) - len(shown) - 1
        candidate = head + ': ' + ', '.join(shown + [n]) + (' +%d more' % rest if rest else '')
        if len(candidate) > limit:
            break
        shown.append(n)
    if not shown:
        # Not even one whole name fits: cut the first one, keep the count.
        suffix = ' +%d more' % (len(names) - 1) if len(names) > 1 else ''
        room = limit - len(head) - 2 - len(suffix) - 3
        if room < 4:
            return head[:limit]
        return head + ': ' + names[0][:room] + '...' + suffix
    left = len(names) - len(shown)
    return (head + ': ' + ', '.join(shown) + (' +%d more' % left if left else ''))[:limit]


def _name(namespace, pod, container, container_id):
    if pod:
        return '%s/%s%s' % (namespace or '-', pod, ' (%s)' % container if container else '')
    return container or (container_id or '')[:12] or 'unknown container'


def _import_scan(collection_path):
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [collection_path] if collection_path else []
    candidates += [os.environ.get('HANGDOCTOR_COLLECTIONS_PATH'),
                   # this file inside an installed collection: <path>/ansible_collections/hangdoctor/runtime/extras/...
                   os.path.normpath(os.path.join(here, '..', '..', '..', '..', '..')),
                   os.path.expanduser('~/.ansible/collections'), '/usr/share/ansible/collections']
    for path in candidates:
        if path and os.path.isdir(os.path.join(path, 'ansible_collections', 'hangdoctor', 'runtime', 'plugins')):
            if path not in sys.path:
                sys.path.insert(0, path)
            break
    try:
        from ansible_collections.hangdoctor.runtime.plugins.module_utils._procfs import Proc
        from ansible_collections.hangdoctor.runtime.plugins.module_utils._stuck_exec import ScanOptions, scan, DiagnosisError
    except ImportError as e:
        raise PluginError('hangdoctor.runtime not found (%s); pass --collection-path' % e)
    return Proc, scan, ScanOptions, DiagnosisError


RUNTIME_COMMS = ('containerd-shim', 'containerd', 'dockerd', 'docker-containerd')


def _check_fd_access(proc_root):
    """Without CAP_SYS_PTRACE the fds of the shims and daemons (which hold
    every capability) are unreadable and a scan would find nothing: that is
    "unknown", never "OK".  comm is readable by anyone, fd links are not."""
    denied = None
    for entry in os.listdir(proc_root):
        if not entry.isdigit():
            continue
        try:
            with open(os.path.join(proc_root, entry, 'comm'), 'rb') as f:
                comm = f.read(64).decode('utf-8', 'replace').strip()
        except (IOError, OSError):
            continue
        if not comm.startswith(RUNTIME_COMMS):
            continue
        # Listing fd/ is allowed to any root; reading a link needs ptrace access.
        try:
            fds = os.listdir(os.path.join(proc_root, entry, 'fd'))
            if fds:
                os.readlink(os.path.join(proc_root, entry, 'fd', fds[0]))
                return
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EPERM):
                denied = comm
    if denied:
        raise PluginError('cannot read the fds of %s (needs CAP_SYS_PTRACE)' % denied)


def check_proc(args):
    Proc, scan, ScanOptions, DiagnosisError = _import_scan(args.collection_path)
    if os.geteuid() != 0:
        raise PluginError('must run as root to read the fds of shims and runc processes')
    proc = Proc(args.proc_root)
    if not proc.is_procfs():
        raise PluginError('not a procfs: %s' % args.proc_root)
    _check_fd_access(args.proc_root)
    try:
        result = scan(proc, ScanOptions(container_ids=args.container_ids, confirm_interval=args.confirm_interval,
                                        peek_bytes=0, min_age_seconds=args.min_age_seconds, kmsg=False))
    except DiagnosisError as e:
        raise PluginError('diagnosis failed: %s' % e)
    stuck = result.get('stuck_execs') or []
    if result.get('partial') and not stuck:
        # a scan cut short by its deadline has not looked at everything: not "OK"
        raise PluginError('scan partial: %s' % result.get('partial_reason'))
    names = []
    for rec in stuck:
        pod = rec.get('pod') or {}
        n = _name(pod.get('namespace'), pod.get('name'), pod.get('container'), rec.get('container_id'))
        if n not in names:
            names.append(n)
    return len(stuck), sorted(names)


def read_metrics(path, label):
    """The text of the metrics file at PATH, read bounded (MAX_METRICS_BYTES);
    LABEL names the file in the messages of the PluginError raised when it
    cannot be read or is too large."""
    try:
        st = os.stat(path)
        if st.st_size > MAX_METRICS_BYTES:
            raise PluginError('%s larger than %d bytes: %s' % (label, MAX_METRICS_BYTES, path))
        with open(path, 'rb') as f:
            return f.read(MAX_METRICS_BYTES).decode('utf-8', 'replace')
    except (IOError, OSError) as e:
        raise PluginError('cannot read %s (%s): %s' % (label, getattr(e, 'strerror', None) or e, path))


def samples(text):
    """(metric name, label text or None, value) of every hangdoctor sample of
    the metrics TEXT whose value is a number."""
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        yield m.group(1), m.group(2), value


def check_textfile(args):
    path = args.metrics_file
    if not path:
        raise PluginError('--metrics-file is required with --source textfile')
    text = read_metrics(path, 'metrics file')
    total, last_run, names, partial = None, None, [], False
    for name, label_text, value in samples(text):
        if name == 'hangdoctor_stuck_execs' and not label_text:
            total = value
        elif name == 'hangdoctor_scan_partial' and not label_text:
            partial = value > 0
        elif name == 'hangdoctor_last_run_timestamp_seconds':
            last_run = value
        elif name in PER_CONTAINER and value > 0:
            labels = dict((k, v.replace('\\"', '"').replace('\\\\', '\\')) for k, v in _LABELS.findall(label_text or ''))
            n = _name(labels.get('namespace'), labels.get('pod'), labels.get('container'), labels.get('container_id'))
            if n not in names:
                names.append(n)
    if total is None or last_run is None:
        raise PluginError('no hangdoctor metrics in %s' % path)
    age = time.time() - last_run
    if not math.isfinite(age):
        raise PluginError('metrics file has no valid last-run time: %s' % path)
    if age > args.max_age:
        raise PluginError('metrics file is %ds old (detection not running?)' % age)
    if partial and not total:
        raise PluginError('the last scan was partial (it reached its deadline): stuck execs unknown')
    return int(total), sorted(names)


RISK_REASONS = ('pipe_capacity', 'container_headroom')


def check_risk(args):
    """(reasons, names) from node_risk's textfile (--risk-metrics-file): the
    node is at risk of the pipe deadlock when the next shim pipe is cut short
    or a container has no thread headroom.  Version advisories are not a node
    condition."""
    path = args.risk_metrics_file
    text = read_metrics(path, 'risk metrics file')
    at_risk, last_run, engines, containers = {}, None, [], 0
    for name, label_text, value in samples(text):
        labels = dict(_LABELS.findall(label_text or ''))
        if name == 'hangdoctor_node_at_risk' and labels.get('reason') in RISK_REASONS:
            at_risk[labels['reason']] = value > 0
        elif name == 'hangdoctor_risk_last_run_timestamp_seconds':
            last_run = value
        elif name == 'hangdoctor_pipe_capacity_collapsed' and value > 0:
            engines.append(_clean(labels.get('engine', '?')))
        elif name == 'hangdoctor_containers_at_risk':
            containers = int(value) if math.isfinite(value) else 0
    if last_run is None or not at_risk:
        raise PluginError('no hangdoctor risk metrics in %s' % path)
    age = time.time() - last_run
    if not math.isfinite(age) or age > args.max_age:
        raise PluginError('risk metrics file is stale or undated (risk check not running?)')
    names = []
    if at_risk.get('pipe_capacity'):
        names.append('small pipes %s' % ' '.join(sorted(engines)))
    if at_risk.get('container_headroom'):
        names.append('%d container(s) near limits' % containers)
    return len(names), names


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n', 1)[0])
    p.add_argument('--source', choices=('proc', 'textfile'), default='proc')
    p.add_argument('--proc-root', default='/proc', help='host /proc (e.g. /host/proc in a pod)')
    p.add_argument('--collection-path', default=None,
                   help='directory holding ansible_collections/hangdoctor/runtime')
    p.add_argument('--confirm-interval', type=float, default=1.0, help='seconds between the two samples')
    p.add_argument('--min-age-seconds', type=float, default=0.0, help='report stuck execs at least this old')
    p.add_argument('--container-ids', default='', help='only these containers (comma-separated id prefixes)')
    p.add_argument('--metrics-file', default=None, help='the textfile (with --source textfile)')
    p.add_argument('--max-age', type=float, default=900.0, help='older metrics are "unknown" (seconds)')
    p.add_argument('--check', choices=('stuck', 'risk'), default='stuck',
                   help='stuck: is an exec deadlocked; risk: will the next crash dump deadlock (node_risk textfile)')
    p.add_argument('--risk-metrics-file', default='/var/lib/node_exporter/textfile_collector/hangdoctor_risk.prom',
                   help='node_risk textfile (with --check risk)')
    p.add_argument('--max-output', type=int, default=DEFAULT_MAX_OUTPUT,
                   help="NPD's max_output_length (characters of the message)")
    args = p.parse_args(argv)
    limit = max(20, args.max_output)
    args.container_ids = [c.strip().lower() for c in args.container_ids.split(',') if c.strip()]
    numbers = (args.confirm_interval, args.min_age_seconds, args.max_age)
    # float() takes 'nan' and 'inf': nan > max_age is always false, so a
    # day-old file would read OK.  Only finite numbers are accepted.
    if not all(math.isfinite(n) for n in numbers) or args.confirm_interval < 0 or args.min_age_seconds < 0 \
            or args.max_age <= 0:
        print('unknown: ages and intervals must be finite, >= 0 (--max-age > 0)'[:limit])
        return UNKNOWN
    if any(not re.match(r'^[0-9a-f]+$', c) for c in args.container_ids):
        print('unknown: --container-ids takes hex container ids'[:limit])
        return UNKNOWN
    if args.check == 'risk':
        try:
            total, names = check_risk(args)
        except PluginError as e:
            print(('unknown: %s' % _clean(e))[:limit])
            return UNKNOWN
        if not total:
            print('no deadlock risk (pipe capacity, thread headroom)'[:limit])
            return OK
        print(('deadlock risk: ' + '; '.join(names))[:limit])
        return PROBLEM
    try:
        total, names = check_proc(args) if args.source == 'proc' else check_textfile(args)
    except PluginError as e:
        print(('unknown: %s' % _clean(e))[:limit])
        return UNKNOWN
    except Exception as e:  # pylint: disable=broad-except
        # NPD shows the first line of output; a traceback would show nothing useful.
        print(('unknown: %s: %s' % (type(e).__name__, _clean(e)))[:limit])
        return UNKNOWN
    if total <= 0:
        print('no stuck exec (runc init on a full shim pipe)'[:limit])
        return OK
    print(message('stuck exec(s)', names, total, limit))
    return PROBLEM


if __name__ == '__main__':
    sys.exit(main())
