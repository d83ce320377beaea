# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write docs/causes/<id>.md, one page per cause of a hung container, from the
one table of causes (CAUSES in plugins/module_utils/_triage.py: what it is,
what proves it, what is safe to do), with where it was seen and how the
harness reproduces it.

    python3 scripts/gen_cause_docs.py          # write them
    python3 scripts/gen_cause_docs.py --check  # exit 1 when a page differs

tests/unit/plugins/module_utils/test__triage.py runs the check.
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'utils'))

from colltree import collections_path  # noqa: E402

sys.path.insert(0, collections_path())

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _triage  # noqa: E402

SEEN = {
    'pipe_full_init': 'opencontainers/runc#2530, containerd/containerd#4434, kubernetes/kubernetes#45419',
    'frozen_cgroup': 'opencontainers/runc#4481, #3663, #3448',
    'exec_fifo_wait': 'opencontainers/runc#2828, #3502',
    'uninterruptible_io': 'moby/moby#41427, opencontainers/runc#2314, moby/moby#40817',
    'stdio_stall': 'containerd/containerd#12462, #4509, #9342, #7289, canonical/lxd#12536',
    'shim_unresponsive': 'containerd/containerd#2438, #2709, #3529, #7561, #10058',
    'engine_lock': 'docker/for-linux#543, moby/moby#36661, #39344, #42437, #44300, #46782',
    'exec_pileup': 'kubernetes/kubernetes#110070, #124226, #81042, containerd/containerd#7802, #9568',
    'unknown': '-',
}
REPRODUCED = {
    'pipe_full_init': 'the fault runtime crashes an exec\'s runc init with a dump larger than its stderr pipe '
                      '(test_pipe_deadlock_is_pipe_full_init_and_engine_lock)',
    'frozen_cgroup': 'FROZEN written to the container\'s freezer.state; the decoy is a `docker pause`d container, which '
                     'is never named frozen_cgroup nor thawed (test_frozen_cgroup_is_named_and_thawed_only_when_asked, '
                     'test_decoy_engine_paused_container_is_not_frozen_cgroup)',
    'exec_fifo_wait': 'the fault runtime holds `runc start`: the created container\'s runc init waits opening exec.fifo '
                      '(test_runc_init_waiting_on_exec_fifo_is_exec_fifo_wait)',
    'uninterruptible_io': 'a FUSE file system that never answers, mounted in the container (harness/fuse_never.py, raw '
                          '/dev/fuse) (test_process_on_a_fuse_mount_that_never_answers_is_uninterruptible_io)',
    'stdio_stall': 'the container writes 4 MB to stdout while its shim is stopped (SIGSTOP); the decoy is a busy writer '
                   'that progresses (test_stdout_blocked_behind_a_stopped_shim_is_stdio_stall, '
                   'test_decoy_progressing_writer_is_not_stdio_stall)',
    'shim_unresponsive': 'the container\'s shim stopped with SIGSTOP (test_stopped_shim_is_shim_unresponsive); a '
                         'running v2 and v1 shim whose threads, all but its leader parked in futex, are held in '
                         'ptrace stops, so that it is not stopped and never answers (test_shim_probe.py)',
    'engine_lock': 'dockerd holds the container lock behind the pipe deadlock, or behind a held `runc start`; on '
                   'containerd-CRI the same deadlock names no engine_lock while ContainerStatus answers '
                   '(test_cri_pipe_deadlock_names_no_engine_lock_containerd_answers_status)',
    'exec_pileup': 'three `docker exec -d ... sleep` that never return; reaped only with reap_stale_execs '
                   '(test_stale_exec_pileup_is_named_and_reaped_only_when_asked)',
    'unknown': 'a hung container none of the other causes explains keeps every piece of evidence gathered',
}


def page(cause_id, what, proof, action):
    return '\n'.join([
        '# Cause: `%s`' % cause_id,
        '',
        '<!-- written by scripts/gen_cause_docs.py from CAUSES in plugins/module_utils/_triage.py; edit there -->',
        '',
        '**What it is:** %s.' % what,
        '',
        '**How hangdoctor proves it:** %s.' % proof,
        '',
        '**What is safe to do:** %s.' % action,
        '',
        '**Seen in:** %s' % SEEN.get(cause_id, '-'),
        '',
        '**Reproduced in the harness:** %s (tests/integration/test_triage.py; on containerd-CRI, '
        'tests/integration/test_triage_cri.py).' % (
            REPRODUCED[cause_id] + ('' if cause_id == 'unknown' else ', on dockerd with shim v2 and with shim v1')
            if cause_id in REPRODUCED else '-'),
        '',
    ] + (['**On containerd-CRI:** %s.' % _triage.ON_CRI[cause_id], ''] if cause_id in _triage.ON_CRI else []) + [
        'Where it shows: `diagnosis.causes` of each container of node_doctor\'s `hangdoctor` fact and of '
        'hung_container_info / runc_exec_info; the metric `hangdoctor_container_cause{cause="%s"}`; the alert '
        '[HangdoctorHangCause](../runbook.md#hangdoctorhangcause).' % cause_id,
        '',
    ])


def pages():
    return dict((os.path.join(ROOT, 'docs', 'causes', '%s.md' % c[0]), page(*c)) for c in _triage.CAUSES)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--check', action='store_true')
    args = ap.parse_args()
    bad = []
    for path, text in sorted(pages().items()):
        old = open(path).read() if os.path.exists(path) else None
        if old == text:
            continue
        if args.check:
            bad.append(path)
        else:
            with open(path, 'w') as f:
                f.write(text)
            print('wrote %s' % os.path.relpath(path, ROOT))
    if bad:
        print('differ from CAUSES (run scripts/gen_cause_docs.py): %s' % ', '.join(bad))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
