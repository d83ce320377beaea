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
    # SYS_PTRACE: the host processes' fds; DAC_READ_SEARCH: the pod shims' sockets in
    # containerd's 0600 /run/containerd/s (tests/integration/test_in_cluster_pods.py)
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["SYS_PTRACE", "DAC_READ_SEARCH"]}
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


def _script(name):
    return _container(daemonset(name))["args"][0]


def _env(name):
    return dict((e["name"], e.get("value")) for e in _container(daemonset(name))["env"])


def test_remediate_locks_in_the_hosts_lock_directory():
    """The drain's locks must be the host's: a pod-local directory would not
    exclude an ad hoc or AWX drain of the same pipe (and the read-only root
    has no /run at all)."""
    defaults = yaml.safe_load((ROOT / "roles" / "remediate" / "defaults" / "main.yml").read_text())
    mount, vol = [(m, v) for m, v in _mounts(daemonset("remediate")).values() if m["name"] == "locks"][0]
    assert vol["hostPath"]["path"] == defaults["hangdoctor_lock_dir"] == "/run/hangdoctor"
    assert not mount.get("readOnly")
    assert "-e hangdoctor_lock_dir=%s " % mount["mountPath"] in _script("remediate")
    dummy, evidence = _mounts(daemonset("remediate"))["/host/evidence"]
    assert evidence["hostPath"]["path"] == defaults["hangdoctor_evidence_dir"]


@pytest.mark.parametrize("name", MANIFESTS)
def test_both_engines_through_the_hosts_run(name):
    script = _script(name)
    assert "/host/run/docker.sock" in script
    assert "containerd_address=/host/run/containerd/containerd.sock" in script


@pytest.mark.parametrize("name", MANIFESTS)
def test_image_is_this_collections_version(name):
    version = yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"]
    image = _container(daemonset(name))["image"]
    repo, tag = image.split("@", 1)[0].rsplit(":", 1)
    assert tag == version, image


@pytest.mark.parametrize("name", MANIFESTS)
def test_liveness_without_exec_and_bounded_runs(name):
    """An exec probe enters the pod through the runc exec path that deadlocks:
    the probe is httpGet on the heartbeat endpoint; every run has a timeout,
    and the container a CPU limit."""
    c = _container(daemonset(name))
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert "exec" not in c.get(probe, {}), probe
    probe = c["livenessProbe"]["httpGet"]
    ports = dict((p["name"], p["containerPort"]) for p in c["ports"])
    assert probe["path"] == "/healthz" and ports[probe["port"]] == 8742
    script = _script(name)
    assert "hangdoctor_health.py --heartbeat /tmp/heartbeat" in script and "--port 8742 &" in script
    assert 'timeout -k ' in script and '"${HANGDOCTOR_RUN_TIMEOUT}"' in script
    env = _env(name)
    run_timeout, interval = int(env["HANGDOCTOR_RUN_TIMEOUT"]), int(env["HANGDOCTOR_INTERVAL"])
    assert 0 < run_timeout and 0 < interval
    # the heartbeat is touched after every run, in the loop, and once before the first
    loop = script.split("while :; do", 1)[1]
    assert script.count("touch /tmp/heartbeat") == 2 and "touch /tmp/heartbeat" in loop
    limits = c["resources"]["limits"]
    assert limits["cpu"] and limits["memory"]
    # the health endpoint the image ships is where the script runs it from
    containerfile = (ROOT / "extras" / "container" / "Containerfile").read_text()
    assert "extras/container/hangdoctor_health.py" in containerfile
    assert "/usr/local/share/hangdoctor/hangdoctor_health.py" in containerfile


def test_remediate_api_token_is_short_lived_and_the_role_read_only():
    ds = daemonset("remediate")
    spec = ds["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    (sa,) = [d for d in docs("remediate") if d["kind"] == "ServiceAccount"]
    assert sa["automountServiceAccountToken"] is False
    mount, vol = _mounts(ds)["/var/run/secrets/kubernetes.io/serviceaccount"]
    assert mount["readOnly"] is True
    (token,) = [s["serviceAccountToken"] for s in vol["projected"]["sources"] if "serviceAccountToken" in s]
    assert token["path"] == "token" and token["expirationSeconds"] <= 3600
    (role,) = [d for d in docs("remediate") if d["kind"] == "ClusterRole"]
    rules = sorted((tuple(r["resources"]), tuple(r["verbs"])) for r in role["rules"])
    assert rules == [(("nodes",), ("get",)), (("pods",), ("list",))]


def test_containerfile_pins_every_input():
    containerfile = (ROOT / "extras" / "container" / "Containerfile").read_text()
    (base,) = re.findall(r"^ARG BASE_IMAGE=(\S+)$", containerfile, re.M)
    # a patch release or a digest, never a moving tag such as 3.12-slim
    assert "@sha256:" in base or re.search(r":\d+\.\d+\.\d+-", base), base
    assert "FROM ${BASE_IMAGE}" in containerfile
    assert "pip install --no-cache-dir -r /tmp/requirements.txt" in containerfile
    assert re.search(r'"kubernetes\.core:==\$\{KUBERNETES_CORE_VERSION\}"', containerfile)
    assert re.search(r"^ARG KUBERNETES_CORE_VERSION=\d+\.\d+\.\d+$", containerfile, re.M)
    reqs = [line.strip() for line in (ROOT / "extras" / "container" / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert {"ansible-core", "kubernetes"} <= set(r.split("==")[0] for r in reqs)
    for r in reqs:
        assert re.match(r"^[A-Za-z0-9_.\-]+==[0-9][0-9A-Za-z.]*$", r), r
    # the controller's tested versions are the image's
    tested = (ROOT / "tests" / "requirements.txt").read_text()
    for name in ("ansible-core", "kubernetes"):
        (pin,) = [r for r in reqs if r.startswith(name + "==")]
        assert re.search(r"^%s$" % re.escape(pin), tested, re.M), pin
