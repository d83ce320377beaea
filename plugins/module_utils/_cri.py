# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""containerd (CRI) nodes: which containers' shims no longer answer (private module_utils).

Measured on containerd 1.6 with a pod whose exec is stuck behind a full
stderr pipe (tests/integration/harness/cri, docs/cri.md): ``ctr task ps``
of that container never answers (the shim's Pids waits on the stuck exec's
pid), and once one call to the pod's shim is pending, ``task ps`` /
``task metrics`` of every container of the pod stop answering too (the CRI
stats path, and kubelet's ExecSync of the pod's other containers);
``task ls``, ``containers info`` and the CRI ContainerStatus/ListContainers
calls answer at once, so they prove nothing.

So each container is probed with the shim call behind ``ctr task ps``
(``containerd.task.v2.Task/Pids``), sent straight to the pod shim's ttrpc
socket by a small stdlib client, each call under a hard deadline on the
monotonic clock.  Why not drive ``ctr``: one process per container costs
about 20 ms of CPU (measured), so 200 containers need seconds of CPU before
the last hung one even starts its deadline; a socket call costs well under a
millisecond.  ``ctr`` is used once, for the daemon's version, and only when
it is installed.

The tasks, their shim addresses and their pods come from the shims'
bundles (``<state>/io.containerd.runtime.v2.task/<namespace>/<id>/``:
``address`` and the ``config.json`` annotations containerd's CRI plugin
writes, ``io.kubernetes.cri.sandbox-namespace`` and friends).  The state
folder is found from the running shims themselves (their working directory is
their bundle), so a containerd with a non-default ``state`` works too.  The
bundle is written by containerd, not by the workload; it is still read
bounded and without following symlinks.

Target-side code: Python 3.6+ syntax and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import json
import os
import socket
import struct
import threading
import time

from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import HangdoctorError
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _defaults
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _deadline
from ansible_collections.hangdoctor.runtime.plugins.module_utils._addresses import (
    containerd_socket_path as socket_path,
    socket_missing,
)
from ansible_collections.hangdoctor.runtime.plugins.module_utils._procfs import (
    Proc,
    ProcError,
    read_regular_file,
    same_inode,
)
from ansible_collections.hangdoctor.runtime.plugins.module_utils._runtime_tree import (
    is_runc_comm,
    is_shim_comm,
    pod_from_mapping,
    shim_identity,
    shim_info,
)

DEFAULT_CONTAINERD_ADDRESS = _defaults.DEFAULT_CONTAINERD_ADDRESS
DEFAULT_NAMESPACE = _defaults.DEFAULT_CONTAINERD_NAMESPACE
DEFAULT_STATE = '/run/containerd'
TASK_DIR = 'io.containerd.runtime.v2.task'
TASK_SERVICE = 'containerd.task.v2.Task'
# containerd 2.x shims may serve only the v3 task API (same Pids messages).
TASK_SERVICE_V3 = 'containerd.task.v3.Task'
GRPC_UNIMPLEMENTED = 12
MAX_CONFIG_BYTES = 4 * 1024 * 1024
MAX_ADDRESS_BYTES = 4096
# ttrpc: a 10-byte header (length, stream id, type, flags), then a protobuf message.
TTRPC_HEADER = struct.Struct('>IIBB')
TTRPC_REQUEST = 1
TTRPC_RESPONSE = 2
MAX_TTRPC_MESSAGE = 4 << 20
# containers of one pod probed at the same moment; a pod has a handful
MAX_PER_SHIM = 64
# shims asked at the same moment (a thread each, and one per container)
MAX_SHIMS_AT_ONCE = 64
# bundle files live on the node's own disk (tmpfs): a stuck read is not theirs;
# one deadline for the whole walk of the bundles
WALK_TIMEOUT = 2.0
# processes refused as shims, kept in the result to say why
MAX_REFUSED = 10
# connecting to containerd's socket to learn its pid: it accepts at once when healthy
LISTENER_TIMEOUT = 1.0
CONTAINER_TYPE_KEY = 'io.kubernetes.cri.container-type'
SANDBOX_ID_KEY = 'io.kubernetes.cri.sandbox-id'


class CriError(HangdoctorError):
    """containerd or a shim did not give a usable answer."""


class ShimTimeout(CriError):
    pass


class ShimStatus(CriError):
    """The shim answered with an error status (``code``: a gRPC status code)."""

    def __init__(self, msg, code):
        super(ShimStatus, self).__init__(msg)
        self.code = code


class ShimUnreachable(CriError):
    """No connection was made: nothing listens there, or the address is not one we can dial."""


class ShimProtocol(CriError):
    """A connection was made but what came back is not a ttrpc answer: no proof the shim answered."""


# ---- a minimal protobuf + ttrpc client ------------------------------------

def _varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field_bytes(num, data):
    if not isinstance(data, bytes):
        data = data.encode('utf-8')
    return _varint((num << 3) | 2) + _varint(len(data)) + data


