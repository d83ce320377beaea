"""Reliability: decoys.  Processes that look like a stuck exec in some ways
must never be drained or killed, and runc_exec_info puts them at most in
``suspects``.  Each decoy is first shown to be in the state it imitates.

The drain runs in discovery mode (no targets, ``min_age_seconds: 0``) in
check mode over the whole host, and for real scoped to the decoy's container:
a real host-wide drain would also repair the stuck execs of other harnesses
running on this machine at the same time."""
import copy
import os
import subprocess
import time

import pytest

import decoys
import hdharness
from conftest import run_module


@pytest.fixture
def drain_args(harness, tmp_path):
    return {"min_age_seconds": 0, "evidence_dir": str(tmp_path / "evidence"),
            "docker_host": harness.docker_host, "confirm_interval": 0.3, "timeout": 10}


def pids_in(result, *keys):
    out = []
    for key in keys:
        for rec in result.get(key) or []:
            pid = rec.get("pid")
            if pid is None and isinstance(rec.get("writer"), dict):
                pid = rec["writer"].get("pid")
            out.append(pid)
    return out


def run_against(decoy, drain_args, container_ids=None):
    """Discovery preview, a real drain scoped to the decoy's container, and a
    host-wide diagnosis.  Returns (preview, drain, info)."""
    preview, dummy = run_module("runc_pipe_drain", drain_args, check=True)
    scoped = dict(drain_args, container_ids=container_ids or [decoy.container_id])
    drain, dummy = run_module("runc_pipe_drain", scoped)
    # the full scan: it names near-misses no shim reads as suspects (the
    # scan by shim proves such a node clean without looking at them)
    info, dummy = run_module("runc_exec_info", {"confirm_interval": 0.3, "scan_method": "full"})
    for res in (preview, drain, info):
        assert res["_status"] in ("SUCCESS", "CHANGED"), res
        assert decoys.no_crash(res), res
    return preview, drain, info


def judge(tally, decoy, preview, drain, info, fill_before=None):
    """Was the decoy acted on?  Counted before anything is asserted."""
    problems = []
    if decoy.pid in pids_in(preview, "would_drain"):
        problems.append("in would_drain")
    if decoy.pid in pids_in(drain, "drained"):
        problems.append("drained")
    if decoy.pid in pids_in(info, "stuck_execs"):
        problems.append("reported as a stuck exec")
    if not decoy.alive():
        problems.append("killed")
    elif fill_before is not None:
        try:
            fill_now = hdharness.pipe_fill(decoy.pid, fill_before[2])
        except OSError as e:
            fill_now = str(e)
        if fill_now != fill_before[:2]:
            problems.append("pipe changed: %s -> %s" % (fill_before[:2], fill_now))
    tally.add("decoys", bad=bool(problems))
    assert not problems, "%s: %s" % (decoy.name, "; ".join(problems))


def test_runc_init_whose_reader_is_an_ordinary_process(harness, release, tally, drain_args):
    decoy = decoys.runc_init_with_ordinary_reader(harness)
    try:
        assert hdharness.proc_comm(decoy.pid) == "runc:[2:INIT]"
        assert decoys.blocked_on_full_pipe(decoy.pid)
        readers = hdharness.evidence(decoy.pid)["readers"]
        assert readers and all(comm == "sleep" for dummy, comm in readers), readers
        fill = hdharness.pipe_fill(decoy.pid) + (2,)
        preview, drain, info = run_against(decoy, drain_args)
        judge(tally, decoy, preview, drain, info, fill)
        suspects = [r for r in info["suspects"] if r["writer"]["pid"] == decoy.pid]
        assert suspects and "reader is not a shim" in suspects[0]["reason"], info["suspects"]
    finally:
        decoy.cleanup()


def test_process_in_a_container_writing_a_pipe_nobody_reads(harness, release, tally, drain_args):
    decoy = decoys.yes_into_unread_pipe(harness, name="rel-decoy-yes")
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not decoys.blocked_on_full_pipe(decoy.pid, 1):
            time.sleep(0.05)
        assert decoys.blocked_on_full_pipe(decoy.pid, 1), "yes is not blocked on a full pipe"
        fill = hdharness.pipe_fill(decoy.pid, 1) + (1,)
        preview, drain, info = run_against(decoy, drain_args)
        judge(tally, decoy, preview, drain, info, fill)
    finally:
        decoy.cleanup()


