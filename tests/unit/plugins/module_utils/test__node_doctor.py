"""Which process is the node's kubelet (module_utils/_node_doctor.py), with
real processes: a workload in its own mount namespace that names itself
"kubelet" must not make the node a Kubernetes node or name it."""
import os
import shutil
import signal
import subprocess
import time

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _node_doctor, _options, _procfs


def start(tmp_path, name, *prefix):
    exe = tmp_path / name
    exe.write_text("#!/bin/sh\nsleep 600\n")
    exe.chmod(0o755)
    p = subprocess.Popen(list(prefix) + [str(exe), "--hostname-override=%s" % name.upper()],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if any(open("/proc/%d/comm" % q).read().strip() == "kubelet" for q in [p.pid] + _children(p.pid)):
                break
        except OSError:
            pass
        time.sleep(0.05)
    return p


def _children(pid):
    try:
        return [int(x) for x in open("/proc/%d/task/%d/children" % (pid, pid)).read().split()]
    except OSError:
        return []


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare(1)")
def test_a_kubelet_in_its_own_mount_namespace_is_not_the_node_s(tmp_path):
    d = tmp_path / "ns"
    d.mkdir()
    impostor = start(d, "kubelet", "unshare", "--mount", "--fork")
    try:
        assert _node_doctor.kube_node(_procfs.Proc("/proc")) is None
        real_dir = tmp_path / "host"
        real_dir.mkdir()
        real = start(real_dir, "kubelet")
        try:
            found = _node_doctor.kube_node(_procfs.Proc("/proc"))
            assert found is not None and found["kubelet_pid"] == real.pid and found["node_name"] == "kubelet"
        finally:
            os.killpg(real.pid, signal.SIGKILL)
            real.wait()
    finally:
        os.killpg(impostor.pid, signal.SIGKILL)
        impostor.wait()


def test_a_healthy_node_loads_neither_the_diagnosis_nor_the_engine_clients(tmp_path):
    """Nearly every node of a fleet run has nothing stuck and maybe one engine:
    its single module execution compiles only the code that node needs (the
    AnsiballZ payload is compiled on the target, every run)."""
    import json
    import sys
    from colltree import collections_path
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "stat").write_text(open("/proc/stat").read())
    code = "\n".join([
        "import json, sys",
        "sys.path.insert(0, %r)" % collections_path(),
        "from ansible_collections.hangdoctor.runtime.plugins.module_utils import _node_doctor, _procfs",
        "r = _node_doctor.run(_procfs.Proc(%r), _node_doctor.options(dict(docker_host='unix://%s/d.sock',"
        " containerd_address='%s/c.sock', kernel_log=False, metrics_dir='')))" % (str(proc), tmp_path, tmp_path),
        "prefix = 'ansible_collections.hangdoctor.runtime.plugins.module_utils.'",
        "print(json.dumps({'msg': r['msg'], 'loaded': sorted(m[len(prefix):] for m in sys.modules"
        " if m.startswith(prefix))}))",
    ])
    out = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    assert "no stuck exec" in out["msg"]
    assert not {"_stuck_exec", "_policy", "_crash_dump", "_records", "_engine_api", "_cri",
                "_pipe_drain", "_evidence"} & set(out["loaded"]), out["loaded"]
    assert {"_exec_candidates", "_summary", "_metrics", "_engines"} <= set(out["loaded"])


def test_a_partial_scan_is_never_reported_as_no_stuck_exec():
    s = {'host': 'node-1', 'scanned_processes': 900, 'engines': [], 'engine': {'skipped': 'no engine'},
         'scan_partial': True,
         'scan_partial_reason': 'scan deadline of 20.0s reached: not every possible writer was examined'}
    line = _node_doctor.message(s)
    assert 'no stuck exec' not in line
    assert line.startswith('node-1: scan PARTIAL, stuck execs unknown (scan deadline of 20.0s reached')
    assert 'no stuck exec' in _node_doctor.message(dict(s, scan_partial=False))


# ---- metrics_dir: auto and the owner of the textfile directory (issue 21) ----

def test_auto_refuses_a_textfile_directory_another_user_owns(tmp_path, monkeypatch):
    """Whoever owns the textfile directory could replace the metrics (hide a
    stuck exec) and race root's file names: auto writes only in a directory
    that root (or this user) owns and nobody else may write in."""
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _metrics
    d = tmp_path / "textfile_collector"
    d.mkdir()
    monkeypatch.setattr(_metrics, "TEXTFILE_DIRS", (str(d),))
    summary = {"host": "n1", "checked_at": 1700000000, "stuck_execs": [], "hung": [], "containers": []}

    os.chown(str(d), 1000, 1000)
    res = _node_doctor.write_metrics(summary, _options.METRICS.make(metrics_dir="auto", metrics_file="hangdoctor.prom"))
    assert res["written"] is False and "owned by uid 1000" in res["error"], res
    assert os.listdir(str(d)) == []

    os.chown(str(d), 0, 0)
    os.chmod(str(d), 0o777)
    res = _node_doctor.write_metrics(summary, _options.METRICS.make(metrics_dir="auto", metrics_file="hangdoctor.prom"))
    assert res["written"] is False and "every user may write" in res["error"], res

    os.chmod(str(d), 0o755)
    res = _node_doctor.write_metrics(summary, _options.METRICS.make(metrics_dir="auto", metrics_file="hangdoctor.prom"))
    assert res["written"] is True and res["error"] is None, res
    assert (d / "hangdoctor.prom").read_text().startswith("# HELP")
