"""The report filters show the fleet by cause and by stack fingerprint (plugins/filter/report.py)."""
import json

from ansible_collections.hangdoctor.runtime.plugins.filter import report as rp

LOCK = "dockerd: ContainerInspect waits for the container lock held by ContainerExecStart -> containerd Exec"


def fact(host, causes, fps):
    return {"host": host, "hung": ["c" * 64], "stuck_execs": [], "containers": [
        {"container_id": "c" * 64, "name": "web", "hung": True, "stuck_execs": 0,
         "diagnosis": {"causes": causes, "evidence": {"stacks": {"fingerprints": fps}}}}]}


def test_markdown_lines_and_stats_carry_the_groups():
    facts = [fact("n%d" % i, ["engine_lock"], [LOCK]) for i in range(3)] + [fact("m", ["frozen_cgroup"], [])]
    rep = rp.fleet_report(facts, hosts=[f["host"] for f in facts], now=0)
    md = rp.report_markdown(rep)
    assert "## Causes across the fleet" in md
    assert "| engine\\_lock | 3 | 3 | n0, n1, n2 |" in md
    assert "| frozen\\_cgroup | 1 | 1 | m |" in md
    assert "- 3 nodes: engine\\_lock in ContainerInspect behind ContainerExecStart (n0, n1, n2)" in md
    lines = rp.report_lines(rep)
    assert "3 nodes: engine_lock (3 containers)" in lines
    assert "3 nodes: engine_lock in ContainerInspect behind ContainerExecStart" in lines
    stats = rp.report_stats(rep)
    assert stats["groups"] == ["3 nodes: engine_lock in ContainerInspect behind ContainerExecStart"]
    assert stats["causes"] == [{"cause": "engine_lock", "hosts": 3}, {"cause": "frozen_cgroup", "hosts": 1}]
    assert len(json.dumps(rp.report_stats(rep, 600))) <= 600


def test_a_hostile_fingerprint_cannot_break_the_markdown():
    evil = "dockerd: [x](http://e.vil) waits for a lock\n# heading | cell"
    rep = rp.fleet_report([fact("n1", ["engine_lock"], [evil])], hosts=["n1"], now=0)
    md = rp.report_markdown(rep)
    assert "\n# heading" not in md and "\n\\# heading" not in md
    assert "](http" not in md.replace("\\](http", "")
    assert "\\[x\\]" in md


def test_no_groups_no_sections():
    rep = rp.fleet_report([{"host": "q", "containers": []}], hosts=["q"], now=0)
    assert rep["groups"] == {"by_cause": [], "by_fingerprint": []}
    assert "across the fleet" not in rp.report_markdown(rep)
