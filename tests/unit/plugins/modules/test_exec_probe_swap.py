"""exec_probe_swap as Ansible runs it: argument spec, check and diff mode,
clear failures for bad input."""
import copy
import shutil

import jsonpatch
import pytest
import yaml

from ansible_collections.hangdoctor.runtime.plugins.modules import exec_probe_swap
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils.manifest_fixtures import FIXTURES, copy_manifests
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.modules.module_runner import run_main


def run(args, capsys):
    return run_main(exec_probe_swap, args, capsys)


def web_deployment():
    docs = list(yaml.safe_load_all((FIXTURES / "apps" / "web.yaml.txt").read_text()))
    return [d for d in docs if d and d["kind"] == "Deployment"][0]


def test_definitions_give_patches_and_change_nothing(capsys):
    dep = web_deployment()
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}}
    result = run({"definitions": [svc, dep], "min_timeout_seconds": 4,
                  "rules": [{"container": "web", "probe": ["startup"], "action": "keep"}]}, capsys)
    assert not result.get("failed"), result
    assert result["changed"] is False and result["files"] == []
    assert len(result["objects"]) == 1
    obj = result["objects"][0]
    assert (obj["kind"], obj["namespace"], obj["name"]) == ("Deployment", "shop", "web")
    assert [e["probe"] for e in obj["converted"]] == ["liveness", "readiness"]
    assert [e["probe"] for e in obj["kept"]] == ["startup"]
    assert "pipeline" in obj["skipped"][0]["reason"]
    assert result["summary"] == {"probes": 4, "converted": 2, "skipped": 1, "kept": 1, "objects_to_patch": 1,
                                 "verified": 0, "unverified": 2, "refused_by_evidence": 0}
    # without node evidence every conversion says so
    assert {e["verification"] for e in obj["converted"]} == {"unverified"}
    assert result["listener_targets"] == []
    after = jsonpatch.JsonPatch(obj["patch"]).apply(copy.deepcopy(dep))
    web = after["spec"]["template"]["spec"]["containers"][0]
    assert web["livenessProbe"]["timeoutSeconds"] == 4  # max(curl -m 3, min_timeout_seconds 4)
    assert "exec" in web["startupProbe"]


def test_file_mode_check_and_diff(tmp_path, capsys):
    tree = copy_manifests(tmp_path / "m")
    before = (tree / "apps" / "web.yaml").read_text()
    result = run({"path": str(tree), "_ansible_check_mode": True, "_ansible_diff": True}, capsys)
    assert result["changed"] is True
    assert (tree / "apps" / "web.yaml").read_text() == before
    assert len(result["diff"]) == len(result["files"]) == 3
    result = run({"path": str(tree), "backup_dir": str(tmp_path / "bak")}, capsys)
    assert result["changed"] is True and "diff" not in result and len(result["backups"]) == 3
    assert "httpGet" in (tree / "apps" / "web.yaml").read_text()
    result = run({"path": str(tree)}, capsys)
    assert result["changed"] is False and result["summary"]["converted"] == 0


@pytest.mark.parametrize("args,msg", [
    ({}, "one of the following is required: definitions, path"),
    ({"path": "/nonexistent/manifests"}, "neither a file nor a directory"),
    ({"definitions": [], "rules": [{"command": "("}]}, "not a valid regular expression"),
    ({"definitions": [{"kind": "Deployment"}], "rules": [{"command": "("}]}, "not a valid regular expression"),
    ({"definitions": [{"kind": "Deployment"}], "rules": [{"action": "grpc", "port": "grpc"}]}, "grpc needs a numeric port"),
    ({"definitions": [{"kind": "Deployment"}], "rules": [{"action": "fly"}]}, "action"),
    ({"definitions": [{"kind": "Deployment"}], "min_timeout_seconds": 0}, "at least 1"),
])
def test_bad_input_fails_clearly(args, msg, capsys):
    result = run(args, capsys)
    assert result["failed"] is True and msg in result["msg"], result
    assert "Traceback" not in result["msg"]


def test_backup_dir_inside_static_pod_directory_fails(tmp_path, capsys):
    tree = tmp_path / "manifests"
    shutil.copytree(str(FIXTURES / "static-pods"), str(tree))
    result = run({"path": str(tree), "backup_dir": str(tree / "old")}, capsys)
    assert result["failed"] is True and "kubelet" in result["msg"]
    assert sorted(p.name for p in tree.iterdir()) == ["etcd.yaml", "kube-controller-manager.yaml"]


# ---- evidence before conversion (cluster mode) ------------------------------------

def _workload(name, port, command=None, kind="Deployment"):
    command = command or ["curl", "-f", "http://localhost:%d/healthz" % port]
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": "shop"},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [
                         {"name": name, "image": "x:1", "ports": [{"containerPort": port}],
                          "livenessProbe": {"exec": {"command": command}, "periodSeconds": 5, "timeoutSeconds": 3}}]}}}}


