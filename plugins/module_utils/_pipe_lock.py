# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Locks and done markers of the drain (private module_utils): one drain per
pipe on a host, and a marker that tells a run which raced another that this
stuck exec was already drained.

Target-side code: Python 3.6+ syntax and stdlib only.  Nothing here calls
``fail_json``: an unusable lock directory raises :class:`LockError`.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import fcntl
import os
import stat as stat_mod

from ansible_collections.hangdoctor.runtime.plugins.module_utils._evidence import write_all


class LockError(Exception):
    """The lock directory cannot be used."""


def prepare_lock_dir(evidence_dir):
    """The ``.locks`` directory (0700) under EVIDENCE_DIR, a directory from
    ``_evidence.prepare_evidence_dir``; return its path."""
    locks = os.path.join(evidence_dir, '.locks')
    try:
        os.mkdir(locks, 0o700)
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise LockError('cannot create %s: %s' % (locks, e.strerror))
    lst = os.lstat(locks)
    if not stat_mod.S_ISDIR(lst.st_mode):
        raise LockError('%s is not a directory' % locks)
    return locks


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
            write_all(fd, text.encode('utf-8'))
        finally:
            os.close(fd)
