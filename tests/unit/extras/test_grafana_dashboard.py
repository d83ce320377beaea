"""The shipped Grafana dashboard (extras/grafana/hangdoctor-dashboard.json):
valid JSON in Grafana's model, every panel query parses (promtool), uses only
metrics that node_doctor writes (never the deprecated name), and returns data
from a file that ``_metrics.render`` wrote, both as a plain scrape and under
the Prometheus Operator's relabelling, where the pod tables still name the
stuck pod."""
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _metrics

from test_prometheus_rules import _busy_summary

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "extras" / "grafana" / "hangdoctor-dashboard.json"
PROMTOOL = shutil.which("promtool")
need_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package 'prometheus')")
# Grafana's variables, as Grafana would expand them for a 10-minute range
VARIABLES = {"$__rate_interval": "5m", "$__range": "10m", "$instance": ".*"}
OPERATOR = {"namespace": "monitoring", "pod": "kps-prometheus-node-exporter-7xk2p", "container": "node-exporter"}


def dashboard():
    return json.loads(DASHBOARD.read_text())


def queries():
    out = []
    for p in dashboard()["panels"]:
        for t in p["targets"]:
            expr = t["expr"]
            for k, v in VARIABLES.items():
                expr = expr.replace(k, v)
            out.append((p["title"], t["refId"], expr))
    return out


def test_dashboard_model_is_complete():
    d = dashboard()
    assert d["uid"] and d["title"] and d["schemaVersion"] >= 30
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)) and len(ids) >= 10
    names = [v["name"] for v in d["templating"]["list"]]
    assert names == ["datasource", "instance"]
    for p in d["panels"]:
        assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]
        assert set(p["gridPos"]) == {"x", "y", "w", "h"} and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]
        assert p["description"], p["title"]
        for t in p["targets"]:
            assert 'instance=~"$instance"' in t["expr"], (p["title"], t["expr"])


def test_every_query_uses_only_metrics_node_doctor_writes():
    written = set(n for n, dummy, dummy2 in _metrics.METRICS) - {_metrics.DEPRECATED_STUCK_EXEC}
    used = set()
    for title, ref, expr in queries():
        names = set(re.findall(r"\bhangdoctor_[a-z_]+", expr))
        assert names and names <= written, (title, ref, names - written)
        used |= names
    # the dashboard shows every metric a person looks at, not a subset
    assert written - used <= {"hangdoctor_engine_present"}, written - used


def _series(text, extra):
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$", line)
        labels = dict(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if extra is OPERATOR:
            labels = dict(("exported_" + k if k in OPERATOR else k, v) for k, v in labels.items())
        labels.update(extra)
        labels.update({"instance": "node-a", "job": "node"})
        sel = "%s{%s}" % (m.group(1), ",".join('%s="%s"' % kv for kv in sorted(labels.items())))
        out.append({"series": sel, "values": "%sx30" % m.group(3)})
    return out


@need_promtool
def test_every_query_parses(tmp_path):
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": "dashboard:%d" % i, "expr": expr} for i, (dummy, dummy2, expr) in enumerate(queries())]}]}
    f = tmp_path / "dashboard.rules.yml"
    f.write_text(yaml.safe_dump(rules))
    r = subprocess.run([PROMTOOL, "check", "rules", str(f)], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


@need_promtool
@pytest.mark.parametrize("scrape", ["plain", "operator"])
def test_every_query_returns_data_from_a_file_node_doctor_writes(tmp_path, scrape):
    """absent(query) fires when the query returns nothing: no alert may fire.
    The pod tables must name the stuck pod (web-0), never the exporter pod."""
    text = _metrics.render(_busy_summary())
    s = dict(_busy_summary())
    s.pop("drained", None)
    text_stuck = _metrics.render(s)  # before the drain: the stuck exec is there too
    series = _series(text_stuck, OPERATOR if scrape == "operator" else {})
    names = set(x["series"].split("{")[0] for x in series)
    series += [x for x in _series(text, OPERATOR if scrape == "operator" else {})
               if x["series"].split("{")[0] not in names]
    rules = []
    for i, (title, ref, expr) in enumerate(queries()):
        rules.append({"alert": "Empty%d" % i, "expr": "absent(%s)" % expr})
        if "by (instance, namespace, pod" in expr:
            rules.append({"alert": "NotThePod%d" % i, "expr": (
                'absent(sum by (pod) (%s) * on (pod) group_left () label_replace(vector(1), "pod", "web-0", "", ""))'
                % expr)})
    (tmp_path / "q.rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "q", "rules": rules}]}))
    tests = {"rule_files": ["q.rules.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": series,
        "alert_rule_test": [{"alertname": r["alert"], "eval_time": "20m", "exp_alerts": []} for r in rules]}]}
    (tmp_path / "q.test.yml").write_text(yaml.safe_dump(tests))
    r = subprocess.run([PROMTOOL, "test", "rules", "q.test.yml"], capture_output=True, text=True, timeout=120,
                       check=False, cwd=str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
