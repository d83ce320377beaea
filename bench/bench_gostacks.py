"""Benchmark: the goroutine-dump parser on a generated dump of SIZE bytes.

Writes a full (debug=2) dump made of the real stacks of tests/unit/fixtures/
gostacks/dockerd-20.10-pipe-deadlock-full.log, repeated with fresh goroutine
ids and argument values until it is SIZE bytes (default 1 GiB; the shape of a
dockerd with hundreds of thousands of goroutines blocked behind one
container's lock), then in the same process:
  - the baseline: a plain line iteration of the same file (``for line in f``,
    counting lines), the least any line-based reader does;
  - the parser (``_gostacks.parse_stream``).
Rounds alternate (best of each, wall and CPU time: the machine may be
shared).  Prints both speeds, the ratios, the peak RSS of the process, and
whether the targets are met: >= 50 MB/s and < 100 MB RSS.  The page cache is
warmed by a first baseline pass.

    python bench/bench_gostacks.py [--size-mb 1024] [--keep PATH]
"""
import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests" / "utils"))
from colltree import collections_path  # noqa: E402

sys.path.insert(0, collections_path())
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _gostacks  # noqa: E402

FIXTURE = REPO / "tests" / "unit" / "fixtures" / "gostacks" / "dockerd-20.10-pipe-deadlock-full.log"
TARGET_MBS = 50.0
TARGET_RSS_MB = 100.0


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def generate(path, size):
    blocks = FIXTURE.read_bytes().split(b"\n\n")
    blocks = [b for b in blocks if b.startswith(b"goroutine ")]
    gid = 1
    written = 0
    with open(path, "wb") as f:
        while written < size:
            out = []
            for b in blocks:
                head, rest = b.split(b"]:\n", 1)
                state = head.split(b"[", 1)[1]
                out.append(b"goroutine %d [%s, %d minutes]:\n%s\n\n" % (gid, state, gid % 97, rest.replace(
                    b"0xc0", b"0x%x" % (0xc0 + gid % 13))))
                gid += 1
            data = b"".join(out)
            f.write(data)
            written += len(data)
    return written, gid - 1


def baseline(path):
    t, c = time.monotonic(), time.process_time()
    n = 0
    with open(path, "rb") as f:
        for dummy in f:
            n += 1
    return time.monotonic() - t, time.process_time() - c, n


def parser(path):
    t, c = time.monotonic(), time.process_time()
    with open(path, "rb") as f:
        result = _gostacks.parse_stream(f)
    return time.monotonic() - t, time.process_time() - c, result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--keep", help="write the dump here and keep it")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    if args.keep:
        path = args.keep
    else:
        fd, path = tempfile.mkstemp(prefix="gostacks-bench-", suffix=".log", dir="/var/tmp")
        os.close(fd)
    try:
        size, goroutines = generate(path, args.size_mb * 1024 * 1024)
        mb = size / 1e6
        print("dump: %s, %.0f MB, %d goroutines" % (path, mb, goroutines))
        baseline(path)  # warm the page cache for both
        rss0 = rss_mb()
        # interleaved rounds, best of each: the machine is shared, and a
        # neighbour's burst should not decide the ratio
        b_wall = b_cpu = p_wall = p_cpu = float("inf")
        for dummy in range(args.rounds):
            w, c, lines = baseline(path)
            b_wall, b_cpu = min(b_wall, w), min(b_cpu, c)
            w, c, result = parser(path)
            p_wall, p_cpu = min(p_wall, w), min(p_cpu, c)
            assert result["goroutines"] == goroutines, (result["goroutines"], goroutines)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        print("baseline line iteration: wall %.2fs (%.0f MB/s), cpu %.2fs (%.0f MB/s), %d lines" % (
            b_wall, mb / b_wall, b_cpu, mb / b_cpu, lines))
        print("parser:                  wall %.2fs (%.0f MB/s), cpu %.2fs (%.0f MB/s)" % (
            p_wall, mb / p_wall, p_cpu, mb / p_cpu))
        print("ratio parser/baseline:   wall %.2fx, cpu %.2fx" % (p_wall / b_wall, p_cpu / b_cpu))
        print("fingerprints: %s" % [f["fingerprint"] for f in result["fingerprints"]])
        print("RSS: %.0f MB before the parses, peak %.0f MB" % (rss0, peak))
        for what, speed in (("wall", mb / p_wall), ("cpu", mb / p_cpu)):
            print("speed >= %.0f MB/s (%s): %s" % (TARGET_MBS, what, "met" if speed >= TARGET_MBS else "MISSED"))
        print("peak RSS < %.0f MB: %s" % (TARGET_RSS_MB, "met" if peak < TARGET_RSS_MB else "MISSED"))
    finally:
        if not args.keep:
            try:
                os.unlink(path)
            except OSError:
                pass


if __name__ == "__main__":
    main()
