# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bounded readers for /proc (private module_utils).

Everything here takes ``proc_root`` so it works on the host's /proc mounted
elsewhere (a privileged pod) and on fixture trees in unit tests.  Target-side
code: Python 3.6+ syntax and stdlib only.

Nothing here reads ``/proc/PID/cmdline`` or ``environ`` without a deadline: a
process whose mm lock is held (a stuck page fault) makes those reads block
forever.  ``stat``, ``status``, ``comm``, ``wchan``, ``syscall``, ``fd/`` and
``fdinfo/`` do not take that lock.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ctypes
import errno
import fcntl
import os
import signal as signal_mod
import stat as stat_mod
import struct
import termios
import threading
import time

from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import HangdoctorError

F_SETPIPE_SZ = 1031
F_GETPIPE_SZ = 1032
SPLICE_F_NONBLOCK = 2

# write(2)/writev(2) numbers: a blocked writer shows one of them as the first
# field of /proc/PID/syscall.
WRITE_SYSCALLS = {
    'x86_64': {1: 'write', 20: 'writev'},
    'aarch64': {64: 'write', 66: 'writev'},
    'arm64': {64: 'write', 66: 'writev'},
}
# Where a writer sleeps on a full pipe, by kernel: <= 5.4, 5.5-6.14, >= 6.15.
PIPE_WRITE_WCHANS = ('pipe_wait', 'pipe_write', 'anon_pipe_write')


class ProcError(HangdoctorError):
    """A /proc read failed in a way the caller should report."""


class ProcessGone(ProcError):
    """The process exited (or its pid was reused) while we looked at it."""


class Refused(ProcError):
    """A file that is not read on purpose: a symlink, not a regular file, or over the size bound."""


class Timeout(ProcError):
    """A bounded read did not finish in time."""


