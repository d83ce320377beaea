# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shape of a stuck exec record (private module_utils): one rule for
the records runc_exec_info returns and the ones a user hands to
runc_pipe_drain, used by the diagnosis (``_stuck_exec.verify``) and by the
drain alike.

Target-side code: Python 3.6+ syntax and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import HangdoctorError
from ansible_collections.hangdoctor.runtime.plugins.module_utils._runtime_tree import CONTAINER_ID_RE

ROLES = ('runc_init', 'runc_exec')


class RecordError(HangdoctorError, ValueError):
    """A stuck exec record that is not shaped as runc_exec_info returns it."""


def _int(value, what, minimum):
    # bool is an int to Python; a hand-written `pid: true` is still a mistake
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise RecordError('%s must be an integer%s, got %r' % (
            what, ' > 0' if minimum > 0 else ' >= 0', value))
    return value


def _dict(record, key, where):
    value = record.get(key)
    if not isinstance(value, dict):
        raise RecordError('stuck exec record %s: %s missing' % (where, key))
    return value


def check_record(record):
    """Raise :class:`RecordError` unless RECORD has every field the
    verification and the drain rely on; return the drain's summary of it:
    container_id, role, pid, start_time, inode, fd and ``watch``, the
    [(pid, start_time)] whose write(2) on the pipe must end (the stuck writer
    first)."""
    if not isinstance(record, dict):
        raise RecordError('a stuck exec record must be a dict, not a %s' % type(record).__name__)
    cid = record.get('container_id')
    if not isinstance(cid, str) or not CONTAINER_ID_RE.match(cid):
        raise RecordError('stuck exec record: container_id must be 64 hex digits, got %r' % (cid,))
    where = cid[:12]
    writer = _dict(record, 'writer', where)
    role = writer.get('role')
    if role not in ROLES:
        raise RecordError('stuck exec record %s: writer.role must be runc_init or runc_exec, got %r' % (where, role))
    rexec = _dict(record, 'runc_exec', where)
    shim = _dict(record, 'shim', where)
    pipe = _dict(record, 'pipe', where)
    if not isinstance(record.get('readers'), list):
        raise RecordError('stuck exec record %s: readers must be a list' % where)
    out = {
        'container_id': cid,
        'role': role,
        'pid': _int(writer.get('pid'), 'writer.pid', 1),
        'start_time': _int(writer.get('start_time'), 'writer.start_time', 0),
        'inode': _int(pipe.get('inode'), 'pipe.inode', 1),
        'fd': _int(pipe.get('fd', 2), 'pipe.fd', 0),
    }
    exec_id = (_int(rexec.get('pid'), 'runc_exec.pid', 1), _int(rexec.get('start_time'), 'runc_exec.start_time', 0))
    _int(shim.get('pid'), 'shim.pid', 1)
    _int(shim.get('start_time'), 'shim.start_time', 0)
    out['watch'] = [(out['pid'], out['start_time'])]
    # runc exec writes its own error line to the same pipe once runc init is
    # gone: watch it too, or the drain stops just before it blocks.
    if role == 'runc_init':
        out['watch'].append(exec_id)
    return out


def has_shim_reader(record):
    return any(isinstance(r, dict) and r.get('is_shim') for r in record.get('readers') or [])
