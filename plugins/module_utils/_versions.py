# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Versions of the node's runtime components and the advisories that match
them (private module_utils).

No version fixes the pipe deadlock: the shim still reads an exec's stderr only
after ``runc exec`` returns (runc#2530 and containerd#4434 were closed without
a fix).  The table below lists the known, fixed problems of the same family a
node can see for itself, checked against upstream on ``CHECKED``.

Only root-owned host binaries are run (every directory of the path root's
and not writable by others), with a deadline, a clean environment, ``/`` as
working directory and no stdin; results are cached by the binary's device,
inode, size and mtime, so a healthy node runs nothing on later checks.
Target-side code: Python 3.6+ syntax and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import re
import stat

from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import HangdoctorError
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _deadline
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _files

CHECKED = '2026-12-03'
NO_FIX = ('No containerd, runc or Docker version fixes the pipe deadlock: the shim still reads an exec\'s stderr '
          'only after runc exec returns (runc#2530 and containerd#4434 were closed without a fix). Reading the '
          'pipe (runc_pipe_drain) is the repair; pipe capacity and container headroom decide the risk.')
CLEAN_ENV = {'PATH': '/usr/sbin:/usr/bin:/sbin:/bin', 'LC_ALL': 'C', 'LANG': 'C'}
MAX_OUTPUT = 64 * 1024
SEARCH_DIRS = ('/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin')
# component -> (binary names, version argument)
BINARIES = (
    ('runc', ('runc', 'docker-runc'), '--version'),
    ('containerd', ('containerd', 'docker-containerd'), '--version'),
    ('dockerd', ('dockerd',), '--version'),
    ('shim', ('containerd-shim-runc-v2',), '-v'),
)


# Each row: id, component, [(lowest, highest)] inclusive version ranges (a
# missing bound is open), what goes wrong, where it is fixed, upstream links.
ADVISORIES = (
    {'id': 'runc_exec_hang_regression', 'component': 'runc', 'ranges': [((1, 3, 0), (1, 3, 5)), ((1, 4, 0), (1, 4, 1))],
     'problem': 'regression: runc exec / runc run can hang', 'fixed_in': '1.3.6, 1.4.2',
     'links': ['https://github.com/opencontainers/runc/pull/5208', 'https://github.com/opencontainers/runc/pull/5210',
               'https://github.com/opencontainers/runc/pull/5215']},
    {'id': 'runc_go_1_22_abort', 'component': 'runc_go', 'ranges': [((1, 22, 0), (1, 22, 3))],
     'problem': 'runc built with this Go: runc init aborts (SIGABRT) on some glibc and writes the same crash dump '
                'to stderr', 'fixed_in': 'runc built with Go 1.22.4 or later (runc 1.1.13 notes)',
     'links': ['https://github.com/opencontainers/runc/issues/4233']},
    {'id': 'containerd_shim_v1_log_pipe', 'component': 'containerd', 'ranges': [((1, 4, 0), (1, 4, 0))],
     'problem': 'the shim v1 log pipe fills and the shim hangs', 'fixed_in': '1.4.1',
     'links': ['https://github.com/containerd/containerd/pull/4546', 'https://github.com/moby/moby/pull/41450']},
    {'id': 'containerd_shim_deadlock', 'component': 'containerd', 'ranges': [((1, 2, 0), (1, 2, 7))],
     'problem': 'shim deadlock', 'fixed_in': '1.2.8',
     'links': ['https://github.com/containerd/containerd/pull/3529']},
    {'id': 'containerd_end_of_life', 'component': 'containerd', 'ranges': [(None, (1, 7, 999))],
     'problem': 'end of life per containerd\'s RELEASES.md: no further fixes', 'fixed_in': 'a supported line (2.x)', 'severity': 'info',
     'links': ['https://github.com/containerd/containerd/blob/main/RELEASES.md']},
    {'id': 'dockerd_inspect_blocks_on_exec', 'component': 'dockerd', 'ranges': [(None, (23, 999, 999))],
     'problem': 'during a stuck exec dockerd holds the container\'s lock: docker inspect and stats of that container '
                'hang (newer releases still hang the exec itself; moby#46782 is open)',
     'fixed_in': '24.0 (inspect only)', 'links': ['https://github.com/moby/moby/issues/46782']},
    {'id': 'pipe_deadlock_unfixed', 'component': 'runc', 'ranges': [(None, None)],
     'problem': NO_FIX, 'fixed_in': 'none', 'severity': 'info',
     'links': ['https://github.com/opencontainers/runc/issues/2530',
               'https://github.com/containerd/containerd/issues/4434']},
)