def _read(path, binary=False):
    """The content of a small /proc file.  os.open/os.read rather than
    open(): the full scan reads one stat per process, and a file object
    costs three more system calls each (fstat, a terminal check, a seek).
    Text is decoded as open() decodes it (the locale's encoding, universal
    newlines)."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ESRCH):
            raise ProcessGone(path)
        raise ProcError('%s: %s' % (path, e.strerror or e))
    try:
        chunks = []
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                if e.errno in (errno.ENOENT, errno.ESRCH):
                    raise ProcessGone(path)
                raise ProcError('%s: %s' % (path, e.strerror or e))
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    data = b''.join(chunks)
    if binary:
        return data
    text = data.decode(_text_encoding())
    if '\r' in text:
        text = text.replace('\r\n', '\n').replace('\r', '\n')
    return text


_READ_FLAGS = os.O_RDONLY | getattr(os, 'O_CLOEXEC', 0)
_ENCODING = []


def _text_encoding():
    """The encoding open() uses for text when none is given (the locale's)."""
    if not _ENCODING:
        import locale
        _ENCODING.append(locale.getpreferredencoding(False))
    return _ENCODING[0]


def parse_stat(text):
    """Fields of /proc/PID/stat.  comm may contain spaces and parentheses, so
    split at the last ')'."""
    try:
        lpar = text.index('(')
        rpar = text.rindex(')')
        rest = text[rpar + 2:].split()
        return {
            'pid': int(text[:lpar].strip()),
            'comm': text[lpar + 1:rpar],
            'state': rest[0],
            'ppid': int(rest[1]),
            'utime': int(rest[11]),
            'stime': int(rest[12]),
            'num_threads': int(rest[17]),
            'starttime': int(rest[19]),
        }
    except (ValueError, IndexError):
        raise ProcError('unparsable stat: %r' % text[:200])


def _key_values(text):
    """(key, value) of each ``Key:  value`` line of status/fdinfo."""
    for line in text.splitlines():
        key, sep, value = line.partition(':')
        if sep:
            yield key, value.strip()


def parse_status(text):
    out = {}
    for key, value in _key_values(text):
        if key in ('voluntary_ctxt_switches', 'nonvoluntary_ctxt_switches', 'PPid', 'Tgid', 'Pid'):
            try:
                out[key] = int(value)
            except ValueError:
                pass
        elif key in ('Name', 'State'):
            out[key] = value
        elif key in ('NSpid', 'Uid'):
            out[key] = [int(v) for v in value.split()]
    return out


def parse_syscall(text):
    """/proc/PID/syscall: ``running``, ``-1 sp pc`` (not in a syscall), or
    ``NR arg1 .. arg6 sp pc`` (hex args)."""
    fields = text.split()
    if not fields:
        return {'nr': None, 'args': [], 'running': False}
    if fields[0] == 'running':
        return {'nr': None, 'args': [], 'running': True}
    try:
        nr = int(fields[0])
        args = [int(a, 16) for a in fields[1:7]]
    except ValueError:
        raise ProcError('unparsable syscall: %r' % text[:200])
    return {'nr': nr, 'args': args, 'running': False}


def parse_fdinfo(text):
    out = {}
    for key, value in _key_values(text):
        if key == 'flags':
            out['flags'] = int(value, 8)
        elif key in ('pos', 'mnt_id', 'ino'):
            try:
                out[key] = int(value)
            except ValueError:
                pass
    return out


def pipe_inode_of(link):
    """``pipe:[1234]`` -> 1234, anything else -> None."""
    if link and link.startswith('pipe:[') and link.endswith(']'):
        try:
            return int(link[6:-1])
        except ValueError:
            return None
    return None


def access_mode(flags):
    mode = flags & os.O_ACCMODE
    if mode == os.O_RDONLY:
        return 'r'
    if mode == os.O_WRONLY:
        return 'w'
    return 'rw'


def write_syscall_name(nr, machine=None):
    table = WRITE_SYSCALLS.get(machine or os.uname()[4], {})
    return table.get(nr)


class Proc(object):
    """Reads one procfs tree."""

    def __init__(self, proc_root='/proc'):
        self.root = proc_root.rstrip('/') or '/'
        self._btime = None
        self._hz = None
        self._machine = None

    def path(self, *parts):
        return os.path.join(self.root, *[str(p) for p in parts])

    def machine(self):
        """The kernel's architecture, for syscall numbers: the tree's own
        ``sys/kernel/arch`` when it has one (fixtures, another host's /proc),
        else this host's."""
        if self._machine is None:
            try:
                with open(self.path('sys', 'kernel', 'arch')) as f:
                    self._machine = f.read().strip()
            except (IOError, OSError):
                pass
            self._machine = self._machine or os.uname()[4]
        return self._machine

    def is_procfs(self):
        return os.path.isfile(self.path('self', 'stat')) or os.path.isfile(self.path('stat'))

    def pids(self):
        try:
            names = os.listdir(self.root)
        except OSError as e:
            raise ProcError('%s: %s' % (self.root, e.strerror or e))
        return sorted(int(n) for n in names if n.isdigit())

    def stat(self, pid):
        return parse_stat(_read(self.path(pid, 'stat')))

    def status(self, pid):
        return parse_status(_read(self.path(pid, 'status')))

    def comm(self, pid):
        return _read(self.path(pid, 'comm')).rstrip('\n')

    def wchan(self, pid):
        text = _read(self.path(pid, 'wchan')).strip()
        return '' if text == '0' else text

    def syscall(self, pid):
        return parse_syscall(_read(self.path(pid, 'syscall')))

    def tasks(self, pid):
        """Thread ids of PID (``task/``), the leader first; [PID] when the
        tree has no task folder (fixtures)."""
        try:
            names = os.listdir(self.path(pid, 'task'))
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ESRCH) and os.path.exists(self.path(pid, 'stat')):
                return [pid]
            if e.errno in (errno.ENOENT, errno.ESRCH):
                raise ProcessGone(self.path(pid, 'task'))
            raise ProcError('%s: %s' % (self.path(pid, 'task'), e.strerror or e))
        tids = sorted(int(n) for n in names if n.isdigit())
        if pid in tids:
            tids.remove(pid)
            tids.insert(0, pid)
        return tids

    def task_stat(self, pid, tid):
        if tid == pid and not os.path.isdir(self.path(pid, 'task')):
            return self.stat(pid)
        return parse_stat(_read(self.path(pid, 'task', tid, 'stat')))

    def task_syscall(self, pid, tid):
        if tid == pid and not os.path.isdir(self.path(pid, 'task')):
            return self.syscall(pid)
        return parse_syscall(_read(self.path(pid, 'task', tid, 'syscall')))

    def task_status(self, pid, tid):
        if tid == pid and not os.path.isdir(self.path(pid, 'task')):
            return self.status(pid)
        return parse_status(_read(self.path(pid, 'task', tid, 'status')))

    def task_wchan(self, pid, tid):
        if tid == pid and not os.path.isdir(self.path(pid, 'task')):
            return self.wchan(pid)
        text = _read(self.path(pid, 'task', tid, 'wchan')).strip()
        return '' if text == '0' else text

    def fd_link(self, pid, fd):
        try:
            return os.readlink(self.path(pid, 'fd', fd))
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ESRCH):
                raise ProcessGone(self.path(pid, 'fd', fd))
            raise ProcError('%s: %s' % (self.path(pid, 'fd', fd), e.strerror or e))

    def fdinfo(self, pid, fd):
        return parse_fdinfo(_read(self.path(pid, 'fdinfo', fd)))

    def read_small(self, pid, name, max_bytes):
        """The first MAX_BYTES of /proc/PID/NAME (bytes), or None when it
        cannot be read.  For files whose text a workload shapes (its cgroup
        paths) or of unknown size: ``read_regular_file``'s checks, in the
        calling thread."""
        try:
            return read_regular_file(self.path(pid, name), max_bytes, None, truncate=True)
        except (ProcError, OSError):
            return None

    def cwd(self, pid):
        try:
            return os.readlink(self.path(pid, 'cwd'))
        except OSError:
            return None

    def exe(self, pid):
        """The text of /proc/PID/exe (the path in the process's own view), or
        None when it cannot be read."""
        try:
            return os.readlink(self.path(pid, 'exe'))
        except OSError:
            return None

    def ns(self, pid, kind):
        """``mnt:[4026531840]``-style identity of one of PID's namespaces, or
        None when the tree has no such link."""
        try:
            return os.readlink(self.path(pid, 'ns', kind))
        except OSError:
            return None

    def host_view(self, pid, path):
        """PATH (absolute, as PID sees it) resolved under PID's root: for a
        host process (a shim) that is the host's view of PATH, also when this
        tree is the host's /proc mounted in a pod."""
        return self.path(pid, 'root') + '/' + path.lstrip('/')

    def cmdline(self, pid, timeout=1.0):
        """argv of PID, read in a helper thread with a deadline.  Only call it
        for shims and ``runc exec``: a runc init's mm lock may be held forever."""
        result = {}

        def reader():
            try:
                result['data'] = _read(self.path(pid, 'cmdline'), binary=True)
            except ProcError as e:
                result['error'] = e

        t = threading.Thread(target=reader, name='cmdline-%s' % pid)
        t.daemon = True
        t.start()
        t.join(timeout)
        if t.is_alive():
            raise Timeout('reading %s did not finish within %.1fs' % (self.path(pid, 'cmdline'), timeout))
        if 'error' in result:
            raise result['error']
        return [a.decode('utf-8', 'replace') for a in result['data'].split(b'\0') if a]

    def boot_time(self):
        if self._btime is None:
            for line in _read(self.path('stat')).splitlines():
                if line.startswith('btime '):
                    self._btime = int(line.split()[1])
                    break
            else:
                raise ProcError('no btime in %s' % self.path('stat'))
        return self._btime

    def clock_ticks(self):
        if self._hz is None:
            try:
                self._hz = os.sysconf('SC_CLK_TCK')
            except (ValueError, OSError):
                self._hz = 100
        return self._hz

    def start_epoch(self, starttime):
        """Seconds since the epoch at which a process with stat field 22 =
        ``starttime`` started."""
        return self.boot_time() + starttime / float(self.clock_ticks())

    def same_process(self, pid, starttime):
        try:
            return self.stat(pid)['starttime'] == starttime
        except ProcessGone:
            return False

    # ---- pipes -----------------------------------------------------------
    def open_fd(self, pid, fd, inode=None):
        """Open the pipe behind /proc/PID/fd/FD for reading, non-blocking,
        and check (fstat) that it is pipe INODE when given."""
        path = self.path(pid, 'fd', fd)
        try:
            f = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0))
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ESRCH):
                raise ProcessGone(path)
            raise ProcError('%s: %s' % (path, e.strerror or e))
        try:
            st = os.fstat(f)
            if not stat_mod.S_ISFIFO(st.st_mode):
                raise ProcError('%s is not a pipe' % path)
            if inode is not None and st.st_ino != inode:
                raise ProcessGone('%s is pipe:[%d], expected pipe:[%d]' % (path, st.st_ino, inode))
        except Exception:
            os.close(f)
            raise
        return f

    def pipe_fill(self, pid, fd, inode=None):
        """(queued bytes, capacity) of the pipe at /proc/PID/fd/FD, without
        consuming anything."""
        f = self.open_fd(pid, fd, inode)
        try:
            return pipe_queued(f), pipe_capacity(f)
        finally:
            os.close(f)

    def pipe_holders(self, inodes, pids=None, deadline=None):
        """{inode: [(pid, fd, 'r'|'w'|'rw')]} for every process (or only PIDS)
        holding one of INODES open.  One walk answers for all INODES: a
        host with tens of thousands of open fds costs a fraction of a
        second per walk, so callers ask once for every pipe they need.
        DEADLINE (``time.monotonic()`` time): raise Timeout past it."""
        wanted = set('pipe:[%d]' % i for i in inodes)
        out = dict((i, []) for i in inodes)
        for pid in (self.pids() if pids is None else pids):
            if deadline is not None and time.monotonic() >= deadline:
                raise Timeout('looking for the readers of %d pipe(s) did not finish in time' % len(out))
            try:
                names = os.listdir(self.path(pid, 'fd'))
            except OSError:
                continue
            for n in names:
                try:
                    link = os.readlink(self.path(pid, 'fd', n))
                except OSError:
                    continue
                if link not in wanted:
                    continue
                try:
                    mode = access_mode(self.fdinfo(pid, n).get('flags', 0))
                except ProcError:
                    continue
                out[pipe_inode_of(link)].append((pid, int(n), mode))
        return out


