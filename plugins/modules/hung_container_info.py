#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: hung_container_info
short_description: Find the containers whose engine (dockerd or containerd/CRI) no longer answers for them
version_added: 0.1.0
author: hangdoctor developers (!UNKNOWN)
description:
  - Lists the containers of a Docker daemon (C(GET /containers/json), which keeps working during a
    stuck exec), then inspects every one of them (C(GET /containers/<id>/json)) concurrently, each
    under a hard deadline, and reports which containers did not answer.
  - A container whose C(docker exec) is stuck because C(runc init) blocks writing its crash dump to
    a full stderr pipe makes dockerd (before moby 24) hold that container's lock, so inspect and
    stats of it hang while C(docker ps) works. This module finds those containers in about one
    O(inspect_timeout), whatever the number of hung containers, where a shell loop of C(timeout docker
    inspect) costs one timeout per hung container plus a CLI start per container.
  - Every request has a deadline on a monotonic clock covering connect, send and every read, so a
    daemon that accepts and never answers, or answers one byte at a time, is cut off at the deadline.
    Probes that are still stuck run in daemon threads and never keep the module from returning.
  - The module returns within O(total_timeout) seconds (default O(inspect_timeout) + 0.5) of starting.
  - Speaks HTTP/1.1 to a unix socket or to plain C(tcp://host:port). TLS (C(https://), C(tcp://) with
    client certificates), C(ssh://), C(npipe://) and C(fd://) are not supported; forward such a daemon
    to a local unix socket (C(ssh -L /tmp/docker.sock:/var/run/docker.sock host)) instead.
  - Uses only the Python standard library on the target (no docker SDK, no requests).
  - On containerd (CRI) nodes, the module lists the running tasks from the bundles of the shims of
    containerd at O(containerd_address) in O(containerd_namespace), and asks each container's shim for
    its processes (the call behind C(ctr task ps)) straight over the shim's ttrpc socket, each call under
    the same hard deadline. A pod whose exec is stuck makes its shim stop answering that call (and
    C(ctr task metrics), the CRI stats path) while C(ctr task ls) and the CRI container status still
    answer. Under CRI one shim serves a whole pod, so every container of that pod shows as hung; the
    stuck exec itself is named by M(hangdoctor.runtime.runc_exec_info).
  - With O(engines=auto) every engine present on the node is checked (dockerd when its socket exists,
    containerd when its socket exists). An engine that is not on the node is reported in RV(engines)
    with C(present=false); it is never an error, so the same task runs on Docker, CRI and mixed nodes.
  - To find and drain the stuck C(runc init) behind a hung container, use
    M(hangdoctor.runtime.runc_exec_info) and M(hangdoctor.runtime.runc_pipe_drain).
extends_documentation_fragment:
  - hangdoctor.runtime.attributes
  - hangdoctor.runtime.attributes.INFO_MODULE
  - hangdoctor.runtime.engine
  - hangdoctor.runtime.containerd
  - hangdoctor.runtime.proc
  - hangdoctor.runtime.triage
attributes:
  platform:
    platforms: posix
    support: full
    details:
      - Needs access to the Docker daemon's socket (usually root or the C(docker) group), and for
        containerd to the shims' sockets and C(/proc) (root).
options:
  engines:
    description:
      - Which engines to check. V(auto) checks every engine present on the node.
      - A list of V(docker) and V(containerd) checks those; one that is not on the node is reported
        with C(present=false) in RV(engines), not as a failure.
    type: list
    elements: str
    default: [auto]
  inspect_timeout:
    description:
      - Seconds each request (the version check, the list, and each container's inspect or shim call) may
        take in total, not per read. A probe that gets no whole answer in that time marks the container as hung.
      - A finite number greater than 0 and at most 600.
      - Called O(timeout) in version 0.1.0; that name stays an alias.
    aliases: [timeout]
    type: float
    default: 5.0
  total_timeout:
    description:
      - Seconds the whole module run may take. Containers whose probe could not start or finish inside it
        are reported in RV(unchecked), not in RV(hung).
      - Defaults to O(inspect_timeout) + 0.5. With more hung containers than O(concurrency), raise one of the two.
    type: float
  concurrency:
    description:
      - How many inspect requests are in flight at once (at most half the open-files limit). Each hung container
        keeps one busy until O(inspect_timeout). A request in flight costs a socket, no thread; the default lets
        every container of a large node start its timeout at once.
      - containerd shims are asked at most 64 at a time.
    type: int
    default: 1024
  api_version:
    description:
      - Engine API version to speak, such as C(1.41). V(auto) asks the daemon once (C(GET /version)) and uses its version.
    type: str
    default: auto
  include_stopped:
    description:
      - Also probe containers that are not running. A stuck exec only happens in running ones.
    type: bool
    default: false
  fail_on_unreachable:
    description:
      - Fail the task when an engine that is present on the node (its socket exists) does not answer the
        version check or the container list (connection refused, a stopped daemon). The result still
        carries RV(engines) with the reason.
      - An engine that is not on the node at all never fails the task, unless its address was set
        (O(docker_host), O(containerd_address) or their environment variables) to something other
        than the default, because a mistyped socket path must not pass as "no engine on this node".
      - When V(false), an unreachable daemon is a normal result with RV(engine.reachable=false).
    type: bool
    default: true
notes:
  - Never changes anything; safe in check mode.
  - Docker 24 and later no longer block inspect behind a stuck exec. On them this module finds
    nothing even while an exec is stuck; M(hangdoctor.runtime.runc_exec_info) finds the stuck exec itself.
seealso:
  - module: hangdoctor.runtime.runc_exec_info
  - module: hangdoctor.runtime.runc_pipe_drain
'''

EXAMPLES = r'''
---
- name: Which containers no longer answer docker inspect
  hangdoctor.runtime.hung_container_info:
    inspect_timeout: 3
  register: hung

- name: Show the hung containers with their pods
  ansible.builtin.debug:
    msg: "{{ hung.containers | selectattr('responsive', 'false') | map(attribute='pod_name') | list }}"

- name: Scan a fleet without failing on hosts that have no dockerd
  hangdoctor.runtime.hung_container_info:
    docker_host: unix:///run/docker.sock
    inspect_timeout: 2
    concurrency: 32
    fail_on_unreachable: false
  register: scan

- name: Check only containerd on Kubernetes nodes with a non-default socket
  hangdoctor.runtime.hung_container_info:
    engines: [containerd]
    containerd_address: /run/k3s/containerd/containerd.sock
    inspect_timeout: 3
  register: cri

- name: Fail the play when a container is hung
  ansible.builtin.assert:
    that: scan.hung | length == 0
    fail_msg: "inspect hangs for {{ scan.hung }}; run hangdoctor.runtime.runc_exec_info"
'''

RETURN = r'''
msg:
  description: One line that says what was found or done.
  returned: always
  type: str
  sample: "1 of 12 containers hung (shop/web-7d9f/app); checked containerd; not on this node: docker"
containers:
  description: Every listed container with the outcome of its inspect probe, in the daemon's list order.
  returned: always
  type: list
  elements: dict
  contains:
    engine:
      description: The engine the container belongs to (V(docker) or V(containerd)).
      type: str
      sample: containerd
    container_name:
      description: Kubernetes container name (from the labels, or on containerd the CRI annotations).
      type: str
      sample: web
    pod_sandbox_id:
      description: On containerd, the pod sandbox the container belongs to (its shim serves the whole pod).
      type: str
      sample: 394c0062490665cddaaf787164414b76b50311ca6f28f88589f62d0b97a3a6db
    id:
      description: Full container id.
      type: str
      sample: 3f4e8a1d2c5b6a7980f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6e5f4a3b
    name:
      description: Container name without the leading slash.
      type: str
      sample: k8s_web_web-7d9f_shop_0b1c_0
    image:
      description: Image the container runs.
      type: str
      sample: nginx:1.25
    state:
      description: State from the list (C(running), C(exited), ...).
      type: str
      sample: running
    pod_namespace:
      description: Kubernetes namespace from the C(io.kubernetes.pod.namespace) label, null outside Kubernetes.
      type: str
      sample: shop
    pod_name:
      description: Kubernetes pod name from the C(io.kubernetes.pod.name) label.
      type: str
      sample: web-7d9f
    pod_container:
      description: Kubernetes container name from the C(io.kubernetes.container.name) label.
      type: str
      sample: web
    responsive:
      description:
        - V(true) when inspect answered within the deadline (even with an error status),
          V(false) when it used the whole O(inspect_timeout) without an answer (hung),
          null when it could not be decided (see RV(containers[].error)).
      type: bool
      sample: false
    latency_ms:
      description: Milliseconds the inspect took, or until it was cut off.
      type: int
      sample: 3001
    error:
      description: Why the probe did not succeed, null when it did.
      type: str
      sample: inspect did not answer within 3.0s
    diagnosis:
      description:
        - Only for a hung container (RV(containers[].responsive=false)) with O(triage=true) - why it hangs, read
          from C(/proc) - C(causes) (ids of docs/causes/, for example V(pipe_full_init) and V(engine_lock)), the wait
          C(chain) (engine, shim, runc, runc init, the container's processes; each with pid, comm, state, wchan,
          syscall, age, the fd it blocks on with its peers, and the kernel stack), C(evidence) per cause, the safe
          C(action), and C(done) (always null here, this module changes nothing).
        - Without root (C(/proc) of other processes unreadable) the cause is V(unknown) with the reason in
          C(evidence).
      type: dict
      sample: {"causes": ["pipe_full_init", "engine_lock"], "chain": [], "evidence": {}, "action": "...", "done": null}
hung:
  description: Ids of the containers whose inspect did not answer within O(inspect_timeout).
  returned: always
  type: list
  elements: str
  sample: [3f4e8a1d2c5b6a7980f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6e5f4a3b]
unchecked:
  description:
    - Ids whose probe could not be decided, for example because O(total_timeout) passed before it could
      start or finish, or because the connection failed.
  returned: always
  type: list
  elements: str
  sample: []
engines:
  description: Every engine looked for, whether it is on the node, and whether it was checked.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: V(docker) or V(containerd).
      type: str
      sample: containerd
    address:
      description: The socket or address used.
      type: str
      sample: /run/containerd/containerd.sock
    present:
      description: Whether the engine is on the node (its socket exists).
      type: bool
      sample: true
    checked:
      description:
        - Whether it was asked (its socket is there). A checked engine that did not answer (hung or dead)
          has RV(engines[].reachable=false); an engine that is not on the node is not checked.
      type: bool
      sample: true
    reachable:
      description:
        - Whether it answered.
        - For containerd, null when its shims are running but none of them could be asked (cannot tell,
          not healthy); RV(engines[].error) says why.
      type: bool
      sample: true
    refused_shims:
      description:
        - containerd only, when there are any. Processes that call themselves this containerd's shims but
          do not prove to be the runtime's (namespaces, executable, owner, bundle), with the reasons. Their
          bundles are not read and nothing they claim is reported.
      type: list
      elements: dict
      returned: when a process was refused
      sample: [{"pid": 4242, "reasons": ["containerd shim is in another mnt namespace than containerd"]}]
    version:
      description: Its version, when known.
      type: str
      sample: 1.6.20~ds1
    error:
      description: Why it was not checked or did not answer, null when it answered.
      type: str
      sample: "no socket at /var/run/docker.sock: No such file or directory (ENOENT)"
engine:
  description:
    - Whether and how the Docker daemon answered (kept for playbooks written for Docker-only nodes);
      on a node without dockerd, the containerd entry of RV(engines).
  returned: always
  type: dict
  contains:
    docker_host:
      description: The address used.
      type: str
      sample: unix:///var/run/docker.sock
    reachable:
      description: Whether the daemon answered the version check.
      type: bool
      sample: true
    version:
      description: The daemon's version.
      type: str
      sample: 20.10.24+dfsg1
    api_version:
      description: The Engine API version spoken.
      type: str
      sample: '1.41'
    list_latency_ms:
      description: Milliseconds the container list took.
      type: int
      sample: 12
    error:
      description: Why the daemon could not be used, null when it could.
      type: str
      sample: "GET /version: cannot connect to /var/run/docker.sock: No such file or directory (ENOENT)"
elapsed_seconds:
  description: Seconds the whole check took on the target.
  returned: always
  type: float
  sample: 3.04
'''

import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _common_args as common
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _defaults
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _options
from ansible_collections.hangdoctor.runtime.plugins.module_utils._engine_api import EngineClient
from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import reported
from ansible_collections.hangdoctor.runtime.plugins.module_utils._engines import (
    EngineQuery,
    check_engines,
    parse_engines,
    summary_msg,
)


def main():
    spec = _options.argument_spec(
        _options.ENGINE, _options.CONTAINERD, _options.PROC, _options.TRIAGE,
        engines=dict(type='list', elements='str', default=['auto']),
        total_timeout=dict(type='float'),
        concurrency=dict(type='int', default=1024),
        api_version=dict(type='str', default='auto'),
        include_stopped=dict(type='bool', default=False),
        fail_on_unreachable=dict(type='bool', default=True),
    )
    # 0.1 called it timeout; inspect_timeout is the name every module shares.
    spec['inspect_timeout']['aliases'] = ['timeout']
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    if not p['docker_host']:
        # an empty DOCKER_HOST in the environment means the default, as for the docker CLI
        p['docker_host'] = _defaults.DEFAULT_DOCKER_HOST
    with reported(module):
        common.check_numbers(p)
        _options.ENGINE.values(p)
        _options.CONTAINERD.values(p)
        engines = p['engines'] if p['engines'] != ['auto'] else 'auto'
        parse_engines(engines)
        timeout = p['inspect_timeout']
        # checks docker_host and api_version before any engine is asked
        EngineClient(p['docker_host'], api_version=p['api_version'], timeout=timeout)

        t0 = time.monotonic()
        total = timeout + 0.5 if p['total_timeout'] is None else p['total_timeout']
        result = check_engines(EngineQuery(
            engines=engines, docker_host=p['docker_host'], containerd_address=p['containerd_address'],
            containerd_namespace=p['containerd_namespace'], timeout=timeout, concurrency=p['concurrency'],
            api_version=p['api_version'], include_stopped=p['include_stopped']), deadline=t0 + total)
        result['elapsed_seconds'] = round(time.monotonic() - t0, 3)
        by_name = dict((e['name'], e) for e in result['engines'])
        docker = by_name.get('docker')
        if docker is not None and (docker.get('present') or 'containerd' not in by_name
                                   or not by_name['containerd'].get('present')):
            result['engine'] = dict(docker, docker_host=p['docker_host'])
        else:
            result['engine'] = by_name.get('containerd') or {}
        result['msg'] = summary_msg(result)
        tr = _options.TRIAGE.values(p)
        if tr.triage and result.get('hung'):
            _diagnose(result, _options.PROC.values(p), tr)

        # An engine on the node that does not answer is a failure; one that is not on the node is not,
        # unless its address was set by hand (a typo must not pass as "no engine here").
        explicit = {'docker': p['docker_host'] != _defaults.DEFAULT_DOCKER_HOST,
                    'containerd': p['containerd_address'] != _defaults.DEFAULT_CONTAINERD_ADDRESS}
        unusable = [e for e in result['engines'] if e.get('error') and e.get('reachable') is not True
                    and (e.get('present') or explicit.get(e['name']))]
        if unusable and p['fail_on_unreachable']:
            result['msg'] = '; '.join('%s at %s not usable: %s' % (e['name'], e.get('address'), e['error']) for e in unusable)
            module.fail_json(changed=False, **result)
    module.exit_json(changed=False, **result)


def _diagnose(result, po, tr):
    """Give each hung container its diagnosis (loaded only when one is hung)."""
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs, _stuck_exec, _triage
    why = None
    proc = _procfs.Proc(po.proc_root)
    if os.geteuid() != 0:
        why = 'not root: the processes of the containers cannot be read'
    elif not proc.is_procfs():
        why = 'proc_root %s is not a procfs' % po.proc_root
    diags = {}
    if why is None:
        try:
            scan_opts = _stuck_exec.scan_options(_options.SCAN.values({}), po)
            diags = _triage.diagnose_hung(proc, result, settings=_triage.settings_of(tr, po), scan_opts=scan_opts)
        except _triage.HangdoctorError as e:
            why = str(e)
    for c in result['containers']:
        if c.get('responsive') is False:
            c['diagnosis'] = diags.get(c['id']) or _triage.unknown(why or 'no diagnosis')


if __name__ == '__main__':
    main()
