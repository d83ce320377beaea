# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Diagnosis of stuck execs from /proc alone (private module_utils).

A stuck exec is a ``runc init`` (or, once its runc init died, the ``runc
exec`` itself) blocked in write(2) on fd 2, a pipe that is full because the
only reader, the containerd shim, reads it only after ``runc exec`` returns.
``scan()`` finds every one and proves it from /proc alone (syscall, wchan,
pipe fill against its capacity, the shim as reader, no progress between two
samples, the process tree);
``verify()`` re-checks one record right before somebody acts on it.  Nothing
here changes anything: the crash dump is peeked with tee(2), not read.

Target-side code: Python 3.6+ syntax and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import time
from collections import namedtuple

from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import HangdoctorError
from ansible_collections.hangdoctor.runtime.plugins.module_utils._procfs import (
    PIPE_WRITE_WCHANS,
    ProcError,
    ProcessGone,
    Timeout,
    pipe_inode_of,
    tee_peek,
)
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _exec_candidates
from ansible_collections.hangdoctor.runtime.plugins.module_utils._shim_scan import pipe_is_full
from ansible_collections.hangdoctor.runtime.plugins.module_utils._exec_candidates import (
    STDERR_FD,
    DiagnosisError,
    is_stderr_write,
    writing_thread as _writing_thread,
    write_name as _write_name,
)
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _policy
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _runtime_tree as tree
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _crash_dump as crash_dump
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _records

CLASSIFY_BYTES = 4096


def _default_probe(proc):
    return proc.pipe_fill


def _default_peek(proc):
    def peek(pid, fd, inode, nbytes):
        f = proc.open_fd(pid, fd, inode)
        try:
            return tee_peek(f, nbytes)
        finally:
            os.close(f)
    return peek


def _sample(proc, pid, machine):
    """The writer's own signals, from its writing thread; none of these
    reads takes its mm lock."""
    st = proc.stat(pid)
    tid, sc = _writing_thread(proc, pid, machine)
    thread_st = st
    if tid != pid:
        try:
            thread_st = proc.task_stat(pid, tid)
            status = proc.task_status(pid, tid)
        except ProcError:
            tid, thread_st, sc = pid, st, proc.syscall(pid)
            status = proc.status(pid)
    else:
        status = proc.status(pid)
    try:
        wchan = proc.task_wchan(pid, tid) if tid != pid else proc.wchan(pid)
    except ProcessGone:
        raise
    except ProcError:
        wchan = ''
    try:
        link = proc.fd_link(pid, STDERR_FD)
    except ProcessGone:
        if proc.same_process(pid, st['starttime']):
            link = None  # fd 2 closed
        else:
            raise
    return {'stat': st, 'state': thread_st['state'], 'tid': tid,
            'vcs': status.get('voluntary_ctxt_switches'), 'syscall': sc, 'wchan': wchan, 'fd2': link}


class ScanDeadline(HangdoctorError):
    """The scan's overall deadline passed (internal: scan() then reports a partial result)."""


class _Context(object):
    def __init__(self, proc, table, machine, pipe_probe, cmdline_timeout, now, shims=None):
        self.proc = proc
        self.table = table
        self.machine = machine
        self.pipe_probe = pipe_probe
        self.cmdline_timeout = cmdline_timeout
        self.now = now
        self.shims = shims
        self._argv = {}
        # every pipe of the scan's candidates: one walk of all fds finds the
        # holders of all of them (see holders()); scan() sets them
        self.inodes = set()
        self.deadline = None
        self._holders = {}
        self._fd_map = None

    def check_deadline(self):
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise ScanDeadline()

    def holders(self, inode, pids=None):
        """[(pid, fd, mode)] holding pipe INODE, among PIDS or every process.
        Every process: one fd map per scan, built on first use for all the
        candidates' pipes at once (a host's fds can number tens of
        thousands, and hostile writers hundreds)."""
        if pids is None:
            if self._fd_map is None or inode not in self._fd_map:
                try:
                    self._fd_map = self.proc.pipe_holders(self.inodes | set([inode]), deadline=self.deadline)
                except Timeout:
                    raise ScanDeadline()
            return self._fd_map[inode]
        key = (inode, tuple(pids))
        if key not in self._holders:
            self._holders[key] = self.proc.pipe_holders([inode], pids=pids)[inode]
        return self._holders[key]

    def argv(self, pid):
        if pid not in self._argv:
            try:
                self._argv[pid] = self.proc.cmdline(pid, self.cmdline_timeout)
            except ProcError as e:
                self._argv[pid] = e
        return self._argv[pid]

    def is_shim(self, pid, comm=None):
        comm = comm if comm is not None else self.table.comm(pid)
        if not tree.is_shim_comm(comm):
            return False
        argv = self.argv(pid)
        return not isinstance(argv, Exception) and tree.is_shim_argv(argv)

    def age(self, starttime):
        return round(max(0.0, self.now - self.proc.start_epoch(starttime)), 3)