def _field_varint(num, value):
    return _varint(num << 3) + _varint(value)


def _read_varint(buf, i):
    shift = 0
    result = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise CriError('malformed protobuf varint')
        b = buf[i]
        i += 1
        result |= (b & 0x7f) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def parse_fields(buf):
    """[(field number, wire type, value)] of one protobuf message (varint and
    length-delimited values; fixed32/64 are skipped)."""
    out = []
    i = 0
    buf = bytes(buf)
    while i < len(buf):
        key, i = _read_varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, i = _read_varint(buf, i)
        elif wt == 2:
            n, i = _read_varint(buf, i)
            if i + n > len(buf):
                raise CriError('malformed protobuf: field %d overruns the message' % num)
            val = buf[i:i + n]
            i += n
        elif wt == 1:
            val, i = buf[i:i + 8], i + 8
        elif wt == 5:
            val, i = buf[i:i + 4], i + 4
        else:
            raise CriError('malformed protobuf: wire type %d' % wt)
        out.append((num, wt, val))
    return out


def encode_request(service, method, payload, timeout_nano):
    """ttrpc's Request{service=1, method=2, payload=3, timeout_nano=4}."""
    return (_field_bytes(1, service) + _field_bytes(2, method) + _field_bytes(3, payload)
            + _field_varint(4, max(0, int(timeout_nano))))


def decode_response(data):
    """(status code, status message, payload) of a ttrpc Response{status=1, payload=2}."""
    code, msg, payload = 0, '', b''
    for num, wt, val in parse_fields(data):
        if num == 1 and wt == 2:
            for n2, w2, v2 in parse_fields(val):
                if n2 == 1 and w2 == 0:
                    code = v2
                elif n2 == 2 and w2 == 2:
                    msg = v2.decode('utf-8', 'replace')
        elif num == 2 and wt == 2:
            payload = val
    return code, msg, payload


def shim_socket_path(address):
    """The filesystem or abstract socket of a shim ``address`` file's content;
    ShimUnreachable for an address we cannot dial (no connection is made)."""
    address = address.strip()
    if address.startswith('unix://'):
        address = address[len('unix://'):]
    if address.startswith('@'):
        return '\0' + address[1:]
    if not address.startswith('/') and not address.startswith('\0'):
        raise ShimUnreachable('unsupported shim address %r: no connection made' % address[:200])
    return address


def _remaining(deadline, what):
    left = deadline - time.monotonic()
    if left <= 0:
        raise ShimTimeout('%s did not answer in time' % what)
    return left


def ttrpc_call(address, method, payload, timeout, service=TASK_SERVICE, dial=None):
    """One unary ttrpc call on its own connection; the whole call (connect,
    send, every read) ends by TIMEOUT seconds from now.  DIAL is the socket
    path to connect to when it differs from ADDRESS's (the host's shim socket
    seen through ``/proc/PID/root`` from a pod).  Returns the response
    payload.  Raises ShimTimeout (no answer by the deadline, a full listen
    backlog included), ShimStatus (the shim answered with an error status),
    ShimUnreachable (no connection made, or it was closed or reset before an
    answer) or ShimProtocol (what came back is not a ttrpc answer)."""
    deadline = time.monotonic() + float(timeout)
    what = '%s/%s' % (service, method)
    sock = _connect(dial or shim_socket_path(address), deadline, what, timeout)
    try:
        body = encode_request(service, method, payload, int(float(timeout) * 1e9))
        sock.settimeout(_remaining(deadline, what))
        try:
            sock.sendall(TTRPC_HEADER.pack(len(body), 1, TTRPC_REQUEST, 0) + body)
            while True:
                header = _recv_exact(sock, TTRPC_HEADER.size, deadline, what)
                length, stream, mtype, dummy = TTRPC_HEADER.unpack(header)
                if length > MAX_TTRPC_MESSAGE:
                    raise ShimProtocol('%s: not a ttrpc answer (a frame of %d bytes announced, header %r)'
                                       % (what, length, header))
                data = _recv_exact(sock, length, deadline, what)
                if stream == 1 and mtype == TTRPC_RESPONSE:
                    break
        except socket.timeout:
            raise ShimTimeout('%s did not answer within %.1fs' % (what, timeout))
        except (IOError, OSError) as e:
            raise ShimUnreachable('%s: %s' % (what, e))
        try:
            code, msg, payload = decode_response(data)
        except ShimProtocol:
            raise
        except CriError as e:
            raise ShimProtocol('%s: not a ttrpc answer: %s' % (what, e))
        if code:
            raise ShimStatus('%s: status %d: %s' % (what, code, msg[:500]), code)
        return payload
    finally:
        sock.close()


