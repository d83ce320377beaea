"""runc_exec_info on the real runtime (dockerd, containerd, shim v2 and v1,
runc): every stuck exec is found and proven, with the right container id,
pipe inode, shim reader and cause; the peek shows the dump head and leaves the
pipe exactly as full as before; healthy containers, a successful exec and an
exec that failed cleanly produce nothing."""
import os
import signal
import sys
import time

import pytest

import hdharness
from conftest import collections_path, run_module

sys.path.insert(0, collections_path())

from ansible_collections.hangdoctor.runtime.plugins.module_utils._procfs import Proc  # noqa: E402
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _stuck_exec  # noqa: E402


def mine(result, cids, key="stuck_execs"):
    """Other harnesses on this machine may have stuck execs too: keep ours."""
    return [r for r in result[key] if r.get("container_id") in cids]


def assert_really_stuck(harness, proc, cid, pid):
    assert pid is not None, "no stuck runc init appeared"
    assert proc.poll() is None, "docker exec returned: no deadlock"
    assert not harness.inspect_answers(cid, timeout=2), "inspect answers: no deadlock"
    ev = hdharness.evidence(pid)
    assert ev["queued"] == ev["capacity"] > 0
    return ev


@pytest.mark.parametrize("layout", ["v2", "v1"])
def test_stuck_exec_found_proven_and_left_untouched(harness, release, layout):
    cid = harness.run_container("info-%s" % layout, layout)
    proc, pid = harness.hang(cid)
    ev = assert_really_stuck(harness, proc, cid, pid)
    runc_exec = hdharness.proc_ppid(pid)
    shim = hdharness.proc_ppid(runc_exec)

    result, wall = run_module("runc_exec_info", {"container_ids": [cid], "confirm_interval": 0.5},
                              check=(layout == "v1"))
    assert result["_status"] == "SUCCESS", result
    assert result["changed"] is False
    recs = mine(result, [cid])
    assert len(recs) == 1, result
    rec = recs[0]
    assert rec["writer"]["role"] == "runc_init" and rec["writer"]["pid"] == pid
    assert rec["runc_init"]["comm"] == "runc:[2:INIT]" and rec["runc_init"]["state"] == "S"
    assert rec["runc_init"]["syscall"] in ("write", "writev")
    assert rec["runc_init"]["wchan"] in ("pipe_wait", "pipe_write", "anon_pipe_write")
    assert rec["runc_exec"]["pid"] == runc_exec and rec["runc_exec"]["argv"][-1] == cid
    assert rec["shim"]["pid"] == shim and rec["shim"]["version"] == layout
    assert rec["pipe"]["inode"] == ev["pipe_inode"]
    assert rec["pipe"]["queued"] == rec["pipe"]["capacity"] == ev["capacity"]
    assert [r["pid"] for r in rec["readers"]] == [shim] and rec["readers"][0]["is_shim"]
    assert rec["cause"]["kind"] == "pthread_create_eagain"
    length, dummy, dump = harness.record(pid)
    assert rec["peek_bytes"] == 4096 and rec["peek"].encode() == dump[:4096]
    assert rec["evidence"]["queued"] == [ev["queued"], ev["queued"]]

    # Nothing was consumed: the pipe is exactly as full and the exec still stuck.
    assert hdharness.pipe_fill(pid) == (ev["queued"], ev["capacity"])
    assert proc.poll() is None and hdharness.proc_comm(pid) == "runc:[2:INIT]"
    # The record is what the drain re-checks right before it acts.
    assert _stuck_exec.verify(Proc("/proc"), rec, confirm_interval=0.2) == (True, "")


def test_runc_exec_blocked_after_its_runc_init_died(harness, release):
    cid = harness.run_container("info-oomkilled", "v2")
    proc, pid = harness.hang(cid)
    ev = assert_really_stuck(harness, proc, cid, pid)
    runc_exec = hdharness.proc_ppid(pid)
    os.kill(pid, signal.SIGKILL)  # what the OOM killer does to runc init
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and hdharness.syscall_of(runc_exec)[:2] not in (["1", "0x2"], ["20", "0x2"]):
        time.sleep(0.05)
    assert proc.poll() is None

    result, dummy = run_module("runc_exec_info", {"container_ids": [cid[:16]], "confirm_interval": 0.3})
    recs = mine(result, [cid])
    assert len(recs) == 1, result
    rec = recs[0]
    assert rec["writer"] == dict(rec["writer"], role="runc_exec", pid=runc_exec)
    assert rec["runc_init"] is None
    assert rec["pipe"]["inode"] == ev["pipe_inode"]
    assert rec["cause"]["kind"] == "pthread_create_eagain"


def test_healthy_succeeded_and_cleanly_failed_execs_produce_nothing(harness, release):
    healthy = harness.run_container("info-healthy", "v2")
    ran = harness.run_container("info-ran-exec", "v1")
    r = harness.docker("exec", ran, "echo", "ok", timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "ok"
    failed = harness.run_container("info-failed", "v2")
    proc, pid = harness.hang(failed, size=1024, wait=10)
    assert pid is None and proc.wait(timeout=10) != 0  # the exec failed, nothing stuck
    cids = [healthy, ran, failed]

    result, dummy = run_module("runc_exec_info", {"container_ids": cids, "confirm_interval": 0.3})
    assert result["_status"] == "SUCCESS" and result["changed"] is False
    assert mine(result, cids) == [] and mine(result, cids, "suspects") == []
    assert result["scanned_processes"] > 10


def test_bad_options_fail_clearly(harness):
    result, dummy = run_module("runc_exec_info", {"confirm_interval": -1})
    assert result["_status"] == "FAILED!" and "confirm_interval must be between 0 and 60, got -1" in result["msg"]
    result, dummy = run_module("runc_exec_info", {"proc_root": "/etc"})
    assert result["_status"] == "FAILED!" and "not a procfs" in result["msg"]
