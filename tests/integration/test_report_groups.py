"""The report role groups hosts by cause and by goroutine-stack fingerprint
(ansible-playbook: the role's fleet_report -> report_markdown -> report_write
and the closing summary), from host facts shaped as node_doctor publishes
them: container rows with ``diagnosis.causes`` and
``diagnosis.evidence.stacks.fingerprints``."""
import json
import sys

from conftest import collections_path, run_report_role

LOCK = "dockerd: ContainerInspect waits for the container lock held by ContainerExecStart -> containerd Exec"
SHIM = "shim: Start -> runc exec"


def facts():
    sys.path.insert(0, collections_path())
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _summary as sm
    out = {}
    for i in range(40):
        host = "node-%02d" % i
        cid = "%012x" % (0xabc000 + i) + "0" * 52
        hung = {"containers": [{"id": cid, "name": "web-%d" % i, "responsive": False, "latency_ms": 5000}],
                "hung": [cid], "engine": {"reachable": True, "version": "20.10.24"}}
        fact = sm.host_summary({"stuck_execs": []}, hung, host=host)
        if i < 37:
            causes, fps = ["pipe_full_init", "engine_lock"], [LOCK, SHIM]
        else:
            causes, fps = ["frozen_cgroup"], []
        fact["containers"][0]["diagnosis"] = {"causes": causes, "chain": [], "evidence": {"stacks": {
            "files": [], "fingerprints": fps, "refused": []}}, "action": "report", "done": None}
        out[host] = fact
    out["quiet"] = sm.host_summary({"stuck_execs": []}, {"containers": [], "hung": [], "engine": {"reachable": True}},
                                   host="quiet")
    return out


def test_the_report_groups_hosts_by_cause_and_fingerprint(tmp_path):
    r, reports = run_report_role(tmp_path, facts(), forks=10, timeout=600)
    rep = json.loads((reports / "hangdoctor-detect.json").read_text())
    assert [(g["cause"], len(g["hosts"])) for g in rep["groups"]["by_cause"]] == [
        ("engine_lock", 37), ("pipe_full_init", 37), ("frozen_cgroup", 3)]
    assert [g["text"] for g in rep["groups"]["by_fingerprint"]] == [
        "37 nodes: engine_lock in ContainerInspect behind ContainerExecStart",
        "37 nodes: pipe_full_init in Start waiting on runc exec"]
    assert rep["groups"]["by_fingerprint"][0]["hosts"] == ["node-%02d" % i for i in range(37)]
    md = (reports / "hangdoctor-detect.md").read_text()
    assert "## Causes across the fleet" in md and "## Goroutine-stack fingerprints across the fleet" in md
    assert "- 37 nodes: engine\\_lock in ContainerInspect behind ContainerExecStart (node-00, " in md
    assert "| frozen\\_cgroup | 3 | 3 | node-37, node-38, node-39 |" in md
    # the play's closing summary
    assert "37 nodes: engine_lock in ContainerInspect behind ContainerExecStart" in r.stdout
    assert "3 nodes: frozen_cgroup (3 containers)" in r.stdout