def _connect(path, deadline, what, timeout):
    """A connected socket to PATH.  containerd 1.2-1.4 shims listen on
    abstract sockets whose address file reads like a path
    (``unix:///containerd-shim/<ns>/<id>/shim.sock``): when no such file
    exists, the abstract name is tried too."""
    candidates = [path]
    if path.startswith('/') and not os.path.exists(path):
        candidates.append('\0' + path)
    err = None
    for cand in candidates:
        try:
            return _deadline.connect_unix(cand, deadline, what)
        except _deadline.BacklogFull as e:
            # the shim is there and does not accept: it is not answering
            raise ShimTimeout(str(e))
        except _deadline.DeadlineExceeded:
            raise ShimTimeout('%s: connect did not finish within %.1fs' % (what, timeout))
        except (IOError, OSError) as e:
            # the path's own error says more than the abstract fallback's
            err = err or e
    raise ShimUnreachable('%s: cannot connect to %s: %s (%s)' % (
        what, path.replace('\0', '@'), os.strerror(err.errno) if err.errno else err,
        errno.errorcode.get(err.errno, err.errno)))


def _recv_exact(sock, n, deadline, what):
    buf = bytearray()
    while len(buf) < n:
        sock.settimeout(_remaining(deadline, what))
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ShimUnreachable('%s: the shim closed the connection' % what)
        buf += chunk
    return bytes(buf)


def task_call(address, method, container_id, timeout, dial=None, asked=None):
    """The answer of the shim's task METHOD for CONTAINER_ID (its request's
    field 1), asked of the v2 task service and, when the shim does not know
    it, of the v3 one, both within TIMEOUT.  ASKED, a list when given, gets
    each service as it is asked (its last one is the service that answered,
    or that failed)."""
    deadline = time.monotonic() + float(timeout)
    asked = [] if asked is None else asked
    asked.append(TASK_SERVICE)
    try:
        return ttrpc_call(address, method, _field_bytes(1, container_id), timeout, dial=dial)
    except ShimStatus as e:
        if e.code != GRPC_UNIMPLEMENTED:
            raise
    # an unknown service is answered at once, stuck or not: ask the v3 API
    asked.append(TASK_SERVICE_V3)
    return ttrpc_call(address, method, _field_bytes(1, container_id),
                      max(0.001, deadline - time.monotonic()), service=TASK_SERVICE_V3, dial=dial)


def task_pids(address, container_id, timeout, dial=None):
    """The pids of CONTAINER_ID's task, from its shim (what ``ctr task ps`` asks)."""
    payload = task_call(address, 'Pids', container_id, timeout, dial=dial)
    pids = []
    try:
        for num, wt, val in parse_fields(payload):
            if num == 1 and wt == 2:
                for n2, w2, v2 in parse_fields(val):
                    if n2 == 1 and w2 == 0:
                        pids.append(v2)
    except CriError as e:
        raise ShimProtocol('Pids: not a ttrpc answer: %s' % e)
    return pids


def task_connect(address, container_id, timeout, dial=None):
    """The shim's pid from its Connect call for CONTAINER_ID.  Served from the
    shim's memory (its container table and the task's init pid, under the
    same locks as every task call) without the ``runc ps`` that Pids runs
    (about 8 ms of CPU per call)."""
    payload = task_call(address, 'Connect', container_id, timeout, dial=dial)
    try:
        fields = parse_fields(payload)
    except CriError as e:
        raise ShimProtocol('Connect: not a ttrpc answer: %s' % e)
    for num, wt, val in fields:
        if num == 1 and wt == 0:
            return val
    return None


# containerd.v1.types.task.Status, as the shim's State answers it (what `ctr task ls` shows)
TASK_STATUS = {0: 'unknown', 1: 'created', 2: 'running', 3: 'stopped', 4: 'paused', 5: 'pausing'}


def task_state(address, container_id, timeout, dial=None):
    """The status of CONTAINER_ID's task as its shim keeps it ('running',
    'paused', ...: what containerd reports, `ctr task ls`).  A cgroup frozen
    behind containerd's back still says 'running'; a `ctr task pause` says
    'paused'.  The shim answers State from its own bookkeeping, without
    asking runc.  Raises CriError (ShimTimeout when it does not answer)."""
    payload = task_call(address, 'State', container_id, timeout, dial=dial)
    status = 0
    try:
        for num, wt, val in parse_fields(payload):
            if num == 4 and wt == 0:
                status = val
    except CriError as e:
        raise ShimProtocol('State: not a ttrpc answer: %s' % e)
    return TASK_STATUS.get(status, 'unknown')


def task_answers(task, timeout):
    """Does the shim of TASK (a list_tasks entry) answer its task pids within
    TIMEOUT?  (True, why) when it answered, an error status included (a task
    gone since the listing); (False, why) when it did not answer by the
    deadline (a full listen backlog included); (None, why) when it cannot
    tell: no connection was made, it was closed or reset, or what came back
    is not ttrpc."""
    try:
        task_pids(task['shim_address'], task['id'], timeout, dial=task.get('dial'))
    except ShimTimeout as e:
        return False, 'the shim of %s did not answer task pids within %ss: %s' % (task['id'][:12], timeout, e)
    except ShimStatus as e:
        return True, 'the shim answered: %s' % e
    except CriError as e:
        return None, 'no answer from the shim of %s: %s' % (task['id'][:12], e)
    return True, 'the containerd shim answered task pids'


