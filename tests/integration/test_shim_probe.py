"""A deadlocked but running shim, for real: every thread of a real
containerd shim except its leader is held in a ptrace stop
(harness/shim_hold.py), the leader stays parked in futex(2), so the process
is not stopped (state S) and yet its task API never answers.  The triage
must name shim_unresponsive from one read-only call to the shim's own ttrpc
socket; a busy but answering shim must not be named; released, the shim
answers again and its container lives."""
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import hdharness
from conftest import collections_path
from test_runc_pipe_drain import assert_stuck, new_container

HOLD = Path(__file__).resolve().parent / "harness" / "shim_hold.py"


def docker(harness, *args, timeout=30):
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **harness.env()), check=True).stdout.strip()


def shim_of(harness, cid):
    pid = int(docker(harness, "inspect", "-f", "{{.State.Pid}}", cid))
    shim = hdharness.proc_ppid(pid)
    assert hdharness.proc_comm(shim).startswith("containerd-shim"), hdharness.proc_comm(shim)
    return pid, shim


def start_time(pid):
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


def task_ps(harness, cid, timeout):
    """``ctr task ps`` of CID: its output, or None when it did not answer in TIMEOUT seconds."""
    try:
        r = subprocess.run(["ctr", "--address", str(harness.containerd_sock), "-n", "moby", "task", "ps", cid],
                           capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture
def hold(tmp_path):
    """hold(shim) holds the shim's threads; every hold is released at the end, even on failure."""
    procs = []

    def start(shim):
        ready = tmp_path / ("hold-%d.json" % shim)
        p = subprocess.Popen([sys.executable, str(HOLD), str(shim), str(ready)], stdin=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        procs.append(p)
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert p.poll() is None, p.stderr.read()
            assert time.monotonic() < deadline, "the hold did not get ready"
            time.sleep(0.05)
        return p, json.loads(ready.read_text())

    def stop(p):
        if p.poll() is None:
            p.stdin.close()
            p.wait(timeout=20)

    start.stop = stop
    yield start
    for p in procs:
        try:
            stop(p)
        except subprocess.TimeoutExpired:
            p.kill()  # the kernel detaches a dead tracer's tracees
            p.wait()


TRIAGE = r"""
import json, sys
sys.path.insert(0, %(coll)r)
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs, _runtime_tree, _triage
proc = _procfs.Proc('/proc')
table = _runtime_tree.ProcessTable.snapshot(proc)
d = _triage.diagnose(proc, table, [%(cid)r], settings=_triage.Settings(confirm_interval=0.3, shim_probe_timeout=%(t)r))
print(json.dumps(_triage.public(d[%(cid)r])))
"""


def triage_direct(cid, timeout):
    out = subprocess.run([sys.executable, "-c", TRIAGE % {"coll": collections_path(), "cid": cid, "t": timeout}],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return json.loads(out)


def assert_deadlock_evidence(ev, shim, timeout, request):
    assert ev["pid"] == shim and ev["state"] == "S", ev
    probe = ev["probe"]
    assert probe["request"] == request and probe["socket"].startswith("/"), probe
    assert probe["elapsed_ms"] >= timeout * 1000 * 0.95 and "did not answer" in probe["error"], probe
    leader = ev["threads"][0]
    assert leader["tid"] == shim and leader["state"] == "S" and leader["syscall"] == "futex", leader
    assert any(t["state"] == "t" for t in ev["threads"][1:]), ev["threads"]


def test_deadlocked_running_shim_v2_is_shim_unresponsive(harness, release, hold):
    cid = new_container(harness, layout="v2")
    init, shim = shim_of(harness, cid)
    born = start_time(shim)
    assert task_ps(harness, cid, 10), "the shim answers before the hold"
    holder, held = hold(shim)
    # the hang is real: the task API of the container does not answer while the shim is not stopped
    assert held["leader"] == ["S", "202"], held
    assert task_ps(harness, cid, 4) is None, "ctr task ps answered: the shim is not deadlocked"
    assert hdharness.proc_state(shim) == "S"
    # node_doctor reaches such a container through containerd's task check (ctr task ps), when that
    # check decides within its deadline; the triage it then runs is asked directly here
    diag = triage_direct(cid, 1.5)
    assert diag["causes"] == ["shim_unresponsive"], diag
    ev = diag["evidence"]["shim_unresponsive"]
    assert_deadlock_evidence(ev, shim, 1.5, "containerd.task.v2.Task/Connect")
    address = harness.containerd_sock.parent / "state" / "io.containerd.runtime.v2.task" / "moby" / cid / "address"
    assert "unix://" + ev["probe"]["socket"] == address.read_text().strip(), ev["probe"]
    assert hdharness.proc_state(shim) == "S", "the probe left the shim as it was"
    # released: the same shim answers again and its container lives
    hold.stop(holder)
    out = task_ps(harness, cid, 10)
    assert out and str(init) in out, out
    assert start_time(shim) == born and hdharness.proc_state(init) in ("S", "R")
    assert docker(harness, "exec", cid, "echo", "alive") == "alive"


def test_deadlocked_running_shim_v1_is_shim_unresponsive(harness, release, hold):
    """containerd's task check reads v2 bundles only, and dockerd's inspect does not ask the shim: a
    v1 container is diagnosed when it is a candidate for another reason, here asked directly."""
    cid = new_container(harness, layout="v1")
    init, shim = shim_of(harness, cid)
    born = start_time(shim)
    assert task_ps(harness, cid, 10), "the shim answers before the hold"
    holder, held = hold(shim)
    assert held["leader"] == ["S", "202"], held
    assert task_ps(harness, cid, 4) is None, "ctr task ps answered: the shim is not deadlocked"
    diag = triage_direct(cid, 1.5)
    assert diag["causes"] == ["shim_unresponsive"], diag
    assert_deadlock_evidence(diag["evidence"]["shim_unresponsive"], shim, 1.5,
                             "containerd.runtime.linux.shim.v1.Shim/ShimInfo")
    hold.stop(holder)
    out = task_ps(harness, cid, 10)
    assert out and str(init) in out, out
    assert start_time(shim) == born


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_decoy_busy_but_answering_shim_is_not_shim_unresponsive(harness, release):
    """A shim copying a flood of stdout while task calls keep coming is busy, not deadlocked."""
    cid = harness.run_container("shim-probe-busy-%d" % os.getpid(), cmd=(
        "sh", "-c", "while :; do echo 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef; done"))
    try:
        init, shim = shim_of(harness, cid)
        stop = []

        def load():
            while not stop:
                task_ps(harness, cid, 10)
        threads = [threading.Thread(target=load, daemon=True) for dummy in range(3)]
        for t in threads:
            t.start()
        try:
            before = cpu_ticks(shim)
            time.sleep(2.0)
            assert cpu_ticks(shim) - before >= 3, "the shim is not working"
            # each ctr task ps makes the shim run a runc ps child; a probe that meets one is skipped by
            # design (a silence then proves nothing), so ask again until one falls between them
            for dummy in range(10):
                diag = triage_direct(cid, 1.0)
                assert "shim_unresponsive" not in diag["causes"], diag
                if "runc" not in (diag["evidence"]["shim_probe"].get("skipped") or ""):
                    break
        finally:
            stop.append(1)
            for t in threads:
                t.join(15)
        assert "shim_unresponsive" not in diag["causes"], diag
        probe = diag["evidence"]["shim_probe"]
        assert probe["answered"] is True and probe["answer_pid"] == shim == probe["pid"], probe
        assert probe["request"] == "containerd.task.v2.Task/Connect", probe
    finally:
        docker(harness, "rm", "-f", cid, timeout=60)


def test_decoy_shim_silent_behind_a_stuck_exec_is_not_shim_unresponsive(harness, release):
    """A task call that waits on a stuck exec (ctr task ps behind the pipe deadlock) leaves the shim
    answering nothing until the exec returns (measured on containerd 1.6): that silence is the stuck
    exec's.  The shim has a runc child, so it is not asked and not named."""
    cid = new_container(harness, layout="v2")
    exec_proc, pid = harness.hang(cid)
    assert_stuck(harness, cid, pid)
    init, shim = hdharness.proc_ppid(pid), None
    while init and not (hdharness.proc_comm(init) or "").startswith("containerd-shim"):
        init = hdharness.proc_ppid(init)
    shim = init
    ps = subprocess.Popen(["ctr", "--address", str(harness.containerd_sock), "-n", "moby", "task", "ps", cid],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        assert ps.poll() is None, "ctr task ps answered behind the stuck exec"
        diag = triage_direct(cid, 1.0)
        assert "shim_unresponsive" not in diag["causes"], diag
        skipped = diag["evidence"]["shim_probe"]
        assert skipped["pid"] == shim and "runtime call(s) in flight" in skipped["skipped"], skipped
    finally:
        ps.kill()
        ps.wait()
        harness.release_all()
        exec_proc.wait(timeout=30)
