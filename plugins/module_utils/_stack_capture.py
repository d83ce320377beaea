# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Goroutine stacks of the Go daemons on a hung container's chain (private
module_utils): SIGUSR1 to dockerd, containerd and the shims, the dumps they
write copied as 0600 evidence with their SHA-256, parsed and fingerprinted
(``_gostacks``).

What each writes on SIGUSR1 (checked with docker.io 20.10 and containerd 1.6):

- dockerd: ``goroutine-stacks-<time>.log`` in its exec root (``--exec-root``,
  default ``/var/run/docker``);
- containerd: the dump in its log (one logrus line, ``=== BEGIN goroutine
  stack dump ===``) and ``containerd.<pid>.stacks.log`` in its temporary
  directory (``/tmp``);
- a v2 shim: the dump in its log, which containerd copies into its own log
  with ``pid=<shim pid>``;
- a v1 shim (``containerd-shim``): the dump on its stderr, a pipe that
  containerd 1.6 reads and passes through the FIFO
  ``<workdir>/shim.stderr.log`` into nothing, unless its v1 runtime has
  ``shim_debug = true``: then into containerd's own log (with
  ``pid=<shim pid>``).  Reading the pipe or the FIFO ourselves would take
  bytes that are containerd's, so a v1 shim is signalled only when its dump
  can land in a regular file (its stderr itself, or the log of a containerd
  whose config does not turn shim_debug off); otherwise it is not signalled
  and ``not_collected`` says why.

SIGUSR1 ends a Go program that does not catch it, and a dead shim takes its
container with it: a process is signalled only when ``/proc/PID/status``
``SigCgt`` shows it catches SIGUSR1, and only when it is proven to be one of
those daemons: its comm and executable name, a root-owned executable no one
else may write, root credentials, the host's pid and mount namespaces, and
the same start time immediately before the signal (pid reuse).

Opt-in and rate-limited per node: a stamp file in the host-wide lock
directory holds the time of the last capture.

Target-side code: Python 3.6+ syntax and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os
import re
import signal
import stat as stat_mod
import time
from collections import namedtuple

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _defaults
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _evidence
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _gostacks
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs
from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import HangdoctorError

SIGUSR1_BIT = 1 << (signal.SIGUSR1 - 1)
# comm (at most 15 characters) -> executable names it may have
DAEMONS = {
    'dockerd': ('dockerd',),
    'containerd': ('containerd', 'docker-containerd'),
    'docker-containe': ('docker-containerd', 'docker-containerd-shim'),
    'containerd-shim': ('containerd-shim', 'containerd-shim-runc-v1', 'containerd-shim-runc-v2'),
}
KIND = {'dockerd': 'dockerd', 'containerd': 'containerd', 'docker-containerd': 'containerd'}
STAMP = 'stacks-capture.stamp'
BEGIN = b'=== BEGIN goroutine stack dump ==='
END = b'=== END goroutine stack dump ==='
READ_CHUNK = 1024 * 1024
# what a log grew by after the signal is read whole (a logged dump is one
# line): bounded; a dump file is streamed, at most MAX_DUMP_READ bytes
MAX_LOG_READ = 64 * 1024 * 1024
MAX_DUMP_READ = 4 * 1024 * 1024 * 1024
POLL = 0.1
_NAME_RE = re.compile(r'[^A-Za-z0-9_.-]')
# The names ``_name`` gives: the only files the retention counts or removes.
STACKS_RE = re.compile(r'^stacks-(?:dockerd|containerd|shim)-\d+-\d+-(?:file|log)-\d{8}T\d{6}\.\d{6}Z\.log$')

Target = namedtuple('Target', ['pid', 'starttime', 'comm', 'exe', 'kind'])


def _stamp(epoch):
    return time.strftime('%Y%m%dT%H%M%S', time.gmtime(epoch)) + ('.%06dZ' % int((epoch % 1) * 1e6))


