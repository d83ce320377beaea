"""The node-problem-detector plugin's RuncDeadlockRisk check (``--check risk``)
as NPD runs it, on risk files that ``_node_risk.render_metrics`` wrote, and its
monitor config."""
import json
import subprocess
import sys
import time
from pathlib import Path

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _node_risk

ROOT = Path(__file__).resolve().parents[3]
PLUGIN = ROOT / "extras" / "node-problem-detector" / "hangdoctor_npd.py"
CONFIG = ROOT / "extras" / "node-problem-detector" / "hangdoctor-risk-plugin-monitor.json"


def run(*args):
    r = subprocess.run([sys.executable, str(PLUGIN), *map(str, args)], capture_output=True, text=True, timeout=60,
                       check=False)
    return r.returncode, r.stdout


def risk_file(tmp_path, collapsed, containers_at_risk, now=None, advisory=False):
    result = {"pipe": {"limits": {"soft_pages": 1},
                       "engines": [{"engine": "docker-uid1000", "capacity": 8192 if collapsed else 65536,
                                    "collapsed": collapsed, "user_pipes": 3}]},
              "headroom": {"containers": [{"container_id": "%064x" % i, "at_risk": True, "risk_reasons": ["pids_at_limit"],
                                           "pids_headroom": 0, "name": "c%d" % i} for i in range(containers_at_risk)],
                           "at_risk": ["%064x" % i for i in range(containers_at_risk)]},
              "versions": {"advisories": [{"component": "runc", "version": "1.3.2", "id": "runc_exec_hang_regression",
                                           "severity": "warning"}] if advisory else []}}
    f = tmp_path / "hangdoctor_risk.prom"
    f.write_text(_node_risk.render_metrics(result, now=now or time.time()))
    return f


def test_collapsed_pipes_and_exhausted_containers_are_a_problem(tmp_path):
    rc, out = run("--check", "risk", "--risk-metrics-file", risk_file(tmp_path, True, 2))
    assert rc == 1, out
    assert out.strip() == "deadlock risk: small pipes docker-uid1000; 2 container(s) near limits"


def test_no_risk_is_ok_and_an_advisory_alone_is_not_a_condition(tmp_path):
    rc, out = run("--check", "risk", "--risk-metrics-file", risk_file(tmp_path, False, 0, advisory=True))
    assert rc == 0 and out.startswith("no deadlock risk"), out


def test_stale_missing_or_foreign_files_are_unknown(tmp_path):
    rc, out = run("--check", "risk", "--risk-metrics-file", risk_file(tmp_path, True, 0, now=time.time() - 7200))
    assert rc == 2 and "stale" in out, out
    rc, out = run("--check", "risk", "--risk-metrics-file", tmp_path / "none.prom")
    assert rc == 2 and out.startswith("unknown: cannot read"), out
    (tmp_path / "x.prom").write_text("node_load1 0.5\n")
    rc, out = run("--check", "risk", "--risk-metrics-file", tmp_path / "x.prom")
    assert rc == 2 and "no hangdoctor risk metrics" in out, out


def test_config_raises_runc_deadlock_risk_with_arguments_the_plugin_accepts(tmp_path):
    cfg = json.loads(CONFIG.read_text())
    assert cfg["plugin"] == "custom" and [c["type"] for c in cfg["conditions"]] == ["RuncDeadlockRisk"]
    (rule,) = cfg["rules"]
    assert rule["type"] == "permanent" and rule["condition"] == "RuncDeadlockRisk"
    assert Path(rule["args"][0]).name == PLUGIN.name
    assert "--max-output=%d" % cfg["pluginConfig"]["max_output_length"] in rule["args"]
    f = risk_file(tmp_path, False, 0)
    args = [a for a in rule["args"][1:] if not a.startswith("--risk-metrics-file")]
    rc, out = run(*args, "--risk-metrics-file", f)
    assert rc == 0, out


def test_both_checks_read_their_file_bounded_and_name_it(tmp_path):
    """One bounded reader serves the stuck-exec and the risk check: a missing
    or oversized file is "unknown", with the file's label in the message."""
    big = tmp_path / "big.prom"
    with open(str(big), "wb") as f:
        f.truncate((1 << 20) + 1)  # sparse: larger than the plugin reads
    for args, label in ((["--source", "textfile", "--metrics-file"], "metrics file"),
                        (["--check", "risk", "--risk-metrics-file"], "risk metrics file")):
        rc, out = run(*(args + [tmp_path / "none.prom", "--max-output", 300]))
        assert rc == 2 and out.startswith("unknown: cannot read %s (No such file or directory): " % label), out
        rc, out = run(*(args + [big, "--max-output", 300]))
        assert rc == 2 and out.strip() == "unknown: %s larger than %d bytes: %s" % (label, 1 << 20, big), out