def _pod(workload, node, suffix="x2x4q", running=True, runtime="docker", cid=None):
    spec = copy.deepcopy(workload["spec"]["template"]["spec"])
    spec["nodeName"] = node
    name = workload["metadata"]["name"]
    owner = ({"kind": "ReplicaSet", "name": name + "-5d9c8b7f6", "controller": True} if workload["kind"] == "Deployment"
             else {"kind": workload["kind"], "name": name, "controller": True})
    state = {"running": {"startedAt": "2026-12-01T10:00:00Z"}} if running else {"waiting": {"reason": "CrashLoopBackOff"}}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "%s-5d9c8b7f6-%s" % (name, suffix), "namespace": "shop", "labels": {"app": name},
                         "ownerReferences": [owner]},
            "spec": spec,
            "status": {"phase": "Running", "containerStatuses": [
                {"name": name, "state": state, "containerID": "%s://%s" % (runtime, cid or (name + "0" * 60)[:64])}]}}


def _evidence(target, ports=None, error=None, **flags):
    r = {"item": target, "changed": False}
    r.update(flags)
    if ports is not None or error:
        r["containers"] = [{"container_id": target["container_id"], "ports": ports or {}, "error": error}]
    return r


def test_verify_listeners_plans_checks_then_decides_from_the_evidence(capsys):
    web, api, far, gone = _workload("web", 8080), _workload("api", 8081), _workload("far", 8082), _workload("gone", 8083)
    pods = [_pod(web, "node-a"), _pod(api, "node-a"), _pod(far, "node-z"), _pod(gone, "node-a", running=False)]
    args = {"definitions": [web, api, far, gone], "pods": pods, "node_hosts": {"node-a": "host-a"}, "verify_listeners": True}
    plan = run(args, capsys)
    assert not plan.get("failed"), plan
    # nothing is converted without evidence
    assert plan["summary"]["converted"] == 0 and all(not o["patch"] for o in plan["objects"])
    targets = {t["container"]: t for t in plan["listener_targets"]}
    assert set(targets) == {"web", "api"}
    assert targets["web"]["host"] == "host-a" and targets["web"]["node"] == "node-a" and targets["web"]["ports"] == [8080]
    assert targets["web"]["runtime"] == "docker" and targets["web"]["container_id"] == ("web" + "0" * 60)[:64]
    rows = {r["name"]: r for r in plan["probes"]}
    assert rows["far"]["reason_kind"] == "unverified" and "not in the inventory (node-z)" in rows["far"]["reason"]
    assert rows["gone"]["reason_kind"] == "unverified" and "no running pod" in rows["gone"]["reason"]

    evidence = [_evidence(targets["web"], {"8080": {"reachable_from_node": False, "addresses": ["127.0.0.1"]}}),
                _evidence(targets["api"], {"8081": {"reachable_from_node": True, "addresses": ["0.0.0.0"]}})]
    result = run(dict(args, listener_evidence=evidence), capsys)
    rows = {r["name"]: r for r in result["probes"]}
    assert rows["web"]["result"] == "skipped" and rows["web"]["reason_kind"] == "loopback-only"
    assert "only on 127.0.0.1" in rows["web"]["reason"] and "node-a" in rows["web"]["reason"]
    assert rows["api"]["result"] == "converted" and rows["api"]["verification"] == "verified"
    assert "0.0.0.0" in rows["api"]["evidence"]
    assert [o["name"] for o in result["objects"] if o["patch"]] == ["api"]
    assert result["summary"]["verified"] == 1 and result["summary"]["refused_by_evidence"] == 3

    # nothing bound, an unreachable node, a failed check
    evidence = [_evidence(targets["web"], {"8080": {"reachable_from_node": None, "addresses": []}}),
                _evidence(targets["api"], unreachable=True, msg="ssh: connect timed out")]
    result = run(dict(args, listener_evidence=evidence), capsys)
    rows = {r["name"]: r for r in result["probes"]}
    assert rows["web"]["reason_kind"] == "not-listening" and "nothing listens on port 8080" in rows["web"]["reason"]
    assert rows["api"]["reason_kind"] == "unverified" and "unreachable" in rows["api"]["reason"]

    # allow_unverified converts what no node could prove, never what a node refused
    evidence = [_evidence(targets["web"], {"8080": {"reachable_from_node": False, "addresses": ["127.0.0.1"]}}),
                _evidence(targets["api"], failed=True, msg="permission denied")]
    result = run(dict(args, listener_evidence=evidence, allow_unverified=True), capsys)
    rows = {r["name"]: r for r in result["probes"]}
    assert rows["web"]["result"] == "skipped" and rows["web"]["reason_kind"] == "loopback-only"
    for name in ("api", "far", "gone"):
        assert rows[name]["result"] == "converted" and rows[name]["verification"] == "unverified", rows[name]
    api_obj = [o for o in result["objects"] if o["name"] == "api"][0]
    assert any("allow_unverified" in w and "permission denied" in w for w in api_obj["warnings"])


