"""containerd-CRI checked from where the collection really runs, on the real
thing (containerd 1.6 with its CRI plugin, pods through the CRI API):

- from a pod (the in-cluster DaemonSets): the host's /proc at a proc_root, the
  host's containerd socket mounted at another path, the host's /run and the
  state folder not visible at all.  The shims' paths must be translated
  through the host, not read in the pod's view;
- shims that are there but cannot be asked are "cannot tell", not healthy;
- a process that calls itself a containerd shim is not trusted on its name:
  a uid-65534 process in its own mount namespace does not forge a hung pod."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from backlog import fill_backlog
from conftest import collections_path, run_module
from cri.harness import NAMESPACE
from test_cri import IN_FLIGHT, assert_really_stuck, cri_env


@pytest.fixture
def cri_clean(cri):
    cri.remove_all_pods()
    yield cri
    cri.release_all()


# The pod's view, as the DaemonSet's pod has it: hostPID, the host's /proc at
# <pod>/host/proc, the containerd socket (a hostPath) at <pod>/run/containerd;
# its own /run (the shims' sockets under /run/containerd/s are not there) and
# no containerd state folder (hidden here under a tmpfs).
POD_VIEW = r'''
set -e
pod="$1"; sock="$2"; hide="$3"; shift 3
mount -t tmpfs pod "$pod"
mkdir -p "$pod/host/proc" "$pod/run/containerd"
mount --bind /proc "$pod/host/proc"
: > "$pod/run/containerd/containerd.sock"
mount --bind "$sock" "$pod/run/containerd/containerd.sock"
mount -t tmpfs run /run
mount -t tmpfs hidden "$hide"
exec "$@"
'''

POD_CHECK = r'''
import json, os, sys
sys.path.insert(0, %(coll)r)
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _engines
pod = %(pod)r
address = pod + '/run/containerd/containerd.sock'
proc_root = pod + '/host/proc'
report = _engines.check_engines(_engines.EngineQuery(engines=['containerd'], containerd_address=address,
                                                    proc_root=proc_root, timeout=%(timeout)r, containerd_namespace=%(ns)r))
check = _engines.container_check(docker_host='unix:///nonexistent/docker.sock', containerd_address=address,
                                 timeout=%(timeout)r, containerd_namespace=%(ns)r, proc_root=proc_root)
print(json.dumps({'hidden': [os.path.exists(p) for p in (%(sock)r, '/run/containerd/s')],
                  'report': report, 'verify': dict((c, check(c)) for c in %(verify)r)}))
'''


def check_from_pod(cri, tmp_path, verify=(), timeout=2.0):
    pod = tmp_path / "pod"
    pod.mkdir()
    code = POD_CHECK % {"coll": collections_path(), "pod": str(pod), "timeout": timeout, "ns": NAMESPACE,
                        "sock": str(cri.cri_sock), "verify": list(verify)}
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", POD_VIEW, "sh",
                        str(pod), str(cri.cri_sock), str(cri.root), sys.executable, "-c", code],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    # the pod really does not see the host's paths
    assert out["hidden"] == [False, False], out["hidden"]
    return out


def test_the_pod_view_checks_the_hosts_containerd_through_its_shims(cri, cri_clean, tmp_path):
    sick = cri.run_pod("web-0", namespace="shop")
    healthy = cri.run_pod("api-0", namespace="shop")
    app = sick["containers"]["app"]
    fut, pid = cri.hang_execsync(app, request_timeout=IN_FLIGHT)
    assert_really_stuck(cri, sick, app, fut, pid)

    out = check_from_pod(cri, tmp_path, verify=[healthy["containers"]["app"], app])
    rep = out["report"]
    (engine,) = rep["engines"]
    assert engine["present"] is True and engine["reachable"] is True, engine
    by_id = {c["id"]: c for c in rep["containers"]}
    # every container of both pods was found through the host's /proc and asked on its shim
    assert set(by_id) == set(sick["containers"].values()) | set(healthy["containers"].values()), rep
    assert rep["hung"] == [app] or set(rep["hung"]) == set(sick["containers"].values()), rep["hung"]
    assert by_id[app]["responsive"] is False and by_id[app]["pod_name"] == "web-0", by_id[app]
    for cid in healthy["containers"].values():
        assert by_id[cid]["responsive"] is True, by_id[cid]
    assert rep["unchecked"] == [], rep
    # verification after a drain goes the same way: the healthy pod answers, the sick one does not
    assert out["verify"][healthy["containers"]["app"]][0] is True, out["verify"]
    assert out["verify"][app][0] is False, out["verify"]


def _shim_socket(cri, pod_id):
    shim = cri.shim_of(pod_id)
    assert shim is not None
    bundle = os.readlink("/proc/%d/cwd" % shim)
    address = open(os.path.join(bundle, "address")).read().strip()
    assert address.startswith("unix:///"), address
    return address[len("unix://"):]


def test_shims_found_but_none_reachable_is_cannot_tell_not_healthy(cri, cri_clean):
    pod = cri.run_pod("lost-0", namespace="shop")
    path = _shim_socket(cri, pod["id"])
    away = path + ".away"
    os.rename(path, away)
    try:
        failed, dummy = run_module("hung_container_info", {"timeout": 2, "engines": ["containerd"]},
                                   env=cri_env(cri))
        result, dummy = run_module("hung_container_info", {"timeout": 2, "engines": ["containerd"],
                                                           "fail_on_unreachable": False}, env=cri_env(cri))
    finally:
        os.rename(away, path)
    # cannot tell is not healthy: by default the task fails and says why
    assert failed["_status"] == "FAILED!", failed
    assert "none could be asked" in failed["msg"], failed
    assert result["_status"] == "SUCCESS", result
    (engine,) = result["engines"]
    # the shim is there (containerd and its process run) but nothing could be asked
    assert engine["present"] is True and engine["reachable"] is not True, engine
    assert "none could be asked" in engine["error"], engine
    assert set(result["unchecked"]) == set(pod["containers"].values()), result
    assert result["hung"] == []
    # and once the socket is back, the same check reads healthy
    result, dummy = run_module("hung_container_info", {"timeout": 2, "engines": ["containerd"]}, env=cri_env(cri))
    (engine,) = result["engines"]
    assert engine["reachable"] is True and engine["error"] is None, engine
    assert result["unchecked"] == [] and len(result["containers"]) == 2, result


FORGER = r'''
import ctypes, os, socket, sys, time
# comm "containerd-shim", argv like a v2 shim's (argv[0] set by exec -a)
ctypes.CDLL(None).prctl(15, b"containerd-shim", 0, 0, 0)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[-1])
s.listen(64)
held = []
while True:
    c, dummy = s.accept()
    held.append(c)  # accepted and never answered: a "hung" shim
'''


def test_a_process_named_like_a_shim_does_not_forge_a_hung_pod(cri, cri_clean):
    real = cri.run_pod("real-0", namespace="shop")
    fake_id = "f" * 64
    # the forger's own files, somewhere an unprivileged user may write
    base = tempfile.mkdtemp(prefix="hd-forger-", dir="/tmp")
    os.chmod(base, 0o755)
    bundle = os.path.join(base, "state", "io.containerd.runtime.v2.task", NAMESPACE, fake_id)
    os.makedirs(bundle)
    sock = os.path.join(base, "s.sock")
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump({"annotations": {"io.kubernetes.cri.container-type": "container",
                                   "io.kubernetes.cri.sandbox-namespace": "kube-system",
                                   "io.kubernetes.cri.sandbox-name": "etcd-master",
                                   "io.kubernetes.cri.container-name": "etcd"}}, f)
    with open(os.path.join(bundle, "address"), "w") as f:
        f.write("unix://" + sock)
    script = os.path.join(base, "forger.py")
    with open(script, "w") as f:
        f.write(FORGER)
    for root, dirs, files in os.walk(base):
        for n in dirs + files + ["."]:
            os.chown(os.path.join(root, n), 65534, 65534)
    cmd = ("cd %s && exec -a containerd-shim-runc-v2 /usr/bin/python3 %s -namespace %s -address %s -id %s %s"
           % (bundle, script, NAMESPACE, cri.cri_sock, fake_id, sock))
    p = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "setpriv", "--reuid", "65534",
                          "--regid", "65534", "--clear-groups", "--", "bash", "-c", cmd],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(sock) and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.05)
        assert os.path.exists(sock), p.stderr.read().decode() if p.poll() is not None else "no forger socket"
        # the forgery is what it claims to be on every count a name can carry
        comm = open("/proc/%d/comm" % p.pid).read().strip()
        argv = open("/proc/%d/cmdline" % p.pid, "rb").read().split(b"\0")
        assert comm == "containerd-shim" and argv[0] == b"containerd-shim-runc-v2", (comm, argv)
        assert os.readlink("/proc/%d/ns/mnt" % p.pid) != os.readlink("/proc/self/ns/mnt")
        s = __import__("socket").socket(__import__("socket").AF_UNIX)
        s.settimeout(1)
        s.connect(sock)  # it accepts, and would never answer
        s.close()

        result, dummy = run_module("hung_container_info", {"timeout": 2, "engines": ["containerd"]},
                                   env=cri_env(cri))
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        shutil.rmtree(base, ignore_errors=True)
    assert result["_status"] == "SUCCESS", result
    ids = [c["id"] for c in result["containers"]]
    assert fake_id not in ids and fake_id not in result["hung"], result
    assert "etcd-master" not in result["msg"], result["msg"]
    # the real pod is still checked, and the forger is named with why it was refused
    assert set(real["containers"].values()) <= set(ids) and result["hung"] == [], result
    (engine,) = result["engines"]
    assert engine["reachable"] is True, engine
    (refused,) = [r for r in engine.get("refused_shims") or [] if r["pid"] == p.pid]
    why = " ".join(refused["reasons"])
    assert "mnt namespace" in why and "uid 65534" in why, refused


def test_a_shim_whose_listen_backlog_is_full_is_not_answering(cri, cri_clean):
    pod = cri.run_pod("full-0", namespace="shop")
    app = pod["containers"]["app"]
    shim = cri.shim_of(pod["id"])
    path = _shim_socket(cri, pod["id"])
    os.kill(shim, signal.SIGSTOP)
    held = []
    try:
        held = fill_backlog(path)
        assert len(held) > 100  # a stopped shim that accepts nothing: its whole backlog queued
        result, dummy = run_module("hung_container_info", {"timeout": 2, "engines": ["containerd"]}, env=cri_env(cri))
        code = ("import json, sys; sys.path.insert(0, %r)\n"
                "from ansible_collections.hangdoctor.runtime.plugins.module_utils._engines import container_check\n"
                "print(json.dumps(container_check(containerd_address=%r, timeout=2, "
                "docker_host='unix:///nonexistent/docker.sock')(%r)))" % (collections_path(), str(cri.cri_sock), app))
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    finally:
        for s in held:
            s.close()
        os.kill(shim, signal.SIGCONT)
    assert result["_status"] == "SUCCESS", result
    (c,) = [c for c in result["containers"] if c["id"] == app]
    # the shim is there and does not take the call: that is not answering, not "cannot tell"
    assert c["responsive"] is False and "backlog" in c["error"], c
    # the shim serves the whole pod: both its containers are behind the full backlog
    assert sorted(result["hung"]) == sorted(pod["containers"].values()), result
    assert r.returncode == 0, r.stderr
    verified, why = json.loads(r.stdout)
    assert verified is False and "backlog" in why, (verified, why)
    assert cri.exec_answers(pod["containers"]["sidecar"], request_timeout=5.0)


def _verify(cri, cid):
    code = ("import json, sys; sys.path.insert(0, %r)\n"
            "from ansible_collections.hangdoctor.runtime.plugins.module_utils._engines import container_check\n"
            "print(json.dumps(container_check(containerd_address=%r, timeout=2, "
            "docker_host='unix:///nonexistent/docker.sock')(%r)))" % (collections_path(), str(cri.cri_sock), cid))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


HTTP_PEER = r'''
import os, socket, sys
# answers whatever it is sent as an HTTP server does: a banner that is not ttrpc
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
s.listen(16)
while True:
    c, dummy = s.accept()
    c.recv(65536)
    c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n400 Bad Request")
    c.close()
'''


@pytest.mark.parametrize("where", ["http", "grpc", "unsupported"])
def test_only_a_ttrpc_answer_verifies_a_container(cri, cri_clean, tmp_path, where):
    """After a drain, the container counts as verified only when its shim gave
    a ttrpc answer: not when the address it names speaks something else (an
    HTTP server's banner; containerd's own gRPC socket, which resets), nor
    when no connection could even be made."""
    peer = None
    if where == "http":
        http_sock = str(tmp_path / "http.sock")
        peer = subprocess.Popen([sys.executable, "-c", HTTP_PEER, http_sock])
        deadline = time.monotonic() + 10
        while not os.path.exists(http_sock) and time.monotonic() < deadline:
            time.sleep(0.05)
    pod = cri.run_pod("verify-0", namespace="shop")
    app = pod["containers"]["app"]
    shim = cri.shim_of(pod["id"])
    bundle = os.path.join(os.path.dirname(os.readlink("/proc/%d/cwd" % shim)), app)
    address_file = os.path.join(bundle, "address")
    original = open(address_file).read()
    assert _verify(cri, app)[0] is True  # the real shim answers
    other = {"grpc": "unix://%s" % cri.cri_sock, "unsupported": "tcp://127.0.0.1:1",
             "http": "unix://%s" % (tmp_path / "http.sock")}[where]
    with open(address_file, "w") as f:
        f.write(other)
    try:
        verified, why = _verify(cri, app)
        result, dummy = run_module("hung_container_info", {"timeout": 2, "engines": ["containerd"]}, env=cri_env(cri))
    finally:
        with open(address_file, "w") as f:
            f.write(original)
        if peer is not None:
            peer.kill()
            peer.wait()
    assert verified is None, (verified, why)
    assert {"http": "not a ttrpc answer", "grpc": "reset", "unsupported": "no connection made"}[where] in why, why
    (c,) = [c for c in result["containers"] if c["id"] == app]
    assert c["responsive"] is None and app in result["unchecked"] and app not in result["hung"], c
    assert _verify(cri, app)[0] is True
