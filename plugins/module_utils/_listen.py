# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Listening TCP sockets of a container, from /proc/PID/net/tcp and tcp6
(private module_utils).

Why this exists: an exec probe runs inside the container, so ``localhost``
is the container.  The tcpSocket, httpGet and grpc probes that replace it
(``exec_probe_swap``) connect from the node to the pod IP.  An application
that listens only on 127.0.0.1 passes the exec probe and fails the new one,
and the kubelet then restarts it.  ``/proc/PID/net/tcp*`` shows the sockets
of PID's network namespace (the whole pod's) without entering it and without
running anything in the container -- no exec, so no new ``runc exec``.

Target-side code: Python 3.6+ syntax and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ipaddress
import os
import sys
import time

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _engine_api
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _netaddr
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs
from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import HangdoctorError

TCP_LISTEN = '0A'
FAMILIES = (('tcp', 'ipv4'), ('tcp6', 'ipv6'))
# A host-network pod shows the node's sockets; tens of thousands of lines are
# normal there, this only stops a runaway read.
MAX_TABLE_BYTES = 64 * 1024 * 1024

SCOPE_LOOPBACK = 'loopback'
SCOPE_WILDCARD = 'wildcard'
SCOPE_SPECIFIC = 'specific'


class ListenError(HangdoctorError):
    """The listening sockets could not be read."""


def decode_address(hexaddr, byteorder=None):
    """``0100007F`` -> ``127.0.0.1``; 32 hex digits -> an IPv6 address.

    The kernel prints each 32-bit word of the address as a number in host
    byte order, so on little-endian machines every 4-byte group is reversed.
    """
    byteorder = byteorder or sys.byteorder
    try:
        raw = bytes(bytearray.fromhex(hexaddr))
    except ValueError:
        raise ListenError('bad address %r' % hexaddr)
    if len(raw) not in (4, 16):
        raise ListenError('bad address %r' % hexaddr)
    if byteorder == 'little':
        raw = b''.join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(raw)


def address_text(addr):
    """The address as text, v4-mapped ones as ``::ffff:127.0.0.1`` (Python
    before 3.13 prints ``::ffff:7f00:1``)."""
    if addr.version == 6 and addr.ipv4_mapped is not None:
        return '::ffff:%s' % addr.ipv4_mapped
    return str(addr)


def scope_of(addr):
    """loopback (127.0.0.0/8, ::1, ::ffff:127.x), wildcard (0.0.0.0, ::,
    ::ffff:0.0.0.0) or specific."""
    if _netaddr.is_unspecified_ip(addr):
        return SCOPE_WILDCARD
    if _netaddr.is_loopback_ip(addr):
        return SCOPE_LOOPBACK
    return SCOPE_SPECIFIC


def parse_table(text, family, byteorder=None):
    """Listening sockets of one /proc/net/tcp or tcp6 table:
    [{port, address, family, scope}] (one entry per socket, table order)."""
    out = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != TCP_LISTEN:
            continue
        local = fields[1]
        host, sep, port = local.rpartition(':')
        if not sep:
            raise ListenError('unparsable socket line: %r' % line[:200])
        try:
            port = int(port, 16)
        except ValueError:
            raise ListenError('unparsable port in %r' % line[:200])
        addr = decode_address(host, byteorder)
        out.append({'port': port, 'address': address_text(addr), 'family': family, 'scope': scope_of(addr)})
    return out