def catches_sigusr1(proc, pid):
    """Whether PID's SigCgt has SIGUSR1; None when status cannot be read."""
    try:
        text = _procfs._read(proc.path(pid, 'status'))
    except _procfs.ProcError:
        return None
    for line in text.splitlines():
        if line.startswith('SigCgt:'):
            try:
                return bool(int(line.split(':', 1)[1].strip(), 16) & SIGUSR1_BIT)
            except ValueError:
                return None
    return None


def identify(proc, pid):
    """(Target, None) when PID is proven to be dockerd, containerd or a shim
    that catches SIGUSR1, else (None, reason)."""
    try:
        st = proc.stat(pid)
        status = proc.status(pid)
    except _procfs.ProcError as e:
        return None, 'cannot read its stat/status: %s' % e
    if st['state'] in ('Z', 'X'):
        return None, 'a zombie'
    comm = st['comm']
    if comm not in DAEMONS:
        return None, 'comm %r is not dockerd, containerd or a containerd shim' % comm
    exe_text = proc.exe(pid) or ''
    exe_name = os.path.basename(exe_text.replace(' (deleted)', ''))
    if exe_name not in DAEMONS[comm]:
        return None, 'executable %r does not match comm %r' % (exe_text, comm)
    try:
        est = os.stat(proc.path(pid, 'exe'))
    except OSError as e:
        return None, 'cannot stat its executable: %s' % (e.strerror or e)
    if est.st_uid != 0 or est.st_mode & 0o022:
        return None, 'its executable is not root-owned or is writable by others'
    if any(u != 0 for u in status.get('Uid') or [1]):
        return None, 'does not run as root'
    for kind in ('pid', 'mnt'):
        mine, host = proc.ns(pid, kind), host_ns(proc, kind)
        if mine is None or host is None or mine != host:
            return None, 'not in the host %s namespace' % kind
    caught = catches_sigusr1(proc, pid)
    if caught is None:
        return None, 'its signal mask cannot be read'
    if not caught:
        return None, 'does not catch SIGUSR1 (SigCgt): the signal would end it'
    kind = KIND.get(exe_name, 'shim')
    return Target(pid=pid, starttime=st['starttime'], comm=comm, exe=exe_text, kind=kind), None


def host_ns(proc, kind):
    """The host's namespace of KIND: PID 1's; where PID 1 is more privileged
    than this module (its links cannot be read), this module's own, as the
    Kubernetes-node check does."""
    ns = proc.ns(1, kind)
    if ns is None and os.path.realpath(proc.root) == '/proc':
        try:
            ns = os.readlink('/proc/self/ns/%s' % kind)
        except OSError:
            ns = None
    return ns


class RateLimited(HangdoctorError):
    """A capture this node may not make now (its last one is too recent), or
    whose stamp file cannot be trusted."""


def _rate_limit(lock_dir, min_interval, now):
    """Raise RateLimited when the node's last capture is younger than
    MIN_INTERVAL seconds, else record NOW as the last capture."""
    real, dfd = _evidence.open_private_dir(lock_dir, 'lock_dir')
    try:
        try:
            st = os.stat(STAMP, dir_fd=dfd, follow_symlinks=False)
            if not stat_mod.S_ISREG(st.st_mode):
                raise RateLimited('%s/%s is not a regular file' % (real, STAMP))
            age = now - st.st_mtime
            if min_interval and -60 < age < min_interval:
                raise RateLimited('rate limited: the last capture on this node was %.0fs ago (stacks_min_interval %ss)'
                                  % (max(age, 0), min_interval))
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise RateLimited('cannot check %s/%s: %s' % (real, STAMP, e.strerror or e))
        fd = os.open(STAMP, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0), 0o600, dir_fd=dfd)
        try:
            os.utime(fd, (now, now))
        finally:
            os.close(fd)
    finally:
        os.close(dfd)


