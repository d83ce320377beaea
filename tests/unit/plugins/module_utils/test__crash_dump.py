"""Classification of runc init crash dumps and the kernel's OOM lines, on text
from the incident write-up (docs: /work/shared/reference)."""
import os

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _crash_dump as cd

CID = "bbd5e4b5f9c13666dd0ec7ff7afb2c4c2b0ede40a4adf1de43cc31c606f283f5"
INCIDENT_DUMP = """runtime/cgo: pthread_create failed: Resource temporarily unavailable
SIGABRT: abort
PC=0x7f512b7365f7 m=0 sigcode=18446744073709551610

goroutine 0 [idle]:
runtime: unknown pc 0x7f512b7365f7
stack: frame={sp:0x7ffe1121a658, fp:0x0} stack=[0x7ffe0ae1bb28,0x7ffe1121ab50)
00007ffe1121a558: 00007ffe1121a6d8 00007ffe1121a6b0
"""
INCIDENT_KERNEL = [
    "runc:[2:INIT] invoked oom-killer: gfp_mask=0xd0, order=0, oom_score_adj=997",
    "memory: usage 3145728kB, limit 3145728kB, failcnt 14406932",
    "Memory cgroup stats for /kubepods/burstable/pod6c4333b3/%s: cache:0KB rss:2220KB" % CID,
    "Memory cgroup stats for /kubepods/burstable/pod6c4333b3/b761e05249245695278b3f409d2d6e5c6a5bff6995ff0cf44d03af4aa9764a30: cache:0KB",
    "oom-kill:,cpuset=%s,mems_allowed=0-1,oom_memcg=/kubepods/burstable/pod6c4333b3,"
    "task_memcg=/kubepods/burstable/pod6c4333b3/%s,task=runc:[2:INIT],pid=12800,uid=0" % (CID, CID),
    "Memory cgroup out of memory: Kill process 12800 (runc:[2:INIT]) score 997 or sacrifice child",
    "Killed process 12788 (runc:[2:INIT]) total-vm:600736kB, anon-rss:3296kB, file-rss:276kB, shmem-rss:1012kB",
    "eth0: link up",
]


def test_incident_dump_is_pthread_create_eagain():
    c = cd.classify(INCIDENT_DUMP)
    assert c["kind"] == "pthread_create_eagain"
    assert c["summary"] == "runtime/cgo: pthread_create failed: Resource temporarily unavailable"
    assert "pids limit" in c["hint"] and c["oom_kills"] == []


@pytest.mark.parametrize("text,kind,summary", [
    ("fatal error: out of memory\n\ngoroutine 1 [running]:\n", "out_of_memory", "fatal error: out of memory"),
    ("runtime: mmap: cannot allocate memory\n", "out_of_memory", "runtime: mmap: cannot allocate memory"),
    ("fatal error: unexpected signal during runtime execution\n[signal SIGSEGV]\n", "go_runtime_abort",
     "fatal error: unexpected signal during runtime execution"),
    ("panic: runtime error: index out of range\n\ngoroutine 1 [running]:\n", "go_runtime_abort",
     "panic: runtime error: index out of range"),
    ("hello from a noisy init\nmore\n", "unknown", "hello from a noisy init"),
    ("", "unknown", ""),
    ('exec failed: container_linux.go:348: starting container process caused "read init-p: connection reset by peer"\n',
     "unknown", 'exec failed: container_linux.go:348: starting container process caused "read init-p: connection reset by peer"'),
])
def test_other_kinds(text, kind, summary):
    c = cd.classify(text)
    assert (c["kind"], c["summary"]) == (kind, summary)
    assert c["hint"] == cd.HINTS[kind]


def test_oom_lines_for_the_container_only():
    lines = cd.oom_kills_for(INCIDENT_KERNEL, CID)
    assert lines == INCIDENT_KERNEL[4:7]
    assert cd.oom_kills_for(INCIDENT_KERNEL, "f" * 64) == []
    assert cd.oom_kills_for(INCIDENT_KERNEL, None) == []
    c = cd.classify(INCIDENT_DUMP, lines)
    assert c["oom_kills"] == lines and "3 OOM line(s)" in c["hint"]


def test_kernel_log_from_a_file_and_missing(tmp_path):
    f = tmp_path / "kmsg"
    f.write_text("".join("6,%d,%d,-;%s\n" % (i, i * 10, line) for i, line in enumerate(INCIDENT_KERNEL)))
    assert cd.read_kernel_log(str(f)) == INCIDENT_KERNEL
    assert cd.read_kernel_log(str(tmp_path / "nope")) == []


@pytest.mark.skipif(not os.path.exists("/dev/kmsg") or os.geteuid() != 0, reason="needs root and /dev/kmsg")
def test_dev_kmsg_is_bounded():
    lines = cd.read_kernel_log("/dev/kmsg", max_records=5, max_seconds=2)
    assert len(lines) <= 5
    assert all(isinstance(x, str) and not x[:1].isdigit() or ";" not in x for x in lines)
