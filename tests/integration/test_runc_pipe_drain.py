"""runc_pipe_drain against the real runtime: dockerd + containerd + shim v2 /
shim v1 + the fault runtime's runc exec / runc init, deadlocked on a full
stderr pipe.  Every test first proves the hang is real."""
import hashlib
import itertools
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import hdharness
from conftest import run_module

WRITE_NRS = ("1", "20", "64", "66")
HEADER_END = b"----- hangdoctor: pipe bytes follow -----\n"
TRAILER = b"\n----- hangdoctor: end of pipe bytes"
_names = itertools.count()


def new_container(harness, layout="v2"):
    return harness.run_container("drain-%s-%d-%d" % (layout, os.getpid(), next(_names)), layout=layout)


def assert_stuck(harness, cid, pid):
    """The deadlock is real: runc init in write(2) on fd 2, the pipe full, a
    shim its reader, and inspect of the container does not answer."""
    assert pid is not None, "the fault runtime did not deadlock"
    ev = hdharness.evidence(pid)
    assert ev["comm"] == "runc:[2:INIT]"
    assert ev["syscall"][0] in WRITE_NRS and ev["syscall"][1] == "0x2", ev
    assert ev["queued"] == ev["capacity"], ev
    assert any(comm and comm.startswith("containerd-shim") for dummy, comm in ev["readers"]), ev
    assert not harness.inspect_answers(cid, timeout=1.0)
    return ev


def opts(harness, tmp_path, **over):
    args = {"min_age_seconds": 0, "evidence_dir": str(tmp_path / "evidence"),
            "docker_host": harness.docker_host, "confirm_interval": 0.3}
    args.update(over)
    return args


def evidence_body(path):
    """The bytes kept between the header and the trailer (parsed here, not
    with the module's own reader)."""
    data = open(path, "rb").read()
    head, sep, rest = data.partition(HEADER_END)
    assert sep, "no header in %s" % path
    cut = rest.rfind(TRAILER)
    assert cut >= 0, "no trailer in %s" % path
    return head.decode(), rest[:cut]


def error_line(harness, init_pid):
    meta = [m for m in harness.records() if m["pid"] == init_pid][0]
    return (harness.fault / "records" / ("%d.err" % meta["ppid"])).read_bytes()


def assert_repaired(harness, cid, pid, entry, exec_proc):
    t0 = time.monotonic()
    assert harness.inspect_answers(cid, timeout=2.0), "inspect still hangs after the drain"
    assert time.monotonic() - t0 < 2.0
    exec_proc.wait(timeout=10)
    assert hdharness.proc_comm(pid) != "runc:[2:INIT]"
    assert pid not in [p for p, dummy in harness.fault_inits(cid)]
    assert entry["unblocked"] is True and entry["verified"] is True, entry
    length, sha, data = harness.record(pid)
    header, body = evidence_body(entry["evidence_path"])
    assert cid in header
    # nothing lost: the first LENGTH bytes are exactly what runc init wrote ...
    assert len(body) >= length
    assert hashlib.sha256(body[:length]).hexdigest() == sha
    # ... and the drain stopped promptly: at most runc exec's own error line follows
    assert body[length:] in (b"", error_line(harness, pid))
    assert entry["bytes"] == len(body)
    assert entry["sha256"] == hashlib.sha256(body).hexdigest()
    assert os.stat(entry["evidence_path"]).st_mode & 0o777 == 0o600
    assert os.stat(os.path.dirname(entry["evidence_path"])).st_mode & 0o777 == 0o700


@pytest.mark.parametrize("layout", ["v2", "v1"])
def test_drain_repairs_the_stuck_exec_and_keeps_every_byte(harness, release, tmp_path, layout):
    cid = new_container(harness, layout)
    exec_proc, pid = harness.hang(cid)
    assert_stuck(harness, cid, pid)

    res, dummy = run_module("runc_pipe_drain", opts(harness, tmp_path, container_ids=[cid]))
    assert res["_status"] == "CHANGED", res
    (entry,) = res["drained"]
    assert (entry["container_id"], entry["pid"], entry["writer"]) == (cid, pid, "runc_init")
    assert entry["cause"]["kind"] == "pthread_create_eagain"
    assert_repaired(harness, cid, pid, entry, exec_proc)

    # idempotent: nothing left to do
    res, dummy = run_module("runc_pipe_drain", opts(harness, tmp_path, container_ids=[cid]))
    assert res["_status"] == "SUCCESS" and res["changed"] is False and not res["drained"], res


