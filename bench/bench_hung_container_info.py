"""Benchmark: find the hung containers among 1,000 (3 hung) with
hangdoctor.runtime.hung_container_info against the usual shell loop

    for id in $(docker ps -q); do timeout 3 docker inspect $id; done

on the same private dockerd in the same run.  Per-request timeout 3 s.
Targets (issue #25): the engine check <= T + 0.5 s = 3.5 s on the target at
1,000 containers, >= 4x faster than the loop; its memory bounded: the peak
RSS of a process that runs only the check (_engine_probe.py) is printed, with
what the same process held before the check.  --no-baseline leaves the shell
loop out (at 1,000 containers it alone takes minutes).
The wall through ``ansible`` is printed too; it adds ansible's own start,
which on a busy machine is seconds and has nothing to do with the daemon.

Run as root with the project's virtualenv python (it needs ansible on PATH):
    $V/bin/python bench/bench_hung_container_info.py [--containers 1000] [--no-baseline] [--hung 3] [--timeout 3] [--repeat 3]

The engine check in its own process runs --repeat times (default 3); the
target is judged on the median, every run printed with the load average at
its start, and every run must find the hung ones (N of N).
"""
import argparse
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration" / "harness"))
sys.path.insert(0, str(REPO / "tests" / "integration"))

import hdharness  # noqa: E402
from conftest import collections_path, run_module  # noqa: E402

sys.path.insert(0, collections_path())
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _engine_api  # noqa: E402  pylint: disable=wrong-import-position