# ---- tasks from the shims' bundles ------------------------------------------

def _read_bundle_file(path, limit):
    """Bytes of PATH through the one bounded reader for files a workload may
    touch (regular file only, no symlink, size bound; the walk that calls it
    has the time bound); None when absent or refused."""
    try:
        return read_regular_file(path, limit, None)
    except ProcError:
        return None


def task_roots(address, namespace, proc_root='/proc', cmdline_timeout=1.0, containerd_pid=None):
    """Folders holding the v2 task bundles of containerd at ADDRESS in NAMESPACE,
    found from the working directory of its running shims (their bundle), then
    the default state folder."""
    return scan_shims(address, namespace, proc_root, cmdline_timeout, containerd_pid=containerd_pid)['roots']


def _host_view(proc, pid, path):
    """PATH as process PID sees it, in this process's view: itself when PID
    shares our root, else through ``/proc/PID/root`` (this module in a pod,
    the host's /proc at PROC_ROOT)."""
    root = proc.path(pid, 'root')
    if proc.root == '/proc' and same_inode(root, '/'):
        return path
    return proc.host_view(pid, path)


def process_table(proc):
    """{pid: (ppid, comm)} of every process under PROC's root, from
    ``/proc/PID/stat`` alone (never blocks), read raw: the shims and their
    children are all this module needs of the process table, and on a node of
    a thousand containers the table is thousands of processes."""
    out = {}
    flags = os.O_RDONLY | getattr(os, 'O_CLOEXEC', 0)
    try:
        names = os.listdir(proc.root)
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        try:
            fd = os.open(os.path.join(proc.root, name, 'stat'), flags)
            try:
                data = os.read(fd, 4096)
            finally:
                os.close(fd)
        except OSError:
            continue  # exited while we listed
        i, j = data.find(b'('), data.rfind(b')')
        rest = data[j + 2:].split(b' ', 2) if 0 <= i < j else []
        if len(rest) < 2 or not rest[1].isdigit():
            continue
        out[int(name)] = (int(rest[1]), data[i + 1:j].decode('utf-8', 'replace'))
    return out


def scan_shims(address, namespace, proc_root='/proc', cmdline_timeout=1.0, containerd_pid=None):
    """The v2 shims of the containerd at ADDRESS in NAMESPACE:
    {'roots': task folders (see task_roots), 'busy': bundles of the shims
    that have a runc child now (an exec or another runtime call in flight),
    'children': {bundle: the pids of that shim's children},
    'dial': {task folder: the prefix that turns a host path into ours},
    'shims': pids of the shims proven to be that containerd's,
    'refused': [{'pid', 'reasons'}] of processes that call themselves its
    shims and are not}.

    A shim is that containerd's when its ``-address``, seen through the
    shim's own root, is the socket at ADDRESS (the same file, compared by
    inode: from a pod, ADDRESS is the pod's path of the host's socket), and
    when it proves to be the host's (:func:`shim_identity` against
    CONTAINERD_PID, the process that listens on ADDRESS).  Only the order
    of the probes uses 'busy': those shims are asked first."""
    sock = socket_path(address)
    proc = Proc(proc_root)
    table = process_table(proc)
    kids = {}
    for pid, (ppid, dummy) in table.items():
        kids.setdefault(ppid, []).append(pid)
    ref = containerd_pid if containerd_pid and containerd_pid in table else None
    if ref is None and proc.ns(1, 'mnt') is not None:
        ref = 1  # the listener is in another pid namespace: the host's init
    out = {'roots': [], 'busy': set(), 'children': {}, 'dial': {}, 'shims': [], 'refused': []}
    for pid in sorted(table):
        if not is_shim_comm(table[pid][1]):
            continue
        cwd = proc.cwd(pid)
        if cwd and os.path.basename(os.path.dirname(cwd.rstrip('/'))) != namespace:
            # a v2 shim works in its bundle, <state>/<task dir>/<namespace>/<id>:
            # another namespace's shim (Docker's moby) is left without reading its argv
            continue
        try:
            argv = proc.cmdline(pid, cmdline_timeout)
        except ProcError:
            continue
        info = shim_info(argv)
        opts_addr = _option(argv, '-address')
        if info['version'] != 'v2' or info['namespace'] != namespace or not opts_addr:
            continue
        if not opts_addr.startswith('/') and not opts_addr.startswith('unix:///'):
            continue
        if not same_inode(_host_view(proc, pid, socket_path(opts_addr)), sock):
            continue  # another containerd's shim, or a process that is none
        if ref is not None:
            bundle, reasons = shim_identity(proc, pid, ref)
        else:
            # no listener pid (another pid namespace): the address proof alone
            cwd = proc.cwd(pid)
            bundle = cwd.rstrip('/') if cwd and cwd.startswith('/') else None
            reasons = [] if bundle else ['containerd shim working directory unreadable']
        if reasons:
            if len(out['refused']) < MAX_REFUSED:
                out['refused'].append({'pid': pid, 'reasons': reasons})
            continue
        bundle = _host_view(proc, pid, bundle)
        out['shims'].append(pid)
        root = os.path.dirname(bundle)
        if os.path.basename(root) == namespace and root not in out['roots']:
            out['roots'].append(root)
            prefix = _host_view(proc, pid, '/')
            out['dial'][root] = '' if prefix == '/' else prefix.rstrip('/')
        children = kids.get(pid, [])
        out['children'][bundle] = list(children)
        if any(is_runc_comm(table[child][1]) for child in children):
            out['busy'].add(bundle)
    # Only the default containerd keeps its state in the default folder: another
    # one's tasks must not be listed under this address.
    default = os.path.join(DEFAULT_STATE, TASK_DIR, namespace)
    if (not out['roots'] and proc_root == '/proc' and os.path.isdir(default)
            and os.path.realpath(sock) == os.path.realpath(DEFAULT_CONTAINERD_ADDRESS)):
        out['roots'].append(default)
        out['dial'][default] = ''
    return out


