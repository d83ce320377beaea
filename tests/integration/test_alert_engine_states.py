"""The alert rules against metrics files that node_doctor really wrote, one
per engine state of a real dockerd (and containerd): absent (no socket),
healthy, hung (dockerd SIGSTOPped) and dead (dockerd and containerd killed,
their sockets left behind).  promtool then evaluates the shipped rules over
those files: HangdoctorEngineUnreachable fires for the hung and the dead
node, and for nothing else.

The harness here is private to this module: stopping and killing its daemons
must not disturb the session's harness that other tests use."""
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

import hdharness
from conftest import run_module

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "extras" / "prometheus" / "hangdoctor.rules.yml"
PROMTOOL = shutil.which("promtool")
STATES = ("absent", "healthy", "hung", "dead")

pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package 'prometheus')")


@pytest.fixture(scope="module")
def own_harness():
    hz = hdharness.Harness()
    try:
        hz.up()
        yield hz
    finally:
        pid = hz._pid_from(hz.dkr / "d.pid")
        if pid:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        errors = hz.down()
        assert not errors, errors


def node_doctor(tmp_path, state, docker_host, containerd_address):
    metrics = tmp_path / state
    metrics.mkdir()
    args = {"docker_host": docker_host, "containerd_address": containerd_address, "containerd_namespace": "moby",
            "inspect_timeout": 2, "confirm_interval": 0.2, "metrics_dir": str(metrics),
            # only a container id no harness uses: other tests' deadlocks on this host are not ours
            "container_ids": ["0" * 64]}
    res, dummy = run_module("node_doctor", args, timeout=180)
    assert res["_status"] == "SUCCESS", res
    return res, (metrics / "hangdoctor.prom").read_text()


def samples(text):
    """[(series selector, value)] of a textfile, as promtool's input_series."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-z_]+)(\{.*\})? (\S+)$", line)
        assert m, line
        out.append((m.group(1), m.group(2) or "", float(m.group(3))))
    return out


def engine_values(text, name):
    return dict((re.search(r'engine="([a-z]+)"', lab).group(1), v) for n, lab, v in samples(text) if n == name)


def expected_annotations(rule, labels):
    def fill(s):
        return re.sub(r"\{\{ \$labels\.([a-z_]+) \}\}", lambda m: labels[m.group(1)], s)
    return dict((k, fill(v)) for k, v in rule["annotations"].items())


def test_engine_unreachable_fires_for_hung_and_dead_engines_only(own_harness, tmp_path):
    hz = own_harness
    files, msgs = {}, {}
    res, files["absent"] = node_doctor(tmp_path, "absent", "unix://%s/none.sock" % tmp_path, str(tmp_path / "none.sock"))
    msgs["absent"] = res["msg"]
    res, files["healthy"] = node_doctor(tmp_path, "healthy", hz.docker_host, str(hz.containerd_sock))
    msgs["healthy"] = res["msg"]

    dockerd = hz._pid_from(hz.dkr / "d.pid")
    assert dockerd and hdharness.proc_comm(dockerd) == "dockerd"
    with hdharness.frozen(dockerd):
        assert not hz._ping(), "a stopped dockerd answered"
        res, files["hung"] = node_doctor(tmp_path, "hung", hz.docker_host, str(hz.containerd_sock))
        msgs["hung"] = res["msg"]
    assert hz._ping(), "dockerd did not come back after SIGCONT"

    containerd = hz._pid_from(hz.ctd / "c.pid")
    for pid in (dockerd, containerd):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while any(hdharness.proc_comm(p) not in (None,) and hdharness.proc_state(p) != "Z" for p in (dockerd, containerd)):
        assert time.monotonic() < deadline, "the daemons did not die"
        time.sleep(0.1)
    # what a dead daemon leaves: its socket, nobody behind it
    assert hz.docker_sock.exists() and hz.containerd_sock.exists()
    res, files["dead"] = node_doctor(tmp_path, "dead", hz.docker_host, str(hz.containerd_sock))
    msgs["dead"] = res["msg"]

    # What node_doctor wrote, state by state (checked means "we asked").
    want = {  # engine: (present, checked, reachable)
        "absent": {"docker": (0, 0, 0), "containerd": (0, 0, 0)},
        "healthy": {"docker": (1, 1, 1), "containerd": (1, 1, 1)},
        "hung": {"docker": (1, 1, 0), "containerd": (1, 1, 1)},
        "dead": {"docker": (1, 1, 0), "containerd": (1, 1, 0)},
    }
    for state in STATES:
        got = dict((e, tuple(int(engine_values(files[state], "hangdoctor_engine_" + k)[e])
                             for k in ("present", "checked", "reachable")))
                   for e in ("docker", "containerd"))
        assert got == want[state], (state, got, files[state])
    assert "engine not checked" in msgs["absent"] and "UNREACHABLE" not in msgs["absent"], msgs
    assert "engine answers" in msgs["healthy"], msgs
    for state in ("hung", "dead"):
        assert "engine UNREACHABLE: docker" in msgs[state] and "not checked" not in msgs[state], msgs

    # promtool evaluates the shipped rules over those very files: each state
    # is one node (instance), scraped every minute for 20 minutes.
    series = []
    for state in STATES:
        for name, labels, value in samples(files[state]):
            inner = labels[1:-1] if labels else ""
            extra = 'instance="%s",job="node"' % state
            sel = "%s{%s}" % (name, ",".join(x for x in (inner, extra) if x))
            series.append({"series": sel, "values": "%sx20" % repr(value)})
    rule = next(r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]
                if r.get("alert") == "HangdoctorEngineUnreachable")
    fired = []
    for state, engines in want.items():
        for engine, (dummy, checked, reachable) in sorted(engines.items()):
            if checked and not reachable:
                labels = {"engine": engine, "instance": state, "job": "node"}
                fired.append({"exp_labels": dict(labels, **rule["labels"]),
                              "exp_annotations": expected_annotations(rule, labels)})
    assert len(fired) == 3
    tests = {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": series,
        "alert_rule_test": [
            {"alertname": "HangdoctorEngineUnreachable", "eval_time": "2m", "exp_alerts": []},  # `for: 5m`
            {"alertname": "HangdoctorEngineUnreachable", "eval_time": "10m", "exp_alerts": fired},
        ]}]}
    test_file = tmp_path / "engine-states.test.yml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False))
    r = subprocess.run([PROMTOOL, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=120,
                       check=False)
    assert r.returncode == 0, r.stdout + r.stderr + "\n" + test_file.read_text()
