# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The scan by shim (private module_utils): prove a node has no stuck exec
from its containerd shims' own pipes, in time that grows with the
containers, not with the processes.

Every stuck exec leaves a FULL pipe whose reader is a containerd shim.  The
shims are known from the runtime's state: each containerd listens on
``<address>`` and ``<address>.ttrpc`` (seen in the host's
``/proc/1/net/unix``), its listener pid (SO_PEERCRED) gives its argv and
config, hence its ``state`` folder; there, shim v1 bundles
(``io.containerd.runtime.v1.linux/<ns>/<id>``) hold ``shim.pid`` and shim v2
bundles (``io.containerd.runtime.v2.task/<ns>/<id>``, the CRI ``k8s.io``
namespace included) hold ``init.pid``, whose parent is the shim.  A pid read
from a bundle is never trusted alone: the process must have started before
the pid file was written (pid reuse), carry a shim's name and executable,
prove to be the host's (the proof of ``_runtime_tree.shim_identity``
against its containerd) and work in a bundle of that namespace whose ``address`` is the
same socket.

Each proven shim's pipes opened for reading are measured (queued bytes and
capacity, FIONREAD / F_GETPIPE_SZ on ``/proc/SHIM/fd/N``; nothing is ever
read out of them).  The node is proven clean when no shim holds a full pipe,
none holds bytes that do not move, and every live shim socket on the host
(``/run/containerd/s/<hash>``, and the abstract ``@/containerd-shim/...``
of older shims) belongs to a proven shim.  Anything else (a full pipe, a shim
whose state folder is unknown, a containerd that does not answer) sends the
caller to the full scan, which stays the reference.

Target-side code: Python 3.6+ syntax and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _deadline
from ansible_collections.hangdoctor.runtime.plugins.module_utils._procfs import (
    ProcError,
    Timeout,
    _bounded,
    pipe_capacity,
    pipe_inode_of,
    pipe_queued,
    read_regular_file,
    same_inode,
)
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _runtime_tree as tree

DEFAULT_STATE = '/run/containerd'
DEFAULT_CONFIG = '/etc/containerd/config.toml'
# (folder under the state, pid file, shim version): the pid file of shim v1 is
# the shim's own, shim v2's is the container's init (its parent is the shim)
LAYOUTS = (('io.containerd.runtime.v2.task', 'init.pid', 'v2'),
           ('io.containerd.runtime.v1.linux', 'shim.pid', 'v1'))
CONTAINERD_COMMS = ('containerd', 'docker-containe')
# containerd >= 1.3.9/1.4.3 puts every shim's socket (v1 and v2, whatever its
# state folder) at /run/containerd/s/<sha256>; older shims listen on an
# abstract @/containerd-shim/<ns>/<id>/shim.sock
SHIM_SOCKET_RE = re.compile(r'/s/[0-9a-f]{64}$')
LISTENING = 0x10000  # __SO_ACCEPTCON in /proc/net/unix's Flags
MAX_NET_UNIX_BYTES = 32 * 1024 * 1024
MAX_SMALL_FILE = 4096
MAX_CONFIG_BYTES = 1024 * 1024
# btime is whole seconds and a start time counts clock ticks since boot: a
# process that wrote its pid file can look up to this much younger than it
PID_FILE_SLACK = 2.0
# the whole shim pass (a connect per containerd, a few files per container,
# a few fds per shim) ends within this or hands over to the full scan
PASS_SECONDS = 5.0
CONNECT_SECONDS = 1.0


