"""Objects and checks shared by the unit tests of the exec probe conversion."""
import copy

import jsonpatch
import kubernetes_validate

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _probe_patch, _probe_rules, _probes

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
            for kind, field in _probe_rules.PROBE_FIELDS:
                if field in c:
                    assert _probe_rules.validate_probe(c[field], kind, c) == [], (c["name"], kind, c[field])
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def convert_one(obj, rules=None, mode="definitions", min_timeout=None):
    reports = _probes.convert([obj], rules or [], mode, min_timeout)
    assert len(reports) == 1
    return reports[0]


def apply_both(obj, patch):
    """Apply with the jsonpatch library and with our own applier: they must agree."""
    theirs = jsonpatch.JsonPatch(patch).apply(copy.deepcopy(obj))
    ours = _probe_patch.apply_patch(obj, patch)
    assert theirs == ours
    return theirs
