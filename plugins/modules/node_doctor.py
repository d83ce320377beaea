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
  - Names the cause of every container that hangs (docs/causes/) - a stuck exec, a frozen cgroup, a runc init
    waiting on C(exec.fifo), processes in D state, a container blocked on its stdout, a stopped shim, the engine's
    container lock, a pile of stale execs - with its wait chain and evidence, read from C(/proc) for those
    containers only (O(triage)).
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
  - hangdoctor.runtime.scan
  - hangdoctor.runtime.drain.node_doctor
  - hangdoctor.runtime.evidence
  - hangdoctor.runtime.metrics
  - hangdoctor.runtime.engine_check
  - hangdoctor.runtime.guard
  - hangdoctor.runtime.stacks
  - hangdoctor.runtime.triage
  - hangdoctor.runtime.triage_actions
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
notes:
  - Must run as root (it reads the fds of shims and C(runc) processes).
  - The C(hangdoctor.runtime.detect) and C(hangdoctor.runtime.remediate) roles run this module once per host.
  - With O(capture_stacks=true), on a node with a hung or stuck container (never on a healthy one), dockerd,
    containerd and the containers' shims get SIGUSR1 once (see O(stacks_min_interval)); their goroutine dumps
    are kept in O(evidence_dir) as C(stacks-<kind>-<pid>-<starttime>-<how>-<utc stamp>.log) and summarised in
    C(stacks) of RV(ansible_facts.hangdoctor).
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

- name: Repair this node and thaw a cgroup frozen behind the engine's back
  hangdoctor.runtime.node_doctor:
    mode: remediate
    require_guard: never
    thaw: true

- name: Check this node and keep the goroutine stacks of the daemons behind a hung container
  hangdoctor.runtime.node_doctor:
    capture_stacks: true
    stacks_min_interval: 3600

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
scan_method:
  description: V(shims) when the containerd shims proved that no stuck exec exists, V(full) when every process was read.
  returned: always
  type: str
  sample: shims
scan_fallback_reason:
  description: Why the full scan ran, or null.
  returned: always
  type: str
  sample: null
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
          C(containers) (one row per hung or stuck container, and per container whose processes the triage found in
          a named cause although the engine answers for it), C(stuck_execs) and C(suspects) (compact, with pod, writer,
          pid, age, pipe fill, cause, dump head), C(drained), C(skipped), C(guard), C(guard_needed), C(verify),
          C(kubernetes) (kubelet pid or null, node name, and what C(found) it, remediate mode), C(metrics), C(seconds).
        - With O(triage=true) each row of C(containers) has C(causes) (the ids of docs/causes/) and C(diagnosis) -
          C(causes), the wait C(chain) (links with C(role) engine, shim, runc, runc_init or process; C(pid), C(comm),
          C(state), C(wchan), C(syscall), C(age_seconds), C(blocking_fd) with C(fd), C(kind) pipe, fifo, socket or
          file, C(inode) and the C(peers) holding its other end, and the kernel C(stack)), C(evidence) per cause, the
          safe C(action), and C(done) (what O(thaw) or O(reap_stale_execs) did, else null).
        - >-
          With O(capture_stacks=true) and a hung or stuck container, C(stacks) (also in C(diagnosis.evidence.stacks) of
          each row of C(containers)) with C(files) (C(path), C(sha256), C(bytes), C(source), C(pid), C(kind),
          C(goroutines), C(fingerprints), C(groups)), C(fingerprints) (the blocking chain as stable strings, for example
          C(dockerd: ContainerInspect waits for the container lock held by ContainerExecStart -> containerd Exec)),
          C(signalled), C(refused) and C(not_collected) (C(pid), C(reason)), and C(retention) (C(removed) and
          C(removed_bytes): older goroutine-stack files removed by O(stacks_retention_count),
          O(stacks_retention_bytes) and O(stacks_retention_days), or C(error)).
        - See docs/roles.md for every field.
      type: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _common_args as common
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _node_doctor
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _options
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs
from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import reported


def main():
    module = AnsibleModule(
        argument_spec=_options.argument_spec(
            _options.ENGINE, _options.CONTAINERD, _options.PROC, _options.SCAN,
            (_options.DRAIN, _options.NODE_DOCTOR_DRAIN_NAMES), _options.EVIDENCE, _options.METRICS,
            _options.ENGINE_CHECK, _options.GUARD, _options.STACKS, _options.TRIAGE, _options.TRIAGE_ACTIONS,
            mode=dict(type='str', choices=['detect', 'remediate'], default='detect'),
        ),
        supports_check_mode=True,
    )
    with reported(module):
        opts = _node_doctor.options(module.params)
        common.require_root('node_doctor')
        common.require_fd_access(opts.proc.proc_root, 'node_doctor')
        proc = _procfs.Proc(opts.proc.proc_root)
        if not proc.is_procfs():
            module.fail_json(msg='proc_root %s is not a procfs (no stat or self/stat in it)' % opts.proc.proc_root)
        result = _node_doctor.run(proc, opts, check_mode=module.check_mode)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