def _readers(ctx, inode, shim_pid, exclude):
    """Who holds pipe INODE open for reading.  Shims first (a few fds each);
    only when no shim has it, every process, so a near-miss names its reader."""
    proc = ctx.proc
    holders = []
    searches = []
    if shim_pid:
        searches.append([shim_pid])
    if ctx.shims:
        searches.append([p for p in ctx.shims if p != shim_pid])
    searches.append(None)
    for pids in searches:
        if pids is not None and not pids:
            continue
        holders = [h for h in ctx.holders(inode, pids) if h[2] in ('r', 'rw') and h[0] not in exclude]
        if holders:
            break
    out = []
    for pid, fd, dummy in holders:
        comm = ctx.table.comm(pid)
        if comm is None:
            try:
                comm = proc.comm(pid)
            except ProcError:
                comm = None
        out.append({'pid': pid, 'fd': fd, 'comm': comm, 'is_shim': ctx.is_shim(pid, comm)})
    return out


def _examine(ctx, pid, role, require_write=True):
    """First look at one possible writer: (record, reasons), or None when it
    is gone or (with REQUIRE_WRITE) not writing its stderr at all."""
    proc = ctx.proc
    try:
        s1 = _sample(proc, pid, ctx.machine)
    except ProcessGone:
        return None
    st = s1['stat']
    sc = s1['syscall']
    syscall = _write_name(sc, ctx.machine)
    writing_stderr = is_stderr_write(sc, ctx.machine)
    if require_write and not writing_stderr:
        return None
    reasons = []

    # Role: comm only for runc init (never its argv: its mm lock may be held).
    if role == 'runc_init':
        if st['comm'] not in tree.RUNC_INIT_COMMS and not tree.is_runc_comm(st['comm']):
            reasons.append('comm %s is not runc init' % st['comm'])
        exec_pid = st['ppid']
    else:
        if not tree.is_runc_comm(st['comm']):
            reasons.append('comm %s is not runc' % st['comm'])
        exec_pid = pid
    exec_stat = st if exec_pid == pid else ctx.table.get(exec_pid)

    runc_exec = None
    container_id = None
    exec_argv = []
    if exec_stat is None or not tree.is_runc_comm(exec_stat['comm']):
        reasons.append('parent is not runc exec' if role == 'runc_init' else 'writer is not runc exec')
    else:
        argv = ctx.argv(exec_pid)
        if isinstance(argv, Exception):
            reasons.append('runc exec argv unreadable: %s' % argv)
        else:
            exec_argv = argv
            if tree.runc_subcommand(argv) != 'exec':
                reasons.append('parent is not runc exec' if role == 'runc_init' else 'writer is not runc exec')
            else:
                container_id = tree.exec_container_id(argv)
                if container_id is None:
                    reasons.append('runc exec argv does not end with a container id')
        runc_exec = {'pid': exec_pid, 'start_time': exec_stat['starttime'],
                     'age_seconds': ctx.age(exec_stat['starttime']), 'argv': exec_argv}

    shim = None
    shim_pid = tree.find_shim(ctx.table, exec_pid, ctx.is_shim) if runc_exec else None
    if runc_exec and shim_pid is None:
        reasons.append('no containerd shim above runc exec')
    if shim_pid is not None:
        shim_argv = ctx.argv(shim_pid)
        if isinstance(shim_argv, Exception):
            shim_argv = []
        info = tree.shim_info(shim_argv)
        shim = {'pid': shim_pid, 'start_time': ctx.table.get(shim_pid)['starttime'],
                'version': info['version'], 'argv': shim_argv, 'id': info['id']}
        # what proves a real runc exec, not a container process named runc
        # with a runc argv under the shim: namespaces, executable, bundle
        bundle, why = tree.runc_exec_bundle(proc, exec_pid, shim_pid, container_id, shim_namespace=info['namespace'])
        runc_exec['bundle'] = bundle
        reasons.extend(why)

    if s1['state'] != 'S':
        reasons.append('state %s, not S' % s1['state'])
    if not syscall:
        reasons.append('not in write(2)')
    elif not writing_stderr:
        reasons.append('writing fd %s, not 2' % (sc['args'][0] if sc['args'] else '?'))
    # An empty wchan means the kernel hides it; the other signals still decide.
    if s1['wchan'] and s1['wchan'] not in PIPE_WRITE_WCHANS:
        reasons.append('wchan %s is not a pipe write' % s1['wchan'])

    inode = pipe_inode_of(s1['fd2'])
    pipe = {'inode': inode, 'capacity': None, 'queued': None, 'fd': STDERR_FD}
    readers = []
    if inode is None:
        reasons.append('fd 2 is not a pipe')
    else:
        try:
            pipe['queued'], pipe['capacity'] = ctx.pipe_probe(pid, STDERR_FD, inode)
        except ProcessGone:
            return None
        except (ProcError, IOError, OSError) as e:
            reasons.append('pipe unreadable: %s' % e)
        if pipe['capacity'] is not None and not pipe_is_full(pipe['queued'], pipe['capacity']):
            reasons.append('pipe not full (%s of %s bytes queued)' % (pipe['queued'], pipe['capacity']))
        exclude = set([pid, exec_pid])
        readers = _readers(ctx, inode, shim_pid, exclude)
        if not readers:
            reasons.append('no process reads the pipe')
        elif not any(r['is_shim'] for r in readers):
            reasons.append('reader is not a shim')

    writer = {'role': role, 'pid': pid, 'start_time': st['starttime'], 'comm': st['comm'],
              'state': s1['state'], 'wchan': s1['wchan'], 'syscall': syscall}
    if s1['tid'] != pid:
        writer['tid'] = s1['tid']
    runc_init = None
    if role == 'runc_init':
        runc_init = {'pid': pid, 'start_time': st['starttime'], 'age_seconds': ctx.age(st['starttime']),
                     'state': s1['state'], 'wchan': s1['wchan'], 'syscall': syscall, 'comm': st['comm']}
    record = {
        'container_id': container_id,
        'writer': writer,
        'runc_init': runc_init,
        'runc_exec': runc_exec,
        'shim': shim,
        'pipe': pipe,
        'readers': readers,
        'peek': '',
        'peek_bytes': 0,
        'cause': None,
        'pod': {'namespace': None, 'name': None, 'container': None},
        'age_seconds': ctx.age(st['starttime']),
        'evidence': {'queued': [pipe['queued']], 'voluntary_ctxt_switches': [s1['vcs']]},
    }
    return record, reasons


