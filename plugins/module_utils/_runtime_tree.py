# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The container runtime's process tree, read from /proc (private module_utils).

containerd shim (v1 or v2) -> ``runc exec`` -> ``runc init``.  One pass reads
only ``stat`` of every pid (cheap, never blocks); argv is read later and only
for shims, ``runc exec`` and dockerd, with a deadline.  A container is named
by the ``runc exec`` argv (its last argument), never by shim v2's ``-id``:
under Kubernetes CRI one v2 shim serves a whole pod and ``-id`` is the
sandbox.  Target-side code: Python 3.6+ syntax and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import re

from ansible_collections.hangdoctor.runtime.plugins.module_utils._procfs import (
    ProcError,
    read_regular_file,
    same_inode,
)

# comm is cut to 15 bytes: containerd-shim-runc-v2 and containerd-shim both
# show "containerd-shim", docker-containerd-shim shows "docker-containe".
SHIM_COMMS = ('containerd-shim', 'docker-containe')
# runc exec, and runc init before its prctl(PR_SET_NAME).
RUNC_COMMS = ('runc', 'docker-runc')
RUNC_INIT_COMMS = ('runc:[2:INIT]',)
DOCKERD_COMMS = ('dockerd',)

CONTAINER_ID_RE = re.compile(r'^[0-9a-f]{64}$')
# runc global options that take a value (``runc --root X exec ...``).
_RUNC_VALUE_OPTS = ('--root', '--log', '--log-format', '--criu', '--rootless')
# Bundle annotations (containerd CRI, CRI-O) and Docker labels (dockershim).
POD_KEYS = (
    ('io.kubernetes.cri.sandbox-namespace', 'io.kubernetes.cri.sandbox-name', 'io.kubernetes.cri.container-name'),
    ('io.kubernetes.pod.namespace', 'io.kubernetes.pod.name', 'io.kubernetes.container.name'),
)
MAX_CONFIG_BYTES = 4 * 1024 * 1024
# A config file on a healthy local disk reads in microseconds; a stuck mount
# must not hold the scan.
CONFIG_READ_TIMEOUT = 1.0


class ProcessTable(object):
    """``stat`` of processes by pid, plus children by ppid.

    ``ProcessTable.snapshot(proc)`` reads every pid once; ``ProcessTable(proc)``
    starts empty and reads a pid's stat the first time it is asked for (used
    to re-check one record without walking all of /proc)."""

    def __init__(self, proc, stats=None):
        self.proc = proc
        self.stats = stats if stats is not None else {}
        self._complete = stats is not None
        self._children = None

    @classmethod
    def snapshot(cls, proc):
        stats = {}
        for pid in proc.pids():
            try:
                stats[pid] = proc.stat(pid)
            except ProcError:
                continue  # exited while we listed, or a kernel thread race
        return cls(proc, stats)

    def __len__(self):
        return len(self.stats)

    def get(self, pid):
        if pid in self.stats:
            return self.stats[pid]
        if self._complete or not pid or pid < 1:
            return None
        try:
            st = self.proc.stat(pid)
        except ProcError:
            st = None
        self.stats[pid] = st
        return st

    def comm(self, pid):
        st = self.get(pid)
        return st['comm'] if st else None

    def ppid(self, pid):
        st = self.get(pid)
        return st['ppid'] if st else None

    def children(self, pid):
        if self._children is None:
            self._children = {}
            for p, st in self.stats.items():
                if st:
                    self._children.setdefault(st['ppid'], []).append(p)
        return self._children.get(pid, [])

    def pids_with_comm(self, comms):
        return sorted(p for p, st in self.stats.items() if st and st['comm'] in comms)

    def ancestors(self, pid, depth=4):
        out = []
        cur = self.ppid(pid)
        while cur and cur > 1 and len(out) < depth:
            out.append(cur)
            cur = self.ppid(cur)
        return out


def is_shim_comm(comm):
    return bool(comm) and (comm in SHIM_COMMS or comm.startswith('containerd-shim'))


def is_shim_argv(argv):
    """docker-containerd and docker-containerd-shim share the comm
    "docker-containe": only argv[0] tells the shim from containerd."""
    return bool(argv) and 'shim' in os.path.basename(argv[0])


def is_runc_comm(comm):
    return comm in RUNC_COMMS


def shim_info(argv):
    """{'version': 'v1'|'v2'|None, 'id', 'namespace', 'workdir'} from a shim's argv."""
    base = os.path.basename(argv[0]) if argv else ''
    opts = _options(argv[1:])
    if '-id' in opts or (base.startswith('containerd-shim-') and base not in ('containerd-shim',)):
        version = 'v2'
    elif '-workdir' in opts or base in ('containerd-shim', 'docker-containerd-shim'):
        version = 'v1'
    else:
        version = None
    workdir = opts.get('-workdir')
    return {
        'version': version,
        'id': opts.get('-id') if version == 'v2' else None,
        'namespace': opts.get('-namespace'),
        'workdir': workdir,
    }


