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

import os
import stat
import tempfile


class WriteError(Exception):
    """A file could not be written; the text names it and says why."""


def parse_mode(value):
    """0o644 from 0o644, '0644' or '644'."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return int(str(value), 8)
    except ValueError:
        raise WriteError('mode must be octal, e.g. 0644, not %r' % (value,))


def same_file(path, data, mode):
    """True when PATH already holds DATA with MODE (nothing to write)."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or stat.S_IMODE(st.st_mode) != mode or st.st_size != len(data):
            return False
        with open(path, 'rb') as f:
            return f.read(len(data) + 1) == data
    except (IOError, OSError):
        return False


def _fsync_dir(directory):
    # The rename is durable only once the directory entry is on disk.
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def write_atomic(path, data, mode=0o644, create_dir=True, keep_owner=False, durable=True):
    """Write DATA (bytes) to PATH through a synced temporary file in the same
    directory and rename(2), so a reader sees the old file or the new one,
    never a part.  The temporary name is ``.<name>.<random>.tmp``: collectors
    that read ``*.prom`` never pick it up.  ``keep_owner`` gives the new file
    the owner of the file it replaces (a manifest in someone's checkout).
    ``durable=False`` skips the fsyncs: for a file that the next run rewrites
    anyway (node metrics), the rename alone keeps readers from a partial file,
    and a fleet run should not wait for the disk on every node."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        if not create_dir:
            raise WriteError('directory %s does not exist' % directory)
        try:
            os.makedirs(directory, 0o755)
        except OSError as e:
            if not os.path.isdir(directory):
                raise WriteError('cannot create %s: %s' % (directory, e))
    owner = None
    if keep_owner:
        try:
            st = os.lstat(path)
            owner = (st.st_uid, st.st_gid)
        except OSError:
            owner = None
    try:
        fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), suffix='.tmp', dir=directory)
    except OSError as e:
        raise WriteError('cannot write in %s: %s' % (directory, e))
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        if owner is not None:
            try:
                os.chown(tmp, owner[0], owner[1])
            except OSError:
                pass
        os.rename(tmp, path)
    except (IOError, OSError) as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise WriteError('cannot write %s: %s' % (path, e))
    if durable:
        _fsync_dir(directory)


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
