#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: node_doctor
short_description: Check one node for stuck execs and hung containers, and repair it, in one pass
version_added: 0.2.0
author: hangdoctor developers (!UNKNOWN)
description:
  - Does on the node, in one module execution, what the detect and remediate roles need from it. It asks the
    container engine which containers no longer answer (as M(hangdoctor.runtime.hung_container_info)),
    finds the stuck C(runc init) / C(runc exec) processes from C(/proc) (as
    M(hangdoctor.runtime.runc_exec_info)), and in O(mode=remediate) plans and drains their pipes (as
    M(hangdoctor.runtime.runc_pipe_drain)) within the drain guards, then writes the node's Prometheus
    textfile metrics.
  - Publishes the host summary as the host fact C(hangdoctor) (RV(ansible_facts.hangdoctor)), which the
    roles' controller-side report reads; no C(set_fact) task is needed.
  - A healthy node costs one Python start on the target. On a Kubernetes node (a kubelet runs) with
    confirmed stuck execs, O(mode=remediate) drains nothing until it is given the eviction guard's verdict
    in O(guard) (see O(require_guard)); the remediate role asks the Kubernetes API on the controller and
    calls the module a second time on those nodes only.
  - Docker nodes and containerd-CRI Kubernetes nodes without dockerd alike; which engines were asked is in
    C(engines) of RV(ansible_facts.hangdoctor). A node without any engine is a fact in the result, not a failure.
extends_documentation_fragment:
  - hangdoctor.runtime.attributes
  - hangdoctor.runtime.attributes.LINUX
  - hangdoctor.runtime.engine
  - hangdoctor.runtime.containerd
  - hangdoctor.runtime.proc
attributes:
  check_mode:
    support: full
    details:
      - In check mode O(mode=remediate) reports what it would drain (with the queued bytes) and drains
        nothing; no metrics file is written.
  diff_mode:
    support: none
options:
  mode:
    description:
      - V(detect) changes nothing. V(remediate) also drains the pipes of confirmed stuck execs.
    type: str
    choices: [detect, remediate]
    default: detect
  check_engine:
    description:
      - Ask the container engines which containers no longer answer (Docker's inspect; containerd's pod
        shims, the calls a stuck exec blocks). An engine that is not on the node is skipped and said so.
    type: bool
    default: true
  engines:
    description:
      - Which engines to ask. V(auto) asks every engine present on the node; a list of V(docker) and
        V(containerd) asks those.
    type: list
    elements: str
    default: [auto]
  engine_required:
    description:
      - Fail when no container engine on the node answers. By default an unreachable or absent engine is
        a fact in the result.
    type: bool
    default: false
  inspect_concurrency:
    description:
      - How many inspect requests are in flight at once. Between 1 and 256.
    type: int
    default: 16
  container_ids:
    description:
      - Only look at these containers (full ids or hex prefixes). Empty means every container.
    type: list
    elements: str
    default: []
  min_age_seconds:
    description:
      - Writers stuck for less than this are reported as suspects, not as stuck execs.
    type: float
    default: 0
  kernel_log:
    description:
      - Read the kernel log (C(/dev/kmsg), non-blocking) for OOM-kill lines of the stuck containers.
    type: bool
    default: true
  cmdline_timeout:
    description:
      - Seconds one read of a shim's or C(runc exec)'s cmdline may take.
    type: float
    default: 1.0
  drain:
    description:
      - With O(mode=remediate), whether drains may happen at all. V(false) reports every stuck exec as skipped.
    type: bool
    default: true
  drain_min_age_seconds:
    description:
      - Only drain writers stuck for at least this many seconds.
    type: float
    default: 60
  max_drains:
    description:
      - At most this many stuck execs are drained on the node in one run (oldest first).
    type: int
    default: 5
  evidence_dir:
    description:
      - Where the drained bytes are kept (mode C(0700), files C(0600)).
    type: path
    default: /var/log/hangdoctor
  lock_dir:
    description:
      - Host-wide directory of the per-pipe locks and done markers, shared by every run on the host (see
        M(hangdoctor.runtime.runc_pipe_drain)).
    type: path
    default: /run/hangdoctor
  evidence_retention_count:
    description:
      - Keep at most this many evidence files in O(evidence_dir) (oldest removed first); V(0) lifts the bound.
    type: int
    default: 1000
  evidence_retention_bytes:
    description:
      - Keep at most this many bytes of evidence files in O(evidence_dir); V(0) lifts the bound.
    type: int
    default: 1073741824
  evidence_retention_days:
    description:
      - Remove evidence files older than this many days; V(0) lifts the bound.
    type: int
    default: 30
  max_evidence_bytes:
    description:
      - Keep at most this many bytes per drain (head and tail; every byte is still read). V(0) keeps all.
    type: int
    default: 16777216
  drain_timeout:
    description:
      - Seconds one drain may take.
    type: float
    default: 30
  fallback:
    description:
      - V(kill) sends SIGKILL to a writer that is still blocked when O(drain_timeout) ends.
    type: str
    choices: [none, kill]
    default: none
  max_rounds:
    description:
      - How often a container whose deadlock comes back at once is drained again in this run.
    type: int
    default: 3
  require_guard:
    description:
      - When drains must wait for the eviction guard's verdict in O(guard). V(auto) on Kubernetes nodes
        (a C(kubelet) process runs), V(always), or V(never).
    type: str
    choices: [auto, always, never]
    default: auto
  guard:
    description:
      - The eviction guard's verdict (the C(hangdoctor.runtime.kube_guard) filter's output). A verdict with
        C(blocked=true) drains nothing and gives its reason for every stuck exec.
    type: dict
  metrics_dir:
    description:
      - The node_exporter textfile-collector directory to write O(metrics_file) in. V(auto) uses the first
        existing one of C(/var/lib/node_exporter/textfile_collector), C(/var/lib/prometheus/node-exporter),
        C(/var/lib/node-exporter/textfile-collector), and writes nothing when none exists. An empty string
        turns metrics off. A directory given by path is created (mode 0755) when it does not exist.
      - V(auto) writes only in a directory that root (or the user the module runs as) owns, that is not a
        symlink, and that no other user may write in; otherwise C(metrics) of RV(ansible_facts.hangdoctor) says
        why nothing was written. A directory given by path is trusted as given.
      - The metrics file is written through a temporary file created exclusively without following a
        symlink, its mode set on its descriptor, and renamed in place.
    type: str
    default: auto
  metrics_file:
    description:
      - File name of the metrics in O(metrics_dir).
    type: str
    default: hangdoctor.prom
