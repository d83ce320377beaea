"""exec -> tcpSocket/httpGet/grpc conversion: inference, refusals, API
validation, guarded patches (cross-checked with the jsonpatch library and
kubernetes-validate) and file mode."""
import copy
import json
import os

import jsonpatch
import kubernetes_validate
import pytest
import yaml

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _probes
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils.manifest_fixtures import FIXTURES, copy_manifests

K8S_VERSION = "1.33.0"  # sidecar init containers (restartPolicy Always) are GA here


def deployment(containers, init=None, annotations=None, host_network=False, kind="Deployment", name="app", extra_meta=None):
    spec = {"containers": containers}
    if init:
        spec["initContainers"] = init
    if host_network:
        spec["hostNetwork"] = True
    meta = {"name": name, "namespace": "ns"}
    if annotations is not None:
        meta["annotations"] = annotations
    meta.update(extra_meta or {})
    if kind == "Pod":
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta,
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}


def container(command, probe="livenessProbe", ports=None, name="app", **timing):
    c = {"name": name, "image": "registry.example/app:1", probe: dict({"exec": {"command": command}}, **timing)}
    if ports:
        c["ports"] = ports
    return c


def pod_spec(obj):
    node = obj
    for part in _probes.POD_SPEC_PATHS[obj["kind"]]:
        node = node[part]
    return node


def assert_valid(obj):
    """Our validator (the API's probe rules) and the OpenAPI schema both accept obj."""
    spec = pod_spec(obj)
    for lst in ("containers", "initContainers"):
        for c in spec.get(lst) or []:
            for kind, field in _probes.PROBE_FIELDS:
                if field in c:
                    assert _probes.validate_probe(c[field], kind, c) == [], (c["name"], kind, c[field])
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def convert_one(obj, rules=None, mode="definitions", min_timeout=None):
    reports = _probes.convert([obj], rules or [], mode, min_timeout)
    assert len(reports) == 1
    return reports[0]


def apply_both(obj, patch):
    """Apply with the jsonpatch library and with our own applier: they must agree."""
    theirs = jsonpatch.JsonPatch(patch).apply(copy.deepcopy(obj))
    ours = _probes.apply_patch(obj, patch)
    assert theirs == ours
    return theirs


# ---- inference: (command, handler kind, handler without host, timeout from the command)
INFER = [
    (["curl", "-f", "http://localhost:8080/healthz"], "httpGet", {"path": "/healthz", "port": 8080}, None),
    (["curl", "-fsS", "--max-time", "3", "http://127.0.0.1/"], "httpGet", {"path": "/", "port": 80}, 3),
    (["curl", "-fsk", "https://127.0.0.1:8443/readyz?verbose"], "httpGet",
     {"path": "/readyz?verbose", "port": 8443, "scheme": "HTTPS"}, None),
    (["curl", "-f", "https://localhost/"], "httpGet", {"path": "/", "port": 443, "scheme": "HTTPS"}, None),
    (["curl", "--fail", "-H", "Host: api.example", "-m", "2.5", "http://[::1]:9000/ping"], "httpGet",
     {"path": "/ping", "port": 9000, "httpHeaders": [{"name": "Host", "value": "api.example"}]}, 3),
    (["curl", "-f", "-X", "GET", "-o", "/dev/null", "http://localhost:80/"], "httpGet", {"path": "/", "port": 80}, None),
    (["sh", "-c", "curl -fsS 'http://localhost:8080/h?a=1&b=2'"], "httpGet", {"path": "/h?a=1&b=2", "port": 8080}, None),
    (["/bin/sh", "-c", "exec curl -f http://localhost:3000/api/health"], "httpGet", {"path": "/api/health", "port": 3000}, None),
    (["wget", "-q", "-O", "/dev/null", "-T", "2", "http://127.0.0.1:8080/ready"], "httpGet", {"path": "/ready", "port": 8080}, 2),
    (["wget", "-qO-", "http://localhost:9090/-/healthy"], "httpGet", {"path": "/-/healthy", "port": 9090}, None),
    (["wget", "--spider", "--no-check-certificate", "--timeout=4", "https://localhost:8443/"], "httpGet",
     {"path": "/", "port": 8443, "scheme": "HTTPS"}, 4),
    (["busybox", "sh", "-c", "wget -q --spider http://localhost:8080/"], "httpGet", {"path": "/", "port": 8080}, None),
    (["nc", "-z", "127.0.0.1", "5672"], "tcpSocket", {"port": 5672}, None),
    (["nc", "-zv", "-w", "2", "localhost", "2181"], "tcpSocket", {"port": 2181}, 2),
    (["sh", "-c", "nc -z localhost 11211"], "tcpSocket", {"port": 11211}, None),
    (["bash", "-c", "</dev/tcp/127.0.0.1/9092"], "tcpSocket", {"port": 9092}, None),
    (["/bin/bash", "-c", "echo > /dev/tcp/localhost/6379"], "tcpSocket", {"port": 6379}, None),
    (["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/5432"], "tcpSocket", {"port": 5432}, None),
    (["/bin/grpc_health_probe", "-addr=:50051"], "grpc", {"port": 50051}, None),
    (["grpc_health_probe", "-addr", "localhost:9090", "-service", "orders.v1", "-connect-timeout", "250ms"], "grpc",
     {"port": 9090, "service": "orders.v1"}, 1),
    (["grpc_health_probe", "-addr=127.0.0.1:8081", "-rpc-timeout=5s", "-v"], "grpc", {"port": 8081}, 5),
]


