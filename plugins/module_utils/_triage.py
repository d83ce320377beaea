# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Why a container hangs (private module_utils): the wait chain of one
container (engine -> shim -> runc -> runc init -> the container's processes),
each link with its state, wait channel, system call and the fd it blocks on
with the peers at the other end, and the classification of that chain into
named causes (CAUSES) with their evidence and the safe action.

Built only for candidates (a container the engine does not answer for, a
confirmed stuck exec, or a process that the cheap pass in ``suspicious``
flags); a healthy node never loads this module.

Read-only and bounded: files of workload processes are read only from
/proc (stat, status, wchan, syscall, stack, fd links, fdinfo, cgroup), never
their cmdline or environ; anything that could touch a workload's file system
(stat of an fd) runs under a deadline.

Target-side code: Python 3.6+ syntax and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import re
import stat as stat_mod
import time

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _runtime_tree as tree
from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import HangdoctorError
from ansible_collections.hangdoctor.runtime.plugins.module_utils._procfs import ProcError, pipe_inode_of

# The causes, once: id, what it is, what proves it, what is safe to do.
# docs/causes/<id>.md say the same at length; tests/unit check that every id
# has its page.
CAUSES = (
    ('pipe_full_init',
     'runc init (or runc exec, once its runc init died) is blocked in write(2) on its stderr pipe, which is full and '
     'read only by the shim, which reads it only after runc exec returns',
     'the confirmed stuck exec: writer in write(2) on fd 2, pipe queued = capacity, a shim the only reader, no '
     'progress between two samples',
     'drain the pipe (hangdoctor.runtime.runc_pipe_drain or node_doctor mode=remediate); evidence is kept'),
    ('frozen_cgroup',
     "the container's processes (or its runc init) sit in the cgroup freezer while the engine does not report the "
     'container paused',
     'freezer.state FROZEN (cgroup v1) or cgroup.freeze 1 (v2), its processes frozen (state D where they slept, or '
     'in __refrigerator / do_freezer_trap), and the engine does not say paused',
     'report; thaw only with thaw=true and only when the engine does not report the container paused'),
    ('exec_fifo_wait',
     'runc init of a created container waits opening exec.fifo for a runc start that never came',
     'runc init in open(2)/openat(2) waiting in fifo_open / wait_for_partner',
     'report; find what holds runc start (the chain shows the runc process above it)'),
    ('uninterruptible_io',
     "processes of the container are in uninterruptible sleep (D) on I/O that does not finish (NFS, FUSE, a "
     'stuck device)',
     'state D in two samples, not in the freezer; wchan, kernel stack and the file it waits on',
     'report; nothing is safe to do from user space (the file system or device must answer)'),
    ('stdio_stall',
     "the container's own process is blocked writing stdout/stderr because the shim's copy loop stopped reading",
     'a container process in write(2) on fd 1 or 2, the pipe full, its reader the shim (or nobody), no progress '
     'between two samples',
     'report; draining would eat the logs (fix or restart the reader)'),
    ('shim_unresponsive',
     "the container's shim is stopped or deadlocked, so every task call of the container times out",
     'the shim in state T (stopped) or t (traced), or gone while the container runs; or running yet silent with no '
     'runc child: one read-only call to the task API socket it listens on (Connect for v2, ShimInfo for v1) gets no '
     'answer within shim_probe_timeout (evidence: socket, call, time waited, each thread\'s state and wchan)',
     'report; never kill the shim (killing it kills the container); resume it with SIGCONT if it was stopped by '
     'hand'),
    ('engine_lock',
     "dockerd does not answer inspect of the container (its container lock is held) while it answers the "
     'container list',
     'inspect timed out while the list answered; the holder is the in-flight runtime call in the chain',
     'report the holder; repair the holder (a stuck exec is drained) and the lock is released'),
    ('exec_pileup',
     'stale exec processes (probes that never return) pile up in the container',
     'count and ages of exec processes (children of the shim other than the container init) and runc execs',
     "report; reap the stale exec processes only with reap_stale_execs=true (never the container's own "
     'processes)'),
    ('unknown',
     'the container does not answer but none of the causes above is proven',
     'all the evidence gathered is in the chain; nothing is guessed',
     'report; capture stacks (capture_stacks) and read the chain'),
)
# What differs on a containerd-CRI node (measured on the CRI harness, containerd 1.6):
# docs/causes/<id>.md print it under "On containerd-CRI".
ON_CRI = {
    'frozen_cgroup':
        'CRI has no paused state (ContainerStatus says running either way), so the pause is told apart by '
        'containerd\'s task status, asked from the pod\'s shim (State, what `ctr task ls` shows): PAUSED or PAUSING '
        'after a `ctr task pause` (never named frozen_cgroup, never thawed), RUNNING when the cgroup was frozen '
        'behind containerd\'s back (evidence engine_state); when the shim does not answer, engine_paused is null '
        'and thaw refuses',
    'engine_lock':
        'not named on containerd: nothing in containerd blocks on a lock behind a stuck exec. Measured during the '
        'pipe deadlock with the kubelet-style ExecSync in flight: CRI ContainerStatus, ListContainers and '
        '`ctr containers info` answer at once; the calls that reach the pod\'s shim and need runc (`ctr task ps`, '
        '`task metrics`, another ExecSync in the pod) never answer. Once such a call\'s runc process exits, the '
        'shim\'s exit handler (checkProcesses) waits for the stuck exec\'s pid lock while holding the shim\'s '
        'service lock, so `ctr task ls` (State) stops answering too. containerd\'s goroutine dump (capture_stacks) '
        'shows no handler waiting for a lock, only calls waiting on the shim (ExecSync -> shim Start, ListTasks -> '
        'shim State); the shim\'s shows Start -> runc exec and State waiting in getContainer. The lock is the '
        'shim\'s, behind the pipe deadlock: the cause named is pipe_full_init (the drain releases it)',
    'exec_pileup':
        'one shim serves the pod and every container\'s init is its child, started after the sandbox\'s: execs '
        'are counted per cgroup (children started a second or more after the first in their cgroup), so a pod of '
        'many containers is not a pileup',
    'shim_unresponsive':
        'the pod\'s one shim serves every container of the pod: all of them name it; the pod\'s sandbox ("pause") '
        'container is never named, for this or any cause',
}

CAUSE_IDS = tuple(c[0] for c in CAUSES)
ACTIONS = dict((c[0], c[3]) for c in CAUSES)

# Where a task sleeps in the freezer: cgroup v1 (and v2 before 5.x) and v2.
FREEZER_WCHANS = ('__refrigerator', 'refrigerator', 'do_freezer_trap', 'get_signal')
FIFO_OPEN_WCHANS = ('fifo_open', 'wait_for_partner')

SYSCALL_NAMES = {
    'x86_64': {0: 'read', 1: 'write', 2: 'open', 4: 'stat', 5: 'fstat', 6: 'lstat', 7: 'poll', 17: 'pread64',
               18: 'pwrite64', 19: 'readv', 20: 'writev', 23: 'select', 34: 'pause', 35: 'nanosleep', 61: 'wait4',
               74: 'fsync', 75: 'fdatasync', 78: 'getdents', 202: 'futex', 217: 'getdents64', 230: 'clock_nanosleep',
               232: 'epoll_wait', 247: 'waitid', 257: 'openat', 262: 'newfstatat', 270: 'pselect6', 271: 'ppoll',
               281: 'epoll_pwait', 332: 'statx', 437: 'openat2'},
    'aarch64': {22: 'epoll_pwait', 56: 'openat', 61: 'getdents64', 63: 'read', 64: 'write', 65: 'readv',
                66: 'writev', 67: 'pread64', 68: 'pwrite64', 72: 'pselect6', 73: 'ppoll', 79: 'newfstatat',
                80: 'fstat', 82: 'fsync', 83: 'fdatasync', 95: 'waitid', 98: 'futex', 101: 'nanosleep',
                115: 'clock_nanosleep', 260: 'wait4', 291: 'statx', 437: 'openat2'},
}
SYSCALL_NAMES['arm64'] = SYSCALL_NAMES['aarch64']
# System calls whose first argument is the fd they wait on.
FD_SYSCALLS = ('read', 'write', 'readv', 'writev', 'pread64', 'pwrite64', 'fsync', 'fdatasync', 'fstat',
               'getdents', 'getdents64')
WRITE_NAMES = ('write', 'writev', 'pwrite64')

MAX_PROCESSES = 256        # container processes looked at per container
MAX_CHAIN_PROCESSES = 8    # container processes shown in a chain
MAX_STACK_BYTES = 8192
MAX_CGROUP_BYTES = 16384
MAX_PEERS = 8
STAT_TIMEOUT = 0.5
CONFIRM_INTERVAL = 0.5
SHIM_PROBE_TIMEOUT = 2.0
_CGROUP_PATH_OK = re.compile(r'^/[A-Za-z0-9_.:@/=+-]*$')


class TriageError(HangdoctorError):
    """Bad triage options."""


def syscall_name(nr, machine):
    return SYSCALL_NAMES.get(machine, SYSCALL_NAMES['x86_64']).get(nr)


def suspicious(table, pileup_min_count=3):
    """Pids worth a closer look, from the process table alone: a process in
    D (uninterruptible; the v1 freezer shows as D too) under a shim, a
    stopped shim, a runc init that is a direct child of a shim (created,
    never started), a shim with PILEUP_MIN_COUNT children started a second or more
    after the first in their cgroup (exec processes; under CRI the pod's
    container inits are children of its shim too).  Cheap: one pass over the
    snapshot, and the cgroups of the children of a shim with many late ones."""
    shims = set(tree.shim_pids(table))
    if not shims:
        return []
    out = []
    for pid, st in table.stats.items():
        if not st:
            continue
        if pid in shims:
            kids = [table.get(c) for c in table.children(pid)]
            starts = sorted(s['starttime'] for s in kids if s)
            if st['state'] in ('T', 't') or (
                    len([t for t in starts[1:] if t - starts[0] > 100]) >= pileup_min_count
                    and len(tree.late_children(table, pid)) >= pileup_min_count):
                out.append(pid)
            continue
        if st['state'] == 'D' or (st['comm'] in tree.RUNC_INIT_COMMS and st['ppid'] in shims):
            if _shim_above(table, pid, shims):
                out.append(pid)
    return sorted(out)


def _shim_above(table, pid, shims, depth=6):
    cur = table.ppid(pid)
    n = 0
    while cur and cur > 1 and n < depth:
        if cur in shims:
            return cur
        cur = table.ppid(cur)
        n += 1
    return None


# ---- reading one process ---------------------------------------------------

def _read_bounded(proc, pid, name, max_bytes):
    raw = proc.read_small(pid, name, max_bytes)
    return None if raw is None else raw.decode('utf-8', 'replace')


def kernel_stack(proc, pid):
    """/proc/PID/stack as a list of frames (root only), or None."""
    text = _read_bounded(proc, pid, 'stack', MAX_STACK_BYTES)
    if text is None:
        return None
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith('['):
            line = line.split(']', 1)[-1].strip()
        if line:
            out.append(line[:120])
    return out


def cgroups(proc, pid):
    """{controller: path} of PID's /proc/PID/cgroup (v2: key '')."""
    text = _read_bounded(proc, pid, 'cgroup', MAX_CGROUP_BYTES)
    out = {}
    for line in (text or '').splitlines():
        parts = line.split(':', 2)
        if len(parts) != 3:
            continue
        for ctl in parts[1].split(',') if parts[1] else ['']:
            out[ctl.replace('name=', '')] = parts[2]
    return out


def in_container(cg, container_id):
    """Whether the cgroup paths CG ({controller: path}) name CONTAINER_ID
    (Docker: /docker/<id> or docker-<id>.scope; CRI: cri-containerd-<id>.scope
    or /kubepods/.../<id>)."""
    if not container_id:
        return False
    for path in cg.values():
        for part in path.split('/'):
            if part == container_id or part.endswith('-%s.scope' % container_id) or part.endswith(':%s' % container_id):
                return True
    return False


def _fd_kind(proc, pid, fd, link):
    """(kind, inode) of fd FD of PID whose link text is LINK."""
    inode = pipe_inode_of(link)
    if inode is not None:
        return 'pipe', inode
    if link.startswith('socket:['):
        try:
            return 'socket', int(link[8:-1])
        except ValueError:
            return 'socket', None
    if link.startswith('anon_inode:'):
        return None, None
    # A path: stat it through the fd link under a deadline (a FUSE file's
    # getattr may never answer), never by its path (a workload's symlink).
    try:
        st = _procfs._bounded(lambda: os.stat(proc.path(pid, 'fd', fd)), STAT_TIMEOUT, 'stat of an fd')
    except (ProcError, OSError):
        return 'file', None
    return ('fifo' if stat_mod.S_ISFIFO(st.st_mode) else 'file'), st.st_ino


class _Ctx(object):
    """What one triage pass shares: the process table, engines, options."""

    def __init__(self, proc, table, machine, now):
        self.proc = proc
        self.table = table
        self.machine = machine
        self.now = now
        self._argv = {}
        self.shim_probes = {}

    def argv(self, pid):
        if pid not in self._argv:
            try:
                self._argv[pid] = self.proc.cmdline(pid, timeout=1.0)
            except ProcError:
                self._argv[pid] = []
        return self._argv[pid]

    def age(self, st):
        try:
            return round(max(0.0, self.now - self.proc.start_epoch(st['starttime'])), 1)
        except (ProcError, KeyError, TypeError):
            return None


def link(ctx, pid, role, peer_pids=None):
    """One link of a wait chain: PID as ROLE (engine, shim, runc, runc_init,
    process), or None when it is gone."""
    proc = ctx.proc
    try:
        st = proc.stat(pid)
    except ProcError:
        return None
    out = {'role': role, 'pid': pid, 'comm': st['comm'], 'state': st['state'], 'wchan': None, 'syscall': None,
           'age_seconds': ctx.age(st), 'blocking_fd': None, 'stack': None}
    try:
        out['wchan'] = proc.wchan(pid) or None
    except ProcError:
        pass
    sc = None
    try:
        sc = proc.syscall(pid)
    except ProcError:
        pass
    if sc is not None:
        if sc['running']:
            out['syscall'] = 'running'
        elif sc['nr'] is not None and sc['nr'] >= 0:
            out['syscall'] = syscall_name(sc['nr'], ctx.machine) or str(sc['nr'])
    if out['syscall'] in FD_SYSCALLS and sc['args']:
        out['blocking_fd'] = blocking_fd(ctx, pid, sc['args'][0], peer_pids)
    elif out['wchan'] in FIFO_OPEN_WCHANS:
        out['blocking_fd'] = {'fd': None, 'kind': 'fifo', 'inode': None, 'peers': []}
    if st['state'] in ('D', 'S', 'T', 't'):
        out['stack'] = kernel_stack(proc, pid)
    return out


def blocking_fd(ctx, pid, fd, peer_pids=None):
    """{fd, kind, inode, peers} of fd FD of PID; peers are the other holders
    of a pipe among PEER_PIDS (the chain's own processes: bounded)."""
    try:
        text = ctx.proc.fd_link(pid, fd)
    except ProcError:
        return {'fd': fd, 'kind': None, 'inode': None, 'peers': []}
    kind, inode = _fd_kind(ctx.proc, pid, fd, text)
    out = {'fd': fd, 'kind': kind, 'inode': inode, 'peers': []}
    if kind == 'pipe' and inode is not None and peer_pids:
        try:
            holders = ctx.proc.pipe_holders([inode], pids=sorted(set(peer_pids)),
                                            deadline=time.monotonic() + 2.0)[inode]
        except ProcError:
            holders = []
        for hpid, hfd, mode in holders:
            if hpid == pid:
                continue
            out['peers'].append({'pid': hpid, 'comm': ctx.table.comm(hpid), 'fd': hfd, 'mode': mode})
            if len(out['peers']) >= MAX_PEERS:
                break
    return out


# ---- one container's processes ---------------------------------------------

def _descendants(table, pid, limit=MAX_PROCESSES):
    out, todo = [], list(table.children(pid))
    while todo and len(out) < limit:
        p = todo.pop(0)
        out.append(p)
        todo.extend(table.children(p))
    return out


# containerd starts a shim in the container's bundle under its state folder:
# (folder, pid file, layout).  Shim v1's pid file is the shim's own pid (its
# -workdir is under containerd's root, not the bundle); shim v2's is the
# container init's, whose parent is the shim.
SHIM_BUNDLES = (('io.containerd.runtime.v1.linux', 'shim.pid', 'v1'),
                ('io.containerd.runtime.v2.task', 'init.pid', 'v2'))


def shim_bundle(ctx, shim):
    """{layout, bundle, id, pid_file, recorded_pid, agrees} of SHIM from its
    working directory, or None when that is not a containerd bundle: AGREES
    says whether containerd's pid file names this shim (v1: shim.pid is its
    pid; v2: init.pid's parent is it), None when the file cannot be read.
    Only a readlink and a bounded read of a regular file (no symlink)."""
    cwd = ctx.proc.cwd(shim)
    parts = (cwd or '').rstrip('/').split('/')
    if len(parts) < 4 or not parts[-1] or not parts[-2]:
        return None
    layout = next((x for x in SHIM_BUNDLES if x[0] == parts[-3]), None)
    if layout is None:
        return None
    out = {'layout': layout[2], 'bundle': cwd, 'id': parts[-1], 'pid_file': layout[1], 'recorded_pid': None,
           'agrees': None}
    try:
        text = _procfs.read_regular_file(ctx.proc.path(shim, 'cwd', layout[1]), 32, timeout=1.0)
        recorded = int(text.strip())
    except (ProcError, OSError, ValueError):
        return out
    out['recorded_pid'] = recorded
    out['agrees'] = recorded == shim if layout[2] == 'v1' else ctx.table.ppid(recorded) == shim
    return out


def container_shim(ctx, container_id, record=None):
    """The pid of the shim that serves CONTAINER_ID, or None: the stuck
    record's shim; a shim whose argv names the id (v2 -id, v1 -workdir); a
    shim whose bundle (its working directory) is the container's (when its
    argv cannot be read); a shim with a descendant in the container's cgroup
    (CRI: one shim per pod)."""
    if record and (record.get('shim') or {}).get('pid'):
        return record['shim']['pid']
    shims = tree.shim_pids(ctx.table)
    for shim in shims:
        argv = ctx.argv(shim)
        if not tree.is_shim_argv(argv) and not tree.is_shim_comm(ctx.table.comm(shim)):
            continue
        info = tree.shim_info(argv)
        if info.get('id') == container_id or (info.get('workdir') or '').rstrip('/').endswith('/' + container_id):
            return shim
    for shim in shims:
        if not ctx.argv(shim) and tree.is_shim_comm(ctx.table.comm(shim)):
            bundle = shim_bundle(ctx, shim)
            if bundle and bundle['id'] == container_id and bundle['agrees'] is not False:
                return shim
    for shim in shims:
        for child in ctx.table.children(shim):
            if in_container(cgroups(ctx.proc, child), container_id):
                return shim
    return None


def _members(ctx, shim, container_id):
    """(runc processes, container processes) under SHIM for CONTAINER_ID:
    runc processes are runc-named descendants (runc exec/create/start and
    runc init before it execs); container processes are the others in the
    container's cgroup, oldest first."""
    runcs, members = [], []
    for pid in _descendants(ctx.table, shim):
        comm = ctx.table.comm(pid) or ''
        if tree.is_runc_comm(comm) or comm in tree.RUNC_INIT_COMMS:
            runcs.append(pid)
            continue
        if in_container(cgroups(ctx.proc, pid), container_id):
            members.append(pid)
    members.sort(key=lambda p: ((ctx.table.get(p) or {}).get('starttime', 0), p))
    return runcs, members


def _runc_role(ctx, pid):
    comm = ctx.table.comm(pid) or ''
    if comm in tree.RUNC_INIT_COMMS:
        return 'runc_init'
    parent = ctx.table.comm(ctx.table.ppid(pid)) or ''
    return 'runc_init' if tree.is_runc_comm(parent) else 'runc'


DEFAULT_ENGINE_SOCKETS = {'docker': '/var/run/docker.sock', 'containerd': '/run/containerd/containerd.sock'}


def _engine_pid(ctx, engine_name, address=None):
    """The engine daemon's pid: the only dockerd (containerd) of the node,
    or, where several run, the one whose argv names ADDRESS (its socket; a
    daemon without a socket option listens on the default).  None rather
    than a guess."""
    name = 'containerd' if engine_name == 'containerd' else 'docker'
    pids = ctx.table.pids_with_comm(('containerd',) if name == 'containerd' else ('dockerd',))
    if len(pids) <= 1:
        return pids[0] if pids else None
    path = (address or '').replace('unix://', '', 1) or DEFAULT_ENGINE_SOCKETS[name]
    default = path in (DEFAULT_ENGINE_SOCKETS[name], '/run/docker.sock')
    found = []
    for pid in pids:
        argv = ctx.argv(pid)
        if any(path in a for a in argv[1:]):
            found.append(pid)
        elif default and not any(a.startswith(('-H', '--host', '--address', '-a')) for a in argv[1:]):
            found.append(pid)
    return found[0] if len(found) == 1 else None


def _engine_address(engine_report, engine_name):
    for e in (engine_report or {}).get('engines') or []:
        if e.get('name') == (engine_name or 'docker'):
            return e.get('address')
    return ((engine_report or {}).get('engine') or {}).get('docker_host')


# ---- sampling and classification --------------------------------------------

def _sample(proc, pid):
    try:
        st = proc.stat(pid)
        status = proc.status(pid)
    except ProcError:
        return None
    return (st['state'], st['starttime'], status.get('voluntary_ctxt_switches'), st['utime'] + st['stime'])


def _queued(proc, pid, fd, inode):
    try:
        return proc.pipe_fill(pid, fd, inode)
    except ProcError:
        return None, None


def _freezer_state(proc, cg):
    """'FROZEN', 'FREEZING', 'THAWED' (v1) / 'FROZEN' or 'THAWED' (v2), with
    the file read; (None, None) when it cannot be read.  The path comes from
    /proc/PID/cgroup (set by the runtime) and is still checked: no '..'."""
    v1 = cg.get('freezer')
    candidates = []
    if v1 is not None:
        candidates.append(('v1', v1, 'freezer', 'freezer.state'))
    if '' in cg:
        candidates.append(('v2', cg[''], '', 'cgroup.freeze'))
    for version, path, mount, name in candidates:
        if not _CGROUP_PATH_OK.match(path) or '/../' in path + '/' or path.endswith('/..'):
            continue
        rel = '/sys/fs/cgroup/%s%s/%s' % (mount + '/' if mount else '', path.strip('/'), name)
        rel = rel.replace('//', '/')
        text = None
        for full in _host_paths(proc, rel):
            try:
                text = _procfs.read_regular_file(full, 64, timeout=1.0, truncate=True)
                break
            except (ProcError, OSError):
                continue
        if text is None:
            continue
        if isinstance(text, bytes):
            text = text.decode('ascii', 'replace')
        text = text.strip()
        if version == 'v2':
            return ('FROZEN' if text == '1' else 'THAWED'), rel
        return text, rel
    return None, None


def _host_paths(proc, path):
    """Where the host's PATH is: under PID 1's root (the host's view also
    from a pod with the host's /proc), and when that cannot be entered (PID 1
    more privileged than us) and PROC is our own /proc, PATH itself."""
    out = [proc.host_view(1, path)]
    if os.path.realpath(proc.root) == '/proc':
        out.append(path)
    return out


def _engine_entry(engine_report, container_id):
    for c in (engine_report or {}).get('containers') or []:
        cid = c.get('id') or ''
        if cid and (cid.startswith(container_id) or container_id.startswith(cid)):
            return c
    return None


def _docker_reachable(engine_report):
    for e in (engine_report or {}).get('engines') or []:
        if e.get('name') == 'docker' and e.get('checked'):
            return e.get('reachable') is True
    eng = (engine_report or {}).get('engine') or {}
    return eng.get('reachable') is True and (eng.get('name') or 'docker') == 'docker'


def containerd_task_state(ctx, shim, container_id, engine_report=None):
    """The status containerd keeps for CONTAINER_ID's task ('running',
    'paused', ...), asked from its v2 SHIM (State, answered from the shim's
    own bookkeeping); None when it cannot be told (a v1 shim, no bundle
    found, no answer).  The task is found through the bundles of that
    containerd (address and namespace from ENGINE_REPORT, else the shim's
    own -address / -namespace)."""
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _cri
    info = tree.shim_info(ctx.argv(shim))
    if info.get('version') != 'v2':
        return None
    address, namespace = None, info.get('namespace')
    for e in (engine_report or {}).get('engines') or []:
        if e.get('name') == 'containerd' and e.get('address'):
            address, namespace = e['address'], e.get('namespace') or namespace
    if address is None:
        argv = ctx.argv(shim)
        address = _cri._option(argv, '-address')
    if not address or not namespace:
        return None
    try:
        tasks = _cri.list_tasks(address, namespace, ctx.proc.root)
    except (HangdoctorError, OSError, ValueError):
        return None
    task = next((t for t in tasks if t['id'] == container_id), None)
    if task is None:
        return None
    try:
        return _cri.task_state(task['shim_address'], container_id, 2.0, dial=task.get('dial'))
    except HangdoctorError:
        return None


def diagnose_container(ctx, container_id, record=None, engine_report=None, settings=None):
    """The diagnosis of one container (see the module docs): causes, chain,
    evidence, action, done (None: triage changes nothing)."""
    settings = settings or Settings()
    proc = ctx.proc
    entry = _engine_entry(engine_report, container_id)
    engine_name = (entry or {}).get('engine') or ('docker' if _docker_reachable(engine_report) else None)
    shim = container_shim(ctx, container_id, record)
    runcs, members = _members(ctx, shim, container_id) if shim else ([], [])
    chain_pids = set([shim] if shim else []) | set(runcs) | set(members)
    engine_pid = _engine_pid(ctx, engine_name, _engine_address(engine_report, engine_name)) if engine_name else None
    if engine_pid:
        chain_pids.add(engine_pid)

    chain = []
    if engine_pid:
        chain.append(link(ctx, engine_pid, 'engine'))
    if shim:
        chain.append(link(ctx, shim, 'shim'))
    for pid in runcs:
        chain.append(link(ctx, pid, _runc_role(ctx, pid), chain_pids))
    procs = [link(ctx, pid, 'process', chain_pids) for pid in members[:MAX_PROCESSES]]
    procs = [p for p in procs if p]
    chain = [c for c in chain if c]

    causes, evidence = [], {}

    # pipe_full_init: the stuck-exec diagnosis already proved it, signal by signal.
    if record:
        causes.append('pipe_full_init')
        evidence['pipe_full_init'] = {
            'writer': dict((k, (record.get('writer') or {}).get(k)) for k in ('role', 'pid', 'wchan', 'syscall')),
            'pipe': record.get('pipe'), 'readers': record.get('readers'),
            'progress': record.get('evidence')}

    # frozen_cgroup
    cg = cgroups(proc, members[0]) if members else {}
    fstate, fpath = _freezer_state(proc, cg) if cg else (None, None)
    # A freezable sleep is frozen in place (state D, the wchan where it
    # slept); a task that wakes meets the refrigerator.
    frozen_wchan = [p for p in procs + chain if p['role'] in ('process', 'runc_init') and (
        (p['wchan'] in FREEZER_WCHANS and p['wchan'] != 'get_signal')
        or (fstate in ('FROZEN', 'FREEZING') and p['state'] == 'D'))]
    engine_state = (entry or {}).get('state') or None
    if fstate in ('FROZEN', 'FREEZING') or frozen_wchan:
        if engine_state is None and shim and (entry or {}).get('engine') in (None, 'containerd'):
            # containerd (and CRI, which has no paused state) keeps the pause in its task: ask the shim
            engine_state = containerd_task_state(ctx, shim, container_id, engine_report)
    paused = None if engine_state is None else engine_state in ('paused', 'pausing')
    if fstate in ('FROZEN', 'FREEZING') or frozen_wchan:
        ev = {'freezer_state': fstate, 'freezer_file': fpath, 'engine_paused': paused, 'engine_state': engine_state,
              'frozen_pids': [p['pid'] for p in frozen_wchan][:16]}
        if paused:
            evidence['engine_paused'] = ev
        else:
            causes.append('frozen_cgroup')
            evidence['frozen_cgroup'] = ev
    frozen = fstate in ('FROZEN', 'FREEZING') or bool(frozen_wchan)

    # exec_fifo_wait
    fifo = [c for c in chain if c['role'] == 'runc_init' and c['wchan'] in FIFO_OPEN_WCHANS]
    if fifo:
        causes.append('exec_fifo_wait')
        evidence['exec_fifo_wait'] = {'runc_init': [dict((k, c[k]) for k in ('pid', 'wchan', 'syscall', 'age_seconds'))
                                                    for c in fifo],
                                      'runc': [c['pid'] for c in chain if c['role'] == 'runc']}

    # uninterruptible_io: D in two samples, not the freezer's D
    d_state = [p for p in procs if p['state'] == 'D' and p['wchan'] not in FREEZER_WCHANS]
    # stdio_stall: a container process in write(2) on fd 1/2 to a full pipe
    writers = [p for p in procs if p['syscall'] in WRITE_NAMES and p['blocking_fd']
               and p['blocking_fd']['fd'] in (1, 2) and p['blocking_fd']['kind'] in ('pipe', 'fifo')]
    first = {}
    for p in writers:
        fd = p['blocking_fd']
        first[p['pid']] = (_sample(proc, p['pid']), _queued(proc, p['pid'], fd['fd'], fd['inode']))
    if (d_state or writers) and not frozen:
        time.sleep(settings.confirm_interval)
    if d_state and not frozen:
        still = [p for p in d_state if (_sample(proc, p['pid']) or ('',))[0] == 'D']
        if still:
            causes.append('uninterruptible_io')
            evidence['uninterruptible_io'] = {'processes': [
                dict((k, p[k]) for k in ('pid', 'comm', 'wchan', 'syscall', 'blocking_fd', 'stack')) for p in still][:8]}
    stalled = []
    for p in writers:
        if frozen:
            break
        fd = p['blocking_fd']
        s1, (q1, cap) = first[p['pid']]
        s2 = _sample(proc, p['pid'])
        q2, dummy = _queued(proc, p['pid'], fd['fd'], fd['inode'])
        if s1 is None or s2 is None or s1[1] != s2[1] or s1[2] != s2[2] or s1[3] != s2[3]:
            continue  # it made progress (or is another process now): busy, not stalled
        if q1 is None or q1 != q2 or cap is None or q1 < cap - 4096:
            continue
        readers = [x for x in fd['peers'] if x.get('mode') in ('r', 'rw')]
        stalled.append({'pid': p['pid'], 'comm': p['comm'], 'fd': fd['fd'], 'inode': fd['inode'], 'queued': q1,
                        'capacity': cap, 'readers': readers,
                        'voluntary_ctxt_switches': [s1[2], s2[2]]})
    if stalled:
        causes.append('stdio_stall')
        evidence['stdio_stall'] = {'writers': stalled[:8]}

    # shim_unresponsive
    shim_link = next((c for c in chain if c['role'] == 'shim'), None)
    if shim_link and shim_link['state'] in ('T', 't', 'Z'):
        causes.append('shim_unresponsive')
        evidence['shim_unresponsive'] = {'pid': shim_link['pid'], 'state': shim_link['state'],
                                         'runc_children': [c['pid'] for c in chain if c['role'] == 'runc'],
                                         'bundle': shim_bundle(ctx, shim_link['pid'])}
    elif shim is None and members:
        causes.append('shim_unresponsive')
        evidence['shim_unresponsive'] = {'pid': None, 'state': 'gone'}
    elif shim_link:
        _probe_running_shim(ctx, shim_link, container_id, settings=settings, causes=causes, evidence=evidence)

    # engine_lock: the engine lists but does not answer inspect of this container
    if entry and entry.get('responsive') is False and (entry.get('engine') or 'docker') == 'docker' \
            and _docker_reachable(engine_report):
        holder = [dict((k, c[k]) for k in ('role', 'pid', 'comm', 'age_seconds')) for c in chain
                  if c['role'] in ('runc', 'runc_init')]
        causes.append('engine_lock')
        evidence['engine_lock'] = {'inspect_error': entry.get('error'), 'inspect_latency_ms': entry.get('latency_ms'),
                                   'holder': holder or None,
                                   'holder_note': None if holder else 'no runtime call in flight under the shim'}

    # exec_pileup
    stale = _stale_execs(ctx, shim, members, runcs=runcs, settings=settings)
    if len(stale) >= settings.pileup_min_count:
        causes.append('exec_pileup')
        evidence['exec_pileup'] = {'count': len(stale), 'min_age_seconds': settings.stale_exec_min_age_seconds,
                                   'processes': stale[:16]}

    if not causes:
        causes.append('unknown')
        evidence['unknown'] = {'engine': dict((k, (entry or {}).get(k)) for k in ('responsive', 'error', 'latency_ms')),
                               'shim_found': shim is not None}
    interesting = [p for p in procs if p['state'] in ('D', 'T', 't') or p['wchan'] in FREEZER_WCHANS
                   or p['pid'] in [w['pid'] for w in stalled] or p['syscall'] in WRITE_NAMES]
    shown = (interesting or procs[:1])[:MAX_CHAIN_PROCESSES]
    return {
        'container_id': container_id,
        'causes': causes,
        'chain': chain + shown,
        'evidence': evidence,
        'action': '; '.join('%s: %s' % (c, ACTIONS[c]) for c in causes),
        'done': None,
        '_stale': stale,
        '_members': members,
        '_freezer': (fstate, fpath, paused),
    }


def _probe_running_shim(ctx, shim_link, container_id, settings, causes, evidence):
    """A running shim that does not answer one read-only call to its own task
    API within SETTINGS.shim_probe_timeout is shim_unresponsive (a deadlock:
    its state alone does not show it).  One probe per shim and pass (a CRI
    pod shim serves several containers); no cause unless it is proven."""
    if not settings.shim_probe_timeout:
        return
    pid = shim_link['pid']
    in_flight = [p for p in ctx.table.children(pid) if tree.is_runc_comm(ctx.table.comm(p) or '')
                 or (ctx.table.comm(p) or '') in tree.RUNC_INIT_COMMS]
    if in_flight:
        # Measured on containerd 1.6: once a task call waits on a stuck runtime call (Pids behind an exec
        # stuck on its pipe), the shim answers nothing, Connect included, until that call returns.  Its
        # silence is then the runtime call's, not a shim deadlock: not asked.
        evidence['shim_probe'] = {'pid': pid, 'answered': None, 'skipped': (
            'runtime call(s) in flight under the shim (runc pids %s): a silence would not prove a shim deadlock'
            % in_flight[:8])}
        return
    st = ctx.table.get(pid) or {}
    key = (pid, st.get('starttime'))
    if key not in ctx.shim_probes:
        from ansible_collections.hangdoctor.runtime.plugins.module_utils import _shim_probe
        version = tree.shim_info(ctx.argv(pid)).get('version') or 'v2'
        ctx.shim_probes[key] = _shim_probe.probe(ctx.proc, pid, version, container_id=container_id,
                                                 timeout=settings.shim_probe_timeout,
                                                 name_of=lambda nr: syscall_name(nr, ctx.machine))
    result = ctx.shim_probes[key]
    if result['answered'] is not False:
        # what the probe saw, also when the shim answered: it rules the shim out
        evidence['shim_probe'] = dict((k, result[k]) for k in (
            'answered', 'socket', 'request', 'timeout', 'elapsed_ms', 'error', 'answer_pid'))
        evidence['shim_probe']['pid'] = pid
        return
    try:
        state = ctx.proc.stat(pid)['state']
    except ProcError:
        state = 'gone'
    causes.append('shim_unresponsive')
    evidence['shim_unresponsive'] = {
        'pid': pid, 'state': state, 'runc_children': [],
        'probe': dict((k, result[k]) for k in ('socket', 'how', 'request', 'timeout', 'elapsed_ms', 'error')),
        'threads': result['threads']}


def _stale_execs(ctx, shim, members, runcs, settings):
    """Exec processes of the container older than the stale age: the
    shim's children in the container's cgroup other than its init (the
    oldest), and runc exec processes of the shim."""
    if not shim:
        return []
    table = ctx.table
    out = []
    kids = [p for p in members if table.ppid(p) == shim]
    init = kids[0] if kids else None
    for pid in kids[1:] + [p for p in runcs if table.ppid(p) == shim and _runc_role(ctx, p) == 'runc']:
        st = table.get(pid)
        if not st or pid == init:
            continue
        age = ctx.age(st)
        if age is not None and age >= settings.stale_exec_min_age_seconds:
            out.append({'pid': pid, 'comm': st['comm'], 'age_seconds': age, 'start_time': st['starttime'],
                        'role': 'runc' if pid in runcs else 'exec'})
    return out


class Settings(object):
    """Triage options: the sample interval, what counts as a pileup."""

    def __init__(self, confirm_interval=CONFIRM_INTERVAL, pileup_min_count=3, stale_exec_min_age_seconds=300.0,
                 shim_probe_timeout=SHIM_PROBE_TIMEOUT):
        if confirm_interval is None or confirm_interval < 0:
            raise TriageError('confirm_interval must not be negative')
        if pileup_min_count is None or pileup_min_count < 1:
            raise TriageError('pileup_min_count must be at least 1, got %r' % (pileup_min_count,))
        if stale_exec_min_age_seconds is None or stale_exec_min_age_seconds < 0:
            raise TriageError('stale_exec_min_age_seconds must not be negative')
        if shim_probe_timeout is None or shim_probe_timeout < 0:
            raise TriageError('shim_probe_timeout must not be negative')
        self.shim_probe_timeout = float(shim_probe_timeout)
        self.confirm_interval = min(float(confirm_interval), 2.0)
        self.pileup_min_count = int(pileup_min_count)
        self.stale_exec_min_age_seconds = float(stale_exec_min_age_seconds)


def suspect_containers(proc, table, pids):
    """Container ids of suspicious PIDS (from ``suspicious``), read from their
    cgroups (for a stopped shim, from its children's).  A CRI pod's sandbox
    ("pause") container is never one: it runs no workload of its own."""
    ids = []
    for pid in pids:
        look = [pid] + (list(table.children(pid))[:16] if tree.is_shim_comm(table.comm(pid)) else [])
        for p in look:
            for path in cgroups(proc, p).values():
                cid = _id_in_path(path)
                if cid and cid not in ids:
                    ids.append(cid)
    sandboxes = sandbox_ids(proc, table, ids)
    return [cid for cid in ids if cid not in sandboxes]


def sandbox_ids(proc, table, ids):
    """The ids among IDS that are CRI pod sandboxes: the -id of a v2 shim
    (the pod's shim is named after its sandbox) whose bundle, the shim's
    working directory, says ``io.kubernetes.cri.container-type: sandbox``
    in its config.json.  A Docker v2 shim is named after its container too;
    its bundle carries no such annotation."""
    wanted = set(ids)
    out = set()
    for shim in tree.shim_pids(table):
        try:
            argv = proc.cmdline(shim, timeout=1.0)
        except ProcError:
            continue
        info = tree.shim_info(argv)
        if info.get('version') != 'v2' or info.get('id') not in wanted:
            continue
        if _bundle_type(proc, shim) == 'sandbox':
            out.add(info['id'])
    return out


def _bundle_type(proc, shim):
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _cri
    try:
        cwd = proc.cwd(shim)
    except ProcError:
        return None
    if not cwd or not cwd.startswith('/'):
        return None
    raw = _cri._read_bundle_file(_cri._host_view(proc, shim, cwd.rstrip('/') + '/config.json'), _cri.MAX_CONFIG_BYTES)
    try:
        cfg = json.loads((raw or b'{}').decode('utf-8', 'replace'))
    except ValueError:
        return None
    ann = cfg.get('annotations') if isinstance(cfg, dict) else None
    value = ann.get(_cri.CONTAINER_TYPE_KEY) if isinstance(ann, dict) else None
    return value if isinstance(value, str) else None


_ID_IN = re.compile(r'(?:^|[/-])([0-9a-f]{64})(?:\.scope)?$')


def _id_in_path(path):
    for part in reversed(path.split('/')):
        m = _ID_IN.search(part)
        if m:
            return m.group(1)
    return None


def diagnose(proc, table, targets, engine_report=None, stuck_execs=(), settings=None, now=None):
    """{container id: diagnosis} for the container ids TARGETS (full or
    short ids), reading PROC with the snapshot TABLE."""
    ctx = _Ctx(proc, table, proc.machine(), time.time() if now is None else now)
    out = {}
    for cid in targets:
        if not cid or cid in out:
            continue
        full = _full_id(cid, engine_report, stuck_execs)
        record = next((r for r in stuck_execs or [] if r.get('container_id') and (
            r['container_id'].startswith(full) or full.startswith(r['container_id']))), None)
        out[cid] = diagnose_container(ctx, full, record=record, engine_report=engine_report, settings=settings)
    return out


def _full_id(cid, engine_report, stuck_execs):
    for c in (engine_report or {}).get('containers') or []:
        if (c.get('id') or '').startswith(cid):
            return c['id']
    for r in stuck_execs or []:
        if (r.get('container_id') or '').startswith(cid):
            return r['container_id']
    return cid


def public(diagnosis):
    """The diagnosis as the results carry it (without the private fields)."""
    return dict((k, v) for k, v in diagnosis.items() if not k.startswith('_') and k != 'container_id')


# ---- safe actions --------------------------------------------------------------

def act(proc, diagnosis, thaw=False, reap=False):
    """Take the safe actions asked for on DIAGNOSIS (a ``diagnose_container``
    result) and say what was done in its ``done``.  Thaw only a frozen_cgroup
    container the engine answered for and does not report paused; reap only
    stale exec processes (never the container's init tree, a runc, a shim or
    an engine), each re-identified by pid and start time right before."""
    done = []
    if thaw and 'frozen_cgroup' in diagnosis['causes']:
        done.append(_thaw(proc, diagnosis))
    if reap and 'exec_pileup' in diagnosis['causes']:
        done.append(_reap(proc, diagnosis))
    diagnosis['done'] = '; '.join(d for d in done if d) or None
    return diagnosis


def _thaw(proc, diagnosis):
    fstate, fpath, paused = diagnosis['_freezer']
    if paused is not False:
        why = 'reports the container paused' if paused else 'did not say whether it paused the container'
        return 'not thawed: the engine %s' % why
    if not fpath or fstate not in ('FROZEN', 'FREEZING'):
        return 'not thawed: no frozen freezer file found'
    value = b'0' if fpath.endswith('cgroup.freeze') else b'THAWED'
    fd, err = None, None
    for full in _host_paths(proc, fpath):
        try:
            fd = os.open(full, os.O_WRONLY | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0))
            break
        except OSError as e:
            err = e
    if fd is None:
        return 'not thawed: %s: %s' % (fpath, err.strerror or err)
    try:
        if not stat_mod.S_ISREG(os.fstat(fd).st_mode):
            return 'not thawed: %s is not a regular file' % fpath
        os.write(fd, value)
    except OSError as e:
        return 'not thawed: %s: %s' % (fpath, e.strerror or e)
    finally:
        os.close(fd)
    return 'thawed (%s)' % fpath