def _options(args):
    """{'-flag': value} for ``-flag value`` and ``-flag=value`` pairs."""
    out = {}
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith('-'):
            key, sep, value = a.partition('=')
            if sep:
                out[key] = value
            elif i + 1 < len(args) and not args[i + 1].startswith('-'):
                out[key] = args[i + 1]
                i += 1
            else:
                out[key] = True
        i += 1
    return out


def runc_subcommand(argv):
    """The runc subcommand (``exec``, ``init``, ``create``...) after the global options."""
    i = 1
    while i < len(argv):
        a = argv[i]
        if a.startswith('-'):
            if '=' not in a and a in _RUNC_VALUE_OPTS:
                i += 2
            else:
                i += 1
            continue
        return a
    return None


def runc_root(argv):
    opts = _options(argv[1:argv.index('exec')] if 'exec' in argv else argv[1:])
    value = opts.get('--root')
    return value if isinstance(value, str) else None


def exec_container_id(argv):
    """Container id of a ``runc exec`` argv: its last argument, when it looks
    like one (64 hex digits), else None."""
    if not argv or runc_subcommand(argv) != 'exec':
        return None
    last = argv[-1]
    return last if CONTAINER_ID_RE.match(last) else None


def _read_json(path):
    """The JSON of PATH, or None.  Never a blocking open: a FIFO, a device or
    a symlink planted at PATH is refused, not opened or followed."""
    try:
        data = read_regular_file(path, MAX_CONFIG_BYTES, CONFIG_READ_TIMEOUT)
    except (ProcError, IOError, OSError):
        return None
    try:
        return json.loads(data.decode('utf-8', 'replace'))
    except ValueError:
        return None


def pod_from_mapping(mapping):
    """{'namespace','name','container'} from bundle annotations or Docker labels."""
    out = {'namespace': None, 'name': None, 'container': None}
    if not isinstance(mapping, dict):
        return out
    for keys in POD_KEYS:
        for field, key in zip(('namespace', 'name', 'container'), keys):
            if out[field] is None and isinstance(mapping.get(key), str):
                out[field] = mapping[key]
    return out


class DockerRoots(object):
    """Where each running dockerd keeps containers' config (``config.v2.json``),
    found from its argv (``--exec-root``/``--data-root``) or its daemon.json,
    and read through ``/proc/DOCKERD/root`` so it also works with the host's
    /proc mounted in a pod."""

    def __init__(self, proc, table, cmdline_timeout=1.0):
        self.proc = proc
        self.table = table
        self.timeout = cmdline_timeout
        self._daemons = None

    def daemons(self):
        if self._daemons is None:
            self._daemons = []
            for pid in self.table.pids_with_comm(DOCKERD_COMMS):
                try:
                    argv = self.proc.cmdline(pid, self.timeout)
                except ProcError:
                    continue
                self._daemons.append(self._roots(pid, argv))
        return self._daemons

    def _roots(self, pid, argv):
        opts = _options(argv[1:])
        base = self.proc.path(pid, 'root')
        conf = _read_json(base + (opts.get('--config-file') if isinstance(opts.get('--config-file'), str)
                                  else '/etc/docker/daemon.json'))
        conf = conf if isinstance(conf, dict) else {}

        def text(*values):
            for v in values:
                if isinstance(v, str) and v:
                    return v
            return None
        data_root = text(opts.get('--data-root'), opts.get('-g'), opts.get('--graph'), conf.get('data-root')) or '/var/lib/docker'
        exec_root = text(opts.get('--exec-root'), conf.get('exec-root')) or '/var/run/docker'
        return {'pid': pid, 'base': base, 'data_root': data_root, 'exec_root': exec_root.rstrip('/'),
                'mnt_ns': self.proc.ns(pid, 'mnt')}

    def config(self, container_id, runc_root_dir=None, mnt_ns=None):
        """Docker's config.v2.json of CONTAINER_ID.  With MNT_NS (the runc
        exec's mount namespace), only a dockerd in that namespace is asked: a
        process in a container that calls itself dockerd is not."""
        daemons = [d for d in self.daemons() if not mnt_ns or not d['mnt_ns'] or d['mnt_ns'] == mnt_ns]
        # Prefer the dockerd whose exec root holds this runc's state.
        if runc_root_dir:
            matching = [d for d in daemons if runc_root_dir.startswith(d['exec_root'] + '/')]
            daemons = matching + [d for d in daemons if d not in matching]
        for d in daemons:
            cfg = _read_json(d['base'] + os.path.join(d['data_root'], 'containers', container_id, 'config.v2.json'))
            if cfg is not None:
                return cfg
        return None


