# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which container engines a node has, and which of their containers no
longer answer (private module_utils).

Docker nodes are checked through the Engine API (``_engine_api``: inspect of
each container); containerd/CRI nodes through the pod shims (``_cri``: the
shim call behind ``ctr task ps``).  Both engines are checked at the same
time, under one overall deadline.  An engine that is not on the node is a
fact in the result (``present: false``), never an error: since Kubernetes
1.24 most nodes have containerd and no dockerd, and a mixed fleet has both.

Target-side code: Python 3.6+ syntax and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import math
import threading
import time
from collections import namedtuple

from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import HangdoctorError
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _deadline
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _defaults
from ansible_collections.hangdoctor.runtime.plugins.module_utils._addresses import (
    AddressError,
    containerd_socket_path,
    parse_docker_host,
    socket_missing,
)

ENGINES = ('docker', 'containerd')
DEFAULT_DOCKER_HOST = _defaults.DEFAULT_DOCKER_HOST
DEFAULT_CONTAINERD_ADDRESS = _defaults.DEFAULT_CONTAINERD_ADDRESS
DEFAULT_CONTAINERD_NAMESPACE = _defaults.DEFAULT_CONTAINERD_NAMESPACE


class EnginesError(HangdoctorError):
    """Options that cannot work (an unknown engine name, a malformed address)."""


def parse_engines(engines):
    """'auto' -> None (every engine present); a list or comma-separated string
    of engine names -> a tuple in ENGINES order; EnginesError otherwise."""
    if engines is None or engines == 'auto' or engines == ['auto']:
        return None
    if isinstance(engines, str):
        engines = [e.strip() for e in engines.split(',') if e.strip()]
    if not isinstance(engines, (list, tuple)) or not engines:
        raise EnginesError("engines must be 'auto' or a list of %s, got %r" % (', '.join(ENGINES), engines))
    bad = [e for e in engines if e not in ENGINES]
    if bad:
        raise EnginesError("unknown engine(s) %s: engines must be 'auto' or a list of %s"
                           % (', '.join(repr(b) for b in bad), ', '.join(ENGINES)))
    return tuple(e for e in ENGINES if e in engines)


def check_addresses(docker_host, containerd_address):
    """Raise EnginesError unless both addresses have a form the clients speak."""
    try:
        parse_docker_host(docker_host)
    except AddressError as e:
        raise EnginesError(str(e))
    if not containerd_address or not isinstance(containerd_address, str):
        raise EnginesError('containerd_address must be a socket path such as %s' % DEFAULT_CONTAINERD_ADDRESS)
    if not containerd_socket_path(containerd_address).startswith('/'):
        raise EnginesError('containerd_address %r: use an absolute socket path (unix:// optional)' % containerd_address)


def docker_present(docker_host):
    """(present, error): a unix socket that exists, or any tcp address (only a connection tells)."""
    target = parse_docker_host(docker_host)
    if target[0] == 'unix':
        why = socket_missing(target[1])
        return why is None, why
    return True, None


def _docker(docker_host, timeout, concurrency, container_ids, deadline, api_version=None, include_stopped=False):
    entry = {'name': 'docker', 'address': docker_host, 'present': False, 'checked': False,
             'reachable': None, 'version': None, 'error': None}
    present, why = docker_present(docker_host)
    entry['present'] = present
    if not present:
        entry['error'] = why
        entry['reachable'] = False
        return entry, [], [], []
    # Loaded only where a dockerd may listen: a node without one does not pay for it.
    from ansible_collections.hangdoctor.runtime.plugins.module_utils._engine_api import hung_container_report
    total = max(0.001, deadline - time.monotonic())
    rep = hung_container_report(docker_host=docker_host, timeout=timeout, concurrency=concurrency,
                                api_version=api_version, all_states=include_stopped, total_timeout=total,
                                wanted=container_ids)
    eng = rep['engine']
    # checked means "we asked", whatever the answer: a dockerd that is there but
    # hung or dead is checked and unreachable (the alert), not "no engine".
    entry.update({'reachable': eng['reachable'], 'version': eng['version'], 'error': eng['error'],
                  'checked': True, 'api_version': eng.get('api_version'),
                  'docker_host': docker_host, 'list_latency_ms': eng.get('list_latency_ms')})
    containers = []
    for c in rep['containers']:
        c = dict(c)
        c['engine'] = 'docker'
        c['container_name'] = c.get('pod_container')
        containers.append(c)
    return entry, containers, rep['hung'], rep['unchecked']


