"""The node-problem-detector plugin as NPD runs it (a subprocess: exit code and
first line of output) on metrics files that ``_metrics.render`` wrote, and its
custom-plugin-monitor config.  The same plugin against a real deadlock:
tests/integration/test_npd_real_deadlock.py."""
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from colltree import collections_path

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _metrics

ROOT = Path(__file__).resolve().parents[3]
PLUGIN = ROOT / "extras" / "node-problem-detector" / "hangdoctor_npd.py"
CONFIG = ROOT / "extras" / "node-problem-detector" / "hangdoctor-plugin-monitor.json"
CID = "4f2a9c1d7e3b" + "0" * 52


def run(*args, env=None):
    r = subprocess.run([sys.executable, str(PLUGIN), *map(str, args)], capture_output=True, text=True, timeout=60,
                       env=env, check=False)
    return r.returncode, r.stdout


def summary(n=1, now=None):
    execs = [{"container_id": "%012x" % i + "0" * 52, "pod": "shop/web-%d" % i, "pod_container": "web",
              "age_seconds": 100, "cause": {"kind": "pthread_create_eagain"}} for i in range(n)]
    return {"checked_at": now or time.time(), "stuck_execs": execs, "hung": [], "containers": []}


def metrics_file(tmp_path, s):
    f = tmp_path / "hangdoctor.prom"
    f.write_text(_metrics.render(s))
    return f


def test_textfile_with_a_stuck_exec_is_a_problem_naming_the_pod(tmp_path):
    rc, out = run("--source", "textfile", "--metrics-file", metrics_file(tmp_path, summary()))
    assert rc == 1, out
    assert out == "1 stuck exec(s): shop/web-0 (web)\n"


def test_textfile_without_stuck_exec_is_ok(tmp_path):
    rc, out = run("--source", "textfile", "--metrics-file", metrics_file(tmp_path, summary(0)))
    assert rc == 0, out
    assert out.startswith("no stuck exec")


def test_many_pods_fit_the_output_limit_and_say_how_many_are_left_out(tmp_path):
    f = metrics_file(tmp_path, summary(12))
    for limit in (80, 40):
        rc, out = run("--source", "textfile", "--metrics-file", f, "--max-output", limit)
        assert rc == 1
        line = out.rstrip("\n")
        assert "\n" not in line and len(line) <= limit, line
        assert line.startswith("12 stuck exec(s): shop/web-0") and line.endswith(" more"), line


def test_hostile_pod_names_stay_one_printable_line(tmp_path):
    s = summary()
    s["stuck_execs"][0]["pod"] = "shop/we\nb\x1b[2J\u2028"
    rc, out = run("--source", "textfile", "--metrics-file", metrics_file(tmp_path, s), "--max-output", 200)
    assert rc == 1
    assert out.count("\n") == 1 and all(" " <= ch <= "~" for ch in out.rstrip("\n")), repr(out)


@pytest.mark.parametrize("content, why", [
    (None, "cannot read"),
    ("", "no hangdoctor metrics"),
    ("garbage\n\x00\xff", "no hangdoctor metrics"),
    ("hangdoctor_stuck_execs 1\n", "no hangdoctor metrics"),
])
def test_unreadable_or_foreign_metrics_are_unknown(tmp_path, content, why):
    f = tmp_path / "m.prom"
    if content is not None:
        f.write_text(content)
    rc, out = run("--source", "textfile", "--metrics-file", f)
    assert rc == 2 and out.startswith("unknown: ") and why in out, out


def test_stale_metrics_are_unknown_not_ok(tmp_path):
    f = metrics_file(tmp_path, summary(0, now=time.time() - 3600))
    rc, out = run("--source", "textfile", "--metrics-file", f, "--max-age", 900)
    assert rc == 2 and "old" in out, out
    rc, out = run("--source", "textfile", "--metrics-file", f, "--max-age", 7200)
    assert rc == 0, out


@pytest.mark.parametrize("args", [
    ["--source", "textfile"],
    ["--confirm-interval", "-1"],
    ["--container-ids", "not-hex"],
    ["--source", "nope"],
])
def test_bad_arguments_are_unknown(args):
    rc, out = run(*args)
    assert rc == 2, out


def test_proc_source_refuses_a_directory_that_is_not_procfs(tmp_path):
    rc, out = run("--proc-root", tmp_path, "--collection-path", collections_path())
    assert rc == 2 and out.startswith("unknown: "), out


