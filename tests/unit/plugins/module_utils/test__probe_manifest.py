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


# ---- manifests that stay reviewable: the diff touches only the converted probes
REVIEWABLE = '''\
# Source: shop/templates/api.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api   # the API
  namespace: shop
  labels:
    app: api
    enabled: "true"
spec:
  selector:
    matchLabels:
      app: api
  template:
    metadata:
      labels:
        app: api
    spec:
      containers:
      # sequences flush with their key, as kubectl writes them
      - name: api
        image: 'registry.example/api:2.1'
        env:
        - name: PORT
          value: "8080"
        ports:
        - containerPort: 8080
          name: http
        livenessProbe:
          # liveness: the HTTP endpoint answers
          exec:
            command:
            - sh
            - -c
            - curl -fsS http://localhost:${PORT}/healthz
          periodSeconds: 10   # every ten seconds
        readinessProbe:
          exec:
            command: ["sh", "-c", "curl -sf http://localhost:8080/ready | grep -q ok"]
          periodSeconds: 5
      - name: sidecar
        image: registry.example/sidecar:1
        livenessProbe:
          exec:
            command: [nc, -z, 127.0.0.1, "15000"]
'''


def _changed_lines(before, after):
    """(lines only in before, lines only in after), stripped."""
    import difflib
    removed, added = [], []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, before.splitlines(), after.splitlines()).get_opcodes():
        if tag in ("replace", "delete"):
            removed += [ln.strip() for ln in before.splitlines()[i1:i2]]
        if tag in ("replace", "insert"):
            added += [ln.strip() for ln in after.splitlines()[j1:j2]]
    return removed, added


def test_diff_touches_only_the_converted_probe(tmp_path):
    f = tmp_path / "api.yaml"
    f.write_text(REVIEWABLE)
    reports, files, diffs, dummy = _probe_manifest.convert_files(str(f), [], None)
    after = f.read_text()
    assert reports[0]["edit"] == "line"
    rows = {r["container"] + "/" + r["probe"]: r for r in reports[0]["converted"] + reports[0]["skipped"]}
    assert rows["api/liveness"]["handler"] == {"httpGet": {"path": "/healthz", "port": 8080}}
    assert rows["api/readiness"]["reason_kind"] == "shell"
    assert rows["sidecar/liveness"]["reason_kind"] == "loopback-only"
    removed, added = _changed_lines(REVIEWABLE, after)
    # exactly the exec block of the converted probe went; its handler and the annotation came
    assert removed == ["exec:", "command:", "- sh", "- -c", "- curl -fsS http://localhost:${PORT}/healthz"]
    assert [a for a in added if not a.startswith("hangdoctor.runtime/original-exec-probes:")] == [
        "annotations:", "httpGet:", "path: /healthz", "port: 8080"]
    # everything else is byte for byte: comments, quotes, the flush sequences, the untouched probes
    for keep in ('# liveness: the HTTP endpoint answers', 'enabled: "true"', "image: 'registry.example/api:2.1'",
                 "periodSeconds: 10   # every ten seconds", '      - name: sidecar',
                 'command: ["sh", "-c", "curl -sf http://localhost:8080/ready | grep -q ok"]',
                 'command: [nc, -z, 127.0.0.1, "15000"]'):
        assert keep in after
    # the new handler sits where exec was, indented like it
    assert "        livenessProbe:\n          # liveness: the HTTP endpoint answers\n          httpGet:\n            path: /healthz\n" in after
    doc = yaml.safe_load(after)
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert doc["spec"]["template"]["spec"]["containers"][0]["livenessProbe"] == {
        "httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10}
    # a second run keeps the first original in the annotation and edits only its line
    f.write_text(after.replace("readinessProbe:\n          exec:\n            command: [\"sh\", \"-c\", \"curl -sf http://localhost:8080/ready | grep -q ok\"]",
                               "readinessProbe:\n          exec:\n            command: [\"curl\", \"-f\", \"http://localhost:8080/ready\"]"))
    second_before = f.read_text()
    reports, dummy, dummy2, dummy3 = _probe_manifest.convert_files(str(f), [], None)
    removed, added = _changed_lines(second_before, f.read_text())
    assert removed[0].startswith("hangdoctor.runtime/original-exec-probes:") and removed[1:] == [
        "exec:", 'command: ["curl", "-f", "http://localhost:8080/ready"]']
    assert added[0].startswith("hangdoctor.runtime/original-exec-probes:") and added[1:] == [
        "httpGet:", "path: /ready", "port: 8080"]


FLOW = '''\
apiVersion: v1
kind: Pod
metadata:
  name: agent
  labels:
    enabled: "true"   # quoted on purpose
spec:
  hostNetwork: true
  containers:
    - name: agent
      image: registry.example/agent:1
      livenessProbe: {exec: {command: [nc, -z, 127.0.0.1, "9000"]}, periodSeconds: 5}
'''


@pytest.mark.parametrize("ruamel", [True, False], ids=["ruamel", "pyyaml"])
def test_documents_the_line_edit_cannot_handle_fall_back(tmp_path, monkeypatch, ruamel):
    """A flow-style probe cannot be edited line by line: ruamel.yaml keeps the
    rest of the document (comments, quotes) when it is installed, PyYAML
    re-dumps it otherwise; both give exactly the patched document."""
    if ruamel:
        assert _probe_manifest.HAS_RUAMEL, "ruamel.yaml is in the test requirements"
    monkeypatch.setattr(_probe_manifest, "HAS_RUAMEL", ruamel)
    f = tmp_path / "agent.yaml"
    f.write_text(FLOW)
    reports, files, dummy, dummy2 = _probe_manifest.convert_files(str(f), [], None)
    after = f.read_text()
    assert reports[0]["edit"] == ("ruamel" if ruamel else "pyyaml")
    probe = yaml.safe_load(after)["spec"]["containers"][0]["livenessProbe"]
    assert probe == {"tcpSocket": {"host": "127.0.0.1", "port": 9000}, "periodSeconds": 5}
    if ruamel:
        assert 'enabled: "true"   # quoted on purpose' in after
        assert list(probe) == ["tcpSocket", "periodSeconds"]  # the handler took exec's place
    else:
        assert "enabled: 'true'" in after
