"""Conversion of whole objects: guarded patches (cross-checked with the jsonpatch
library and kubernetes-validate), rules, ownership, the fixture charts."""
import copy
import json
import os

import jsonpatch
import kubernetes_validate
import pytest
import yaml

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _probe_errors, _probe_manifest, _probe_patch, _probe_rules, _probes
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils.manifest_fixtures import FIXTURES, copy_manifests
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils.probe_helpers import (
    K8S_VERSION, apply_both, assert_valid, container, convert_one, deployment, pod_spec)


P80 = [{"containerPort": 80}]
P8080 = [{"name": "http", "containerPort": 8080}]


# ---- whole objects
def test_patch_guards_name_and_command_then_swaps_handler():
    cmd = ["curl", "-fsS", "http://localhost:8080/healthz"]
    obj = deployment([container(cmd, ports=P8080, periodSeconds=7, timeoutSeconds=2, failureThreshold=4)])
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
    recorded = json.loads(after["metadata"]["annotations"][_probe_patch.ANNOTATION])
    assert recorded == {"app/liveness": obj["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]}
    assert report["warnings"] == []  # timeout set, --fail given, no owner
    assert_valid(after)
    # the guard: a probe that changed since it was read makes the patch fail
    moved = copy.deepcopy(obj)
    moved["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["exec"]["command"][1] = "-f"
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.JsonPatch(report["patch"]).apply(moved)
    with pytest.raises(_probe_errors.ProbeError):
        _probe_patch.apply_patch(moved, report["patch"])
    renamed = copy.deepcopy(obj)
    renamed["spec"]["template"]["spec"]["containers"][0]["name"] = "other"
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.JsonPatch(report["patch"]).apply(renamed)


def test_unset_timeout_warns_and_min_timeout_applies():
    obj = deployment([container(["curl", "-s", "http://localhost:8080/"], ports=P8080)])
    report = convert_one(obj, rules=[{"allow_stricter": True}])
    assert any("timeoutSeconds was unset" in w for w in report["warnings"])
    assert any("without --fail" in w for w in report["warnings"])
    obj = deployment([container(["curl", "-f", "http://localhost:8080/"], ports=P8080)])
    report = convert_one(obj)
    assert any("timeoutSeconds was unset" in w for w in report["warnings"])
    assert "timeoutSeconds" not in apply_both(obj, report["patch"])["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    report = convert_one(obj, min_timeout=5)
    after = apply_both(obj, report["patch"])
    assert after["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["timeoutSeconds"] == 5
    # curl -m 8 is larger than the minimum: the probe keeps the time the command allowed itself
    obj = deployment([container(["curl", "-f", "-m", "8", "http://localhost:8080/"], ports=P8080)])
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
    with pytest.raises(_probe_errors.ProbeError):
        _probe_rules.check_rules([{"action": "grpc", "port": "grpc"}])
    with pytest.raises(_probe_errors.ProbeError):
        _probe_rules.check_rules([{"action": "teleport"}])
    with pytest.raises(_probe_errors.ProbeError):
        _probe_rules.check_rules([{"command": "("}])


def test_rules_are_ordered_and_match_on_fields():
    obj = deployment([container(["curl", "-f", "http://localhost:8080/"], name="web", ports=P8080),
                      container(["grpc_health_probe", "-addr=:9090"], name="api", probe="readinessProbe",
                                ports=[{"containerPort": 9090}])])
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
    sidecar = container(["bash", "-c", "</dev/tcp/127.0.0.1/15021"], probe="readinessProbe", name="proxy",
                        ports=[{"containerPort": 15021}])
    sidecar["restartPolicy"] = "Always"
    plain = container(["nc", "-z", "localhost", "80"], probe="readinessProbe", name="migrate")
    obj = deployment([container(["nc", "-z", "localhost", "8080"], ports=P8080)], init=[plain, sidecar])
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
    pod = deployment([container(cmd, ports=P80)], kind="Pod",
                     extra_meta={"ownerReferences": [{"kind": "ReplicaSet", "name": "app-5d9", "apiVersion": "apps/v1", "uid": "u"}]})
    report = convert_one(pod)
    assert report["patch"] == [] and "ReplicaSet/app-5d9" in report["skipped"][0]["reason"]
    assert convert_one(pod, mode="files")["patch"] != []  # a static-pod manifest can be rewritten
    rs = deployment([container(cmd, ports=P80)], kind="ReplicaSet",
                    extra_meta={"ownerReferences": [{"kind": "Deployment", "name": "app", "apiVersion": "apps/v1", "uid": "u"}]})
    report = convert_one(rs)
    assert report["patch"] == [] and "convert the Deployment" in report["skipped"][0]["reason"]
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "ns"},
           "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [container(cmd, ports=P80)]}}}}
    assert "cannot be changed in the API" in convert_one(job)["skipped"][0]["reason"]
    assert _probes.convert([{"kind": "Service", "metadata": {"name": "s"}}], []) == []


def test_ownership_warnings():
    cmd = ["nc", "-z", "localhost", "80"]
    fields = {"f:spec": {"f:template": {"f:spec": {"f:containers": {'k:{"name":"app"}': {"f:livenessProbe": {"f:exec": {}}}}}}}}
    obj = deployment([container(cmd, ports=P80, timeoutSeconds=1)], annotations={"kustomize.toolkit.fluxcd.io/name": "apps"}, extra_meta={
        "managedFields": [{"manager": "kustomize-controller", "operation": "Apply", "fieldsV1": fields},
                          {"manager": "kubectl-edit", "operation": "Update", "fieldsV1": fields},
                          {"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {"f:status": {}}}]})
    warnings = convert_one(obj)["warnings"]
    assert any("Flux" in w for w in warnings)
    assert any("kustomize-controller (Apply)" in w for w in warnings)
    assert not any("kubectl-edit" in w or "kube-controller-manager" in w for w in warnings)
    helm = deployment([container(cmd, ports=P80, timeoutSeconds=1)], annotations={"meta.helm.sh/release-name": "shop"})
    assert any("Helm release shop" in w for w in convert_one(helm)["warnings"])
    assert convert_one(deployment([container(cmd, ports=P80, timeoutSeconds=1)]))["warnings"] == []


def test_existing_annotation_is_merged_and_guarded():
    first = {"app/liveness": {"exec": {"command": ["old"]}}}
    current = json.dumps(first)
    obj = deployment([container(["nc", "-z", "localhost", "80"], ports=P80, timeoutSeconds=1, probe="readinessProbe")],
                     annotations={_probe_patch.ANNOTATION: current, "team": "x"})
    report = convert_one(obj)
    assert {"op": "test", "path": "/metadata/annotations/hangdoctor.runtime~1original-exec-probes", "value": current} in report["patch"]
    after = apply_both(obj, report["patch"])
    assert after["metadata"]["annotations"]["team"] == "x"
    assert set(json.loads(after["metadata"]["annotations"][_probe_patch.ANNOTATION])) == {"app/liveness", "app/readiness"}


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
                       for k, f in _probe_rules.PROBE_FIELDS if "exec" in (c.get(f) or {}))
        assert execs == sorted((r["container"], r["probe"]) for r in remaining)
        assert all(r["reason"] for r in remaining)


def test_fixture_expectations(tmp_path):
    """What a reviewer should see for the fixture charts."""
    reports, files, dummy, dummy2 = _probe_manifest.convert_files(str(copy_manifests(tmp_path / "m")), [], 3, check_mode=True)
    rows = {(r["name"], r["container"], r["probe"]): r for r in _probes.flat_report(reports)}
    assert rows[("web", "web", "liveness")]["handler"] == {"httpGet": {"path": "/healthz", "port": 8080}}
    assert rows[("web", "web", "readiness")]["handler"] == {"httpGet": {"path": "/ready?full=1&db=0", "port": 8080}}
    assert rows[("web", "web", "startup")]["handler"] == {"tcpSocket": {"port": 8080}}
    assert "pipeline" in rows[("web", "metrics", "liveness")]["reason"]
    assert rows[("redis", "redis", "readiness")]["reason_kind"] == "credential"
    assert "credential" in rows[("redis", "redis", "readiness")]["reason"]
    assert "database protocol" in rows[("postgres", "postgres", "liveness")]["reason"]
    assert rows[("node-agent", "agent", "liveness")]["handler"] == {"grpc": {"port": 50051}}
    assert "TLS" in rows[("node-agent", "agent", "readiness")]["reason"]
    assert rows[("node-agent", "proxy", "readiness")]["handler"] == {"tcpSocket": {"port": 9901}}
    assert rows[("kube-controller-manager", "kube-controller-manager", "liveness")]["handler"]["httpGet"]["host"] == "127.0.0.1"
    assert not any(r["name"] == "etcd" for r in rows.values())
    assert sorted(os.path.basename(f) for f in files) == ["grpc.yaml", "kube-controller-manager.yaml", "web.yaml"]
    web = [r for r in reports if r["name"] == "web"][0]
    assert any("Helm release web" in w for w in web["warnings"])


# ---- the unsafe conversion: a port the container does not declare
def test_undeclared_port_is_not_converted_unless_allowed():
    """A sidecar or agent listening on 127.0.0.1 only passes the exec probe;
    the converted probe connects to the pod IP and would fail."""
    cmd = ["nc", "-z", "127.0.0.1", "9901"]
    obj = deployment([container(cmd, ports=P8080, timeoutSeconds=1)])
    report = convert_one(obj)
    assert report["patch"] == [] and report["converted"] == []
    skipped = report["skipped"][0]
    assert skipped["reason_kind"] == "loopback-only"
    assert "port 9901 is not declared" in skipped["reason"] and "allow_undeclared_ports" in skipped["reason"]
    # allowed for everything, or by a rule for one workload: converted, with a warning
    for allowed in (_probes.convert([obj], [], "definitions", None, allow_undeclared_ports=True)[0],
                    convert_one(obj, [{"workload": "app", "allow_undeclared_ports": True}])):
        assert allowed["converted"][0]["handler"] == {"tcpSocket": {"port": 9901}}
        assert any("9901 is not declared" in w for w in allowed["warnings"])
        assert_valid(apply_both(obj, allowed["patch"]))
    # a rule that forces a handler is the user's decision: converted, with the warning
    forced = convert_one(obj, [{"action": "tcp"}])
    assert forced["converted"] and any("9901 is not declared" in w for w in forced["warnings"])
    # host network: the probe stays on 127.0.0.1, where the exec probe connected
    pod = deployment([container(cmd, timeoutSeconds=1)], kind="Pod", host_network=True)
    assert convert_one(pod, mode="files")["converted"][0]["handler"] == {"tcpSocket": {"host": "127.0.0.1", "port": 9901}}
    # a declared UDP port is not the TCP port the probe checks
    udp = deployment([container(cmd, ports=[{"containerPort": 9901, "protocol": "UDP"}], timeoutSeconds=1)])
    assert convert_one(udp)["skipped"][0]["reason_kind"] == "loopback-only"


def test_every_conversion_carries_the_listen_address_caveat():
    obj = deployment([container(["curl", "-f", "http://localhost:8080/healthz"], ports=P8080, timeoutSeconds=1),
                      container(["grpc_health_probe", "-addr=:9090"], name="api", probe="readinessProbe",
                                ports=[{"containerPort": 9090}])])
    report = convert_one(obj)
    assert len(report["converted"]) == 2
    for entry in report["converted"]:
        assert "connects to the pod IP" in entry["caveat"] and entry["caveat"] in entry["warnings"]
    rows = _probes.flat_report([report])
    assert all("listens on the pod IP or on all addresses" in r["caveat"] for r in rows)
    assert "port 8080" in rows[0]["caveat"] and "port 9090" in rows[1]["caveat"]
    # host network keeps loopback: no caveat for tcpSocket/httpGet
    pod = deployment([container(["nc", "-z", "localhost", "80"], timeoutSeconds=1)], kind="Pod", host_network=True)
    assert convert_one(pod, mode="files")["converted"][0]["caveat"] is None


def test_variables_come_from_the_container_env():
    c = container(["sh", "-c", "curl -f http://localhost:${PORT}/healthz"], ports=P8080, timeoutSeconds=1)
    c["env"] = [{"name": "PORT", "value": "8080"}]
    report = convert_one(deployment([c]))
    assert report["converted"][0]["handler"] == {"httpGet": {"path": "/healthz", "port": 8080}}
    c["env"] = [{"name": "PORT", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "port"}}}]
    report = convert_one(deployment([c]))
    assert report["skipped"][0]["reason_kind"] == "variable" and "configMapKeyRef" in report["skipped"][0]["reason"]


def test_probes_that_can_never_fail_are_flagged():
    obj = deployment([container(["sh", "-c", "$0"], ports=P80)])
    report = convert_one(obj)
    assert report["skipped"][0]["reason_kind"] == "never-fails"
    assert any("can never fail" in w for w in report["warnings"])


@pytest.mark.parametrize("labels,words", [
    ({"heritage": "Helm"}, "heritage=Helm"), ({"heritage": "Tiller"}, "heritage=Tiller"),
    ({"app.kubernetes.io/managed-by": "Helm"}, "managed-by=Helm")])
def test_helm_labels_old_and_new_warn(labels, words):
    obj = deployment([container(["nc", "-z", "localhost", "80"], ports=P80, timeoutSeconds=1)], extra_meta={"labels": labels})
    assert any(words in w and "chart values" in w for w in convert_one(obj)["warnings"])


def test_a_command_with_a_non_string_word_is_refused_not_a_traceback():
    obj = deployment([container(["sh", "-c", {"Authorization": "Bearer x"}], ports=P8080)])
    report = convert_one(obj)
    assert report["converted"] == [] and report["skipped"][0]["reason_kind"] == "invalid"
