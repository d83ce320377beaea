#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: runc_pipe_drain
short_description: Repair stuck execs by draining the runc init stderr pipe, keeping every byte as evidence
version_added: 0.1.0
author: hangdoctor developers (!UNKNOWN)
description:
  - Repairs the deadlock where C(runc init) (started by C(runc exec) for an exec probe or C(docker exec))
    blocks writing its Go crash dump to its stderr pipe, because the containerd shim reads that pipe only
    after C(runc exec) returns. While it lasts, dockerd (before moby 24) holds the container's lock, so
    C(docker inspect) and C(docker stats) of that container hang.
  - Targets are the O(stuck_execs) returned by M(hangdoctor.runtime.runc_exec_info), or a fresh diagnosis
    of O(container_ids), or of every container on the host when neither is given.
  - Immediately before acting, every hard signal and the identity (pid and start time, pipe inode) of each
    stuck exec is checked again. Anything that no longer matches, is younger than O(min_age_seconds), or
    whose pipe reader is not a containerd shim is skipped with a reason in RV(skipped_execs).
  - A record whose drain fails (a vanished C(/proc) entry, C(EPERM), a lock that cannot be opened) is
    reported with the reason C(error); the other records are still drained and reported.
  - The workload is repaired even when its evidence cannot be written (a full disk, C(EFBIG)); the drain goes
    on reading, and RV(drained[].evidence_kept_ranges), RV(drained[].evidence_kept_sha256) and
    RV(drained[].evidence_lost_bytes) say exactly what the evidence file kept and what was lost.
  - One drain per pipe at a time on a host, through an exclusive C(flock) per pipe in O(lock_dir), whatever
    O(evidence_dir) each run uses and whether its record names the C(runc init) or the C(runc exec) of the
    pipe; a concurrent run skips that pipe with the reason C(locked).
  - The drain opens C(/proc/PID/fd/2) read-only and non-blocking, checks with C(fstat) that it is the
    recorded pipe, and reads it with C(poll) into an evidence file until no writer is blocked on the pipe
    and it is empty, so that what C(runc exec) writes next (its C(read init-p) error line) still reaches
    the shim. Every byte read is counted and hashed.
  - After each round of drains the drained containers are diagnosed again after O(confirm_interval).
    dockerd starts the next queued exec as soon as the pipe is empty, and while the cause persists (a memory
    cgroup at its limit) it deadlocks again. Up to O(max_rounds) rounds are drained; a container still
    stuck after the last one is reported in RV(recurring).
  - Before draining on a Kubernetes node, check how long the node was NotReady and which pods bound to it
    carry a C(deletionTimestamp), because once the exec lock is released the node may carry out queued deletions.
extends_documentation_fragment:
  - hangdoctor.runtime.attributes
  - hangdoctor.runtime.attributes.LINUX
  - hangdoctor.runtime.engine
  - hangdoctor.runtime.proc
  - hangdoctor.runtime.containerd
  - hangdoctor.runtime.drain
  - hangdoctor.runtime.evidence
attributes:
  check_mode:
    support: full
    details:
      - Reads nothing from the pipes and writes no evidence; returns in RV(would_drain) what would be
        drained, with a non-destructive C(tee(2)) peek of the queued bytes.
  diff_mode:
    support: none
options:
  stuck_execs:
    description:
      - Stuck exec records as returned by M(hangdoctor.runtime.runc_exec_info) in its C(stuck_execs).
      - Each one is verified again before it is drained. Mutually exclusive with O(container_ids).
    type: list
    elements: dict
  container_ids:
    description:
      - Full or leading parts of container ids to diagnose and drain. When neither this nor O(stuck_execs)
        is given, every stuck exec on the host is a target.
    type: list
    elements: str
notes:
  - Needs root (or CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH) to open another process's C(/proc/PID/fd/2).
  - Only the Python standard library is used on the target.
seealso:
  - module: hangdoctor.runtime.runc_exec_info
  - module: hangdoctor.runtime.hung_container_info
