# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Is a running shim alive? One bounded, read-only call to its own task API
(private module_utils), for the triage of a candidate container only.

A shim can be running (its leader in state S, its threads in futex or
epoll) and still never answer a task call: a Go deadlock in the shim
(containerd#2438, #2709, #3529, #7561, #10058).  Its process state does not
show it; one call to the ttrpc socket it listens on does.

The socket is the shim's own: a listening unix socket of the shim's network
namespace (``/proc/PID/net/unix``, flag ``__SO_ACCEPTCON``) whose inode is
one of the shim's open fds, so only this shim can accept on it.  For a v2
shim it must also be the socket its bundle's ``address`` file names.  The
answer carries the pid of the shim that answered, which must be this one.

The call changes nothing (checked against containerd's shim sources):

- shim v2 (``containerd-shim-runc-v2``, also runc-v1): ``containerd.task.v2.Task/Connect``
  with the container id; it answers the shim's and the task's pid, takes
  no lock a runtime call holds (an exec stuck behind a full pipe does not
  delay it, unlike ``Pids`` / ``ctr task ps``) and runs no ``runc``;
  a shim that serves only the v3 API answers ``Unimplemented`` at once and
  is asked ``containerd.task.v3.Task/Connect`` within the same deadline;
- shim v1 (``containerd-shim``): ``containerd.runtime.linux.shim.v1.Shim/ShimInfo``
  (no argument; it answers the shim's pid).

Framing (ttrpc): a 10-byte header (length, stream id: 4 bytes each, big
endian; type, flags: 1 byte each) and a protobuf Request{service, method,
payload, timeout_nano}; the client is ``_cri.ttrpc_call``.

Target-side code: Python 3.6+ syntax and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import time

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _cri
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _shim_scan
from ansible_collections.hangdoctor.runtime.plugins.module_utils._procfs import ProcError, read_regular_file

V2_SERVICE = _cri.TASK_SERVICE
V3_SERVICE = _cri.TASK_SERVICE_V3
V1_SERVICE = 'containerd.runtime.linux.shim.v1.Shim'
MAX_FDS = 4096
MAX_ADDRESS_BYTES = 4096
MAX_THREADS = 64
READ_TIMEOUT = 1.0


def _socket_inodes(proc, pid):
    """Inodes of the sockets PID holds open (at most MAX_FDS fds looked at)."""
    out = set()
    try:
        names = os.listdir(proc.path(pid, 'fd'))
    except OSError as e:
        raise ProcError('%s: %s' % (proc.path(pid, 'fd'), e.strerror or e))
    for name in names[:MAX_FDS]:
        try:
            link = os.readlink(proc.path(pid, 'fd', name))
        except OSError:
            continue
        if link.startswith('socket:[') and link.endswith(']'):
            try:
                out.add(int(link[8:-1]))
            except ValueError:
                pass
    return out


def listeners(proc, pid):
    """{inode: path} of the unix sockets PID listens on: listening sockets of
    its network namespace's table whose inode is one of its fds."""
    inodes = _socket_inodes(proc, pid)
    if not inodes:
        return {}
    return dict(_shim_scan.parse_net_unix(_shim_scan.read_net_unix(proc, pid, READ_TIMEOUT), inodes))


def _address_file(proc, pid):
    """The socket path the bundle's ``address`` file names (v2; the bundle is
    the shim's working directory), or None when there is none."""
    cwd = proc.cwd(pid)
    if not cwd or not cwd.startswith('/'):
        return None
    try:
        raw = read_regular_file(proc.host_view(pid, cwd.rstrip('/') + '/address'), MAX_ADDRESS_BYTES, READ_TIMEOUT)
    except ProcError:
        return None
    text = raw.decode('utf-8', 'replace').strip()
    if text.startswith('unix://'):
        text = text[len('unix://'):]
    return text or None


def shim_socket(proc, pid, version):
    """(path, how) of the task API socket of shim PID (VERSION 'v1' or 'v2'):
    a socket it listens on; for v2 the one its bundle's address file names.
    Raises ProbeError when none can be proven."""
    try:
        found = listeners(proc, pid)
    except ProcError as e:
        raise ProbeError('cannot read the sockets of shim %d: %s' % (pid, e))
    paths = sorted(set(found.values()))
    if not paths:
        raise ProbeError('shim %d listens on no unix socket' % pid)
    address = _address_file(proc, pid) if version != 'v1' else None
    if address:
        # the address file may name an abstract socket as a path (containerd 1.2-1.4)
        for cand in (address, '@' + address):
            if cand in paths:
                return cand, "named by the bundle's address file, listened on by the shim"
        raise ProbeError("the bundle's address file names %s, which shim %d does not listen on (it listens on %s)"
                         % (address, pid, ', '.join(paths[:4])))
    if len(paths) == 1:
        return paths[0], 'the only unix socket the shim listens on'
    named = [p for p in paths if _cri_like(p)]
    if len(named) == 1:
        return named[0], 'the shim socket among the unix sockets the shim listens on'
    raise ProbeError('shim %d listens on several unix sockets (%s): none proven to be its task API'
                     % (pid, ', '.join(paths[:4])))


def _cri_like(path):
    base = path.rstrip('/').rsplit('/', 1)[-1]
    return ('/s/' in path and len(base) == 64) or 'containerd-shim' in path


def _dial(proc, pid, path):
    """Where to connect from here: an abstract name as is (abstract sockets
    belong to the network namespace: ours must be the shim's), a path as
    the shim sees it."""
    if path.startswith('@'):
        return '\0' + path[1:]
    return _shim_scan._view(proc, pid, path)


class ProbeError(_cri.CriError):
    """The shim's socket cannot be proven, so it is not asked."""


def _answer_pid(payload):
    for num, wt, val in _cri.parse_fields(payload):
        if num == 1 and wt == 0:
            return val
    return None


def _own_pid(proc, pid):
    """PID as the shim itself counts it (the last NSpid), for comparing with
    the pid it answers."""
    try:
        nspid = proc.status(pid).get('NSpid')
    except ProcError:
        nspid = None
    return nspid[-1] if nspid else pid


def threads(proc, pid, name_of=None, limit=MAX_THREADS):
    """[{tid, state, wchan, syscall}] of PID's threads, the leader first
    (NAME_OF: system call number -> name, or None)."""
    out = []
    try:
        tids = proc.tasks(pid)
    except ProcError:
        return out
    for tid in tids[:limit]:
        row = {'tid': tid, 'state': None, 'wchan': None, 'syscall': None}
        try:
            row['state'] = proc.task_stat(pid, tid)['state']
            row['wchan'] = proc.task_wchan(pid, tid) or None
            sc = proc.task_syscall(pid, tid)
            if sc['running']:
                row['syscall'] = 'running'
            elif sc['nr'] is not None and sc['nr'] >= 0:
                row['syscall'] = (name_of(sc['nr']) if name_of else None) or str(sc['nr'])
        except ProcError:
            pass
        out.append(row)
    return out


def probe(proc, pid, version, container_id, timeout, name_of=None):
    """Ask shim PID (VERSION 'v1' or 'v2') one read-only task call under a
    TIMEOUT-second deadline.  {'answered': True (a ttrpc answer from this
    shim, an error status included) | False (no answer by the deadline, a
    full listen backlog included) | None (cannot tell: no socket proven, no
    connection, reset, not ttrpc, another pid answered), 'socket', 'how',
    'request', 'timeout', 'elapsed_ms', 'error', 'answer_pid', 'threads'
    (each thread's state, wchan and system call; only when it did not
    answer)}."""
    out = {'answered': None, 'socket': None, 'how': None, 'request': None, 'timeout': float(timeout),
           'elapsed_ms': None, 'error': None, 'answer_pid': None, 'threads': None}
    try:
        path, how = shim_socket(proc, pid, version)
    except ProbeError as e:
        out['error'] = str(e)
        return out
    out['socket'], out['how'] = path, how
    dial = _dial(proc, pid, path)
    method = 'ShimInfo' if version == 'v1' else 'Connect'
    asked = []
    t0 = time.monotonic()
    answer = None
    try:
        if version == 'v1':
            asked.append(V1_SERVICE)
            answer = _cri.ttrpc_call(path, method, b'', timeout, service=V1_SERVICE, dial=dial)
        else:
            # the v2 task service, then v3 when the shim does not know v2
            answer = _cri.task_call(path, method, container_id or '', timeout, dial=dial, asked=asked)
        out['answered'] = True
    except _cri.ShimTimeout as e:
        out['answered'] = False
        out['error'] = str(e)
    except _cri.ShimStatus as e:
        out['answered'] = True
        out['error'] = str(e)
    except _cri.CriError as e:
        out['error'] = str(e)
    out['elapsed_ms'] = int(round((time.monotonic() - t0) * 1000))
    out['request'] = '%s/%s' % (asked[-1], method)
    if answer is not None:
        try:
            out['answer_pid'] = _answer_pid(answer)
        except _cri.CriError as e:
            out['answered'], out['error'] = None, 'not a %s answer: %s' % (method, e)
        if out['answer_pid'] is not None and out['answer_pid'] != _own_pid(proc, pid):
            out['answered'] = None
            out['error'] = 'the socket was answered by pid %s, not by shim %d' % (out['answer_pid'], pid)
    if out['answered'] is False:
        out['threads'] = threads(proc, pid, name_of)
    return out
