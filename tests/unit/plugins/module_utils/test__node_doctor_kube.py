"""Which node is a Kubernetes node for the eviction guard
(module_utils/_node_doctor.py kube_node), with real processes and real mount
and PID namespaces: k3s, rke2 and MicroK8s run the kubelet inside their own
binary, a containerised kubelet leaves its files on the host, and what cannot
be told counts as a Kubernetes node.  A workload in its own mount namespace
that names itself so does not count (test__node_doctor.py has the kubelet case)."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _node_doctor, _procfs


def _wait_comm(p, comm):
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if open("/proc/%d/comm" % p.pid).read().strip() == comm:
                return
        except OSError:
            pass
        time.sleep(0.05)
    pytest.fail("%s did not start" % comm)


def start_named(tmp_path, comm, argv, *prefix):
    """A real process whose comm is COMM: a script of that name (it keeps its
    argv, e.g. --node-name) or, without ARGV, a copy of sleep(1)."""
    exe = tmp_path / comm
    if argv is None:
        shutil.copy(shutil.which("sleep"), str(exe))
        argv = ["600"]
    else:
        exe.write_text("#!/bin/sh\nsleep 600\n")
    exe.chmod(0o755)
    p = subprocess.Popen(list(prefix) + [str(exe)] + list(argv),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return p


def _other_kubelets():
    """Processes of KUBELET_COMMS that other tests on this machine may run."""
    found = []
    for n in os.listdir("/proc"):
        try:
            if (n.isdigit() and open("/proc/%s/comm" % n).read().strip() in _node_doctor.KUBELET_COMMS
                    and open("/proc/%s/stat" % n).read().rsplit(")", 1)[1].split()[0] != "Z"):
                found.append(int(n))
        except OSError:
            pass
    return found


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare(1)")
@pytest.mark.parametrize("comm,argv,name", [
    ("k3s-agent", ["agent", "--node-name", "Edge-3"], "edge-3"),
    ("k3s-server", ["server", "--node-name=CP-1"], "cp-1"),
    ("kubelite", None, socket.gethostname().lower()),
])
def test_k3s_and_microk8s_run_the_kubelet_in_their_own_binary(tmp_path, comm, argv, name):
    if _other_kubelets():
        pytest.skip("another test on this machine runs a kubelet stand-in: %s" % _other_kubelets())
    (tmp_path / "ns").mkdir()
    impostor = start_named(tmp_path / "ns", comm, argv, "unshare", "--mount", "--fork")
    try:
        time.sleep(0.3)
        assert impostor.poll() is None
        assert _node_doctor.kube_node(_procfs.Proc("/proc")) is None  # a workload naming itself so
        real = start_named(tmp_path, comm, argv)
        try:
            _wait_comm(real, comm)
            found = _node_doctor.kube_node(_procfs.Proc("/proc"))
            assert found is not None and found["kubelet_pid"] == real.pid, found
            assert found["node_name"] == name and comm in found["found"]
            assert _node_doctor.guard_required("auto", found) is True
        finally:
            os.killpg(real.pid, signal.SIGKILL)
            real.wait()
    finally:
        os.killpg(impostor.pid, signal.SIGKILL)
        impostor.wait()


FILES_PROBE = r'''
import json, sys
sys.path.insert(0, %(colls)r)
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _node_doctor, _procfs
print(json.dumps(_node_doctor.kube_node(_procfs.Proc("/proc"))))
'''


def _in_private_node(script, tmp_path):
    """Run SCRIPT (sh) as PID 1 of a new PID and mount namespace with its own
    /proc and a tmpfs on /var/lib and /etc: a node of its own whose host files
    the test makes, and no process of the real host in view."""
    from colltree import collections_path
    (tmp_path / "probe.py").write_text(FILES_PROBE % {"colls": collections_path()})
    probe = "%s %s" % (sys.executable, tmp_path / "probe.py")
    body = "set -e\nmount -t tmpfs tmpfs /var/lib\nmount -t tmpfs tmpfs /etc\n" + script.replace("PROBE", probe)
    r = subprocess.run(["unshare", "--mount", "--pid", "--fork", "--mount-proc", "--propagation", "private",
                        "sh", "-c", body], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, check=False)
    assert r.returncode == 0, r.stderr.decode()
    return [json.loads(line) for line in r.stdout.decode().splitlines() if line.strip()]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare(1)")
def test_kubelet_files_on_the_host_make_a_kubernetes_node(tmp_path):
    """A containerised kubelet is no host process of its own name, but its
    root-dir is on the host; k3s, MicroK8s, kubeadm leave their files."""
    out = _in_private_node("\n".join([
        "PROBE",                                              # nothing: not a Kubernetes node
        "mkdir -p /var/lib/kubelet/pods; PROBE; rm -r /var/lib/kubelet",
        "mkdir -p /etc/kubernetes; touch /etc/kubernetes/kubelet.conf; PROBE; rm -r /etc/kubernetes",
        "mkdir -p /var/lib/rancher/k3s/agent; PROBE; rm -r /var/lib/rancher",
        "mkdir -p /var/snap/microk8s/current/args; touch /var/snap/microk8s/current/args/kubelet; PROBE;"
        " rm -r /var/snap/microk8s",
        # the kubelet's root-dir moved to another disk: a symlink counts, unfollowed
        "ln -s /nonexistent/kubelet /var/lib/kubelet; PROBE; rm /var/lib/kubelet",
        # a symlink on the way cannot tell "absent": it counts
        "mkdir -p /var/lib/elsewhere; ln -s /var/lib/elsewhere /var/lib/rancher; PROBE; rm /var/lib/rancher",
        # a workload's own files (its own mount namespace) do not make the host a node
        "unshare --mount --propagation private sh -c 'mount -t tmpfs tmpfs /var/lib; mkdir /var/lib/kubelet;"
        " sleep 30' & W=$!; sleep 0.5; PROBE; kill $W",
        "PROBE",
    ]), tmp_path)
    assert out[0] is None and out[-1] is None and out[-2] is None, out
    found = [o["found"] for o in out[1:-2]]
    assert found == ["/var/lib/kubelet found on the host", "/etc/kubernetes/kubelet.conf found on the host",
                     "/var/lib/rancher/k3s/agent found on the host",
                     "/var/snap/microk8s/current/args/kubelet found on the host",
                     "/var/lib/kubelet found on the host",
                     "/var/lib/rancher/k3s/agent cannot be checked on the host"], out
    assert all(o["kubelet_pid"] is None and o["node_name"] == socket.gethostname().lower() for o in out[1:-2])


def test_a_kubelet_whose_mount_namespace_cannot_be_read_makes_a_kubernetes_node(tmp_path):
    """Cannot tell means guard (a /proc tree without the ns links)."""
    proc = tmp_path / "proc"
    (proc / "4242").mkdir(parents=True)
    (proc / "4242" / "comm").write_text("kubelet\n")
    (proc / "4242" / "stat").write_text("4242 (kubelet) S 1 4242 4242 0 -1 4194560 0 0 0 0 1 1 0 0 20 0 9 0 100 0 0\n")
    (proc / "77").mkdir()
    (proc / "77" / "comm").write_text("bash\n")
    # a zombie named kubelet (a workload can leave one behind) runs nothing
    (proc / "78").mkdir()
    (proc / "78" / "comm").write_text("kubelet\n")
    (proc / "78" / "stat").write_text("78 (kubelet) Z 1 78 78 0 -1 4194560 0 0 0 0 1 1 0 0 20 0 1 0 100 0 0\n")
    found = _node_doctor.kube_node(_procfs.Proc(str(proc)))
    assert found is not None and found["kubelet_pid"] is None and "4242" in found["found"], found
    (proc / "4242" / "comm").write_text("kubelet-proxy\n")
    assert _node_doctor.kube_node(_procfs.Proc(str(proc))) is None  # the zombie alone
