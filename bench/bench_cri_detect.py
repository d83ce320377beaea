"""Benchmark: find the hung containers on a containerd-CRI node, 1,000
containers in 200 pods (5 each), 3 of them with a deadlocked exec (each in its
own pod), with the collection's CRI detection (``_engines.check_engines``:
the pod shims asked over ttrpc, concurrently, one hard deadline per call)
against the loop an SRE would write on a node without crictl:

    for id in $(ctr -n k8s.io task ls -q); do timeout 3 ctr -n k8s.io task ps $id; done

run sequentially in the same process on the same private containerd.
Per-call timeout 3 s.  Target (issue #25): the detection <= T + 0.5 s =
3.5 s; printed as a ratio to the loop.  The detection also runs in a process
of its own (_engine_probe.py) whose peak RSS is printed, with what it held
before the check.  --no-baseline leaves the loop out.  Under CRI one shim serves a whole pod, and a shim with a stuck exec
stops answering for all of the pod's containers once one call is pending, so
both sides see up to 5 hung containers per sick pod; both are checked to flag
nothing outside the sick pods.

Run as root with the project's virtualenv python:
    $V/bin/python bench/bench_cri_detect.py [--pods 200] [--per-pod 5] [--hung 3] [--timeout 3] [--no-baseline] [--repeat 3]

Each detection runs --repeat times (default 3): the targets are judged on
the medians, every run printed with the load average at its start and with
how many of the stuck containers it found (all of them, every time).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration" / "harness"))
sys.path.insert(0, str(REPO / "tests" / "utils"))

from colltree import collections_path  # noqa: E402
from cri.harness import CriHarness, NAMESPACE  # noqa: E402

sys.path.insert(0, collections_path())
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _engines  # noqa: E402  pylint: disable=wrong-import-position


def ctr_loop(hz, timeout):
    """The baseline, the loop itself in bash: one ctr start per task, one
    timeout per hung one."""
    ctr = 'ctr --address %s -n %s' % (hz.cri_sock, NAMESPACE)
    script = ('ids=$(%s task ls -q); n=0; for id in $ids; do n=$((n+1)); '
              'timeout %s %s task ps "$id" >/dev/null 2>&1 || echo "$id"; done; echo "listed $n"' % (ctr, timeout, ctr))
    t0 = time.monotonic()
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=3600, check=False)
    elapsed = time.monotonic() - t0
    lines = r.stdout.split("\n")
    listed = int([l for l in lines if l.startswith("listed ")][0].split()[1])
    return elapsed, [l for l in lines if l and not l.startswith("listed ")], listed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--pods", type=int, default=200)
    ap.add_argument("--no-baseline", action="store_true", help="leave the ctr loop out")
    ap.add_argument("--per-pod", type=int, default=5)
    ap.add_argument("--hung", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the harness starts containerd")
    hz = CriHarness(os.environ.get("HANGDOCTOR_HARNESS_DIR") or None)
    futures = []
    try:
        t0 = time.monotonic()
        hz.up()
        names = ["c%d" % i for i in range(a.per_pod)]
        with ThreadPoolExecutor(4) as pool:
            pods = list(pool.map(lambda i: hz.run_pod("bench-%03d" % i, namespace="bench", containers=names),
                                 range(a.pods)))
        n = sum(len(p["containers"]) for p in pods)
        print("setup: %d containers in %d pods in %.1fs" % (n, len(pods), time.monotonic() - t0))
        # the hung ones spread over the list: first, middle and last pod
        sick = [pods[(i * (len(pods) - 1)) // max(1, a.hung - 1)] for i in range(a.hung)]
        stuck = []
        for pod in sick:
            cid = pod["containers"][names[-1]]
            fut, pid = hz.hang_execsync(cid, request_timeout=600)
            if pid is None:
                sys.exit("no deadlock in %s" % cid)
            futures.append(fut)
            stuck.append(cid)
        sick_ids = set(c for p in sick for c in p["containers"].values())
        print("hung: %d exec deadlocks (pods %s)" % (len(stuck), ", ".join(p["name"] for p in sick)))

        detects, probes, found_all = [], [], True
        for dummy in range(a.repeat):
            load = os.getloadavg()[0]
            t1 = time.monotonic()
            res = _engines.check_engines(_engines.EngineQuery(engines=["containerd"], containerd_address=str(hz.cri_sock),
                                                              timeout=a.timeout, concurrency=a.concurrency))
            detect = time.monotonic() - t1
            detects.append(detect)
            hung = set(res["hung"])
            assert hung <= sick_ids, "flagged outside the sick pods: %s" % (hung - sick_ids)
            assert len(res["containers"]) == n, len(res["containers"])
            found_all = found_all and set(stuck) <= hung
            print("detection (check_engines, T=%.0fs, concurrency %d): %.2fs, found %d of %d stuck (%d flagged in the "
                  "sick pods, %d undecided) among %d; load %.1f" % (
                      a.timeout, a.concurrency, detect, len(set(stuck) & hung), len(stuck), len(hung),
                      len(res["unchecked"]), n, load), flush=True)

            load = os.getloadavg()[0]
            r = subprocess.run([sys.executable, str(REPO / "bench" / "_engine_probe.py"), collections_path(), json.dumps(
                {"engines": ["containerd"], "containerd_address": str(hz.cri_sock), "timeout": a.timeout,
                 "concurrency": a.concurrency})], capture_output=True, text=True, timeout=600, check=True)
            probe = json.loads(r.stdout.strip().splitlines()[-1])
            probes.append(probe)
            assert set(probe["hung"]) <= sick_ids, probe["hung"]
            found_all = found_all and set(stuck) <= set(probe["hung"])
            print("detection in a process of its own: %.2fs, found %d of %d stuck among %d; peak RSS %.1f MiB "
                  "(%.1f MiB before the check); load %.1f" % (
                      probe["seconds"], len(set(stuck) & set(probe["hung"])), len(stuck), probe["containers"],
                      probe["maxrss_kib"] / 1024.0, probe["maxrss_kib_before"] / 1024.0, load), flush=True)
        detect = statistics.median(detects)
        print("target every stuck container found in every run: %s" % ("met" if found_all else "MISSED"))
        if not a.no_baseline:
            base, base_hung, listed = ctr_loop(hz, a.timeout)
            assert set(stuck) <= set(base_hung) and set(base_hung) <= sick_ids | set(p["id"] for p in sick), base_hung
            print("baseline (sequential ctr task ps loop over %d tasks): %.2fs, %d hung" % (listed, base, len(base_hung)))
            print("ratio baseline/detection: %.1fx" % (base / detect))
        limit = a.timeout + 0.5
        for name, secs in (("detection", detect),
                           ("detection in its own process", statistics.median(p["seconds"] for p in probes))):
            print("target %s <= %.1fs (median of %d: %.2fs; load %.1f): %s" % (
                name, limit, a.repeat, secs, os.getloadavg()[0], "met" if secs <= limit else "MISSED"))
    finally:
        hz.release_all()
        for f in futures:
            f.cancel()
        errs = hz.down()
        for e in errs:
            print(e, file=sys.stderr)


if __name__ == "__main__":
    main()
