"""Benchmark: the stuck-exec scan on a node whose workload fakes runc inits.

Spawns (real processes, all stopped at the end) WRITERS processes named
``runc:[2:INIT]`` blocked in write(2) on fd 2 of one full pipe that no shim
reads, and processes holding FDS open fds, then times in the same run:
  - the baseline: ``_stuck_exec`` as of BASE (git), which looked for the
    readers of each candidate's pipe by walking every process's fds once per
    candidate;
  - the current scan (candidates merged by pipe, one fd map per scan, a
    deadline).
Prints both times and the ratio.  Run as root:
``python bench/bench_scan_hostile.py [--writers 120] [--fds 38000] [--rounds 3] [--base 3b841af]``.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests" / "utils"))
from colltree import collections_path  # noqa: E402

sys.path.insert(0, collections_path())
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs, _stuck_exec  # noqa: E402
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils.hostile_writers import Hostile  # noqa: E402


def baseline_module(base):
    """_stuck_exec.py as it was at BASE, importing today's helpers."""
    src = subprocess.check_output(["git", "-C", str(REPO), "show", "%s:plugins/module_utils/_stuck_exec.py" % base])
    mod = types.ModuleType("_stuck_exec_base")
    exec(compile(src, "_stuck_exec@%s" % base, "exec"), mod.__dict__)
    return mod


def timed(scan, proc):
    t = time.monotonic()
    result = scan(proc, confirm_interval=0.2, kmsg=False)
    return time.monotonic() - t, result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--writers", type=int, default=120)
    ap.add_argument("--fds", type=int, default=38000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--base", default="3b841af")
    args = ap.parse_args()
    base = baseline_module(args.base)
    proc = _procfs.Proc("/proc")
    with Hostile(args.writers, args.fds, timeout=120) as h:
        print("hostile: %d fake runc inits blocked on pipe:[%d], %d fds held" % (
            len(h.blocked_writers()), h.pipe_inode, h.held))
        old_s, old = timed(base.scan, proc)
        counts = (len(old["suspects"]), len(old["stuck_execs"]))
        print("baseline (%s): %.2f s, %d suspects, %d stuck" % ((args.base, old_s) + counts))
        runs = []
        for dummy in range(args.rounds):
            s, new = timed(lambda p, **kw: _stuck_exec.scan(p, _stuck_exec.ScanOptions(**kw)), proc)
            runs.append(s)
            print("current: %.3f s, %d suspects, %d stuck, partial %s" % (s, len(new["suspects"]),
                                                                          len(new["stuck_execs"]), new["partial"]))
        new_s = statistics.median(runs)
        print("ratio baseline/current (median of %d): %.1fx" % (len(runs), old_s / new_s))
        print("current under the node-problem-detector's 30 s: %s" % (new_s < 30))


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("run as root")
    main()
