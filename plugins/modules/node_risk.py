#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: node_risk
short_description: Tell before it hangs whether a node will deadlock on the next runc init crash dump, and where
version_added: 0.3.0
author: hangdoctor developers (!UNKNOWN)
description:
  - No containerd, runc or Docker version fixes the pipe deadlock (the shim reads an exec's stderr only after
    C(runc exec) returns). What decides whether a node hangs can be seen on the node before the hang; this
    module reports it, by reason.
  - B(Pipe capacity as the shim gets it.) The exec's stderr pipe is created by the shim, so for each engine's
    shims (and each containerd, whose next shim inherits its credentials) a short-lived child takes their uid,
    gids and capabilities (from C(/proc/PID/status)), creates a pipe and reads its C(F_GETPIPE_SZ). The kernel
    cuts a user's new pipes to one or two pages past C(fs.pipe-user-pages-soft) and exempts, on current kernels,
    processes with C(CAP_SYS_RESOURCE) or C(CAP_SYS_ADMIN), so a root shim keeps 64 KiB, a rootless engine's shim
    does not. A crash dump of RV(pipe.engines[].deadlock_dump_bytes) or more then deadlocks. How many pipes
    that user holds is counted from C(/proc/*/fd) links (readlink only, no pipe is opened).
  - B(Container headroom.) For every container (the children of the shims), its pids cgroup (C(pids.max) vs
    C(pids.current)) and memory cgroup (limit vs usage, OOM counters), cgroup v1 and v2. A container at its pids
    limit or near its memory limit is where a new C(runc init) fails C(pthread_create) and writes the dump.
    Containers are named with pod and container (CRI annotations, Docker labels and names) and sorted by risk,
    containers that run exec probes first.
  - B(Version advisories.) C(runc) (and the Go it was built with), C(containerd), C(dockerd), the v2 shim and the
    kernel, matched against the table shipped in the collection (dated, each row with its upstream links; see
    the runbook). Only root-owned binaries of the host (this module's mount namespace is pid 1's) are run, with a
    deadline and a clean environment; their output is cached by inode and mtime.
  - Writes the risk metrics (C(hangdoctor_pipe_capacity_bytes), C(hangdoctor_container_pids_headroom),
    C(hangdoctor_advisory), C(hangdoctor_node_at_risk)) to its own textfile next to node_doctor's.
  - With O(mitigate=true), raises C(fs.pipe-user-pages-soft) when an engine's capacity has collapsed, persisted in
    O(sysctl_file) with a backup of the previous file; never lowers it.
extends_documentation_fragment:
  - hangdoctor.runtime.attributes
  - hangdoctor.runtime.attributes.LINUX
  - hangdoctor.runtime.risk
attributes:
  check_mode:
    support: full
    details:
      - Reports what O(mitigate=true) would change; the version cache is not written.
  diff_mode:
    support: full
options:
  proc_root:
    description:
      - The procfs to read, for example C(/host/proc) from a privileged pod that mounts the host's C(/proc).
      - Version advisories are only checked when this module runs in the host's mount namespace.
    type: path
    default: /proc
  cgroup_root:
    description:
      - Where the cgroup hierarchies are mounted (cgroup v1 controllers under it, or the v2 unified hierarchy).
    type: path
    default: /sys/fs/cgroup
  metrics_dir:
    description:
      - The node_exporter textfile-collector directory to write O(risk_metrics_file) in. V(auto) uses the first
        existing one of C(/var/lib/node_exporter/textfile_collector), C(/var/lib/prometheus/node-exporter),
        C(/var/lib/node-exporter/textfile-collector), and writes nothing when none exists. An empty string turns
        metrics off. A directory given by path is created when it does not exist.
      - V(auto) writes only in a directory that root owns and no other user may write in.
    type: str
    default: auto
notes:
  - Run as root (the probe takes other users' credentials).
  - Counting a user's pipes reads every process's C(status) and C(fd) links; it stops after 5 seconds and says
    so in RV(pipe.engines[].user_pipes_partial).
seealso:
  - module: hangdoctor.runtime.node_doctor
  - module: hangdoctor.runtime.runc_pipe_drain
'''

EXAMPLES = r'''
---
- name: Is this node at risk of the pipe deadlock?
  hangdoctor.runtime.node_risk:
  register: risk

- name: Say why
  ansible.builtin.debug:
    msg: "{{ risk.msg }}"

- name: Only the pipe capacity, and raise the soft limit when it has collapsed
  hangdoctor.runtime.node_risk:
    risk_checks: [pipe]
    mitigate: true
  check_mode: true
  diff: true

- name: Containers whose exec probes are known are listed first
  hangdoctor.runtime.node_risk:
    risk_checks: [headroom]
    exec_probe_containers: [shop/web-7d9f/app, 3f2a9c]
'''

RETURN = r'''
msg:
  description: One line with the verdict and its reasons.
  returned: always
  type: str
  sample: "node at risk (pipe_capacity): docker-uid1000: 8192 bytes"
at_risk:
  description: The reasons the node is at risk, among V(pipe_capacity), V(container_headroom), V(advisory); empty when not.
  returned: always
  type: list
  elements: str
reasons:
  description: Details per reason.
  returned: always
  type: dict
pipe:
  description: The pipe capacity per engine and credentials; null when not checked.
  returned: always
  type: dict
  contains:
    limits:
      description: C(soft_pages), C(hard_pages) (fs.pipe-user-pages-*), C(max_size), C(page_size).
      type: dict
    engines:
      description: One entry per engine and credential set.
      type: list
      elements: dict
      contains:
        engine:
          description: V(docker), V(containerd); an engine whose shims do not run as root in the host's user
            namespace carries the uid (V(docker-uid1000)).
          type: str
        pids: {description: "The shims (or containerd) with these credentials.", type: list, elements: int}
        uid: {description: "Real uid.", type: int}
        capabilities_exempt: {description: "Whether a current kernel exempts these credentials from the soft limit.", type: bool}
        capacity: {description: "Bytes of the pipe the probe child created with these credentials.", type: int}
        default_capacity: {description: "A pipe's capacity below the soft limit (16 pages).", type: int}
        collapsed: {description: "Whether RV(pipe.engines[].capacity) is below the default (null when it cannot be told).", type: bool}
        deadlock_dump_bytes: {description: "A crash dump of this many bytes or more blocks runc init.", type: int}
        user_pipes: {description: "Distinct pipes held by the processes of that uid.", type: int}
        user_pipes_partial: {description: "Whether counting stopped at its deadline (the count is then a lower bound).",
          type: bool}
        user_pages_estimate: {description: "RV(pipe.engines[].user_pipes) times 16 pages (an upper estimate).", type: int}
        soft_limit_fraction: {description: "The estimate over the soft limit.", type: float}
        error: {description: "Why the probe failed, or null.", type: str}
        probe_note: {description: "A limit of the probe (capabilities this module lacks), or null.", type: str}
    at_risk: {description: "Whether any engine's capacity collapsed.", type: bool}
headroom:
  description: Containers sorted by risk (exec-probe containers first); null when not checked.
  returned: always
  type: dict
  contains:
    containers:
      description: One entry per running container.
      type: list
      elements: dict
      contains:
        container_id: {description: "Full id.", type: str}
        name: {description: "Docker name or container name.", type: str}
        pod_namespace: {description: "Pod namespace (CRI annotations or Docker labels).", type: str}
        pod_name: {description: "Pod name.", type: str}
        container_name: {description: "Container name in the pod.", type: str}
        cgroup_version: {description: "1 or 2.", type: int}
        pids_max: {description: "pids.max (null for no limit).", type: int}
        pids_current: {description: "pids.current.", type: int}
        pids_headroom: {description: "pids.max - pids.current (null for no limit).", type: int}
        memory_limit: {description: "Memory limit in bytes (null for no limit).", type: int}
        memory_usage: {description: "Memory usage in bytes.", type: int}
        memory_headroom_bytes: {description: "Limit minus usage (null for no limit).", type: int}
        memory_events: {description: "OOM counters: C(max), C(oom), C(oom_kill) (v2); C(max) (failcnt), C(oom_kill) (v1)."
          , type: dict}
        memory_events_growth: {description: "Increase of each memory event counter since the previous run (see
          O(risk_state_file)).", type: dict}
        pids_limit_cgroup: {description: "The cgroup whose pids limit is the tightest (the container's, or its pod's).",
          type: str}
        memory_limit_cgroup: {description: "The cgroup whose memory limit is the tightest.", type: str}
        risk_reasons: {description: "V(pids_at_limit), V(pids_low_headroom), V(memory_near_limit),
          V(memory_events_growing) (the memory cgroup hit its limit or OOM-killed since the previous run),
          V(memory_oom_seen) (counters above 0, not by itself a risk).",
          type: list, elements: str}
        at_risk: {description: "Whether a new runc init is likely to fail to create a thread.", type: bool}
        exec_probe: {description: "Whether the container runs exec probes (given, or a runc exec seen now).", type: bool}
        risk_score: {description: "Higher is nearer a failing runc init.", type: float}
    at_risk: {description: "Ids of the containers at risk, in the same order.", type: list, elements: str}
    state: {description: "C(path), C(written), C(error) of O(risk_state_file).", type: dict}
versions:
  description: Versions and matching advisories; null when not checked.
  returned: always
  type: dict
  contains:
    components:
      description: C(component), C(path), C(version), C(go_version), C(error) per binary found.
      type: list
      elements: dict
    advisories:
      description: Matching rows of the table, C(id), C(component), C(version), C(problem), C(fixed_in), C(links),
        C(severity) (V(warning), or V(info) for the note that no version fixes the pipe deadlock).
      type: list
      elements: dict
    kernel: {description: "The running kernel's release.", type: str}
    note: {description: "No version fixes the pipe deadlock.", type: str}
    checked_table: {description: "When the advisory table was checked against upstream.", type: str}
    skipped: {description: "Why no binary was run, or null.", type: str}
    cache: {description: "C(path), C(hits), C(written).", type: dict}
mitigation:
  description: What O(mitigate=true) did or would do; null without it.
  returned: always
  type: dict
  contains:
    action: {description: "V(raise) or V(none).", type: str}
    reason: {description: "Why.", type: str}
    before: {description: "The live soft limit before.", type: int}
    after: {description: "The live soft limit after.", type: int}
    file: {description: "O(sysctl_file).", type: str}
    backup: {description: "Copy of the previous O(sysctl_file), or null.", type: str}
    overridden_by: {description: "Other sysctl files read after O(sysctl_file) that set a lower value: they win at
      boot.", type: list, elements: dict}
metrics:
  description: C(path), C(written), C(error), C(reason) of the risk metrics file.
  returned: always
  type: dict
ansible_facts:
  description: The host fact C(hangdoctor_node_risk), the compact verdict the detect and risk roles aggregate.
  returned: always
  type: dict
  contains:
    hangdoctor_node_risk:
      description: C(at_risk) (reasons), C(reasons) (details, at most 10 per reason), C(pipe_capacity) (bytes per engine),
        C(containers_at_risk), C(advisories) (ids of warning rows), C(checked_at) (Unix time).
      type: dict
seconds:
  description: How long the checks took.
  returned: always
  type: float
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _common_args as common
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _node_risk
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _options
from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import reported
from ansible_collections.hangdoctor.runtime.plugins.module_utils._procfs import Proc


def main():
    module = AnsibleModule(
        argument_spec=_options.argument_spec(
            _options.RISK,
            proc_root=dict(type='path', default='/proc'),
            cgroup_root=dict(type='path', default='/sys/fs/cgroup'),
            metrics_dir=dict(type='str', default='auto'),
        ),
        supports_check_mode=True,
    )
    with reported(module):
        opts = _options.RISK.values(module.params)
        metrics_dir = _options.metrics_dir('metrics_dir', module.params['metrics_dir'])
        if opts.mitigate and 'pipe' not in opts.risk_checks:
            module.fail_json(msg='mitigate needs the pipe check: add pipe to risk_checks')
        common.require_root('node_risk')
        proc = Proc(module.params['proc_root'])
        if not proc.is_procfs():
            module.fail_json(msg='proc_root %s is not a procfs (no stat or self/stat in it)' % module.params['proc_root'])
        result = _node_risk.run(proc, opts, cgroup_root=module.params['cgroup_root'], check_mode=module.check_mode)
        result['mitigation'] = None
        changed = False
        if opts.mitigate:
            result['mitigation'] = _node_risk.mitigation(result, opts, proc.root, module.check_mode)
            changed = result['mitigation']['changed']
            if module._diff and result['mitigation']['diff']:
                result['diff'] = result['mitigation']['diff']
        if module.check_mode:
            result['metrics'] = {'path': None, 'written': False, 'error': None, 'reason': 'check mode'}
        else:
            result['metrics'] = _node_risk.write_metrics(result, metrics_dir, opts.risk_metrics_file)
        result['msg'] = _message(result)
        result['ansible_facts'] = {'hangdoctor_node_risk': _node_risk.host_fact(result)}
    module.exit_json(changed=changed, **result)


def _message(result):
    if not result['at_risk']:
        return 'node not at risk (%s checked)' % ', '.join(k for k in ('pipe', 'headroom', 'versions') if result[k] is not None)
    return 'node at risk (%s): %s' % (', '.join(result['at_risk']), '; '.join(
        '; '.join(result['reasons'][r][:3]) for r in result['at_risk']))


if __name__ == '__main__':
    main()