notes:
  - Must run as root (it reads the fds of shims and C(runc) processes).
  - The C(hangdoctor.runtime.detect) and C(hangdoctor.runtime.remediate) roles run this module once per host.
seealso:
  - module: hangdoctor.runtime.runc_exec_info
  - module: hangdoctor.runtime.runc_pipe_drain
  - module: hangdoctor.runtime.hung_container_info
'''

EXAMPLES = r'''
---
- name: Check this node (publishes the hangdoctor fact)
  hangdoctor.runtime.node_doctor:

- name: Repair this node, no Kubernetes guard (not a Kubernetes node)
  hangdoctor.runtime.node_doctor:
    mode: remediate
    require_guard: never
    drain_min_age_seconds: 120

- name: Show what was found
  ansible.builtin.debug:
    msg: "{{ hangdoctor.stuck_execs | map(attribute='pod') | list }}"
'''

RETURN = r'''
msg:
  description: One line that says what the node has and what was done.
  returned: always
  type: str
  sample: "node17: 1 hung container(s), 1 stuck exec(s); web (pod shop/web-7d9f): runc_init pid 4242 stuck 93.0s"
stuck_execs:
  description: The confirmed stuck execs, full records as M(hangdoctor.runtime.runc_exec_info) returns them.
  returned: always
  type: list
  elements: dict
suspects:
  description: Possible stuck execs that were not confirmed, with C(reason).
  returned: always
  type: list
  elements: dict
scanned_processes:
  description: How many processes the scan looked at.
  returned: always
  type: int
  sample: 412
drain:
  description: The drain's result as M(hangdoctor.runtime.runc_pipe_drain) returns it; null when nothing was drained.
  returned: always
  type: dict
ansible_facts:
  description: Facts set on the host.
  returned: always
  type: dict
  contains:
    hangdoctor:
      description:
        - The host summary. Keys C(host), C(mode), C(checked_at), C(engine), C(engines), C(hung) (container ids),
          C(containers) (one row per hung or stuck container), C(stuck_execs) and C(suspects) (compact, with pod, writer,
          pid, age, pipe fill, cause, dump head), C(drained), C(skipped), C(guard), C(guard_needed), C(verify),
          C(kubernetes) (kubelet pid and node name, remediate mode), C(metrics), C(seconds).
        - See docs/roles.md for every field.
      type: dict
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _common_args as common
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _node_doctor
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs


def main():
    module = AnsibleModule(
        argument_spec=common.argument_spec(
            common.ENGINE_ARGS, common.CONTAINERD_ARGS, common.PROC_ARGS,
            engines=dict(type='list', elements='str', default=['auto']),
            mode=dict(type='str', choices=['detect', 'remediate'], default='detect'),
            check_engine=dict(type='bool', default=True),
            engine_required=dict(type='bool', default=False),
            inspect_concurrency=dict(type='int', default=16),
            container_ids=dict(type='list', elements='str', default=[]),
            min_age_seconds=dict(type='float', default=0),
            kernel_log=dict(type='bool', default=True),
            cmdline_timeout=dict(type='float', default=1.0),
            drain=dict(type='bool', default=True),
            drain_min_age_seconds=dict(type='float', default=60),
            max_drains=dict(type='int', default=5),
            evidence_dir=dict(type='path', default='/var/log/hangdoctor'),
            lock_dir=dict(type='path', default='/run/hangdoctor'),
            evidence_retention_count=dict(type='int', default=1000),
            evidence_retention_bytes=dict(type='int', default=1024 * 1024 * 1024),
            evidence_retention_days=dict(type='int', default=30),
            max_evidence_bytes=dict(type='int', default=16 * 1024 * 1024),
            drain_timeout=dict(type='float', default=30),
            fallback=dict(type='str', choices=['none', 'kill'], default='none'),
            max_rounds=dict(type='int', default=3),
            require_guard=dict(type='str', choices=['auto', 'always', 'never'], default='auto'),
            guard=dict(type='dict'),
            metrics_dir=dict(type='str', default='auto'),
            metrics_file=dict(type='str', default='hangdoctor.prom'),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        common.check_numbers(p)
        common.check_containerd_namespace(p['containerd_namespace'])
        ids = common.container_ids(p['container_ids'])
        if '/' in p['metrics_file'] or p['metrics_file'] in ('', '.', '..'):
            raise common.OptionError('metrics_file must be a file name, not a path: %r' % p['metrics_file'])
        if p['metrics_dir'] not in ('', 'auto') and not os.path.isabs(p['metrics_dir']):
            raise common.OptionError('metrics_dir must be an absolute path, auto or empty, got %r' % p['metrics_dir'])
        common.require_root('node_doctor')
        common.require_fd_access(p['proc_root'], 'node_doctor')
    except common.OptionError as e:
        module.fail_json(msg=str(e))
    proc = _procfs.Proc(p['proc_root'])
    if not proc.is_procfs():
        module.fail_json(msg='proc_root %s is not a procfs (no stat or self/stat in it)' % p['proc_root'])
    try:
        result = _node_doctor.run(
            proc, mode=p['mode'], docker_host=p['docker_host'], inspect_timeout=p['inspect_timeout'],
            inspect_concurrency=p['inspect_concurrency'], ask_engine=p['check_engine'],
            engines=p['engines'] if p['engines'] != ['auto'] else 'auto',
            containerd_address=p['containerd_address'], containerd_namespace=p['containerd_namespace'],
            engine_required=p['engine_required'], container_ids=ids, min_age_seconds=p['min_age_seconds'],
            confirm_interval=p['confirm_interval'], peek_bytes=p['peek_bytes'], kernel_log=p['kernel_log'],
            cmdline_timeout=p['cmdline_timeout'], drain=p['drain'],
            drain_min_age_seconds=p['drain_min_age_seconds'], max_drains=p['max_drains'],
            evidence_dir=p['evidence_dir'], max_evidence_bytes=p['max_evidence_bytes'], lock_dir=p['lock_dir'],
            evidence_retention_count=p['evidence_retention_count'],
            evidence_retention_bytes=p['evidence_retention_bytes'],
            evidence_retention_days=p['evidence_retention_days'],
            drain_timeout=p['drain_timeout'], fallback=p['fallback'], max_rounds=p['max_rounds'],
            require_guard=p['require_guard'], guard=p['guard'], metrics_dir=p['metrics_dir'],
            metrics_file=p['metrics_file'], check_mode=module.check_mode)
    except (_node_doctor.NodeDoctorError, _procfs.ProcError) as e:
        module.fail_json(msg=str(e))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