def _reap(proc, diagnosis):
    import signal
    members = set(diagnosis['_members'])
    killed, refused = [], []
    for x in diagnosis['_stale']:
        pid = x['pid']
        if x['role'] != 'exec' or pid not in members:
            refused.append(pid)
            continue
        try:
            st = proc.stat(pid)
        except ProcError:
            continue
        if st['starttime'] != x['start_time'] or tree.is_shim_comm(st['comm']) or tree.is_runc_comm(st['comm']) \
                or st['comm'] in tree.RUNC_INIT_COMMS or st['comm'] in tree.DOCKERD_COMMS:
            refused.append(pid)
            continue
        try:
            pidfd = _procfs.pidfd_open(pid)
        except (ProcError, OSError):
            pidfd = None
        try:
            # the pidfd pins the process: re-check its start time through it, then signal it
            if pidfd is not None and proc.same_process(pid, x['start_time']):
                _procfs.pidfd_kill(pidfd, signal.SIGKILL)
                killed.append(pid)
            else:
                refused.append(pid)
        except (ProcError, OSError):
            refused.append(pid)
        finally:
            if pidfd is not None:
                os.close(pidfd)
    out = 'reaped %d stale exec process(es) %s' % (len(killed), killed) if killed else 'reaped nothing'
    if refused:
        out += ', left %s' % refused
    return out


