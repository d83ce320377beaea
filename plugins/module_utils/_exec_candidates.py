# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cheap first pass of the stuck-exec scan (private module_utils): one
snapshot of the process table, and the few processes that could be a stuck
exec (a ``runc init`` or ``runc exec`` with a thread in write(2) on fd 2 right
now).  Nearly every node of a fleet run has none; there the diagnosis proper
(``_stuck_exec``) is never loaded.

Target-side code: Python 3.6+ syntax and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import time

from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import HangdoctorError
from ansible_collections.hangdoctor.runtime.plugins.module_utils._procfs import (
    PIPE_WRITE_WCHANS,
    ProcError,
    ProcessGone,
    pipe_inode_of,
    write_syscall_name,
)
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _runtime_tree as tree
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _shim_scan

SCAN_METHODS = ('auto', 'full')

STDERR_FD = 2


class DiagnosisError(HangdoctorError):
    """The scan cannot run (not a procfs, no privilege) or a record is malformed."""


def write_name(sc, machine):
    if sc['nr'] is None:
        return None
    return write_syscall_name(sc['nr'], machine)


def writing_stderr(proc, pid, machine):
    """Cheap first filter: is a thread of PID inside write/writev on fd 2 right now?"""
    try:
        return is_stderr_write(writing_thread(proc, pid, machine)[1], machine)
    except ProcError:
        return False


def write_fd(sc, machine):
    """The fd that a ``/proc/PID/syscall`` sample SC is writing to with
    write(2)/writev(2), or None (running, outside a system call, another
    call).  The one reading of "in write(2) on fd N" that the first pass,
    the diagnosis and the drain share (:func:`thread_write_state`)."""
    if not sc or sc.get('running') or sc.get('nr') is None or sc['nr'] < 0:
        return None
    if not write_syscall_name(sc['nr'], machine) or not sc.get('args'):
        return None
    return sc['args'][0]


def is_stderr_write(sc, machine):
    return write_fd(sc, machine) == STDERR_FD


# Where one thread of a writer is, for the drain's stop rule and the checks
# before a kill (see thread_write_state).
GONE = 'gone'
BLOCKED = 'blocked'
RUNNABLE = 'runnable'
SETTLED = 'settled'


def thread_write_state(proc, pid, tid, inode, machine):
    """"Thread TID of PID is blocked in write(2) on pipe INODE", the one
    predicate behind the first pass (in write on fd 2), the diagnosis and
    the drain: ``blocked`` (asleep in write(2)/writev(2) on an fd that is
    pipe INODE), ``runnable`` (running, or asleep outside any system call,
    i.e. in a page fault: it goes on writing the moment it returns),
    ``gone``, or ``settled`` (asleep anywhere else)."""
    try:
        st = proc.task_stat(pid, tid)
        if st['state'] in ('Z', 'X', 'x'):
            return GONE
        if st['state'] == 'R':
            return RUNNABLE
        sc = proc.task_syscall(pid, tid)
    except ProcessGone:
        return GONE
    except ProcError:
        sc = None
    if sc is None:
        # /proc/PID/syscall unreadable (ptrace policy): fall back to wchan + fd 2
        try:
            fd = STDERR_FD if proc.task_wchan(pid, tid) in PIPE_WRITE_WCHANS else None
        except ProcError:
            return SETTLED
    elif sc['running'] or (sc['nr'] is not None and sc['nr'] < 0):
        return RUNNABLE
    else:
        fd = write_fd(sc, machine)
    if fd is None:
        return SETTLED
    try:
        return BLOCKED if pipe_inode_of(proc.fd_link(pid, fd)) == inode else SETTLED
    except ProcessGone:
        return GONE
    except ProcError:
        return SETTLED


def writing_thread(proc, pid, machine, leader_sc=None):
    """(tid, syscall) of the thread of PID in write/writev on fd 2: the
    leader when it is, else the first such thread of ``task/*`` (the thread
    that crashed writes the dump, not necessarily the leader); (PID, the
    leader's syscall) when none is."""
    sc = leader_sc if leader_sc is not None else proc.syscall(pid)
    if is_stderr_write(sc, machine):
        return pid, sc
    try:
        tids = proc.tasks(pid)
    except ProcError:
        return pid, sc
    for tid in tids:
        if tid == pid:
            continue
        try:
            tsc = proc.task_syscall(pid, tid)
        except ProcError:
            continue
        if is_stderr_write(tsc, machine):
            return tid, tsc
    return pid, sc


def find(proc, confirm_interval=1.0, peek_bytes=4096, min_age_seconds=0, machine=None, method='auto',
         cmdline_timeout=1.0):
    """The first pass: {'table', 'machine', 'candidates': [(pid, role)],
    'started', 'method', 'fallback_reason', 'scanned'}.  METHOD ``auto``
    first asks the shims (``_shim_scan``): a node whose proven shims hold no
    full pipe has no stuck exec, and no process table is read; anything
    else, and METHOD ``full``, reads every process.
    Raises DiagnosisError when the options or PROC (a ``_procfs.Proc``) cannot work."""
    started = time.monotonic()
    for name, value in (('confirm_interval', confirm_interval), ('peek_bytes', peek_bytes),
                        ('min_age_seconds', min_age_seconds)):
        if value is None or value < 0:
            raise DiagnosisError('%s must not be negative (got %r)' % (name, value))
    if method not in SCAN_METHODS:
        raise DiagnosisError('scan_method must be one of %s (got %r)' % (', '.join(SCAN_METHODS), method))
    if not proc.is_procfs():
        raise DiagnosisError('%s is not a procfs (no self/stat or stat in it)' % proc.root)
    try:
        proc.boot_time()
    except ProcError as e:
        raise DiagnosisError('%s: %s' % (proc.root, e))
    machine = machine or proc.machine()
    fallback = 'scan_method full'
    if method == 'auto':
        shims = _shim_scan.check(proc, cmdline_timeout)
        if shims.clean:
            return {'table': tree.ProcessTable(proc), 'machine': machine, 'candidates': [], 'started': started,
                    'method': 'shims', 'fallback_reason': None, 'scanned': shims.processes + len(shims.shims)}
        fallback = shims.reason
    try:
        table = tree.ProcessTable.snapshot(proc)
    except ProcError as e:
        raise DiagnosisError(str(e))
    # Cheap filter: only processes in write(2) on fd 2 get a closer look.
    candidates = [(pid, role) for pid, role in tree.exec_candidates(table)
                  if writing_stderr(proc, pid, machine)]
    return {'table': table, 'machine': machine, 'candidates': candidates, 'started': started,
            'method': 'full', 'fallback_reason': fallback, 'scanned': len(table)}


def result(found, stuck=(), suspects=(), confirm_seconds=0.0, partial=None, unexamined=0):
    """The scan's result (see ``_stuck_exec.scan``) for the first pass FOUND.
    PARTIAL: why the scan stopped before it looked at every candidate (its
    deadline), None when it did; UNEXAMINED: how many it did not look at.
    ``scan_method``: ``shims`` when the shims proved the node clean, else
    ``full`` with ``scan_fallback_reason``."""
    return {
        'stuck_execs': list(stuck),
        'suspects': list(suspects),
        'scanned_processes': found.get('scanned', len(found['table'])),
        'scan_method': found.get('method', 'full'),
        'scan_fallback_reason': found.get('fallback_reason'),
        'scan_seconds': round(time.monotonic() - found['started'], 4),
        'confirm_seconds': round(confirm_seconds, 4),
        'partial': bool(partial),
        'partial_reason': partial,
        'unexamined_candidates': unexamined,
    }
