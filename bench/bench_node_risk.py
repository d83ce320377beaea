"""Benchmark: what node_risk costs on this node, against node_doctor's own
healthy-node pass (``_exec_candidates.find``, the /proc walk every detect run
does) measured in the same process.

node_risk is not on detect's default path (the detect role runs it only with
hangdoctor_risk: true); these ratios say what turning it on adds per node, and
what the version cache saves (a cold run executes runc/containerd/dockerd/shim
--version, a warm one executes nothing).

Run as root with the project's virtualenv python:
    $V/bin/python bench/bench_node_risk.py [--rounds 5]
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "utils"))
from colltree import collections_path  # noqa: E402

sys.path.insert(0, collections_path())
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _exec_candidates  # noqa: E402
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _node_risk  # noqa: E402
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _options  # noqa: E402
from ansible_collections.hangdoctor.runtime.plugins.module_utils._procfs import Proc  # noqa: E402


def timed(func, rounds):
    out = []
    for dummy in range(rounds):
        t0 = time.monotonic()
        func()
        out.append(time.monotonic() - t0)
    return statistics.median(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the pipe probe takes other users' credentials")
    proc = Proc("/proc")
    cache = os.path.join(tempfile.mkdtemp(prefix="hd-bench-risk-"), "versions.json")
    base = timed(lambda: _exec_candidates.find(proc, confirm_interval=0, peek_bytes=0, min_age_seconds=0), a.rounds)
    rows = [("node_doctor healthy-node /proc pass (baseline)", base)]

    def risk(checks, cache_path):
        opts = _options.RISK.make(risk_checks=checks, version_cache=cache_path)
        return lambda: _node_risk.run(proc, opts)
    rows.append(("node_risk pipe", timed(risk(["pipe"], ""), a.rounds)))
    rows.append(("node_risk headroom", timed(risk(["headroom"], ""), a.rounds)))
    rows.append(("node_risk versions, no cache", timed(risk(["versions"], ""), a.rounds)))
    risk(["versions"], cache)()  # fill the cache
    rows.append(("node_risk versions, warm cache", timed(risk(["versions"], cache), a.rounds)))
    rows.append(("node_risk all, warm cache", timed(risk(["pipe", "headroom", "versions"], cache), a.rounds)))
    print("processes on the node: %d" % len(proc.pids()))
    for name, secs in rows:
        print("%-48s %8.3f s  %6.1fx baseline" % (name, secs, secs / base if base else float("nan")))


if __name__ == "__main__":
    main()
