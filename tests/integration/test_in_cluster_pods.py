"""The in-cluster DaemonSets, run as their pods run: each pod is built from
its manifest (emulated_pod.py: read-only root, its hostPath mounts at their
mount paths, its env, its capabilities, hostPID or not) and runs its exact
command against a real stuck exec (dockerd + containerd + shim v2 + the fault
runtime).  The node's hostPath folders are stand-ins under the test's
folder; its /proc is this machine's.

detect: the pod names the stuck exec in the node's metrics file.
remediate: a lock held on the host (as an ad hoc or AWX drain on the same
node holds it) keeps the pod's drain off the pipe; once it is released the
pod drains it, keeps the evidence on the node and takes its lock in the
host's lock directory; the eviction guard asks the API only about its own
node."""
import json
import os
import stat
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

import fake_kube_api as fk
import hdharness
from conftest import collections_path
from emulated_pod import EmulatedPod
from test_cri import assert_really_stuck
from test_runc_pipe_drain import HEADER_END, TRAILER, assert_stuck

sys.path.insert(0, collections_path())
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _pipe_lock  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "extras" / "kubernetes"
NODE = "node-17.example"
POD = {"io.kubernetes.pod.namespace": "shop", "io.kubernetes.pod.name": "cart-0", "io.kubernetes.container.name": "cart"}
CAPS = {"SYS_PTRACE": 19, "DAC_READ_SEARCH": 2}
WRITE_NRS = ("1", "20", "64", "66")
HEALTH_URL = "http://127.0.0.1:8742/healthz"
REMEDIATE_DEFAULTS = yaml.safe_load((ROOT / "roles" / "remediate" / "defaults" / "main.yml").read_text())


class Node(object):
    """The node's filesystem as the pods' hostPath volumes see it: /proc is
    this machine's, every other path a folder under ROOT; /run holds the
    engines' sockets (bound from the harness)."""

    def __init__(self, root):
        self.root = Path(root)
        (self.root / "run").mkdir(parents=True)

    def path(self, p):
        return "/proc" if p == "/proc" else str(self.root) + p

    def prep(self, docker_sock=None, containerd_sock=None):
        """Shell lines, run in the pod's mount namespace before its mounts,
        that put the engines' sockets at the node's /run paths."""
        lines = []
        for sock, where in ((docker_sock, "run/docker.sock"), (containerd_sock, "run/containerd/containerd.sock")):
            if sock:
                dest = self.root / where
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.touch()
                lines.append("mount --bind %s %s" % (sock, dest))
        return "\n".join(lines)


def labelled_container(harness, name):
    if harness.container_id(name):
        harness.release_all()
        harness.docker("rm", "-f", name, timeout=30, check=True)
    labels = []
    for k, v in POD.items():
        labels += ["--label", "%s=%s" % (k, v)]
    return harness.docker("run", "-d", "--name", name, "--network", "none", "--runtime", hdharness.FAULT_RUNTIME,
                          *labels, hdharness.IMAGE, "sleep", "100000", timeout=60, check=True).stdout.strip()


def pod_processes(pod):
    """The pod's processes (inside its root), as /proc shows them on the host."""
    out = []
    for pid in pod.members():
        try:
            if os.readlink("/proc/%d/root" % pid) != "/":
                out.append(pid)
        except OSError:
            continue
    return out


def status_field(pid, name):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split()[1]
    return None