# ---- where each daemon writes ----------------------------------------------
V1_SHIM_EXES = ('containerd-shim', 'docker-containerd-shim')
V1_STDERR_FIFO = 'shim.stderr.log'
CONTAINERD_COMMS = ('containerd', 'docker-containe')
MAX_READER_FDS = 4096


def is_v1_shim(target):
    return target.kind == 'shim' and os.path.basename(target.exe.replace(' (deleted)', '')) in V1_SHIM_EXES


def v1_shim_route(proc, pid, cmdline_timeout=1.0):
    """Where v1 shim PID's dump can be read without taking anything:
    ((path, size before), None) for a regular file, or (None, why not)."""
    try:
        link = proc.fd_link(pid, 2)
    except _procfs.ProcError as e:
        return None, 'v1 shim: its stderr cannot be read: %s' % e
    if link.startswith('/'):
        log, size = _log_file(proc, pid)
        if log:
            return (log, size), None
        return None, 'v1 shim: its stderr %s is not a regular file; reading it would take its reader\'s bytes: ' \
            'not signalled' % link
    if _procfs.pipe_inode_of(link) is None:
        return None, 'v1 shim: its stderr is %s, not a file or pipe that can be read safely: not signalled' % link
    try:
        parent = proc.stat(pid)['ppid']
        comm = proc.comm(parent)
    except _procfs.ProcError:
        parent, comm = None, None
    if comm not in CONTAINERD_COMMS or not _holds(proc, parent, link):
        return None, ('v1 shim: its stderr is a pipe (%s) whose reader is not its parent containerd; reading it '
                      'would take the reader\'s bytes: not signalled' % link)
    debug, config = _shim_debug(proc, parent, cmdline_timeout)
    if debug is False:
        return None, ('v1 shim: its stderr is a pipe to containerd %d, which passes it through the FIFO '
                      '%s/shim.stderr.log and discards it (shim_debug is not true in %s); reading the pipe or the '
                      'FIFO would take containerd\'s bytes: not signalled. With shim_debug = true containerd copies '
                      'the dump into its own log, where it is collected' % (parent, _workdir(proc, pid), config))
    log, size = _log_file(proc, parent)
    if not log:
        return None, ('v1 shim: containerd %d copies its stderr into its own stderr, which is not a regular file '
                      '(journald or a pipe): not signalled' % parent)
    return (log, size), None


def _workdir(proc, pid):
    try:
        argv = proc.cmdline(pid, timeout=1.0)
    except _procfs.ProcError:
        argv = []
    for i, a in enumerate(argv[:-1]):
        if a in ('-workdir', '--workdir'):
            return argv[i + 1]
    return '<workdir>'


_SHIM_DEBUG_RE = re.compile(r'^[ \t]*shim_debug[ \t]*=[ \t]*true[ \t]*(#.*)?$', re.M)
MAX_CONFIG_BYTES = 1024 * 1024


def _shim_debug(proc, pid, cmdline_timeout):
    """(True | False | None, config path) for containerd PID: whether its
    config sets shim_debug = true (the only key of that name: the v1
    runtime's); False for a config file that does not exist (the default is
    off); None when the config cannot be read."""
    try:
        argv = proc.cmdline(pid, timeout=cmdline_timeout)
    except _procfs.ProcError:
        return None, None
    path = '/etc/containerd/config.toml'
    for i, a in enumerate(argv[1:], 1):
        if a in ('--config', '-c') and i + 1 < len(argv):
            path = argv[i + 1]
        elif a.startswith('--config='):
            path = a.split('=', 1)[1]
    if not path.startswith('/'):
        return None, path  # relative to containerd's working directory: not guessed
    try:
        text = _procfs.read_regular_file(proc.host_view(pid, path), MAX_CONFIG_BYTES, timeout=1.0)
    except _procfs.ProcessGone:
        return False, path
    except _procfs.ProcError:
        return None, path
    return bool(_SHIM_DEBUG_RE.search(text.decode('utf-8', 'replace'))), path


