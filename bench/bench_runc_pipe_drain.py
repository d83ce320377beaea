"""Benchmark: time from the start of a drain to the container's inspect
answering again, over CYCLES real deadlocks (dockerd + containerd + shim v2 +
the fault runtime).  Target: median <= 1 s.

Baseline, measured in the same run on the same kind of deadlock: the harness's
own obvious drain (blocking-free read of /proc/PID/fd/2 until the fault child
and its parent are gone), which keeps no evidence and checks nothing.

    sudo python bench/bench_runc_pipe_drain.py [CYCLES]
"""
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration" / "harness"))
sys.path.insert(0, str(ROOT / "tests" / "unit"))  # its conftest makes the collection importable

import conftest  # noqa: E402,F401  pylint: disable=unused-import
import hdharness  # noqa: E402

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _evidence, _options, _pipe_drain, _pipe_lock, _procfs, _stuck_exec  # noqa: E402

TARGET_SECONDS = 1.0


def until_inspect_answers(hz, cid, t0, limit=10.0):
    while time.monotonic() - t0 < limit:
        if hz.inspect_answers(cid, timeout=limit):
            return time.monotonic() - t0
    return float("inf")


def cycle_ours(hz, proc, cid, evidence_dir, lock_dir):
    exec_proc, pid = hz.hang(cid)
    assert pid is not None, "no deadlock"
    assert not hz.inspect_answers(cid, timeout=0.5), "inspect answers: not a hang"
    (record,) = [r for r in _stuck_exec.scan(proc, _stuck_exec.ScanOptions(container_ids=[cid], confirm_interval=0.2))["stuck_execs"]
                 if r["writer"]["pid"] == pid]
    marks = {}

    def verify(p, rec, confirm_interval=1.0):
        ok = _stuck_exec.verify(p, rec, confirm_interval=confirm_interval)
        marks["start"] = time.monotonic()  # the drain starts once the record is re-verified
        return ok

    answered = {}

    def engine(c):
        answered["seconds"] = until_inspect_answers(hz, c, marks["start"])
        return answered["seconds"] != float("inf"), ""

    options = _options.drain_run(dict(timeout=10.0, confirm_interval=0.2, max_evidence_bytes=0))
    drainer = _pipe_drain.Drainer(options, evidence_dir, lock_dir, _pipe_drain.hooks(verify=verify, engine=engine))
    kind, entry = _pipe_drain.drain(proc, record, drainer, min_age_seconds=0)
    assert kind == "drained" and entry["unblocked"], entry
    length, sha, dummy = hz.record(pid)
    assert entry["bytes"] >= length
    exec_proc.wait(timeout=10)
    return answered["seconds"], entry["seconds"]


def cycle_baseline(hz, cid):
    exec_proc, pid = hz.hang(cid)
    assert pid is not None, "no deadlock"
    assert not hz.inspect_answers(cid, timeout=0.5), "inspect answers: not a hang"
    t0 = time.monotonic()
    hdharness.drain_pipe(pid)
    seconds = until_inspect_answers(hz, cid, t0)
    exec_proc.wait(timeout=10)
    return seconds


def main(cycles=20):
    if os.geteuid() != 0:
        sys.exit("run as root: the harness starts dockerd and containerd")
    hz = hdharness.Harness()
    proc = _procfs.Proc("/proc")
    evidence_dir = _evidence.EvidenceDir(tempfile.mkdtemp(prefix="hd-bench-evidence-"))
    lock_dir = _pipe_lock.LockDir(tempfile.mkdtemp(prefix="hd-bench-locks-"))
    try:
        hz.up()
        cid = hz.run_container("bench-drain")
        ours, drain_only, base = [], [], []
        for i in range(cycles):
            to_inspect, drained = cycle_ours(hz, proc, cid, evidence_dir, lock_dir)
            ours.append(to_inspect)
            drain_only.append(drained)
            base.append(cycle_baseline(hz, cid))
            print("cycle %2d: runc_pipe_drain %.3fs to inspect (drain %.3fs), baseline %.3fs"
                  % (i + 1, to_inspect, drained, base[-1]))
        med, med_base = statistics.median(ours), statistics.median(base)
        print()
        print("cycles: %d" % cycles)
        print("median drain start -> inspect answers: %.3fs (target <= %.1fs: %s)"
              % (med, TARGET_SECONDS, "met" if med <= TARGET_SECONDS else "MISSED"))
        print("median drain alone (read + evidence + stop rule): %.3fs" % statistics.median(drain_only))
        print("p90 drain start -> inspect answers: %.3fs" % sorted(ours)[int(0.9 * (len(ours) - 1))])
        print("baseline median (harness drain_pipe, no evidence, no checks): %.3fs" % med_base)
        print("ratio runc_pipe_drain / baseline: %.2f" % (med / med_base if med_base else float("nan")))
        return 0 if med <= TARGET_SECONDS else 1
    finally:
        hz.release_all()
        errors = hz.down()
        if errors:
            print("harness down: %s" % errors, file=sys.stderr)
        for d in (evidence_dir, lock_dir):
            d.close()
            shutil.rmtree(d.path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20))