def assert_built_from_the_manifest(pod):
    """What the manifest asks for is what the pod's processes have."""
    procs = pod_processes(pod)
    assert procs, pod.output()
    sc = pod.container["securityContext"]
    host_pidns = os.readlink("/proc/self/ns/pid")
    for pid in procs:
        try:
            capeff, nnp = status_field(pid, "CapEff"), status_field(pid, "NoNewPrivs")
            pidns = os.readlink("/proc/%d/ns/pid" % pid)
            uid = status_field(pid, "Uid")
        except OSError:
            continue   # a short-lived child that just ended
        want = sum(1 << CAPS[c] for c in sc["capabilities"]["add"])
        assert capeff == "%016x" % want, (pid, capeff)
        assert nnp == "1" and uid == str(sc["runAsUser"])
        assert (pidns == host_pidns) is bool(pod.spec.get("hostPID")), pid
    # the image's /run, not this machine's: only what the pod mounts under it
    assert set(os.listdir("/proc/%d/root/run" % procs[0])) <= {"secrets"}
    with open("/proc/%d/mountinfo" % procs[0]) as f:
        mounts = dict((line.split()[4], line.split()[5].split(",")) for line in f)
    assert ("ro" in mounts["/"]) is sc["readOnlyRootFilesystem"], mounts["/"]
    for m in pod.container["volumeMounts"]:
        mp = m["mountPath"].replace("/var/run/", "/run/", 1)
        assert mp in mounts, (mp, sorted(mounts))
        assert ("ro" in mounts[mp]) is bool(m.get("readOnly")), (mp, mounts[mp])


def assert_probe_answers():
    with urllib.request.urlopen(HEALTH_URL, timeout=5) as r:
        assert r.status == 200, r.status


def make_pod(name, tmp_path, node, api=None, tag=""):
    workdir = tmp_path / ("pod-%s%s" % (name, tag))
    workdir.mkdir()
    return EmulatedPod(K8S / name / "daemonset.yml", workdir, node.path, NODE, sys.executable,
                       str((Path(collections_path()) / "ansible_collections" / "hangdoctor" / "runtime").resolve()), api=api)


def run_once(pod, prep, timeout=300):
    """Start the pod, let its loop go round once, check it, stop it."""
    pod.start(prep)
    try:
        pod.wait_for_runs(1, timeout=timeout)
        assert_built_from_the_manifest(pod)
        assert_probe_answers()
    finally:
        pod.stop()
    return pod.output()


def detect_names_it(tmp_path, prep, cid, pid, engine):
    """Run the detect pod once; it must name the stuck exec CID (writer PID)."""
    node = Node(tmp_path / "node")
    pod = make_pod("detect", tmp_path, node)
    out = run_once(pod, node.prep(**prep))
    assert "localhost | SUCCESS" in out and "run failed" not in out, out[-4000:]
    arrow = out.index("localhost | SUCCESS => ")
    result = json.JSONDecoder().raw_decode(out[arrow + len("localhost | SUCCESS => "):])[0]
    (rec,) = [r for r in result["stuck_execs"] if r["container_id"] == cid]
    assert rec["writer"]["pid"] == pid, rec
    metrics = (node.root / "var/lib/node_exporter/textfile_collector/hangdoctor.prom").read_text()
    mine = [line for line in metrics.splitlines() if 'container_id="%s"' % cid[:12] in line and not line.startswith("#")]
    assert mine, metrics
    assert any('namespace="shop"' in line and 'pod="cart-0"' in line for line in mine), mine
    # the node's engine was asked through the host's socket, and answered
    facts = result["ansible_facts"]["hangdoctor"]
    assert 'hangdoctor_engine_reachable{engine="%s"} 1' % engine in metrics, json.dumps(facts.get("engine"))[:6000]
    return result


def test_detect_pod_names_a_real_stuck_exec(harness, release, tmp_path):
    cid = labelled_container(harness, "incluster-detect-%d" % os.getpid())
    try:
        proc, pid = harness.hang(cid)
        assert_stuck(harness, cid, pid)
        detect_names_it(tmp_path, {"docker_sock": harness.docker_sock}, cid, pid, "docker")
        # detection changed nothing: still stuck
        assert_stuck(harness, cid, pid)
    finally:
        harness.release_all()
        harness.docker("rm", "-f", cid, timeout=60)