def _bounded(func, timeout, what):
    """FUNC() in a daemon thread, given up after TIMEOUT seconds: a read of a
    file on a stuck mount (FUSE, NFS) must not hang the caller."""
    result = {}

    def run():
        try:
            result['value'] = func()
        except Exception as e:  # handed to the caller below
            result['error'] = e

    t = threading.Thread(target=run, name='bounded-read')
    t.daemon = True
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise Timeout('%s did not finish within %.1fs' % (what, timeout))
    if 'error' in result:
        raise result['error']
    return result['value']


def read_regular_file(path, max_bytes, timeout=1.0, truncate=False):
    """The bytes of PATH when it is a regular file of at most MAX_BYTES (with
    TRUNCATE, its first MAX_BYTES whatever its size).

    For files a workload may control (a bundle's config.json, anything under
    a container's root): opened with O_NONBLOCK (a FIFO planted there cannot
    block the open), O_NOFOLLOW (its last component is never a symlink),
    O_NOCTTY; fstat must say regular file; the whole read has a deadline.
    The one reader for such files (bundles, /proc tables of a container's
    namespaces, files in directories others may write).  TIMEOUT None reads
    in the calling thread (its caller runs under a deadline).  Raises ProcError:
    ProcessGone when the file does not exist, Refused when it is not read on
    purpose, Timeout past the deadline."""
    flags = (os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, 'O_NOCTTY', 0) |
             getattr(os, 'O_CLOEXEC', 0))

    def read():
        try:
            fd = os.open(path, flags)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                raise ProcessGone(path)
            if e.errno == errno.ELOOP:
                raise Refused('%s is a symlink, not read' % path)
            raise ProcError('%s: %s' % (path, e.strerror or e))
        try:
            st = os.fstat(fd)
            if not stat_mod.S_ISREG(st.st_mode):
                raise Refused('%s is not a regular file, not read' % path)
            if st.st_size > max_bytes and not truncate:
                raise Refused('%s is larger than %d bytes, not read' % (path, max_bytes))
            chunks = []
            total = 0
            while total <= max_bytes:
                try:
                    chunk = os.read(fd, min(65536, max_bytes + 1 - total))
                except OSError as e:
                    if e.errno == errno.EINTR:
                        continue
                    raise ProcError('%s: %s' % (path, e.strerror or e))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
            data = b''.join(chunks)
            if total > max_bytes:
                if truncate:
                    return data[:max_bytes]
                raise Refused('%s grew past %d bytes, not read' % (path, max_bytes))
            return data
        finally:
            os.close(fd)

    if timeout is None:
        # the caller bounds a whole walk of such files with one deadline
        return read()
    return _bounded(read, timeout, 'reading %s' % path)


