# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The capacity of the next pipe a shim will create (private module_utils).

The stderr pipe of an exec is created by the shim, so what decides whether a
crash dump of ``runc init`` deadlocks is the capacity of a NEW pipe created
with the shim's credentials.  The kernel cuts the pipes of a user past
``fs.pipe-user-pages-soft`` to one page (Linux 4.5) or two (current kernels)
and exempts, on current kernels, a process with CAP_SYS_RESOURCE or
CAP_SYS_ADMIN in the initial user namespace.  Rather than guess which rule a
kernel has, a short-lived child takes the shim's uid, gids and capabilities,
creates a pipe and reads F_GETPIPE_SZ: the number the next exec will get.

How close a user is to the soft limit is estimated by counting the distinct
pipes its processes hold (``/proc/*/fd`` links, read with readlink only:
another process's pipe is never opened).  Target-side code: Python 3.6+
syntax and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ctypes
import errno
import fcntl
import os
import select
import signal
import time

from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import HangdoctorError
from ansible_collections.hangdoctor.runtime.plugins.module_utils._procfs import F_GETPIPE_SZ, ProcError
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _runtime_tree

DEFAULT_PIPE_PAGES = 16           # a new pipe's buffers below the soft limit (PIPE_DEF_BUFFERS)
CAP_SYS_ADMIN = 21
CAP_SYS_RESOURCE = 24
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
PROBE_TIMEOUT = 2.0
SYSCTLS = ('pipe-user-pages-soft', 'pipe-user-pages-hard', 'pipe-max-size')


class PipeRiskError(HangdoctorError):
    """The pipe capacity could not be probed."""


def page_size():
    try:
        return os.sysconf('SC_PAGE_SIZE')
    except (ValueError, OSError):
        return 4096


def read_limits(proc_root='/proc'):
    """{'soft_pages', 'hard_pages', 'max_size', 'page_size'} of the kernel (None when unreadable)."""
    out = {'page_size': page_size()}
    for name in SYSCTLS:
        key = {'pipe-user-pages-soft': 'soft_pages', 'pipe-user-pages-hard': 'hard_pages',
               'pipe-max-size': 'max_size'}[name]
        try:
            with open(os.path.join(proc_root, 'sys', 'fs', name)) as f:
                out[key] = int(f.read().strip())
        except (IOError, OSError, ValueError):
            out[key] = None
    return out


def parse_credentials(status_text):
    """uid/gid (real, effective, saved, fs), supplementary groups and
    capability sets from the text of /proc/PID/status."""
    cred = {}
    for line in status_text.splitlines():
        key, sep, value = line.partition(':')
        if not sep:
            continue
        value = value.strip()
        try:
            if key in ('Uid', 'Gid'):
                cred[key.lower()] = [int(v) for v in value.split()]
            elif key == 'Groups':
                cred['groups'] = [int(v) for v in value.split()]
            elif key in ('CapInh', 'CapPrm', 'CapEff'):
                cred[key.lower()] = int(value, 16)
        except ValueError:
            raise PipeRiskError('unparsable %s line in status: %r' % (key, line[:200]))
    missing = [k for k in ('uid', 'gid', 'capeff') if k not in cred]
    if missing or len(cred['uid']) < 4 or len(cred['gid']) < 4:
        raise PipeRiskError('status lacks %s' % ', '.join(missing or ['four uids/gids']))
    cred.setdefault('groups', [])
    cred.setdefault('capprm', cred['capeff'])
    cred.setdefault('capinh', 0)
    return cred


def exempt(cred):
    """Would a current kernel exempt these credentials from the soft limit
    (CAP_SYS_RESOURCE or CAP_SYS_ADMIN in the initial user namespace)?"""
    if cred.get('foreign_userns'):
        return False
    return bool(cred['capeff'] & ((1 << CAP_SYS_RESOURCE) | (1 << CAP_SYS_ADMIN)))


def credentials(proc, pid):
    """The credentials of PID (parse_credentials) plus ``foreign_userns``:
    True when PID is in another user namespace than this module, whose
    capabilities then count nothing on the host."""
    try:
        with open(proc.path(pid, 'status')) as f:
            text = f.read()
    except (IOError, OSError) as e:
        raise PipeRiskError('status of %s: %s' % (pid, e.strerror or e))
    cred = parse_credentials(text)
    mine, theirs = proc.ns('self', 'user'), proc.ns(pid, 'user')
    cred['foreign_userns'] = bool(mine and theirs and mine != theirs)
    return cred


def cred_key(cred):
    return (tuple(cred['uid']), tuple(cred['gid']), tuple(sorted(cred['groups'])),
            cred['capeff'], cred['capprm'], cred['capinh'], cred['foreign_userns'])


def _capset(eff, prm, inh):
    libc = ctypes.CDLL(None, use_errno=True)
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    words = [eff & 0xffffffff, prm & 0xffffffff, inh & 0xffffffff, eff >> 32, prm >> 32, inh >> 32]
    data = (ctypes.c_uint32 * 6)(*words)
    if libc.capset(header, data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, 'capset: %s' % os.strerror(err))


def own_permitted():
    """This process's permitted capabilities (a container may run us without some)."""
    with open('/proc/self/status') as f:
        return parse_credentials(f.read())['capprm']


def _become(cred, mask):
    """In the probe child: take CRED (gids first, while root may still change
    them); capabilities this process lacks (not in MASK) cannot be given."""
    os.setgroups(cred['groups'])
    rgid, egid, sgid = cred['gid'][:3]
    os.setresgid(rgid, egid, sgid)
    caps = (cred['capeff'] & mask, cred['capprm'] & mask, cred['capinh'] & mask)
    if cred.get('foreign_userns'):
        # capabilities held in a child user namespace are not capable() on the host
        caps = (0, 0, 0)
    ruid, euid, suid = cred['uid'][:3]
    if (ruid, euid, suid) != (0, 0, 0):
        # leaving uid 0 clears the capability sets (no SECBIT_KEEP_CAPS)
        os.setresuid(ruid, euid, suid)
        if euid == 0:
            _capset(*caps)
    else:
        _capset(*caps)


def probe(cred, timeout=PROBE_TIMEOUT):
    """The F_GETPIPE_SZ of a pipe created by a child with CRED.  Raises
    PipeRiskError when the child could not take them or did not answer in
    TIMEOUT seconds (it is then killed)."""
    mask = own_permitted()
    rfd, wfd = os.pipe()
    try:
        pid = os.fork()
    except OSError as e:
        os.close(rfd)
        os.close(wfd)
        raise PipeRiskError('fork: %s' % (e.strerror or e))
    if pid == 0:  # the child: never returns, never raises
        code = 1
        try:
            os.close(rfd)
            try:
                _become(cred, mask)
                a, b = os.pipe()
                msg = 'ok %d' % fcntl.fcntl(a, F_GETPIPE_SZ)
                code = 0
            except OSError as e:
                msg = 'error %s' % (e.strerror or e)
            os.write(wfd, msg.encode('ascii', 'replace')[:512])
        finally:
            os._exit(code)
    os.close(wfd)
    try:
        data = b''
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise PipeRiskError('the pipe probe did not answer within %.1f s' % timeout)
            ready = select.select([rfd], [], [], left)[0]
            if not ready:
                continue
            chunk = os.read(rfd, 512)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(rfd)
        _reap(pid)
    text = data.decode('ascii', 'replace')
    if text.startswith('ok '):
        return int(text[3:])
    raise PipeRiskError('the pipe probe could not take the credentials: %s' % (text[6:] or 'no answer'))


def _reap(pid):
    for dummy in range(50):
        try:
            done, dummy_status = os.waitpid(pid, os.WNOHANG)
        except OSError as e:
            if e.errno == errno.ECHILD:
                return
            raise
        if done:
            return
        time.sleep(0.01)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except OSError:
        pass


def count_user_pipes(proc, uid, deadline=None):
    """{'pipes', 'processes', 'partial'}: the distinct pipes held by processes
    whose real uid is UID.  Only readlink of /proc/PID/fd/N, never an open:
    another process's pipe is not touched.  A pipe is charged to the user that
    created it, so this estimates what the kernel counts."""
    inodes = set()
    processes = 0
    partial = False
    try:
        pids = proc.pids()
    except ProcError as e:
        raise PipeRiskError(str(e))
    for pid in pids:
        if deadline is not None and time.monotonic() > deadline:
            partial = True
            break
        try:
            with open(proc.path(pid, 'status')) as f:
                real = None
                for line in f:
                    if line.startswith('Uid:'):
                        real = int(line.split()[1])
                        break
            if real != uid:
                continue
            fds = os.listdir(proc.path(pid, 'fd'))
        except (IOError, OSError, ValueError, IndexError):
            continue
        processes += 1
        for fd in fds:
            try:
                link = os.readlink(proc.path(pid, 'fd', fd))
            except OSError:
                continue
            if link.startswith('pipe:['):
                inodes.add(link)
    return {'pipes': len(inodes), 'processes': processes, 'partial': partial}


def _engine_of(argv, comm):
    """(engine name, shim version) from a shim's argv, or the daemon's comm."""
    if comm in ('containerd', 'dockerd'):
        return comm, None
    info = _runtime_tree.shim_info(argv or [])
    namespace = info.get('namespace')
    return ('docker' if namespace == 'moby' else 'containerd'), info.get('version')


def runtime_processes(proc, table, cmdline_timeout=1.0):
    """[{'pid', 'role', 'engine', 'shim_version', 'namespace'}] of every shim and
    containerd daemon: a shim's credentials are those of its next pipe; a
    containerd's are those its next shim inherits (a node without a container
    yet)."""
    out = []
    for pid in sorted(table.stats):
        st = table.stats[pid]
        if not st:
            continue
        comm = st['comm']
        if _runtime_tree.is_shim_comm(comm):
            try:
                argv = proc.cmdline(pid, cmdline_timeout)
            except ProcError:
                argv = []
            engine, version = _engine_of(argv, comm)
            namespace = _runtime_tree.shim_info(argv).get('namespace') if argv else None
            out.append({'pid': pid, 'role': 'shim', 'engine': engine, 'shim_version': version, 'namespace': namespace})
        elif comm == 'containerd':
            out.append({'pid': pid, 'role': 'containerd', 'engine': 'containerd', 'shim_version': None,
                        'namespace': None})
    return out


def engine_label(engine, cred):
    """docker, containerd; a rootless or unprivileged one carries its uid."""
    if cred['uid'][0] != 0 or cred.get('foreign_userns'):
        return '%s-uid%d' % (engine, cred['uid'][0])
    return engine


def assess(proc, table, options=None):
    """The pipe capacity per engine and credential set.

    OPTIONS: {'probe_timeout', 'count_seconds', 'cmdline_timeout'}.  Returns
    {'limits', 'engines': [...], 'at_risk': bool}.  Each engine entry:
    ``engine``, ``pids`` (the shims/daemons with these credentials), ``uid``,
    ``gid``, ``capabilities_exempt``, ``capacity`` (bytes, probed),
    ``default_capacity``, ``collapsed``, ``deadlock_dump_bytes`` (a dump of
    this many bytes or more blocks runc init), ``user_pipes`` (count),
    ``user_pages_estimate``, ``soft_limit_fraction``, ``error``."""
    opts = dict({'probe_timeout': PROBE_TIMEOUT, 'count_seconds': 5.0, 'cmdline_timeout': 1.0}, **(options or {}))
    limits = read_limits(proc.root)
    default_capacity = DEFAULT_PIPE_PAGES * limits['page_size']
    groups = {}
    order = []
    for rp in runtime_processes(proc, table, opts['cmdline_timeout']):
        try:
            cred = credentials(proc, rp['pid'])
        except (PipeRiskError, ProcError):
            continue  # gone since the table was read
        key = (engine_label(rp['engine'], cred), cred_key(cred))
        if key not in groups:
            groups[key] = {'engine': key[0], 'cred': cred, 'pids': [], 'roles': set()}
            order.append(key)
        groups[key]['pids'].append(rp['pid'])
        groups[key]['roles'].add(rp['role'])
    # A containerd whose shims run with the same credentials adds nothing.
    shim_keys = set(k for k in order if 'shim' in groups[k]['roles'])
    engines = []
    counted = {}
    mask = own_permitted()
    for key in order:
        g = groups[key]
        if g['roles'] == set(['containerd']) and any(k[1] == key[1] for k in shim_keys):
            continue
        cred = g['cred']
        entry = {'engine': g['engine'], 'pids': sorted(g['pids']), 'roles': sorted(g['roles']),
                 'uid': cred['uid'][0], 'gid': cred['gid'][0], 'foreign_userns': cred['foreign_userns'],
                 'capabilities_exempt': exempt(cred), 'default_capacity': default_capacity,
                 'capacity': None, 'collapsed': None, 'deadlock_dump_bytes': None, 'error': None,
                 'probe_note': None}
        lacking = cred['capeff'] & ~mask
        if exempt(cred) and not exempt(dict(cred, capeff=cred['capeff'] & mask)):
            entry['probe_note'] = ('the engine holds CAP_SYS_RESOURCE/CAP_SYS_ADMIN that this module lacks: '
                                   'the probe gives a lower bound')
        elif lacking:
            entry['probe_note'] = 'the engine holds capabilities this module lacks (%#x); none of them changes pipe sizes' % lacking
        try:
            entry['capacity'] = probe(cred, opts['probe_timeout'])
            entry['collapsed'] = entry['capacity'] < default_capacity
            if entry['collapsed'] and entry['probe_note'] and 'lower bound' in entry['probe_note']:
                entry['collapsed'] = None  # cannot tell: never a false alarm
            entry['deadlock_dump_bytes'] = entry['capacity'] + 1
        except PipeRiskError as e:
            entry['error'] = str(e)
        uid = entry['uid']
        if uid not in counted:
            counted[uid] = count_user_pipes(proc, uid, time.monotonic() + opts['count_seconds'])
        c = counted[uid]
        entry['user_pipes'] = c['pipes']
        entry['user_pipes_partial'] = c['partial']
        entry['user_pages_estimate'] = c['pipes'] * DEFAULT_PIPE_PAGES
        soft = limits.get('soft_pages')
        entry['soft_limit_fraction'] = round(entry['user_pages_estimate'] / soft, 3) if soft else None
        engines.append(entry)
    return {'limits': limits, 'engines': engines, 'at_risk': any(e['collapsed'] for e in engines)}
