"""node_doctor against the real runtime: the one module execution per host that
the roles make.  Every test first proves the hang is real."""
import hashlib
import os

import pytest

from conftest import run_module
from test_runc_pipe_drain import assert_stuck, evidence_body, new_container


def opts(harness, tmp_path, **over):
    args = {"docker_host": harness.docker_host, "inspect_timeout": 2, "confirm_interval": 0.3,
            "metrics_dir": str(tmp_path / "metrics"), "evidence_dir": str(tmp_path / "evidence"),
            "drain_min_age_seconds": 0}
    (tmp_path / "metrics").mkdir(exist_ok=True)
    args.update(over)
    return args


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_detect_then_remediate_each_in_one_execution(harness, release, tmp_path):
    cid = new_container(harness)
    exec_proc, pid = harness.hang(cid)
    assert_stuck(harness, cid, pid)

    res, dummy = run_module("node_doctor", opts(harness, tmp_path, container_ids=[cid]))
    assert res["_status"] == "SUCCESS" and res["changed"] is False, res
    fact = res["ansible_facts"]["hangdoctor"]
    assert fact["mode"] == "detect"
    assert [s["container_id"] for s in fact["stuck_execs"]] == [cid]
    assert fact["hung"] == [cid] and fact["engine"]["reachable"] is True
    assert fact["stuck_execs"][0]["writer_pid"] == pid
    assert cid[:12] in res["msg"] or "drain-" in res["msg"]
    prom = (tmp_path / "metrics" / "hangdoctor.prom").read_text()
    assert metric(prom, "hangdoctor_stuck_execs") == 1 and metric(prom, "hangdoctor_hung_containers") == 1
    assert not harness.inspect_answers(cid, timeout=1.0), "detect must not change anything"

    res, dummy = run_module("node_doctor", opts(harness, tmp_path, container_ids=[cid], mode="remediate",
                                                require_guard="never"))
    assert res["_status"] == "CHANGED", res
    fact = res["ansible_facts"]["hangdoctor"]
    (entry,) = fact["drained"]
    assert entry["container_id"] == cid and entry["pid"] == pid
    assert entry["unblocked"] is True and entry["verified"] is True
    assert fact["verify"] == {"still_stuck": [], "still_hung": [], "ok": True}
    assert harness.inspect_answers(cid, timeout=2.0)
    exec_proc.wait(timeout=10)
    length, sha, data = harness.record(pid)
    dummy, body = evidence_body(entry["evidence_path"])
    assert hashlib.sha256(body[:length]).hexdigest() == sha
    assert os.stat(entry["evidence_path"]).st_mode & 0o777 == 0o600
    prom = (tmp_path / "metrics" / "hangdoctor.prom").read_text()
    assert metric(prom, "hangdoctor_drained_total") == 1
    assert "drained %s" % cid[:12] in res["msg"]

    # idempotent: nothing left
    res, dummy = run_module("node_doctor", opts(harness, tmp_path, container_ids=[cid], mode="remediate",
                                                require_guard="never"))
    assert res["_status"] == "SUCCESS" and not res["ansible_facts"]["hangdoctor"]["drained"], res
    assert "no stuck exec" in res["msg"]


def test_check_mode_reports_what_it_would_drain_and_writes_nothing(harness, release, tmp_path):
    cid = new_container(harness)
    dummy, pid = harness.hang(cid)
    before = assert_stuck(harness, cid, pid)
    res, dummy = run_module("node_doctor", opts(harness, tmp_path, container_ids=[cid], mode="remediate",
                                                require_guard="never"), check=True)
    fact = res["ansible_facts"]["hangdoctor"]
    (would,) = fact["drained"]
    assert would["check_mode"] is True and would["bytes"] == before["queued"]
    assert fact["metrics"]["written"] is False
    assert not (tmp_path / "metrics" / "hangdoctor.prom").exists()
    assert not (tmp_path / "evidence").exists() or not os.listdir(str(tmp_path / "evidence"))
    assert not harness.inspect_answers(cid, timeout=1.0)


