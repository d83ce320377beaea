# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The drain (private module_utils): repair a stuck exec by reading its
stderr pipe, keeping every byte as evidence.

A stuck exec is a runc init (or, once runc init died, ``runc exec``) blocked
in write(2) on the pipe whose only reader is a containerd shim that will not
read before ``runc exec`` returns.  Reading that pipe ourselves lets the writer
finish; the shim then collects ``runc exec``'s exit and the container's
exec-store lock in dockerd is released.

Order of one drain: lock (one drain per pipe per host) -> done marker (a
racing run skips) -> verify every hard signal and the identity -> re-check
(pid, starttime) -> open /proc/PID/fd/2 non-blocking with an fstat inode check
-> read with poll into the evidence file until no writer is blocked on the pipe
*and* it is empty -> optional SIGKILL fallback -> mark done -> Engine check.

Target-side code: Python 3.6+ syntax and stdlib only.  Nothing here calls
``fail_json``: bad input raises :class:`DrainError`.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import fcntl
import hashlib
import os
import select
import signal
import socket
import stat as stat_mod
import time

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs

# Both are written in parallel with this file; imported optionally so that the
# drain stays usable (and unit-testable) with injected functions meanwhile.
try:
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _stuck_exec
except ImportError:
    _stuck_exec = None

try:
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _engine_api
except ImportError:
    _engine_api = None


HEADER_END = b'----- hangdoctor: pipe bytes follow -----\n'
ELIDED_MARK = b'\n----- hangdoctor: %d bytes elided -----\n'
TRAILER_MARK = b'\n----- hangdoctor: end of pipe bytes'

RECURRING_HINT = (
    'the container deadlocked again after its pipe was drained: the cause persists '
    '(usually its memory cgroup at its limit). Raise the memory limit, restart the '
    'container, or move its exec probes off exec (hangdoctor.runtime.exec_probe_convert).')

SKIP_LOCKED = 'locked'
SKIP_DONE = 'already drained'
SKIP_STALE = 'no longer matches'
SKIP_YOUNG = 'younger than min_age_seconds'
SKIP_NO_SHIM = 'pipe reader is not a shim'
SKIP_MALFORMED = 'malformed record'
SKIP_EVIDENCE = 'evidence file not writable'

# A writer is settled after this many consecutive samples, with the pipe empty,
# in which it sleeps somewhere other than write(2) on the pipe.
SETTLE_SAMPLES = 2
# After a SIGKILL, how long to keep reading what the dead writer left and the
# error line runc exec writes next.
KILL_GRACE_SECONDS = 5.0


class DrainError(Exception):
    """Bad input or an unusable evidence directory."""


# What verify() may raise for a record it cannot read.
VERIFY_ERRORS = (DrainError, KeyError, TypeError, ValueError)
if _stuck_exec is not None and hasattr(_stuck_exec, 'DiagnosisError'):
    VERIFY_ERRORS += (_stuck_exec.DiagnosisError,)


# ---- records ---------------------------------------------------------------
def _int(value, what):
    if isinstance(value, bool):
        raise DrainError('%s must be an integer, got %r' % (what, value))
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DrainError('%s must be an integer, got %r' % (what, value))


def check_record(record):
    """Validate the fields the drain relies on (a record from runc_exec_info
    or a hand-written one); return a normalized summary dict."""
    if not isinstance(record, dict):
        raise DrainError('a stuck exec record must be a dict, got %s' % type(record).__name__)
    cid = record.get('container_id')
    if not cid or not isinstance(cid, str):
        raise DrainError('stuck exec record without container_id')
    writer = record.get('writer')
    if not isinstance(writer, dict):
        raise DrainError('stuck exec record for %s has no writer' % cid[:12])
    role = writer.get('role')
    if role not in ('runc_init', 'runc_exec'):
        raise DrainError('stuck exec record for %s: writer.role must be runc_init or runc_exec, got %r' % (cid[:12], role))
    pipe = record.get('pipe')
    if not isinstance(pipe, dict):
        raise DrainError('stuck exec record for %s has no pipe' % cid[:12])
    readers = record.get('readers')
    if not isinstance(readers, list):
        raise DrainError('stuck exec record for %s: readers must be a list' % cid[:12])
    out = {
        'container_id': cid,
        'role': role,
        'pid': _int(writer.get('pid'), 'writer.pid'),
        'start_time': _int(writer.get('start_time'), 'writer.start_time'),
        'inode': _int(pipe.get('inode'), 'pipe.inode'),
        'fd': _int(pipe.get('fd', 2), 'pipe.fd'),
        'watch': [],
    }
    out['watch'].append((out['pid'], out['start_time']))
    # runc exec writes its own error line to the same pipe once runc init is
    # gone: watch it too, or the drain stops just before it blocks.
    rexec = record.get('runc_exec')
    if role == 'runc_init' and isinstance(rexec, dict) and rexec.get('pid') and rexec.get('start_time') is not None:
        out['watch'].append((_int(rexec.get('pid'), 'runc_exec.pid'), _int(rexec.get('start_time'), 'runc_exec.start_time')))
    return out