def _confirm(ctx, record, reasons, interval):
    """Second sample, INTERVAL after the first: same process, still in write
    on fd 2, queued bytes and voluntary context switches unchanged.  Returns
    False when the writer is gone (the exec went on: nothing to report)."""
    pid = record['writer']['pid']
    proc = ctx.proc
    try:
        s2 = _sample(proc, pid, ctx.machine)
    except ProcessGone:
        return False
    if s2['stat']['starttime'] != record['writer']['start_time']:
        return False
    queued = record['pipe']['queued']
    if record['pipe']['inode'] is not None and queued is not None:
        try:
            queued = ctx.pipe_probe(pid, STDERR_FD, record['pipe']['inode'])[0]
        except ProcessGone:
            return False
        except (ProcError, IOError, OSError):
            queued = None
    record['evidence']['queued'].append(queued)
    record['evidence']['voluntary_ctxt_switches'].append(s2['vcs'])
    record['evidence']['confirm_interval'] = interval
    sc = s2['syscall']
    still_writing = is_stderr_write(sc, ctx.machine)
    if (not still_writing or queued != record['pipe']['queued'] or s2['vcs'] != record['evidence']['voluntary_ctxt_switches'][0]):
        reasons.append('writer making progress')
    return True


def _matches(container_id, wanted):
    if not wanted:
        return True
    return bool(container_id) and any(container_id.startswith(w) for w in wanted)


