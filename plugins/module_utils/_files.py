# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Atomic file writes and bounded reads of our own output files (private
module_utils): the one implementation behind report_write, the node metrics
textfile and rewritten manifests.

Target-side code: Python 3.6+ syntax and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import binascii
import errno
import os
import stat

from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import HangdoctorError


class WriteError(HangdoctorError):
    """A file could not be written; the text names it and says why."""


def parse_mode(value):
    """0o644 from 0o644, '0644' or '644'."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return int(str(value), 8)
    except ValueError:
        raise WriteError('mode must be octal, e.g. 0644, not %r' % (value,))


_NOFOLLOW = getattr(os, 'O_NOFOLLOW', 0)
_CLOEXEC = getattr(os, 'O_CLOEXEC', 0)
_DIRECTORY = getattr(os, 'O_DIRECTORY', 0)


def same_file(path, data, mode):
    """True when PATH already holds DATA with MODE (nothing to write).  A
    symlink or anything but a regular file is never "the same"."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW | _CLOEXEC)
    except (IOError, OSError):
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or stat.S_IMODE(st.st_mode) != mode or st.st_size != len(data):
            return False
        chunks, left = [], len(data) + 1
        while left > 0:
            chunk = os.read(fd, min(65536, left))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b''.join(chunks) == data
    except (IOError, OSError):
        return False
    finally:
        os.close(fd)


def unsafe_dir_reason(st, euid=None, egid=None):
    """Why a directory with stat ST is not safe for root to write its files in,
    or None.  Whoever owns a directory, or may write in it, can rename, replace
    or delete what we put there (a report that says "all clear", a metrics file
    that hides a stuck exec) and race every name we use: only root or the user
    this runs as may own it, and only they (or a group of theirs) may write in it,
    unless the sticky bit stops others from touching our files."""
    euid = os.geteuid() if euid is None else euid
    egid = os.getegid() if egid is None else egid
    if st.st_uid not in (0, euid):
        return 'it is owned by uid %d, not by root or by this user (uid %d)' % (st.st_uid, euid)
    sticky = bool(st.st_mode & stat.S_ISVTX)
    if st.st_mode & stat.S_IWOTH and not sticky:
        return 'every user may write in it (mode %04o)' % stat.S_IMODE(st.st_mode)
    if st.st_mode & stat.S_IWGRP and not sticky and st.st_gid not in (0, egid):
        return 'group %d may write in it (mode %04o)' % (st.st_gid, stat.S_IMODE(st.st_mode))
    return None


def _open_dir(directory, follow=False):
    # O_NOFOLLOW: a symlink placed where the directory should be is refused,
    # not followed; every later step goes through this descriptor.
    return os.open(directory, os.O_RDONLY | _DIRECTORY | (0 if follow else _NOFOLLOW) | _CLOEXEC)


def check_dir(directory):
    """None when DIRECTORY is a real directory that is safe to write in (see
    unsafe_dir_reason), else why not (a sentence that names it)."""
    try:
        dfd = _open_dir(directory)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            return '%s is not a directory (a symlink or a file)' % directory
        return 'cannot open %s: %s' % (directory, e.strerror or e)
    try:
        why = unsafe_dir_reason(os.fstat(dfd))
    finally:
        os.close(dfd)
    return None if why is None else '%s: %s' % (directory, why)


def _tmp_name(path):
    return '.%s.%s.tmp' % (os.path.basename(path), binascii.hexlify(os.urandom(6)).decode('ascii'))


def write_atomic(path, data, mode=0o644, create_dir=True, keep_owner=False, durable=True, safe_dir=False):
    """Write DATA (bytes) to PATH through a synced temporary file in the same
    directory and rename(2), so a reader sees the old file or the new one,
    never a part.  The temporary name is ``.<name>.<random>.tmp``: collectors
    that read ``*.prom`` never pick it up.  ``keep_owner`` gives the new file
    the owner of the file it replaces (a manifest in someone's checkout).
    ``durable=False`` skips the fsyncs: for a file that the next run rewrites
    anyway (node metrics), the rename alone keeps readers from a partial file,
    and a fleet run should not wait for the disk on every node.
    ``safe_dir`` refuses a directory that another user owns or may write in
    (unsafe_dir_reason): the report and metrics directories.

    Everything happens through one descriptor of the directory (opened without
    following a symlink): the temporary file is created O_EXCL|O_NOFOLLOW,
    mode and owner are set on its descriptor (fchmod/fchown), never by path,
    so nobody who can write in the directory can make root chmod or chown
    another file through a symlink in the temporary file's place."""
    directory = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    if not name:
        raise WriteError('%s names a directory, not a file' % path)
    if not os.path.isdir(directory) and not os.path.islink(directory):
        if not create_dir:
            raise WriteError('directory %s does not exist' % directory)
        try:
            os.makedirs(directory, 0o755)
        except OSError as e:
            if not os.path.isdir(directory):
                raise WriteError('cannot create %s: %s' % (directory, e))
    try:
        # A directory named by hand (a manifest's folder) may be a symlink;
        # a report or metrics directory (safe_dir) may not.
        dfd = _open_dir(directory, follow=not safe_dir)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise WriteError('refusing to write in %s: it is not a directory (a symlink or a file)' % directory)
        raise WriteError('cannot open %s: %s' % (directory, e))
    try:
        if safe_dir:
            why = unsafe_dir_reason(os.fstat(dfd))
            if why:
                raise WriteError('refusing to write %s: %s, so another user could replace what is written there; '
                                 'remove that directory or choose another one' % (path, why))
        _write_in(dfd, directory, name, path, data=data, mode=mode, keep_owner=keep_owner, durable=durable)
    finally:
        os.close(dfd)


def _write_in(dfd, directory, name, path, data, mode, keep_owner, durable):
    owner = None
    if keep_owner:
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            owner = (st.st_uid, st.st_gid)
        except OSError:
            owner = None
    tmp, fd = None, None
    for dummy in range(16):
        tmp = _tmp_name(path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600, dir_fd=dfd)
            break
        except OSError as e:
            if e.errno == errno.EEXIST:
                continue
            raise WriteError('cannot write in %s: %s' % (directory, e))
    if fd is None:
        raise WriteError('cannot write in %s: no free temporary name' % directory)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, mode)
            if owner is not None:
                try:
                    os.fchown(fd, owner[0], owner[1])
                except OSError:
                    pass
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except (IOError, OSError) as e:
        try:
            os.unlink(tmp, dir_fd=dfd)
        except OSError:
            pass
        raise WriteError('cannot write %s: %s' % (path, e))
    if durable:
        try:
            # The rename is durable only once the directory entry is on disk.
            os.fsync(dfd)
        except OSError:
            pass


def read_small(path, limit=1024 * 1024, timeout=1.0):
    """The text of one of our own small files (a previous metrics file), at
    most its first LIMIT bytes, or '' when it is absent, not a regular file or
    a symlink.
    Read through the one bounded reader (``_procfs.read_regular_file``): the
    directory may be writable by others, so the file is never followed,
    never blocks on a FIFO, and the read has size and time bounds."""
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs
    try:
        return _procfs.read_regular_file(path, limit, timeout, truncate=True).decode('utf-8', 'replace')
    except (_procfs.ProcessGone, _procfs.Refused):
        return ''  # absent, or a symlink, a FIFO or a device: not ours
    except _procfs.ProcError as e:
        raise WriteError('cannot read %s: %s' % (path, e))
