"""container_listen_info on the real runtime: busybox httpd bound to
127.0.0.1 and to the wildcard address in two containers (``--network none``,
so only loopback exists inside; a 0.0.0.0 listener is still wildcard), read
through the Docker Engine API and /proc/<pid>/net/tcp; then the
exec_probe_swap role's node-side step warning for the probe whose port is
loopback-only."""
import json
import subprocess
import sys
import textwrap
import time

import pytest

import hdharness
from conftest import ansible_env, run_module

LO_PORT, ANY_PORT = 8080, 8081


def state_pid(harness, cid):
    return int(harness.docker("inspect", "-f", "{{.State.Pid}}", cid, timeout=20, check=True).stdout.strip())


def wait_listening(pid, port, timeout=20.0):
    """(table, local address) of PORT's listener once httpd's socket shows
    up: the test must not race the container's start.  busybox httpd binds
    ``-p PORT`` to ``::`` when the kernel has IPv6, to 0.0.0.0 otherwise."""
    suffix = ":%04X" % port
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for table in ("tcp", "tcp6"):
            with open("/proc/%d/net/%s" % (pid, table)) as f:
                for line in f.readlines()[1:]:
                    fields = line.split()
                    if fields[1].endswith(suffix) and fields[3] == "0A":
                        return table, fields[1][:-len(suffix)]
        time.sleep(0.1)
    raise AssertionError("nothing listens on port %d in pid %d" % (port, pid))


@pytest.fixture(scope="module")
def httpds(harness):
    lo = harness.run_container("listen-lo", "v2", cmd=("httpd", "-f", "-p", "127.0.0.1:%d" % LO_PORT))
    anyc = harness.run_container("listen-any", "v2", cmd=("httpd", "-f", "-p", str(ANY_PORT)))
    out = {}
    for cid, port in ((lo, LO_PORT), (anyc, ANY_PORT)):
        pid = state_pid(harness, cid)
        out[cid] = (pid, wait_listening(pid, port))
    yield lo, anyc, out
    harness.docker("rm", "-f", lo, anyc, timeout=60)


def test_loopback_only_vs_wildcard(harness, httpds):
    lo, anyc, seen = httpds
    # the raw table as the kernel prints it, independently of the module
    assert seen[lo][1] == ("tcp", "0100007F")
    assert seen[anyc][1] in (("tcp", "0" * 8), ("tcp6", "0" * 32))
    result, wall = run_module("container_listen_info", {
        "container_ids": [lo[:12], "listen-any"], "ports": [LO_PORT, ANY_PORT],
        "docker_host": harness.docker_host, "timeout": 10}, check=True)
    assert result["_status"] == "SUCCESS" and result["changed"] is False, result
    by_id = {c["container_id"]: c for c in result["containers"]}
    assert set(by_id) == {lo, anyc}
    assert by_id[lo]["pid"] == seen[lo][0] and by_id[anyc]["pid"] == seen[anyc][0]
    assert by_id[lo]["listening"] == [{"port": LO_PORT, "address": "127.0.0.1", "family": "ipv4", "scope": "loopback"}]
    assert by_id[lo]["ports"] == {str(LO_PORT): {"reachable_from_node": False, "addresses": ["127.0.0.1"]},
                                  str(ANY_PORT): {"reachable_from_node": None, "addresses": []}}
    assert by_id[lo]["loopback_only"] == [LO_PORT]
    any_listen = by_id[anyc]["listening"]
    assert any_listen and all(s["port"] == ANY_PORT and s["scope"] == "wildcard" for s in any_listen)
    assert by_id[anyc]["ports"][str(ANY_PORT)]["reachable_from_node"] is True
    assert by_id[anyc]["loopback_only"] == []
    assert [(w["container_id"], w["port"]) for w in result["loopback_only"]] == [(lo, LO_PORT)]
    assert wall < 60


def test_by_pid_and_unknown_container(harness, httpds):
    lo, dummy, seen = httpds
    result, dummy_wall = run_module("container_listen_info", {"pids": [seen[lo][0]]})
    assert result["_status"] == "SUCCESS", result
    assert result["containers"][0]["ports"][str(LO_PORT)]["reachable_from_node"] is False
    result, dummy_wall = run_module("container_listen_info", {
        "container_ids": ["no-such-container"], "docker_host": harness.docker_host})
    assert result["_status"] == "FAILED!" and "no-such-container" in result["msg"], result
    assert "Traceback" not in json.dumps(result)


