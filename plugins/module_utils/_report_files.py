# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The work of report_write (private module_utils): write one file or several
atomically and say what changed.  Shared by the module (on any host) and its
action plugin, which does the same work in the controller's own process when
the task runs there (a report written on the controller needs no module
execution).

Target-side code: Python 3.6+ syntax and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import os

from ansible_collections.hangdoctor.runtime.plugins.module_utils._files import (
    WriteError,
    check_dir,
    read_small,
    same_file,
    write_atomic,
)

MAX_DIFF_BYTES = 256 * 1024

ARGUMENT_SPEC = dict(
    path=dict(type='path'),
    content=dict(type='str'),
    files=dict(type='list', elements='dict', options=dict(
        path=dict(type='path', required=True),
        content=dict(type='str', required=True),
    )),
    mode=dict(type='raw', default='0644'),
    create_dir=dict(type='bool', default=True),
)
MUTUALLY_EXCLUSIVE = [('files', 'path'), ('files', 'content')]
REQUIRED_ONE_OF = [('files', 'path')]
REQUIRED_TOGETHER = [('path', 'content')]


class FilesError(WriteError):
    """A file of several could not be written: ``result`` holds the module's
    failure result (the files written before it, changed)."""

    def __init__(self, msg, result):
        super(FilesError, self).__init__(msg)
        self.result = result


def _diff(path, data):
    """Ansible's before/after of PATH (never follows a symlink, reads at most MAX_DIFF_BYTES)."""
    try:
        st = os.lstat(path)
        size = st.st_size
    except OSError:
        size = None
    if size is not None and size > MAX_DIFF_BYTES:
        before = '(%d bytes, not shown)\n' % size
    else:
        before = read_small(path, MAX_DIFF_BYTES) if size is not None else ''
    after = ('(%d bytes, not shown)\n' % len(data) if len(data) > MAX_DIFF_BYTES
             else data.decode('utf-8', 'replace'))
    return dict(before=before, after=after, before_header=path, after_header=path)


def write_one(path, content, mode, create_dir=True, check_mode=False, diff=False):
    """The single-file result for PATH; WriteError when it cannot be written."""
    data = content.encode('utf-8', 'surrogateescape') if not isinstance(content, bytes) else content
    result = dict(changed=False, path=path, size=len(data), sha256=hashlib.sha256(data).hexdigest())
    if os.path.isdir(path):
        raise WriteError('%s is a directory' % path)
    directory = os.path.dirname(os.path.abspath(path))
    if check_mode and os.path.lexists(directory):
        # check mode says now what the real run would refuse
        why = check_dir(directory)
        if why:
            raise WriteError('refusing to write %s: %s' % (path, why))
    if not same_file(path, data, mode):
        result['changed'] = True
        if diff:
            result['diff'] = _diff(path, data)
        if not check_mode:
            write_atomic(path, data, mode, create_dir, safe_dir=True)
    return result


def _verb(check_mode, changed):
    return ('would write' if check_mode else 'wrote') if changed else 'unchanged'


def write_files(params, mode, check_mode=False, diff=False):
    """The module result for validated PARAMS (path/content or files) and the
    parsed MODE.  Raises WriteError (single file) or FilesError."""
    if params.get('files') is None:
        path = params['path']
        result = write_one(path, params['content'], mode, params['create_dir'], check_mode=check_mode, diff=diff)
        result['msg'] = '%s %s (%d bytes)' % (_verb(check_mode, result['changed']), path, result['size'])
        return result
    if not params['files']:
        raise FilesError('files must name at least one file', {})
    written = []
    for entry in params['files']:
        try:
            written.append(write_one(entry['path'], entry['content'], mode, params['create_dir'],
                                     check_mode=check_mode, diff=diff))
        except WriteError as e:
            raise FilesError('%s (%d of the files before it done)' % (e, len(written)),
                             dict(files=written, changed=any(f['changed'] for f in written)))
    diffs = [f.pop('diff') for f in written if 'diff' in f]
    changed = [f for f in written if f['changed']]
    paths = ', '.join(f['path'] for f in written)
    if changed:
        msg = '%s %d of %d files (%s)' % (_verb(check_mode, True), len(changed), len(written), paths)
    else:
        msg = 'unchanged %d files (%s)' % (len(written), paths)
    result = dict(changed=bool(changed), files=written, msg=msg)
    if diffs:
        result['diff'] = diffs
    return result