def _option(argv, name):
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + '='):
            return a[len(name) + 1:]
    return None


def _dial(prefix, shim_address):
    """The path to connect to for SHIM_ADDRESS (a host path) from here, or
    None when it is the address itself (our view is the host's, or the
    address is abstract: abstract names are not files)."""
    if not prefix:
        return None
    try:
        path = shim_socket_path(shim_address)
    except CriError:
        return None
    if path.startswith('\0'):
        return None
    return prefix + path


def list_tasks(address=DEFAULT_CONTAINERD_ADDRESS, namespace=DEFAULT_NAMESPACE, proc_root='/proc', roots=None,
               dial=None, containerd_pid=None, status=None):
    """[{'id', 'shim_address', 'dial', 'type', 'pod_sandbox_id', 'pod_namespace',
    'pod_name', 'container_name', 'bundle', 'init_pid'}] of the v2 tasks of
    that containerd and namespace.  DIAL ({root: prefix}, from scan_shims)
    turns each task's shim address, a host path, into the path to connect to
    from here.  The whole walk has one deadline (WALK_TIMEOUT): the tasks read
    by then are returned, and STATUS (a dict, when given) gets ``complete``
    false and ``error``."""
    if roots is None:
        if containerd_pid is None:
            containerd_pid = socket_listener(address, LISTENER_TIMEOUT)
        shims = scan_shims(address, namespace, proc_root, containerd_pid=containerd_pid)
        roots, dial = shims['roots'], shims['dial']
    out = []
    # one thread for the walk, not one per file: a thousand tasks are three
    # thousand small reads on the node's tmpfs
    th = threading.Thread(target=_walk_bundles, args=(roots, dial or {}, out), name='bundle-walk')
    th.daemon = True
    th.start()
    th.join(WALK_TIMEOUT)
    if th.is_alive():
        if status is not None:
            status['complete'] = False
            status['error'] = 'reading the task bundles did not finish within %.1fs: %d task(s) read' % (
                WALK_TIMEOUT, len(out))
        return list(out)
    if status is not None:
        status['complete'] = True
    return out


def _bundle_task(bundle, dial_prefix):
    """The task of BUNDLE from its ``address`` and ``init.pid`` files (no
    pod metadata), or None when it has no shim address."""
    raw = _read_bundle_file(os.path.join(bundle, 'address'), MAX_ADDRESS_BYTES)
    if not raw:
        return None
    init_pid = (_read_bundle_file(os.path.join(bundle, 'init.pid'), 32) or b'').strip()
    shim_address = raw.decode('utf-8', 'replace').strip()
    return {'id': os.path.basename(bundle), 'bundle': bundle, 'shim_address': shim_address,
            'dial': _dial(dial_prefix, shim_address), 'init_pid': int(init_pid) if init_pid.isdigit() else None}


def _walk_bundles(roots, dial, out):
    """Append the task of every bundle under ROOTS to OUT (read in the calling
    thread: list_tasks bounds the whole walk)."""
    seen = set()
    for root in roots:
        try:
            names = sorted(os.listdir(root))
        except (IOError, OSError):
            continue
        for cid in names:
            if cid in seen:
                continue
            bundle = os.path.join(root, cid)
            task = _bundle_task(bundle, dial.get(root))
            if task is None:
                continue
            seen.add(cid)
            try:
                cfg = json.loads((_read_bundle_file(os.path.join(bundle, 'config.json'), MAX_CONFIG_BYTES)
                                  or b'{}').decode('utf-8', 'replace'))
            except ValueError:
                cfg = {}
            ann = cfg.get('annotations') if isinstance(cfg, dict) else None
            ann = ann if isinstance(ann, dict) else {}
            pod = pod_from_mapping(ann)
            ctype = ann.get(CONTAINER_TYPE_KEY)
            task.update({
                'type': ctype if isinstance(ctype, str) else None,
                'pod_sandbox_id': ann.get(SANDBOX_ID_KEY) if isinstance(ann.get(SANDBOX_ID_KEY), str) else None,
                'pod_namespace': pod['namespace'],
                'pod_name': pod['name'],
                'container_name': pod['container'],
            })
            out.append(task)