class VersionError(HangdoctorError):
    """A binary could not be asked for its version."""


_VERSION = re.compile(r'v?(\d+)\.(\d+)(?:\.(\d+))?')


def parse_version(text):
    """(major, minor, patch) of the first dotted version in TEXT, or None
    (``1.1.5+ds1``, ``v1.7.13``, ``1.6.20~ds1``, ``1.0.0-rc92``, ``go1.22.3``)."""
    if not text:
        return None
    m = _VERSION.search(text)
    if not m:
        return None
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


def _field(text, pattern):
    m = re.search(pattern, text or '', re.M)
    return m.group(1) if m else None


def parse_output(component, text):
    """{'version', 'go_version'} (strings as printed, or None) from the
    output of COMPONENT's version command."""
    version = go = None
    if component == 'runc':
        version = _field(text, r'^runc version (\S+)')
        go = _field(text, r'^go: (?:go)?(\S+)')
    elif component == 'containerd':
        # "containerd <package> <version> <revision>"
        version = _field(text, r'^containerd \S+ (v?\d\S*)')
    elif component == 'dockerd':
        version = _field(text, r'^Docker version ([^,\s]+)')
    elif component == 'shim':
        version = _field(text, r'^\s*Version:\s+(\S+)')
        go = _field(text, r'^\s*Go version:\s+(?:go)?(\S+)')
    return {'version': version, 'go_version': go}


def _in_range(v, rng):
    lo, hi = rng
    return (lo is None or v >= lo) and (hi is None or v <= hi)


def advisories_for(component, version_text, table=ADVISORIES):
    """The rows of TABLE that match COMPONENT at VERSION_TEXT."""
    v = parse_version(version_text)
    if v is None:
        return []
    out = []
    for row in table:
        if row['component'] == component and any(_in_range(v, r) for r in row['ranges']):
            hit = dict((k, row[k]) for k in ('id', 'component', 'problem', 'fixed_in', 'links'))
            hit.update(severity=row.get('severity', 'warning'), version=version_text)
            out.append(hit)
    return out


