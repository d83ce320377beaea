# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One node, one pass (private module_utils): the engine check, the /proc
scan, the drain plan and the drains, the metrics file and the host summary,
in the single module execution the roles make per host.

A healthy node costs one Python start on the target; a node with stuck execs
costs the same unless the eviction guard has to ask the Kubernetes API first
(then the role calls again with the guard's verdict).

Target-side code: Python 3.6+ syntax and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os
import socket
import stat
import time
from collections import namedtuple

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _exec_candidates
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _files
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _metrics
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _options
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _summary
from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import HangdoctorError

WAITING_FOR_GUARD = 'waiting for the eviction guard (Kubernetes node)'
# The process that runs the kubelet: kubelet itself; k3s and rke2 servers and
# agents run it in-process (k3s renames itself k3s-server / k3s-agent);
# MicroK8s runs it in kubelite.
KUBELET_COMMS = ('kubelet', 'k3s', 'k3s-server', 'k3s-agent', 'rke2', 'kubelite', 'hyperkube')
# Where a kubelet keeps its state and configuration on the host: its root-dir
# (kubeadm, cloud images, k3s, rke2, containerised kubelets), kubeadm's and
# EKS's kubeconfig/config, k3s/rke2 agents, MicroK8s, k0s.
KUBELET_PATHS = ('/var/lib/kubelet', '/etc/kubernetes/kubelet.conf', '/etc/kubernetes/kubelet',
                 '/var/lib/rancher/k3s/agent', '/var/lib/rancher/rke2/agent',
                 '/var/snap/microk8s/current/args/kubelet', '/var/lib/k0s/kubelet')


class NodeDoctorError(HangdoctorError):
    """The node cannot be checked at all (bad options, no procfs), or a drain
    was refused as a whole (the drain's own error text)."""


NodeOptions = namedtuple('NodeOptions', ['mode', 'engine', 'containerd', 'proc', 'scan', 'engine_check', 'guard',
                                         'drain_run', 'metrics', 'stacks', 'triage', 'triage_actions'])


def options(params=None):
    """node_doctor's option objects from its module PARAMS (or any mapping of
    its option names; what it lacks takes the group's default)."""
    params = params or {}
    mode = params.get('mode', 'detect')
    if mode not in ('detect', 'remediate'):
        raise NodeDoctorError('mode must be detect or remediate, got %r' % (mode,))
    return NodeOptions(
        mode=mode,
        engine=_options.ENGINE.values(params),
        containerd=_options.CONTAINERD.values(params),
        proc=_options.PROC.values(params),
        scan=_options.SCAN.values(params),
        engine_check=_options.ENGINE_CHECK.values(params),
        guard=_options.GUARD.values(params),
        drain_run=_options.drain_run(params, _options.NODE_DOCTOR_DRAIN_NAMES),
        metrics=_options.METRICS.values(params),
        stacks=_options.STACKS.values(params),
        triage=_options.TRIAGE.values(params),
        triage_actions=_options.TRIAGE_ACTIONS.values(params))


def ask_engines(opts, proc_root):
    """(report, skipped reason) for the node options OPTS.  The report has
    hung_container_info's shape (``engines``, ``containers``, ``hung``); an
    engine that is not on this node is a fact in it, not a failure (a
    containerd-CRI node has no dockerd)."""
    ask = opts.engine_check
    if not ask.check_engine:
        return None, 'engine check turned off'
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _engines
    try:
        report = _engines.check_engines(_engines.EngineQuery(
            engines=ask.engines, docker_host=opts.engine.docker_host,
            containerd_address=opts.containerd.containerd_address,
            containerd_namespace=opts.containerd.containerd_namespace, timeout=opts.engine.inspect_timeout,
            concurrency=ask.inspect_concurrency, container_ids=opts.scan.container_ids or None, proc_root=proc_root))
    except _engines.EnginesError as e:
        raise NodeDoctorError(str(e))
    present = [e for e in report['engines'] if e.get('present')]
    checked = [e for e in present if e.get('checked')]
    if ask.engine_required and not any(e.get('reachable') for e in checked):
        raise NodeDoctorError('no container engine answers on this node: %s' % _engines.summary_msg(report))
    docker = [e for e in present if e['name'] == 'docker']
    report['engine'] = dict((docker or present or [{}])[0])
    if not present:
        return report, 'no container engine on this node (%s)' % ', '.join(
            '%s: %s' % (e['name'], e.get('error') or 'not present') for e in report['engines'])
    return report, ''


def _mount_ns(proc, pid):
    try:
        return os.readlink(proc.path(pid, 'ns', 'mnt'))
    except OSError:
        return None


def _host_path_state(proc, path):
    """'present', 'absent' or 'unknown' for PATH on the host, looked up under
    PID 1's root (the host's view also from a pod with the host's /proc).  No
    symlink below that root is followed: the walk opens one component at a
    time with O_NOFOLLOW, and a symlink it meets (a kubelet root-dir moved to
    another disk is a symlink) is not looked through but counts: it cannot
    tell "no kubelet", and only "absent" means no Kubernetes."""
    flags = os.O_RDONLY | getattr(os, 'O_CLOEXEC', 0)
    o_path = getattr(os, 'O_PATH', 0)
    try:
        fd = os.open(proc.path(1, 'root'), flags | os.O_DIRECTORY | o_path)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return 'absent'  # a tree without PID 1's root (a fixture) has no host to look at
        if e.errno not in (errno.EACCES, errno.EPERM) or os.path.realpath(proc.root) != '/proc':
            return 'unknown'
        # PID 1 is more privileged than this module (it lacks a capability
        # PID 1 has): as for the mount namespace, this module's own view of
        # its own /proc's host stands in.
        try:
            fd = os.open('/', flags | os.O_DIRECTORY | o_path)
        except OSError:
            return 'unknown'
    try:
        parts = [p for p in path.split('/') if p]
        for i, part in enumerate(parts):
            try:
                st = os.stat(part, dir_fd=fd, follow_symlinks=False)
            except OSError as e:
                return 'absent' if e.errno in (errno.ENOENT, errno.ENOTDIR) else 'unknown'
            if stat.S_ISLNK(st.st_mode):
                return 'present' if i == len(parts) - 1 else 'unknown'
            if i == len(parts) - 1:
                return 'present'
            if not stat.S_ISDIR(st.st_mode):
                return 'absent'
            try:
                nfd = os.open(part, flags | os.O_DIRECTORY | os.O_NOFOLLOW | o_path, dir_fd=fd)
            except OSError as e:
                return 'absent' if e.errno in (errno.ENOENT, errno.ENOTDIR) else 'unknown'
            os.close(fd)
            fd = nfd
        return 'present'
    finally:
        os.close(fd)


def _alive(proc, pid):
    """Whether PID still runs: a zombie (its ns links are gone) runs no kubelet."""
    try:
        return proc.stat(pid)['state'] not in ('Z', 'X')
    except (_procfs.ProcError, KeyError, ValueError):
        return os.path.isdir(proc.path(pid))


def _node_name(argv):
    """The name a kubelet registers: --hostname-override (kubelet), --node-name
    (k3s, rke2), else None (the host name)."""
    name = None
    for i, arg in enumerate(argv):
        for flag in ('--hostname-override', '--node-name'):
            if arg.startswith(flag + '='):
                name = arg.split('=', 1)[1]
            elif arg == flag and i + 1 < len(argv):
                name = argv[i + 1]
    return name


def kube_node(proc, cmdline_timeout=1.0):
    """{'kubelet_pid', 'node_name', 'found'} when this node may be a
    Kubernetes node, else None ("cannot tell" is a Kubernetes node: the
    eviction guard then asks the API before a drain).

    A kubelet is a process of KUBELET_COMMS (kubelet; k3s, rke2 and MicroK8s
    run it inside their own binary) in the host's mount namespace (that of
    PID 1, or where PID 1's cannot be read, this module's own): a workload can
    name itself "kubelet", so a process in another mount namespace neither
    makes the node a Kubernetes node nor names it; only its cmdline is read,
    with a deadline.  Without such a process, a kubelet's files on the host
    (KUBELET_PATHS; a containerised kubelet keeps its root-dir on the host,
    where the runtime mounts pod volumes from) make it one too, and so does a
    kubelet-named process whose mount namespace cannot be read.

    The node's name is the kubelet's ``--hostname-override`` (k3s:
    ``--node-name``) when it has one, else the lower-cased host name, as the
    kubelet itself decides."""
    host_mnt = _mount_ns(proc, 1)
    if host_mnt is None:
        try:
            host_mnt = os.readlink('/proc/self/ns/mnt')
        except OSError:
            host_mnt = None
    undecided = None
    for pid in proc.pids():
        try:
            comm = proc.comm(pid)
        except _procfs.ProcError:
            continue
        if comm not in KUBELET_COMMS:
            continue
        mnt = _mount_ns(proc, pid)
        if host_mnt is None or mnt is None:
            if undecided is None and _alive(proc, pid):
                undecided = {'kubelet_pid': None, 'node_name': None,
                             'found': 'process %s (pid %d) in a mount namespace that cannot be read' % (comm, pid)}
            continue
        if mnt != host_mnt:
            continue
        try:
            argv = proc.cmdline(pid, timeout=cmdline_timeout)
        except _procfs.ProcError:
            argv = []
        name = _node_name(argv)
        return {'kubelet_pid': pid, 'node_name': (name or socket.gethostname()).strip().lower(),
                'found': 'process %s (pid %d)' % (comm, pid)}
    for path in KUBELET_PATHS:
        state = _host_path_state(proc, path)
        if state != 'absent':
            return {'kubelet_pid': None, 'node_name': socket.gethostname().strip().lower(),
                    'found': '%s %s on the host' % (path, 'found' if state == 'present' else 'cannot be checked')}
    if undecided is not None:
        undecided['node_name'] = socket.gethostname().strip().lower()
    return undecided


def guard_required(policy, kube):
    """Whether drains must wait for an eviction-guard verdict."""
    if policy == 'always':
        return True
    if policy == 'never':
        return False
    return kube is not None


def write_metrics(summary, metrics, now=None):
    """{'path', 'written', 'error'} for the node's textfile (METRICS: the
    metrics option object); counters go on from the previous file.  A
    metrics failure never hides the findings."""
    # a directory named by the user is created; auto only uses one that exists
    path, create_dir, reason = _metrics.textfile_target(metrics.metrics_dir, metrics.metrics_file)
    if path is None:
        return {'path': None, 'written': False, 'error': None, 'reason': reason}
    try:
        previous = _files.read_small(path)
        text = _metrics.render(summary, previous, now)
        # A directory found by auto must be root's (or ours): its owner could
        # otherwise replace the file (hide a stuck exec) or race our names.
        # A directory named by hand is the user's choice.
        _files.write_atomic(path, text.encode('utf-8'), 0o644, create_dir=create_dir, durable=False,
                            safe_dir=not create_dir)
    except _files.WriteError as e:
        return {'path': path, 'written': False, 'error': str(e)}
    return {'path': path, 'written': True, 'error': None}


def run(proc, opts=None, check_mode=False, hostname=None, now=None):
    """Check (and in mode ``remediate`` repair) one node with the options
    OPTS (``options()``).  Returns the module result:
    ``ansible_facts.hangdoctor`` (the host summary), ``msg``, and the full
    records (``stuck_execs``, ``suspects``, ``drain``) for ad hoc use."""
    t0 = time.monotonic()
    opts = opts or options()
    host = hostname or socket.gethostname()
    engine_report, engine_skipped = ask_engines(opts, proc.root)
    sc, po = opts.scan, opts.proc
    try:
        found = _exec_candidates.find(proc, confirm_interval=po.confirm_interval, peek_bytes=po.peek_bytes,
                                      min_age_seconds=sc.min_age_seconds, method=sc.scan_method,
                                      cmdline_timeout=sc.cmdline_timeout)
        if found['candidates']:
            # Loaded only here: a node without a possible stuck exec (nearly
            # every node of a fleet run) does not pay for the diagnosis.
            from ansible_collections.hangdoctor.runtime.plugins.module_utils import _stuck_exec
            scan = _stuck_exec.scan(proc, _stuck_exec.scan_options(sc, po), first_pass=found)
        else:
            scan = _exec_candidates.result(found)
    except _exec_candidates.DiagnosisError as e:
        raise NodeDoctorError('diagnosis failed: %s' % e)
    summary = _summary.host_summary(scan, engine_report, host, now, engine_skipped=engine_skipped or None)
    summary['mode'] = opts.mode
    result = {'changed': False, 'stuck_execs': scan['stuck_execs'], 'suspects': scan['suspects'],
              'scanned_processes': scan['scanned_processes'], 'scan_method': scan.get('scan_method'),
              'scan_fallback_reason': scan.get('scan_fallback_reason'), 'drain': None}
    if opts.triage.triage:
        table = found['table']
        if found.get('method') == 'shims':
            # the scan by shim read no process table; triage looks at every process
            from ansible_collections.hangdoctor.runtime.plugins.module_utils._runtime_tree import ProcessTable
            table = ProcessTable.snapshot(proc)
        triage_rows(proc, opts, table, scan, run_state=dict(
            engine_report=engine_report, summary=summary, check_mode=check_mode))

    if opts.stacks.capture_stacks and (summary['hung'] or scan['stuck_execs']):
        capture_stacks(proc, opts, scan, summary)

    if opts.mode == 'remediate':
        summary, result['drain'] = _remediate(proc, opts, scan, summary, run_state=dict(
            engine_report=engine_report, engine_skipped=engine_skipped, check_mode=check_mode, host=host))
        result['changed'] = bool(result['drain'] and result['drain'].get('changed'))

    if check_mode:
        summary['metrics'] = {'path': None, 'written': False, 'error': None, 'reason': 'check mode'}
    else:
        summary['metrics'] = write_metrics(summary, opts.metrics, now)
    summary['seconds'] = round(time.monotonic() - t0, 3)
    result['msg'] = message(summary)
    result['ansible_facts'] = {'hangdoctor': summary}
    return result


_SHIM_PREFIXES = ('containerd-shim', 'docker-containe')
_UNUSUAL_STATES = frozenset(('D', 'T', 't'))


def _unusual(table, pileup_min_count):
    """Whether any process is in a state worth the triage: D, stopped, a
    runc init, or a shim with PILEUP_MIN_COUNT children started a second or
    more after its first (exec processes).  Two plain passes over the
    snapshot already in memory: a healthy node does not load the triage."""
    stats = table.stats
    shims = set()
    for pid, st in stats.items():
        if st is None:
            continue
        if st['state'] in _UNUSUAL_STATES or st['comm'] == 'runc:[2:INIT]':
            return True
        if st['comm'].startswith(_SHIM_PREFIXES):
            shims.add(pid)
    if not shims:
        return False
    starts = {}
    for st in stats.values():
        if st is not None and st['ppid'] in shims:
            starts.setdefault(st['ppid'], []).append(st['starttime'])
    for shim, times in starts.items():
        if len(times) > pileup_min_count:
            first = min(times)
            # execs come after the container's init (one second: 100 clock ticks at the usual 100 Hz)
            if sum(1 for t in times if t - first > 100) >= pileup_min_count \
                    and len(exec_pileup_children(table, shim)) >= pileup_min_count:
                return True
    return False


def exec_pileup_children(table, shim):
    """The children of SHIM that count toward a pileup: started a second or
    more after the oldest child in their cgroup (a CRI pod shim's container
    inits are not execs).  Read only for a shim with many late children."""
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _runtime_tree
    return _runtime_tree.late_children(table, shim)


def triage_rows(proc, opts, table, scan, run_state):
    """Give every container row of the summary in RUN_STATE its
    ``diagnosis`` (causes, chain, evidence, action, done), adding rows for
    containers whose processes are in an unusual state although the engine
    answers for them.  Safe actions (thaw, reap) only in mode remediate."""
    summary = run_state['summary']
    tr, acts = opts.triage, opts.triage_actions
    unusual = _unusual(table, tr.pileup_min_count)
    if not summary['containers'] and not unusual:
        return
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _triage
    settings = _triage.Settings(confirm_interval=min(opts.proc.confirm_interval, 1.0),
                                pileup_min_count=tr.pileup_min_count,
                                stale_exec_min_age_seconds=tr.stale_exec_min_age_seconds,
                                shim_probe_timeout=tr.shim_probe_timeout)
    engine_report = run_state['engine_report']
    targets = [r['container_id'] for r in summary['containers']]
    extra = []
    if unusual:
        wanted = opts.scan.container_ids
        for cid in _triage.suspect_containers(proc, table, _triage.suspicious(table, tr.pileup_min_count)):
            if wanted and not any(_summary.same_container(cid, w) for w in wanted):
                continue
            if not any(_summary.same_container(cid, t) for t in targets + extra):
                extra.append(cid)
    found = _triage.diagnose(proc, table, targets + extra, engine_report=engine_report,
                             stuck_execs=scan['stuck_execs'], settings=settings)
    for cid in extra:
        # a container the engine answers for gets a row only for a cause proven
        if found[cid]['causes'] != ['unknown']:
            summary['containers'].append(_summary.container_row(cid, engine_report))
    act = opts.mode == 'remediate' and not run_state['check_mode']
    for row in summary['containers']:
        diag = found.get(row['container_id'])
        if diag is None:
            continue
        if act and (acts.thaw or acts.reap_stale_execs):
            _triage.act(proc, diag, thaw=acts.thaw, reap=acts.reap_stale_execs)
        row['diagnosis'] = _triage.public(diag)
        row['causes'] = list(diag['causes'])


def capture_stacks(proc, opts, scan, summary):
    """Goroutine stacks of the daemons on the chain of the hung or stuck
    containers (capture_stacks): once per node, before any drain changes the
    picture.  The result goes to ``stacks`` of the summary and to
    ``diagnosis.evidence.stacks`` of each such container row."""
    # Loaded only here: a healthy node (or capture_stacks off) pays nothing.
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _addresses, _stack_capture
    sockets = []
    try:
        sockets.append(_addresses.parse_docker_host(opts.engine.docker_host)[1])
    except _addresses.AddressError:  # checked by the option already; nothing to find a dockerd by
        pass
    sockets.append(_addresses.containerd_socket_path(opts.containerd.containerd_address))
    engines = _stack_capture.engine_pids(proc, [s for s in sockets if isinstance(s, str) and s.startswith('/')])
    chain = [{'role': 'engine', 'pid': pid} for pid in engines]
    for rec in scan['stuck_execs']:
        chain.extend(link for link in _stack_capture.chain_of(rec, []) if link not in chain)
    ev = opts.drain_run.evidence
    stacks = _stack_capture.capture_for(chain, opts.stacks, ev.evidence_dir, lock_dir=ev.lock_dir, proc=proc)
    summary['stacks'] = stacks
    for row in summary['containers']:
        row.setdefault('diagnosis', {}).setdefault('evidence', {})['stacks'] = stacks
    return stacks


def _remediate(proc, opts, scan, summary, run_state):
    """(summary, drain result or None): plan, guard and drain the stuck execs of SCAN."""
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _policy
    guard = opts.guard
    kube = kube_node(proc, opts.scan.cmdline_timeout) if scan['stuck_execs'] else None
    summary['kubernetes'] = kube
    plan = _policy.drain_plan(scan['stuck_execs'], opts.drain_run.drain.min_age_seconds, guard.max_drains,
                              guard.guard, allow=guard.drain)
    drain_result = None
    summary['guard_needed'] = False
    if plan['targets'] and guard.guard is None and guard_required(guard.require_guard, kube):
        # The role asks the Kubernetes API from the controller and calls again.
        summary['guard_needed'] = True
        plan = {'targets': [], 'skipped': plan['skipped'] + [
            {'container_id': r.get('container_id'), 'reason': WAITING_FOR_GUARD, 'by': 'policy'}
            for r in plan['targets']]}
    elif plan['targets']:
        # Imported here: a node without stuck execs (nearly every node of a
        # fleet run) does not pay for loading the drain.
        from ansible_collections.hangdoctor.runtime.plugins.module_utils import _engines, _pipe_drain
        engine = None
        if run_state['engine_report'] is not None and not run_state['engine_skipped']:
            engine = _engines.container_check(
                docker_host=opts.engine.docker_host, containerd_address=opts.containerd.containerd_address,
                timeout=opts.engine.inspect_timeout, containerd_namespace=opts.containerd.containerd_namespace,
                proc_root=proc.root)
        try:
            drain_result = _pipe_drain.run(proc, opts.drain_run, stuck_execs=plan['targets'],
                                           check_mode=run_state['check_mode'], engine=engine,
                                           hks=_pipe_drain.hooks(hostname=run_state['host']))
        except _pipe_drain.DrainError as e:
            raise NodeDoctorError(str(e))
    summary = _summary.remediation(summary, drain=drain_result, plan=plan, guard=guard.guard)
    summary['mode'] = opts.mode
    return summary, drain_result


def _engine_words(summary):
    # checked means "we asked": an engine that is there but hung or dead is
    # checked and UNREACHABLE, never "not checked" (that is: not on this node).
    checked = [e for e in summary.get('engines') or [] if e.get('checked')]
    if not checked:
        return 'engine not checked: %s' % ((summary.get('engine') or {}).get('skipped') or 'none')
    down = [e for e in checked if not e.get('reachable')]
    if down:
        return 'engine UNREACHABLE: %s' % ', '.join(
            '%s (%s)' % (e.get('name') or 'docker', str(e.get('error') or 'no answer')[:160]) for e in down)
    return 'engine answers'


def _causes_words(summary):
    named = ['%s: %s' % (r.get('name') or (r.get('container_id') or '')[:12], '+'.join(r['causes']))
             for r in summary.get('containers') or [] if r.get('causes')]
    return '; causes: %s' % ', '.join(named) if named else ''


def message(summary):
    """The one line a person reads at 3 a.m."""
    s = summary
    if s.get('stuck_execs') or s.get('hung') or s.get('drained') or s.get('skipped'):
        return '%s: %s%s' % (s.get('host'), _summary.host_line(s), _causes_words(s))
    if _causes_words(s):
        return '%s: no stuck exec, no hung container%s' % (s.get('host'), _causes_words(s))
    if s.get('scan_partial'):
        # never "no stuck exec" when the scan did not look at everything
        line = '%s: scan PARTIAL, stuck execs unknown (%s; %s processes scanned, %s)' % (
            s.get('host'), s.get('scan_partial_reason'), s.get('scanned_processes'), _engine_words(s))
    else:
        line = '%s: no stuck exec, no hung container (%s processes scanned, %s)' % (
            s.get('host'), s.get('scanned_processes'), _engine_words(s))
    if s.get('suspects'):
        line += '; %d suspect(s) not confirmed' % len(s['suspects'])
    return line