# ---- the daemon -------------------------------------------------------------

def _run_bounded(argv, timeout):
    """(rc, stdout) of ARGV, killed with its process group at TIMEOUT."""
    try:
        rc, out, err = _deadline.run_bounded(argv, timeout)
    except _deadline.CommandTimeout:
        raise ShimTimeout('%s did not return within %.1fs' % (' '.join(argv[:1] + argv[-2:]), timeout))
    return rc, out.decode('utf-8', 'replace'), err.decode('utf-8', 'replace')


def listener_pid(sock):
    """The pid (in our pid namespace) of the process that listens on the unix
    socket SOCK is connected to, from SO_PEERCRED; None when the kernel does
    not say (the listener is in a pid namespace we cannot see).  The socket
    path is the operator's: its listener is containerd, whatever any process
    calls itself."""
    return _deadline.peer_pid(sock)


def socket_listener(address, timeout):
    """The pid of the process listening on containerd's socket at ADDRESS, or None."""
    return _deadline.listener_pid(socket_path(address), timeout, 'containerd')


def find_ctr():
    for d in os.environ.get('PATH', '').split(os.pathsep) + ['/usr/bin', '/usr/local/bin', '/bin']:
        cand = os.path.join(d, 'ctr')
        if d and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def engine_status(address=DEFAULT_CONTAINERD_ADDRESS, timeout=5.0, version=True):
    """{'present', 'reachable', 'version', 'error'} of the containerd at ADDRESS:
    present when its socket exists, reachable when it accepts a connection;
    the version from ``ctr version`` when ctr is installed (and VERSION)."""
    path = socket_path(address)
    out = {'present': False, 'reachable': False, 'version': None, 'error': socket_missing(path), 'pid': None}
    if out['error']:
        return out
    out['present'] = True
    try:
        s = _deadline.connect_unix(path, time.monotonic() + float(timeout), 'containerd')
    except _deadline.DeadlineExceeded as e:
        # a containerd that stopped accepting (full listen backlog): there, not answering
        out['error'] = str(e)
        return out
    except (IOError, OSError) as e:
        out['error'] = 'cannot connect to %s: %s' % (path, e)
        return out
    try:
        out['reachable'] = True
        out['pid'] = listener_pid(s)
    finally:
        s.close()
    if version:
        out['version'] = ctr_version(path, timeout)
    return out


def ctr_version(path, timeout):
    """The server version ``ctr version`` gives for the containerd at PATH, or
    None (no ctr, no answer by TIMEOUT): a nicety, never a verdict."""
    ctr = find_ctr()
    if not ctr:
        return None
    try:
        rc, stdout, stderr = _run_bounded([ctr, '--address', path, 'version'], timeout)
    except (CriError, OSError):
        return None
    if rc == 0:
        server = stdout.split('Server:', 1)[-1]
        for line in server.splitlines():
            if line.strip().startswith('Version:'):
                return line.split(':', 1)[1].strip()
    return None


# ---- the probe --------------------------------------------------------------

def _ms(t0):
    return int(round((time.monotonic() - t0) * 1000))


def _no_result(key):
    return {'responsive': None, 'latency_ms': None, 'error': _deadline.NO_RESULT}


def _failed(e):
    return {'responsive': None, 'latency_ms': None, 'error': 'probe failed: %r' % (e,)}


def quiet_shims(tasks, children):
    """The shim addresses whose shim has no child but its tasks' init
    processes: no exec and no runtime call is in flight there.

    CHILDREN is scan_shims' {shim bundle: child pids}; the shim's bundle is
    the bundle of the task whose id it serves (a pod's sandbox under CRI).
    A stuck exec always keeps a child of its shim (``runc exec``, blocked
    while ``runc init`` is, or writing its own error once runc init died),
    and only while that child lives does the shim hold the exec's locks (the
    ones Pids blocks on).  A shim whose children are not known (not found in
    the process table, a task without ``init.pid``) is not quiet."""
    inits = {}
    for t in tasks:
        inits.setdefault(t.get('shim_address'), set()).add(t.get('init_pid'))
    quiet = set()
    for t in tasks:
        kids = children.get(t.get('bundle'))
        addr = t.get('shim_address')
        if kids is None or None in inits[addr]:
            continue
        if not set(kids) - inits[addr]:
            quiet.add(addr)
    return quiet


def _task_call(quiet):
    """The probe of one task: Connect where its shim is QUIET (answered from
    the shim's memory under the locks every task call takes), Pids elsewhere
    (the call a stuck exec blocks, at the price of a ``runc ps``)."""
    def call(t, budget):
        if t.get('shim_address') in quiet:
            return task_connect(t['shim_address'], t['id'], budget, dial=t.get('dial'))
        return task_pids(t['shim_address'], t['id'], budget, dial=t.get('dial'))
    return call