def stuck_pipes():
    """{(dev, inode): writer pid} of every writer blocked in write on a full
    stderr pipe on this machine (ours, and any other test's)."""
    out = {}
    for pid in hdharness.pids():
        sc = hdharness.syscall_of(pid)
        if sc[:1] and sc[0] in WRITE_NRS and sc[1:2] == ["0x2"]:
            try:
                queued, cap = hdharness.pipe_fill(pid)
                st = os.stat("/proc/%d/fd/2" % pid)
            except OSError:
                continue
            if stat.S_ISFIFO(st.st_mode) and queued >= cap:
                out[(st.st_dev, st.st_ino)] = pid
    return out


class HostLocks(object):
    """Locks held in the node's lock directory the way a drain on the host
    holds them (the collection's own lock code, the host's path)."""

    def __init__(self, path):
        self.dir = _pipe_lock.LockDir(path)
        self.held = {}

    def take(self, key, pid):
        if key in self.held:
            return
        lock = self.dir.lock(key[0], key[1], pid, hdharness.proc_stat_starttime(pid))
        assert lock.acquire(), key
        self.held[key] = lock

    def release(self, key):
        self.held.pop(key).release()

    def close(self):
        for lock in self.held.values():
            lock.release()
        self.held = {}
        self.dir.close()


def report(pod):
    return json.loads((pod.volume_dirs["tmp"] / "reports" / "hangdoctor-remediate.json").read_text())


def fake_api(tmp_path):
    kube = tmp_path / "kube"
    kube.mkdir()
    api = fk.FakeKubeAPI(kube)
    api.nodes[NODE] = fk.node(NODE)
    api.nodes["node-3.example"] = fk.node("node-3.example")
    api.pods = [fk.pod("shop", "cart-0", NODE), fk.pod("shop", "web-1", NODE),
                # another node's pod pending deletion: it blocks only if the guard reads beyond its node
                fk.pod("shop", "api-2", "node-3.example", deleting=True)]
    return api


