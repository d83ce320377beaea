"""Reliability: concurrency.  Two runc_pipe_drain runs started at the same
moment on a host with three stuck execs (shim v2, v1, v2): each pipe is
drained exactly once, by one of them, with no errors, and every drain's
evidence holds what its runc init wrote."""
import os
import threading

import decoys
from conftest import run_module


def test_two_remediate_runs_at_once_drain_each_of_three_pipes_once(harness, release, tally, tmp_path):
    hung = []
    for i, layout in enumerate(("v2", "v1", "v2")):
        cid = harness.run_container("rel-conc-%d" % i, layout=layout)
        exec_proc, pid = harness.hang(cid)
        hung.append((cid, pid, exec_proc))
    inodes = {}
    for cid, pid, dummy in hung:
        inodes[pid] = decoys.assert_stuck(harness, cid, pid)["pipe_inode"]

    args = {"container_ids": [c for c, p, e in hung], "min_age_seconds": 0, "confirm_interval": 0.3,
            "evidence_dir": str(tmp_path / "evidence"), "docker_host": harness.docker_host, "max_rounds": 1}
    results = [None, None]
    start = threading.Barrier(2)

    def one(i):
        start.wait()
        results[i] = run_module("runc_pipe_drain", args)[0]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    for res in results:
        assert res is not None and res["_status"] in ("SUCCESS", "CHANGED") and decoys.no_crash(res), results
        assert all(s["reason"] in ("locked", "already drained", "no longer matches")
                   for s in res["skipped_execs"]), res
    drained = [e for res in results for e in res["drained"]]
    assert len(drained) == 3, results
    assert sorted(e["pipe_inode"] for e in drained) == sorted(inodes.values()), drained
    assert sorted(e["pid"] for e in drained) == sorted(p for c, p, e in hung)
    for entry in drained:
        assert entry["unblocked"] is True and entry["verified"] is True, entry
        decoys.check_nothing_lost(harness, entry, entry["pid"], tally)
    # one evidence file per pipe, nothing written twice
    assert sorted(n for n in os.listdir(args["evidence_dir"]) if n.endswith(".log")) == sorted(
        os.path.basename(e["evidence_path"]) for e in drained)
    for cid, pid, exec_proc in hung:
        exec_proc.wait(timeout=10)
        assert harness.inspect_answers(cid, timeout=2.0)


def test_runs_with_different_evidence_dirs_drain_a_pipe_once(harness, release, tally, tmp_path):
    """An AWX run and an ad hoc run, each with its own evidence_dir: the lock
    is per pipe and host-wide (lock_dir), so one drains, the other skips."""
    cid = harness.run_container("rel-conc-two-dirs")
    exec_proc, pid = harness.hang(cid)
    decoys.assert_stuck(harness, cid, pid)
    base = {"container_ids": [cid], "min_age_seconds": 0, "confirm_interval": 0.3,
            "docker_host": harness.docker_host, "max_rounds": 1}
    dirs = [str(tmp_path / "awx"), str(tmp_path / "adhoc")]
    results = [None, None]
    start = threading.Barrier(2)

    def one(i):
        start.wait()
        results[i] = run_module("runc_pipe_drain", dict(base, evidence_dir=dirs[i]))[0]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for res in results:
        tally.add("faults", bad=res is None or not decoys.no_crash(res))
        assert res is not None and res["_status"] in ("SUCCESS", "CHANGED") and decoys.no_crash(res), results
        assert all(s["reason"] in ("locked", "already drained", "no longer matches")
                   for s in res["skipped_execs"]), res
    drained = [e for res in results for e in res["drained"]]
    assert [e["pid"] for e in drained] == [pid], results
    decoys.check_nothing_lost(harness, drained[0], pid, tally)
    files = [n for d in dirs if os.path.isdir(d) for n in os.listdir(d)]
    assert files == [os.path.basename(drained[0]["evidence_path"])], files
    exec_proc.wait(timeout=10)
    assert harness.inspect_answers(cid, timeout=2.0)