def probe_tasks(tasks, timeout, concurrency=16, deadline=None, call=None, first=()):
    """Ask each task's shim for its pids.  {id: {'responsive', 'latency_ms',
    'error'}}: True when the shim answered (an error status is an answer),
    False when the call used its whole TIMEOUT (the stuck shim's sign; a full
    listen backlog too), None when undecided (no connection made, closed or
    reset, not a ttrpc answer, the overall DEADLINE).

    Work goes by shim: up to CONCURRENCY shims at once, and all the
    containers of one shim (a pod) at the same moment.  Once one call to a
    stuck pod shim is pending, it stops answering for the pod's other
    containers too; asked together, before that, each container answers for
    itself, and a sick pod holds one slot for TIMEOUT, not one per container.
    Shims whose address is in FIRST are asked first, so that a sick pod gets
    its whole TIMEOUT however long the healthy ones take (each Pids makes
    the shim run ``runc ps``: about 8 ms of CPU per container).
    Returns by DEADLINE; stuck calls are daemon threads, each bounded by its
    own deadline."""
    call = call or (lambda t, budget: task_pids(t['shim_address'], t['id'], budget, dial=t.get('dial')))
    timeout = float(timeout)
    # a thread per shim and per container: the engine check's concurrency is sized for Docker's sockets
    concurrency = min(int(concurrency), MAX_SHIMS_AT_ONCE)
    if deadline is None:
        deadline = time.monotonic() + timeout + _deadline.OVERALL_SLACK
    tasks = list(tasks)
    groups = []
    by_shim = {}
    for t in tasks:
        key = t.get('shim_address')
        if key not in by_shim:
            by_shim[key] = []
            groups.append(by_shim[key])
        by_shim[key].append(t)
    first = set(first or ())
    groups.sort(key=lambda g: 0 if g[0].get('shim_address') in first else 1)
    pool = _deadline.DeadlinePool(deadline)

    def probe(t):
        left = pool.left()
        if left <= 0:
            return {'responsive': None, 'latency_ms': None,
                    'error': _deadline.NOT_PROBED}
        budget = min(timeout, left)
        t0 = time.monotonic()
        try:
            call(t, budget)
            return {'responsive': True, 'latency_ms': _ms(t0), 'error': None}
        except ShimTimeout as e:
            if budget < timeout:
                return {'responsive': None, 'latency_ms': _ms(t0),
                        'error': _deadline.CUT_SHORT % budget}
            return {'responsive': False, 'latency_ms': _ms(t0),
                    'error': 'shim did not answer task pids within %.1fs: %s' % (timeout, e)}
        except ShimStatus as e:
            # an error status (task gone since the listing) is still an answer
            return {'responsive': True, 'latency_ms': _ms(t0), 'error': str(e)}
        except CriError as e:
            # no connection, a reset, or something that is not ttrpc: no proof either way
            return {'responsive': None, 'latency_ms': _ms(t0), 'error': str(e)}

    def probe_group(group):
        threads = [pool.start(pool.call, (t['id'], probe, t, _failed), name='shim-probe')
                   for t in group[:MAX_PER_SHIM]]
        for t in group[MAX_PER_SHIM:]:
            pool.call(t['id'], probe, t, _failed)
        for th in threads:
            th.join(max(0.0, deadline + 0.1 - time.monotonic()))

    pool.map(groups, probe_group, concurrency, name='shim-worker')
    return pool.collect([t['id'] for t in tasks], _no_result)


class _EarlyProbes(object):
    """The shims with an exec in flight (BUSY bundles), each asked about the
    task of its own bundle (a pod's sandbox under CRI) the moment the process
    table has shown them, in a thread of its own, while the bundles of every
    task are still being read.  On a loaded node that walk can take the half
    second of slack the overall deadline leaves, and a sick pod's call then
    starts too late to use its whole timeout."""

    def __init__(self, bundles, dial, timeout, deadline):
        self.tasks = [t for t in (_bundle_task(b, dial.get(os.path.dirname(b))) for b in sorted(bundles)) if t]
        self.result = {}
        self.thread = None
        if self.tasks:
            # no shim here is quiet (each has a runc child): Pids, the call a stuck exec blocks
            self.thread = threading.Thread(target=lambda: self.result.update(
                probe_tasks(self.tasks, timeout, len(self.tasks), deadline, call=_task_call(set()))), name='early-probes')
            self.thread.daemon = True
            self.thread.start()

    def join(self, deadline):
        if self.thread is not None:
            self.thread.join(max(0.0, deadline + 0.1 - time.monotonic()))
        return dict(self.result)