def _read_bounded(path, deadline):
    """The text of one /proc/PID/net table through the one bounded reader for
    files a workload can touch (no symlink, regular file, size and time
    bounds): a container's network namespace is the workload's."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise _procfs.Timeout('%s: not read within the deadline' % path)
    try:
        data = _procfs.read_regular_file(path, MAX_TABLE_BYTES, left)
    except (_procfs.ProcessGone, _procfs.Timeout):
        raise
    except _procfs.ProcError as e:
        raise ListenError(str(e))
    return data.decode('ascii', 'replace')


def listening(proc, pid, timeout=5.0, byteorder=None):
    """Every listening TCP socket in PID's network namespace, IPv4 first.

    A missing tcp6 table (IPv6 disabled) is not an error; a missing process
    raises ProcessGone."""
    deadline = time.monotonic() + timeout
    out = []
    for name, family in FAMILIES:
        path = proc.path(pid, 'net', name)
        try:
            text = _read_bounded(path, deadline)
        except _procfs.ProcessGone:
            # no tcp6 table while the process is still there: IPv6 is off
            if name == 'tcp6' and os.path.isdir(proc.path(pid)):
                continue
            raise
        out.extend(parse_table(text, family, byteorder))
    return out


def port_reachability(sockets, port):
    """Whether a probe from the node to the pod IP can reach PORT.

    True: something listens on a wildcard or a non-loopback address.
    False: every listener on PORT is bound to loopback (the exec probe
    passed, the converted probe will fail).  None: nothing listens on PORT
    now, so it cannot be told (the application may not have started yet).
    """
    on_port = [s for s in sockets if s['port'] == port]
    addresses = sorted(set(s['address'] for s in on_port))
    if not on_port:
        return {'reachable_from_node': None, 'addresses': addresses}
    reachable = any(s['scope'] != SCOPE_LOOPBACK for s in on_port)
    return {'reachable_from_node': reachable, 'addresses': addresses}


def container_ports(sockets, ports=None):
    """{port (str): {reachable_from_node, addresses}} for PORTS, or for
    every listening port when PORTS is None.  String keys: the result
    travels as JSON, where keys are strings anyway."""
    wanted = sorted(set(s['port'] for s in sockets)) if ports is None else sorted(set(ports))
    return dict((str(p), port_reachability(sockets, p)) for p in wanted)


def loopback_only(ports):
    """Ports (ints, sorted) of a container_ports() answer that only loopback serves."""
    return sorted(int(p) for p, r in ports.items() if r['reachable_from_node'] is False)


# ---- probes of exec_probe_swap ------------------------------------------------

NETWORK_HANDLERS = ('httpGet', 'tcpSocket', 'grpc')


def probe_port(row):
    """(handler kind, port int) of a converted probe that connects from the
    node to the pod IP; (kind, None) when its port is a name, which only the
    pod spec resolves; None when the probe does not go to the pod IP (not
    converted, or a host-network probe kept on 127.0.0.1)."""
    if not isinstance(row, dict) or row.get('result') != 'converted':
        return None
    handler = row.get('handler') or {}
    for kind in NETWORK_HANDLERS:
        spec = handler.get(kind)
        if not isinstance(spec, dict):
            continue
        host = spec.get('host')
        if host and _netaddr.is_loopback(host):
            return None
        port = spec.get('port')
        if isinstance(port, bool):
            return (kind, None)
        if isinstance(port, int):
            return (kind, port)
        if isinstance(port, str) and port.isdigit():
            return (kind, int(port))
        return (kind, None)
    return None


def probe_matches(row, summary):
    """Whether a container (an _engine_api.container_summary) runs the
    container of a probe row: same namespace and container name, and a pod
    named after the workload (``web-5d9c-x2x`` for Deployment ``web``, the
    mirror pod ``etcd-node1`` for a static pod ``etcd``).  Name prefixes are
    a heuristic; the port check keeps a wrong match from warning unless that
    container also serves the port on loopback only."""
    if summary.get('pod_container') in (None, 'POD'):
        return False
    if summary.get('pod_container') != row.get('container'):
        return False
    namespace = row.get('namespace') or 'default'
    if summary.get('pod_namespace') != namespace:
        return False
    pod = summary.get('pod_name') or ''
    name = row.get('name') or ''
    return bool(name) and (pod == name or pod.startswith(name + '-'))


# ---- one module run --------------------------------------------------------------

def _container_entry(proc, pid, ports, timeout, ident=None):
    entry = {'container_id': None, 'name': None, 'pod_namespace': None, 'pod_name': None,
             'pod_container': None, 'pid': pid, 'listening': [], 'ports': {}, 'loopback_only': [],
             'error': None}
    entry.update(ident or {})
    if pid is None:
        return entry
    try:
        sockets = listening(proc, pid, timeout)
    except _procfs.ProcessGone:
        entry['error'] = 'process %d is gone' % pid
        return entry
    except (_procfs.ProcError, ListenError) as e:
        entry['error'] = str(e)
        return entry
    if ports is not None:
        sockets = [s for s in sockets if s['port'] in ports]
    entry['listening'] = sockets
    entry['ports'] = container_ports(sockets, ports)
    entry['loopback_only'] = loopback_only(entry['ports'])
    return entry


def _ident(summary):
    return dict((k, summary.get(v)) for k, v in (
        ('container_id', 'id'), ('name', 'name'), ('pod_namespace', 'pod_namespace'),
        ('pod_name', 'pod_name'), ('pod_container', 'pod_container')))


def container_pid(client, cid, timeout):
    """(pid, identity dict) of a running container through the Engine API.

    Raises _engine_api.EngineError (status 404 for an unknown id or an
    ambiguous prefix), ListenError for a container that is not running."""
    info = client.inspect(cid, timeout=timeout)
    state = info.get('State') or {}
    pid = state.get('Pid') or 0
    if not state.get('Running') or not pid:
        raise ListenError('container %s is not running (state %s)' % (cid, state.get('Status')))
    labels = (info.get('Config') or {}).get('Labels') or {}
    ident = {'container_id': info.get('Id'), 'name': (info.get('Name') or '').lstrip('/') or None,
             'pod_namespace': labels.get(_engine_api.K8S_NAMESPACE_LABEL),
             'pod_name': labels.get(_engine_api.K8S_POD_LABEL),
             'pod_container': labels.get(_engine_api.K8S_CONTAINER_LABEL)}
    return int(pid), ident


def report(proc, client=None, container_ids=(), pids=(), probes=None, ports=None, timeout=5.0):
    """The body of container_listen_info.

    CONTAINER_IDS are resolved to their init pid through CLIENT's inspect;
    an id the daemon does not know, or a stopped container, raises
    ListenError (bad input).  An inspect that does not answer (a stuck exec
    holds the container's lock in dockerd < 24) is a per-container error,
    not a failure.  With PROBES (exec_probe_swap's ``probes`` rows),
    running containers are listed and those running a converted probe's
    container are checked on that probe's port.
    """
    ports = None if ports is None else sorted(set(int(p) for p in ports))
    containers = []
    unknown = []
    for cid in container_ids:
        try:
            pid, ident = container_pid(client, cid, timeout)
        except _engine_api.EngineTimeout as e:
            containers.append(_container_entry(proc, None, ports, timeout, ident={
                'container_id': cid,
                'error': 'inspect did not answer (%s); a stuck exec may hold the container: '
                         'see hangdoctor.runtime.runc_exec_info' % e}))
            continue
        except _engine_api.EngineError as e:
            if e.status is not None and 400 <= e.status < 500:
                unknown.append('%s (%s)' % (cid, e))
                continue
            raise ListenError('container %s: %s' % (cid, e))
        except ListenError as e:
            unknown.append(str(e))
            continue
        containers.append(_container_entry(proc, pid, ports, timeout, ident=ident))
    if unknown:
        raise ListenError('unknown or stopped containers: %s' % '; '.join(unknown))
    for pid in pids:
        if not os.path.isdir(proc.path(pid)):
            raise ListenError('no process %d under %s' % (pid, proc.root))
        containers.append(_container_entry(proc, pid, ports, timeout))

    checks = []
    if probes:
        checks = _probe_checks(proc, client, probes, ports, timeout=timeout, containers=containers)
    return {'containers': containers, 'probe_checks': checks}


def _probe_checks(proc, client, probes, ports, timeout, containers):
    wanted = []
    for row in probes:
        pp = probe_port(row)
        if pp is None:
            continue
        if ports is not None and pp[1] is not None and pp[1] not in ports:
            continue
        wanted.append((row, pp[0], pp[1]))
    if not wanted:
        return []
    try:
        listed = [s for s in (_engine_api.container_summary(c) for c in client.containers(timeout=timeout)) if s]
    except _engine_api.EngineError as e:
        raise ListenError('listing containers to match the probes: %s' % e)
    checked = dict((c['container_id'], c) for c in containers if c['container_id'])
    checks = []
    for row, kind, port in wanted:
        for summary in listed:
            if not probe_matches(row, summary):
                continue
            entry = checked.get(summary['id'])
            if entry is None:
                try:
                    pid, ident = container_pid(client, summary['id'], timeout)
                    entry = _container_entry(proc, pid, None, timeout, ident=ident)
                except (_engine_api.EngineError, ListenError) as e:
                    entry = _container_entry(proc, None, None, timeout, ident=_ident(summary))
                    entry['error'] = str(e)
                containers.append(entry)
                checked[summary['id']] = entry
            checks.append(_probe_check(row, kind, port, entry))
    return checks


def _probe_check(row, kind, port, entry):
    check = {'kind': row.get('kind'), 'namespace': row.get('namespace'), 'name': row.get('name'),
             'container': row.get('container'), 'probe': row.get('probe'), 'handler': kind, 'port': port,
             'container_id': entry['container_id'], 'pod_name': entry['pod_name'], 'pid': entry['pid'],
             'reachable_from_node': None, 'addresses': [], 'warning': None}
    if port is None:
        check['error'] = 'named port: only the pod spec resolves it, not checked'
        return check
    if entry['error']:
        check['error'] = entry['error']
        return check
    sockets = [s for s in entry['listening'] if s['port'] == port]
    check.update(port_reachability(sockets, port))
    check['error'] = None
    if check['reachable_from_node'] is False:
        check['warning'] = (
            '%s %s/%s container %s %s probe: the converted %s probe connects from the node to port %d of '
            'the pod IP, but pod %s listens on it only on %s; it passed the exec probe and will fail the new one' % (
                row.get('kind'), row.get('namespace') or '-', row.get('name'), row.get('container'),
                row.get('probe'), kind, port, entry['pod_name'] or entry['container_id'],
                ', '.join(check['addresses'])))
    return check