def has_shim_reader(record):
    return any(isinstance(r, dict) and r.get('is_shim') for r in record.get('readers') or [])


# ---- evidence directory, locks --------------------------------------------
def prepare_evidence_dir(path):
    """Create (0700) or check the evidence directory; return its real path.
    Refuses a relative path and a symlink owned by another user (someone could
    point our root-owned evidence files anywhere)."""
    if not path or not os.path.isabs(path):
        raise DrainError('evidence_dir must be an absolute path, got %r' % (path,))
    try:
        st = os.lstat(path)
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise DrainError('evidence_dir %s: %s' % (path, e.strerror))
        try:
            os.makedirs(path, 0o700)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise DrainError('cannot create evidence_dir %s: %s' % (path, e.strerror))
        st = os.lstat(path)
    if stat_mod.S_ISLNK(st.st_mode) and st.st_uid != os.geteuid():
        raise DrainError('evidence_dir %s is a symlink owned by uid %d, refusing it' % (path, st.st_uid))
    real = os.path.realpath(path)
    try:
        rst = os.stat(real)
    except OSError as e:
        raise DrainError('evidence_dir %s: %s' % (path, e.strerror))
    if not stat_mod.S_ISDIR(rst.st_mode):
        raise DrainError('evidence_dir %s is not a directory' % path)
    if rst.st_uid == os.geteuid() and rst.st_mode & 0o077:
        os.chmod(real, 0o700)
    locks = os.path.join(real, '.locks')
    try:
        os.mkdir(locks, 0o700)
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise DrainError('cannot create %s: %s' % (locks, e.strerror))
    lst = os.lstat(locks)
    if not stat_mod.S_ISDIR(lst.st_mode):
        raise DrainError('%s is not a directory' % locks)
    return real


class PipeLock(object):
    """flock(LOCK_EX|LOCK_NB) on ``.locks/<inode>-<pid>-<starttime>.lock``: one
    drain per pipe and writer on a host, across concurrent runs.  A ``.done``
    file next to it tells a run that raced (it saw the record before the drain)
    that this exact stuck exec was already drained."""

    def __init__(self, evidence_dir, inode, pid, start_time):
        base = os.path.join(evidence_dir, '.locks', '%d-%d-%d' % (inode, pid, start_time))
        self.path = base + '.lock'
        self.done_path = base + '.done'
        self.fd = None

    def acquire(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (IOError, OSError) as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                return False
            raise
        self.fd = fd
        return True

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def is_done(self):
        return os.path.lexists(self.done_path)

    def mark_done(self, text):
        fd = os.open(self.done_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0), 0o600)
        try:
            _write_all(fd, text.encode('utf-8'))
        finally:
            os.close(fd)


# ---- evidence file ---------------------------------------------------------
def _write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _utc(epoch, fmt='%Y-%m-%dT%H:%M:%S'):
    return '%s.%06dZ' % (time.strftime(fmt, time.gmtime(epoch)), int((epoch % 1) * 1000000))


def evidence_name(container_id, pid, start_time, epoch):
    return '%s-%d-%d-%s.log' % (container_id[:12], pid, start_time, _utc(epoch, '%Y%m%dT%H%M%S'))