def merge_early(probes, tasks, early_tasks, early, timeout):
    """PROBES ({id: probe}) with the EARLY answers of EARLY_TASKS added, and
    each task whose own call the overall deadline cut short marked not
    answering when its shim (same address) let an early call go its whole
    TIMEOUT without an answer: every task call of that container goes to that
    shim, and the error says which call proved it."""
    out = dict(probes)
    silent = {}
    for t in early_tasks:
        r = early.get(t['id']) or _no_result(t['id'])
        out.setdefault(t['id'], r)
        if r['responsive'] is False:
            silent.setdefault(t['shim_address'], t['id'])
    for t in tasks:
        r = out.get(t['id'])
        first = silent.get(t.get('shim_address'))
        if first is None or r is None or r['responsive'] is not None or not (r.get('error') or '').startswith(
                _deadline.DEADLINE_ERRORS):
            continue
        out[t['id']] = dict(r, responsive=False, error=(
            'its shim did not answer task pids (task %s) within %.1fs; this container\'s own call: %s' % (
                first[:12], timeout, r['error'])))
    return out


def hung_task_report(address=DEFAULT_CONTAINERD_ADDRESS, namespace=DEFAULT_NAMESPACE, timeout=5.0,
                     concurrency=16, container_ids=None, deadline=None, include_sandboxes=False,
                     proc_root='/proc'):
    """Which containers' shims do not answer: {'engine', 'containers', 'hung', 'unchecked'}.
    A containerd that is not there is a result (engine.present false), not an exception."""
    t0 = time.monotonic()
    timeout = float(timeout)
    if deadline is None:
        deadline = t0 + timeout + _deadline.OVERALL_SLACK
    engine = {'name': 'containerd', 'address': socket_path(address), 'namespace': namespace,
              'present': False, 'checked': False, 'reachable': None, 'version': None, 'error': None}
    report = {'engine': engine, 'containers': [], 'hung': [], 'unchecked': []}
    status = engine_status(address, timeout=max(0.001, min(timeout, deadline - time.monotonic())), version=False)
    containerd_pid = status.pop('pid', None)
    engine.update(status)
    # checked means "we asked": a containerd whose socket is there but does not
    # answer was checked, and that is what its unreachable alert is about.
    engine['checked'] = bool(engine['present'])
    if not engine['present'] or not engine['reachable']:
        return report
    # ctr's start costs more than the shims' scan: asked meanwhile, awaited at the end
    version = {}
    vth = threading.Thread(target=lambda: version.update(v=ctr_version(engine['address'], max(
        0.001, min(timeout, deadline - time.monotonic())))), name='ctr-version')
    vth.daemon = True
    vth.start()
    shims = scan_shims(address, namespace, proc_root, containerd_pid=containerd_pid)
    if shims['refused']:
        engine['refused_shims'] = shims['refused']
    early = _EarlyProbes(() if container_ids else shims['busy'], shims['dial'], timeout, deadline)
    walk = {}
    tasks = list_tasks(address, namespace, proc_root, roots=shims['roots'], dial=shims['dial'], status=walk)
    if not walk.get('complete', True):
        engine['error'] = walk['error']
    listed = len(tasks)
    busy = set(t['shim_address'] for t in tasks if t['bundle'] in shims['busy'])
    quiet = quiet_shims(tasks, shims['children'])
    if not include_sandboxes:
        tasks = [t for t in tasks if t['type'] != 'sandbox']
    if container_ids:
        wanted = set(container_ids)
        tasks = [t for t in tasks if t['id'] in wanted or any(t['id'].startswith(w) for w in wanted)]
    asked = set(t['id'] for t in early.tasks)
    probes = probe_tasks([t for t in tasks if t['id'] not in asked], timeout, concurrency, deadline, first=busy,
                         call=_task_call(quiet))
    probes = merge_early(probes, tasks, early.tasks, early.join(deadline), timeout=timeout)
    for t in tasks:
        c = {'id': t['id'], 'name': t['container_name'] or t['id'][:12], 'engine': 'containerd',
             'pod_namespace': t['pod_namespace'], 'pod_name': t['pod_name'], 'container_name': t['container_name'],
             'pod_sandbox_id': t['pod_sandbox_id']}
        c.update(probes[t['id']])
        report['containers'].append(c)
        if c['responsive'] is False:
            report['hung'].append(c['id'])
        elif c['responsive'] is None:
            report['unchecked'].append(c['id'])
    _undecided(engine, shims['shims'], listed, report['containers'])
    vth.join(max(0.0, deadline - time.monotonic()))
    engine['version'] = version.get('v')
    return report


def _undecided(engine, shims, listed, containers):
    """Shims of this containerd are running, yet none could be asked (no task
    listed from their bundles, or not one call connected and got an answer
    either way): that is not "0 containers, all healthy" but cannot-tell,
    so the engine is not called reachable."""
    if not shims:
        return
    if not listed:
        why = 'no task could be read from their bundles'
    elif containers and all(c['responsive'] is None for c in containers):
        why = 'none answered either way (%s)' % (containers[0].get('error') or 'no answer')[:300]
    else:
        return
    engine['reachable'] = None
    engine['error'] = '%d shim(s) of this containerd found, none could be asked: %s' % (len(shims), why)
