"""Benchmark: the goroutine-dump parser on a generated dump of SIZE bytes.

Writes a full (debug=2) dump made of the real stacks of tests/unit/fixtures/
gostacks/dockerd-20.10-pipe-deadlock-full.log, repeated with fresh goroutine
ids and argument values until it is SIZE bytes (default 1 GiB; the shape of a
dockerd with hundreds of thousands of goroutines blocked behind one
container's lock), then in the same process:
  - the baseline: a plain line iteration of the same file (``for line in f``,
    counting lines), the least any line-based reader does;
  - the parser (``_gostacks.parse_stream``).
Prints both speeds, the ratio, the parser's peak RSS growth, and whether the
targets are met: >= 50 MB/s and < 100 MB RSS.  The page cache is warmed by
the baseline's first pass for both.

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
    t = time.monotonic()
    n = 0
    with open(path, "rb") as f:
        for dummy in f:
            n += 1
    return time.monotonic() - t, n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--keep", help="write the dump here and keep it")
    args = ap.parse_args()
    path = args.keep or tempfile.mktemp(prefix="gostacks-bench-", suffix=".log", dir="/var/tmp")
    try:
        size, goroutines = generate(path, args.size_mb * 1024 * 1024)
        mb = size / 1e6
        print("dump: %s, %.0f MB, %d goroutines" % (path, mb, goroutines))
        baseline(path)  # warm the page cache for both
        b_s, lines = baseline(path)
        rss0 = rss_mb()
        t = time.monotonic()
        with open(path, "rb") as f:
            result = _gostacks.parse_stream(f)
        p_s = time.monotonic() - t
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        grew = max(peak - rss0, rss_mb() - rss0)
        assert result["goroutines"] == goroutines, (result["goroutines"], goroutines)
        speed = mb / p_s
        print("baseline line iteration: %.2fs, %.0f MB/s (%d lines)" % (b_s, mb / b_s, lines))
        print("parser:                  %.2fs, %.0f MB/s, ratio to the baseline %.2fx the time" % (p_s, speed, p_s / b_s))
        print("fingerprints: %s" % [f["fingerprint"] for f in result["fingerprints"]])
        print("RSS: %.0f MB before the parse, peak %.0f MB, growth during the parse at most %.1f MB" % (rss0, peak, grew))
        print("speed >= %.0f MB/s: %s" % (TARGET_MBS, "met" if speed >= TARGET_MBS else "MISSED"))
        print("peak RSS < %.0f MB: %s" % (TARGET_RSS_MB, "met" if peak < TARGET_RSS_MB else "MISSED"))
    finally:
        if not args.keep:
            try:
                os.unlink(path)
            except OSError:
                pass


if __name__ == "__main__":
    main()
