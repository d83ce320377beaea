"""A small HTTPS endpoint that answers like a Kubernetes API server for the
calls the eviction guard makes through kubernetes.core (discovery, GET a
Node, LIST Pods by field selector, PATCH a Node to cordon it), and the calls
of exec_probe_swap's cluster mode (LIST Deployments, LIST the running Pods of
a namespace, a JSON patch of a Deployment, dry run or not), with objects of
the shapes a real API server returns.  No kube-apiserver can
be installed here; this serves those shapes to the real kubernetes.core
modules and the real kubernetes Python client."""
import copy
import json

import jsonpatch
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

APPS_RESOURCES = {
    "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1",
    "resources": [
        {"name": "deployments", "singularName": "deployment", "namespaced": True, "kind": "Deployment",
         "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"], "shortNames": ["deploy"]},
    ],
}
APIS = {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
    {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
     "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}}]}

RESOURCES = {
    "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1",
    "resources": [
        {"name": "nodes", "singularName": "node", "namespaced": False, "kind": "Node",
         "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"], "shortNames": ["no"]},
        {"name": "nodes/status", "singularName": "", "namespaced": False, "kind": "Node", "verbs": ["get", "patch", "update"]},
        {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
         "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"], "shortNames": ["po"]},
        {"name": "pods/eviction", "singularName": "", "namespaced": True, "group": "policy", "version": "v1",
         "kind": "Eviction", "verbs": ["create"]},
    ],
}


def node(name, ready=True, since="2026-11-27T08:00:00Z", unschedulable=False):
    """A Node as GET /api/v1/nodes/NAME returns it (trimmed to real fields)."""
    return {
        "kind": "Node", "apiVersion": "v1",
        "metadata": {"name": name, "uid": "6f1c2a7e-0d2b-4c59-9a55-%012d" % (abs(hash(name)) % 10 ** 12),
                     "resourceVersion": "4711", "creationTimestamp": "2026-01-05T10:00:00Z",
                     "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                "node-role.kubernetes.io/worker": ""}},
        "spec": {"podCIDR": "10.244.3.0/24", "unschedulable": unschedulable} if unschedulable else {"podCIDR": "10.244.3.0/24"},
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
                 "lastHeartbeatTime": since, "lastTransitionTime": "2026-01-05T10:00:00Z"},
                {"type": "Ready", "status": "True" if ready else "Unknown",
                 "reason": "KubeletReady" if ready else "NodeStatusUnknown",
                 "message": "kubelet is posting ready status" if ready else "Kubelet stopped posting node status.",
                 "lastHeartbeatTime": since, "lastTransitionTime": since},
            ],
            "nodeInfo": {"architecture": "amd64", "bootID": "3c0d2b1e-5a4f-4f0e-9d7c-2b1a0f9e8d7c",
                         "containerRuntimeVersion": "docker://20.10.24", "kernelVersion": "6.1.0-27-amd64",
                         "kubeProxyVersion": "v1.29.4", "kubeletVersion": "v1.29.4",
                         "machineID": "0f1e2d3c4b5a69788796a5b4c3d2e1f0", "operatingSystem": "linux",
                         "osImage": "Debian GNU/Linux 12 (bookworm)", "systemUUID": "4c4c4544-0031-3010-8052-b4c04f4e3532"},
        },
    }


def pod(namespace, name, node_name, deleting=False):
    """A Pod bound to NODE_NAME; a pod whose deletion waits for the kubelet
    carries deletionTimestamp and deletionGracePeriodSeconds."""
    meta = {"name": name, "namespace": namespace, "uid": "0b1c%028d" % (abs(hash(namespace + name)) % 10 ** 28),
            "resourceVersion": "9001", "creationTimestamp": "2026-11-20T10:00:00Z",
            "labels": {"app": name.rsplit("-", 1)[0]},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name.rsplit("-", 1)[0] + "-7d9f",
                                 "uid": "1a2b", "controller": True, "blockOwnerDeletion": True}]}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-27T08:05:00Z"
        meta["deletionGracePeriodSeconds"] = 30
    return {"kind": "Pod", "apiVersion": "v1", "metadata": meta,
            "spec": {"nodeName": node_name, "containers": [{"name": "app", "image": "registry.local/app:1"}]},
            "status": {"phase": "Running", "hostIP": "192.0.2.17", "podIP": "10.244.3.17"}}


