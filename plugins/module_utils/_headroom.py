# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Thread and memory headroom of each running container (private module_utils).

A new ``runc init`` joins the container's cgroups; its Go runtime aborts with
``pthread_create failed: Resource temporarily unavailable`` when the pids
cgroup is at ``pids.max`` or the memory cgroup is at its limit, and writes
the crash dump that deadlocks on the shim's pipe.  The containers are found
as the children of the shims (their init processes); their cgroups are read
from ``/proc/PID/cgroup`` and the cgroup files (v1 and v2), small kernel files
a workload cannot replace.  Names come from the bundle's ``config.json``
annotations (CRI) or Docker's ``config.v2.json`` (name and labels).
Target-side code: Python 3.6+ syntax and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

from ansible_collections.hangdoctor.runtime.plugins.module_utils._procfs import ProcError, read_regular_file
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _runtime_tree

_ID_IN_PATH = re.compile(r'([0-9a-f]{64})(?:\.scope)?$')
MAX_CGROUP_FILE = 64 * 1024


def parse_proc_cgroup(text):
    """{'v2': path or None, 'pids': path, 'memory': path} from /proc/PID/cgroup."""
    out = {'v2': None}
    for line in text.splitlines():
        parts = line.split(':', 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        if hid == '0' and controllers == '':
            out['v2'] = path
            continue
        for c in controllers.split(','):
            if c in ('pids', 'memory'):
                out[c] = path
    return out


def container_id_of(path):
    """The 64-hex container id a cgroup path ends with (docker/<id>,
    docker-<id>.scope, cri-containerd-<id>.scope, kubepods/.../<id>), or None."""
    if not path:
        return None
    m = _ID_IN_PATH.search(path.rstrip('/').rsplit('/', 1)[-1])
    return m.group(1) if m else None


def _read_value(path):
    """The first line of a cgroup file, or None."""
    try:
        return read_regular_file(path, MAX_CGROUP_FILE, None, truncate=True).decode('ascii', 'replace')
    except (ProcError, OSError):
        return None


def _int(text):
    if text is None:
        return None
    text = text.strip().split('\n')[0].strip()
    if text == 'max':
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _events(text):
    out = {}
    for line in (text or '').splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


# v1 reports "no limit" as a huge page-aligned number
_V1_UNLIMITED = 1 << 62


def _levels(base, path):
    """The cgroup directories from PATH up to the root of the hierarchy at BASE."""
    parts = [p for p in (path or '').split('/') if p]
    return [os.path.join(base, *parts[:n]) if n else base for n in range(len(parts), -1, -1)]


def _tightest(levels, read_pair, unlimited=None):
    """(limit, usage, directory) of the level with the least headroom (limit -
    usage) among LEVELS: a container's pids or memory may be bounded by its
    pod's cgroup (the kubelet's pod pids limit), not its own."""
    best = (None, None, None)
    for d in levels:
        limit, usage = read_pair(d)
        if limit is None or (unlimited is not None and limit >= unlimited):
            if best[1] is None and d == levels[0]:
                best = (None, usage, d)  # the container's own usage, even without a limit
            continue
        if usage is None:
            continue
        if best[0] is None or limit - usage < best[0] - best[1]:
            best = (limit, usage, d)
    return best


def read_limits(cgroup_root, cgroups):
    """pids/memory limits and usage of one process's CGROUPS (parse_proc_cgroup),
    from the level (the container's cgroup or one of its parents) with the
    least headroom."""
    out = {'cgroup_version': None, 'pids_max': None, 'pids_current': None, 'memory_limit': None,
           'memory_usage': None, 'memory_events': {}, 'pids_limit_cgroup': None, 'memory_limit_cgroup': None}

    def pids(d):
        return _int(_read_value(os.path.join(d, 'pids.max'))), _int(_read_value(os.path.join(d, 'pids.current')))

    if cgroups.get('pids') or cgroups.get('memory'):
        out['cgroup_version'] = 1
        pbase, mbase = os.path.join(cgroup_root, 'pids'), os.path.join(cgroup_root, 'memory')

        def memory(d):
            return (_int(_read_value(os.path.join(d, 'memory.limit_in_bytes'))),
                    _int(_read_value(os.path.join(d, 'memory.usage_in_bytes'))))
        plevels = _levels(pbase, cgroups.get('pids'))
        mlevels = _levels(mbase, cgroups.get('memory'))
        out['pids_max'], out['pids_current'], pdir = _tightest(plevels, pids)
        out['memory_limit'], out['memory_usage'], mdir = _tightest(mlevels, memory, _V1_UNLIMITED)
        own = mlevels[0]
        events = {}
        failcnt = _int(_read_value(os.path.join(own, 'memory.failcnt')))
        if failcnt is not None:
            events['max'] = failcnt
        oom = _events(_read_value(os.path.join(own, 'memory.oom_control')))
        if 'oom_kill' in oom:
            events['oom_kill'] = oom['oom_kill']
        out['memory_events'] = events
        bases = (pbase, mbase)
    elif cgroups.get('v2') is not None:
        out['cgroup_version'] = 2

        def memory(d):
            return _int(_read_value(os.path.join(d, 'memory.max'))), _int(_read_value(os.path.join(d, 'memory.current')))
        levels = _levels(cgroup_root, cgroups['v2'])
        out['pids_max'], out['pids_current'], pdir = _tightest(levels, pids)
        out['memory_limit'], out['memory_usage'], mdir = _tightest(levels, memory)
        ev = _events(_read_value(os.path.join(levels[0], 'memory.events')))
        out['memory_events'] = dict((k, ev[k]) for k in ('max', 'oom', 'oom_kill') if k in ev)
        bases = (cgroup_root, cgroup_root)
    else:
        return out
    if out['pids_max'] is not None:
        out['pids_limit_cgroup'] = '/' + os.path.relpath(pdir, bases[0]).lstrip('.').lstrip('/')
    if out['memory_limit'] is not None:
        out['memory_limit_cgroup'] = '/' + os.path.relpath(mdir, bases[1]).lstrip('.').lstrip('/')
    return out


def events_growth(now, before):
    """{event: increase} of the memory event counters NOW since BEFORE (a
    counter that went down, a new cgroup, counts from 0)."""
    if not isinstance(before, dict):
        return {}
    out = {}
    for k, v in (now or {}).items():
        prev = before.get(k)
        if isinstance(prev, int) and not isinstance(prev, bool) and 0 <= prev <= v and v > prev:
            out[k] = v - prev
    return out


def assess_container(limits, pids_min, memory_min_ratio):
    """(risk reasons, score) of one container's LIMITS: higher score, nearer a failing runc init."""
    reasons = []
    score = 0.0
    if limits.get('memory_events_growth'):
        # the memory cgroup hit its limit (or OOM-killed) since the previous run: under way now
        reasons.append('memory_events_growing')
        score += 60
    pmax, pcur = limits.get('pids_max'), limits.get('pids_current')
    if pmax is not None and pcur is not None:
        headroom = pmax - pcur
        limits['pids_headroom'] = headroom
        if headroom <= 0:
            reasons.append('pids_at_limit')
            score += 100
        elif headroom < pids_min:
            reasons.append('pids_low_headroom')
            score += 50 + (pids_min - headroom)
    else:
        limits['pids_headroom'] = None
    mlim, muse = limits.get('memory_limit'), limits.get('memory_usage')
    if mlim and muse is not None:
        free = max(0, mlim - muse)
        limits['memory_headroom_bytes'] = free
        ratio = free / float(mlim)
        if ratio < memory_min_ratio:
            reasons.append('memory_near_limit')
            score += 40 + 40 * (1 - ratio / memory_min_ratio if memory_min_ratio else 1)
    else:
        limits['memory_headroom_bytes'] = None
    ev = limits.get('memory_events') or {}
    if ev.get('oom_kill') or ev.get('oom'):
        reasons.append('memory_oom_seen')
        score += 10
    return reasons, score


def _name_of(proc, shim_pid, cid, docker_roots):
    """{'name', 'pod_namespace', 'pod_name', 'container_name'} of container CID of SHIM_PID."""
    out = {'name': None, 'pod_namespace': None, 'pod_name': None, 'container_name': None}
    cwd = proc.cwd(shim_pid)
    config = None
    if cwd and cwd.startswith('/'):
        # under CRI one shim serves a pod: each container's bundle is a sibling of the shim's
        bundle = os.path.join(os.path.dirname(cwd.rstrip('/')), cid)
        config = _runtime_tree._read_json(proc.host_view(shim_pid, os.path.join(bundle, 'config.json')))
    pod = _runtime_tree.pod_from_mapping((config if isinstance(config, dict) else {}).get('annotations'))
    if pod['name'] is None and docker_roots is not None:
        cfg = docker_roots.config(cid, None, proc.ns(shim_pid, 'mnt'))
        if isinstance(cfg, dict):
            if isinstance(cfg.get('Name'), str):
                out['name'] = cfg['Name'].lstrip('/')
            if isinstance(cfg.get('Config'), dict):
                found = _runtime_tree.pod_from_mapping(cfg['Config'].get('Labels'))
                pod = dict((k, pod[k] if pod[k] is not None else found[k]) for k in pod)
    out['pod_namespace'], out['pod_name'], out['container_name'] = pod['namespace'], pod['name'], pod['container']
    if out['name'] is None:
        out['name'] = pod['container']
    return out


def containers(proc, table, cgroup_root='/sys/fs/cgroup', cmdline_timeout=1.0):
    """[{'container_id', 'pid', 'shim_pid', names..., limits...}] of every
    container whose init is a child of a shim."""
    docker_roots = _runtime_tree.DockerRoots(proc, table, cmdline_timeout)
    out = []
    seen = set()
    for shim in _runtime_tree.shim_pids(table):
        for child in table.children(shim):
            if _runtime_tree.is_runc_comm(table.comm(child)) or table.comm(child) in _runtime_tree.RUNC_INIT_COMMS:
                continue  # a runc exec / runc init of an exec, not a container
            raw = proc.read_small(child, 'cgroup', MAX_CGROUP_FILE)
            if raw is None:
                continue
            cg = parse_proc_cgroup(raw.decode('utf-8', 'replace'))
            cid = container_id_of(cg.get('pids') or cg.get('memory') or cg.get('v2'))
            if not cid or cid in seen:
                continue
            seen.add(cid)
            rec = {'container_id': cid, 'pid': child, 'shim_pid': shim}
            rec.update(_name_of(proc, shim, cid, docker_roots))
            rec.update(read_limits(cgroup_root, cg))
            out.append(rec)
    return out


def exec_containers(proc, table, cmdline_timeout=1.0):
    """Container ids with a ``runc exec`` running now (an exec probe, most likely)."""
    out = set()
    for pid, role in _runtime_tree.exec_candidates(table):
        if role != 'runc_exec':
            continue
        try:
            cid = _runtime_tree.exec_container_id(proc.cmdline(pid, cmdline_timeout))
        except ProcError:
            continue
        if cid:
            out.add(cid)
    return out


def _known(rec, names):
    for n in names:
        if not n:
            continue
        if rec['container_id'].startswith(n.lower()) or n in (rec.get('name'), rec.get('container_name')):
            return True
        if rec.get('pod_name') and n in ('%s/%s' % (rec.get('pod_namespace'), rec['pod_name']),
                                         '%s/%s/%s' % (rec.get('pod_namespace'), rec['pod_name'], rec.get('container_name'))):
            return True
    return False


def assess(proc, table, options=None):
    """{'containers': [...] sorted by risk, 'at_risk': [ids]}.

    OPTIONS: 'cgroup_root', 'pids_min', 'memory_min_ratio', 'exec_probe_containers'
    (ids, names, ``namespace/pod`` or ``namespace/pod/container`` known to run
    exec probes), 'cmdline_timeout', 'previous_events' ({container id: memory
    event counters} of the previous run, for their growth)."""
    opts = dict({'cgroup_root': '/sys/fs/cgroup', 'pids_min': 8, 'memory_min_ratio': 0.05,
                 'exec_probe_containers': [], 'cmdline_timeout': 1.0, 'previous_events': None}, **(options or {}))
    recs = containers(proc, table, opts['cgroup_root'], opts['cmdline_timeout'])
    execing = exec_containers(proc, table, opts['cmdline_timeout'])
    previous = opts['previous_events'] if isinstance(opts['previous_events'], dict) else {}
    for rec in recs:
        rec['memory_events_growth'] = events_growth(rec.get('memory_events'), previous.get(rec['container_id']))
        reasons, score = assess_container(rec, opts['pids_min'], opts['memory_min_ratio'])
        rec['risk_reasons'] = reasons
        rec['exec_probe'] = rec['container_id'] in execing or _known(rec, opts['exec_probe_containers'])
        rec['risk_score'] = round(score, 2)
        rec['at_risk'] = bool(reasons and set(reasons) - set(['memory_oom_seen']))
    # exec-probe containers first (they are the ones that exec), then by risk
    recs.sort(key=lambda r: (not r['at_risk'], not r['exec_probe'], -r['risk_score'], r['container_id']))
    return {'containers': recs, 'at_risk': [r['container_id'] for r in recs if r['at_risk']]}