def same_host_reasons(proc, pid, ref_pid, what, ref_what):
    """Why PID is not a process of the host REF_PID runs on ([] when nothing
    says so): it must share REF_PID's mount and pid namespaces, and its
    executable must be the file of that name in REF_PID's view (a process
    in a container can name itself anything and copy any argv, but not
    these).  WHAT and REF_WHAT name the two in the reasons."""
    reasons = []
    for kind in ('mnt', 'pid'):
        mine, theirs = proc.ns(pid, kind), proc.ns(ref_pid, kind)
        # the links exist on every kernel since 3.8; a tree without them
        # (fixtures) leaves the other proofs to decide
        if mine is not None and theirs is not None and mine != theirs:
            reasons.append('%s is in another %s namespace than %s' % (what, kind, ref_what))
    exe = proc.exe(pid)
    if exe is not None and not exe.endswith(' (deleted)'):
        # a binary upgraded while the process runs shows "(deleted)": not a proof either way
        if not exe.startswith('/') or not same_inode(proc.path(pid, 'exe'), proc.host_view(ref_pid, exe)):
            reasons.append('%s executable %s is not the host file of that name' % (what, exe[:200]))
    return reasons


def shim_identity(proc, shim_pid, ref_pid, ref_what='containerd'):
    """(host bundle, reasons) of a process that calls itself a containerd
    shim, proven against REF_PID, a process known to be the runtime's (the
    containerd that listens on the socket we were given): the same
    namespaces and executable proof as a ``runc exec`` against its shim
    (:func:`same_host_reasons`), the same owner (uid) as REF_PID, and a
    working directory (its bundle) that is the host directory of that name.
    BUNDLE is the bundle's path as the shim sees it (the caller reads it
    through the shim's root when that is not its own), None unless every
    check passed."""
    reasons = same_host_reasons(proc, shim_pid, ref_pid, 'containerd shim', ref_what=ref_what)
    try:
        mine, theirs = proc.status(shim_pid).get('Uid'), proc.status(ref_pid).get('Uid')
    except ProcError:
        mine = theirs = None
    if mine is not None and theirs is not None and mine[:1] != theirs[:1]:
        reasons.append('containerd shim runs as uid %s, %s as uid %s' % (mine[0], ref_what, theirs[0]))
    cwd = proc.cwd(shim_pid)
    if not cwd or not cwd.startswith('/'):
        reasons.append('containerd shim working directory unreadable')
        return None, reasons
    if not same_inode(proc.path(shim_pid, 'cwd'), proc.host_view(ref_pid, cwd)):
        reasons.append('containerd shim working directory %s is not the host directory of that name' % cwd[:200])
    return (None if reasons else cwd.rstrip('/')), reasons


def runc_exec_bundle(proc, exec_pid, shim_pid, container_id, shim_namespace=None):
    """Is EXEC_PID a ``runc exec`` the shim SHIM_PID started for CONTAINER_ID?

    A process inside a container can name itself runc, carry the argv
    ``runc exec <id>`` and be a child of the shim (every container's init
    is).  What it cannot fake, all read in the host's view (through the
    shim's root), never through the container's own symlinks:
    - it shares the shim's mount and pid namespaces;
    - its executable is the host's file at the path its exe link names;
    - its working directory is the bundle ``<state>/<namespace>/<id>``: the
      same directory as the host's path of that name, a sibling of the
      shim's own bundle (one v2 shim serves a whole pod), named after the
      container id, under the shim's ``-namespace``; or, under CRI, the pod
      shim's own working directory (the sandbox's bundle), next to which
      the container's bundle then lies.

    Returns (bundle, reasons): BUNDLE is the host-view path of the verified
    bundle directory (None unless every check passed), REASONS what failed."""
    reasons = same_host_reasons(proc, exec_pid, shim_pid, 'runc exec', ref_what='its shim')
    cwd = proc.cwd(exec_pid)
    shim_cwd = proc.cwd(shim_pid)
    if not cwd or not cwd.startswith('/'):
        reasons.append('runc exec working directory unreadable')
        return None, reasons
    host_bundle = proc.host_view(shim_pid, cwd)
    if not same_inode(proc.path(exec_pid, 'cwd'), host_bundle):
        reasons.append('runc exec working directory %s is not the host directory of that name' % cwd[:200])
    parent, name = os.path.split(cwd.rstrip('/'))
    if container_id and name != container_id:
        if shim_cwd and cwd.rstrip('/') == shim_cwd.rstrip('/') and CONTAINER_ID_RE.match(container_id):
            # Under CRI one v2 shim serves the pod, and runc exec runs in the
            # shim's own working directory, the sandbox's bundle: the
            # container's bundle is its sibling named after the container.
            sibling = proc.host_view(shim_pid, os.path.join(parent, container_id))
            if os.path.isdir(sibling) and not os.path.islink(sibling):
                host_bundle = sibling
            else:
                reasons.append('no bundle of %s next to its pod shim\'s bundle' % container_id[:12])
        else:
            reasons.append('runc exec working directory is not the bundle of %s' % container_id[:12])
    if not shim_cwd or os.path.dirname(shim_cwd.rstrip('/')) != parent:
        reasons.append('runc exec bundle is not next to its shim\'s bundle')
    if isinstance(shim_namespace, str) and shim_namespace and os.path.basename(parent) != shim_namespace:
        reasons.append('runc exec bundle is not under the shim\'s namespace %s' % shim_namespace[:64])
    return (None if reasons else host_bundle), reasons