def pipe_is_full(queued, capacity):
    """A blocked writer leaves a little room per page slot when its writes do
    not fit the last page (Go prints the dump in small writes), so "full"
    allows a slack below one page, and never assumes 64 KiB."""
    if not capacity or queued is None or queued <= 0:
        return False
    return capacity - queued <= min(4095, max(capacity // 16, 0))


class ShimPass(object):
    """What one shim pass found: ``clean`` (True: no stuck exec can exist
    now), ``reason`` (why not clean: the full scan then decides), the
    proven ``shims`` {pid: info}, ``state_dirs``, ``processes`` (how many
    processes it read), ``unknown`` (live shim sockets no proven shim
    serves), ``full`` ([(shim pid, pipe inode)] full or not moving)."""

    def __init__(self):
        self.clean = False
        self.reason = None
        self.shims = {}
        self.state_dirs = []
        self.processes = 0
        self.refused = []
        self.unknown = []
        self.full = []

    def as_dict(self):
        return {'clean': self.clean, 'reason': self.reason, 'shims': len(self.shims),
                'state_dirs': list(self.state_dirs), 'refused': list(self.refused[:8])}


def _small(path):
    """The text of a small file a workload may touch, or None."""
    try:
        return read_regular_file(path, MAX_SMALL_FILE, None).decode('utf-8', 'replace').strip()
    except (ProcError, IOError, OSError):
        return None


def parse_net_unix(data, inodes=None):
    """[(inode, path)] of the listening sockets (flag ``__SO_ACCEPTCON``) in a
    ``/proc/net/unix`` table (DATA: bytes), only those whose inode is in
    INODES when given; abstract names start with ``@``; INODE is None where
    the field is not a number (such a line never matches INODES)."""
    out = []
    for line in data.decode('utf-8', 'replace').splitlines()[1:]:
        fields = line.split(None, 7)
        if len(fields) < 8:
            continue
        try:
            flags = int(fields[3], 16)
        except ValueError:
            continue
        if not flags & LISTENING:
            continue
        try:
            inode = int(fields[6])
        except ValueError:
            inode = None
        if inodes is None or inode in inodes:
            out.append((inode, fields[7].strip()))
    return out


def read_net_unix(proc, pid, timeout=None):
    """The first MAX_NET_UNIX_BYTES of PID's network namespace's unix socket
    table (bytes; TIMEOUT as ``read_regular_file``'s).  Raises ProcError."""
    return read_regular_file(proc.path(pid, 'net', 'unix'), MAX_NET_UNIX_BYTES, timeout, truncate=True)


def listening_unix(proc):
    """Paths of the listening unix sockets of the host's network namespace
    (``PROC/1/net/unix``; abstract names start with ``@``), or None when
    the table cannot be read."""
    try:
        data = read_net_unix(proc, 1)
    except (ProcError, IOError, OSError):
        return None
    return set(path for dummy, path in parse_net_unix(data))


def shim_sockets(listening):
    return set(p for p in listening if SHIM_SOCKET_RE.search(p) or (p.startswith('@') and 'containerd-shim' in p))


def containerd_addresses(listening):
    """containerd listens on its gRPC address and on ``<address>.ttrpc``."""
    return sorted(p for p in listening if not p.startswith('@') and p + '.ttrpc' in listening)


def _peer_pid(path):
    return _deadline.listener_pid(path, CONNECT_SECONDS, 'containerd')


def _view(proc, pid, path):
    """PATH as PID sees it, from here: itself when PID shares our root."""
    if proc.root == '/proc' and same_inode(proc.path(pid, 'root'), '/'):
        return path
    return proc.host_view(pid, path)


def _toml_state(text):
    """The top-level ``state`` of a containerd config (before any table)."""
    for line in text.splitlines():
        s = line.strip()
        if s.startswith('['):
            break
        m = re.match(r'''^state\s*=\s*["']([^"']+)["']''', s)
        if m:
            return m.group(1)
    return None


def state_dir(proc, pid, cmdline_timeout):
    """containerd PID's state folder in its own view: ``--state``, else its
    config's ``state``, else the default; None when its argv is unreadable."""
    try:
        argv = proc.cmdline(pid, cmdline_timeout)
    except ProcError:
        return None
    opts = tree._options(argv[1:])
    state = opts.get('--state')
    if isinstance(state, str) and state.startswith('/'):
        return state
    config = opts.get('--config', opts.get('-c'))
    config = config if isinstance(config, str) and config.startswith('/') else DEFAULT_CONFIG
    try:
        text = read_regular_file(_view(proc, pid, config), MAX_CONFIG_BYTES, None).decode('utf-8', 'replace')
    except (ProcError, IOError, OSError):
        text = ''
    state = _toml_state(text)
    return state if state and state.startswith('/') else DEFAULT_STATE


def _address(bundle):
    raw = _small(os.path.join(bundle, 'address'))
    if not raw:
        return None
    return raw[len('unix://'):] if raw.startswith('unix://') else raw


def _pid_file(path):
    """(pid, mtime) of a bundle's pid file, or (None, None)."""
    text = _small(path)
    try:
        pid = int(text)
        mtime = os.lstat(path).st_mtime
    except (TypeError, ValueError, OSError):
        return None, None
    return (pid, mtime) if pid > 1 else (None, None)


def _started_by(proc, pid, when):
    """stat of PID when it started no later than WHEN (epoch seconds), else
    None (gone, or a later process that reused the pid)."""
    try:
        st = proc.stat(pid)
    except ProcError:
        return None
    if proc.start_epoch(st['starttime']) > when + PID_FILE_SLACK:
        return None
    return st


def _bundle_shim(proc, bundle, layout):
    """(stat of the shim a bundle names, why not) from its pid file."""
    pidfile, version = layout[1], layout[2]
    pid, mtime = _pid_file(os.path.join(bundle, pidfile))
    if pid is None:
        return None, 'no %s' % pidfile
    st = _started_by(proc, pid, mtime)
    if st is None:
        return None, '%s names a process that is gone or started later' % pidfile
    if version == 'v2':
        init = st
        st = _started_by(proc, init['ppid'], proc.start_epoch(init['starttime']))
        if st is None:
            return None, 'the parent of init.pid is gone or younger than it'
        pid = init['ppid']
    if not tree.is_shim_comm(st['comm']):
        return None, 'process %d named by %s is %s, not a shim' % (pid, pidfile, st['comm'])
    st = dict(st)
    st['pid'] = pid
    return st, None


class _Containerd(object):
    """What every shim of one containerd is proven against, read once: its
    mount and pid namespaces, its owner, its view of the files (the
    executables shims name, their bundles)."""

    def __init__(self, proc, pid):
        self.proc = proc
        self.pid = pid
        self.ns = dict((kind, proc.ns(pid, kind)) for kind in ('mnt', 'pid'))
        try:
            self.uid = os.stat(proc.path(pid)).st_uid
        except OSError:
            self.uid = None
        self.ours = proc.root == '/proc' and same_inode(proc.path(pid, 'root'), '/')
        self._files = {}

    def view(self, path):
        return path if self.ours else self.proc.host_view(self.pid, path)

    def file(self, path):
        """(st_dev, st_ino) of PATH in containerd's view, or None."""
        if path not in self._files:
            try:
                st = os.stat(self.view(path))
                self._files[path] = (st.st_dev, st.st_ino)
            except OSError:
                self._files[path] = None
        return self._files[path]


def _ident(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _prove(ref, st, bundle, address):
    """Reasons why the process ST (named by BUNDLE) is not a shim of the
    containerd REF serving ADDRESS ([] when it is).  The proof of
    ``_runtime_tree.shim_identity`` (REF's mount and pid namespaces, its
    owner, an executable and a working directory that are REF's files of
    those names), read with one cached view of REF: the shim's working
    directory is BUNDLE itself, or (one v2 shim per CRI pod) a bundle next
    to it that serves the same socket."""
    proc, pid = ref.proc, st['pid']
    base = '%s/%d/' % (proc.root, pid)
    for kind in ('mnt', 'pid'):
        try:
            mine = os.readlink(base + 'ns/' + kind)
        except OSError:
            mine = None
        if mine is not None and ref.ns[kind] is not None and mine != ref.ns[kind]:
            return ['in another %s namespace than its containerd' % kind]
    try:
        exe = os.readlink(base + 'exe')
    except OSError:
        return ['executable unreadable']
    if 'shim' not in os.path.basename(exe.replace(' (deleted)', '')):
        return ['executable %s is not a containerd shim' % exe[:200]]
    if not exe.endswith(' (deleted)'):
        # a binary upgraded while the shim runs shows "(deleted)": no proof either way
        if not exe.startswith('/') or _ident(base + 'exe') != ref.file(exe):
            return ['executable %s is not the host file of that name' % exe[:200]]
    try:
        uid = os.stat(base[:-1]).st_uid
    except OSError:
        return ['gone']
    if ref.uid is not None and uid != ref.uid:
        return ['runs as uid %d, its containerd as uid %d' % (uid, ref.uid)]
    cwd = _ident(base + 'cwd')
    if cwd is None:
        return ['working directory unreadable']
    if cwd == _ident(bundle):
        return []
    try:
        here = ref.view(os.readlink(base + 'cwd'))
    except OSError:
        return ['working directory unreadable']
    ns_dir = os.path.dirname(bundle)
    if _ident(here) != cwd:
        return ['working directory %s is not the host directory of that name' % here[:200]]
    if os.path.dirname(here) != ns_dir and _ident(os.path.dirname(here)) != _ident(ns_dir):
        return ['working directory %s is not a bundle of this namespace' % here[:200]]
    if _address(here) != address:
        return ['its bundle serves another socket']
    return []


def _walk_state(proc, ref, state, out, accounted):
    """Prove the shims of every bundle under STATE (containerd REF's view)."""
    base = ref.view(state)
    out.state_dirs.append(state)
    for layout in LAYOUTS:
        try:
            namespaces = sorted(os.listdir(os.path.join(base, layout[0])))
        except OSError:
            continue
        for ns in namespaces:
            ns_dir = os.path.join(base, layout[0], ns)
            try:
                ids = sorted(os.listdir(ns_dir))
            except OSError:
                continue
            for cid in ids:
                bundle = ns_dir + '/' + cid
                address = _address(bundle)
                if not address or address in accounted:
                    continue  # under CRI one shim serves a pod's bundles
                st, why = _bundle_shim(proc, bundle, layout)
                out.processes += 1 if layout[2] == 'v1' else 2
                if st is None:
                    out.refused.append({'bundle': bundle, 'reason': why})
                    continue
                reasons = _prove(ref, st, bundle=bundle, address=address)
                if reasons:
                    out.refused.append({'bundle': bundle, 'pid': st['pid'], 'reason': '; '.join(reasons)})
                    continue
                accounted[address] = st['pid']
                out.shims[st['pid']] = {'pid': st['pid'], 'start_time': st['starttime'], 'version': layout[2],
                                        'namespace': ns, 'bundle': bundle}


def shim_pipes(proc, pid):
    """[(fd, inode, queued, capacity)] of the pipes shim PID holds open for
    reading (the mode of a ``/proc/PID/fd`` link is the fd's: ``lr-x``).
    CAPACITY is None for an empty pipe: empty is neither full nor filling,
    and most of a healthy node's pipes are empty."""
    out = []
    base = '%s/%d/fd/' % (proc.root, pid)
    try:
        names = os.listdir(base)
    except OSError:
        return None
    for n in names:
        try:
            link = os.readlink(base + n)
            if not link.startswith('pipe:[') or not os.lstat(base + n).st_mode & 0o400:
                continue
        except OSError:
            continue
        inode = pipe_inode_of(link)
        try:
            f = proc.open_fd(pid, n, inode)
        except (ProcError, IOError, OSError):
            continue
        try:
            queued = pipe_queued(f)
            capacity = pipe_capacity(f) if queued else None
        except (IOError, OSError):
            continue
        finally:
            os.close(f)
        out.append((int(n), inode, queued, capacity))
    return out


def _check_pipes(proc, out):
    """The reason a proven shim's pipe needs the diagnosis, or None; every
    such pipe goes to ``out.full``."""
    waiting = []
    reasons = []
    for pid in sorted(out.shims):
        pipes = shim_pipes(proc, pid)
        if pipes is None:
            reasons.append('the fds of shim %d are unreadable' % pid)
            continue
        for fd, inode, queued, capacity in pipes:
            if pipe_is_full(queued, capacity):
                out.full.append((pid, inode))
                reasons.append('shim %d holds a full pipe (pipe:[%d], %s of %s bytes)' % (pid, inode, queued, capacity))
            elif queued:
                waiting.append((pid, fd, inode, queued))
    # a pipe filling without progress: bytes still there, unchanged, once
    # every other shim was looked at
    for pid, fd, inode, queued in waiting:
        try:
            again = proc.pipe_fill(pid, fd, inode)[0]
        except (ProcError, IOError, OSError):
            continue
        if again == queued:
            out.full.append((pid, inode))
            reasons.append('shim %d holds %d bytes in pipe:[%d] that do not move' % (pid, queued, inode))
    if not reasons:
        return None
    return reasons[0] + ('' if len(reasons) == 1 else ' (and %d more)' % (len(reasons) - 1))


def _pass(proc, cmdline_timeout):
    out = ShimPass()
    listening = listening_unix(proc)
    if listening is None:
        out.reason = 'the host\'s unix socket table (%s) is unreadable' % proc.path(1, 'net', 'unix')
        return out
    accounted = {}
    daemons = 0
    for address in containerd_addresses(listening):
        pid = _peer_pid(address if proc.root == '/proc' else proc.host_view(1, address))
        try:
            comm = proc.stat(pid)['comm'] if pid else None
        except ProcError:
            comm = None
        if comm not in CONTAINERD_COMMS:
            continue  # no answer, or not containerd: its shims stay unknown
        state = state_dir(proc, pid, cmdline_timeout)
        if state is None:
            continue
        daemons += 1
        _walk_state(proc, _Containerd(proc, pid), state, out=out, accounted=accounted)
    unknown = out.unknown = sorted(shim_sockets(listening) - set(accounted))
    if not daemons:
        out.reason = 'no containerd state folder known'
        return out
    if unknown:
        out.reason = '%d live shim socket(s) without a shim proven from a known state folder (%s)' % (
            len(unknown), unknown[0][:120])
        return out
    out.reason = _check_pipes(proc, out)
    out.clean = out.reason is None
    return out


def check(proc, cmdline_timeout=1.0, timeout=PASS_SECONDS):
    """One shim pass over PROC (a ``_procfs.Proc``): a ShimPass.  Never
    raises for what it finds: anything it cannot prove leaves ``clean``
    False with the reason."""
    try:
        return _bounded(lambda: _pass(proc, cmdline_timeout), timeout, 'the shim pass')
    except Timeout as e:
        out = ShimPass()
        out.reason = str(e)
        return out
    except (ProcError, IOError, OSError) as e:
        out = ShimPass()
        out.reason = 'the shim pass failed: %s' % e
        return out
