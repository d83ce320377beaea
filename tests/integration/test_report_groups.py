"""The report role groups hosts by cause and by goroutine-stack fingerprint
(ansible-playbook: the role's fleet_report -> report_markdown -> report_write
and the closing summary), from host facts shaped as node_doctor publishes
them: container rows with ``diagnosis.causes`` and
``diagnosis.evidence.stacks.fingerprints``."""
import json
import subprocess
import sys

import yaml

from conftest import ansible_env, collections_path

LOCK = "dockerd: ContainerInspect waits for the container lock held by ContainerExecStart -> containerd Exec"
SHIM = "shim: Start -> runc exec"

PLAYBOOK = """
- name: Hosts with their node facts, then the run report
  hosts: all
  gather_facts: false
  tasks:
    - name: The node's hangdoctor fact
      ansible.builtin.set_fact:
        hangdoctor: "{{ lookup('ansible.builtin.file', facts_dir ~ '/' ~ inventory_hostname ~ '.json') | from_json }}"
    - name: Write the report
      ansible.builtin.include_role:
        name: hangdoctor.runtime.report
      vars:
        hangdoctor_report_mode: detect
        hangdoctor_publish_stats: false
"""


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
    (tmp_path / "facts").mkdir()
    all_facts = facts()
    for host, fact in all_facts.items():
        (tmp_path / "facts" / ("%s.json" % host)).write_text(json.dumps(fact))
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    inv = {"all": {"hosts": dict((h, {}) for h in all_facts),
                   "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}
    (tmp_path / "inv.yml").write_text(yaml.safe_dump(inv))
    r = subprocess.run(["ansible-playbook", "-i", str(tmp_path / "inv.yml"), str(tmp_path / "play.yml"), "-f", "10",
                        "-e", "facts_dir=%s" % (tmp_path / "facts"), "-e", "hangdoctor_report_dir=%s" % (tmp_path / "reports")],
                       capture_output=True, text=True, timeout=600, env=ansible_env(), check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rep = json.loads((tmp_path / "reports" / "hangdoctor-detect.json").read_text())
    assert [(g["cause"], len(g["hosts"])) for g in rep["groups"]["by_cause"]] == [
        ("engine_lock", 37), ("pipe_full_init", 37), ("frozen_cgroup", 3)]
    assert [g["text"] for g in rep["groups"]["by_fingerprint"]] == [
        "37 nodes: engine_lock in ContainerInspect behind ContainerExecStart",
        "37 nodes: pipe_full_init in Start waiting on runc exec"]
    assert rep["groups"]["by_fingerprint"][0]["hosts"] == ["node-%02d" % i for i in range(37)]
    md = (tmp_path / "reports" / "hangdoctor-detect.md").read_text()
    assert "## Causes across the fleet" in md and "## Goroutine-stack fingerprints across the fleet" in md
    assert "- 37 nodes: engine\\_lock in ContainerInspect behind ContainerExecStart (node-00, " in md
    assert "| frozen\\_cgroup | 3 | 3 | node-37, node-38, node-39 |" in md
    # the play's closing summary
    assert "37 nodes: engine_lock in ContainerInspect behind ContainerExecStart" in r.stdout
    assert "3 nodes: frozen_cgroup (3 containers)" in r.stdout
