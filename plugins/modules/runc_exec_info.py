#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: runc_exec_info
short_description: Find and prove every stuck runc exec from /proc, and show its crash dump without consuming it
version_added: 0.1.0
author: hangdoctor developers (!UNKNOWN)
description:
  - Finds every C(runc init) (or, once its runc init died, every C(runc exec)) that is blocked writing
    its crash dump to its stderr pipe because the containerd shim reads that pipe only after
    C(runc exec) returns. This deadlock makes C(docker exec), exec probes, C(docker inspect) and
    C(docker stats) of the container hang.
  - Proves each one from /proc alone, with every signal - comm, parent C(runc exec) and an ancestor
    shim (v1 or v2), state C(S), C(/proc/PID/syscall) write or writev on fd 2 (x86_64 and arm64
    numbers), a pipe-write wchan, fd 2 a pipe whose queued bytes reach its capacity, a shim holding
    the same pipe open for reading, and no progress between two samples O(confirm_interval) apart.
  - Processes that match some signals but not all are returned in RV(suspects) with the reason;
    nothing in RV(suspects) is acted on by other modules.
  - Shows the head of the crash dump with tee(2), which copies the pipe's content and leaves the
    pipe exactly as full as before, classifies it, and attaches the kernel's OOM-kill lines for the
    container when C(/dev/kmsg) is readable.
  - Never changes anything. Never reads C(cmdline) or C(environ) of a runc init (its mm lock may be
    held by a stuck page fault); argv of shims and C(runc exec) is read with a deadline.
extends_documentation_fragment:
  - hangdoctor.runtime.attributes
  - hangdoctor.runtime.attributes.INFO_MODULE
  - hangdoctor.runtime.attributes.LINUX
  - hangdoctor.runtime.proc
  - hangdoctor.runtime.scan
  - hangdoctor.runtime.triage
attributes:
  check_mode:
    support: full
  diff_mode:
    support: N/A
  platform:
    platforms: posix
