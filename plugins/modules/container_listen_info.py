#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: container_listen_info
short_description: Which TCP ports a container listens on, and whether the node can reach them
version_added: 0.1.0
author: hangdoctor developers (!UNKNOWN)
description:
  - Reads the listening TCP sockets (state LISTEN) of a container's network namespace from
    C(/proc/<pid>/net/tcp) and C(/proc/<pid>/net/tcp6) on the node, and classifies each address as
    C(loopback) (127.0.0.0/8, C(::1), C(::ffff:127.x)), C(wildcard) (C(0.0.0.0), C(::)) or C(specific).
  - An exec probe runs inside the container, where C(localhost) is the container. The C(tcpSocket),
    C(httpGet) and C(grpc) probes that M(hangdoctor.runtime.exec_probe_swap) puts in its place connect
    from the node to the pod IP. A port served only on loopback passes the exec probe and fails the new
    one; this module finds such ports before the kubelet restarts the container for it.
  - Nothing is run in the container (no C(runc exec), which is the operation that deadlocks when
    C(runc init) blocks on its stderr pipe). The container's init pid comes from the Docker Engine API
    (C(GET /containers/<id>/json), C(State.Pid)), or is given with O(pids) on nodes without Docker
    (for example from C(crictl inspect)).
  - With O(probes) (the RV(hangdoctor.runtime.exec_probe_swap#module:probes) of
    M(hangdoctor.runtime.exec_probe_swap)), the running containers are listed and those that run a
    converted probe's container (matched by the Kubernetes labels of dockershim or cri-dockerd, that is
    namespace, container name, and a pod name starting with the workload name) are checked on that
    probe's port.
extends_documentation_fragment:
  - hangdoctor.runtime.attributes
  - hangdoctor.runtime.attributes.INFO_MODULE
  - hangdoctor.runtime.attributes.LINUX
  - hangdoctor.runtime.engine
  - hangdoctor.runtime.containerd