def _holds(proc, pid, link):
    try:
        names = os.listdir(proc.path(pid, 'fd'))
    except OSError:
        return False
    for name in names[:MAX_READER_FDS]:
        try:
            if os.readlink(proc.path(pid, 'fd', name)) == link:
                return True
        except OSError:
            continue
    return False


def _log_file(proc, pid):
    """The regular file behind PID's stderr (or stdout), or None (journald, a pipe)."""
    for fd in (2, 1):
        try:
            link = proc.fd_link(pid, fd)
        except _procfs.ProcError:
            continue
        if link.startswith('/') and not link.endswith(' (deleted)'):
            try:
                st = os.stat(proc.path(pid, 'fd', str(fd)))
            except OSError:
                continue
            if stat_mod.S_ISREG(st.st_mode):
                return proc.host_view(pid, link), st.st_size
    return None, 0


def _exec_root(proc, pid, timeout):
    try:
        argv = proc.cmdline(pid, timeout=timeout)
    except _procfs.ProcError:
        argv = []
    root = '/var/run/docker'
    for i, a in enumerate(argv):
        if a == '--exec-root' and i + 1 < len(argv):
            root = argv[i + 1]
        elif a.startswith('--exec-root='):
            root = a.split('=', 1)[1]
    return proc.host_view(pid, root)


def _dockerd_dumps(exec_root):
    try:
        return set(n for n in os.listdir(exec_root) if n.startswith('goroutine-stacks-') and n.endswith('.log'))
    except OSError:
        return set()


def _size_mtime(path):
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return (st.st_size, st.st_mtime) if stat_mod.S_ISREG(st.st_mode) else None


class _Watch(object):
    """What one target had before the signal, to find what it wrote after."""

    def __init__(self, proc, target, cmdline_timeout):
        self.target = target
        self.files = []
        self.file_before = {}
        self.exec_root = None
        self.log, self.log_size = _log_file(proc, target.pid)
        self.pid_field = None
        # a v1 shim's dump, where it lands (its containerd's log), or why it cannot be read
        self.v1_log, self.v1_why = None, None
        if is_v1_shim(target):
            route, self.v1_why = v1_shim_route(proc, target.pid, cmdline_timeout)
            if route and route[0] != self.log:
                self.v1_log = route
        if target.kind == 'dockerd':
            self.exec_root = _exec_root(proc, target.pid, cmdline_timeout)
            self.before = _dockerd_dumps(self.exec_root)
        elif target.kind == 'containerd':
            path = proc.host_view(target.pid, '/tmp/containerd.%d.stacks.log' % target.pid)
            self.files = [path]
            self.file_before = {path: _size_mtime(path)}

    def new_files(self):
        if self.exec_root is not None:
            return [os.path.join(self.exec_root, n) for n in sorted(_dockerd_dumps(self.exec_root) - self.before)]
        return [p for p in self.files if _size_mtime(p) is not None and _size_mtime(p) != self.file_before.get(p)]


