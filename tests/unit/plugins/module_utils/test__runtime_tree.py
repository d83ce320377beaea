"""The runtime's process tree from fixture /proc trees: shims v1/v2, runc exec,
runc init, container ids from the runc exec argv, pods from bundles and Docker."""
import os

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils._procfs import Proc
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _runtime_tree as tree
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils.proc_tree import materialize

CID = "bbd5e4b5f9c13666dd0ec7ff7afb2c4c2b0ede40a4adf1de43cc31c606f283f5"
C_APP = "1d1750ecc627cc5d60d80c071b2eb4d515ee8880c5b5136883164f08319869b0"
INCIDENT_EXEC = ["docker-runc", "--root", "/var/run/docker/runtime-runc/moby", "--log", "/run/x/log.json",
                 "--log-format", "json", "exec", "--process", "/tmp/runc-process616674997", "--detach",
                 "--pid-file", "/run/x/0594.pid", CID]


def test_snapshot_tree_and_candidates(tmp_path):
    proc = Proc(materialize("kernel310_shim_v1", tmp_path))
    table = tree.ProcessTable.snapshot(proc)
    assert len(table) == 7
    assert table.children(11646) == [11680, 15581]
    assert table.ancestors(15638) == [15581, 11646, 6655, 6600]
    assert tree.exec_candidates(table) == [(15638, "runc_init"), (15581, "runc_exec")]
    # comm alone cannot tell docker-containerd from its shim; argv can
    assert tree.shim_pids(table) == [6655, 11646]
    assert tree.find_shim(table, 15581) == 11646


def test_lazy_table_reads_only_what_is_asked(tmp_path):
    proc = Proc(materialize("kernel6_cri_shim_v2", tmp_path))
    table = tree.ProcessTable(proc)
    assert table.comm(4001) == "runc:[2:INIT]" and table.ppid(4001) == 4000
    assert sorted(table.stats) == [4001]
    assert table.get(99999) is None


@pytest.mark.parametrize("argv,version,sid", [
    (["docker-containerd-shim", "-namespace", "moby", "-workdir", "/x/" + CID, "-address", "/s"], "v1", None),
    (["containerd-shim", "-namespace", "moby", "-workdir", "/x/" + CID], "v1", None),
    (["/usr/bin/containerd-shim-runc-v2", "-namespace", "k8s.io", "-id", "a" * 64, "-address", "/s"], "v2", "a" * 64),
    (["containerd-shim-runc-v1", "-namespace=k8s.io", "-id=abc"], "v2", "abc"),
])
def test_shim_info(argv, version, sid):
    info = tree.shim_info(argv)
    assert info["version"] == version and info["id"] == sid
    assert tree.is_shim_argv(argv)


def test_containerd_is_not_a_shim():
    assert not tree.is_shim_argv(["docker-containerd", "--config", "/x.toml"])
    assert tree.is_shim_comm("docker-containe") and tree.is_shim_comm("containerd-shim")
    assert not tree.is_shim_comm("containerd")


def test_exec_argv():
    assert tree.runc_subcommand(INCIDENT_EXEC) == "exec"
    assert tree.exec_container_id(INCIDENT_EXEC) == CID
    assert tree.runc_root(INCIDENT_EXEC) == "/var/run/docker/runtime-runc/moby"
    assert tree.exec_container_id(["runc", "--root", "/r", "create", CID]) is None
    assert tree.exec_container_id(INCIDENT_EXEC[:-1] + ["web"]) is None
    assert tree.runc_subcommand(["runc", "--log=/x", "--debug", "exec", CID]) == "exec"
    assert tree.exec_container_id([]) is None


def test_pod_from_cri_bundle_annotations(tmp_path):
    proc = Proc(materialize("kernel6_cri_shim_v2", tmp_path))
    assert tree.pod_of(proc, 4000, C_APP) == {"namespace": "payments", "name": "api-6b7f9", "container": "app"}