def test_stuck_exec_younger_than_min_age_seconds(harness, release, tally, drain_args):
    cid = harness.run_container("rel-decoy-young")
    dummy, pid = harness.hang(cid)
    decoys.assert_stuck(harness, cid, pid)
    decoy = decoys.Decoy("runc init younger than min_age_seconds", pid)
    decoy.container_id = cid
    fill = hdharness.pipe_fill(pid) + (2,)
    young = dict(drain_args, min_age_seconds=3600)
    preview, dummy = run_module("runc_pipe_drain", young, check=True)
    drain, dummy = run_module("runc_pipe_drain", dict(young, container_ids=[cid]))
    info, dummy = run_module("runc_exec_info", {"container_ids": [cid], "confirm_interval": 0.3, "scan_method": "full",
                                                "min_age_seconds": 3600})
    judge(tally, decoy, preview, drain, info, fill)
    assert [(s["pid"], s["reason"]) for s in drain["skipped_execs"]] == [(pid, "younger than min_age_seconds")]
    assert [r["writer"]["pid"] for r in info["suspects"]] == [pid]
    assert not harness.inspect_answers(cid, timeout=1.0)


def test_writer_making_slow_progress(harness, release, tally, drain_args):
    cid = harness.run_container("rel-decoy-slow")
    decoy = decoys.slow_reader(harness, cid)
    try:
        assert hdharness.proc_comm(decoy.pid) == "runc:[2:INIT]"
        taken = len(decoy.taken)
        time.sleep(1.0)
        assert len(decoy.taken) > taken, "the slow reader is not reading"
        # the pipe moves because of the slow reader, not because of us: not compared
        preview, drain, info = run_against(decoy, drain_args)
        judge(tally, decoy, preview, drain, info)
        # the writer still moves under the slow reader: neither drained nor frozen
        taken = len(decoy.taken)
        time.sleep(0.5)
        assert len(decoy.taken) > taken
    finally:
        decoy.cleanup()


def test_runc_init_stopped_by_someone_else(harness, release, tally, drain_args):
    cid = harness.run_container("rel-decoy-stopped")
    decoy = decoys.stopped_lookalike(harness, cid)
    try:
        assert hdharness.proc_state(decoy.pid) in ("T", "t")
        assert hdharness.proc_comm(decoy.pid) == "runc:[2:INIT]"
        fill = hdharness.pipe_fill(decoy.pid) + (2,)
        assert fill[0] == fill[1]
        preview, drain, info = run_against(decoy, drain_args)
        judge(tally, decoy, preview, drain, info, fill)
        tally.add("faults")  # also the "stopped look-alike" fault: it must not hang the modules
        assert hdharness.proc_state(decoy.pid) in ("T", "t"), "someone resumed the stopped runc init"
    finally:
        decoy.cleanup()


def test_runc_exec_impostor_inside_a_container(harness, release, tally, drain_args):
    """A container's init named runc, argv ``runc exec <a real container's
    id>``, a child of the shim, working in a folder named like that
    container's host bundle with a FIFO as config.json, blocked on a full
    pipe.  Opening that FIFO blocks for ever: every module must still
    return, and nothing may drain or kill the impostor."""
    victim = harness.run_container("rel-decoy-victim")
    decoy = decoys.impostor_runc_exec(harness, victim)
    try:
        assert hdharness.proc_comm(decoy.pid) == "runc"
        assert hdharness.proc_cmdline(decoy.pid)[-2:] == ["exec", victim]
        assert decoys.shim_of_process(decoy.pid)
        assert os.readlink("/proc/%d/cwd" % decoy.pid) == decoy.bundle
        assert decoys.blocked_on_full_pipe(decoy.pid)
        fill = hdharness.pipe_fill(decoy.pid) + (2,)
        preview, drain, info = run_against(decoy, drain_args)
        tally.add("faults")  # the FIFO where a bundle file should be: no module may hang on it
        # a hand-written record that claims the shim reads its pipe
        forged = [r for r in info["suspects"] if r["writer"]["pid"] == decoy.pid]
        assert len(forged) == 1, info["suspects"]
        reasons = forged[0]["reasons"]
        forged = copy.deepcopy(forged[0])
        forged["readers"] = [{"pid": decoys.shim_of_process(decoy.pid), "fd": 9, "comm": "containerd-shim",
                              "is_shim": True}]
        res, dummy = run_module("runc_pipe_drain", dict(drain_args, stuck_execs=[forged]), timeout=60)
        assert res["_status"] == "SUCCESS" and decoys.no_crash(res), res
        merged = dict(drain, drained=(drain.get("drained") or []) + (res.get("drained") or []))
        judge(tally, decoy, preview, merged, info, fill)
        assert "runc exec is in another mnt namespace than its shim" in reasons, reasons
        assert [s["reason"] for s in res["skipped_execs"]] == ["no longer matches"], res
        assert forged["pod"] == {"namespace": None, "name": None, "container": None}
    finally:
        decoy.cleanup()