def settings_of(triage_opts, proc_opts=None):
    """Settings from the TRIAGE option object (and PROC's confirm_interval)."""
    interval = CONFIRM_INTERVAL if proc_opts is None else min(proc_opts.confirm_interval, 1.0)
    return Settings(confirm_interval=interval, pileup_min_count=triage_opts.pileup_min_count,
                    stale_exec_min_age_seconds=triage_opts.stale_exec_min_age_seconds,
                    shim_probe_timeout=triage_opts.shim_probe_timeout)


def diagnose_hung(proc, engine_report, settings=None, scan_opts=None):
    """{container id: public diagnosis} of every container ENGINE_REPORT
    (hung_container_info's result) finds hung, with the stuck-exec scan run
    for them only (SCAN_OPTS: ``_stuck_exec.scan_options``); {} when none is."""
    hung = [c['id'] for c in engine_report.get('containers') or [] if c.get('id') and c.get('responsive') is False]
    if not hung:
        return {}
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _stuck_exec
    try:
        scan = _stuck_exec.scan(proc, scan_opts)
    except HangdoctorError as e:
        raise TriageError('the stuck-exec scan failed: %s' % e)
    table = tree.ProcessTable.snapshot(proc)
    found = diagnose(proc, table, hung, engine_report=engine_report, stuck_execs=scan['stuck_execs'], settings=settings)
    return dict((cid, public(d)) for cid, d in found.items())


def diagnose_stuck(proc, stuck_execs, settings=None):
    """{container id: public diagnosis} for the confirmed STUCK_EXECS of a scan."""
    ids = [r['container_id'] for r in stuck_execs if r.get('container_id')]
    if not ids:
        return {}
    table = tree.ProcessTable.snapshot(proc)
    found = diagnose(proc, table, ids, stuck_execs=stuck_execs, settings=settings)
    return dict((cid, public(d)) for cid, d in found.items())


def unknown(reason):
    """The diagnosis when the chain could not be read at all."""
    return {'causes': ['unknown'], 'chain': [], 'evidence': {'unknown': {'reason': reason}},
            'action': 'unknown: %s' % ACTIONS['unknown'], 'done': None}