def same_inode(a, b):
    """True when paths A and B (followed) are the same inode on the same device."""
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def own_pid_namespace(proc, own_proc='/proc'):
    """(True, '') when pids read from PROC are pids in this process's own pid
    namespace, so ``os.kill(pid)`` reaches the process PROC described; else
    (False, why).  Proof: PROC's ``self`` is our own pid, and its pid 1 lives
    in the same pid namespace as we do (``NSpid`` of ``self`` has one entry
    where the kernel shows it)."""
    me = os.getpid()
    try:
        seen_as = os.readlink(proc.path('self'))
    except OSError as e:
        return False, '%s/self is unreadable (%s): not a procfs this process can prove is its own' % (
            proc.root, e.strerror or e)
    if seen_as != str(me):
        return False, '%s shows this process as pid %s, not %d: another pid namespace' % (proc.root, seen_as, me)
    try:
        status = proc.status('self')
    except ProcError:
        status = {}
    nspid = status.get('NSpid')
    if nspid is not None and nspid != [me]:
        return False, '%s numbers this process %s across pid namespaces: not its own' % (
            proc.root, ' '.join(str(n) for n in nspid))
    theirs = proc.ns(1, 'pid')
    try:
        ours = os.readlink(os.path.join(own_proc, 'self', 'ns', 'pid'))
    except OSError:
        ours = None
    if theirs is None or ours is None:
        if nspid is None:
            return False, 'cannot read the pid namespace of %s/1 or of this process' % proc.root
    elif theirs != ours:
        return False, 'pid 1 of %s is in %s, this process in %s' % (proc.root, theirs, ours)
    return True, ''