@pytest.mark.parametrize("command,kind,handler,timeout", INFER, ids=[" ".join(c[0])[:60] for c in INFER])
def test_infer_converts_network_checks(command, kind, handler, timeout):
    got_kind, got, got_timeout, dummy = _probes.infer(command)
    got = dict(got)
    host = got.pop("host", None)
    assert (got_kind, got, got_timeout) == (kind, handler, timeout)
    assert host in (None, "127.0.0.1", "::1")


# ---- refusals: (command, words the reason must contain)
REFUSED = [
    (["sh", "-c", "curl -sf http://localhost:9100/metrics | grep -q up"], "pipeline"),
    (["sh", "-c", "curl -f http://localhost/ && touch /tmp/ok"], "command list"),
    (["sh", "-c", "nc -z localhost 80 || exit 1"], "command list"),
    (["sh", "-c", "curl -f http://localhost:$PORT/health"], "variables"),
    (["sh", "-c", "curl -f http://$(hostname -i):80/"], "variables or command substitution"),
    (["sh", "-c", "curl -f http://localhost/ > /dev/null"], "shell operators"),
    (["sh", "-c", "curl -f http://localhost/; true"], "shell operators"),
    (["sh", "-c", "curl -f http://localhost/\ncurl -f http://localhost/b"], "more than one line"),
    (["sh", "-e", "/probe.sh"], "shell invocation"),
    (["curl", "-f", "-X", "POST", "http://localhost/check"], "only sends GET"),
    (["curl", "-f", "-d", "{}", "http://localhost/check"], "request body"),
    (["curl", "-f", "-u", "admin:secret", "http://localhost/"], "credentials"),
    (["curl", "-f", "-H", "Authorization: Bearer abc", "http://localhost/"], "credential"),
    (["curl", "-f", "http://admin:secret@localhost/"], "credentials"),
    (["curl", "--unix-socket", "/run/app.sock", "http://localhost/health"], "unix socket"),
    (["curl", "-f", "http://db.internal:8080/"], "not loopback"),
    (["curl", "-f", "http://10.0.0.7:8080/"], "not loopback"),
    (["curl", "-fk", "http://localhost/"], "-k on a plain http"),
    (["curl", "-f", "--retry-all-errors", "http://localhost/"], "unsupported curl option"),
    (["curl", "-f", "http://localhost/a", "http://localhost/b"], "exactly one literal URL"),
    (["wget", "--post-data", "x=1", "http://localhost/"], "request body"),
    (["wget", "--http-user", "u", "--http-password", "p", "http://localhost/"], "credentials"),
    (["wget", "-O", "/tmp/out", "http://localhost/"], "writes to"),
    (["nc", "-U", "/run/app.sock"], "unix socket"),
    (["nc", "localhost", "80"], "without -z"),
    (["nc", "-z", "redis", "6379"], "not loopback"),
    (["sh", "-c", "</dev/tcp/127.0.0.1/80"], "bash feature"),
    (["bash", "-c", "</dev/tcp/example.org/80"], "not loopback"),
    (["grpc_health_probe", "-addr=:443", "-tls"], "TLS"),
    (["grpc_health_probe", "-addr=:50051", "-rpc-header=authorization: x"], "credentials"),
    (["grpc_health_probe", "-addr=backend:50051"], "not loopback"),
    (["grpc_health_probe"], "without -addr"),
    (["redis-cli", "-a", "secret", "ping"], "password"),
    (["mysqladmin", "ping", "-psecret"], "password"),
    (["pg_isready", "--socket=/var/run/postgresql"], "unix socket"),
    (["/health/ping_liveness_local.sh", "5"], "not a known network check"),
    (["mongosh", "--eval", "db.adminCommand('ping')"], "not a known network check"),
    ("curl http://localhost/", "not a list"),
]