notes:
  - Runs as root; it reads other processes' fds and fdinfo.
  - The returned records can be passed as they are to P(hangdoctor.runtime.runc_pipe_drain#module), which
    re-checks every signal before draining.
seealso:
  - module: hangdoctor.runtime.runc_pipe_drain
'''

EXAMPLES = r'''
---
- name: Find stuck execs on this node
  hangdoctor.runtime.runc_exec_info:
  register: diag

- name: Say which containers are stuck and why
  ansible.builtin.debug:
    msg: "{{ item.container_id[:12] }} ({{ item.pod.namespace }}/{{ item.pod.name }}): {{ item.cause.summary }}"
  loop: "{{ diag.stuck_execs }}"

- name: Only two containers, a faster confirmation, no peek
  hangdoctor.runtime.runc_exec_info:
    container_ids:
      - bbd5e4b5f9c13666dd0ec7ff7afb2c4c2b0ede40a4adf1de43cc31c606f283f5
      - 1d1750ecc627
    confirm_interval: 0.5
    peek_bytes: 0

- name: From a privileged pod with the host's /proc at /host/proc
  hangdoctor.runtime.runc_exec_info:
    proc_root: /host/proc
    min_age_seconds: 60
'''

RETURN = r'''
msg:
  description: One line that says what was found or done.
  returned: always
  type: str
  sample: "1 stuck exec(s): 4f2a9c1d7e3b runc_init pid 4821, pipe 65536/65536 bytes, cause pthread_create_eagain"
stuck_execs:
  description:
    - Every stuck exec that passed every signal. Each can be passed to P(hangdoctor.runtime.runc_pipe_drain#module).
  returned: always
  type: list
  elements: dict
  contains:
    container_id:
      description: The container, from the C(runc exec) argv (last argument).
      type: str
      sample: bbd5e4b5f9c13666dd0ec7ff7afb2c4c2b0ede40a4adf1de43cc31c606f283f5
    writer:
      description:
        - The blocked process; C(role) is C(runc_init), or C(runc_exec) when its runc init died and runc exec
          blocked writing its own error line.
        - C(tid) is present when the thread in write(2) is not the thread-group leader (every thread is looked at).
      type: dict
      sample: {"role": "runc_init", "pid": 15638, "start_time": 61589, "comm": "runc:[2:INIT]", "state": "S", "wchan": "pipe_wait", "syscall": "write"}
    runc_init:
      description: The blocked runc init (identity pinned by pid and start time), or null when runc exec is the blocked writer.
      type: dict
      sample: {"pid": 15638, "start_time": 61589, "age_seconds": 2591990.5, "state": "S", "wchan": "pipe_wait", "syscall": "write", "comm": "runc:[2:INIT]"}
    runc_exec:
      description:
        - The C(runc exec) that waits for it.
        - C(bundle) is the host's view of its bundle directory, set only when it is proven a real C(runc exec) of
          that container - same mount and pid namespaces as its shim, the host's executable, its working directory
          the host's bundle of that id next to the shim's. A look-alike (a container process named runc with a runc
          argv) is a suspect, and its files are never opened.
      type: dict
      sample:
        pid: 15581
        start_time: 61589
        age_seconds: 2591990.6
        argv: [docker-runc, --root, /var/run/docker/runtime-runc/moby, exec, "...", bbd5e4b5f9c13666dd0ec7ff7afb2c4c2b0ede40a4adf1de43cc31c606f283f5]
        bundle: "/proc/11646/root/run/docker/containerd/daemon/io.containerd.runtime.v1.linux/moby/bbd5e4b5f9c1..."
    shim:
      description: The containerd shim above runc exec; C(id) is shim v2's C(-id) (the pod sandbox under CRI), null for v1.
      type: dict
      sample: {"pid": 11646, "start_time": 61553, "version": "v1", "argv": ["docker-containerd-shim", "-namespace", "moby", "-workdir", "..."], "id": null}
    pipe:
      description: The stderr pipe (fd 2); C(queued) bytes (FIONREAD) against its C(capacity) (F_GETPIPE_SZ).
      type: dict
      sample: {"inode": 1070361747, "capacity": 65536, "queued": 65536, "fd": 2}
    readers:
      description: Processes holding the pipe open for reading.
      type: list
      elements: dict
      sample: [{"pid": 11646, "fd": 26, "comm": "docker-containe", "is_shim": true}]
    peek:
      description: The first O(peek_bytes) of the queued crash dump (UTF-8, invalid bytes replaced), copied without consuming them.
      type: str
      sample: "runtime/cgo: pthread_create failed: Resource temporarily unavailable\nSIGABRT: abort\n"
    peek_bytes:
      description: How many bytes RV(stuck_execs[].peek) holds.
      type: int
      sample: 4096
    cause:
      description:
        - Classification of the dump - C(pthread_create_eagain), C(out_of_memory), C(go_runtime_abort) or C(unknown) -
          with a one-line hint and the kernel's OOM lines for the container.
      type: dict
      sample:
        kind: pthread_create_eagain
        summary: "runtime/cgo: pthread_create failed: Resource temporarily unavailable"
        hint: runc init could not start a thread ...
        oom_kills: []
    pod:
      description: Kubernetes pod namespace, name and container name, from the bundle's annotations or Docker's labels; values are null when unknown.
      type: dict
      sample: {"namespace": "default", "name": "web-7d9c", "container": "app"}
    age_seconds:
      description: Age of the blocked writer in seconds.
      type: float
      sample: 2591990.5
    evidence:
      description: The two samples - queued bytes and voluntary context switches - and the interval between them.
      type: dict
      sample: {"queued": [65536, 65536], "voluntary_ctxt_switches": [1, 1], "confirm_interval": 1.0}
    diagnosis:
      description:
        - The named causes of the container's hang (always C(pipe_full_init) first here; more when they hold too),
          its wait chain, the evidence per cause, the safe C(action), and C(done) (always null in this module).
          See docs/causes/ for every cause. Absent with O(triage=false).
      type: dict
      sample:
        causes: [pipe_full_init]
        chain:
          - {role: shim, pid: 11646, comm: containerd-shim, state: S, wchan: futex_wait_queue, syscall: futex,
             age_seconds: 90.1, blocking_fd: null, stack: []}
          - {role: runc_init, pid: 15638, comm: "runc:[2:INIT]", state: S, wchan: pipe_write, syscall: write,
             age_seconds: 60.2, blocking_fd: {fd: 2, kind: pipe, inode: 1070361747,
             peers: [{pid: 11646, comm: containerd-shim, fd: 26, mode: r}]}, stack: ["pipe_write", "vfs_write"]}
        evidence: {pipe_full_init: {writer: {role: runc_init, pid: 15638}}}
        action: "pipe_full_init: drain the pipe ..."
        done: null
suspects:
  description:
    - Processes in write(2) on their stderr that match some signals but not all, with C(reason) (and C(reasons)).
      Same fields as RV(stuck_execs); fields that could not be established are null. Never acted on.
  returned: always
  type: list
  elements: dict
  sample: [{"container_id": null, "reason": "parent is not runc exec; reader is not a shim", "reasons": ["parent is not runc exec", "reader is not a shim"]}]
scanned_processes:
  description:
    - How many processes the scan looked at.
    - With RV(scan_method=shims), only the shims and the container inits their bundles name.
  returned: always
  type: int
  sample: 5087
scan_method:
  description:
    - V(shims) when the containerd shims, found from the runtime state folders, proved that no stuck exec exists
      (no shim holds a full pipe); V(full) when every process was read (see O(scan_method)).
  returned: always
  type: str
  sample: shims
scan_fallback_reason:
  description: Why the full scan ran (a shim holds a full pipe, a shim whose state folder is unknown, ...), or null.
  returned: always
  type: str
  sample: null
scan_seconds:
  description: Wall time of the scan, including RV(confirm_seconds).
  returned: always
  type: float
  sample: 1.0421
confirm_seconds:
  description: Time spent waiting between the two progress samples (0 when nothing needed confirming).
  returned: always
  type: float
  sample: 1.0003
partial:
  description:
    - True when the scan reached its overall deadline (20 seconds) before it examined every possible stuck exec,
      for example on a node whose workloads fake hundreds of C(runc init) processes.
    - Then an empty RV(stuck_execs) does not mean the node is healthy; what was examined but not confirmed is
      listed in RV(suspects).
  returned: always
  type: bool
  sample: false
partial_reason:
  description: Why the scan is partial, or null.
  returned: always
  type: str
  sample: null
unexamined_candidates:
  description: How many possible writers the scan did not examine before its deadline.
  returned: always
  type: int
  sample: 0
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _common_args as common
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _options

from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import reported
from ansible_collections.hangdoctor.runtime.plugins.module_utils._procfs import Proc
from ansible_collections.hangdoctor.runtime.plugins.module_utils._stuck_exec import DiagnosisError, scan, scan_options


def main():
    module = AnsibleModule(
        argument_spec=_options.argument_spec(_options.PROC, _options.SCAN, _options.TRIAGE),
        supports_check_mode=True,
    )
    with reported(module):
        po, sc = _options.PROC.values(module.params), _options.SCAN.values(module.params)
        common.require_root('runc_exec_info')
        common.require_fd_access(po.proc_root, 'runc_exec_info')
        proc = Proc(po.proc_root)
        if not proc.is_procfs():
            module.fail_json(msg='proc_root %s is not a procfs (no stat or self/stat in it)' % po.proc_root)
        try:
            result = scan(proc, scan_options(sc, po))
        except DiagnosisError as e:
            module.fail_json(msg='diagnosis failed: %s' % e)
        tr = _options.TRIAGE.values(module.params)
        if tr.triage and result['stuck_execs']:
            # Loaded only when something is stuck.
            from ansible_collections.hangdoctor.runtime.plugins.module_utils import _triage
            diags = _triage.diagnose_stuck(proc, result['stuck_execs'], settings=_triage.settings_of(tr, po))
            for rec in result['stuck_execs']:
                rec['diagnosis'] = diags.get(rec.get('container_id'))
        result['msg'] = _message(result)
    module.exit_json(changed=False, **result)


def _message(result):
    stuck = result['stuck_execs']
    if not stuck and result.get('scan_method') == 'shims':
        return 'no stuck exec: no containerd shim holds a full pipe (%d processes read)' % result['scanned_processes']
    if not stuck:
        return 'no stuck exec among %d processes%s' % (
            result['scanned_processes'],
            '; %d suspect(s) not confirmed' % len(result['suspects']) if result['suspects'] else '')
    return '%d stuck exec(s): %s' % (len(stuck), '; '.join(
        '%s %s pid %s, pipe %s/%s bytes, cause %s' % (
            (r.get('container_id') or '-')[:12], (r.get('writer') or {}).get('role'), (r.get('writer') or {}).get('pid'),
            (r.get('pipe') or {}).get('queued'), (r.get('pipe') or {}).get('capacity'),
            (r.get('cause') or {}).get('kind')) for r in stuck[:5]))


if __name__ == '__main__':
    main()