def remediate_drains_it(tmp_path, prep, cid, pid, still_stuck, answers, record):
    """Run the remediate pod twice against the stuck exec CID (writer PID):
    while the host holds the lock of its pipe the pod leaves it alone; once
    released the pod drains it, with evidence on the node."""
    node = Node(tmp_path / "node")
    api = fake_api(tmp_path)
    locks = HostLocks(node.path(REMEDIATE_DEFAULTS["hangdoctor_lock_dir"]))
    try:
        ours = (os.stat("/proc/%d/fd/2" % pid).st_dev, hdharness.pipe_inode(pid))
        # the pod drains stuck execs at least this old (the role's default, the pod sets none)
        min_age = REMEDIATE_DEFAULTS["hangdoctor_drain_min_age_seconds"]
        age = time.time() - hdharness.proc_stat_starttime(pid) / os.sysconf("SC_CLK_TCK") - boot_time()
        time.sleep(max(0.0, min_age + 3 - age))
        # Every other stuck pipe on this shared machine is locked as a host
        # drain would lock it, so the pod (which scans the whole node) never
        # touches another test's hang.  A hang that starts after this is
        # younger than min_age during the pod's run.
        for key, writer in stuck_pipes().items():
            locks.take(key, writer)
        assert ours in locks.held

        # 1. the host holds the lock of our pipe: the pod's drain stays off it
        pod = make_pod("remediate", tmp_path, node, api=api, tag="-locked")
        out = run_once(pod, node.prep(**prep))
        assert "PLAY RECAP" in out and "run failed" not in out, out[-6000:]
        text = json.dumps(report(pod))
        assert cid in text and "another run is draining pipe:[%d]" % ours[1] in text, text[-4000:]
        still_stuck()
        assert not list((node.root / "var/log/hangdoctor").glob("*%s*" % cid[:12]))

        # 2. released on the host: the pod drains it
        locks.release(ours)
        for key, writer in stuck_pipes().items():
            if key != ours:
                locks.take(key, writer)
        pod = make_pod("remediate", tmp_path, node, api=api, tag="-free")
        out = run_once(pod, node.prep(**prep))
        assert "PLAY RECAP" in out and "run failed" not in out, out[-6000:]
        assert cid in json.dumps(report(pod))
        deadline = time.monotonic() + 30
        while hdharness.proc_comm(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert hdharness.proc_comm(pid) is None
        assert answers()
        # the evidence is on the node, 0600, and holds exactly what runc init wrote
        files = [f for f in (node.root / "var/log/hangdoctor").iterdir() if f.is_file()]
        (evidence,) = [f for f in files if cid[:12] in f.name]
        assert stat.S_IMODE(evidence.stat().st_mode) == 0o600
        length, dummy, dump = record(pid)
        body = evidence.read_bytes().partition(HEADER_END)[2]
        assert body[:length] == dump and TRAILER in body[length:]
        # the pod's lock directory is the host's: nothing of it in the pod's own folders
        assert not list((pod.workdir / "volumes").rglob("pipe-*"))

        # the eviction guard asked about its own node only
        asked = [(path, q) for method, path, q in api.requests if path.startswith("/api/v1/")]
        pods = [q for path, q in asked if path == "/api/v1/pods"]
        nodes = [path for path, q in asked if path.startswith("/api/v1/nodes")]
        assert pods and all(q.get("fieldSelector") == "spec.nodeName=" + NODE for q in pods), asked
        assert nodes and set(nodes) == {"/api/v1/nodes/" + NODE}, asked
        assert not [path for path, q in asked if path != "/api/v1/pods" and not path.startswith("/api/v1/nodes/")]
    finally:
        locks.close()
        api.close()


def boot_time():
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return int(line.split()[1])
    raise AssertionError("no btime in /proc/stat")


def test_remediate_pod_drains_after_the_hosts_lock_is_released(harness, release, tmp_path):
    cid = labelled_container(harness, "incluster-remediate-%d" % os.getpid())
    try:
        proc, pid = harness.hang(cid)
        assert_stuck(harness, cid, pid)
        remediate_drains_it(tmp_path, {"docker_sock": harness.docker_sock}, cid, pid,
                            still_stuck=lambda: assert_stuck(harness, cid, pid),
                            answers=lambda: harness.inspect_answers(cid, timeout=5.0),
                            record=harness.record)
        proc.wait(30)
    finally:
        harness.release_all()
        harness.docker("rm", "-f", cid, timeout=60)


# ---- containerd-CRI nodes (no dockerd) --------------------------------------


@pytest.fixture
def cri_pod(cri):
    """A pod shop/cart-0 whose container "app" has a real stuck ExecSync:
    (pod, container id, stuck writer pid)."""
    pod = cri.run_pod("cart-0", namespace="shop")
    app = pod["containers"]["app"]
    try:
        fut, pid = cri.hang_execsync(app, request_timeout=600)
        assert_really_stuck(cri, pod, app, fut, pid)
        yield pod, app, pid
    finally:
        cri.release_all()
        cri.remove_pod(pod["id"])


def test_detect_pod_names_a_real_stuck_exec_on_a_cri_node(cri, cri_pod, tmp_path):
    pod, app, pid = cri_pod
    detect_names_it(tmp_path, {"containerd_sock": cri.cri_sock}, app, pid, "containerd")
    assert hdharness.evidence(pid)["queued"] > 0 and not cri.exec_answers(app)


def test_remediate_pod_drains_on_a_cri_node_after_the_hosts_lock_is_released(cri, cri_pod, tmp_path):
    pod, app, pid = cri_pod
    remediate_drains_it(tmp_path, {"containerd_sock": cri.cri_sock}, app, pid,
                        still_stuck=lambda: assert_really_stuck_again(cri, pod, app, pid),
                        answers=lambda: cri.exec_answers(app, request_timeout=5.0),
                        record=cri.record)


def assert_really_stuck_again(cri, pod, app, pid):
    ev = hdharness.evidence(pid)
    assert ev["comm"] == "runc:[2:INIT]" and ev["queued"] == ev["capacity"] > 0, ev
    assert not cri.exec_answers(app)
