# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Evidence files of the drain (private module_utils): the directory, the
file every drained byte goes through, its header and trailer, and reading
one back.

Target-side code: Python 3.6+ syntax and stdlib only.  Nothing here calls
``fail_json``: an unusable directory raises :class:`EvidenceError`.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import errno
import hashlib
import os
import re
import stat as stat_mod
import time

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _defaults
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs
from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import HangdoctorError

HEADER_END = b'----- hangdoctor: pipe bytes follow -----\n'
ELIDED_MARK = b'\n----- hangdoctor: %d bytes elided -----\n'
TRAILER_MARK = b'\n----- hangdoctor: end of pipe bytes'


# Retention defaults: what a node keeps at most (the documented option defaults).
RETENTION_COUNT = _defaults.RETENTION_COUNT
RETENTION_BYTES = _defaults.RETENTION_BYTES
RETENTION_DAYS = _defaults.RETENTION_DAYS
# Never removed by retention: a file written in the last hour may still be
# open in a concurrent run's drain, or be the evidence somebody is reading now.
RETENTION_GRACE_SECONDS = 3600
EVIDENCE_RE = re.compile(r'^[0-9a-f]{12}-\d+-\d+-\d{8}T\d{6}\.\d{6}Z\.log$')


class EvidenceError(HangdoctorError):
    """An unusable evidence directory or a file that is not evidence.
    ``errno``: the system error behind it, None for a refusal (a path or an
    owner that is not safe)."""

    def __init__(self, msg, errno_=None):
        super(EvidenceError, self).__init__(msg)
        self.errno = errno_


# A directory that cannot be made or used for these reasons is the node's
# condition (a full disk, a read-only or broken filesystem), not a bad option:
# the drain still repairs the workload and keeps its bytes in the result.
CONDITION_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO)
# Bytes of a drain kept in memory (head and tail) and returned in the result
# when its evidence file could not keep them all.
INLINE_BYTES = 1024 * 1024


# ---- private directories ---------------------------------------------------
O_CLOEXEC = getattr(os, 'O_CLOEXEC', 0)
DIR_FLAGS = os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0) | os.O_NOFOLLOW | O_CLOEXEC


def _refuse_shared(st, path, what, final):
    """A directory root writes into must be safe from everybody but root:
    owned by root (or us), and nobody else may rename or plant entries in it.
    On the way there, a sticky directory such as /tmp is fine, and so is a
    root-owned one its group may write (Ubuntu's /var/log is root:syslog
    0775): no component is ever followed as a symlink, and the last one
    must be ours and private, so a swapped path is refused, not used."""
    euid = os.geteuid()
    if st.st_uid not in (0, euid) or (final and st.st_uid != euid):
        raise EvidenceError('%s %s is owned by uid %d, not by uid %d: refusing it' % (what, path, st.st_uid, euid))
    writable = st.st_mode & (0o022 if final else 0o002)
    if writable and (final or not st.st_mode & stat_mod.S_ISVTX):
        raise EvidenceError('%s %s is writable by %s (mode %04o): refusing it; make it %s or '
                            'choose another directory' % (what, path, 'group or others' if final else 'others',
                                                          stat_mod.S_IMODE(st.st_mode), '0700' if final else 'o-w'))


def _why_not_a_dir(dir_fd, name, here, e):
    try:
        if stat_mod.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            return '%s is a symlink, not followed' % here
    except OSError:
        pass
    return e.strerror or str(e)


# Symlinks followed on the way to a private directory, at most (like the kernel's MAXSYMLINKS).
MAX_SYMLINKS = 40