@pytest.mark.parametrize("command,reason", REFUSED, ids=[str(c[0])[:60] for c in REFUSED])
def test_infer_refuses_with_reason(command, reason):
    with pytest.raises(_probes.Refused) as e:
        _probes.infer(command)
    assert reason in str(e.value)


LOSSY = [
    (["pg_isready", "-U", "postgres", "-h", "127.0.0.1", "-p", "5433"], 5433),
    (["pg_isready", "-U", "postgres"], 5432),
    (["redis-cli", "ping"], 6379),
    (["redis-cli", "-h", "localhost", "-p", "6380", "PING"], 6380),
    (["mysqladmin", "ping", "-h", "127.0.0.1", "-P", "3307"], 3307),
    (["sh", "-c", "exec pg_isready -U \"postgres\" -h 127.0.0.1 -p 5432"], 5432),
]


@pytest.mark.parametrize("command,port", LOSSY, ids=[" ".join(c[0])[:50] for c in LOSSY])
def test_database_pings_need_an_explicit_rule(command, port):
    with pytest.raises(_probes.Lossy) as e:
        _probes.infer(command)
    assert e.value.port == port and "rule" in str(e.value)
    kind, handler, dummy, warns = _probes.infer(command, allow_lossy=True)
    assert kind == "tcpSocket" and handler["port"] == port
    assert "no longer checked" in warns[0]

    obj = deployment([container(command)])
    assert convert_one(obj)["converted"] == []
    for rules in ([{"command": "pg_isready|redis-cli|mysqladmin", "action": "tcp"}],
                  [{"workload": "app", "allow_lossy": True}]):
        report = convert_one(obj, rules)
        assert [c["handler"] for c in report["converted"]] == [{"tcpSocket": {"port": port}}]
        after = apply_both(obj, report["patch"])
        assert_valid(after)


# ---- the API server's probe rules
VALIDATION = [
    ({"exec": {"command": ["x"]}, "httpGet": {"port": 80}}, "liveness", "exactly one handler"),
    ({"periodSeconds": 3}, "liveness", "exactly one handler"),
    ({"tcpSocket": {"port": 80}, "successThreshold": 2}, "liveness", "successThreshold must be 1"),
    ({"tcpSocket": {"port": 80}, "successThreshold": 2}, "startup", "successThreshold must be 1"),
    ({"tcpSocket": {"port": 80}, "terminationGracePeriodSeconds": 5}, "readiness", "not allowed on readiness"),
    ({"tcpSocket": {"port": 80}, "terminationGracePeriodSeconds": 0}, "liveness", "positive integer"),
    ({"grpc": {"port": "grpc"}}, "liveness", "grpc.port must be a number"),
    ({"httpGet": {"port": "metrics"}}, "readiness", "not a named port"),
    ({"httpGet": {"port": "Http_Port"}}, "readiness", "IANA_SVC_NAME"),
    ({"tcpSocket": {"port": "a-very-long-port-name"}}, "readiness", "IANA_SVC_NAME"),
    ({"tcpSocket": {"port": "8080"}}, "readiness", "IANA_SVC_NAME"),
    ({"tcpSocket": {"port": 70000}}, "readiness", "between 1 and 65535"),
    ({"httpGet": {"port": 80, "path": "health"}}, "readiness", "must start with /"),
    ({"httpGet": {"port": 80, "httpHeaders": [{"name": "Bad Header", "value": "x"}]}}, "readiness", "header name"),
    ({"tcpSocket": {"port": 80}, "timeoutSeconds": -1}, "readiness", "non-negative"),
]