def _finish(record, peek_bytes, pipe_peek, oom_lines):
    """Peek at the dump (tee: nothing is consumed) and classify it.  The
    classifier sees at least CLASSIFY_BYTES even when the caller wants a
    shorter peek, so a small peek_bytes does not hide the cause."""
    text = ''
    if peek_bytes and record['pipe']['inode'] is not None and record['pipe']['queued']:
        try:
            data = pipe_peek(record['writer']['pid'], STDERR_FD, record['pipe']['inode'],
                             max(peek_bytes, CLASSIFY_BYTES))
        except (ProcError, IOError, OSError) as e:
            data = b''
            record['peek_error'] = str(e)  # a failed peek does not unprove the hang
        text = data.decode('utf-8', 'replace')
        record['peek'] = data[:peek_bytes].decode('utf-8', 'replace')
        record['peek_bytes'] = len(data[:peek_bytes])
    record['cause'] = crash_dump.classify(text, crash_dump.oom_kills_for(oom_lines, record['container_id']))
    return record


def _pipe_key(proc, pid):
    """The pipe on PID's fd 2 (the key candidates are merged by), or ('pid',
    PID) when it is no pipe, closed or unreadable (examined alone)."""
    try:
        inode = pipe_inode_of(proc.fd_link(pid, STDERR_FD))
    except ProcError:
        inode = None
    return inode if inode is not None else ('pid', pid)


def _by_pipe(proc, candidates):
    """CANDIDATES merged by the pipe on their fd 2, before any reader is
    looked for: [(key, [(pid, role)])], runc inits first in each group.  A
    runc exec blocked behind its own runc init is the same stuck exec, and
    a hundred writers on one pipe are one pipe to prove."""
    groups = {}
    order = []
    for pid, role in candidates:
        key = _pipe_key(proc, pid)
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append((pid, role))
    for key in order:
        groups[key].sort(key=lambda pr: (pr[1] != 'runc_init', pr[0]))
    return [(key, groups[key]) for key in order]


def _better(found, best):
    """One pipe, one record: a proven writer before a suspect, a runc init
    before a runc exec, else the first."""
    if best is None:
        return True

    def rank(f):
        return (bool(f[1]), f[0]['writer']['role'] != 'runc_init')
    return rank(found) < rank(best)


# The whole scan ends within this many seconds (the first pass included),
# with a partial result past it: the node-problem-detector plugin gives a
# check 30 s, and a node whose workloads fake hundreds of runc inits must
# not turn every check into "unknown".
SCAN_DEADLINE_SECONDS = 20.0
DEADLINE_REASON = 'scan deadline of %ss reached: %s'


class ScanOptions(namedtuple('ScanOptions', ['container_ids', 'confirm_interval', 'peek_bytes', 'min_age_seconds',
                                             'kmsg', 'cmdline_timeout', 'deadline_seconds', 'method'])):
    """What one scan looks for: CONTAINER_IDS (None: every one), the seconds
    between the two progress samples, the bytes to peek, the age below which
    a stuck exec is a suspect, ``kmsg`` (True reads /dev/kmsg, a path reads
    that file, False skips), the deadline of one cmdline read, and the
    seconds the whole scan may take (from the start of the first pass; 0 =
    none): past it the scan stops looking, reports what it proved so far,
    lists what it examined but could not confirm as suspects, and says
    ``partial``: a partial scan never reads as a healthy node.  METHOD
    (``auto``, ``full``): see ``_exec_candidates.find``."""