options:
  container_ids:
    description:
      - Docker container ids, unique id prefixes or names.
      - An id the daemon does not know, or a container that is not running, fails the task.
    type: list
    elements: str
    default: []
  cri_container_ids:
    description:
      - containerd (CRI) container ids or unique id prefixes, for example from a pod's
        C(status.containerStatuses[].containerID) without its C(containerd://) prefix. The init pid is read from
        the container's task bundle (C(init.pid)); the shim is not asked, so a shim stuck on a runc exec does not
        stop the check.
      - An id containerd does not know, or a container without a running init, fails the task.
    type: list
    elements: str
    default: []
  pids:
    description:
      - Process ids on the node whose network namespace to read, for containers the Docker Engine does
        not know (containerd or CRI-O nodes).
    type: list
    elements: int
    default: []
  probes:
    description:
      - Probe rows as RV(hangdoctor.runtime.exec_probe_swap#module:probes) returns them. Converted
        C(httpGet), C(tcpSocket) and C(grpc) probes with a numeric port are checked on every running
        container that matches them; probes kept on C(host) 127.0.0.1 (host network) are not.
    type: list
    elements: dict
  ports:
    description:
      - Only report these ports. A listed port nothing listens on is reported with
        C(reachable_from_node) null in RV(containers[].ports).
    type: list
    elements: int
  proc_root:
    description:
      - Where the node's procfs is mounted, for example C(/host/proc) from a privileged pod.
    type: path
    default: /proc
  inspect_timeout:
    description:
      - Seconds each Engine API request may take in total, and the deadline for reading one container's
        socket tables. Called O(timeout) in version 0.1.0; that name stays an alias.
      - An inspect that does not answer in time (a stuck exec holds the container's lock in dockerd before
        moby 24) is reported in RV(containers[].error) and does not fail the task.
    aliases: [timeout]
    type: float
    default: 5.0
notes:
  - Must run as root, to read the socket tables of other users' processes and to reach the Docker socket.
  - All containers of a pod share one network namespace, so a listener of a sidecar counts for the pod.
  - A socket bound to C(::) may be IPv6-only (C(IPV6_V6ONLY)); the table does not show it, so it counts
    as reachable.
  - A port nothing listens on at the time of the check is reported as unknown (null), not as unreachable.
seealso:
  - module: hangdoctor.runtime.exec_probe_swap
'''

EXAMPLES = r'''
---
- name: Which ports of the web container are reachable from the node
  hangdoctor.runtime.container_listen_info:
    container_ids: [web]
  register: listen

- name: Fail when port 8080 is served on loopback only
  ansible.builtin.assert:
    that: listen.containers[0].ports['8080'].reachable_from_node is not false
    fail_msg: "{{ listen.containers[0].ports['8080'] }}"

- name: On a containerd node, by pid (crictl inspect ... | jq .info.pid)
  hangdoctor.runtime.container_listen_info:
    pids: [48213]
    ports: [8080, 9090]
    proc_root: /host/proc

- name: Check the ports of converted probes on a node before rolling them out
  hangdoctor.runtime.container_listen_info:
    probes: "{{ plan.probes }}"
  register: listeners
'''

RETURN = r'''
msg:
  description: One line that says what was found or done.
  returned: always
  type: str
  sample: "1 container(s) or process(es) checked; ports served on loopback only: web-0:8080"
containers:
  description: One entry per container or pid checked, in input order, then the containers matched by O(probes).
  returned: always
  type: list
  elements: dict
  contains:
    container_id:
      description: Full container id; null for O(pids) entries.
      type: str
      sample: 3f4e8a1d2c5b6a7980f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6e5f4a3b
    name:
      description: Container name without the leading slash.
      type: str
      sample: k8s_web_web-7d9f_shop_0b1c_0
    pod_namespace:
      description: Kubernetes namespace from the C(io.kubernetes.pod.namespace) label.
      type: str
      sample: shop
    pod_name:
      description: Kubernetes pod name from the C(io.kubernetes.pod.name) label.
      type: str
      sample: web-7d9f-x2x4q
    pod_container:
      description: Kubernetes container name from the C(io.kubernetes.container.name) label.
      type: str
      sample: web
    pid:
      description: The pid whose network namespace was read; null when the container's inspect did not answer.
      type: int
      sample: 48213
    listening:
      description: Listening TCP sockets (only O(ports) when given).
      type: list
      elements: dict
      contains:
        port:
          description: Local port.
          type: int
          sample: 8080
        address:
          description: Local address.
          type: str
          sample: 127.0.0.1
        family:
          description: C(ipv4) (from C(net/tcp)) or C(ipv6) (from C(net/tcp6)).
          type: str
          sample: ipv4
        scope:
          description: C(loopback), C(wildcard) or C(specific).
          type: str
          sample: loopback
    ports:
      description:
        - Per port (as a string key), whether the node can reach it through the pod IP and the addresses
          it is bound to.
        - C(reachable_from_node) is V(true) when some listener is on a wildcard or non-loopback address,
          V(false) when every listener is on loopback, null when nothing listens on the port.
      type: dict
      sample: {"8080": {reachable_from_node: false, addresses: [127.0.0.1]}, "9090": {reachable_from_node: true, addresses: ["::"]}}
    loopback_only:
      description: Ports served only on loopback.
      type: list
      elements: int
      sample: [8080]
    error:
      description: Why this container could not be checked (its inspect did not answer, its process exited), or null.
      type: str
      sample: null
probe_checks:
  description: One row per converted probe and matching container, when O(probes) is given.
  returned: always
  type: list
  elements: dict
  sample:
    - kind: Deployment
      namespace: shop
      name: web
      container: web
      probe: liveness
      handler: httpGet
      port: 8080
      container_id: 3f4e8a1d2c5b6a7980f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6e5f4a3b
      pod_name: web-7d9f-x2x4q
      pid: 48213
      reachable_from_node: false
      addresses: [127.0.0.1]
      warning: "Deployment shop/web container web liveness probe: the converted httpGet probe connects from the node ..."
      error: null
loopback_only:
  description: Every container port served on loopback only, one entry per container and port.
  returned: always
  type: list
  elements: dict
  sample: [{container_id: 3f4e8a1d2c5b, pod_name: web-7d9f-x2x4q, pid: 48213, port: 8080, addresses: [127.0.0.1]}]
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _cri
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _options
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _engine_api
from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import reported
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _listen
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _listen_cri
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs


def main():
    spec = _options.argument_spec(
        _options.ENGINE, _options.CONTAINERD,
        container_ids=dict(type='list', elements='str', default=[]),
        pids=dict(type='list', elements='int', default=[]),
        cri_container_ids=dict(type='list', elements='str', default=[]),
        probes=dict(type='list', elements='dict'),
        ports=dict(type='list', elements='int'),
        proc_root=dict(type='path', default='/proc'),
    )
    spec['inspect_timeout']['aliases'] = ['timeout']
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    with reported(module):
        ids = [c.strip() for c in p['container_ids'] if c and c.strip()]
        cri_ids = [c.strip() for c in p['cri_container_ids'] if c and c.strip()]
        if not ids and not cri_ids and not p['pids'] and p['probes'] is None:
            module.fail_json(msg='give container_ids, cri_container_ids, pids or probes')
        bad = [c for c in cri_ids if '/' in c or len(c) < 4]
        if bad:
            module.fail_json(msg='cri_container_ids must be container ids or unique id prefixes (4 or more characters): %s'
                             % ', '.join(bad))
        _options.ENGINE.values(p)
        _options.CONTAINERD.values(p)
        bad = [str(x) for x in p['pids'] if x < 1]
        if bad:
            module.fail_json(msg='pids must be positive process ids: %s' % ', '.join(bad))
        bad = [str(x) for x in (p['ports'] or []) if not 0 < x < 65536]
        if bad:
            module.fail_json(msg='ports must be between 1 and 65535: %s' % ', '.join(bad))
        bad = [c for c in ids if '/' in c]
        if bad:
            module.fail_json(msg='container_ids must be ids, id prefixes or names: %s' % ', '.join(bad))
        if os.geteuid() != 0:
            # Unprivileged, other users' net/tcp tables and the Docker socket are
            # out of reach: the check would pass without having looked.
            module.fail_json(msg='container_listen_info must run as root: it reads /proc/PID/net/tcp of container processes')
        proc = _procfs.Proc(p['proc_root'])
        if not proc.is_procfs():
            module.fail_json(msg='proc_root %s is not a procfs (no stat or self/stat in it)' % p['proc_root'])

        client = None
        if ids or p['probes']:
            client = _engine_api.EngineClient(p['docker_host'], timeout=p['inspect_timeout'])
        result = _listen.report(proc, client, container_ids=ids, pids=p['pids'], probes=p['probes'],
                                ports=p['ports'], timeout=p['inspect_timeout'])
        if cri_ids:
            ports = None if p['ports'] is None else sorted(set(p['ports']))
            try:
                tasks = _cri.list_tasks(p['containerd_address'], p['containerd_namespace'], p['proc_root'])
                for cid in cri_ids:
                    pid, ident = _listen_cri.container_pid(cid, p['containerd_address'], p['containerd_namespace'],
                                                           p['proc_root'], tasks=tasks)
                    entry = _listen._container_entry(proc, pid, ports, p['inspect_timeout'],  # pylint: disable=protected-access
                                                     ident=ident)
                    result['containers'].append(entry)
            except (_listen_cri.CriListenError, _cri.CriError, _procfs.ProcError) as e:
                module.fail_json(msg='cri_container_ids: %s' % e)

        loopback = []
        for c in result['containers']:
            for port in c['loopback_only']:
                addresses = c['ports'][str(port)]['addresses']
                loopback.append({'container_id': c['container_id'], 'pod_name': c['pod_name'], 'pid': c['pid'],
                                 'port': port, 'addresses': addresses})
                who = ('container %s (pid %d)' % (c['name'] or c['container_id'], c['pid'])
                       if c['container_id'] else 'process %d' % c['pid'])
                module.warn('%s serves port %d only on %s: a tcpSocket/httpGet/grpc probe from the node cannot reach it'
                            % (who, port, ', '.join(addresses)))
        for c in result['containers']:
            if c['error']:
                module.warn('container %s: %s' % (c['container_id'] or c['pid'], c['error']))
        where = ['%s:%d' % (x['pod_name'] or x['container_id'] or x['pid'], x['port']) for x in loopback[:10]]
        result['msg'] = '%d container(s) or process(es) checked; %s' % (
            len(result['containers']),
            'ports served on loopback only: %s' % ', '.join(where) if where else 'no probe port is served on loopback only')
    module.exit_json(changed=False, loopback_only=loopback, **result)


if __name__ == '__main__':
    main()