'''

EXAMPLES = r'''
---
- name: Diagnose
  hangdoctor.runtime.runc_exec_info:
    min_age_seconds: 60
  register: diag

- name: Drain what the diagnosis found, keep the crash dumps
  hangdoctor.runtime.runc_pipe_drain:
    stuck_execs: "{{ diag.stuck_execs }}"
    evidence_dir: /var/log/hangdoctor
  register: repair
  when: diag.stuck_execs | length > 0

- name: Drain one container, killing a writer that does not move within 20 s
  hangdoctor.runtime.runc_pipe_drain:
    container_ids:
      - 4f2a9c1d7e3b
    timeout: 20
    fallback: kill

- name: What would be drained on this host (reads nothing)
  hangdoctor.runtime.runc_pipe_drain:
  check_mode: true
  register: preview

- name: Fail when a container keeps deadlocking
  ansible.builtin.assert:
    that: repair.recurring | length == 0
    fail_msg: "{{ repair.recurring | map(attribute='hint') | first }}"
  when: repair is not skipped
'''

RETURN = r'''
msg:
  description: One line that says what was found or done.
  returned: always
  type: str
  sample: "drained 4f2a9c1d7e3b (262255 bytes, unblocked True, verified True)"
changed:
  description: Whether any pipe was drained (in check mode, whether any would be).
  returned: always
  type: bool
  sample: true