def test_proc_source_without_the_collection_says_so(tmp_path):
    if any((Path(p) / "ansible_collections" / "hangdoctor" / "runtime").exists()
           for p in ("/usr/share/ansible/collections", Path.home() / ".ansible" / "collections")):
        pytest.skip("hangdoctor.runtime is installed on this machine: the plugin finds it by itself")
    lone = tmp_path / "hangdoctor_npd.py"
    lone.write_bytes(PLUGIN.read_bytes())
    r = subprocess.run([sys.executable, str(lone)], capture_output=True, text=True, timeout=60, check=False,
                       env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert r.returncode == 2 and "hangdoctor.runtime not found" in r.stdout, r.stdout + r.stderr


def test_config_follows_the_custom_plugin_monitor_format():
    cfg = json.loads(CONFIG.read_text())
    assert cfg["plugin"] == "custom"
    assert {"invoke_interval", "timeout", "max_output_length", "concurrency"} <= set(cfg["pluginConfig"])
    limit = cfg["pluginConfig"]["max_output_length"]
    assert [c["type"] for c in cfg["conditions"]] == ["RuncExecDeadlock"]
    kinds = sorted(r["type"] for r in cfg["rules"])
    assert kinds == ["permanent", "temporary"], kinds
    for rule in cfg["rules"]:
        if rule["type"] == "permanent":
            assert rule["condition"] == "RuncExecDeadlock"
        assert rule["reason"] and rule["path"] and rule["timeout"]
        assert Path(rule["args"][0]).name == PLUGIN.name
        assert "--max-output=%d" % limit in rule["args"]
        # The plugin's own scan must end well before NPD kills it.
        assert int(rule["timeout"].rstrip("s")) <= int(cfg["pluginConfig"]["timeout"].rstrip("s"))


def test_config_arguments_are_ones_the_plugin_accepts(tmp_path):
    """Every rule's arguments parse (textfile mode swapped in, so the check
    needs no root): an argument the plugin does not know would exit 2."""
    cfg = json.loads(CONFIG.read_text())
    f = metrics_file(tmp_path, summary(0))
    for rule in cfg["rules"]:
        args = [a for a in rule["args"][1:] if not a.startswith("--source")]
        rc, out = run(*args, "--source", "textfile", "--metrics-file", f)
        assert rc == 0, (rule, out)


def test_a_partial_scan_is_unknown_not_ok(tmp_path):
    """A scan that reached its deadline proves nothing about what it did not
    examine: without a stuck exec that is "unknown", with one a problem."""
    s = dict(summary(0), scan_seconds=20.1, scan_partial=True)
    assert "hangdoctor_scan_partial 1" in _metrics.render(s)
    rc, out = run("--source", "textfile", "--metrics-file", metrics_file(tmp_path, s))
    assert rc == 2 and "partial" in out, out
    partial = dict(summary(1), scan_seconds=20.1, scan_partial=True)
    rc, out = run("--source", "textfile", "--metrics-file", metrics_file(tmp_path, partial))
    assert rc == 1, out
    whole = dict(summary(0), scan_seconds=0.2, scan_partial=False)
    rc, out = run("--source", "textfile", "--metrics-file", metrics_file(tmp_path, whole))
    assert rc == 0, out


@pytest.mark.parametrize("flag,value", [
    ("--max-age", "nan"), ("--max-age", "inf"), ("--max-age", "-5"), ("--max-age", "0"),
    ("--confirm-interval", "nan"), ("--min-age-seconds", "nan"), ("--min-age-seconds", "-inf"),
])
def test_non_finite_or_negative_numbers_are_refused(tmp_path, flag, value):
    """float('nan') parses, and nan > max_age is always false: a day-old file read OK."""
    f = metrics_file(tmp_path, summary(0, now=time.time() - 86400))
    rc, out = run("--source", "textfile", "--metrics-file", f, "%s=%s" % (flag, value))
    assert rc == 2 and "finite" in out, (rc, out)


def test_a_metrics_file_with_a_non_finite_timestamp_is_unknown(tmp_path):
    f = metrics_file(tmp_path, summary(0))
    f.write_text(re.sub(r"(?m)^hangdoctor_last_run_timestamp_seconds .*$", "hangdoctor_last_run_timestamp_seconds NaN",
                        f.read_text()))
    rc, out = run("--source", "textfile", "--metrics-file", f)
    assert rc == 2 and "no valid last-run time" in out, (rc, out)


def test_the_deprecated_per_container_name_of_older_files_is_still_read(tmp_path):
    f = metrics_file(tmp_path, summary(1))
    text = "\n".join(line for line in f.read_text().splitlines() if "hangdoctor_container_stuck_execs" not in line)
    assert "hangdoctor_stuck_exec{" in text
    f.write_text(text + "\n")
    rc, out = run("--source", "textfile", "--metrics-file", f)
    assert rc == 1 and "shop/web-0" in out, (rc, out)
