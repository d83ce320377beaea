"""The exec_probe_swap role end to end through ansible-playbook: file mode
with check and diff, backups outside the manifest directory, idempotence;
cluster mode up to the patch call, with kubernetes.core replaced by recording
stand-ins (no API server can run here)."""
import json
import re
import subprocess
import sys

import pytest
import yaml

from conftest import ansible_env, collections_path

sys.path.insert(0, collections_path())
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils.manifest_fixtures import copy_manifests  # noqa: E402


def playbook(extra_vars, *flags, env=None):
    cmd = ["ansible-playbook", "hangdoctor.runtime.exec_probe_swap", "-i", "localhost,", "-c", "local",
           "-e", "ansible_python_interpreter=%s" % sys.executable, "-e", json.dumps(extra_vars)] + list(flags)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=ansible_env(env), check=False)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    recap = r.stdout[r.stdout.rindex("PLAY RECAP"):]
    return r.stdout, recap


def test_file_mode_check_diff_apply_idempotent(tmp_path):
    tree = copy_manifests(tmp_path / "manifests")
    before = {p: p.read_bytes() for p in tree.rglob("*.yaml")}
    backups = tmp_path / "backups"
    report = tmp_path / "report.json"
    variables = {"exec_probe_swap_path": str(tree), "exec_probe_swap_backup_dir": str(backups),
                 "exec_probe_swap_min_timeout_seconds": 3, "exec_probe_swap_report_path": str(report),
                 "exec_probe_swap_rules": [{"workload": "postgres", "action": "tcp"}]}

    out, recap = playbook(variables, "--check", "--diff")
    assert {p: p.read_bytes() for p in tree.rglob("*.yaml")} == before, "check mode wrote a manifest"
    assert not backups.exists() and not report.exists()
    assert "changed=2" in recap and "failed=0" in recap  # the module and the report file would change
    assert "--- before: %s" % (tree / "apps" / "web.yaml") in out
    for line in (r"-\s+exec:$", r"\+\s+httpGet:$", r"\+\s+grpc:$", r"\+\s+tcpSocket:$",
                 r"\+\s+hangdoctor\.runtime/original-exec-probes: "):
        assert re.search("^" + line, out, re.M), line
    assert "pipeline" in out and "kubelet grpc probes connect without TLS" in out
    assert "managed by Helm release web" in out

    out, recap = playbook(variables, "--diff")
    assert "changed=2" in recap and "failed=0" in recap  # the module and the report file
    changed = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*.yaml") if p.read_bytes() != before[p])
    assert changed == ["apps/data.yaml", "apps/grpc.yaml", "apps/web.yaml", "static-pods/kube-controller-manager.yaml"]
    postgres = [d for d in yaml.safe_load_all((tree / "apps" / "data.yaml").read_text()) if d["metadata"]["name"] == "postgres"][0]
    probes = postgres["spec"]["template"]["spec"]["containers"][0]
    assert probes["livenessProbe"] == {"timeoutSeconds": 5, "tcpSocket": {"port": 5432}}
    # nothing but the manifests stays in the static-pod directory; backups went to backup_dir
    assert sorted(p.name for p in (tree / "static-pods").iterdir()) == ["etcd.yaml", "kube-controller-manager.yaml"]
    assert len(list(backups.rglob("*.bak"))) == 4
    data = json.loads(report.read_text())
    assert data["summary"]["converted"] == 9 and data["summary"]["skipped"] == 4
    assert {(r["name"], r["container"], r["probe"]) for r in data["probes"] if r["result"] == "skipped"} == {
        ("web", "metrics", "liveness"), ("redis", "redis", "liveness"), ("redis", "redis", "readiness"),
        ("node-agent", "agent", "readiness")}

    after = {p: p.read_bytes() for p in tree.rglob("*.yaml")}
    variables["exec_probe_swap_report_path"] = ""
    out, recap = playbook(variables)
    assert "failed=0" in recap and {p: p.read_bytes() for p in tree.rglob("*.yaml")} == after
    assert "changed=0" in recap


STUB = '''#!/usr/bin/python
from __future__ import absolute_import, division, print_function
__metaclass__ = type
import json
from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(argument_spec=dict(
        kind=dict(type="str"), api_version=dict(type="str", default="v1"), namespace=dict(type="str"),
        name=dict(type="str"), patch=dict(type="list", elements="dict"), label_selectors=dict(type="list", elements="str"),
        field_selectors=dict(type="list", elements="str"),
        kubeconfig=dict(type="raw"), context=dict(type="str")), supports_check_mode=True)
    %s


main()
'''
INFO = '''docs = json.load(open(%r))
    module.exit_json(changed=False, resources=[d for d in docs if d["kind"] == module.params["kind"]])'''
PATCH = '''with open(%r, "a") as f:
        f.write(json.dumps(dict(module.params, check_mode=module.check_mode)) + "\\n")
    module.exit_json(changed=True)'''


