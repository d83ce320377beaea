"""Benchmark: what the triage adds to a healthy node's run.

On a healthy node node_doctor runs only the cheap look at the process table
that decides whether the triage is needed at all (``_node_doctor._unusual``);
the triage itself is never loaded.  This times, in the same process, on a real
snapshot of this host's /proc padded with synthetic entries to N processes
(1,000 shims with 19 descendants each by default):
  - the baseline: the snapshot of the real /proc (every pid's stat read), scaled
    to N processes, which every run already pays;
  - the first pass's own walk of the table (``_runtime_tree.exec_candidates``);
  - ``_unusual`` (what the triage adds).
Prints the ratios to the baseline.  ``python bench/bench_triage_healthy_path.py [--processes N]``.
"""
import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "utils"))

from colltree import collections_path  # noqa: E402

sys.path.insert(0, collections_path())

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _node_doctor, _procfs  # noqa: E402
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _runtime_tree as tree  # noqa: E402


def best(func, rounds):
    out = 1e9
    for dummy in range(rounds):
        t0 = time.perf_counter()
        func()
        out = min(out, time.perf_counter() - t0)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--processes", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=10)
    a = ap.parse_args()
    proc = _procfs.Proc("/proc")
    real = tree.ProcessTable.snapshot(proc)
    snapshot = best(lambda: tree.ProcessTable.snapshot(proc), a.rounds) * a.processes / max(1, len(real))
    stats = dict((p, st) for p, st in real.stats.items() if st and st["state"] not in ("D", "T", "t")
                 and st["comm"] != "runc:[2:INIT]")
    pid = 10 ** 6
    while len(stats) < a.processes:
        shim = pid
        stats[shim] = {"pid": shim, "comm": "containerd-shim", "state": "S", "ppid": 1, "starttime": 1000}
        pid += 1
        for c in range(19):
            stats[pid] = {"pid": pid, "comm": "sleep", "state": "S", "ppid": shim if c == 0 else pid - 1,
                          "starttime": 1000 + c}
            pid += 1
    table = tree.ProcessTable(proc, stats)
    walk = best(lambda: tree.exec_candidates(table), a.rounds)
    unusual = best(lambda: _node_doctor._unusual(table, 3), a.rounds)
    assert _node_doctor._unusual(table, 3) is False
    print("processes: %d" % len(stats))
    print("baseline  snapshot of /proc (scaled): %8.2f ms" % (snapshot * 1000))
    print("first pass walk (exec_candidates):    %8.2f ms  (%.3f of the baseline)" % (walk * 1000, walk / snapshot))
    print("triage gate (_unusual):               %8.2f ms  (%.3f of the baseline)" % (unusual * 1000, unusual / snapshot))


if __name__ == "__main__":
    main()