@pytest.mark.parametrize("probe,kind,error", VALIDATION)
def test_validator_applies_api_rules(probe, kind, error):
    c = {"name": "app", "ports": [{"name": "http", "containerPort": 8080}]}
    errors = _probes.validate_probe(probe, kind, c)
    assert any(error in e for e in errors), errors


def test_validator_accepts_valid_probes():
    c = {"name": "app", "ports": [{"name": "http", "containerPort": 8080}]}
    for probe, kind in (({"httpGet": {"port": "http", "path": "/"}, "successThreshold": 1}, "liveness"),
                        ({"tcpSocket": {"port": 8080}, "successThreshold": 3}, "readiness"),
                        ({"grpc": {"port": 9090}, "terminationGracePeriodSeconds": 10}, "startup")):
        assert _probes.validate_probe(probe, kind, c) == []


# ---- whole objects
def test_patch_guards_name_and_command_then_swaps_handler():
    cmd = ["curl", "-fsS", "http://localhost:8080/healthz"]
    obj = deployment([container(cmd, periodSeconds=7, timeoutSeconds=2, failureThreshold=4)])
    report = convert_one(obj)
    base = "/spec/template/spec/containers/0"
    assert report["patch"][:4] == [
        {"op": "test", "path": base + "/name", "value": "app"},
        {"op": "test", "path": base + "/livenessProbe/exec/command", "value": cmd},
        {"op": "remove", "path": base + "/livenessProbe/exec"},
        {"op": "add", "path": base + "/livenessProbe/httpGet", "value": {"path": "/healthz", "port": 8080}},
    ]
    after = apply_both(obj, report["patch"])
    probe = after["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    assert probe == {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 7, "timeoutSeconds": 2, "failureThreshold": 4}
    recorded = json.loads(after["metadata"]["annotations"][_probes.ANNOTATION])
    assert recorded == {"app/liveness": obj["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]}
    assert report["warnings"] == []  # timeout set, --fail given, no owner
    assert_valid(after)
    # the guard: a probe that changed since it was read makes the patch fail
    moved = copy.deepcopy(obj)
    moved["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["exec"]["command"][1] = "-f"
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.JsonPatch(report["patch"]).apply(moved)
    with pytest.raises(_probes.ProbeError):
        _probes.apply_patch(moved, report["patch"])
    renamed = copy.deepcopy(obj)
    renamed["spec"]["template"]["spec"]["containers"][0]["name"] = "other"
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.JsonPatch(report["patch"]).apply(renamed)


def test_unset_timeout_warns_and_min_timeout_applies():
    obj = deployment([container(["curl", "http://localhost:8080/"])])
    report = convert_one(obj)
    assert any("timeoutSeconds was unset" in w for w in report["warnings"])
    assert any("without --fail" in w for w in report["warnings"])
    assert "timeoutSeconds" not in apply_both(obj, report["patch"])["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    report = convert_one(obj, min_timeout=5)
    after = apply_both(obj, report["patch"])
    assert after["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["timeoutSeconds"] == 5
    # curl -m 8 is larger than the minimum: the probe keeps the time the command allowed itself
    obj = deployment([container(["curl", "-f", "-m", "8", "http://localhost:8080/"])])
    after = apply_both(obj, convert_one(obj, min_timeout=5)["patch"])
    assert after["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["timeoutSeconds"] == 8
    assert_valid(after)


def test_named_ports_from_rules():
    ports = [{"name": "http", "containerPort": 8080}]
    obj = deployment([container(["/usr/local/bin/check"], probe="readinessProbe", ports=ports)])
    ok = convert_one(obj, [{"action": "http", "port": "http", "path": "/ready", "headers": {"X-Probe": "kubelet"}}])
    assert ok["converted"][0]["handler"] == {"httpGet": {"path": "/ready", "port": "http", "httpHeaders": [{"name": "X-Probe", "value": "kubelet"}]}}
    assert_valid(apply_both(obj, ok["patch"]))
    for port, reason in (("metrics", "not a named port"), ("Http_Port", "IANA_SVC_NAME")):
        bad = convert_one(obj, [{"action": "tcp", "port": port}])
        assert bad["patch"] == [] and reason in bad["skipped"][0]["reason"]
    bad = convert_one(obj, [{"action": "http", "port": 8080, "headers": [{"name": "Authorization", "value": "Basic x"}]}])
    assert "credential" in bad["skipped"][0]["reason"]
    with pytest.raises(_probes.ProbeError):
        _probes.check_rules([{"action": "grpc", "port": "grpc"}])
    with pytest.raises(_probes.ProbeError):
        _probes.check_rules([{"action": "teleport"}])
    with pytest.raises(_probes.ProbeError):
        _probes.check_rules([{"command": "("}])


def test_rules_are_ordered_and_match_on_fields():
    obj = deployment([container(["curl", "-f", "http://localhost:8080/"], name="web"),
                      container(["grpc_health_probe", "-addr=:9090"], name="api", probe="readinessProbe")])
    rules = [{"container": "api", "probe": ["liveness"], "action": "keep"},  # wrong probe kind: no match
             {"container": "a*", "action": "keep"},
             {"action": "tcp"}]
    report = convert_one(obj, rules)
    assert [(e["container"], e["reason"]) for e in report["kept"]] == [("api", "kept by rule")]
    assert [(e["container"], e["handler"]) for e in report["converted"]] == [("web", {"tcpSocket": {"port": 8080}})]
    report = convert_one(obj, [{"namespace": "other", "action": "keep"}, {"kind": "Deploy*", "command": "grpc", "action": "keep"}])
    assert [e["container"] for e in report["kept"]] == ["api"] and len(report["converted"]) == 1


def test_grpc_rule_and_already_invalid_source():
    obj = deployment([container(["/bin/check-grpc"], probe="startupProbe")])
    report = convert_one(obj, [{"action": "grpc", "port": 9090, "service": "health"}])
    assert report["converted"][0]["handler"] == {"grpc": {"port": 9090, "service": "health"}}
    assert_valid(apply_both(obj, report["patch"]))
    broken = deployment([container(["nc", "-z", "localhost", "80"], successThreshold=3)])
    report = convert_one(broken)
    assert report["patch"] == [] and "already invalid" in report["skipped"][0]["reason"]


def test_sidecar_init_containers_are_converted_plain_init_containers_are_not():
    sidecar = container(["bash", "-c", "</dev/tcp/127.0.0.1/15021"], probe="readinessProbe", name="proxy")
    sidecar["restartPolicy"] = "Always"
    plain = container(["nc", "-z", "localhost", "80"], probe="readinessProbe", name="migrate")
    obj = deployment([container(["nc", "-z", "localhost", "8080"])], init=[plain, sidecar])
    report = convert_one(obj, min_timeout=2)
    assert sorted(e["container"] for e in report["converted"]) == ["app", "proxy"]
    assert any(op["path"] == "/spec/template/spec/initContainers/1/readinessProbe/tcpSocket" for op in report["patch"])
    after = apply_both(obj, report["patch"])
    assert "exec" in after["spec"]["template"]["spec"]["initContainers"][0]["readinessProbe"]
    kubernetes_validate.validate(after, K8S_VERSION, strict=True)


def test_host_network_keeps_the_loopback_host():
    obj = deployment([container(["curl", "-fk", "https://127.0.0.1:10257/healthz"], timeoutSeconds=15)], kind="Pod", host_network=True)
    report = convert_one(obj, mode="files")
    assert report["converted"][0]["handler"] == {"httpGet": {"host": "127.0.0.1", "path": "/healthz", "port": 10257, "scheme": "HTTPS"}}
    assert_valid(apply_both(obj, report["patch"]))


def test_immutable_and_owned_objects_are_reported_not_patched():
    cmd = ["nc", "-z", "localhost", "80"]
    pod = deployment([container(cmd)], kind="Pod",
                     extra_meta={"ownerReferences": [{"kind": "ReplicaSet", "name": "app-5d9", "apiVersion": "apps/v1", "uid": "u"}]})
    report = convert_one(pod)
    assert report["patch"] == [] and "ReplicaSet/app-5d9" in report["skipped"][0]["reason"]
    assert convert_one(pod, mode="files")["patch"] != []  # a static-pod manifest can be rewritten
    rs = deployment([container(cmd)], kind="ReplicaSet",
                    extra_meta={"ownerReferences": [{"kind": "Deployment", "name": "app", "apiVersion": "apps/v1", "uid": "u"}]})
    report = convert_one(rs)
    assert report["patch"] == [] and "convert the Deployment" in report["skipped"][0]["reason"]
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "ns"},
           "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [container(cmd)]}}}}
    assert "cannot be changed in the API" in convert_one(job)["skipped"][0]["reason"]
    assert _probes.convert([{"kind": "Service", "metadata": {"name": "s"}}], []) == []


def test_ownership_warnings():
    cmd = ["nc", "-z", "localhost", "80"]
    fields = {"f:spec": {"f:template": {"f:spec": {"f:containers": {'k:{"name":"app"}': {"f:livenessProbe": {"f:exec": {}}}}}}}}
    obj = deployment([container(cmd, timeoutSeconds=1)], annotations={"kustomize.toolkit.fluxcd.io/name": "apps"}, extra_meta={
        "managedFields": [{"manager": "kustomize-controller", "operation": "Apply", "fieldsV1": fields},
                          {"manager": "kubectl-edit", "operation": "Update", "fieldsV1": fields},
                          {"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {"f:status": {}}}]})
    warnings = convert_one(obj)["warnings"]
    assert any("Flux" in w for w in warnings)
    assert any("kustomize-controller (Apply)" in w for w in warnings)
    assert not any("kubectl-edit" in w or "kube-controller-manager" in w for w in warnings)
    helm = deployment([container(cmd, timeoutSeconds=1)], annotations={"meta.helm.sh/release-name": "shop"})
    assert any("Helm release shop" in w for w in convert_one(helm)["warnings"])
    assert convert_one(deployment([container(cmd, timeoutSeconds=1)]))["warnings"] == []


def test_existing_annotation_is_merged_and_guarded():
    first = {"app/liveness": {"exec": {"command": ["old"]}}}
    current = json.dumps(first)
    obj = deployment([container(["nc", "-z", "localhost", "80"], timeoutSeconds=1, probe="readinessProbe")],
                     annotations={_probes.ANNOTATION: current, "team": "x"})
    report = convert_one(obj)
    assert {"op": "test", "path": "/metadata/annotations/hangdoctor.runtime~1original-exec-probes", "value": current} in report["patch"]
    after = apply_both(obj, report["patch"])
    assert after["metadata"]["annotations"]["team"] == "x"
    assert set(json.loads(after["metadata"]["annotations"][_probes.ANNOTATION])) == {"app/liveness", "app/readiness"}


# ---- real manifests and charts
def fixture_documents():
    for path in sorted(list(FIXTURES.rglob("*.yaml")) + list(FIXTURES.rglob("*.yaml.txt"))):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if isinstance(doc, dict) and doc.get("kind") in _probes.POD_SPEC_PATHS:
                yield pytest.param(doc, id="%s#%d-%s" % (path.relative_to(FIXTURES), i, doc["kind"]))


@pytest.mark.parametrize("doc", list(fixture_documents()))
def test_fixture_manifests_patch_to_valid_objects(doc):
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # the fixtures themselves are real objects
    for rules in ([], [{"allow_lossy": True}]):
        report = convert_one(doc, rules, mode="files", min_timeout=3)
        after = apply_both(doc, report["patch"])
        assert_valid(after)
        remaining = [row for row in _probes.flat_report([report]) if row["result"] != "converted"]
        # every exec probe that was not converted still has its exec handler; every converted one lost it
        spec = pod_spec(after)
        execs = sorted((c["name"], k) for lst in ("containers", "initContainers") for c in spec.get(lst) or []
                       for k, f in _probes.PROBE_FIELDS if "exec" in (c.get(f) or {}))
        assert execs == sorted((r["container"], r["probe"]) for r in remaining)
        assert all(r["reason"] for r in remaining)


def test_fixture_expectations(tmp_path):
    """What a reviewer should see for the fixture charts."""
    reports, files, dummy, dummy2 = _probes.convert_files(str(copy_manifests(tmp_path / "m")), [], 3, check_mode=True)
    rows = {(r["name"], r["container"], r["probe"]): r for r in _probes.flat_report(reports)}
    assert rows[("web", "web", "liveness")]["handler"] == {"httpGet": {"path": "/healthz", "port": 8080}}
    assert rows[("web", "web", "readiness")]["handler"] == {"httpGet": {"path": "/ready?full=1&db=0", "port": 8080}}
    assert rows[("web", "web", "startup")]["handler"] == {"tcpSocket": {"port": 8080}}
    assert "pipeline" in rows[("web", "metrics", "liveness")]["reason"]
    assert "variables" in rows[("redis", "redis", "readiness")]["reason"]
    assert "database protocol" in rows[("postgres", "postgres", "liveness")]["reason"]
    assert rows[("node-agent", "agent", "liveness")]["handler"] == {"grpc": {"port": 50051}}
    assert "TLS" in rows[("node-agent", "agent", "readiness")]["reason"]
    assert rows[("node-agent", "proxy", "readiness")]["handler"] == {"tcpSocket": {"port": 9901}}
    assert rows[("kube-controller-manager", "kube-controller-manager", "liveness")]["handler"]["httpGet"]["host"] == "127.0.0.1"
    assert not any(r["name"] == "etcd" for r in rows.values())
    assert sorted(os.path.basename(f) for f in files) == ["grpc.yaml", "kube-controller-manager.yaml", "web.yaml"]
    web = [r for r in reports if r["name"] == "web"][0]
    assert any("Helm release web" in w for w in web["warnings"])


# ---- file mode
@pytest.fixture
def tree(tmp_path):
    return copy_manifests(tmp_path / "manifests")


def test_file_mode_rewrites_only_changed_documents(tree, tmp_path):
    web = tree / "apps" / "web.yaml"
    before = web.read_text()
    before_data = (tree / "apps" / "data.yaml").read_text()
    reports, files, diffs, backups = _probes.convert_files(str(tree), [], None, check_mode=True)
    assert web.read_text() == before and backups == [] and str(web) in files
    diff = [d for d in diffs if d["before_header"] == str(web)][0]
    assert diff["before"] == before and "httpGet" in diff["after"]

    backup_dir = tmp_path / "backups"
    reports, files, diffs, backups = _probes.convert_files(str(tree), [], None, backup_dir=str(backup_dir))
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
    reports, files, diffs, backups = _probes.convert_files(str(tree), [], None, backup_dir=str(backup_dir))
    assert files == [] and backups == []


def test_backup_dir_inside_a_manifest_directory_is_refused(tree):
    with pytest.raises(_probes.ProbeError) as e:
        _probes.convert_files(str(tree / "static-pods"), [], None, backup_dir=str(tree / "static-pods" / "bak"))
    assert "kubelet" in str(e.value)
    assert not (tree / "static-pods" / "bak").exists()


def test_file_mode_keeps_permissions_and_reports_bad_yaml(tree):
    manifest = tree / "static-pods" / "kube-controller-manager.yaml"
    os.chmod(str(manifest), 0o600)
    _probes.convert_files(str(manifest), [], None)
    assert os.stat(str(manifest)).st_mode & 0o777 == 0o600
    assert "httpGet" in manifest.read_text()
    (tree / "broken.yaml").write_text("a: [b\n")
    with pytest.raises(_probes.ProbeError):
        _probes.convert_files(str(tree), [], None)
    with pytest.raises(_probes.ProbeError):
        _probes.convert_files(str(tree / "missing"), [], None)
