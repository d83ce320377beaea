"""The shipped alert rules: promtool accepts them, promtool's unit tests of
every alert pass (fires, names the pod, resolves), the PrometheusRule carries
exactly the same groups, every alert links a runbook section that exists, and
the metrics that ``_metrics.render`` writes pass ``promtool check metrics``."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _summary as sm
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _metrics
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _node_risk

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "extras" / "prometheus" / "hangdoctor.rules.yml"
RULE_TESTS = ROOT / "extras" / "prometheus" / "hangdoctor.rules.test.yml"
PROMETHEUS_RULE = ROOT / "extras" / "kubernetes" / "prometheusrule.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"
PROMTOOL = shutil.which("promtool")
need_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package 'prometheus'; scripts/bootstrap.sh installs it)")
# Metrics whose series name a pod: their alerts must too.
POD_METRICS = ("hangdoctor_container_stuck_execs", "hangdoctor_stuck_exec", "hangdoctor_hung_container",
               "hangdoctor_recurring_drain", "hangdoctor_container_cause")


def promtool(*args, stdin=None):
    r = subprocess.run([PROMTOOL, *map(str, args)], input=stdin, capture_output=True, text=True, timeout=120, check=False)
    return r.returncode, r.stdout + r.stderr


def alerts():
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r]


@need_promtool
def test_promtool_check_rules():
    rc, out = promtool("check", "rules", RULES)
    assert rc == 0, out
    assert "SUCCESS: %d rules found" % len(alerts()) in out


@need_promtool
def test_promtool_check_rules_on_the_prometheusrule_spec(tmp_path):
    spec = yaml.safe_load(PROMETHEUS_RULE.read_text())["spec"]
    f = tmp_path / "spec.yml"
    f.write_text(yaml.safe_dump(spec))
    rc, out = promtool("check", "rules", f)
    assert rc == 0, out


@need_promtool
def test_promtool_unit_tests_of_every_alert():
    rc, out = promtool("test", "rules", RULE_TESTS)
    assert rc == 0, out
    assert "SUCCESS" in out


def test_every_alert_is_unit_tested_firing_and_resolving():
    tests = yaml.safe_load(RULE_TESTS.read_text())
    assert tests["rule_files"] == [RULES.name]
    for rule in alerts():
        name = rule["alertname"] if "alertname" in rule else rule["alert"]
        cases = sorted(((c["eval_time"], c["exp_alerts"]) for t in tests["tests"] for c in t["alert_rule_test"]
                        if c["alertname"] == name), key=lambda c: _seconds(c[0]))
        fired = [i for i, (dummy, exp) in enumerate(cases) if exp]
        assert fired, "%s: no test where it fires" % name
        assert any(not exp for dummy, exp in cases[fired[-1] + 1:]), "%s: no test where it resolves" % name
        if set(re.findall(r"\bhangdoctor_[a-z_]+", rule["expr"])) & set(POD_METRICS):
            for dummy, exp in cases:
                for a in exp:
                    assert a["exp_labels"].get("pod") and a["exp_labels"].get("namespace"), (name, a)
                    assert a["exp_labels"]["pod"] in a["exp_annotations"]["summary"], (name, a)


def _seconds(text):
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhd])", str(text)))


def test_prometheusrule_carries_exactly_the_rules_file_groups():
    rule = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    assert rule["metadata"]["name"]
    assert rule["spec"] == yaml.safe_load(RULES.read_text())


def test_every_alert_links_an_existing_runbook_section():
    anchors = set()
    for line in RUNBOOK.read_text().splitlines():
        if line.startswith("#"):
            # GitHub's anchor: lower case, punctuation dropped, spaces to dashes.
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^a-z0-9 _-]", "", title).replace(" ", "-"))
    for rule in alerts():
        url = rule["annotations"]["runbook_url"]
        assert url.startswith("https://github.com/hangdoctor/hangdoctor.runtime/blob/main/docs/runbook.md#"), url
        assert url.split("#", 1)[1] in anchors, "%s: no section %s in docs/runbook.md" % (rule["alert"], url)
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])


def test_every_metric_an_alert_uses_is_rendered():
    # node_doctor's file and node_risk's own file
    names = set(n for n, dummy, dummy2 in _metrics.METRICS + _node_risk.METRICS)
    for rule in alerts():
        used = set(re.findall(r"\bhangdoctor_[a-z_]+", rule["expr"]))
        assert used and used <= names, (rule["alert"], used - names)


def _busy_summary():
    """A remediate run as the role builds it: a stuck exec in a pod, a hung
    container, a drain that recurred, a guard, both engines."""
    cid = "4f2a9c1d7e3b" + "0" * 52
    other = "9b8c7d6e5f4a" + "1" * 52
    stuck = {"container_id": cid, "writer": {"role": "runc_init", "pid": 4821},
             "runc_init": {"pid": 4821, "age_seconds": 320.5, "wchan": "pipe_write"}, "runc_exec": {"pid": 4820},
             "shim": {"pid": 100, "version": "v2"}, "pipe": {"inode": 1, "capacity": 65536, "queued": 65536},
             "peek": "runtime/cgo: pthread_create failed: Resource temporarily unavailable\n",
             "cause": {"kind": "pthread_create_eagain"}, "age_seconds": 320.5,
             "pod": {"namespace": "shop", "name": "web-0", "container": "web"}}
    hung = {"containers": [{"id": cid, "name": "k8s_web_web-0_shop_u_0", "pod_namespace": "shop", "pod_name": "web-0",
                            "responsive": False},
                           {"id": other, "name": "db", "responsive": False}],
            "hung": [cid, other], "engine": {"reachable": True, "version": "20.10.24"}}
    s = sm.host_summary({"stuck_execs": [stuck], "suspects": [], "scan_seconds": 0.31}, hung, host="n1", now=1700000000)
    # the triage named causes: the stuck container's two, and another for the container without a pod
    s["containers"][0]["causes"] = ["pipe_full_init", "engine_lock"]
    s["containers"][1]["causes"] = ["frozen_cgroup"]
    s["engines"] = [{"name": "docker", "present": True, "checked": True, "reachable": True},
                    {"name": "containerd", "present": True, "checked": True, "reachable": False, "error": "timeout"}]
    return sm.remediation(s, drain={"drained": [{"container_id": cid, "bytes": 70000, "evidence_path": "/x",
                                                 "unblocked": True, "cause": {"kind": "pthread_create_eagain"}}],
                                    "recurring": [{"container_id": cid, "rounds": 2}]},
                          guard={"enabled": True, "blocked": False, "reason": "ok"},
                          verify_exec={"stuck_execs": []}, verify_hung={"hung": []})


@need_promtool
def test_promtool_check_metrics_on_rendered_output():
    first = _metrics.render(_busy_summary())
    for text in (first, _metrics.render(_busy_summary(), previous_text=first), _metrics.render({})):
        assert 'pod="web-0"' in text or text.count("{") <= 3
        rc, out = promtool("check", "metrics", stdin=text)
        # promtool prints lint problems and exits non-zero on any of them.
        assert rc == 0 and not out.strip(), out


@need_promtool
def test_named_causes_are_written_while_they_hold():
    before = dict(_busy_summary())
    before.pop("drained")
    text = _metrics.render(before)
    labels = 'namespace="shop",pod="web-0",container="web",container_id="4f2a9c1d7e3b"'
    assert 'hangdoctor_container_cause{%s,cause="pipe_full_init"} 1' % labels in text, text
    assert 'hangdoctor_container_cause{%s,cause="engine_lock"} 1' % labels in text, text
    assert 'hangdoctor_hung_container{%s,cause="pipe_full_init"} 1' % labels in text, text
    rc, out = promtool("check", "metrics", stdin=text)
    assert rc == 0 and not out.strip(), out
    # the drain repaired it: no cause left for that container
    assert 'hangdoctor_container_cause{%s' % labels not in _metrics.render(_busy_summary())


@need_promtool
def test_promtool_check_metrics_can_fail():
    """The check above is not vacuous: promtool rejects a malformed file and
    lints a counter without _total."""
    rc, out = promtool("check", "metrics", stdin='hangdoctor_stuck_exec{pod="a} 1\n')
    assert rc != 0
    rc, out = promtool("check", "metrics", stdin="# HELP x_drains d\n# TYPE x_drains counter\nx_drains 1\n")
    assert rc != 0 and "_total" in out, out


def test_every_pod_alert_is_tested_under_the_operators_relabelling():
    """kube-prometheus-stack's ServiceMonitor (honorLabels: false) gives every
    sample the exporter pod's namespace/pod/container and renames ours to
    exported_*: each alert on a per-pod metric has a promtool case with those
    labels, and there it names the stuck pod, not the exporter's."""
    tests = yaml.safe_load(RULE_TESTS.read_text())
    for rule in alerts():
        if not set(re.findall(r"\bhangdoctor_[a-z_]+", rule["expr"])) & set(POD_METRICS):
            continue
        fired = [a for t in tests["tests"] if any("exported_pod=" in i["series"] for i in t["input_series"])
                 for c in t["alert_rule_test"] if c["alertname"] == rule["alert"] for a in c["exp_alerts"]]
        assert fired, "%s: no promtool case under the operator's labels" % rule["alert"]
        for a in fired:
            assert not any(k.startswith("exported_") for k in a["exp_labels"]), a
            assert a["exp_labels"]["pod"] in a["exp_annotations"]["summary"], a
            assert "node-exporter" not in a["exp_labels"]["pod"], a


def test_the_deprecated_stuck_exec_name_is_still_written_with_the_same_series():
    stuck = [{"container_id": "%012x" % i + "0" * 52, "pod": "shop/web-%d" % i, "pod_container": "web",
              "age_seconds": 100, "cause": {"kind": "pthread_create_eagain"}} for i in range(3)]
    text = _metrics.render({"checked_at": 1700000000, "stuck_execs": stuck, "hung": [], "containers": []})
    new = [line.split(" ", 1)[1] for line in text.splitlines() if line.startswith("hangdoctor_container_stuck_execs{")]
    old = [line.split(" ", 1)[1] for line in text.splitlines() if line.startswith("hangdoctor_stuck_exec{")]
    assert len(new) == 3 and new == old
    assert "# HELP hangdoctor_stuck_exec Deprecated" in text
    for rule in alerts():
        assert "hangdoctor_stuck_exec " not in rule["expr"] + " " and "hangdoctor_stuck_exec{" not in rule["expr"], rule
