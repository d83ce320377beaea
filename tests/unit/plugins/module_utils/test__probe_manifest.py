"""File mode: manifests rewritten in place, backups, permissions, bad YAML."""
import os

import kubernetes_validate
import pytest
import yaml

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _probe_errors, _probe_manifest
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils.manifest_fixtures import copy_manifests
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils.probe_helpers import K8S_VERSION


# ---- file mode
@pytest.fixture
def tree(tmp_path):
    return copy_manifests(tmp_path / "manifests")


def test_file_mode_rewrites_only_changed_documents(tree, tmp_path):
    web = tree / "apps" / "web.yaml"
    before = web.read_text()
    before_data = (tree / "apps" / "data.yaml").read_text()
    reports, files, diffs, backups = _probe_manifest.convert_files(str(tree), [], None, check_mode=True)
    assert web.read_text() == before and backups == [] and str(web) in files
    diff = [d for d in diffs if d["before_header"] == str(web)][0]
    assert diff["before"] == before and "httpGet" in diff["after"]

    backup_dir = tmp_path / "backups"
    reports, files, diffs, backups = _probe_manifest.convert_files(str(tree), [], None, backup_dir=str(backup_dir))
    after = web.read_text()
    assert after == diff["after"]
    # untouched documents keep their bytes and comments; the changed one keeps the comment above it
    assert "name: web-config   # untouched document: this comment must survive" in after
    assert after.startswith("# Rendered from the \"web\" chart")
    assert after.count("\n---\n") == before.count("\n---\n")
    assert before.split("---\n")[1] == after.split("---\n")[1]  # the Service
    assert before.split("---\n")[3] == after.split("---\n")[3]  # the ConfigMap
    assert (tree / "apps" / "data.yaml").read_text() == before_data
    docs = list(yaml.safe_load_all(after))
    assert [d["kind"] for d in docs] == ["Service", "Deployment", "ConfigMap"]
    assert list(docs[1]) == ["apiVersion", "kind", "metadata", "spec"]
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    # backups are outside the manifest tree, and nothing else was left next to the manifests
    assert len(backups) == 3 and all(b.startswith(str(backup_dir)) for b in backups)
    assert sorted(p.name for p in (tree / "static-pods").iterdir()) == ["etcd.yaml", "kube-controller-manager.yaml"]
    assert (backup_dir / "apps").is_dir()
    # a second run finds nothing left to do
    reports, files, diffs, backups = _probe_manifest.convert_files(str(tree), [], None, backup_dir=str(backup_dir))
    assert files == [] and backups == []


def test_backup_dir_inside_a_manifest_directory_is_refused(tree):
    with pytest.raises(_probe_errors.ProbeError) as e:
        _probe_manifest.convert_files(str(tree / "static-pods"), [], None, backup_dir=str(tree / "static-pods" / "bak"))
    assert "kubelet" in str(e.value)
    assert not (tree / "static-pods" / "bak").exists()


def test_file_mode_keeps_permissions_and_reports_bad_yaml(tree):
    manifest = tree / "static-pods" / "kube-controller-manager.yaml"
    os.chmod(str(manifest), 0o600)
    _probe_manifest.convert_files(str(manifest), [], None)
    assert os.stat(str(manifest)).st_mode & 0o777 == 0o600
    assert "httpGet" in manifest.read_text()
    (tree / "broken.yaml").write_text("a: [b\n")
    with pytest.raises(_probe_errors.ProbeError):
        _probe_manifest.convert_files(str(tree), [], None)
    with pytest.raises(_probe_errors.ProbeError):
        _probe_manifest.convert_files(str(tree / "missing"), [], None)