def test_cluster_mode_reaches_the_patch_call(tmp_path):
    tree = copy_manifests(tmp_path / "manifests")
    docs = [d for p in sorted(tree.rglob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
    (tmp_path / "objects.json").write_text(json.dumps(docs))
    log = tmp_path / "patches.jsonl"
    plugins = tmp_path / "stubs" / "ansible_collections" / "kubernetes" / "core" / "plugins" / "modules"
    plugins.mkdir(parents=True)
    (plugins / "k8s_info.py").write_text(STUB % (INFO % str(tmp_path / "objects.json")))
    (plugins / "k8s_json_patch.py").write_text(STUB % (PATCH % str(log)))
    env = {"ANSIBLE_COLLECTIONS_PATH": "%s:%s" % (collections_path(), tmp_path / "stubs")}
    # the listener evidence has its own test (test_container_listen_info.py); here: the path to the patch call
    variables = {"exec_probe_swap_mode": "cluster", "exec_probe_swap_kinds": ["Deployment", "DaemonSet", "Pod", "StatefulSet"],
                 "exec_probe_swap_verify_listeners": False}

    out, recap = playbook(variables, "--check", env=env)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    # Pods are immutable in the API: the static-pod manifest is reported, not patched
    assert sorted((c["api_version"], c["kind"], c["name"]) for c in calls) == [
        ("apps/v1", "DaemonSet", "node-agent"), ("apps/v1", "Deployment", "web")]
    assert all(c["check_mode"] for c in calls)
    web = [c for c in calls if c["name"] == "web"][0]
    assert web["namespace"] == "shop" and web["patch"][0]["op"] == "test"
    assert "Pod probes cannot be changed in the API" in out
    assert "failed=0" in recap


def test_old_names_still_work_and_say_they_are_deprecated(tmp_path):
    """The module was exec_probe_convert and the playbook swap_exec_probes:
    both still run, each with a deprecation warning naming the new name."""
    tree = copy_manifests(tmp_path / "manifests")
    before = {p: p.read_bytes() for p in tree.rglob("*.yaml")}
    cmd = ["ansible-playbook", "hangdoctor.runtime.swap_exec_probes", "-i", "localhost,", "-c", "local", "--check",
           "-e", "ansible_python_interpreter=%s" % sys.executable, "-e", json.dumps({"exec_probe_swap_path": str(tree)})]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=ansible_env(), check=False)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "[DEPRECATION WARNING] the playbook hangdoctor.runtime.swap_exec_probes is renamed" in r.stdout
    assert "Swap exec probes for tcpSocket" in r.stdout and "failed=0" in r.stdout
    assert {p: p.read_bytes() for p in tree.rglob("*.yaml")} == before

    cmd = ["ansible", "localhost", "-c", "local", "-e", "ansible_python_interpreter=%s" % sys.executable,
           "-m", "hangdoctor.runtime.exec_probe_convert", "-a", json.dumps({"path": str(tree)}), "--check"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=90,
                       env=ansible_env({"ANSIBLE_DEPRECATION_WARNINGS": "1"}), check=False)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    out = " ".join((r.stdout + r.stderr).split())
    assert "exec_probe_convert has been deprecated" in out and "renamed hangdoctor.runtime.exec_probe_swap" in out
    assert '"changed": true' in r.stdout and {p: p.read_bytes() for p in tree.rglob("*.yaml")} == before


def test_the_http_tools_exit_status_matches_what_the_conversion_assumes(tmp_path):
    """The conversion turns an HTTP check into httpGet (which fails on status >= 400) only when the
    tool's own exit status already failed on such a status.  Checked against the real binaries:
    busybox-static's wget applet, GNU wget and curl, on a local server answering 200, 401, 404, 500."""
    import shutil
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _probe_errors, _probe_infer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(int(self.path.strip("/")))
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    tools = {
        "busybox wget": [shutil.which("busybox"), "wget", "-q", "-O", "/dev/null"],
        "busybox wget --spider": [shutil.which("busybox"), "wget", "-q", "--spider"],
        "GNU wget": ["wget", "-q", "-O", "/dev/null"],
        "GNU wget --spider": ["wget", "-q", "--spider"],
        "curl -s": ["curl", "-s", "-o", "/dev/null"],
        "curl -sf": ["curl", "-sf", "-o", "/dev/null"],
        "curl --fail-with-body": ["curl", "-s", "--fail-with-body", "-o", "/dev/null"],
    }
    try:
        for name, argv in tools.items():
            assert argv[0], "busybox-static is not installed"
            codes = {}
            for status in (200, 401, 404, 500):
                url = "http://127.0.0.1:%d/%d" % (port, status)
                codes[status] = subprocess.run(argv + [url], capture_output=True, timeout=30, check=False).returncode
            assert codes[200] == 0, (name, codes)
            fails_on_errors = all(codes[s] != 0 for s in (401, 404, 500))
            # the probe as a chart writes it: the tool by name inside the container
            probe = ["wget" if "wget" in name else "curl"] + argv[2 if argv[0].endswith("busybox") else 1:] + [
                "http://localhost:%d/healthz" % port]
            if fails_on_errors:
                assert _probe_infer.infer(probe)[0] == "httpGet", (name, codes)
            else:
                with pytest.raises(_probe_errors.Refused) as e:
                    _probe_infer.infer(probe)
                assert e.value.kind == "stricter", (name, codes)
            # GNU wget exits 8 on a server error response (6 on 401, an authentication failure); busybox 1
            if name.startswith("GNU wget"):
                assert (codes[401], codes[404], codes[500]) == (6, 8, 8), codes
            if name.startswith("busybox wget"):
                assert (codes[401], codes[404], codes[500]) == (1, 1, 1), codes
    finally:
        server.shutdown()
        server.server_close()