drained:
  description: One entry per drained pipe.
  returned: always
  type: list
  elements: dict
  contains:
    container_id:
      description: Full id of the container whose exec was stuck.
      type: str
      sample: 4f2a9c1d7e3b0a5c6d8e9f00112233445566778899aabbccddeeff0011223344
    pid:
      description: The blocked writer (a runc init, or runc exec once its runc init died).
      type: int
      sample: 48213
    start_time:
      description: The writer's start time (field 22 of C(/proc/PID/stat)), which pins its identity.
      type: int
      sample: 91234567
    writer:
      description: Which process was the blocked writer.
      type: str
      sample: runc_init
    pipe_inode:
      description: Inode of the drained pipe.
      type: int
      sample: 3324511
    bytes:
      description: Bytes read from the pipe.
      type: int
      sample: 262144
    sha256:
      description: SHA-256 of everything read from the pipe, also when the evidence file was truncated.
      type: str
      sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    evidence_path:
      description: The evidence file (header lines, then the bytes read, then a trailer with count and hash).
      type: str
      sample: /var/log/hangdoctor/4f2a9c1d7e3b-48213-91234567-20250101T120000.000000Z.log
    evidence_truncated:
      description: Whether bytes were elided from the evidence file because of O(max_evidence_bytes).
      type: bool
      sample: false
    evidence_elided_bytes:
      description: How many bytes were elided between the kept head and tail.
      type: int
      sample: 0
    evidence_error:
      description: >-
        Why the evidence file is incomplete or missing (creating or writing it failed, for example a full disk);
        the drain went on and RV(drained[].bytes) and RV(drained[].sha256) still cover everything read.
        C(null) otherwise.
      type: str
      sample: null
    evidence_kept_bytes:
      description: How many of the bytes read the evidence file holds.
      type: int
      sample: 262144
    evidence_kept_ranges:
      description: >-
        Which bytes the evidence file holds, as C([start, end)) offsets in what was read: the head, and past
        O(max_evidence_bytes) the tail.
      type: list
      elements: list
      sample: [[0, 262144]]
    evidence_kept_sha256:
      description: SHA-256 of the kept bytes, in order (the elided marker not included).
      type: str
      sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    evidence_lost_bytes:
      description: >-
        Bytes read but not in the evidence file because writing it failed. Always
        RV(drained[].bytes) = kept + elided + lost.
      type: int
      sample: 0
    evidence_inline:
      description:
        - When the evidence file could not keep every byte (a full disk, an evidence directory that could not be
          created), the first and last bytes read (up to 1 MiB, at most O(max_evidence_bytes)) are carried here
          instead; null when the file has them.
        - C(base64) holds the bytes of C(ranges) (offsets in what was read, end exclusive) one after the other,
          C(sha256) is their hash.
      type: dict
      sample: null
    lock_error:
      description: >-
        Set when the per-pipe lock could not be taken because the lock directory is unusable (for example a
        read-only filesystem); the drain went on without it, which is safe (identity re-checked, every byte kept)
        but a concurrent run may have split the bytes with this one.
      type: str
      sample: null
    error:
      description: >-
        What failed after the pipe was read (the kill of O(fallback=kill), the done marker), or C(null); the
        rest of the entry still holds.
      type: str
      sample: null
    queued_after:
      description: Bytes queued in the pipe when the drain stopped (runc exec's error line, for the shim).
      type: int
      sample: 0
    stop:
      description: >-
        Why the drain stopped: C(writer exited), C(writer settled) (no thread of it in write on the pipe,
        running or in a page fault, for half a second of samples while the pipe was empty), C(timeout), or
        C(killed, ...) after O(fallback=kill).
      type: str
      sample: writer exited
    killed:
      description: Whether the writer was sent SIGKILL (O(fallback=kill)).
      type: bool
      sample: false
    kill_note:
      description: With O(fallback=kill) after a timeout, why the writer was or was not killed; else empty.
      type: str
      sample: ''
    blocked_again:
      description: >-
        The writer had been drained before (a done marker exists) and was found blocked on the pipe again:
        drained again and reported as recurring.
      type: bool
      sample: false
    unblocked:
      description: Whether no writer is blocked on the pipe any more.
      type: bool
      sample: true
    verified:
      description: >-
        Whether the engine running the container answered for it within O(inspect_timeout) after the drain
        (Docker's inspect, or on containerd the pod shim's task pids); C(null) when no engine could be asked
        (see RV(drained[].verify_reason)).
      type: bool
      sample: true
    verify_reason:
      description: Why RV(drained[].verified) is not C(true), or an empty string.
      type: str
      sample: ''
    seconds:
      description: How long the drain took.
      type: float
      sample: 0.042
    round:
      description: In which round this pipe was drained (2 and up means the container deadlocked again).
      type: int
      sample: 1
    recurring:
      description: Whether this container was still stuck after the last round.
      type: bool
      sample: false
    cause:
      description: The diagnosed cause of the crash dump, as in M(hangdoctor.runtime.runc_exec_info).
      type: dict
      sample: {kind: pthread_create_eagain, summary: "runtime/cgo: pthread_create failed", hint: "", oom_kills: 0}
    pod:
      description: Kubernetes pod of the container, when known.
      type: dict
      sample: {namespace: default, name: web-0, container: app}
would_drain:
  description: In check mode, what would be drained. Empty otherwise.
  returned: always
  type: list
  elements: dict
  sample:
    - container_id: 4f2a9c1d7e3b0a5c6d8e9f00112233445566778899aabbccddeeff0011223344
      pid: 48213
      start_time: 91234567
      writer: runc_init
      pipe_inode: 3324511
      queued: 65536
      capacity: 65536
      peek: "runtime/cgo: pthread_create failed: Resource temporarily unavailable\nSIGABRT: abort\n"
      age_seconds: 312.5
      cause: {kind: pthread_create_eagain}
      pod: {namespace: default, name: web-0, container: app}
skipped_execs:
  description:
    - Stuck execs that were not drained, with C(reason) one of C(locked), C(already drained),
      C(no longer matches), C(younger than min_age_seconds), C(pipe reader is not a shim),
      C(malformed record), C(error) (its drain failed; the others went on), and a C(detail).
    - Not named C(skipped), which Ansible reads as "the task was skipped".
  returned: always
  type: list
  elements: dict
  sample:
    - container_id: 4f2a9c1d7e3b0a5c6d8e9f00112233445566778899aabbccddeeff0011223344
      pid: 48213
      reason: younger than min_age_seconds
      detail: stuck for 12.0s < 60s
recurring:
  description: Containers still stuck after O(max_rounds) rounds, with the pids stuck now and a hint.
  returned: always
  type: list
  elements: dict
  sample:
    - container_id: 4f2a9c1d7e3b0a5c6d8e9f00112233445566778899aabbccddeeff0011223344
      rounds: 3
      stuck_pids: [48377]
      hint: "the container deadlocked again after its pipe was drained: ..."
rounds:
  description: How many rounds of drains ran.
  returned: always
  type: int
  sample: 1
errors:
  description: Failures of the run that belong to no single record (looking at drained containers again, retention).
  returned: always
  type: list
  elements: str
  sample: []
evidence_dir_error:
  description: >-
    Why O(evidence_dir) could not be created or opened (a full disk, a read-only or failing filesystem), or null.
    The run then drains anyway and carries the bytes in RV(drained[].evidence_inline). A path or owner that is not
    safe fails the run instead.
  returned: always
  type: str
  sample: null
lock_dir_error:
  description: >-
    Why O(lock_dir) could not be created or opened (a full disk, a read-only filesystem), or null. The run then
    drains without the per-pipe lock (see RV(drained[].lock_error)).
  returned: always
  type: str
  sample: null
retention:
  description: What retention removed in this run.
  returned: always
  type: dict
  sample: {evidence_removed: 2, evidence_removed_bytes: 33554432, locks_removed: 5}
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _common_args as common
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _engines
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _options
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _pipe_drain
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs
from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import reported


def main():
    module = AnsibleModule(
        argument_spec=_options.argument_spec(
            _options.ENGINE, _options.CONTAINERD, _options.PROC, _options.DRAIN, _options.EVIDENCE,
            stuck_execs=dict(type='list', elements='dict'),
            container_ids=dict(type='list', elements='str'),
        ),
        mutually_exclusive=[('stuck_execs', 'container_ids')],
        supports_check_mode=True,
    )
    p = module.params
    with reported(module):
        options = _options.drain_run(p)
        engine_opts, containerd = _options.ENGINE.values(p), _options.CONTAINERD.values(p)
        ids = _options.hex_ids('container_ids', p['container_ids'])
        common.require_root('runc_pipe_drain')
        common.require_fd_access(options.proc.proc_root, 'runc_pipe_drain')
        proc = _procfs.Proc(options.proc.proc_root)
        if not proc.is_procfs():
            module.fail_json(msg='proc_root %s is not a procfs (no stat or self/stat in it)' % options.proc.proc_root)
        # built (and its addresses checked) before anything is drained: a bad
        # docker_host must fail here, not after the drain with its result lost
        engine = _engines.container_check(
            docker_host=engine_opts.docker_host, containerd_address=containerd.containerd_address,
            timeout=engine_opts.inspect_timeout, containerd_namespace=containerd.containerd_namespace,
            proc_root=proc.root)
        result = _pipe_drain.run(proc, options, stuck_execs=p['stuck_execs'], container_ids=ids,
                                 check_mode=module.check_mode, engine=engine)
    result['msg'] = _message(result, module.check_mode)
    module.exit_json(**result)


def _message(result, check_mode):
    parts = []
    for d in result['drained']:
        parts.append('drained %s (%s bytes, unblocked %s, verified %s%s%s)' % (
            (d.get('container_id') or '-')[:12], d.get('bytes'), d.get('unblocked'), d.get('verified'),
            ', recurring' if d.get('recurring') else '',
            ', %s bytes not kept as evidence%s' % (
                d['evidence_lost_bytes'], ' file (head and tail in evidence_inline)' if d.get('evidence_inline') else '')
            if d.get('evidence_lost_bytes') else ''))
    for d in result['would_drain']:
        parts.append('would drain %s (%s bytes queued)' % ((d.get('container_id') or '-')[:12], d.get('queued')))
    for k in result['skipped_execs']:
        parts.append('skipped %s: %s' % ((k.get('container_id') or '-')[:12], k.get('reason')))
    for e in result.get('errors') or []:
        parts.append('error: %s' % e)
    if not parts:
        return 'nothing to drain%s' % (' (check mode)' if check_mode else '')
    return '; '.join(parts)


if __name__ == '__main__':
    main()