def test_pod_from_docker_labels_via_dockerd_root(tmp_path):
    proc = Proc(materialize("kernel310_shim_v1", tmp_path))
    table = tree.ProcessTable.snapshot(proc)
    roots = tree.DockerRoots(proc, table)
    assert [(d["data_root"], d["exec_root"]) for d in roots.daemons()] == [("/home/docker_rt", "/var/run/docker")]
    pod = tree.pod_of(proc, 15581, CID, roots, INCIDENT_EXEC)
    assert pod == {"namespace": "shop", "name": "web-0", "container": "super-agent"}
    # unknown container: everything stays None
    assert tree.pod_of(proc, 15581, "f" * 64, roots, INCIDENT_EXEC) == {"namespace": None, "name": None, "container": None}


def test_pod_mapping_ignores_non_strings():
    assert tree.pod_from_mapping({"io.kubernetes.pod.name": 3}) == {"namespace": None, "name": None, "container": None}
    assert tree.pod_from_mapping(None)["name"] is None


def test_a_dockerd_in_another_mount_namespace_is_not_asked(tmp_path):
    """A process in a container named dockerd, with its own config.v2.json
    under its own root, cannot lend a real container its labels."""
    import os
    root = materialize("kernel310_shim_v1", tmp_path)
    for pid, ns in ((6600, "mnt:[4026532777]"), (15581, "mnt:[4026531840]")):
        os.makedirs("%s/%d/ns" % (root, pid))
        os.symlink(ns, "%s/%d/ns/mnt" % (root, pid))
    proc = Proc(root)
    roots = tree.DockerRoots(proc, tree.ProcessTable.snapshot(proc))
    assert tree.pod_of(proc, 15581, CID, roots, INCIDENT_EXEC) == {"namespace": None, "name": None, "container": None}
    os.unlink(root + "/6600/ns/mnt")
    os.symlink("mnt:[4026531840]", root + "/6600/ns/mnt")
    roots = tree.DockerRoots(proc, tree.ProcessTable.snapshot(proc))
    assert tree.pod_of(proc, 15581, CID, roots, INCIDENT_EXEC)["name"] == "web-0"


# ---- shim identity, with real processes ---------------------------------------
def _spawn(argv, cwd):
    import subprocess
    import time
    p = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    # wait until the process runs the program it was started for (unshare/setpriv exec it)
    while time.monotonic() < deadline:
        try:
            if open('/proc/%d/comm' % p.pid).read().strip() == 'sleep':
                return p
        except OSError:
            pass
        time.sleep(0.02)
    p.kill()
    raise AssertionError('%s did not start' % argv)


@pytest.mark.skipif(os.geteuid() != 0, reason='unshare and setpriv need root')
def test_shim_identity_is_proven_against_the_runtime_process(tmp_path):
    import shutil
    bundle = tmp_path / 'state' / 'k8s.io' / ('a' * 64)
    bundle.mkdir(parents=True)
    os.chmod(str(tmp_path), 0o755)
    sleep = shutil.which('sleep')
    procs = {
        'host': _spawn([sleep, '60'], str(bundle)),
        'own_mnt': _spawn(['unshare', '--mount', '--propagation', 'private', sleep, '60'], str(bundle)),
        'nobody': _spawn(['setpriv', '--reuid', '65534', '--regid', '65534', '--clear-groups', sleep, '60'], str(bundle)),
    }
    try:
        proc = Proc('/proc')
        ref = os.getpid()  # stands for the containerd that listens on the socket
        found, why = tree.shim_identity(proc, procs['host'].pid, ref)
        assert why == [] and found == str(bundle)
        found, why = tree.shim_identity(proc, procs['own_mnt'].pid, ref)
        assert found is None and any('another mnt namespace' in w for w in why), why
        found, why = tree.shim_identity(proc, procs['nobody'].pid, ref)
        assert found is None and any('uid 65534' in w for w in why), why
    finally:
        for p in procs.values():
            p.kill()
            p.wait()