def _follow_symlink(dir_fd, dir_st, name, here, what):
    """The target of symlink NAME (in the open directory DIR_FD, whose stat
    is DIR_ST) when it may be followed, else EvidenceError.  A symlink is as
    trustworthy as whoever could have put it there: only one owned by root
    (or by us) in a directory nobody but its owner may write (``/var/run ->
    /run`` in a 0755 root ``/var``).  One another user owns, or one in a
    directory a group or everybody may write (where another user could have
    renamed it in), is refused, never followed."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        target = os.readlink(name, dir_fd=dir_fd)
    except OSError as e:
        raise EvidenceError('%s %s: %s' % (what, here, e.strerror or e), e.errno)
    euid = os.geteuid()
    if st.st_uid not in (0, euid):
        raise EvidenceError('%s %s is a symlink owned by uid %d, refusing it' % (what, here, st.st_uid))
    if dir_st.st_mode & 0o022:
        raise EvidenceError('%s %s is a symlink in a directory others may write (mode %04o), not followed' % (
            what, here, stat_mod.S_IMODE(dir_st.st_mode)))
    return target


def open_private_dir(path, what):
    """Create (0700) or check directory PATH and return (real path, open
    directory fd).  The path is walked from ``/`` one component at a time,
    each opened relative to its parent's fd with O_NOFOLLOW and checked
    (:func:`_refuse_shared`) before the next is looked up, so what is
    checked is what is used: no component is resolved ahead of the walk
    (``realpath`` would follow a symlink another user planted half way).
    A component that is a symlink is followed only by the rules of
    :func:`_follow_symlink`, its target walked the same way.  Files are
    then created relative to the fd.  WHAT names the option in messages."""
    if not path or not os.path.isabs(path):
        raise EvidenceError('%s must be an absolute path, got %r' % (what, path))
    pending = [p for p in path.split('/') if p]
    fd = os.open('/', DIR_FLAGS)
    stack = [(fd, '/', os.fstat(fd))]  # the open directories of the walk, / first
    links = 0
    try:
        while pending:
            name = pending.pop(0)
            dir_fd, done, dir_st = stack[-1]
            if name == '.':
                continue
            if name == '..':
                if len(stack) > 1:
                    os.close(stack.pop()[0])
                continue
            here = os.path.join(done, name)
            try:
                sub = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
            except OSError as e:
                if e.errno == errno.ENOENT:
                    try:
                        os.mkdir(name, 0o700, dir_fd=dir_fd)
                    except OSError as e2:
                        if e2.errno != errno.EEXIST:
                            raise EvidenceError('cannot create %s %s: %s' % (what, path, e2.strerror), e2.errno)
                    try:
                        sub = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
                    except OSError as e2:
                        raise EvidenceError('%s %s: %s' % (what, path, _why_not_a_dir(dir_fd, name, here, e2)))
                else:
                    try:
                        is_link = stat_mod.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
                    except OSError:
                        is_link = False
                    if not is_link:
                        raise EvidenceError('%s %s: %s' % (what, path, e.strerror or e), e.errno)
                    target = _follow_symlink(dir_fd, dir_st, name, here, what=what)
                    links += 1
                    if links > MAX_SYMLINKS:
                        raise EvidenceError('%s %s: too many levels of symbolic links' % (what, path))
                    if target.startswith('/'):
                        while len(stack) > 1:
                            os.close(stack.pop()[0])
                    pending[:0] = [p for p in target.split('/') if p]
                    continue
            st = os.fstat(sub)
            stack.append((sub, here, st))
            _refuse_shared(st, here, what, not pending)
        fd, real, st = stack.pop()
        if len(real) > 1 and st.st_mode & 0o077:
            # readable by others: tighten (root's evidence is nobody else's business)
            try:
                os.fchmod(fd, 0o700)
            except OSError as e:
                stack.append((fd, real, st))
                raise EvidenceError('%s %s: %s' % (what, real, e.strerror or e), e.errno)
    except BaseException:
        for entry in stack:
            os.close(entry[0])
        raise
    for entry in stack:
        os.close(entry[0])
    return real, fd


class EvidenceDir(object):
    """The evidence directory, open for one run (see :func:`open_private_dir`)."""

    error = None

    def __init__(self, path):
        self.path, self.fd = open_private_dir(path, 'evidence_dir')

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class NoEvidenceDir(object):
    """Stands in for an evidence directory that could not be made or opened
    (ERROR says why): the drain goes on, every :class:`Evidence` of the run
    keeps its bytes in memory only (``inline``) and says why in ``error``."""

    fd = None

    def __init__(self, path, error):
        self.path = path
        self.error = error

    def close(self):
        pass


def apply_retention(open_dir, count=RETENTION_COUNT, max_bytes=RETENTION_BYTES, days=RETENTION_DAYS,
                    keep=(), now=None, grace=RETENTION_GRACE_SECONDS, pattern=EVIDENCE_RE):
    """Remove the oldest evidence files of OPEN_DIR (an EvidenceDir) (only names this
    module gives them, only regular files) until at most COUNT files and
    MAX_BYTES bytes are left and none is older than DAYS; 0 lifts a bound.
    The files in KEEP (this run's) and those modified in the last GRACE
    seconds are never removed but count.  PATTERN (a compiled regex) says
    which names are this kind of evidence (default: the drain's); the
    others are neither counted nor removed.  Returns
    {'removed': n, 'removed_bytes': b}."""
    now = time.time() if now is None else now
    files = []
    for name in os.listdir(open_dir.fd):
        if not pattern.match(name):
            continue
        try:
            st = os.stat(name, dir_fd=open_dir.fd, follow_symlinks=False)
        except OSError:
            continue
        if stat_mod.S_ISREG(st.st_mode):
            files.append((st.st_mtime, name, st.st_size))
    files.sort(reverse=True)
    kept_n = kept_bytes = removed = removed_bytes = 0
    for mtime, name, size in files:
        old = (days and now - mtime > days * 86400) or (count and kept_n >= count) or (
            max_bytes and kept_bytes + size > max_bytes)
        if old and name not in keep and now - mtime > grace:
            try:
                os.unlink(name, dir_fd=open_dir.fd)
            except OSError:
                pass
            else:
                removed += 1
                removed_bytes += size
                continue
        kept_n += 1
        kept_bytes += size
    if removed:
        fsync_dir(open_dir.fd)
    return {'removed': removed, 'removed_bytes': removed_bytes}


def fsync_dir(dir_fd):
    """Make created or removed names durable; a directory that cannot be
    synced (some filesystems refuse) is no reason to fail."""
    if dir_fd is None:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass


# ---- evidence file ---------------------------------------------------------
def write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def utc(epoch, fmt='%Y-%m-%dT%H:%M:%S'):
    return '%s.%06dZ' % (time.strftime(fmt, time.gmtime(epoch)), int((epoch % 1) * 1000000))


def evidence_name(container_id, pid, start_time, epoch):
    return '%s-%d-%d-%s.log' % (container_id[:12], pid, start_time, utc(epoch, '%Y%m%dT%H%M%S'))


def header(record, info, hostname, now, proc):
    """The lines an evidence file starts with: who wrote the bytes, where,
    and what the diagnosis said (INFO is ``_records.check_record(record)``)."""
    pod = record.get('pod') or {}
    cause = record.get('cause') or {}
    shim = record.get('shim') or {}
    rexec = record.get('runc_exec') or {}
    try:
        started = utc(proc.start_epoch(info['start_time']))
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
        'drained_at: %s' % utc(now),
    ]


class Evidence(object):
    """Every byte read from the pipe goes through :meth:`add`: all are counted
    and hashed; the file keeps them all, or past ``limit`` the head and the
    tail with the elided count.  Created 0600 with O_EXCL|O_NOFOLLOW relative
    to the evidence directory fd, so a planted file or symlink is never
    written through.

    A file that cannot be created or written (a full disk, EFBIG) never stops
    the repair: the bytes go on being read, counted and hashed; the result
    says which ones the file kept (``kept_ranges``, offsets in what was read,
    and ``kept_sha``), how many were ``lost``, and a file that kept no pipe
    byte is removed, so retries on a full disk leave no pile of headers.
    Always ``kept + elided + lost == total``."""

    def __init__(self, open_dir, name, header_lines, limit=0):
        self.dir = open_dir
        self.name = name
        self.path = os.path.join(open_dir.path, name)
        self.limit = max(0, int(limit or 0))
        self.head_room = self.limit - self.limit // 2 if self.limit else None
        self.tail_limit = self.limit // 2
        self.tail = bytearray()
        self.total = 0
        self.kept_head = 0
        self.kept_tail = 0
        self.tail_start = None
        self.sha = hashlib.sha256()
        self.kept_sha = hashlib.sha256()
        self.elided = 0
        self.lost = 0
        self.error = None
        self.fd = None
        # every byte's first and last INLINE_BYTES, returned when the file
        # could not keep them all (a full disk, no evidence directory)
        self.inline = HeadTail(min(self.limit or INLINE_BYTES, INLINE_BYTES))
        if open_dir.fd is None:
            self.error = 'no evidence file: %s' % open_dir.error
            self.path = None
            return
        try:
            self.fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | O_CLOEXEC, 0o600,
                              dir_fd=open_dir.fd)
        except OSError as e:
            self.error = 'cannot create %s: %s' % (self.path, e.strerror or e)
            self.path = None
            return
        try:
            write_all(self.fd, ''.join('%s\n' % line for line in header_lines).encode('utf-8', 'replace') + HEADER_END)
        except OSError as e:
            self._failed(e)

    def _failed(self, e):
        if self.error is None:
            self.error = 'writing %s failed after %d of %d bytes: %s' % (
                self.path, self.kept_head, self.total, e.strerror or e)
        self.lost += len(self.tail)
        self.tail = bytearray()
        self.head_room = 0
        self.tail_limit = 0

    def _write(self, data, head):
        """Write DATA (to the HEAD or the tail part); count and hash exactly
        what reached the file, also when a write fails half way (the rest is
        lost, and the OSError raised)."""
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except OSError:
                self.lost += len(view)
                raise
            self.kept_sha.update(view[:n])
            view = view[n:]
            if not head:
                self.kept_tail += n
                continue
            self.kept_head += n
            if self.head_room is not None:
                self.head_room -= n

    def add(self, data):
        if not data:
            return
        self.total += len(data)
        self.sha.update(data)
        self.inline.add(data)
        if self.error is not None:
            self.lost += len(data)
            return
        try:
            if self.head_room is None or self.head_room > 0:
                head = data if self.head_room is None else data[:self.head_room]
                data = data[len(head):]
                try:
                    self._write(head, True)
                except OSError:
                    self.lost += len(data)
                    raise
            if data:
                self.tail += data
                over = len(self.tail) - self.tail_limit
                if over > 0:
                    del self.tail[:over]
                    self.elided += over
        except OSError as e:
            # a full disk must not stop the repair: keep counting and hashing
            self._failed(e)

    @property
    def kept(self):
        return self.kept_head + self.kept_tail

    @property
    def kept_ranges(self):
        ranges = [[0, self.kept_head]] if self.kept_head else []
        if self.kept_tail:
            ranges.append([self.tail_start, self.tail_start + self.kept_tail])
        return ranges

    def close(self, note=''):
        if self.fd is None:
            self.lost += len(self.tail)
            self.tail = bytearray()
            return
        try:
            if self.error is None and self.tail:
                if self.elided > 0:
                    write_all(self.fd, ELIDED_MARK % self.elided)
                self.tail_start = self.total - len(self.tail)
                tail, self.tail = bytes(self.tail), bytearray()
                self._write(tail, False)
        except OSError as e:
            self._failed(e)
        self.lost += len(self.tail)
        self.tail = bytearray()
        notes = [n for n in (note, self.error) if n]
        if self.lost:
            notes.append('%d bytes lost' % self.lost)
        trailer = ': %d bytes read, sha256 %s, %d elided%s -----\n' % (
            self.total, self.sha.hexdigest(), self.elided, ('; ' + '; '.join(notes)) if notes else '')
        try:
            write_all(self.fd, TRAILER_MARK + trailer.encode('utf-8'))
        except OSError as e:
            if self.error is None:
                self.error = 'writing the trailer of %s failed: %s' % (self.path, e.strerror or e)
        try:
            os.fsync(self.fd)
        except OSError as e:
            if self.error is None:
                self.error = 'fsync of %s failed: %s' % (self.path, e.strerror or e)
        os.close(self.fd)
        self.fd = None
        if self.error is not None and not self.kept:
            # a header without a single pipe byte is no evidence: do not pile them up
            try:
                os.unlink(self.name, dir_fd=self.dir.fd)
            except OSError:
                pass
            self.path = None
        fsync_dir(self.dir.fd)

    def inline_result(self):
        """What the result carries of the bytes when the file could not keep
        them all: {'base64', 'ranges' (offsets in what was read), 'sha256'},
        or None when the file has everything it should."""
        if self.error is None and not self.lost:
            return None
        return self.inline.result()


class HeadTail(object):
    """The first and the last bytes of a stream, LIMIT in all, in memory."""

    def __init__(self, limit):
        self.head_limit = limit - limit // 2
        self.tail_limit = limit // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data):
        self.total += len(data)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data and self.tail_limit:
            self.tail += data
            if len(self.tail) > self.tail_limit:
                del self.tail[:len(self.tail) - self.tail_limit]

    def result(self):
        ranges = [[0, len(self.head)]] if self.head else []
        if self.tail:
            ranges.append([self.total - len(self.tail), self.total])
        kept = bytes(self.head) + bytes(self.tail)
        return {'base64': base64.b64encode(kept).decode('ascii'), 'ranges': ranges,
                'sha256': hashlib.sha256(kept).hexdigest()}


def read_evidence(path):
    """(header text, kept body bytes, trailer text) of an evidence file."""
    with open(path, 'rb') as f:
        data = f.read()
    head, sep, rest = data.partition(HEADER_END)
    if not sep:
        raise EvidenceError('%s is not a hangdoctor evidence file' % path)
    cut = rest.rfind(TRAILER_MARK)
    if cut < 0:
        return head.decode('utf-8', 'replace'), rest, ''
    return head.decode('utf-8', 'replace'), rest[:cut], rest[cut + 1:].decode('utf-8', 'replace')