def _open_dump(path):
    """An fd of PATH: a regular root-owned file, opened without following a
    symlink and without blocking on a FIFO."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, 'O_NOCTTY', 0) | getattr(os, 'O_CLOEXEC', 0)
    fd = os.open(path, flags)
    st = os.fstat(fd)
    if not stat_mod.S_ISREG(st.st_mode) or st.st_uid != 0:
        os.close(fd)
        raise OSError(errno.EPERM, 'not a regular root-owned file')
    return fd, st


def _stable(path, timeout):
    """Wait until PATH stops growing (the daemon writes it in one go)."""
    deadline = time.monotonic() + timeout
    last = _size_mtime(path)
    while time.monotonic() < deadline:
        time.sleep(POLL)
        now = _size_mtime(path)
        if now == last and now is not None and now[0] > 0:
            return True
        last = now
    return False


class _Copy(object):
    """Copies bytes into one evidence file while parsing them."""

    def __init__(self, open_dir, name, header, limit):
        self.ev = _evidence.Evidence(open_dir, name, header, limit=limit)
        self.parser = _gostacks.DumpParser()

    def add(self, data):
        self.ev.add(data)
        self.parser.feed(data)

    def close(self, source):
        self.ev.close()
        parsed = self.parser.result()
        out = {'path': self.ev.path, 'sha256': self.ev.sha.hexdigest(), 'bytes': self.ev.total, 'source': source,
               'goroutines': parsed['goroutines'], 'format': parsed['format'],
               'fingerprints': parsed['fingerprints'], 'groups': parsed['groups'][:10]}
        if self.ev.error:
            out['error'] = self.ev.error
        return out


def _copy_file(open_dir, target, path, opts):
    fd, st = _open_dump(path)
    try:
        c = _Copy(open_dir, _name(target, 'file'), _header(target, path), opts.stacks_max_bytes)
        left = MAX_DUMP_READ
        while left > 0:
            data = os.read(fd, READ_CHUNK)
            if not data:
                break
            left -= len(data)
            c.add(data)
    finally:
        os.close(fd)
    return c.close(path)


def _unescape(text):
    """A logrus msg="..." value back to its lines."""
    return text.replace(b'\\n', b'\n').replace(b'\\t', b'\t').replace(b'\\"', b'"').replace(b'\\\\', b'\\')


def _log_blocks(path, offset, pid_field):
    """The dumps logged in PATH after OFFSET: [(pid field or None, bytes)]."""
    fd, st = _open_dump(path)
    try:
        os.lseek(fd, offset if st.st_size >= offset else 0, os.SEEK_SET)
        chunks = []
        left = MAX_LOG_READ
        while left > 0:
            chunk = os.read(fd, min(READ_CHUNK, left))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    data = b''.join(chunks)
    out = []
    for line in data.split(b'\n'):
        i = line.find(BEGIN)
        if i < 0:
            continue
        j = line.find(END, i)
        if j < 0:
            continue
        rest = line[j + len(END):]
        m = re.search(br'\bpid=(\d+)', rest)
        out.append((int(m.group(1)) if m else None, _unescape(line[i + len(BEGIN):j])))
    return out


def _name(target, how):
    return 'stacks-%s-%d-%d-%s-%s.log' % (_NAME_RE.sub('_', target.kind), target.pid, target.starttime, how,
                                          _stamp(time.time()))


def _header(target, source):
    return ['hangdoctor goroutine stacks', 'process: %s pid %d starttime %d exe %s' % (
        target.kind, target.pid, target.starttime, target.exe), 'source: %s' % source,
        'captured: %s' % _stamp(time.time())]


def _targets_of(chain):
    """The pids of the Go daemons on CHAIN (links of role engine and shim),
    each once, in chain order."""
    seen = []
    for link in chain or []:
        if not isinstance(link, dict) or link.get('role') not in ('engine', 'shim'):
            continue
        pid = link.get('pid')
        if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 and pid not in seen:
            seen.append(pid)
    return seen


def capture_for(chain, options, evidence_dir, lock_dir=None, proc=None):
    """Capture, copy and fingerprint the goroutine stacks of the daemons on
    CHAIN (``diagnosis.chain`` links; engine and shim links are asked).

    OPTIONS is the stacks option object (``_options.STACKS``).  Returns
    ``{files: [{path, sha256, bytes, source, pid, kind, goroutines,
    fingerprints}], fingerprints: [str], refused: [{pid, reason}],
    not_collected: [{pid, reason}], retention: {removed, removed_bytes}
    or {error}}``; nothing is signalled when ``capture_stacks`` is off.
    After a capture the older stacks files of EVIDENCE_DIR are bounded by
    the ``stacks_retention_*`` options (``retention``)."""
    proc = proc or _procfs.Proc('/proc')
    out = {'files': [], 'fingerprints': [], 'refused': [], 'not_collected': [], 'signalled': []}
    if not options.capture_stacks:
        return out
    pids = _targets_of(chain)
    own, why = _procfs.own_pid_namespace(proc)
    if not own:
        # its pids would name other processes than os.kill reaches
        out['refused'].extend({'pid': pid, 'reason': why} for pid in pids)
        return out
    targets = []
    for pid in pids:
        t, why = identify(proc, pid)
        if t is None:
            out['refused'].append({'pid': pid, 'reason': why})
        else:
            targets.append(t)
    if not targets:
        return out
    now = time.time()
    try:
        _rate_limit(lock_dir or _defaults.DEFAULT_LOCK_DIR, options.stacks_min_interval, now)
    except (RateLimited, _evidence.EvidenceError) as e:
        out['refused'].extend({'pid': t.pid, 'reason': str(e)} for t in targets)
        return out
    try:
        open_dir = _evidence.EvidenceDir(evidence_dir)
    except _evidence.EvidenceError as e:
        out['refused'].extend({'pid': t.pid, 'reason': 'no evidence directory: %s' % e} for t in targets)
        return out
    try:
        _signal_and_collect(proc, targets, options, open_dir=open_dir, out=out)
        out['retention'] = retain(open_dir, options, keep=[f['path'] for f in out['files'] if f.get('path')])
    finally:
        open_dir.close()
    fps = []
    for f in out['files']:
        for fp in f.get('fingerprints') or []:
            text = '%s' % _gostacks.short(fp)
            if text not in fps:
                fps.append(text)
    out['fingerprints'] = fps
    return out


def retain(open_dir, options, keep=(), now=None):
    """Bound the goroutine-stack evidence of OPEN_DIR (an ``_evidence.EvidenceDir``)
    by OPTIONS' ``stacks_retention_count`` / ``_bytes`` / ``_days``, oldest
    first: only regular files named by ``_name`` (STACKS_RE, checked
    without following symlinks, in that directory only), never the paths in
    KEEP (this capture's) nor a file modified in the last hour.  Returns
    {removed, removed_bytes}, or {error} when the directory cannot be listed."""
    names = set(os.path.basename(p) for p in keep)
    try:
        return _evidence.apply_retention(open_dir, count=options.stacks_retention_count,
                                         max_bytes=options.stacks_retention_bytes,
                                         days=options.stacks_retention_days, keep=names, now=now, pattern=STACKS_RE)
    except OSError as e:
        return {'error': 'retention of %s: %s' % (open_dir.path, e.strerror or e)}


def _signal_and_collect(proc, targets, options, open_dir, out):
    watches = []
    containerd_logs = {}
    for t in targets:
        w = _Watch(proc, t, options.stacks_cmdline_timeout)
        # re-checked at the last moment: the pid may have been reused since
        again, why = identify(proc, t.pid)
        if again is None or again.starttime != t.starttime:
            out['refused'].append({'pid': t.pid, 'reason': why or 'pid reused (start time changed)'})
            continue
        if w.v1_why:
            # nothing could be read of its dump: it is not signalled for nothing
            out['not_collected'].append({'pid': t.pid, 'reason': w.v1_why})
            continue
        try:
            os.kill(t.pid, signal.SIGUSR1)
        except OSError as e:
            out['refused'].append({'pid': t.pid, 'reason': 'kill failed: %s' % (e.strerror or e)})
            continue
        out['signalled'].append({'pid': t.pid, 'kind': t.kind, 'comm': t.comm})
        watches.append(w)
        if t.kind == 'containerd' and w.log:
            containerd_logs[w.log] = w.log_size
    deadline = time.monotonic() + options.stacks_timeout
    pending = list(watches)
    while pending and time.monotonic() < deadline:
        time.sleep(POLL)
        for w in list(pending):
            if w.target.kind in ('dockerd', 'containerd') and w.new_files():
                pending.remove(w)
            elif w.target.kind == 'shim' and any(
                    pid_field == w.target.pid for log, size in sorted(containerd_logs.items()) + (
                        [w.v1_log] if w.v1_log else [])
                    for pid_field, dummy in _safe_blocks(log, size)):
                pending.remove(w)
    for w in watches:
        t = w.target
        got = False
        for path in w.new_files():
            if not _stable(path, max(0.5, deadline - time.monotonic())):
                out['not_collected'].append({'pid': t.pid, 'reason': '%s still growing at the deadline' % path})
            try:
                f = _copy_file(open_dir, t, path, options)
            except OSError as e:
                out['not_collected'].append({'pid': t.pid, 'reason': 'cannot read %s: %s' % (path, e.strerror or e)})
                continue
            f.update(pid=t.pid, kind=t.kind)
            out['files'].append(f)
            got = True
        if got:
            continue
        logs = [(w.log, w.log_size)] if w.log else []
        if t.kind == 'shim':
            logs += sorted(containerd_logs.items()) + ([w.v1_log] if w.v1_log else [])
        for log, size in logs:
            for pid_field, body in _safe_blocks(log, size):
                if pid_field not in (None, t.pid) or (pid_field is None and t.kind == 'shim' and log != w.log):
                    continue
                c = _Copy(open_dir, _name(t, 'log'), _header(t, log), options.stacks_max_bytes)
                c.add(body)
                f = c.close(log)
                f.update(pid=t.pid, kind=t.kind)
                out['files'].append(f)
                got = True
                break
            if got:
                break
        if not got:
            out['not_collected'].append({'pid': t.pid, 'reason': 'no dump found within %ss (%s)' % (
                options.stacks_timeout, 'its log is not a file: journald or a pipe' if not logs else
                'looked in %s' % ', '.join(p for p, dummy in logs))
                + ('; containerd copies a v1 shim\'s stderr into its log only with shim_debug = true'
                   if w.v1_log else '')})


def _safe_blocks(log, size):
    try:
        return _log_blocks(log, size, None)
    except OSError:
        return []


# ---- the chain node_doctor knows before the triage names one -----------------
def _socket_inodes(path):
    """Inodes of the listening unix sockets bound to PATH (this net namespace's /proc/net/unix)."""
    inodes = set()
    try:
        text = _procfs.read_regular_file('/proc/net/unix', 64 * 1024 * 1024, timeout=2.0, truncate=True)
    except _procfs.ProcError:
        return inodes
    want = path.encode('utf-8', 'replace')
    for line in text.split(b'\n')[1:]:
        parts = line.split()
        if len(parts) >= 8 and parts[7] == want:
            try:
                inodes.add(int(parts[6]))
            except ValueError:
                pass
    return inodes


def engine_pids(proc, socket_paths):
    """Pids of the dockerd / containerd processes that listen on SOCKET_PATHS
    (another engine on the node is not asked)."""
    links = set()
    for p in socket_paths:
        links.update('socket:[%d]' % i for i in _socket_inodes(p))
    found = []
    if not links:
        return found
    for pid in proc.pids():
        try:
            comm = proc.comm(pid)
        except _procfs.ProcError:
            continue
        if comm not in ('dockerd', 'containerd', 'docker-containe'):
            continue
        try:
            fds = os.listdir(proc.path(pid, 'fd'))
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(proc.path(pid, 'fd', fd)) in links:
                    found.append(pid)
                    break
            except OSError:
                continue
    return found


def chain_of(stuck_exec, engines):
    """A minimal chain for one stuck exec record: its engines and its shim."""
    chain = [{'role': 'engine', 'pid': pid} for pid in engines]
    shim = (stuck_exec or {}).get('shim') or {}
    if shim.get('pid'):
        chain.append({'role': 'shim', 'pid': shim['pid']})
    return chain