def _record_for(cid, pid):
    info, dummy = run_module("runc_exec_info", {"container_ids": [cid], "confirm_interval": 0.3})
    recs = [r for r in info["stuck_execs"] if r["writer"]["pid"] == pid]
    assert len(recs) == 1, info
    return recs[0]


def test_pid_reused_between_diagnosis_and_drain(harness, release, tally, drain_args):
    cid = harness.run_container("rel-decoy-reuse")
    exec_proc, pid = harness.hang(cid)
    decoys.assert_stuck(harness, cid, pid)
    rec = _record_for(cid, pid)
    fill = hdharness.pipe_fill(pid) + (2,)

    # the same pid, another start time: as if the stuck exec had been replaced
    moved = copy.deepcopy(rec)
    moved["writer"]["start_time"] += 1
    moved["runc_init"]["start_time"] += 1
    res, dummy = run_module("runc_pipe_drain", dict(drain_args, stuck_execs=[moved]))
    decoy = decoys.Decoy("stuck exec record with another start time", pid)
    judge(tally, decoy, {}, res, {}, fill)
    assert [(s["pid"], s["reason"]) for s in res["skipped_execs"]] == [(pid, "no longer matches")], res
    assert not harness.inspect_answers(cid, timeout=1.0), "the real stuck exec was touched"

    # the true record still drains: the skip above was the identity check
    res, dummy = run_module("runc_pipe_drain", dict(drain_args, stuck_execs=[rec]))
    (entry,) = res["drained"]
    assert entry["pid"] == pid and entry["unblocked"], res
    decoys.check_nothing_lost(harness, entry, pid, tally)
    exec_proc.wait(timeout=10)

    # the pid now belongs to another, live process
    other = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    try:
        other_start = hdharness.proc_stat_starttime(other.pid)
        stolen = copy.deepcopy(rec)
        stolen["writer"]["pid"] = stolen["runc_init"]["pid"] = other.pid
        lookalike = copy.deepcopy(stolen)
        lookalike["writer"]["start_time"] = lookalike["runc_init"]["start_time"] = other_start
        res, dummy = run_module("runc_pipe_drain", dict(drain_args, stuck_execs=[rec, stolen, lookalike]))
        decoy = decoys.Decoy("stuck exec record whose pid was reused", other.pid)
        judge(tally, decoy, {}, res, {})
        assert res["changed"] is False and not res["drained"], res
        reasons = dict(((s["pid"], s["reason"]) for s in res["skipped_execs"] if s["pid"] == pid))
        assert reasons.get(pid) in ("already drained", "no longer matches"), res
        assert [s["reason"] for s in res["skipped_execs"] if s["pid"] == other.pid] == ["no longer matches"] * 2, res
        assert other.poll() is None and os.path.exists("/proc/%d" % other.pid)
    finally:
        other.kill()
        other.wait(10)


def test_cri_o_conmon_tree_is_never_drained(harness, release, tally, drain_args):
    """CRI-O: conmon, not a containerd shim, reads the stuck runc init's pipe
    (and, like the shim, only after runc exec returns).  Not ours to drain:
    at most a suspect, with the reason."""
    decoy = decoys.conmon_exec_tree(harness)
    try:
        assert hdharness.proc_comm(decoy.conmon) == "conmon"
        assert decoys.blocked_on_full_pipe(decoy.pid)
        readers = hdharness.evidence(decoy.pid)["readers"]
        assert [p for p, dummy in readers] == [decoy.conmon], readers
        fill = hdharness.pipe_fill(decoy.pid) + (2,)
        preview, drain, info = run_against(decoy, drain_args)
        judge(tally, decoy, preview, drain, info, fill)
        suspects = [r for r in info["suspects"] if r["writer"]["pid"] == decoy.pid]
        assert suspects and "not a shim" in suspects[0]["reason"], info["suspects"]
    finally:
        decoy.cleanup()
