#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: exec_probe_swap
short_description: Turn Kubernetes exec probes into tcpSocket, httpGet or grpc probes
version_added: 0.1.0
author: hangdoctor developers (!UNKNOWN)
description:
  - Every exec probe makes the node start a C(runc exec) each period, and C(runc exec) is where the
    shim stderr pipe deadlock lives (C(runc init) blocked writing its crash dump). This module removes
    that trigger by replacing exec probes that are really network checks with C(tcpSocket),
    C(httpGet) or C(grpc) probes the kubelet runs itself.
  - Controller-side. It talks to no cluster. With O(definitions) (objects as returned by
    M(kubernetes.core.k8s_info)) it returns a guarded JSON patch per object for
    M(kubernetes.core.k8s_json_patch). With O(path) it rewrites manifest files in place.
  - Supported kinds are Deployment, StatefulSet, DaemonSet, ReplicaSet, CronJob, Job and Pod. Pods and
    Jobs cannot be changed through the API, so with O(definitions) their exec probes are only
    reported; in files (static-pod manifests, manifests in a repository) they are converted.
    A ReplicaSet owned by a Deployment is reported too, because the Deployment owns its template.
  - Init containers carry probes only when they are sidecars (C(restartPolicy=Always)); those are
    converted like containers.
  - The patch starts with C(test) operations on the container name and the exact current exec
    command, so it fails instead of overwriting a probe that changed since it was read. It then removes
    C(exec), adds the new handler and records the original probes as JSON in the annotation
    C(hangdoctor.runtime/original-exec-probes). A merge patch is not used because it would leave both
    handlers, which the API server rejects.
  - Every converted probe is validated against the API server's probe rules (exactly one handler,
    C(successThreshold=1) for liveness and startup probes, no C(terminationGracePeriodSeconds) on
    readiness probes, numeric grpc ports, named ports that exist in the container's C(ports) and follow
    the IANA service name format). An invalid result is never emitted; the probe is reported as skipped.
  - Objects owned by Helm, Argo CD, Flux or another field manager that owns the probe get a warning,
    because that tool puts the exec probe back at its next sync. Convert at the source instead.
  - A probe whose port the container does not declare in C(ports) is not converted unless
    O(allow_undeclared_ports) (or the rule's) allows it. Offline the module cannot see the listen address, and
    a server that listens on 127.0.0.1 only (a sidecar, an agent) passes the exec probe and fails the converted
    one, which connects to the pod IP; the kubelet would then restart a healthy container in a loop.
  - Every converted probe carries the listen-address caveat (RV(probes[].caveat)); check it on the node with
    M(hangdoctor.runtime.container_listen_info).
  - In file mode, documents and lines that do not change are written back byte for byte. The converted
    probe's lines are edited in place (comments, quoting and the layout of the rest of the file are kept).
    When a probe cannot be edited line by line (a flow-style mapping, for example), the document is
    rewritten with ruamel.yaml in round-trip mode if it is installed where the module runs, else with
    PyYAML in its original key order, keeping the comment lines around it; RV(objects[].edit) says which.
options:
  definitions:
    description:
      - Kubernetes objects, for example the RV(kubernetes.core.k8s_info#module:resources) of
        M(kubernetes.core.k8s_info).
      - Objects of other kinds are ignored.
    type: list
    elements: dict
  path:
    description:
      - A YAML file or a directory of multi-document manifests (C(*.yaml), C(*.yml), walked
        recursively, hidden files skipped) to rewrite in place.
      - Supports check mode and diff mode.
    type: path
  rules:
    description:
      - Ordered rules; the first rule that matches an exec probe decides its action. A probe no rule
        matches gets O(rules[].action=infer).
    type: list
    elements: dict
    default: []
    suboptions:
      namespace:
        description: Shell-style pattern on the namespace.
        type: str
      kind:
        description: Shell-style pattern on the object kind.
        type: str
      workload:
        description: Shell-style pattern on the object name.
        type: str
      container:
        description: Shell-style pattern on the container name.
        type: str
      probe:
        description: Probe kinds the rule matches.
        type: list
        elements: str
        choices: [liveness, readiness, startup]
      command:
        description: Regular expression searched in the exec command (words joined by spaces, shell-quoted).
        type: str
      action:
        description:
          - V(infer) converts only commands that are certainly network checks and refuses everything
            else with a reason; see the notes.
          - V(tcp), V(http) and V(grpc) force that handler. Port, path, scheme and headers come from the
            rule, or else from the command when it can be read.
          - V(keep) leaves the probe as it is.
        type: str
        choices: [infer, tcp, http, grpc, keep]
        default: infer
      port:
        description: Port number or container port name of the new handler. grpc needs a number.
        type: raw
      path:
        description: HTTP path for V(http).
        type: str
      scheme:
        description: HTTP scheme for V(http).
        type: str
        choices: [HTTP, HTTPS]
      headers:
        description: HTTP headers for V(http), as a dict or a list of C(name)/C(value). Credentials are refused.
        type: raw
      service:
        description: gRPC health service name for V(grpc).
        type: str
      allow_lossy:
        description:
          - With V(infer), turn database pings (C(pg_isready), C(redis-cli ping), C(mysqladmin ping))
            into tcpSocket checks of their port. The database protocol is no longer checked.
          - Also turns C(curl) without C(--fail) into a tcpSocket check of its port (see O(allow_stricter)).
          - Overrides O(allow_lossy) for the probes this rule matches.
        type: bool
      allow_stricter:
        description: Overrides O(allow_stricter) for the probes this rule matches.
        type: bool
      allow_undeclared_ports:
        description: Overrides O(allow_undeclared_ports) for the probes this rule matches.
        type: bool
  allow_undeclared_ports:
    description:
      - Convert exec probes whose port the container does not declare in its C(ports), with a warning.
      - Off by default, because such a port may listen on loopback only, where the converted probe would fail.
      - A rule's O(rules[].allow_undeclared_ports) overrides this for the probes it matches. Rules with an
        explicit action (V(tcp), V(http), V(grpc)) convert such probes with a warning.
    type: bool
    default: false
  allow_lossy:
    description:
      - Convert checks whose meaning a port check only partly keeps into C(tcpSocket) probes, with a warning
        per probe. Database pings (C(pg_isready), C(redis-cli ping), C(mysqladmin ping)) lose the protocol check;
        C(curl) without C(--fail) loses the check that something answers HTTP.
      - A rule's O(rules[].allow_lossy) overrides this.
    type: bool
    default: false
  allow_stricter:
    description:
      - Convert C(curl) without C(--fail) (C(-f), C(--fail-with-body)) to C(httpGet). Such curl exits 0 on any HTTP
        status, while the kubelet's httpGet fails on a status of 400 or more, so the new probe is stricter than the
        old one, and a C(401) from an authentication the probe never sent, or a C(404) on a path that never existed,
        would then restart (liveness) or unready (readiness) the pod. Off by default; the probe is refused with
        RV(probes[].reason_kind=stricter).
      - When both this and O(allow_lossy) apply, C(httpGet) wins (it keeps the path).
      - C(wget), GNU and busybox, exits non-zero on a status of 400 or more (GNU 8, 6 on 401; busybox 1), so wget
        probes are not stricter and convert without this.
      - A rule's O(rules[].allow_stricter) overrides this.
    type: bool
    default: false
  pods:
    description:
      - The running pods (M(kubernetes.core.k8s_info) C(kind=Pod) resources), for O(verify_listeners) and for
        RV(exec_probe_inventory) per node. Pods are matched to a workload by namespace, controller owner reference
        and selector, and must run the same exec command (a pod of another revision proves nothing).
    type: list
    elements: dict
  node_hosts:
    description:
      - Maps Kubernetes node names to inventory host names, for O(verify_listeners). A node not listed is not in
        the inventory, and probes whose pods run only there are unverified.
      - The role fills it from the inventory (each host's C(exec_probe_swap_node_name), else its name).
    type: dict
    default: {}
  verify_listeners:
    description:
      - Cluster mode (O(definitions) with O(pods)). Convert a probe only with evidence from a node that its port
        listens on an address the kubelet reaches. RV(listener_targets) says which container to check on which
        inventory host (with M(hangdoctor.runtime.container_listen_info)); O(listener_evidence) gives back what
        the nodes saw.
      - A port bound to loopback only is refused (RV(probes[].reason_kind=loopback-only)), a port nothing listens
        on is refused (V(not-listening)), a probe with no running pod on an inventory node or whose check failed
        is V(unverified) and converted only with O(allow_unverified).
      - The role turns this on in cluster mode by default. Off here, converted probes say
        RV(probes[].verification=unverified).
    type: bool
    default: false
  listener_evidence:
    description:
      - What the nodes saw, for O(verify_listeners). The registered C(results) of a loop of
        M(hangdoctor.runtime.container_listen_info) over RV(listener_targets) (each with its C(item)), or rows
        C({target, ports, error}). Failed or unreachable results leave their probes unverified.
      - Without it every probe with O(verify_listeners) is unverified.
    type: list
    elements: dict
  allow_unverified:
    description:
      - With O(verify_listeners), convert probes that no node could prove (with a warning), instead of refusing them.
    type: bool
    default: false
  node_name:
    description:
      - In file mode, the node the manifests belong to (static pods), for RV(exec_probe_inventory). Null when unknown.
    type: str
  min_timeout_seconds:
    description:
      - C(timeoutSeconds) for converted probes that had none. Exec probe timeouts were not enforced before
        Kubernetes 1.20, so such probes may have relied on running longer than the 1 second default.
      - A timeout the command itself set (C(curl -m), C(wget -T), C(nc -w)) is used when larger.
    type: int
  backup_dir:
    description:
      - In file mode, copy every file to this directory before rewriting it.
      - Must not be inside a manifest directory, because the kubelet would run a backup of a static-pod manifest.
    type: path
notes:
  - "O(rules[].action=infer) converts C(curl) and C(wget) GETs of a literal URL on the container itself (loopback
    in any spelling, or C(0.0.0.0); a URL without a scheme is http; C(-k) or https gives C(scheme: HTTPS),
    C(-H 'Host: ...') a header, C(-m)/C(-T) a timeout), C(nc -z) and bash C(/dev/tcp) to such a port, and
    C(grpc_health_probe)/C(grpc-health-probe -addr) without TLS flags."
  - Through a shell only when the script is that single command, after what does not change the check
    (C(sh -c -e), C(-ec), C(set -e;), a shebang or comment line, a trailing C(|| exit 1), C(exec), C(timeout N)).
  - C($(VAR)) (expanded by the kubelet) and the shell's C($VAR) are resolved from the container's C(env) when
    it gives a literal value; otherwise the probe is refused saying which variable and why.
  - It refuses, saying the real reason (RV(probes[].reason_kind)), credentials (C(-u), credential headers such
    as C(Authorization), C(apikey), C(X-Api-Key), tokens in the URL query, URL user info, passwords of database
    pings; a credential is never copied into a spec), UDP, client certificates and TLS the kubelet cannot
    speak, unix sockets, other hosts, script files, file, process and application-level checks, pipes and
    command lists, and probes that can never fail (a shell line that is only C($0), C(|| true)), which are
    also reported as warnings.
  - A converted httpGet or tcpSocket probe connects from the node to the pod IP. An application listening
    only on 127.0.0.1 passes the exec probe and fails the new one; the C(hangdoctor.runtime.exec_probe_swap)
    role can check that on the node.
  - The kubelet treats any HTTP status from 200 to 399 as success; C(curl) without C(--fail) accepted any
    status, so it is refused unless O(allow_stricter) or O(allow_lossy). C(curl -k) on a plain C(http://) URL
    converts (C(-k) does nothing there), unless C(-L) may follow a redirect to https.
  - A loopback-only listen address that the container configures itself (C(--web.listen-address=127.0.0.1:9090),
    C(--bind-address=127.0.0.1), an env such as C(LISTEN_ADDR=127.0.0.1:8080), cloud_sql_proxy's C(=tcp:PORT))
    refuses the probes of that port with RV(probes[].reason_kind=loopback-only), naming the setting, whatever
    else the command does.
extends_documentation_fragment:
  - hangdoctor.runtime.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - File mode only; with O(definitions) the patch is the diff.
  platform:
    platforms: posix
    support: full
requirements:
  - PyYAML (a dependency of ansible-core) for O(path)
  - ruamel.yaml (optional) to keep comments and quotes of documents that cannot be edited line by line
seealso:
  - module: kubernetes.core.k8s_info
  - module: kubernetes.core.k8s_json_patch
'''

EXAMPLES = r'''
---
- name: Read the workloads of a namespace
  kubernetes.core.k8s_info:
    kind: Deployment
    namespace: shop
  register: deployments

- name: Plan the conversion of their exec probes
  hangdoctor.runtime.exec_probe_swap:
    definitions: "{{ deployments.resources }}"
    min_timeout_seconds: 5
    rules:
      - workload: "redis-*"
        command: "redis-cli"
        action: tcp
      - container: "legacy"
        action: keep
  register: plan

- name: Apply the guarded patches (check mode is a server-side dry run)
  kubernetes.core.k8s_json_patch:
    kind: "{{ item.kind }}"
    namespace: "{{ item.namespace }}"
    name: "{{ item.name }}"
    patch: "{{ item.patch }}"
  loop: "{{ plan.objects | selectattr('patch') }}"

- name: Rewrite static-pod manifests, backups outside the directory the kubelet reads
  hangdoctor.runtime.exec_probe_swap:
    path: /etc/kubernetes/manifests
    backup_dir: /var/backups/hangdoctor/manifests
'''

RETURN = r'''
objects:
  description: One entry per object of a supported kind, in input order.
  returned: always
  type: list
  elements: dict
  contains:
    api_version:
      description: Object apiVersion, for M(kubernetes.core.k8s_json_patch).
      type: str
      sample: apps/v1
    kind:
      description: Object kind.
      type: str
      sample: Deployment
    namespace:
      description: Object namespace (null for files without one).
      type: str
      sample: shop
    name:
      description: Object name.
      type: str
      sample: web
    file:
      description: Manifest file (file mode only).
      type: str
      sample: /srv/gitops/web.yaml
    document:
      description: Index of the YAML document in RV(objects[].file) (file mode only).
      type: int
      sample: 0
    edit:
      description:
        - How a changed document was written (file mode only, null when it did not change). V(line) replaced
          only the converted probes' lines; V(ruamel) and V(pyyaml) rewrote the document.
      type: str
      choices: [line, ruamel, pyyaml]
      sample: line
    patch:
      description: RFC 6902 JSON patch; empty when nothing is converted.
      type: list
      elements: dict
      sample:
        - {op: test, path: /spec/template/spec/containers/0/name, value: web}
        - {op: test, path: /spec/template/spec/containers/0/livenessProbe/exec/command, value: [curl, -f, "http://localhost:8080/healthz"]}
        - {op: remove, path: /spec/template/spec/containers/0/livenessProbe/exec}
        - {op: add, path: /spec/template/spec/containers/0/livenessProbe/httpGet, value: {path: /healthz, port: 8080}}
        - {op: add, path: /metadata/annotations, value: {"hangdoctor.runtime/original-exec-probes": "{...}"}}
    converted:
      description: Converted probes with C(container), C(probe), C(command), C(action), C(handler), C(warnings)
        and C(caveat) (the listen-address caveat, null with host network).
      type: list
      elements: dict
      sample: [{container: web, probe: liveness, command: [curl, -f, "http://localhost:8080/healthz"], action: infer,
                handler: {httpGet: {path: /healthz, port: 8080}}, warnings: []}]
    skipped:
      description: Exec probes left as they are, with C(container), C(probe), C(command), C(reason) and
        C(reason_kind) (see RV(probes[].reason_kind)).
      type: list
      elements: dict
      sample: [{container: db, probe: readiness, command: [pg_isready], reason: "pg_isready checks the database protocol; ..."}]
    kept:
      description: Exec probes a rule with O(rules[].action=keep) kept.
      type: list
      elements: dict
      sample: []
    warnings:
      description: Ownership by deploy tools and behaviour changes of the converted probes.
      type: list
      elements: str
      sample: ["managed by Helm release shop: the exec probe comes back at the next upgrade or sync; convert it at the source"]
probes:
  description: One row per exec probe found, for reports.
  returned: always
  type: list
  elements: dict
  contains:
    result:
      description: What happened to the probe.
      type: str
      choices: [converted, skipped, kept]
    reason:
      description: Why a probe was skipped or kept, for a person.
      type: str
    reason_kind:
      description:
        - Why a probe was skipped, in one word, for grouping. V(credential), V(udp), V(tls), V(unix-socket),
          V(loopback-only) (the port is not declared), V(remote-host), V(script), V(app-check), V(file-check),
          V(process-check), V(never-fails), V(lossy) (a database ping, see O(rules[].allow_lossy)), V(stricter)
          (curl without C(--fail), see O(allow_stricter)), V(not-listening) and V(unverified) (see
          O(verify_listeners)), V(variable), V(shell), V(unsupported), V(invalid), V(immutable).
      type: str
    caveat:
      description: For a converted probe, the listen-address caveat; null otherwise and with host network.
      type: str
    verification:
      description:
        - For a converted probe, V(verified) (a node showed the port listening on an address the kubelet reaches)
          or V(unverified) (static rules only, in file mode, with O(verify_listeners) off, or by O(allow_unverified)).
        - For a probe the node evidence refused, V(refused), or V(unverified) when it was refused for lack of it.
      type: str
      choices: [verified, unverified, refused]
    evidence:
      description: What the verification saw, for a person.
      type: str
  sample: [{kind: Deployment, namespace: shop, name: web, container: web, probe: liveness, result: converted,
            command: [curl, -f, "http://localhost:8080/healthz"], handler: {httpGet: {path: /healthz, port: 8080}},
            reason: null, reason_kind: null,
            caveat: "the kubelet connects to the pod IP, not to loopback: the new probe passes only if port 8080 listens on ..."}]
summary:
  description: Counts of exec probes by result and verification, and of objects with a patch.
  returned: always
  type: dict
  sample: {probes: 3, converted: 1, verified: 1, unverified: 0, refused_by_evidence: 1, skipped: 1, kept: 1, objects_to_patch: 1}
listener_targets:
  description:
    - With O(verify_listeners), one entry per pod container to check. The role runs
      M(hangdoctor.runtime.container_listen_info) for it, delegated to C(host), and passes the results back as
      O(listener_evidence). Empty otherwise.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: C(namespace/pod/container).
      type: str
    host:
      description: Inventory host of the node that runs the pod.
      type: str
    node:
      description: Kubernetes node name.
      type: str
    namespace:
      description: Pod namespace.
      type: str
    pod:
      description: Pod name.
      type: str
    container:
      description: Container name.
      type: str
    runtime:
      description: From the pod's C(containerID), V(docker) or V(containerd).
      type: str
    container_id:
      description: Container id without the runtime prefix.
      type: str
    ports:
      description: Ports to check.
      type: list
      elements: int
    probes:
      description:
        - The probes this check decides, C({key, port, loopback_ok}) with key C(Kind/namespace/name/container/probe).
        - C(loopback_ok) is true for host-network probes kept on C(host) 127.0.0.1, which a loopback listener answers.
      type: list
      elements: dict
  sample:
    - {id: shop/web-5d9c8b7f6-x2x4q/web, host: node1, node: node1, namespace: shop, pod: web-5d9c8b7f6-x2x4q,
       container: web, runtime: docker, container_id: 3f4e8a1d2c5b, ports: [8080],
       probes: [{key: Deployment/shop/web/web/liveness, port: 8080, loopback_ok: false}]}
exec_probe_inventory:
  description:
    - Per node, the containers that run exec probes, how often and with what timeout, busiest node first, for ranking
      the containers whose probes can hit the runc exec deadlock. From O(pods) (the API) when given, with each pod's
      node; otherwise from O(definitions) and the manifests of O(path), under O(node_name) (null when unknown).
    - Unset fields take the API defaults (C(periodSeconds) 10, C(timeoutSeconds) 1, C(failureThreshold) 3).
  returned: always
  type: list
  elements: dict
  contains:
    node:
      description: Node name; null for manifests without O(node_name).
      type: str
    source:
      description: V(api) (from pods) or V(manifests).
      type: str
    exec_probes:
      description: Number of exec probes on the node.
      type: int
    execs_per_minute:
      description: Sum of 60 / C(periodSeconds) over them, the exec rate the node's runtime sees.
      type: float
    containers:
      description:
        - One entry per container with exec probes, C(namespace), C(pod) (null for workloads read from manifests),
          C(kind) and C(name) (the controller, or the Pod), C(container), C(probes) (each with C(probe), C(command),
          C(period_seconds), C(timeout_seconds), C(failure_threshold), C(execs_per_minute)).
      type: list
      elements: dict
  sample:
    - node: node1
      source: api
      exec_probes: 2
      execs_per_minute: 12.0
      containers:
        - {namespace: shop, pod: db-0, kind: StatefulSet, name: db, container: db,
           probes: [{probe: liveness, command: [pg_isready], period_seconds: 10, timeout_seconds: 1, failure_threshold: 3,
                     execs_per_minute: 6.0}]}
files:
  description: Files rewritten (or that would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [/srv/gitops/web.yaml]
msg:
  description: One line for a person.
  returned: always
  type: str
  sample: "3 exec probes: 1 converted, 1 skipped, 1 kept; 1 objects to patch"
backups:
  description: Backup copies made in O(backup_dir).
  returned: always
  type: list
  elements: str
  sample: [/var/backups/hangdoctor/web.yaml.20250101T120000.bak]
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import reported
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _probe_evidence
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _probe_manifest
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _probe_rules
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _probes


def main():
    rule_spec = dict(
        namespace=dict(type='str'),
        kind=dict(type='str'),
        workload=dict(type='str'),
        container=dict(type='str'),
        probe=dict(type='list', elements='str', choices=['liveness', 'readiness', 'startup']),
        command=dict(type='str'),
        action=dict(type='str', default='infer', choices=list(_probe_rules.ACTIONS)),
        port=dict(type='raw'),
        path=dict(type='str'),
        scheme=dict(type='str', choices=['HTTP', 'HTTPS']),
        headers=dict(type='raw'),
        service=dict(type='str'),
        allow_lossy=dict(type='bool'),
        allow_stricter=dict(type='bool'),
        allow_undeclared_ports=dict(type='bool'),
    )
    module = AnsibleModule(
        argument_spec=dict(
            definitions=dict(type='list', elements='dict'),
            path=dict(type='path'),
            rules=dict(type='list', elements='dict', default=[], options=rule_spec),
            min_timeout_seconds=dict(type='int'),
            allow_undeclared_ports=dict(type='bool', default=False),
            allow_lossy=dict(type='bool', default=False),
            allow_stricter=dict(type='bool', default=False),
            backup_dir=dict(type='path'),
            pods=dict(type='list', elements='dict'),
            node_hosts=dict(type='dict', default={}),
            verify_listeners=dict(type='bool', default=False),
            listener_evidence=dict(type='list', elements='dict'),
            allow_unverified=dict(type='bool', default=False),
            node_name=dict(type='str'),
        ),
        required_one_of=[('definitions', 'path')],
        supports_check_mode=True,
    )
    p = module.params
    if p['min_timeout_seconds'] is not None and p['min_timeout_seconds'] < 1:
        module.fail_json(msg='min_timeout_seconds must be at least 1')
    if p['path'] and not _probe_manifest.HAS_YAML:
        module.fail_json(msg=missing_required_lib('PyYAML'), exception=repr(_probe_manifest.YAML_IMPORT_ERROR))
    if p['listener_evidence'] is not None and not p['verify_listeners']:
        module.fail_json(msg='listener_evidence is only read with verify_listeners=true')
    if p['verify_listeners'] and p['definitions'] is None:
        module.fail_json(msg='verify_listeners needs definitions (cluster mode): manifest files have no running pods')
    if p['verify_listeners'] and p['pods'] is None:
        module.fail_json(msg='verify_listeners needs pods (the running pods, from kubernetes.core.k8s_info kind Pod)')
    bad = sorted(str(k) for k, v in p['node_hosts'].items() if not isinstance(v, str) or not v)
    if bad:
        module.fail_json(msg='node_hosts must map node names to inventory host names; bad entries: %s' % ', '.join(bad))
    for pod in p['pods'] or []:
        if not isinstance(pod.get('metadata'), dict) or not isinstance(pod.get('spec'), dict):
            module.fail_json(msg='pods must be Pod objects with metadata and spec, as kubernetes.core.k8s_info returns them')
    reports, files, diffs, backups, targets, documents = [], [], [], [], [], []
    opts = dict(allow_lossy=p['allow_lossy'], allow_stricter=p['allow_stricter'])
    with reported(module):
        try:
            if p['definitions'] is not None:
                reports.extend(_probes.convert(p['definitions'], p['rules'], 'definitions', p['min_timeout_seconds'],
                                               allow_undeclared_ports=p['allow_undeclared_ports'], **opts))
                if p['verify_listeners']:
                    # what the static rules would convert, checked against the running pods' listeners
                    targets, unverified = _probe_evidence.listener_targets(reports, p['definitions'], p['pods'],
                                                                           p['node_hosts'])
                    evidence = _probe_evidence.read_evidence(p['listener_evidence'])
                    verdicts = _probe_evidence.verdicts(reports, targets, unverified, evidence,
                                                        allow_unverified=p['allow_unverified'])
                    reports = _probes.convert(p['definitions'], p['rules'], 'definitions', p['min_timeout_seconds'],
                                              allow_undeclared_ports=p['allow_undeclared_ports'], verdicts=verdicts, **opts)
            if p['path']:
                allow = _probes.Allow(undeclared_ports=p['allow_undeclared_ports'], lossy=p['allow_lossy'],
                                      stricter=p['allow_stricter'])
                file_reports, files, diffs, backups = _probe_manifest.convert_files(
                    p['path'], p['rules'], p['min_timeout_seconds'], module.check_mode, backup_dir=p['backup_dir'],
                    allow=allow, objects=documents)
                reports.extend(file_reports)
        except (IOError, OSError) as e:
            module.fail_json(msg='cannot read or write manifests: %s' % e)
    if p['pods'] is not None:
        inventory = _probe_evidence.exec_probe_inventory(pods=p['pods'])
    else:
        inventory = _probe_evidence.exec_probe_inventory(objects=(p['definitions'] or []) + documents, node=p['node_name'])
    probes = _probes.flat_report(reports)
    summary = {'probes': len(probes), 'objects_to_patch': len([r for r in reports if r['patch']])}
    for result in ('converted', 'skipped', 'kept'):
        summary[result] = len([r for r in probes if r['result'] == result])
    for verification in ('verified', 'unverified'):
        summary[verification] = len([r for r in probes if r['result'] == 'converted' and r['verification'] == verification])
    summary['refused_by_evidence'] = len([r for r in probes if r['result'] == 'skipped' and r.get('verification')])
    msg = '%d exec probes: %d converted (%d verified on a node), %d skipped, %d kept; %d %s' % (
        summary['probes'], summary['converted'], summary['verified'], summary['skipped'], summary['kept'],
        len(files) if p['path'] else summary['objects_to_patch'],
        ('files to rewrite' if module.check_mode else 'files rewritten') if p['path'] else 'objects to patch')
    result = dict(changed=bool(files), msg=msg, objects=reports, probes=probes, summary=summary, files=files, backups=backups,
                  listener_targets=targets, exec_probe_inventory=inventory)
    if module._diff and diffs:
        result['diff'] = diffs
    module.exit_json(**result)


if __name__ == '__main__':
    main()