# pidfd_open(2) and pidfd_send_signal(2) have one number on every architecture.
_NR_PIDFD_SEND_SIGNAL = 424
_NR_PIDFD_OPEN = 434
_syscall_func = None


def _syscall():
    global _syscall_func
    if _syscall_func is None:
        libc = ctypes.CDLL(None, use_errno=True)
        _syscall_func = libc.syscall
        _syscall_func.restype = ctypes.c_long
    return _syscall_func


def pidfd_open(pid):
    """A pidfd for PID (Linux >= 5.3), or None when the kernel or libc has
    none.  A pidfd names one process: a signal sent through it never reaches
    a process that reused the pid.  os.pidfd_open is 3.9+, hence ctypes."""
    if hasattr(os, 'pidfd_open'):
        try:
            return os.pidfd_open(pid)
        except OSError as e:
            if e.errno in (errno.ENOSYS, errno.EPERM):
                return None
            if e.errno == errno.ESRCH:
                raise ProcessGone('pid %d' % pid)
            raise ProcError('pidfd_open(%d): %s' % (pid, e.strerror or e))
    try:
        fd = _syscall()(ctypes.c_long(_NR_PIDFD_OPEN), ctypes.c_long(pid), ctypes.c_long(0))
    except (AttributeError, OSError):
        return None
    if fd < 0:
        err = ctypes.get_errno()
        if err == errno.ESRCH:
            raise ProcessGone('pid %d' % pid)
        if err in (errno.ENOSYS, errno.EPERM, errno.EINVAL):
            return None
        raise ProcError('pidfd_open(%d): %s' % (pid, os.strerror(err)))
    return fd


def pidfd_kill(pidfd, sig):
    """Send SIG through PIDFD; ProcessGone when that process has exited."""
    if hasattr(signal_mod, 'pidfd_send_signal'):
        try:
            signal_mod.pidfd_send_signal(pidfd, sig)
            return
        except OSError as e:
            if e.errno == errno.ESRCH:
                raise ProcessGone('pidfd %d' % pidfd)
            raise ProcError('pidfd_send_signal: %s' % (e.strerror or e))
    # syscall(2) takes its arguments by position only
    args = (ctypes.c_long(_NR_PIDFD_SEND_SIGNAL), ctypes.c_long(pidfd), ctypes.c_long(sig), ctypes.c_void_p(None),
            ctypes.c_long(0))
    rc = _syscall()(*args)
    if rc < 0:
        err = ctypes.get_errno()
        if err == errno.ESRCH:
            raise ProcessGone('pidfd %d' % pidfd)
        raise ProcError('pidfd_send_signal: %s' % os.strerror(err))


def pipe_queued(f):
    """Bytes queued in the pipe open as fd F (FIONREAD)."""
    buf = fcntl.ioctl(f, termios.FIONREAD, struct.pack('i', 0))
    return struct.unpack('i', buf)[0]


def pipe_capacity(f):
    """The pipe's capacity (F_GETPIPE_SZ): 64 KiB by default, one page when its
    owner went past fs.pipe-user-pages-soft.  Never assume either."""
    return fcntl.fcntl(f, F_GETPIPE_SZ)


_libc = None


def _tee_func():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.tee.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint]
        _libc.tee.restype = ctypes.c_ssize_t
    return _libc.tee


def tee_peek(f, nbytes):
    """The first NBYTES queued in pipe F, copied with tee(2) into a private
    pipe: the pipe itself is left exactly as it was."""
    if nbytes <= 0:
        return b''
    tee = _tee_func()
    r, w = os.pipe()
    try:
        try:
            fcntl.fcntl(w, F_SETPIPE_SZ, max(nbytes, 4096))
        except (IOError, OSError):
            pass  # capped by fs.pipe-max-size: peek what fits
        n = tee(f, w, nbytes, SPLICE_F_NONBLOCK)
        if n < 0:
            err = ctypes.get_errno()
            if err == errno.EAGAIN:
                return b''
            raise ProcError('tee: %s' % os.strerror(err))
        os.close(w)
        w = None
        chunks = []
        while True:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b''.join(chunks)[:nbytes]
    finally:
        os.close(r)
        if w is not None:
            os.close(w)