ScanOptions.__new__.__defaults__ = (None, 1.0, 4096, 0, True, 1.0, SCAN_DEADLINE_SECONDS, 'auto')


def scan_options(scan_group, proc_group, **replaced):
    """ScanOptions from a module's option objects (``_options.SCAN`` and
    ``_options.PROC`` values), with REPLACED fields."""
    return ScanOptions(container_ids=scan_group.container_ids, confirm_interval=proc_group.confirm_interval,
                       peek_bytes=proc_group.peek_bytes, min_age_seconds=scan_group.min_age_seconds,
                       kmsg=scan_group.kernel_log, cmdline_timeout=scan_group.cmdline_timeout,
                       method=scan_group.scan_method)._replace(**replaced)


class Seams(namedtuple('Seams', ['sleep', 'pipe_probe', 'pipe_peek', 'machine', 'docker_roots', 'now'])):
    """What a scan asks the world, replaceable in tests:
    ``pipe_probe(pid, fd, inode) -> (queued, capacity)`` and
    ``pipe_peek(pid, fd, inode, n) -> bytes`` default to the real pipe."""


Seams.__new__.__defaults__ = (time.sleep, None, None, None, True, None)


def scan(proc, options=None, first_pass=None, seams=None):
    """Find every stuck exec under PROC (a ``_procfs.Proc``) with OPTIONS
    (ScanOptions).

    Returns {'stuck_execs': [record], 'suspects': [record + 'reason'],
    'scanned_processes': int, 'scan_seconds': float, 'confirm_seconds': float,
    'partial': bool, 'partial_reason': str or None, 'unexamined_candidates': int}.
    ``first_pass``: what ``_exec_candidates.find`` already returned for PROC."""
    o = options or ScanOptions()
    w = seams or Seams()
    container_ids, confirm_interval, peek_bytes = o.container_ids, o.confirm_interval, o.peek_bytes
    min_age_seconds, kmsg, cmdline_timeout = o.min_age_seconds, o.kmsg, o.cmdline_timeout
    deadline_seconds = o.deadline_seconds
    sleep, pipe_probe, pipe_peek, machine, docker_roots, now = w
    first = first_pass or _exec_candidates.find(proc, confirm_interval, peek_bytes, min_age_seconds, machine=machine,
                                                method=o.method, cmdline_timeout=cmdline_timeout)
    if not first['candidates']:
        return _exec_candidates.result(first)
    table, machine = first['table'], first['machine']
    deadline = first['started'] + deadline_seconds if deadline_seconds else None
    groups = _by_pipe(proc, first['candidates'])
    ctx = _Context(proc, table, machine, pipe_probe or _default_probe(proc), cmdline_timeout=cmdline_timeout,
                   now=time.time() if now is None else now, shims=tree.shim_pids(table))
    ctx.inodes = set(k for k, dummy in groups if not isinstance(k, tuple))
    ctx.deadline = deadline
    wanted = [c for c in (container_ids or []) if c]

    partial = None
    unexamined = 0
    looked = []
    for key, members in groups:
        best = None
        for n, (pid, role) in enumerate(members):
            if partial is None:
                try:
                    ctx.check_deadline()
                    found = _examine(ctx, pid, role)
                except ScanDeadline:
                    partial = DEADLINE_REASON % (deadline_seconds, 'not every possible writer was examined')
            if partial is not None:
                unexamined += len(members) - n
                break
            if found is None or not _matches(found[0]['container_id'], wanted):
                continue
            if _better(found, best):
                best = found
            if not found[1] and role == 'runc_init':
                break
        if best is not None:
            looked.append(best)
    looked.sort(key=lambda rr: (rr[0]['container_id'] or '', rr[0]['writer']['pid']))

    confirm_seconds = 0.0
    confirmed = []
    if looked and partial is None and deadline is not None and time.monotonic() + confirm_interval >= deadline:
        partial = DEADLINE_REASON % (deadline_seconds, 'no time left for the second sample')
    if partial is not None:
        # examined, never confirmed: suspects, never proven and never dropped
        for record, reasons in looked:
            reasons.append('not confirmed: %s' % partial)
            confirmed.append((record, reasons))
    else:
        if looked and confirm_interval > 0:
            t1 = time.monotonic()
            sleep(confirm_interval)
            confirm_seconds = time.monotonic() - t1
        for record, reasons in looked:
            if _confirm(ctx, record, reasons, confirm_interval):
                confirmed.append((record, reasons))

    oom_lines = []
    if confirmed and kmsg and partial is None:
        oom_lines = crash_dump.read_kernel_log(kmsg if isinstance(kmsg, str) else '/dev/kmsg')
    roots = tree.DockerRoots(proc, table, cmdline_timeout) if docker_roots else None
    stuck, suspects = [], []
    peek = pipe_peek or _default_peek(proc)
    for record, reasons in confirmed:
        young = _policy.too_young(record['age_seconds'], min_age_seconds)
        if young:
            reasons.append(young)
        late = deadline is not None and time.monotonic() >= deadline
        if late and partial is None:
            partial = DEADLINE_REASON % (deadline_seconds, 'pods and crash dumps not read for every record')
        if record['runc_exec'] and record['container_id'] and not late:
            # only a bundle proven to be the host's is read; a suspect's is not
            bundle = record['runc_exec'].get('bundle')
            if bundle:
                record['pod'] = tree.pod_of(proc, record['runc_exec']['pid'], record['container_id'], roots,
                                            runc_exec_argv=record['runc_exec']['argv'], bundle=bundle)
        _finish(record, 0 if late else peek_bytes, peek, oom_lines)
        if reasons:
            record['reason'] = '; '.join(reasons)
            record['reasons'] = reasons
            suspects.append(record)
        else:
            stuck.append(record)
    return _exec_candidates.result(first, stuck, suspects, confirm_seconds, partial=partial, unexamined=unexamined)