def test_on_a_kubernetes_node_drains_wait_for_the_guard(harness, release, tmp_path, kubelet):
    if kubelet.poll() is not None:
        pytest.fail("the stand-in kubelet did not start")
    cid = new_container(harness)
    exec_proc, pid = harness.hang(cid)
    assert_stuck(harness, cid, pid)
    base = opts(harness, tmp_path, container_ids=[cid], mode="remediate")

    res, dummy = run_module("node_doctor", base)
    fact = res["ansible_facts"]["hangdoctor"]
    assert res["changed"] is False and fact["guard_needed"] is True, res
    assert fact["kubernetes"]["kubelet_pid"] == kubelet.pid
    assert fact["kubernetes"]["node_name"] == "node-17.example"
    assert [s["reason"] for s in fact["skipped"]] == ["waiting for the eviction guard (Kubernetes node)"]
    assert not harness.inspect_answers(cid, timeout=1.0)

    blocked = {"enabled": True, "ran": True, "blocked": True, "reason": "2 pod(s) bound to node-17 carry a deletionTimestamp"}
    res, dummy = run_module("node_doctor", dict(base, guard=blocked))
    fact = res["ansible_facts"]["hangdoctor"]
    assert res["changed"] is False and fact["guard_needed"] is False
    assert [s["reason"] for s in fact["skipped"]] == [blocked["reason"]]
    assert fact["guard"]["blocked"] is True
    assert not harness.inspect_answers(cid, timeout=1.0)

    allowed = {"enabled": True, "ran": True, "blocked": False, "reason": "no pending pod deletions on node-17"}
    res, dummy = run_module("node_doctor", dict(base, guard=allowed))
    assert res["_status"] == "CHANGED", res
    assert res["ansible_facts"]["hangdoctor"]["drained"][0]["pid"] == pid
    assert harness.inspect_answers(cid, timeout=2.0)
    exec_proc.wait(timeout=10)


def test_a_node_without_engines_is_a_fact_not_a_failure(harness, tmp_path):
    none = {"docker_host": "unix://%s/none.sock" % tmp_path, "containerd_address": str(tmp_path / "none-ctr.sock")}
    res, dummy = run_module("node_doctor", opts(harness, tmp_path, container_ids=["0" * 12], **none))
    assert res["_status"] == "SUCCESS", res
    fact = res["ansible_facts"]["hangdoctor"]
    assert fact["engine"]["skipped"].startswith("no container engine on this node")
    assert sorted((e["name"], e["present"], e["checked"]) for e in fact["engines"]) == [
        ("containerd", False, False), ("docker", False, False)]
    assert "engine not checked: no container engine on this node" in res["msg"]
    res, dummy = run_module("node_doctor", opts(harness, tmp_path, engine_required=True, **none))
    assert res["_status"] == "FAILED!" and "no container engine answers on this node" in res["msg"], res


@pytest.mark.parametrize("comm,argv,node", [
    ("k3s-agent", ["agent", "--node-name", "Edge-3.Example"], "edge-3.example"),
    ("kubelite", ["--kubelet-args-file=/var/snap/microk8s/current/args/kubelet"], None),
])
def test_on_a_k3s_or_microk8s_node_drains_wait_for_the_guard(harness, release, tmp_path, comm, argv, node):
    """k3s and MicroK8s run the kubelet inside their own binary: no process
    named kubelet, and still a Kubernetes node (the guard fails open otherwise)."""
    import signal
    import socket
    import subprocess
    import time
    exe = tmp_path / comm
    exe.write_text("#!/bin/sh\nsleep 600\n")
    exe.chmod(0o755)
    stand_in = subprocess.Popen([str(exe)] + argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        time.sleep(0.3)
        assert open("/proc/%d/comm" % stand_in.pid).read().strip() == comm
        cid = new_container(harness)
        exec_proc, pid = harness.hang(cid)
        assert_stuck(harness, cid, pid)
        res, dummy = run_module("node_doctor", opts(harness, tmp_path, container_ids=[cid], mode="remediate"))
        fact = res["ansible_facts"]["hangdoctor"]
        assert res["changed"] is False and fact["guard_needed"] is True, res
        assert fact["kubernetes"]["kubelet_pid"] == stand_in.pid, fact["kubernetes"]
        assert fact["kubernetes"]["node_name"] == (node or socket.gethostname().lower())
        assert [s["reason"] for s in fact["skipped"]] == ["waiting for the eviction guard (Kubernetes node)"]
        assert not harness.inspect_answers(cid, timeout=1.0)
    finally:
        os.killpg(stand_in.pid, signal.SIGKILL)
        stand_in.wait()