def trusted_binary(path):
    """The reason PATH may not be run, or None: it and every directory above
    it must be root's and writable by nobody else; symlinks are resolved
    first and the target checked (a link is only as good as what it names)."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError as e:
        return '%s: %s' % (path, e.strerror or e)
    if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
        return '%s is not an executable file' % real
    if st.st_uid != 0 or st.st_mode & 0o022:
        return '%s is not root\'s or is writable by others' % real
    d = os.path.dirname(real)
    while True:
        try:
            dst = os.stat(d)
        except OSError as e:
            return '%s: %s' % (d, e.strerror or e)
        if dst.st_uid != 0 or dst.st_mode & 0o022:
            return 'directory %s is not root\'s or is writable by others' % d
        if d == '/':
            return None
        d = os.path.dirname(d)


def run_version(path, arg, timeout):
    """The output of ``PATH ARG`` (stdout and stderr), run with a deadline in
    a clean environment; the whole process group is killed at the deadline."""
    try:
        dummy, out, dummy = _deadline.run_bounded([path, arg], timeout, merge_stderr=True, env=dict(CLEAN_ENV), cwd='/')
    except OSError as e:
        raise VersionError('%s %s: %s' % (path, arg, e.strerror or e))
    except _deadline.CommandTimeout:
        raise VersionError('%s %s did not answer within %.1f s' % (path, arg, timeout))
    return out[:MAX_OUTPUT].decode('utf-8', 'replace')


def find_binary(names, dirs=SEARCH_DIRS):
    for d in dirs:
        for n in names:
            p = os.path.join(d, n)
            if os.path.isfile(p):
                return p
    return None


def _cache_key(path):
    st = os.stat(os.path.realpath(path))
    return '%d:%d:%d:%d' % (st.st_dev, st.st_ino, st.st_size, int(st.st_mtime * 1e9))


def load_cache(path):
    if not path:
        return {}
    try:
        data = _files.read_small(path)
    except (_files.WriteError, HangdoctorError, IOError, OSError):
        return {}
    if not data:
        return {}
    try:
        cache = json.loads(data if isinstance(data, str) else data.decode('utf-8', 'replace'))
    except ValueError:
        return {}
    return cache if isinstance(cache, dict) else {}


def same_mount_namespace(proc):
    """Do we see the host's files (this module's mount namespace is pid 1's in PROC)?"""
    mine, host = proc.ns('self', 'mnt'), proc.ns(1, 'mnt')
    return not (mine and host and mine != host)


def assess(proc, options=None):
    """{'components': [...], 'advisories': [...], 'kernel', 'note', 'skipped', 'cache'}.

    OPTIONS: 'timeout' (seconds per binary), 'cache_path' ('' for none),
    'check_mode' (do not write the cache)."""
    opts = dict({'timeout': 3.0, 'cache_path': '', 'check_mode': False, 'dirs': SEARCH_DIRS}, **(options or {}))
    result = {'components': [], 'advisories': [], 'kernel': os.uname()[2], 'note': NO_FIX, 'skipped': None,
              'checked_table': CHECKED, 'cache': {'path': opts['cache_path'] or None, 'hits': 0, 'written': False}}
    if not same_mount_namespace(proc):
        result['skipped'] = ('not in the host\'s mount namespace: the node\'s binaries are not run from here '
                             '(run the module on the host, or in a pod with hostPID and the host\'s root)')
        return result
    cache = load_cache(opts['cache_path'])
    changed = False
    for component, names, arg in BINARIES:
        path = find_binary(names, opts['dirs'])
        if not path:
            continue
        entry = {'component': component, 'path': path, 'version': None, 'go_version': None, 'error': None}
        reason = trusted_binary(path)
        if reason:
            entry['error'] = 'not run: %s' % reason
            result['components'].append(entry)
            continue
        try:
            key = _cache_key(path)
        except OSError as e:
            entry['error'] = str(e)
            result['components'].append(entry)
            continue
        hit = cache.get(path)
        if isinstance(hit, dict) and hit.get('key') == key and isinstance(hit.get('output'), str):
            output = hit['output']
            result['cache']['hits'] += 1
        else:
            try:
                output = run_version(path, arg, opts['timeout'])
            except VersionError as e:
                entry['error'] = str(e)
                result['components'].append(entry)
                continue
            cache[path] = {'key': key, 'output': output}
            changed = True
        entry.update(parse_output(component, output))
        result['components'].append(entry)
        result['advisories'] += advisories_for(component, entry['version'])
        if component == 'runc' and entry['go_version']:
            result['advisories'] += advisories_for('runc_go', entry['go_version'])
    if changed and opts['cache_path'] and not opts['check_mode']:
        try:
            _files.write_atomic(opts['cache_path'], json.dumps(cache, sort_keys=True).encode('utf-8'), 0o600,
                                create_dir=True, durable=False)
            result['cache']['written'] = True
        except _files.WriteError as e:
            result['cache']['error'] = str(e)
    return result