def test_two_runs_at_once_drain_each_pipe_exactly_once(harness, release, tmp_path):
    cid = new_container(harness)
    exec_proc, pid = harness.hang(cid)
    assert_stuck(harness, cid, pid)

    results = [None, None]
    start = threading.Barrier(2)

    def one(i):
        start.wait()
        results[i] = run_module("runc_pipe_drain", opts(harness, tmp_path, container_ids=[cid]))[0]
    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    drained = [e for r in results for e in r["drained"]]
    assert [e["pid"] for e in drained] == [pid], results
    other = [r for r in results if not r["drained"]][0]
    assert other["changed"] is False
    # the loser either saw it locked / already drained, or found nothing left
    assert all(s["reason"] in ("locked", "already drained", "no longer matches") for s in other["skipped_execs"]), other
    # one evidence file (the locks live host-wide, in lock_dir)
    assert os.listdir(str(tmp_path / "evidence")) == [os.path.basename(drained[0]["evidence_path"])]
    assert_repaired(harness, cid, pid, drained[0], exec_proc)


def test_min_age_and_check_mode_leave_the_pipe_full_and_the_hang_in_place(harness, release, tmp_path):
    cid = new_container(harness)
    dummy, pid = harness.hang(cid)
    before = assert_stuck(harness, cid, pid)

    res, dummy = run_module("runc_pipe_drain", opts(harness, tmp_path, container_ids=[cid], min_age_seconds=3600))
    # a skip is reported, and the task itself is not taken as skipped by Ansible
    assert res["_status"] == "SUCCESS" and res["changed"] is False and not res["drained"], res
    (skip,) = res["skipped_execs"]
    assert (skip["pid"], skip["reason"]) == (pid, "younger than min_age_seconds")
    assert hdharness.pipe_fill(pid) == (before["queued"], before["capacity"])

    check_dir = tmp_path / "check-evidence"
    res, dummy = run_module("runc_pipe_drain", opts(harness, tmp_path, container_ids=[cid], evidence_dir=str(check_dir)),
                            check=True)
    assert res["changed"] is True and not res["drained"], res
    (would,) = res["would_drain"]
    assert would["pid"] == pid and would["queued"] == before["queued"]
    assert would["peek"].startswith("runtime/cgo: pthread_create failed")
    assert hdharness.pipe_fill(pid) == (before["queued"], before["capacity"])
    assert not harness.inspect_answers(cid, timeout=1.0)
    assert not check_dir.exists()


FAKE_INIT = r'''
import ctypes, os
ctypes.CDLL(None).prctl(15, b"runc:[2:INIT]", 0, 0, 0)
data = b"runtime/cgo: pthread_create failed: Resource temporarily unavailable\n" * 4000
view = memoryview(data)
while view:
    view = view[os.write(2, view):]
'''


def test_a_runc_init_whose_reader_is_not_a_shim_is_never_drained(tmp_path):
    r, w = os.pipe()
    child = subprocess.Popen([sys.executable, "-c", FAKE_INIT], stderr=w, stdin=subprocess.DEVNULL)
    os.close(w)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (
                hdharness.syscall_of(child.pid)[:2] == ["1", "0x2"] and hdharness.pipe_fill(child.pid)[0] == 65536):
            time.sleep(0.02)
        assert hdharness.proc_comm(child.pid) == "runc:[2:INIT]"
        before = hdharness.pipe_fill(child.pid)
        assert before[0] == before[1], "fake runc init is not blocked on a full pipe"
        with open("/proc/%d/stat" % child.pid) as f:
            start = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/self/stat") as f:
            my_start = int(f.read().rsplit(")", 1)[1].split()[19])
        inode = os.fstat(r).st_ino
        cid = hashlib.sha256(b"fake").hexdigest()
        base = {
            "container_id": cid,
            "writer": {"role": "runc_init", "pid": child.pid, "start_time": start},
            "runc_init": {"pid": child.pid, "start_time": start},
            "runc_exec": {"pid": os.getpid(), "start_time": my_start},
            "shim": {"pid": os.getpid(), "start_time": my_start, "version": "v2"},
            "pipe": {"inode": inode, "capacity": before[1], "queued": before[0], "fd": 2},
        }
        honest = dict(base, readers=[{"pid": os.getpid(), "fd": r, "comm": "python", "is_shim": False}])
        # a record that lies about its reader: verification looks at /proc itself
        lying = dict(base, readers=[{"pid": os.getpid(), "fd": r, "comm": "containerd-shim", "is_shim": True}])
        res, dummy = run_module("runc_pipe_drain", {"stuck_execs": [honest, lying], "min_age_seconds": 0,
                                                    "evidence_dir": str(tmp_path / "ev"), "confirm_interval": 0.3})
        assert res["changed"] is False and not res["drained"], res
        assert [s["reason"] for s in res["skipped_execs"]] == ["pipe reader is not a shim", "no longer matches"], res
        assert hdharness.pipe_fill(child.pid) == before
        assert child.poll() is None
    finally:
        child.kill()
        child.wait(10)
        os.close(r)


