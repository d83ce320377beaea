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

import errno
import hashlib
import os
import stat as stat_mod
import time

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs

HEADER_END = b'----- hangdoctor: pipe bytes follow -----\n'
ELIDED_MARK = b'\n----- hangdoctor: %d bytes elided -----\n'
TRAILER_MARK = b'\n----- hangdoctor: end of pipe bytes'


class EvidenceError(Exception):
    """An unusable evidence directory or a file that is not evidence."""


# ---- evidence directory ----------------------------------------------------
def prepare_evidence_dir(path):
    """Create (0700) or check the evidence directory; return its real path.
    Refuses a relative path and a symlink owned by another user (someone could
    point our root-owned evidence files anywhere)."""
    if not path or not os.path.isabs(path):
        raise EvidenceError('evidence_dir must be an absolute path, got %r' % (path,))
    try:
        st = os.lstat(path)
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise EvidenceError('evidence_dir %s: %s' % (path, e.strerror))
        try:
            os.makedirs(path, 0o700)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise EvidenceError('cannot create evidence_dir %s: %s' % (path, e.strerror))
        st = os.lstat(path)
    if stat_mod.S_ISLNK(st.st_mode) and st.st_uid != os.geteuid():
        raise EvidenceError('evidence_dir %s is a symlink owned by uid %d, refusing it' % (path, st.st_uid))
    real = os.path.realpath(path)
    try:
        rst = os.stat(real)
    except OSError as e:
        raise EvidenceError('evidence_dir %s: %s' % (path, e.strerror))
    if not stat_mod.S_ISDIR(rst.st_mode):
        raise EvidenceError('evidence_dir %s is not a directory' % path)
    if rst.st_uid == os.geteuid() and rst.st_mode & 0o077:
        os.chmod(real, 0o700)
    return real


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
            write_all(self.fd, ''.join('%s\n' % line for line in header_lines).encode('utf-8', 'replace') + HEADER_END)
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
            write_all(self.fd, data)
            self.kept_head += len(data)
            return
        if self.head_room > 0:
            head = data[:self.head_room]
            write_all(self.fd, head)
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
                write_all(self.fd, ELIDED_MARK % self.elided)
            write_all(self.fd, bytes(self.tail))
            trailer = ': %d bytes read, sha256 %s, %d elided%s -----\n' % (
                self.total, self.sha.hexdigest(), self.elided, ('; ' + note) if note else '')
            write_all(self.fd, TRAILER_MARK + trailer.encode('utf-8'))
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
        raise EvidenceError('%s is not a hangdoctor evidence file' % path)
    cut = rest.rfind(TRAILER_MARK)
    if cut < 0:
        return head.decode('utf-8', 'replace'), rest, ''
    return head.decode('utf-8', 'replace'), rest[:cut], rest[cut + 1:].decode('utf-8', 'replace')