MANIFEST = textwrap.dedent("""\
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web, namespace: shop}
    spec:
      template:
        spec:
          containers:
            - name: web
              image: web:1
              livenessProbe:
                exec: {command: [wget, -q, -O, /dev/null, "http://127.0.0.1:%d/"]}
    ---
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: api, namespace: shop}
    spec:
      template:
        spec:
          containers:
            - name: api
              image: api:1
              readinessProbe:
                exec: {command: [nc, -z, localhost, "%d"]}
    """) % (LO_PORT, ANY_PORT)


def k8s_httpd(harness, name, pod, container, listen):
    """A container as dockershim/cri-dockerd labels it, serving LISTEN."""
    if harness.container_id(name):
        harness.docker("rm", "-f", name, timeout=30, check=True)
    r = harness.docker("run", "-d", "--name", name, "--network", "none", "--runtime", hdharness.FAULT_RUNTIME,
                       "--label", "io.kubernetes.pod.namespace=shop", "--label", "io.kubernetes.pod.name=" + pod,
                       "--label", "io.kubernetes.container.name=" + container,
                       hdharness.IMAGE, "httpd", "-f", "-p", listen, timeout=60, check=True)
    return r.stdout.strip()


def test_role_warns_for_the_loopback_only_probe(harness, tmp_path):
    web = k8s_httpd(harness, "k8s_web_web-5d9c8b7f6-x2x4q", "web-5d9c8b7f6-x2x4q", "web", "127.0.0.1:%d" % LO_PORT)
    api = k8s_httpd(harness, "k8s_api_api-7f6d5c4b3-q8w9e", "api-7f6d5c4b3-q8w9e", "api", str(ANY_PORT))
    try:
        wait_listening(state_pid(harness, web), LO_PORT)
        wait_listening(state_pid(harness, api), ANY_PORT)
        (tmp_path / "m").mkdir()
        manifest = tmp_path / "m" / "shop.yaml"
        manifest.write_text(MANIFEST)
        report = tmp_path / "report.json"
        # the manifest declares no ports: without the allowance neither probe would be converted
        extra = {"exec_probe_swap_path": str(tmp_path / "m"), "exec_probe_swap_check_listeners": True,
                 "exec_probe_swap_allow_undeclared_ports": True,
                 "exec_probe_swap_docker_host": harness.docker_host, "exec_probe_swap_report_path": str(report)}
        cmd = ["ansible-playbook", "hangdoctor.runtime.exec_probe_swap", "-i", "localhost,", "-c", "local",
               "-e", "ansible_python_interpreter=%s" % sys.executable, "-e", json.dumps(extra), "--check"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=ansible_env(), check=False)
        assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
        assert manifest.read_text() == MANIFEST and not report.exists()  # check mode
        assert "Deployment shop/web container web liveness probe: the converted httpGet probe" in r.stdout
        assert "only on 127.0.0.1" in r.stdout
        assert "shop/api container api readiness probe: the converted" not in r.stdout
        assert r.stdout.count(" probe: the converted ") == 1
        # the real run writes the report with both checks
        r = subprocess.run(cmd[:-1], capture_output=True, text=True, timeout=90, env=ansible_env(), check=False)
        assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
        checks = {c["name"]: c for c in json.loads(report.read_text())["listeners"]}
        assert set(checks) == {"web", "api"}
        assert checks["web"]["container_id"] == web and checks["web"]["reachable_from_node"] is False
        assert checks["web"]["node"] == "localhost" and checks["web"]["warning"]
        assert checks["api"]["container_id"] == api and checks["api"]["reachable_from_node"] is True
        assert checks["api"]["handler"] == "tcpSocket" and checks["api"]["warning"] is None
    finally:
        harness.docker("rm", "-f", web, api, timeout=60)


# ---- cluster mode: evidence from the node before conversion ------------------------

def _deployment(name, port, command):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "shop", "uid": "d-" + name, "resourceVersion": "1",
                         "annotations": {}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [
                         {"name": name, "image": "registry.local/%s:1" % name, "ports": [{"containerPort": port}],
                          "livenessProbe": {"exec": {"command": command}, "periodSeconds": 5, "timeoutSeconds": 2}}]}}}}


