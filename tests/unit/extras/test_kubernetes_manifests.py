"""The in-cluster manifests: valid against several Kubernetes versions
(kubernetes-validate, strict: an unknown field fails), and holding the
privilege decisions docs/in-cluster.md explains, so a change to them is a
visible, tested change."""
import copy
import re
from pathlib import Path

import pytest
import yaml

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate not installed (tests/requirements.txt has it)")

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "extras" / "kubernetes"
MANIFESTS = ("detect", "remediate")   # one directory each, one resource per file (kubectl apply -f DIR)
# The oldest schema the package ships, supported releases, and the newest.
VERSIONS = ("1.25.0", "1.28.0", "1.31.0", "1.34.0", "1.37.0")


def docs(name):
    out = []
    for f in sorted((K8S / name).glob("*.yml")):
        (doc,) = list(yaml.safe_load_all(f.read_text()))   # one document per file (ansible-test's yamllint)
        out.append(doc)
    return out


def daemonset(name):
    (ds,) = [d for d in docs(name) if d["kind"] == "DaemonSet"]
    return ds


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", MANIFESTS)
def test_manifests_validate_strictly(name, version):
    found = docs(name)
    assert {d["kind"] for d in found} >= {"ServiceAccount", "DaemonSet"}
    for doc in found:
        kubernetes_validate.validate(doc, version, strict=True)


def test_validation_can_fail():
    ds = copy.deepcopy(daemonset("detect"))
    ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilitys"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, VERSIONS[-1], strict=True)
    ds = copy.deepcopy(daemonset("detect"))
    ds["spec"]["template"]["spec"]["hostPID"] = "yes"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, VERSIONS[0], strict=True)


def _container(ds):
    (c,) = ds["spec"]["template"]["spec"]["containers"]
    return c


def _mounts(ds):
    c = _container(ds)
    vols = dict((v["name"], v) for v in ds["spec"]["template"]["spec"]["volumes"])
    return dict((m["mountPath"], (m, vols[m["name"]])) for m in c["volumeMounts"])


@pytest.mark.parametrize("name", MANIFESTS)
def test_least_privilege_that_works(name):
    ds = daemonset(name)
    spec = ds["spec"]["template"]["spec"]
    c = _container(ds)
    sc = c["securityContext"]
    assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True and sc["runAsUser"] == 0
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["SYS_PTRACE"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["hostNetwork"] is False and spec["hostIPC"] is False
    ann = ds["spec"]["template"]["metadata"]["annotations"]
    assert ann == {"container.apparmor.security.beta.kubernetes.io/%s" % c["name"]: "unconfined"}
    mounts = _mounts(ds)
    proc_mount, proc_vol = mounts["/host/proc"]
    assert proc_mount["readOnly"] is True and proc_vol["hostPath"]["path"] == "/proc"
    assert mounts["/host/run"][0]["readOnly"] is True
    # No hostPath of a single socket: a missing one becomes a directory on the host.
    for mount, vol in mounts.values():
        if "hostPath" in vol:
            assert not vol["hostPath"]["path"].endswith(".sock"), vol
    script = c["args"][0]
    assert "proc_root=/host/proc" in script
    assert "/host/run/docker.sock" in script
    assert spec["tolerations"] == [{"operator": "Exists"}]


def test_detect_keeps_its_pid_namespace_and_has_no_api_token():
    ds = daemonset("detect")
    spec = ds["spec"]["template"]["spec"]
    assert spec["hostPID"] is False
    assert spec["automountServiceAccountToken"] is False
    (sa,) = [d for d in docs("detect") if d["kind"] == "ServiceAccount"]
    assert sa["automountServiceAccountToken"] is False
    assert "mode=detect" in _container(ds)["args"][0]
    assert not [d for d in docs("detect") if d["kind"] in ("ClusterRole", "Role")]
    (ns,) = [d for d in docs("detect") if d["kind"] == "Namespace"]
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


def test_remediate_shares_the_host_pid_namespace_and_may_only_read_the_api():
    ds = daemonset("remediate")
    assert ds["spec"]["template"]["spec"]["hostPID"] is True
    script = _container(ds)["args"][0]
    assert "hangdoctor_kube_guard=always" in script and "${NODE_NAME}" in script
    env = dict((e["name"], e) for e in _container(ds)["env"])
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    (role,) = [d for d in docs("remediate") if d["kind"] == "ClusterRole"]
    verbs = set(v for r in role["rules"] for v in r["verbs"])
    assert verbs <= {"get", "list"}, verbs
    evidence = _mounts(ds)["/host/evidence"][1]
    assert evidence["hostPath"]["path"] == "/var/log/hangdoctor"


def test_detect_arguments_are_node_doctor_options():
    """The ad hoc call names only options node_doctor declares."""
    module = ROOT / "plugins" / "modules" / "node_doctor.py"
    if not module.exists():
        pytest.skip("plugins/modules/node_doctor.py is not in this tree yet")
    from module_specs import argument_spec
    declared = set(argument_spec("node_doctor"))
    script = _container(daemonset("detect"))["args"][0]
    used = re.findall(r'([a-z_]+)=', script.split("-a", 1)[1])
    assert used and set(used) <= declared, set(used) - declared


def test_remediate_variables_are_role_or_playbook_variables():
    known = set()
    for f in list((ROOT / "roles").glob("*/meta/argument_specs.yml")) + [ROOT / "playbooks" / "remediate.yml"]:
        known |= set(re.findall(r"\b(hangdoctor_[a-z_]+)", f.read_text()))
    script = _container(daemonset("remediate"))["args"][0]
    used = re.findall(r'-e "?(hangdoctor_[a-z_]+)=', script)
    assert len(used) >= 8 and set(used) <= known, set(used) - known