def _containerd_absent(address, namespace):
    """The engine entry of a containerd whose socket is not there, else None."""
    path = containerd_socket_path(address)
    why = socket_missing(path)
    if why is None:
        return None
    return {'name': 'containerd', 'address': path, 'namespace': namespace, 'present': False, 'checked': False,
            'reachable': False, 'version': None, 'error': why}


def _containerd(address, namespace, timeout, concurrency, container_ids, deadline, proc_root):
    absent = _containerd_absent(address, namespace)
    if absent:
        return absent, [], [], []
    # Loaded only where a containerd socket is: a Docker-only node does not pay for it.
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _cri
    rep = _cri.hung_task_report(address=address, namespace=namespace, timeout=timeout, concurrency=concurrency,
                                container_ids=container_ids, deadline=deadline, proc_root=proc_root)
    return rep['engine'], rep['containers'], rep['hung'], rep['unchecked']


class EngineQuery(namedtuple('EngineQuery', ['engines', 'docker_host', 'containerd_address', 'containerd_namespace',
                                             'timeout', 'concurrency', 'container_ids', 'proc_root', 'api_version',
                                             'include_stopped'])):
    """Which engines to ask, where, and how: ENGINES (``auto``: every engine
    present on the node), the addresses, the per-request TIMEOUT, how many
    requests at once, only CONTAINER_IDS (None: every one), the procfs the
    shims are read through, Docker's API_VERSION, and stopped containers too."""


EngineQuery.__new__.__defaults__ = ('auto', DEFAULT_DOCKER_HOST, DEFAULT_CONTAINERD_ADDRESS, DEFAULT_CONTAINERD_NAMESPACE,
                                    5.0, 1024, None, '/proc', None, False)


def check_engines(query=None, deadline=None):
    """Check every engine the EngineQuery asks for.

    Returns {'engines': [{'name', 'address', 'present', 'checked', 'reachable',
    'version', 'error'}], 'containers': [{'id', 'name', 'engine', 'pod_namespace',
    'pod_name', 'container_name', 'responsive', 'latency_ms', 'error', ...}],
    'hung': [ids], 'unchecked': [ids]}.  Returns by DEADLINE (default now +
    timeout + 0.5): the requests end RESULT_MARGIN before it.  Raises
    EnginesError only for options that cannot work.
    """
    q = query or EngineQuery()
    engines, docker_host, containerd_address, containerd_namespace = q[:4]
    timeout, concurrency, container_ids, proc_root, api_version, include_stopped = q[4:]
    wanted = parse_engines(engines)
    timeout = float(timeout)
    if math.isnan(timeout) or timeout <= 0:
        raise EnginesError('timeout must be greater than 0, got %s' % timeout)
    if deadline is None:
        deadline = time.monotonic() + timeout + _deadline.OVERALL_SLACK
    returns_by = deadline
    deadline = max(time.monotonic() + 0.001, deadline - _deadline.RESULT_MARGIN)
    check_addresses(docker_host, containerd_address)

    jobs = {
        'docker': lambda: _docker(docker_host, timeout, concurrency, container_ids, deadline=deadline,
                                  api_version=api_version, include_stopped=include_stopped),
        'containerd': lambda: _containerd(containerd_address, containerd_namespace, timeout, concurrency,
                                          container_ids=container_ids, deadline=deadline, proc_root=proc_root),
    }
    results = {}

    def run(name):
        try:
            results[name] = jobs[name]()
        except Exception as e:  # an engine's surprise must not hide the other engine's answer
            entry = {'name': name, 'address': docker_host if name == 'docker' else containerd_address,
                     'present': None, 'checked': False, 'reachable': None, 'version': None,
                     'error': 'check failed: %r' % (e,)}
            results[name] = (entry, [], [], [])

    # A missing socket is one stat: only an engine that is there gets a thread.
    present = {'docker': docker_present(docker_host)[0],
               'containerd': socket_missing(containerd_socket_path(containerd_address)) is None}
    threads = []
    for name in ENGINES:
        if wanted is None or name in wanted:
            if not present[name]:
                run(name)
                continue
            th = threading.Thread(target=run, args=(name,), name='engine-%s' % name)
            th.daemon = True
            th.start()
            threads.append((name, th))
    for name, th in threads:
        th.join(max(0.0, returns_by - time.monotonic()))

    out = {'engines': [], 'containers': [], 'hung': [], 'unchecked': []}
    for name in ENGINES:
        if wanted is not None and name not in wanted:
            continue
        # Only an engine that is there gets a thread: one that has not
        # returned by the deadline was asked and did not answer.
        entry, containers, hung, unchecked = results.get(name) or (
            {'name': name, 'address': docker_host if name == 'docker' else containerd_address,
             'present': True, 'checked': True, 'reachable': False, 'version': None,
             'error': 'no answer by the overall deadline'}, [], [], [])
        if wanted is not None and name in wanted and entry.get('present') is False and not entry.get('error'):
            entry['error'] = 'not found on this node'
        out['engines'].append(entry)
        out['containers'].extend(containers)
        out['hung'].extend(hung)
        out['unchecked'].extend(unchecked)
    return out


