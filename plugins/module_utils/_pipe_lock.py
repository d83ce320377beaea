# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Locks and done markers of the drain (private module_utils): one drain per
pipe on a host, whatever evidence_dir each run writes to and whichever
writer (runc init or runc exec) its record names, and a marker that tells a
run which raced another that this stuck exec was already drained.

They live in one host-wide directory (``/run/hangdoctor`` by default: a
tmpfs, so a reboot, which ends every pipe, also clears them), opened with
O_NOFOLLOW; every file in it is opened relative to that directory's fd.

Target-side code: Python 3.6+ syntax and stdlib only.  Nothing here calls
``fail_json``: an unusable lock directory raises :class:`LockError`.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import fcntl
import os
import re
import stat as stat_mod
import time

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _defaults
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _evidence
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs
from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import HangdoctorError

DEFAULT_LOCK_DIR = _defaults.DEFAULT_LOCK_DIR
# A lock file nobody holds is removed after this long: a drain lasts its
# timeout times max_rounds at most, far less.
LOCK_KEEP_SECONDS = 3600
LOCK_RE = re.compile(r'^pipe-(\d+)-(\d+)\.lock$')
DONE_RE = re.compile(r'^pipe-(\d+)-(\d+)-(\d+)-(\d+)\.done$')


class LockError(HangdoctorError):
    """The lock directory cannot be used (``errno`` as in EvidenceError)."""

    def __init__(self, msg, errno_=None):
        super(LockError, self).__init__(msg)
        self.errno = errno_


class LockDir(object):
    """The host-wide lock directory, open for one run."""

    error = None

    def __init__(self, path=DEFAULT_LOCK_DIR):
        try:
            self.path, self.fd = _evidence.open_private_dir(path, 'lock_dir')
        except _evidence.EvidenceError as e:
            raise LockError(str(e), e.errno)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def lock(self, dev, inode, pid, start_time):
        return PipeLock(self, dev, inode, pid, start_time=start_time)

    def prune(self, proc, now=None):
        """Remove done markers whose writer is gone (pid and start time are
        in the name: such a marker can never matter again) and lock files
        nobody holds that are older than LOCK_KEEP_SECONDS.  Returns how many
        files were removed."""
        now = time.time() if now is None else now
        removed = 0
        for name in os.listdir(self.fd):
            done = DONE_RE.match(name)
            try:
                if done:
                    if not proc.same_process(int(done.group(3)), int(done.group(4))):
                        os.unlink(name, dir_fd=self.fd)
                        removed += 1
                elif LOCK_RE.match(name):
                    st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
                    if now - st.st_mtime > LOCK_KEEP_SECONDS and _unlink_unheld(self.fd, name):
                        removed += 1
            except (OSError, _procfs.ProcError):
                # unreadable now: left for a later run
                continue
        if removed:
            _evidence.fsync_dir(self.fd)
        return removed


class NoLockDir(object):
    """Stands in for a lock directory that could not be made or opened
    (ERROR says why, e.g. a read-only filesystem): its locks are never held
    and it keeps no done markers.  A drain without the lock is still safe:
    the lock only keeps two runs from reading the same pipe at once, and
    each run pins the writer's identity by itself (pid and start time
    re-checked, the fd opened with an inode check) and keeps every byte it
    reads.  Two runs at once split the bytes between their results; a run
    that raced a finished drain finds the writer no longer blocked and
    skips it."""

    fd = None

    def __init__(self, path, error):
        self.path = path
        self.error = error

    def close(self):
        pass

    def lock(self, dev, inode, pid, start_time):
        return UnheldLock(self.error)

    def prune(self, proc, now=None):
        return 0


class UnheldLock(object):
    """The lock of :class:`NoLockDir`: acquired without being held."""

    done_path = None

    def __init__(self, error):
        self.error = error

    def acquire(self):
        return True

    def release(self):
        pass

    def is_done(self):
        return False

    def mark_done(self, text):
        pass


def _open_lock_file(dir_fd, name):
    fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | _evidence.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    if not stat_mod.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, 'not a regular file', name)
    return fd


def _flock(fd):
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (IOError, OSError) as e:
        if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
            return False
        raise
    return True


def _unlink_unheld(dir_fd, name):
    """Unlink lock file NAME only while holding its flock: a run that opened
    it before checks, once locked, that the name still leads to its file
    (see PipeLock.acquire), so it never locks a removed file."""
    fd = _open_lock_file(dir_fd, name)
    try:
        if not _flock(fd):
            return False
        os.unlink(name, dir_fd=dir_fd)
        return True
    finally:
        os.close(fd)


class PipeLock(object):
    """flock(LOCK_EX|LOCK_NB) on ``pipe-<dev>-<inode>.lock``: one drain per
    pipe on a host, across concurrent runs, also between a runc init record
    and a runc exec record of the same pipe.  ``pipe-<dev>-<inode>-<pid>-
    <starttime>.done`` next to it tells a run that raced (it saw the record
    before the drain) that this exact stuck exec was already drained."""

    def __init__(self, lock_dir, dev, inode, pid, start_time):
        self.dir = lock_dir
        self.name = 'pipe-%d-%d.lock' % (dev, inode)
        self.done_name = 'pipe-%d-%d-%d-%d.done' % (dev, inode, pid, start_time)
        self.path = os.path.join(lock_dir.path, self.name)
        self.done_path = os.path.join(lock_dir.path, self.done_name)
        self.fd = None

    def acquire(self):
        for dummy in range(3):
            fd = _open_lock_file(self.dir.fd, self.name)
            try:
                if not _flock(fd):
                    os.close(fd)
                    return False
                try:
                    same = os.stat(self.name, dir_fd=self.dir.fd, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
                except OSError as e:
                    if e.errno != errno.ENOENT:
                        raise
                    same = False
            except BaseException:
                os.close(fd)
                raise
            if same:
                self.fd = fd
                return True
            # pruned between our open and our flock: lock the new file
            os.close(fd)
        return False

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def is_done(self):
        try:
            os.stat(self.done_name, dir_fd=self.dir.fd, follow_symlinks=False)
        except OSError as e:
            if e.errno == errno.ENOENT:
                return False
            raise
        return True

    def mark_done(self, text):
        fd = os.open(self.done_name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | _evidence.O_CLOEXEC,
                     0o600, dir_fd=self.dir.fd)
        try:
            _evidence.write_all(fd, text.encode('utf-8'))
            os.fsync(fd)
        finally:
            os.close(fd)
        _evidence.fsync_dir(self.dir.fd)