def _check_shape(record):
    """Raise DiagnosisError unless RECORD looks like one scan() produced."""
    try:
        _records.check_record(record)
    except _records.RecordError as e:
        raise DiagnosisError('malformed stuck exec record: %s' % e)


def verify(proc, record, confirm_interval=1.0, sleep=time.sleep, pipe_probe=None, machine=None,
           cmdline_timeout=1.0):
    """Re-check every hard signal of one record (from scan() or from a user).
    Returns (True, '') or (False, short reason)."""
    _check_shape(record)
    if confirm_interval is None or confirm_interval < 0:
        raise DiagnosisError('confirm_interval must not be negative (got %r)' % (confirm_interval,))
    writer = record['writer']
    try:
        st = proc.stat(writer['pid'])
    except ProcessGone:
        return False, 'writer exited'
    except ProcError as e:
        return False, 'writer unreadable: %s' % e
    if st['starttime'] != writer['start_time']:
        return False, 'pid reused'
    table = tree.ProcessTable(proc)
    ctx = _Context(proc, table, machine or proc.machine(), pipe_probe or _default_probe(proc),
                   cmdline_timeout=cmdline_timeout, now=time.time())
    found = _examine(ctx, writer['pid'], writer['role'], require_write=False)
    if found is None:
        return False, 'writer exited'
    fresh, reasons = found
    if fresh['runc_exec'] is None or (fresh['runc_exec']['pid'], fresh['runc_exec']['start_time']) != (
            record['runc_exec']['pid'], record['runc_exec']['start_time']):
        reasons.insert(0, 'runc exec changed')
    if fresh['shim'] is None or (fresh['shim']['pid'], fresh['shim']['start_time']) != (
            record['shim']['pid'], record['shim']['start_time']):
        reasons.insert(0, 'shim changed')
    if fresh['container_id'] != record['container_id']:
        reasons.insert(0, 'container id changed')
    if fresh['pipe']['inode'] != record['pipe']['inode']:
        reasons.insert(0, 'pipe changed')
    if reasons:
        return False, reasons[0]
    if confirm_interval > 0:
        sleep(confirm_interval)
    if not _confirm(ctx, fresh, reasons, confirm_interval):
        return False, 'writer exited'
    if reasons:
        return False, reasons[0]
    return True, ''