def test_three_hung_containers_are_repaired_in_one_run(harness, release, tmp_path):
    hung = []
    for layout in ("v2", "v1", "v2"):
        cid = new_container(harness, layout)
        exec_proc, pid = harness.hang(cid)
        hung.append((cid, pid, exec_proc))
    for cid, pid, dummy in hung:
        assert_stuck(harness, cid, pid)

    res, dummy = run_module("runc_pipe_drain", opts(harness, tmp_path, container_ids=[c for c, p, e in hung]))
    assert res["changed"] is True and res["rounds"] == 1, res
    by_cid = dict((e["container_id"], e) for e in res["drained"])
    assert sorted(by_cid) == sorted(c for c, p, e in hung)
    for cid, pid, exec_proc in hung:
        assert by_cid[cid]["pid"] == pid
        assert_repaired(harness, cid, pid, by_cid[cid], exec_proc)


def test_a_queued_exec_that_deadlocks_in_turn_is_drained_in_the_next_round(harness, release, tmp_path):
    cid = new_container(harness)
    first, pid = harness.hang(cid, count=2)
    assert_stuck(harness, cid, pid)
    second = harness.docker_bg("exec", cid, "true")
    time.sleep(0.5)
    assert second.poll() is None and [p for p, dummy in harness.fault_inits(cid)] == [pid]

    res, dummy = run_module("runc_pipe_drain", opts(harness, tmp_path, container_ids=[cid], max_rounds=3))
    assert [(e["round"], e["writer"]) for e in res["drained"]] == [(1, "runc_init"), (2, "runc_init")], res
    assert res["drained"][0]["pid"] == pid and res["drained"][1]["pid"] != pid
    assert res["rounds"] == 2 and not res["recurring"]
    assert_repaired(harness, cid, pid, res["drained"][0], first)
    assert_repaired(harness, cid, res["drained"][1]["pid"], res["drained"][1], second)


def test_a_container_that_keeps_deadlocking_is_reported_recurring(harness, release, tmp_path):
    cid = new_container(harness)
    dummy, pid = harness.hang(cid, count=2)
    assert_stuck(harness, cid, pid)
    harness.docker_bg("exec", cid, "true")
    time.sleep(0.5)

    res, dummy = run_module("runc_pipe_drain", opts(harness, tmp_path, container_ids=[cid], max_rounds=1))
    assert [e["pid"] for e in res["drained"]] == [pid], res
    (rec,) = res["recurring"]
    assert rec["container_id"] == cid and res["drained"][0]["recurring"] is True
    assert "memory limit" in rec["hint"]
    (again,) = rec["stuck_pids"]
    assert again != pid and again in [p for p, d in harness.fault_inits(cid)]
    assert_stuck(harness, cid, again)


def test_runc_exec_blocked_after_its_runc_init_was_killed_is_repaired(harness, release, tmp_path):
    cid = new_container(harness)
    exec_proc, pid = harness.hang(cid)
    assert_stuck(harness, cid, pid)
    parent = hdharness.proc_ppid(pid)
    queued = hdharness.pipe_fill(pid)[0]
    # as the kernel's OOM killer does: only runc init dies, the pipe stays full
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and hdharness.syscall_of(parent)[:2] not in ([n, "0x2"] for n in WRITE_NRS):
        time.sleep(0.02)
    assert hdharness.syscall_of(parent)[1] == "0x2" and hdharness.proc_comm(parent) == "runc"
    assert not harness.inspect_answers(cid, timeout=1.0)

    res, dummy = run_module("runc_pipe_drain", opts(harness, tmp_path, container_ids=[cid]))
    (entry,) = res["drained"]
    assert (entry["writer"], entry["pid"]) == ("runc_exec", parent), entry
    assert harness.inspect_answers(cid, timeout=2.0)
    exec_proc.wait(timeout=10)
    assert entry["unblocked"] and entry["verified"] is True
    dummy, sha, data = harness.record(pid)
    header, body = evidence_body(entry["evidence_path"])
    # what the dead runc init left in the pipe, then runc exec's error line
    assert body == data[:queued] + error_line(harness, pid)