def engine_probe(query):
    """The engine check in a process of its own: its wall and peak RSS."""
    import json  # pylint: disable=import-outside-toplevel
    r = subprocess.run([sys.executable, str(REPO / "bench" / "_engine_probe.py"), collections_path(), json.dumps(query)],
                       capture_output=True, text=True, timeout=600, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def shell_loop(hz, timeout):
    """The baseline: one CLI start per container, one timeout per hung one."""
    script = 'for id in $(docker ps -q); do timeout %s docker inspect "$id" >/dev/null 2>&1 || echo "$id"; done' % timeout
    env = dict(os.environ, DOCKER_HOST=hz.docker_host, DOCKER_CONFIG=str(hz.root / "client"))
    t0 = time.monotonic()
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=3600, check=False)
    return time.monotonic() - t0, r.stdout.split()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--containers", type=int, default=1000)
    ap.add_argument("--no-baseline", action="store_true", help="leave the shell loop out")
    ap.add_argument("--hung", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--concurrency", type=int, default=None, help="requests in flight (default: the module's)")
    ap.add_argument("--repeat", type=int, default=3, help="engine checks in a process of their own (median judged)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the harness starts dockerd and containerd")
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

    hz = hdharness.Harness()
    try:
        t0 = time.monotonic()
        hz.up()
        # shim v1 for every 10th container and for one of the hung ones
        layouts = ["v1" if i % 10 == 1 else "v2" for i in range(a.containers)]
        with ThreadPoolExecutor(4) as pool:
            ids = list(pool.map(lambda i: hz.run_container("bench-%03d" % i, layout=layouts[i]), range(a.containers)))
        print("setup: %d containers (%d shim v1) in %.1fs" % (len(ids), layouts.count("v1"), time.monotonic() - t0))
        hung = ids[:a.hung]
        for cid in hung:
            dummy, pid = hz.hang(cid)
            if pid is None:
                raise SystemExit("the fault runtime did not deadlock the exec in %s" % cid)
        for cid in hung:
            if hz.inspect_answers(cid, timeout=1):
                raise SystemExit("inspect of %s still answers: no hang to find" % cid)
        want = set(hung)
        short = {c[:12] for c in hung}

        loop_wall = None
        if not a.no_baseline:
            loop_wall, loop_found = shell_loop(hz, int(a.timeout))
            print("shell loop (timeout %ss docker inspect):  %6.2fs  found %d hung%s" % (
                int(a.timeout), loop_wall, len(loop_found), "" if set(loop_found) == short else "  (MISMATCH)"))

        query = {"engines": ["docker"], "docker_host": hz.docker_host, "timeout": a.timeout}
        if a.concurrency:
            query["concurrency"] = a.concurrency
        probes = []
        for dummy in range(a.repeat):
            load = os.getloadavg()[0]
            probe = engine_probe(query)
            probes.append(probe)
            print("engine check in a process of its own:    %6.2fs  found %d of %d hung among %d%s; peak RSS %.1f MiB "
                  "(%.1f MiB before the check); load %.1f" % (
                      probe["seconds"], len(set(probe["hung"]) & want), len(want), probe["containers"],
                      "" if set(probe["hung"]) == want else "  (MISMATCH: %d flagged)" % len(probe["hung"]),
                      probe["maxrss_kib"] / 1024.0, probe["maxrss_kib_before"] / 1024.0, load), flush=True)
        probe_median = statistics.median(p["seconds"] for p in probes)
        print("engine check median of %d: %.2fs; peak RSS at most %.1f MiB" % (
            len(probes), probe_median, max(p["maxrss_kib"] for p in probes) / 1024.0))

        ping, ansible_overhead = run_module("ansible.builtin.ping", {"data": "pong"})
        assert ping["_status"] == "SUCCESS", ping
        margs = {"docker_host": hz.docker_host, "timeout": a.timeout}
        if a.concurrency:
            margs["concurrency"] = a.concurrency
        result, module_wall = run_module("hung_container_info", margs)
        assert result["_status"] == "SUCCESS", result
        found = set(result["hung"])
        print("module through ansible:                  %6.2fs  found %d hung%s  (target side %.2fs; ansible ping alone %.2fs)" % (
            module_wall, len(found), "" if found == want else "  (MISMATCH)", result["elapsed_seconds"], ansible_overhead))

        t1 = time.monotonic()
        rep = _engine_api.hung_container_report(hz.docker_host, timeout=a.timeout,
                                                **({"concurrency": a.concurrency} if a.concurrency else {}))
        mu_wall = time.monotonic() - t1
        print("module_utils call alone:                 %6.2fs  found %d hung%s" % (
            mu_wall, len(rep["hung"]), "" if set(rep["hung"]) == want else "  (MISMATCH)"))

        if loop_wall is not None:
            print("ratio shell loop / module through ansible: %.1fx" % (loop_wall / module_wall))
            print("ratio shell loop / module on the target:   %.1fx" % (loop_wall / result["elapsed_seconds"]))
            print("ratio shell loop / module_utils alone:     %.1fx" % (loop_wall / mu_wall))
        # ansible's own start (ping alone: 1.2-6 s on a busy 2-core box) is
        # fixed cost outside the module, so the targets are judged on the target side
        limit = a.timeout + 0.5
        ok = True
        for name, met in (("module on the target <= %.1fs (%.2fs)" % (limit, result["elapsed_seconds"]),
                           result["elapsed_seconds"] <= limit),
                          ("engine check alone <= %.1fs (median of %d: %.2fs; load %.1f)" % (
                              limit, len(probes), probe_median, os.getloadavg()[0]), probe_median <= limit),
                          ("same %d found by each (%d of %d in every run)" % (len(want), len(want), len(want)),
                           found == want and set(rep["hung"]) == want and all(set(p["hung"]) == want for p in probes)),
                          ("ratio to the shell loop >= 4x", None if loop_wall is None
                           else loop_wall / result["elapsed_seconds"] >= 4)):
            if met is None:
                print("target %s: not measured (--no-baseline)" % name)
                continue
            ok = ok and met
            print("target %s: %s" % (name, "met" if met else "MISSED"))
        return 0 if ok else 1
    finally:
        errors = hz.down()
        if errors:
            print("harness down: %s" % errors, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