def test_a_pod_of_another_revision_proves_nothing(capsys):
    web = _workload("web", 8080)
    old = _workload("web", 8080, command=["curl", "-f", "http://localhost:8080/old"])
    result = run({"definitions": [web], "pods": [_pod(old, "node-a")], "node_hosts": {"node-a": "host-a"},
                  "verify_listeners": True}, capsys)
    assert result["listener_targets"] == []
    assert result["probes"][0]["reason_kind"] == "unverified" and "no running pod" in result["probes"][0]["reason"]


def test_exec_probe_inventory_per_node(capsys):
    web, db = _workload("web", 8080), _workload("db", 5432, command=["pg_isready"], kind="StatefulSet")
    db["spec"]["template"]["spec"]["containers"][0]["livenessProbe"] = {"exec": {"command": ["pg_isready"]}}
    pods = [_pod(web, "node-a"), _pod(web, "node-b", suffix="q8w9e"), _pod(db, "node-a")]
    result = run({"definitions": [web, db], "pods": pods}, capsys)
    inv = {n["node"]: n for n in result["exec_probe_inventory"]}
    assert set(inv) == {"node-a", "node-b"} and result["exec_probe_inventory"][0]["node"] == "node-a"
    assert inv["node-a"]["source"] == "api" and inv["node-a"]["exec_probes"] == 2
    # web every 5 s (12/min), db with the API default of 10 s (6/min)
    assert inv["node-a"]["execs_per_minute"] == 18.0 and inv["node-b"]["execs_per_minute"] == 12.0
    db_row = [c for c in inv["node-a"]["containers"] if c["container"] == "db"][0]
    assert (db_row["kind"], db_row["name"], db_row["pod"]) == ("StatefulSet", "db", "db-5d9c8b7f6-x2x4q")
    assert db_row["probes"] == [{"probe": "liveness", "command": ["pg_isready"], "period_seconds": 10, "timeout_seconds": 1,
                                 "failure_threshold": 3, "execs_per_minute": 6.0}]


def test_inventory_from_manifests_and_bad_evidence_options(capsys, tmp_path):
    tree = copy_manifests(tmp_path / "m")
    result = run({"path": str(tree), "node_name": "cp-1"}, capsys)
    assert not result.get("failed"), result
    inv = result["exec_probe_inventory"]
    assert [n["node"] for n in inv] == ["cp-1"] and inv[0]["source"] == "manifests" and inv[0]["exec_probes"] > 0
    assert all(r["verification"] == "unverified" for r in result["probes"] if r["result"] == "converted")
    result = run({"path": str(tree), "verify_listeners": True}, capsys)
    assert result["failed"] and "verify_listeners needs definitions" in result["msg"]
    result = run({"definitions": [], "verify_listeners": True}, capsys)
    assert result["failed"] and "verify_listeners needs pods" in result["msg"]
    result = run({"definitions": [], "pods": [], "listener_evidence": []}, capsys)
    assert result["failed"] and "only read with verify_listeners=true" in result["msg"]
    result = run({"definitions": [], "pods": [{"kind": "Pod"}]}, capsys)
    assert result["failed"] and "pods must be Pod objects" in result["msg"]


def test_a_host_network_probe_kept_on_loopback_is_proven_by_a_loopback_listener(capsys):
    agent = _workload("agent", 9100, kind="DaemonSet")
    agent["spec"]["template"]["spec"]["hostNetwork"] = True
    args = {"definitions": [agent], "pods": [_pod(agent, "node-a")], "node_hosts": {"node-a": "host-a"}, "verify_listeners": True}
    target = run(args, capsys)["listener_targets"][0]
    assert target["probes"][0]["loopback_ok"] is True
    loopback = {"9100": {"reachable_from_node": False, "addresses": ["127.0.0.1"]}}
    result = run(dict(args, listener_evidence=[_evidence(target, loopback)]), capsys)
    row = result["probes"][0]
    assert row["result"] == "converted" and row["verification"] == "verified" and "host network" in row["evidence"]
    assert row["handler"] == {"httpGet": {"host": "127.0.0.1", "path": "/healthz", "port": 9100}}
    result = run(dict(args, listener_evidence=[_evidence(target, {"9100": {"reachable_from_node": None, "addresses": []}})]), capsys)
    assert result["probes"][0]["reason_kind"] == "not-listening"