def _running_pod(dep, pod_name, node, container_id):
    spec = json.loads(json.dumps(dep["spec"]["template"]["spec"]))
    spec["nodeName"] = node
    return {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": pod_name, "namespace": "shop", "uid": "p-" + pod_name, "labels": {"app": dep["metadata"]["name"]},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "controller": True,
                                              "name": pod_name.rsplit("-", 1)[0], "uid": "rs"}]},
            "spec": spec,
            "status": {"phase": "Running", "hostIP": "192.0.2.17", "podIP": "10.244.3.17", "containerStatuses": [
                {"name": dep["metadata"]["name"], "ready": True, "restartCount": 0, "image": "x", "imageID": "x",
                 "state": {"running": {"startedAt": "2026-12-03T06:00:00Z"}}, "containerID": "docker://" + container_id}]}}


@pytest.fixture
def kube_api(tmp_path):
    import fake_kube_api as fk
    d = tmp_path / "api"
    d.mkdir()
    api = fk.FakeKubeAPI(d)
    yield api
    api.close()


def test_cluster_mode_converts_only_with_evidence_from_the_node(harness, tmp_path, kube_api):
    """Pods of three Deployments: web serves 8080 on 127.0.0.1 only, api 8081 on every address (two real
    containers, labelled as dockershim labels them), far runs on a node that is not in the inventory.
    The API maps pod -> node, the inventory node -> host; the role checks each listener on that host and
    converts api alone; far only with allow_unverified."""
    web_cid = k8s_httpd(harness, "k8s_web_web-5d9c8b7f6-x2x4q", "web-5d9c8b7f6-x2x4q", "web", "127.0.0.1:%d" % LO_PORT)
    api_cid = k8s_httpd(harness, "k8s_api_api-7f6d5c4b3-q8w9e", "api-7f6d5c4b3-q8w9e", "api", str(ANY_PORT))
    try:
        wait_listening(state_pid(harness, web_cid), LO_PORT)
        wait_listening(state_pid(harness, api_cid), ANY_PORT)
        web = _deployment("web", LO_PORT, ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:%d/" % LO_PORT])
        api = _deployment("api", ANY_PORT, ["nc", "-z", "localhost", str(ANY_PORT)])
        far = _deployment("far", 8082, ["nc", "-z", "127.0.0.1", "8082"])
        kube_api.deployments = [web, api, far]
        kube_api.pods = [_running_pod(web, "web-5d9c8b7f6-x2x4q", "node-a", web_cid),
                         _running_pod(api, "api-7f6d5c4b3-q8w9e", "node-a", api_cid),
                         _running_pod(far, "far-6b5a4c3d2-z9y8x", "node-z", "f" * 64)]
        report = tmp_path / "report.json"
        extra = {"exec_probe_swap_mode": "cluster", "exec_probe_swap_namespace": "shop", "exec_probe_swap_kinds": ["Deployment"],
                 "exec_probe_swap_kubeconfig": str(kube_api.kubeconfig(tmp_path / "kubeconfig")),
                 "exec_probe_swap_node_hosts": {"node-a": "localhost"},
                 "exec_probe_swap_docker_host": harness.docker_host, "exec_probe_swap_report_path": str(report)}
        cmd = ["ansible-playbook", "hangdoctor.runtime.exec_probe_swap", "-i", "localhost,", "-c", "local",
               "-e", "ansible_python_interpreter=%s" % sys.executable, "-e", json.dumps(extra)]
        r = subprocess.run(cmd + ["--check"], capture_output=True, text=True, timeout=180, env=ansible_env(), check=False)
        assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
        # the API was asked for the pods of the namespace, and only api's patch went out, as a server-side dry run
        assert any(path == "/api/v1/namespaces/shop/pods" for dummy, path, dummy2 in kube_api.requests)
        assert [(n, dry) for n, dummy, dummy2, dry in kube_api.deployment_patches] == [("shop/api", True)]
        out = " ".join(r.stdout.split())
        assert "only on 127.0.0.1 (loopback)" in out and "pod web-5d9c8b7f6-x2x4q on node node-a (inventory host localhost)" in out
        assert "not in the inventory (node-z)" in out
        assert "(verified: verified: pod api-7f6d5c4b3-q8w9e on node node-a" in out

        r = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=ansible_env(), check=False)
        assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
        data = json.loads(report.read_text())
        rows = {p["name"]: p for p in data["probes"]}
        assert rows["web"]["result"] == "skipped" and rows["web"]["reason_kind"] == "loopback-only"
        assert rows["api"]["result"] == "converted" and rows["api"]["verification"] == "verified"
        assert rows["api"]["handler"] == {"tcpSocket": {"port": ANY_PORT}}
        assert rows["far"]["result"] == "skipped" and rows["far"]["reason_kind"] == "unverified"
        assert sorted(t["container_id"] for t in data["listener_targets"]) == sorted([web_cid, api_cid])
        # the inventory per node, from the API
        inv = {n["node"]: n for n in data["exec_probe_inventory"]}
        assert set(inv) == {"node-a", "node-z"} and inv["node-a"]["exec_probes"] == 2 and inv["node-a"]["execs_per_minute"] == 24.0
        # the real run patched api for good (no dry run), and nothing else
        assert [(n, dry) for n, dummy, dummy2, dry in kube_api.deployment_patches][-1] == ("shop/api", False)
        live_api = [d for d in kube_api.deployments if d["metadata"]["name"] == "api"][0]
        assert live_api["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["tcpSocket"] == {"port": ANY_PORT}
        assert "exec" in [d for d in kube_api.deployments if d["metadata"]["name"] == "web"][0][
            "spec"]["template"]["spec"]["containers"][0]["livenessProbe"]

        # allow_unverified converts far (no node to check) and still not web (the node refused it)
        del kube_api.deployment_patches[:]
        extra["exec_probe_swap_allow_unverified"] = True
        cmd[-1] = json.dumps(extra)
        r = subprocess.run(cmd + ["--check"], capture_output=True, text=True, timeout=180, env=ansible_env(), check=False)
        assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
        assert [n for n, dummy, dummy2, dummy3 in kube_api.deployment_patches] == ["shop/far"]
    finally:
        harness.docker("rm", "-f", web_cid, api_cid, timeout=60)


# ---- containerd (CRI): the init pid from the task bundle ----------------------------

def test_cri_containers_loopback_only_vs_wildcard(tmp_path):
    """Two containers of a real CRI pod (containerd's CRI plugin, no dockerd): busybox httpd on
    127.0.0.1 and on the wildcard address.  The pods of this harness share the node's network
    namespace, so the ports are picked free on the host."""
    import socket
    from cri.harness import CriHarness, IMAGE

    def free_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    lo_port, any_port = free_port(), free_port()
    hz = CriHarness()
    try:
        hz.up()
        c = hz.client()
        pod = hz.run_pod("listen", namespace="shop", containers=())
        lo = c.create_container(pod["id"], pod["config"], "lo", IMAGE, ["httpd", "-f", "-p", "127.0.0.1:%d" % lo_port])
        c.start_container(lo)
        anyc = c.create_container(pod["id"], pod["config"], "any", IMAGE, ["httpd", "-f", "-p", "0.0.0.0:%d" % any_port])
        c.start_container(anyc)
        deadline = time.monotonic() + 20
        args = {"cri_container_ids": [lo[:12], anyc], "containerd_address": str(hz.cri_sock), "containerd_namespace": "k8s.io",
                "ports": [lo_port, any_port]}
        while True:
            result, dummy = run_module("container_listen_info", args)
            assert result["_status"] == "SUCCESS", result
            by_id = {x["container_id"]: x for x in result["containers"]}
            if (by_id[lo]["ports"][str(lo_port)]["reachable_from_node"] is not None
                    and by_id[anyc]["ports"][str(any_port)]["reachable_from_node"] is not None) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert set(by_id) == {lo, anyc}
        assert (by_id[lo]["pod_namespace"], by_id[lo]["pod_name"], by_id[lo]["pod_container"]) == ("shop", "listen", "lo")
        assert by_id[lo]["ports"][str(lo_port)] == {"reachable_from_node": False, "addresses": ["127.0.0.1"]}
        assert by_id[anyc]["ports"][str(any_port)] == {"reachable_from_node": True, "addresses": ["0.0.0.0"]}
        # both containers share the node's network namespace here, so both see the loopback-only port
        assert {w["port"] for w in result["loopback_only"]} == {lo_port}
        assert lo in {w["container_id"] for w in result["loopback_only"]}
        result, dummy = run_module("container_listen_info", dict(args, cri_container_ids=["0123456789ab"]))
        assert result["_status"] == "FAILED!" and "no containerd task 0123456789ab" in result["msg"], result
    finally:
        errors = hz.down()
        assert not errors, errors