def pod_of(proc, runc_exec_pid, container_id, docker_roots=None, runc_exec_argv=None, bundle=None):
    """Pod namespace/name/container of the container a ``runc exec`` runs in:
    the bundle's ``config.json`` annotations, else Docker's
    ``config.v2.json`` labels.  BUNDLE is the host-view bundle directory
    :func:`runc_exec_bundle` verified; without it, it is verified here
    against the runc exec's parent.  An unverified bundle is never read."""
    if bundle is None:
        try:
            shim_pid = proc.stat(runc_exec_pid)['ppid']
            bundle, dummy = runc_exec_bundle(proc, runc_exec_pid, shim_pid, container_id)
        except ProcError:
            bundle = None
    config = _read_json(os.path.join(bundle, 'config.json')) if bundle else None
    pod = pod_from_mapping((config if isinstance(config, dict) else {}).get('annotations'))
    if pod['name'] is None and docker_roots is not None and container_id:
        cfg = docker_roots.config(container_id, runc_root(runc_exec_argv or []), proc.ns(runc_exec_pid, 'mnt'))
        if isinstance(cfg, dict) and isinstance(cfg.get('Config'), dict):
            labels = cfg['Config'].get('Labels')
            found = pod_from_mapping(labels)
            for k, v in found.items():
                if pod[k] is None:
                    pod[k] = v
    return pod


def find_shim(table, pid, is_shim=None, depth=3):
    """The nearest ancestor of PID that is a containerd shim (IS_SHIM(pid)
    decides; by default its comm), or None."""
    for a in table.ancestors(pid, depth):
        if is_shim(a) if is_shim else is_shim_comm(table.comm(a)):
            return a
    return None


def exec_candidates(table):
    """Processes that could be the blocked writer of a stuck exec, cheaply:
    [(pid, role)] with role 'runc_init' or 'runc_exec'.  Every runc:[2:INIT]
    anywhere (so near-misses outside a shim show up too); every runc-named
    child of a shim (runc exec) and its runc-named children (runc init before
    prctl).  The caller then checks the hard signals."""
    out = []
    seen = set()
    for pid in table.pids_with_comm(RUNC_INIT_COMMS):
        out.append((pid, 'runc_init'))
        seen.add(pid)
    for shim in sorted(p for p, st in table.stats.items() if st and is_shim_comm(st['comm'])):
        for child in table.children(shim):
            if not is_runc_comm(table.comm(child)):
                continue
            out.append((child, 'runc_exec'))
            for grandchild in table.children(child):
                if grandchild not in seen and is_runc_comm(table.comm(grandchild)):
                    out.append((grandchild, 'runc_init'))
                    seen.add(grandchild)
    return out


def shim_pids(table):
    return sorted(p for p, st in table.stats.items() if st and is_shim_comm(st['comm']))


def _cgroup_key(proc, pid, limit=16384):
    """/proc/PID/cgroup as one string (kernel text, bounded), or None."""
    return proc.read_small(pid, 'cgroup', limit)


def late_children(table, shim, min_after=100):
    """The children of SHIM started more than MIN_AFTER clock ticks (one second at the
    usual 100 Hz) or more after the oldest child in the same cgroup: exec
    processes of a container, not its init.  Under CRI one shim serves a pod
    and every container's init is its child, started after the sandbox's:
    grouping by cgroup keeps a pod of many containers from looking like a
    pile of execs.  Reads /proc/PID/cgroup of the shim's children only."""
    kids = [(table.get(c), c) for c in table.children(shim)]
    kids = sorted((st['starttime'], c) for st, c in kids if st)
    if len(kids) < 2:
        return []
    first = {}
    out = []
    for start, pid in kids:
        key = _cgroup_key(table.proc, pid)
        if key is None:
            continue
        if key not in first:
            first[key] = start
        elif start - first[key] > min_after:
            out.append(pid)
    return out
