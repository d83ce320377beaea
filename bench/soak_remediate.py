"""Soak: CYCLES deadlock -> remediate cycles on the real harness.

Each cycle deadlocks a ``docker exec`` (the fault runtime's runc init blocked
on its full stderr pipe), proves it is stuck, and repairs it with the drain
that runc_pipe_drain runs (``_pipe_drain.run``, in this process, so that a file
descriptor or thread the drain leaks shows up here).  A recovery is counted
when the drain reports the pipe unblocked and verified, the evidence holds
exactly what runc init wrote, ``docker exec`` returned and inspect answers.

Before and after, it counts the open fds and threads of this process, the
open fds of dockerd and containerd, the shims and every process under the
harness folder.  The baseline, measured in the same run, is the harness's own
naive drain (read fd 2 until the writers are gone): the ratio is the median
recovery time of the module's drain against it.

Run as root: ``python bench/soak_remediate.py [--cycles 100] [--baseline 10]``.
Not part of the test command.
"""
import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "integration" / "harness"))
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))

import decoys  # noqa: E402
import hdharness  # noqa: E402
from conftest import collections_path  # noqa: E402

sys.path.insert(0, collections_path())

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _engines, _options, _pipe_drain  # noqa: E402
from ansible_collections.hangdoctor.runtime.plugins.module_utils._procfs import Proc  # noqa: E402


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


def thread_count(pid):
    try:
        return len(os.listdir("/proc/%d/task" % pid))
    except OSError:
        return -1


def settled_fds(pid, samples=10, interval=0.3):
    """The daemons' fd counts swing with in-flight API calls and exec
    streams: the lowest of a few samples is what they hold at rest."""
    counts = []
    for dummy in range(samples):
        counts.append(fd_count(pid))
        time.sleep(interval)
    return min(counts)


def census(hz, settle=False):
    dockerd = int((hz.dkr / "d.pid").read_text())
    containerd = int((hz.ctd / "c.pid").read_text())
    daemon_fds = settled_fds if settle else fd_count
    root = str(hz.root)
    under = [p for p in hdharness.pids() if any(root in a for a in hdharness.proc_cmdline(p))]
    shims = [p for p in under if (hdharness.proc_comm(p) or "").startswith("containerd-shim")]
    return {
        "self fds": fd_count(os.getpid()),
        "self threads": thread_count(os.getpid()),
        "dockerd fds": daemon_fds(dockerd),
        "containerd fds": daemon_fds(containerd),
        "shims": len(shims),
        "harness processes": len(under),
        "fault runtime processes": len(hz.fault_processes()),
    }


def deadlock(hz, cid):
    proc, pid = hz.hang(cid)
    if pid is None or not decoys.blocked_on_full_pipe(pid) or hz.inspect_answers(cid, timeout=0.5):
        raise SystemExit("cycle did not deadlock (pid %s)" % pid)
    return proc, pid


def recovered(hz, cid, proc, pid, entry=None):
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        return False
    if not hz.inspect_answers(cid, timeout=2.0):
        return False
    if entry is None:
        return True
    length, sha, dummy = hz.record(pid)
    dummy, body = decoys.evidence_body(entry["evidence_path"])
    return (entry["unblocked"] and entry["verified"] is True and len(body) >= length
            and hashlib.sha256(body[:length]).hexdigest() == sha)


def baseline_cycle(hz, cid):
    proc, pid = deadlock(hz, cid)
    t0 = time.monotonic()
    hdharness.drain_pipe(pid)
    ok = recovered(hz, cid, proc, pid)
    return ok, time.monotonic() - t0


def module_cycle(hz, cid, evidence_dir, proc_root):
    proc, pid = deadlock(hz, cid)
    t0 = time.monotonic()
    options = _options.drain_run(dict(evidence_dir=evidence_dir, min_age_seconds=0, max_evidence_bytes=0, timeout=30,
                                      confirm_interval=0.2, max_rounds=1))
    engine = _engines.container_check(docker_host=hz.docker_host, containerd_address="/nonexistent/containerd.sock",
                                      timeout=5.0)
    result = _pipe_drain.run(proc_root, options, container_ids=[cid], engine=engine)
    entries = [e for e in result["drained"] if e["pid"] == pid]
    ok = len(entries) == 1 and recovered(hz, cid, proc, pid, entries[0])
    return ok, time.monotonic() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--cycles", type=int, default=100)
    ap.add_argument("--baseline", type=int, default=10, help="cycles repaired by the naive drain first")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("run as root: the harness starts dockerd and containerd")
    hz = hdharness.Harness()
    evidence_dir = tempfile.mkdtemp(prefix="hd-soak-evidence-")
    try:
        hz.up()
        cids = [hz.run_container("soak-v2", "v2"), hz.run_container("soak-v1", "v1")]
        proc_root = Proc("/proc")
        # warm-up: the first exec of a container opens what later ones reuse
        for cid in cids:
            baseline_cycle(hz, cid)
        before = census(hz, settle=True)

        base = [baseline_cycle(hz, cids[i % 2]) for i in range(a.baseline)]
        mid = census(hz, settle=True)
        t0 = time.monotonic()
        runs = []
        for i in range(a.cycles):
            runs.append(module_cycle(hz, cids[i % 2], evidence_dir, proc_root))
            if (i + 1) % 10 == 0:
                print("  %d/%d cycles, %d recovered, dockerd fds %d" % (
                    i + 1, a.cycles, sum(ok for ok, dummy in runs), census(hz)["dockerd fds"]), flush=True)
        soak_seconds = time.monotonic() - t0
        time.sleep(3.0)  # let the shims and dockerd close what the last exec opened
        after = census(hz, settle=True)

        base_ok = [s for ok, s in base if ok]
        mod_ok = [s for ok, s in runs if ok]
        print("soak_remediate: %d deadlock -> remediate cycles (shim v2 and v1 alternating) in %.1fs"
              % (a.cycles, soak_seconds))
        print("  recoveries: %d / %d" % (len(mod_ok), a.cycles))
        print("  baseline (naive drain): %d / %d recovered" % (len(base_ok), a.baseline))
        if base_ok and mod_ok:
            b, m = statistics.median(base_ok), statistics.median(mod_ok)
            print("  median recovery: module %.3fs, baseline %.3fs, ratio %.2f" % (m, b, m / b))
            print("  module p95 recovery: %.3fs" % sorted(mod_ok)[int(0.95 * (len(mod_ok) - 1))])
        # dockerd keeps a few fds per container's recent execs whatever repaired
        # them: a leak is growth over the module's cycles beyond what the same
        # daemons grew over the naive drain's cycles.
        leaks = []
        print("  %-24s %7s %15s %13s" % ("", "before", "after baseline", "after module"))
        for key in before:
            print("  %-24s %7d %15d %13d" % (key, before[key], mid[key], after[key]))
            grown = after[key] - mid[key]
            allowed = max(0, mid[key] - before[key]) if key.endswith("fds") and "self" not in key else 0
            if grown > allowed:
                leaks.append("%s +%d" % (key, grown))
        print("  leaks: %s" % (", ".join(leaks) if leaks else "none"))
        return 0 if len(mod_ok) == a.cycles and not leaks else 1
    finally:
        hz.down()
        shutil.rmtree(evidence_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