class FakeKubeAPI(object):
    def __init__(self, workdir):
        self.workdir = workdir
        self.nodes = {}
        self.pods = []
        self.deployments = []
        self.deployment_patches = []
        self.requests = []
        self.patches = []
        self._lock = threading.Lock()
        cert, key = workdir / "tls.crt", workdir / "tls.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                        "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True, timeout=60)
        self.ca = cert
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send(*api.handle("GET", self.path, None))

            def do_PATCH(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                self._send(*api.handle("PATCH", self.path, body, self.headers.get("Content-Type")))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.url = "https://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def kubeconfig(self, path):
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url, "certificate-authority": str(self.ca)}}],
            "users": [{"name": "guard", "user": {"token": "not-a-secret"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "guard"}}]}))
        return path

    def handle(self, method, path, body, content_type=None):
        u = urlparse(path)
        q = parse_qs(u.query)
        with self._lock:
            self.requests.append((method, u.path, {k: v[0] for k, v in q.items()}))
            if u.path == "/version":
                return 200, {"major": "1", "minor": "29", "gitVersion": "v1.29.4"}
            if u.path == "/api":
                return 200, {"kind": "APIVersions", "versions": ["v1"],
                             "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}
            if u.path == "/apis":
                return 200, APIS
            if u.path == "/apis/apps/v1":
                return 200, APPS_RESOURCES
            parts = u.path.strip("/").split("/")
            if parts[:3] == ["apis", "apps", "v1"] and "deployments" in parts:
                return self._deployments(method, parts, q, body, content_type)
            if parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 5 and parts[4] == "pods":
                return 200, self._pod_list([p for p in self.pods if p["metadata"]["namespace"] == parts[3]], q)
            if u.path == "/api/v1":
                return 200, RESOURCES
            if u.path.startswith("/api/v1/nodes/"):
                name = unquote(u.path.split("/")[4])
                if name not in self.nodes:
                    return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                                 "message": 'nodes "%s" not found' % name, "code": 404}
                if method == "PATCH":
                    self.patches.append((name, content_type, body))
                    spec = self.nodes[name].setdefault("spec", {})
                    spec.update((body or {}).get("spec") or {})
                return 200, copy.deepcopy(self.nodes[name])
            if u.path == "/api/v1/nodes":
                return 200, {"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "4711"},
                             "items": list(copy.deepcopy(self.nodes).values())}
            if u.path == "/api/v1/pods":
                return 200, self._pod_list(self.pods, q)
            return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                         "message": "the server could not find the requested resource", "code": 404}

    def _pod_list(self, items, q):
        for sel in filter(None, q.get("fieldSelector", [""])[0].split(",")):
            key, dummy, want = sel.partition("=")
            if key == "spec.nodeName":
                items = [p for p in items if p["spec"].get("nodeName") == want]
            elif key == "status.phase":
                items = [p for p in items if (p.get("status") or {}).get("phase") == want]
        return {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "9001"}, "items": copy.deepcopy(items)}

    def _deployments(self, method, parts, q, body, content_type):
        """/apis/apps/v1/deployments, .../namespaces/NS/deployments[/NAME]."""
        namespace = parts[4] if len(parts) > 4 and parts[3] == "namespaces" else None
        name = parts[6] if namespace and len(parts) > 6 else None
        items = [d for d in self.deployments if namespace is None or d["metadata"]["namespace"] == namespace]
        if name is None:
            return 200, {"kind": "DeploymentList", "apiVersion": "apps/v1", "metadata": {"resourceVersion": "777"},
                         "items": copy.deepcopy(items)}
        found = [d for d in items if d["metadata"]["name"] == name]
        if not found:
            return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                         "message": 'deployments.apps "%s" not found' % name, "code": 404}
        if method != "PATCH":
            return 200, copy.deepcopy(found[0])
        dry_run = q.get("dryRun", [""])[0] == "All"
        self.deployment_patches.append((namespace + "/" + name, content_type, body, dry_run))
        try:
            patched = jsonpatch.JsonPatch(body).apply(copy.deepcopy(found[0]))
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
            return 422, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Invalid",
                         "message": str(e), "code": 422}
        if not dry_run:
            self.deployments[self.deployments.index(found[0])] = patched
        return 200, patched

    def close(self):
        self.server.shutdown()
        self.server.server_close()