class Evidence(object):
    """Every byte read from the pipe goes through :meth:`add`: all are counted
    and hashed; the file keeps them all, or past ``limit`` the head and the
    tail with the elided count.  Created 0600 with O_EXCL|O_NOFOLLOW so a
    planted file or symlink is never written through."""

    def __init__(self, path, header_lines, limit=0):
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0), 0o600)
        self.limit = max(0, int(limit or 0))
        self.head_room = self.limit - self.limit // 2 if self.limit else None
        self.tail_limit = self.limit // 2
        self.tail = bytearray()
        self.total = 0
        self.kept_head = 0
        self.sha = hashlib.sha256()
        self.elided = 0
        self.error = None
        try:
            _write_all(self.fd, ''.join('%s\n' % line for line in header_lines).encode('utf-8', 'replace') + HEADER_END)
        except Exception:
            self.abort()
            raise

    def add(self, data):
        if not data:
            return
        self.total += len(data)
        self.sha.update(data)
        try:
            self._keep(data)
        except (IOError, OSError) as e:
            # a full disk must not stop the repair: keep counting and hashing
            if self.error is None:
                self.error = 'writing %s failed after %d bytes: %s' % (self.path, self.total, e.strerror or e)
            self.head_room = 0
            self.tail_limit = 0
            self.tail = bytearray()

    def _keep(self, data):
        if self.head_room is None:
            _write_all(self.fd, data)
            self.kept_head += len(data)
            return
        if self.head_room > 0:
            head = data[:self.head_room]
            _write_all(self.fd, head)
            self.kept_head += len(head)
            self.head_room -= len(head)
            data = data[len(head):]
        if data:
            self.tail += data
            over = len(self.tail) - self.tail_limit
            if over > 0:
                del self.tail[:over]

    @property
    def truncated(self):
        return self.total > self.kept_head + len(self.tail)

    def close(self, note=''):
        self.elided = self.total - self.kept_head - len(self.tail)
        if self.error:
            note = '; '.join(n for n in (note, self.error) if n)
        try:
            if self.elided > 0:
                _write_all(self.fd, ELIDED_MARK % self.elided)
            _write_all(self.fd, bytes(self.tail))
            trailer = ': %d bytes read, sha256 %s, %d elided%s -----\n' % (
                self.total, self.sha.hexdigest(), self.elided, ('; ' + note) if note else '')
            _write_all(self.fd, TRAILER_MARK + trailer.encode('utf-8'))
            os.fsync(self.fd)
        finally:
            os.close(self.fd)
            self.fd = None

    def abort(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def read_evidence(path):
    """(header text, kept body bytes, trailer text) of an evidence file."""
    with open(path, 'rb') as f:
        data = f.read()
    head, sep, rest = data.partition(HEADER_END)
    if not sep:
        raise DrainError('%s is not a hangdoctor evidence file' % path)
    cut = rest.rfind(TRAILER_MARK)
    if cut < 0:
        return head.decode('utf-8', 'replace'), rest, ''
    return head.decode('utf-8', 'replace'), rest[:cut], rest[cut + 1:].decode('utf-8', 'replace')


# ---- the writer ------------------------------------------------------------
GONE = 'gone'
BLOCKED = 'blocked'
RUNNABLE = 'runnable'
SETTLED = 'settled'


def writer_state(proc, pid, start_time, inode, machine=None):
    """Where a watched writer is now: ``gone`` (exited, zombie or pid reused),
    ``blocked`` (in write(2)/writev(2) on pipe INODE), ``runnable`` (a task
    woken inside write(2) shows as "running" too, so it is not yet settled),
    or ``settled`` (asleep somewhere else)."""
    try:
        st = proc.stat(pid)
        if st['starttime'] != start_time or st['state'] in ('Z', 'X', 'x'):
            return GONE
        if st['state'] == 'R':
            return RUNNABLE
        sc = proc.syscall(pid)
    except _procfs.ProcessGone:
        return GONE
    except _procfs.ProcError:
        sc = None
    if sc is None:
        # /proc/PID/syscall unreadable (ptrace policy): fall back to wchan + fd 2
        try:
            in_write = proc.wchan(pid) in _procfs.PIPE_WRITE_WCHANS
            fd = 2
        except _procfs.ProcError:
            return SETTLED
    elif sc['running']:
        return RUNNABLE
    else:
        in_write = _procfs.write_syscall_name(sc['nr'], machine or proc.machine()) is not None
        fd = sc['args'][0] if sc['args'] else None
    if not in_write or fd is None:
        return SETTLED
    try:
        return BLOCKED if _procfs.pipe_inode_of(proc.fd_link(pid, fd)) == inode else SETTLED
    except _procfs.ProcessGone:
        return GONE
    except _procfs.ProcError:
        return SETTLED


def _read_available(f, evidence, chunk=65536):
    got = 0
    while True:
        try:
            data = os.read(f, chunk)
        except (IOError, OSError) as e:
            if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                return got
            if e.errno == errno.EINTR:
                continue
            raise
        if not data:
            # every write end closed: nothing more can come
            return got
        evidence.add(data)
        got += len(data)


def drain_pipe(proc, f, inode, watch, evidence, deadline, clock=time.monotonic, sample_interval=0.02, machine=None):
    """Read pipe F into EVIDENCE until the writer is no longer blocked on it
    and it is empty, or DEADLINE (``clock()`` time).  WATCH: [(pid,
    start_time)], the stuck writer first, then runc exec (which must not be
    blocked either).

    Returns (outcome, states): outcome ``writer exited``, ``writer settled``
    (not in write on the pipe for SETTLE_SAMPLES consecutive samples while it
    was empty) or ``timeout``.  Both halves of the stop rule matter: bytes a
    dead runc init wrote stay in the pipe until read, and a still-full pipe
    blocks runc exec's own error line next."""
    poller = select.poll()
    poller.register(f, select.POLLIN)
    quiet = 0
    states = []
    while True:
        if clock() >= deadline:
            return 'timeout', states
        if _read_available(f, evidence):
            quiet = 0
        states = [writer_state(proc, pid, st, inode, machine) for pid, st in watch]
        # the pipe may have filled again between the read and the sample
        if _read_available(f, evidence):
            quiet = 0
            continue
        # watch[0] is the stuck writer; the others (runc exec) only must not
        # be blocked, so that their next line is left for the shim
        if BLOCKED in states[1:]:
            quiet = 0
        elif states[0] == GONE:
            return 'writer exited', states
        elif states[0] == SETTLED:
            quiet += 1
            if quiet >= SETTLE_SAMPLES:
                return 'writer settled', states
        else:
            quiet = 0
        left = deadline - clock()
        if left > 0:
            # PEP 475: poll retries by itself on EINTR
            poller.poll(int(min(sample_interval, left) * 1000) or 1)


def pipe_left(f):
    try:
        return _procfs.pipe_queued(f)
    except (IOError, OSError):
        return None


# ---- the Docker Engine check ----------------------------------------------
def engine_check(docker_host, timeout):
    """A function (container id) -> (verified, reason): does
    ``GET /containers/<id>/json`` answer within TIMEOUT seconds.  ``None`` when
    it cannot be asked (no Engine client, no socket)."""
    def check(container_id):
        if not docker_host:
            return None, 'no docker_host given'
        if _engine_api is None:
            return None, 'the Docker Engine client (_engine_api) is not available'
        if docker_host.startswith('unix://'):
            sock = docker_host[len('unix://'):]
            if not os.path.exists(sock):
                return None, 'docker socket %s not found' % sock
        try:
            client = _engine_api.EngineClient(docker_host, timeout=timeout)
            client.inspect(container_id, timeout=timeout)
        except _engine_api.EngineTimeout:
            return False, 'inspect of %s did not answer within %ss' % (container_id[:12], timeout)
        except _engine_api.EngineUnreachable as e:
            return None, 'docker engine unreachable: %s' % e
        except _engine_api.EngineError as e:
            # an error reply (a removed container) still proves the exec lock is free
            return True, 'engine answered: %s' % e
        except (socket.error, OSError) as e:
            return None, 'docker engine unreachable: %s' % e
        return True, ''
    return check


def _no_engine(container_id):
    return None, 'no Docker Engine check configured'


def _not_yet(container_id):
    return None, 'checked after the last round'


# ---- one drain -------------------------------------------------------------
def _header(record, info, hostname, now, proc):
    pod = record.get('pod') or {}
    cause = record.get('cause') or {}
    shim = record.get('shim') or {}
    rexec = record.get('runc_exec') or {}
    try:
        started = _utc(proc.start_epoch(info['start_time']))
    except _procfs.ProcError:
        started = 'unknown'
    pipe = record.get('pipe') or {}
    return [
        'hangdoctor.runtime.runc_pipe_drain evidence',
        'host: %s' % hostname,
        'container: %s' % info['container_id'],
        'pod: %s/%s container %s' % (pod.get('namespace') or '-', pod.get('name') or '-', pod.get('container') or '-'),
        'writer: %s pid %d start_time %d (started %s)' % (info['role'], info['pid'], info['start_time'], started),
        'runc_exec: pid %s' % (rexec.get('pid') or '-'),
        'shim: pid %s version %s' % (shim.get('pid') or '-', shim.get('version') or '-'),
        'pipe: inode %d capacity %s queued %s (at diagnosis)' % (info['inode'], pipe.get('capacity'), pipe.get('queued')),
        'cause: %s: %s' % (cause.get('kind') or 'unknown', cause.get('summary') or '-'),
        'drained_at: %s' % _utc(now),
    ]


def _age(proc, info, record, clock):
    try:
        return max(0.0, clock() - proc.start_epoch(info['start_time']))
    except _procfs.ProcError:
        age = record.get('age_seconds')
        return float(age) if isinstance(age, (int, float)) else 0.0


def _skip(info_or_record, reason, detail=''):
    if isinstance(info_or_record, dict) and 'role' in info_or_record:
        cid, pid = info_or_record['container_id'], info_or_record['pid']
    else:
        rec = info_or_record if isinstance(info_or_record, dict) else {}
        cid = rec.get('container_id')
        pid = (rec.get('writer') or {}).get('pid') if isinstance(rec.get('writer'), dict) else None
    return 'skipped', {'container_id': cid, 'pid': pid, 'reason': reason, 'detail': detail}


def preflight(proc, record, min_age_seconds, clock=time.time):
    """The checks that need no lock: (info, None) or (None, skipped entry)."""
    try:
        info = check_record(record)
    except DrainError as e:
        return None, _skip(record, SKIP_MALFORMED, str(e))[1]
    if not has_shim_reader(record):
        return None, _skip(info, SKIP_NO_SHIM, 'no reader of pipe:[%d] is a containerd shim' % info['inode'])[1]
    if min_age_seconds:
        age = _age(proc, info, record, clock)
        if age < min_age_seconds:
            return None, _skip(info, SKIP_YOUNG, 'stuck for %.1fs < %ss' % (age, min_age_seconds))[1]
    return info, None


def drain(proc, record, evidence_dir, max_evidence_bytes=0, timeout=30.0, fallback='none',
          min_age_seconds=0, confirm_interval=1.0, verify=None, engine=None, hostname=None,
          clock=time.time, sample_interval=0.02, round_no=1):
    """Drain the pipe of one stuck exec RECORD.  EVIDENCE_DIR must come from
    :func:`prepare_evidence_dir`.  VERIFY(proc, record, confirm_interval=…) ->
    (ok, reason) re-checks every hard signal (default ``_stuck_exec.verify``);
    ENGINE(container_id) -> (verified, reason), default: no check.

    Returns ('drained', entry) or ('skipped', entry)."""
    if fallback not in ('none', 'kill'):
        raise DrainError("fallback must be 'none' or 'kill', got %r" % (fallback,))
    if verify is None:
        if _stuck_exec is None:
            raise DrainError('stuck exec verification (_stuck_exec) is not available')
        verify = _stuck_exec.verify
    engine = engine or _no_engine
    hostname = hostname or socket.gethostname()

    info, skipped = preflight(proc, record, min_age_seconds, clock)
    if skipped:
        return 'skipped', skipped
    lock = PipeLock(evidence_dir, info['inode'], info['pid'], info['start_time'])
    if not lock.acquire():
        return _skip(info, SKIP_LOCKED, 'another run is draining pipe:[%d]' % info['inode'])
    try:
        if lock.is_done():
            return _skip(info, SKIP_DONE, 'see %s' % lock.done_path)
        try:
            ok, why = verify(proc, record, confirm_interval=confirm_interval)
        except VERIFY_ERRORS as e:
            return _skip(info, SKIP_MALFORMED, '%s: %s' % (type(e).__name__, e))
        if not ok:
            return _skip(info, SKIP_STALE, why)
        if not proc.same_process(info['pid'], info['start_time']):
            return _skip(info, SKIP_STALE, 'writer pid %d exited or was reused' % info['pid'])
        try:
            f = proc.open_fd(info['pid'], info['fd'], info['inode'])
        except _procfs.ProcessGone as e:
            return _skip(info, SKIP_STALE, str(e))
        try:
            return _drain_open(proc, record, info, f, lock, evidence_dir, max_evidence_bytes,
                               timeout, fallback, engine, hostname, clock, sample_interval, round_no)
        finally:
            os.close(f)
    finally:
        lock.release()


def _drain_open(proc, record, info, f, lock, evidence_dir, max_evidence_bytes, timeout, fallback,
                engine, hostname, clock, sample_interval, round_no):
    t0 = clock()
    mono0 = time.monotonic()
    path = os.path.join(evidence_dir, evidence_name(info['container_id'], info['pid'], info['start_time'], t0))
    try:
        evidence = Evidence(path, _header(record, info, hostname, t0, proc), max_evidence_bytes)
    except (IOError, OSError) as e:
        # nothing read yet: better no drain than a drain without evidence
        return _skip(info, SKIP_EVIDENCE, '%s: %s' % (path, e.strerror or e))
    killed = False
    kill_note = ''
    try:
        # deadlines on the monotonic clock: a wall-clock step must not cut a
        # drain short or stretch it past its timeout
        outcome, states = drain_pipe(proc, f, info['inode'], info['watch'], evidence,
                                     mono0 + timeout, time.monotonic, sample_interval)
        if outcome == 'timeout' and fallback == 'kill':
            # identity re-checked right before the kill: never a reused pid
            if proc.same_process(info['pid'], info['start_time']):
                try:
                    os.kill(info['pid'], signal.SIGKILL)
                    killed = True
                    kill_note = 'writer pid %d killed after %ss' % (info['pid'], timeout)
                except OSError as e:
                    if e.errno != errno.ESRCH:
                        raise
            # what is left stays evidence, and must be read or runc exec blocks on it
            outcome, states = drain_pipe(proc, f, info['inode'], info['watch'], evidence,
                                         time.monotonic() + KILL_GRACE_SECONDS, time.monotonic, sample_interval)
            if killed:
                outcome = 'killed, ' + outcome
    finally:
        evidence.close(kill_note)
    seconds = round(time.monotonic() - mono0, 3)
    # a few bytes may be queued again (runc exec's error line): that is for the
    # shim, which reads it once runc exec returns
    left = pipe_left(f)
    after = [writer_state(proc, pid, st, info['inode']) for pid, st in info['watch']]
    unblocked = not outcome.endswith('timeout') and BLOCKED not in after
    if unblocked:
        lock.mark_done('%s\n' % evidence.path)
        verified, verify_reason = engine(info['container_id'])
    else:
        verified, verify_reason = False, 'writer still blocked on pipe:[%d] (%s)' % (
            info['inode'], ', '.join('%d %s' % (w[0], s) for w, s in zip(info['watch'], after)))
    return 'drained', {
        'container_id': info['container_id'],
        'pid': info['pid'],
        'start_time': info['start_time'],
        'writer': info['role'],
        'pipe_inode': info['inode'],
        'bytes': evidence.total,
        'sha256': evidence.sha.hexdigest(),
        'evidence_path': evidence.path,
        'evidence_truncated': evidence.elided > 0,
        'evidence_elided_bytes': evidence.elided,
        'evidence_error': evidence.error,
        'queued_after': left,
        'stop': outcome,
        'killed': killed,
        'unblocked': unblocked,
        'verified': verified,
        'verify_reason': verify_reason,
        'seconds': seconds,
        'round': round_no,
        'cause': record.get('cause'),
        'pod': record.get('pod'),
        'recurring': False,
    }


# ---- a whole run -----------------------------------------------------------
def preview(proc, record, min_age_seconds, confirm_interval, peek_bytes, verify, clock=time.time):
    """check_mode: what would be drained, read nothing (tee(2) peek only)."""
    info, skipped = preflight(proc, record, min_age_seconds, clock)
    if skipped:
        return 'skipped', skipped
    try:
        ok, why = verify(proc, record, confirm_interval=confirm_interval)
    except VERIFY_ERRORS as e:
        return _skip(info, SKIP_MALFORMED, '%s: %s' % (type(e).__name__, e))
    if not ok:
        return _skip(info, SKIP_STALE, why)
    queued = capacity = None
    peek = record.get('peek') or ''
    try:
        f = proc.open_fd(info['pid'], info['fd'], info['inode'])
        try:
            queued, capacity = _procfs.pipe_queued(f), _procfs.pipe_capacity(f)
            if peek_bytes:
                peek = _procfs.tee_peek(f, peek_bytes).decode('utf-8', 'replace')
        finally:
            os.close(f)
    except _procfs.ProcessGone as e:
        return _skip(info, SKIP_STALE, str(e))
    except _procfs.ProcError:
        pass
    return 'would_drain', {
        'container_id': info['container_id'],
        'pid': info['pid'],
        'start_time': info['start_time'],
        'writer': info['role'],
        'pipe_inode': info['inode'],
        'queued': queued,
        'capacity': capacity,
        'peek': peek,
        'age_seconds': round(_age(proc, info, record, clock), 1),
        'cause': record.get('cause'),
        'pod': record.get('pod'),
    }


def run(proc, stuck_execs=None, container_ids=None, evidence_dir='/var/log/hangdoctor',
        min_age_seconds=60, max_evidence_bytes=0, timeout=30.0, fallback='none', max_rounds=3,
        confirm_interval=1.0, peek_bytes=4096, check_mode=False, scan=None, verify=None,
        engine=None, hostname=None, sleep=time.sleep, clock=time.time):
    """Drain every stuck exec among the targets: STUCK_EXECS (records), or a
    fresh scan of CONTAINER_IDS, or of the whole host.  After a round, look at
    the drained containers again: dockerd (before moby 24) starts the next
    queued exec as soon as the pipe is empty, and it deadlocks again while the
    cause persists.  Such rounds skip min_age_seconds (the cause is known)."""
    if max_rounds < 1:
        raise DrainError('max_rounds must be at least 1')
    if scan is None or verify is None:
        if _stuck_exec is None:
            raise DrainError('stuck exec diagnosis (_stuck_exec) is not available')
        scan = scan or _stuck_exec.scan
        verify = verify or _stuck_exec.verify

    def rescan(ids):
        return scan(proc, container_ids=ids, confirm_interval=confirm_interval,
                    peek_bytes=peek_bytes, min_age_seconds=0)['stuck_execs']

    result = {'changed': False, 'drained': [], 'skipped_execs': [], 'would_drain': [], 'recurring': [], 'rounds': 0}
    if stuck_execs is not None:
        for rec in stuck_execs:
            check_record(rec)
        records = list(stuck_execs)
    else:
        records = rescan(list(container_ids) if container_ids else None)

    if check_mode:
        for rec in records:
            kind, entry = preview(proc, rec, min_age_seconds, confirm_interval, peek_bytes, verify, clock)
            result['would_drain' if kind == 'would_drain' else 'skipped_execs'].append(entry)
        result['changed'] = bool(result['would_drain'])
        return result

    evidence_dir = prepare_evidence_dir(evidence_dir)
    round_no = 1
    min_age = min_age_seconds
    while records:
        result['rounds'] = round_no
        repaired = []
        for rec in records:
            kind, entry = drain(proc, rec, evidence_dir, max_evidence_bytes, timeout, fallback, min_age,
                                confirm_interval, verify, _not_yet, hostname, clock, round_no=round_no)
            result['drained' if kind == 'drained' else 'skipped_execs'].append(entry)
            if kind == 'drained' and entry['unblocked'] and entry['container_id'] not in repaired:
                repaired.append(entry['container_id'])
        if not repaired:
            break
        sleep(confirm_interval)
        again = [r for r in rescan(repaired) if isinstance(r, dict) and r.get('container_id') in repaired]
        if not again:
            break
        if round_no >= max_rounds:
            for cid in repaired:
                still = [r for r in again if r.get('container_id') == cid]
                if not still:
                    continue
                result['recurring'].append({
                    'container_id': cid,
                    'rounds': round_no,
                    'stuck_pids': [(r.get('writer') or {}).get('pid') for r in still],
                    'hint': RECURRING_HINT,
                })
                for entry in result['drained']:
                    if entry['container_id'] == cid:
                        entry['recurring'] = True
            break
        round_no += 1
        min_age = 0
        records = again
    _verify_containers(result, engine or _no_engine)
    result['changed'] = bool(result['drained'])
    return result


def _verify_containers(result, engine):
    """One Engine check per drained container, after its last round: a drain
    whose container deadlocked again at once has not repaired it."""
    recurring = set(r['container_id'] for r in result['recurring'])
    checked = {}
    for entry in result['drained']:
        if not entry['unblocked']:
            continue
        cid = entry['container_id']
        if cid in recurring:
            entry['verified'], entry['verify_reason'] = False, 'the container deadlocked again (see recurring)'
            continue
        if cid not in checked:
            checked[cid] = engine(cid)
        entry['verified'], entry['verify_reason'] = checked[cid]
