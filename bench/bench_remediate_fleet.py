"""The detect and remediate playbooks over 100 inventory hosts (local connection).

Each host runs the whole role against an empty proc_root and a missing Docker
socket, so the hosts do the real per-host work of a healthy node (the common
case in a fleet run) without a container runtime.  A small callback records,
per host, how long each task took; the module share is the time spent in the
hangdoctor modules over the host's total task time.

Baseline, measured in the same run right before each playbook: one
ansible.builtin.ping per host (the fixed cost of reaching a host through
Ansible).  Each ratio is the median of --repeat ping/playbook pairs (default
3), every pair printed.  Targets: detect <= 1.3x and remediate <= 1.5x the ping
wall at forks 10 and 50; --big HOSTS adds one more size at the last forks value
(no target).

    python bench/bench_remediate_fleet.py [--hosts 100] [--forks 10,50] [--big 500] [--repeat 3]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CALLBACK = '''
import json, os, time
from ansible.plugins.callback import CallbackBase

class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "hd_timing"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.start = {}
        self.rows = []

    def v2_runner_on_start(self, host, task):
        self.start[(host.get_name(), task._uuid)] = time.monotonic()

    def _end(self, result, **kwargs):
        key = (result._host.get_name(), result._task._uuid)
        t0 = self.start.pop(key, None)
        if t0 is not None:
            self.rows.append([result._host.get_name(), result._task.action, time.monotonic() - t0])

    v2_runner_on_ok = v2_runner_on_failed = v2_runner_on_skipped = v2_runner_on_unreachable = _end

    def v2_playbook_on_stats(self, stats):
        with open(os.environ["HD_TIMING_OUT"], "w") as f:
            json.dump(self.rows, f)
'''

PING = """---
- name: Baseline
  hosts: all
  gather_facts: false
  tasks:
    - name: Ping
      ansible.builtin.ping:
"""


def collections_path():
    sys.path.insert(0, str(ROOT / "tests" / "utils"))
    from colltree import collections_path as tree  # pylint: disable=import-outside-toplevel
    return tree()


def run(work, playbook, hosts, forks, strategy="linear", extra=None):
    out = work / ("timing-%s-%d-%s.json" % (Path(playbook).stem, forks, strategy))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_CALLBACK_PLUGINS=str(work / "cb"),
               ANSIBLE_CALLBACKS_ENABLED="hd_timing", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal",
               ANSIBLE_STRATEGY=strategy, ANSIBLE_HOST_KEY_CHECKING="0", HD_TIMING_OUT=str(out),
               ANSIBLE_LOCALHOST_WARNING="0")
    # serial and become are play keywords: extra vars, not inventory vars.
    play_vars = {"hangdoctor_become": False, "hangdoctor_serial": "100%", "hangdoctor_max_fail_percentage": 0}
    play_vars.update(extra or {})
    cmd = ["ansible-playbook", "-i", str(work / "inventory.json"), "-f", str(forks), playbook,
           "-e", json.dumps(play_vars)]
    t0 = time.monotonic()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600, check=False)
    wall = time.monotonic() - t0
    if r.returncode != 0:
        sys.exit("%s failed (rc %d):\n%s\n%s" % (playbook, r.returncode, r.stdout[-3000:], r.stderr[-3000:]))
    rows = json.loads(out.read_text())
    per_host = {}
    module = {}
    for host, action, secs in rows:
        per_host[host] = per_host.get(host, 0.0) + secs
        if action.startswith("hangdoctor.runtime.") and action != "hangdoctor.runtime.report_write":
            module[host] = module.get(host, 0.0) + secs
    assert len(per_host) == hosts, (len(per_host), hosts)
    total = sum(per_host.values())
    return {"wall": wall, "task_seconds_per_host": total / hosts,
            "module_seconds_per_host": sum(module.values()) / hosts,
            "module_share": (sum(module.values()) / total) if total else 0.0}


TARGETS = {"detect": 1.3, "remediate": 1.5}


def write_inventory(work, hosts):
    hostvars = {"node%03d" % i: {} for i in range(hosts)}
    inv = {"all": {"hosts": hostvars, "vars": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "hangdoctor_proc_root": str(work / "proc"),
        "hangdoctor_docker_host": "unix://%s/none.sock" % work,
        "hangdoctor_report_dir": str(work / "report"),
        "hangdoctor_metrics_dir": str(work / "metrics"),
        "hangdoctor_confirm_interval": 0.2}}}
    (work / "inventory.json").write_text(json.dumps(inv))


def row(name, hosts, r):
    print("%-30s %8.1f %10.1f %12.3f %8.3f %7.0f%%" % (
        name, r["wall"], hosts / r["wall"], r["task_seconds_per_host"], r["module_seconds_per_host"],
        100 * r["module_share"]))


def compare(work, hosts, forks, repeat=3, targets=True):
    """ping, then each playbook, REPEAT times at FORKS; prints every pair and
    the median of the pairs' ratios (one pair is at the mercy of a noisy
    neighbour on a shared machine), and returns the medians."""
    ratios = {}
    for book in ("detect", "remediate"):
        pairs = []
        for dummy in range(repeat):
            base = run(work, str(work / "ping.yml"), hosts, forks)
            r = run(work, "hangdoctor.runtime." + book, hosts, forks)
            row("ping baseline forks=%d" % forks, hosts, base)
            row("%s forks=%d" % (book, forks), hosts, r)
            pairs.append(r["wall"] / base["wall"])
            report = json.loads((work / "report" / ("hangdoctor-%s.json" % book)).read_text())
            assert report["totals"]["hosts_reported"] == hosts, report["totals"]
        ratios[book] = statistics.median(pairs)
        verdict = ""
        if targets:
            verdict = " (target <= %.1fx: %s)" % (TARGETS[book], "met" if ratios[book] <= TARGETS[book] else "MISSED")
        print("  %s / ping wall ratio, %d hosts, forks=%d: %.2fx%s  [pairs: %s]" % (
            book, hosts, forks, ratios[book], verdict, ", ".join("%.2f" % x for x in pairs)))
    return ratios


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--forks", default="10,50")
    ap.add_argument("--big", type=int, default=0, help="also this many hosts at the last forks value")
    ap.add_argument("--repeat", type=int, default=3, help="ping/playbook pairs per ratio (the median is reported)")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hd-bench-fleet-"))
    try:
        (work / "cb").mkdir()
        (work / "metrics").mkdir()
        (work / "cb" / "hd_timing.py").write_text(CALLBACK)
        # A fixture /proc of a node without containers: only the system-wide
        # stat file the modules use to tell a procfs from a typo.
        (work / "proc").mkdir()
        (work / "proc" / "stat").write_text(Path("/proc/stat").read_text())
        (work / "ping.yml").write_text(PING)
        forks = [int(f) for f in a.forks.split(",")]
        print("detect and remediate playbooks (local connection, empty proc_root, no Docker socket)")
        print("%-30s %8s %10s %12s %8s %8s" % ("run", "wall s", "hosts/s", "task s/host", "module", "share"))
        write_inventory(work, a.hosts)
        for f in forks:
            compare(work, a.hosts, f, a.repeat)
        if a.big:
            write_inventory(work, a.big)
            compare(work, a.big, forks[-1], a.repeat, targets=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