def summary_msg(result):
    """One line an operator can read at 3 a.m."""
    engines = result['engines']
    answered = [e['name'] for e in engines if e.get('checked') and e.get('reachable')]
    down = [e for e in engines if e.get('checked') and not e.get('reachable')]
    missing = [e['name'] for e in engines if e.get('present') is False]
    broken = [e for e in engines if e.get('present') is not False and not e.get('checked')]
    trouble = ['%s UNREACHABLE, not usable: %s' % (e['name'], e.get('error') or 'no answer') for e in down]
    trouble += ['%s not usable: %s' % (e['name'], e.get('error')) for e in broken]
    if not answered:
        if trouble:
            return '; '.join(trouble)
        return 'no container engine found on this node (looked for %s)' % ', '.join(e['name'] for e in engines)
    hung = result['hung']
    parts = ['%d of %d containers hung' % (len(hung), len(result['containers']))]
    if hung:
        names = []
        for c in result['containers']:
            if c['id'] in hung:
                if c.get('pod_name'):
                    names.append('%s/%s/%s' % (c.get('pod_namespace'), c.get('pod_name'), c.get('container_name')))
                else:
                    names.append(c.get('name') or c['id'][:12])
        parts[0] += ' (%s)' % ', '.join(names[:10] + (['...'] if len(names) > 10 else []))
    if result['unchecked']:
        parts.append('%d undecided' % len(result['unchecked']))
    parts.append('checked %s' % ', '.join(answered))
    if missing:
        parts.append('not on this node: %s' % ', '.join(missing))
    return '; '.join(parts + trouble)


def container_check(docker_host=DEFAULT_DOCKER_HOST, containerd_address=DEFAULT_CONTAINERD_ADDRESS,
                    timeout=5.0, containerd_namespace=DEFAULT_CONTAINERD_NAMESPACE, proc_root='/proc'):
    """A function (container id) -> (verified, reason) for after a drain: does
    the engine that runs the container answer for it again within TIMEOUT?
    Docker: an inspect of it; containerd: its pod shim's task pids (the call a
    stuck exec blocks).  ``None`` when no engine on the node knows it.
    Raises EnginesError at once for an address the clients cannot use."""
    check_addresses(docker_host, containerd_address)

    def docker(cid):
        if docker_present(docker_host)[0] is not True:
            return None, 'no dockerd socket'
        from ansible_collections.hangdoctor.runtime.plugins.module_utils._engine_api import inspect_answers
        # one request under one deadline; only an HTTP answer counts as answered
        verified, why = inspect_answers(docker_host, cid, timeout)
        if verified is True and why.startswith('engine answered HTTP 404'):
            return None, 'dockerd does not know %s' % cid[:12]
        return verified, why or 'dockerd answered inspect'

    def containerd(cid):
        if socket_missing(containerd_socket_path(containerd_address)):
            return None, 'no containerd socket'
        from ansible_collections.hangdoctor.runtime.plugins.module_utils import _cri
        tasks = [t for t in _cri.list_tasks(containerd_address, containerd_namespace, proc_root) if t['id'] == cid]
        if not tasks:
            return None, 'containerd (namespace %s) has no task %s' % (containerd_namespace, cid[:12])
        # only a ttrpc answer counts as answered, as only an HTTP answer does for dockerd
        return _cri.task_answers(tasks[0], timeout)

    def check(cid):
        reasons = []
        for probe in (docker, containerd):
            verified, reason = probe(cid)
            if verified is not None:
                return verified, reason
            reasons.append(reason)
        return None, '; '.join(reasons)
    return check
