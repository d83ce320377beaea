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
    assert result["summary"] == {"probes": 4, "converted": 2, "skipped": 1, "kept": 1, "objects_to_patch": 1}
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
