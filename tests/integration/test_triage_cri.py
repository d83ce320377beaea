"""Triage on a real containerd-CRI node (containerd 1.6 with its CRI plugin, no
dockerd, pods through the CRI API, one containerd-shim-runc-v2 per pod whose
-id is the sandbox): every cause is named for the right container of the pod,
never for its sandbox ("pause") container, and the decoys get no cause.  Each
test first proves the hang is real, then asserts the exact causes named.

One CRI node for the whole file (the ``cri`` fixture of conftest.py)."""
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

import hdharness
from conftest import collections_path, read, row, run_module, wait_for
from cri.harness import IMAGE
from test_cri import assert_really_stuck, cri_env

LINE = "x" * 200
# kubelet keeps an ExecSync in flight for the probe's timeout + --runtime-request-timeout; here long
# enough that the hang outlives a test on a loaded machine (its end would end the hang: the shim then kills runc exec)
IN_FLIGHT = 300.0
TASK_DIR = "io.containerd.runtime.v2.task"


# ---- helpers -------------------------------------------------------------------

def pod_with(cri, name, **commands):
    """A pod NAME whose containers run COMMANDS ({container name: argv}); the
    harness's pod dict with the new containers' ids under 'containers'."""
    pod = cri.run_pod(name, namespace="shop", containers=())
    c = cri.client()
    for cname, argv in commands.items():
        cid = c.create_container(pod["id"], pod["config"], cname, IMAGE, list(argv))
        c.start_container(cid)
        pod["containers"][cname] = cid
    return pod


def init_pid(cri, cid):
    """The container's init pid, from its bundle (what the shim wrote)."""
    return int((cri.ctd / "state" / TASK_DIR / "k8s.io" / cid / "init.pid").read_text())


def freezer_state_file(pid):
    with open("/proc/%d/cgroup" % pid) as f:
        for line in f:
            dummy, ctl, path = line.strip().split(":", 2)
            if "freezer" in ctl.split(","):
                return "/sys/fs/cgroup/freezer%s/freezer.state" % path
    raise AssertionError("no freezer cgroup")


def doctor(cri, cids, **over):
    args = {"container_ids": list(cids), "metrics_dir": "", "confirm_interval": 0.3, "inspect_timeout": 2,
            "drain_min_age_seconds": 0}
    args.update(over)
    res, dummy = run_module("node_doctor", args, env=cri_env(cri))
    assert res["_status"] in ("SUCCESS", "CHANGED"), res
    return res, dict((r["container_id"], r) for r in res["ansible_facts"]["hangdoctor"]["containers"])


def assert_sandbox_never_named(pod, rows):
    assert pod["id"] not in rows, rows


def ctr_task(cri, *args, timeout=10):
    r = cri.ctr("task", *args, timeout=timeout)
    assert r.returncode == 0, r.stderr
    return r.stdout


def cgroup_text(pid):
    try:
        with open("/proc/%d/cgroup" % pid) as f:
            return f.read()
    except OSError:
        return ""


def size_of(path):
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


@pytest.fixture
def undo(cri):
    """Shims a test stopped are resumed, freezers thawed, paused tasks resumed,
    pods removed, even when it failed half way."""
    state = {"stopped": [], "frozen": [], "paused": [], "pods": []}
    yield state
    for pid in state["stopped"]:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    for path in state["frozen"]:
        try:
            with open(path, "w") as f:
                f.write("THAWED")
        except OSError:
            pass
    for cid in state["paused"]:
        cri.ctr("task", "resume", cid, timeout=10)
    cri.release_all()
    for pod in state["pods"]:
        try:
            cri.remove_pod(pod["id"])
        except grpc.RpcError:
            pass


# ---- the pipe deadlock, and what containerd answers during it (engine_lock) --------

def test_cri_pipe_deadlock_names_no_engine_lock_containerd_answers_status(cri, cri_release, undo, tmp_path):
    """Measured: during the pipe deadlock containerd's CRI ContainerStatus and
    ListContainers answer at once; the calls that reach the pod's shim and need
    runc (``ctr task ps``) do not.  containerd holds no lock behind the stuck
    exec (its goroutine dump has no handler waiting for a lock): no
    engine_lock, only pipe_full_init."""
    pod = cri.run_pod("tri-lock", namespace="shop")
    undo["pods"].append(pod)
    app = pod["containers"]["app"]
    fut, pid = cri.hang_execsync(app, request_timeout=IN_FLIGHT)
    assert_really_stuck(cri, pod, app, fut, pid)

    c = cri.client()
    t0 = time.monotonic()
    status = c.container_status(app, timeout=5)
    listed = c.list_containers(timeout=5)
    answered = time.monotonic() - t0
    assert status.id == app and status.state == c.pb2.CONTAINER_RUNNING, status
    assert app in [x.id for x in listed]
    assert answered < 3.0, answered
    with pytest.raises(hdharness.HarnessError):
        cri.ctr("task", "ps", app, timeout=3)  # the pod's shim does not answer runc calls

    res, rows = doctor(cri, [app], capture_stacks=True, stacks_timeout=10, stacks_min_interval=0,
                       evidence_dir=str(tmp_path / "evidence"), lock_dir=str(tmp_path / "locks"))
    diag = row(res, rows, app)["diagnosis"]
    assert diag["causes"] == ["pipe_full_init"], diag
    assert "engine_lock" not in diag["evidence"]
    assert_sandbox_never_named(pod, rows)
    stacks = res["ansible_facts"]["hangdoctor"]["stacks"]
    kinds = sorted(set(f["kind"] for f in stacks["files"]))
    assert "containerd" in kinds, stacks
    fps = [f["fingerprint"] if isinstance(f, dict) else f for f in stacks["fingerprints"]]
    assert not [f for f in fps if f.startswith("containerd:") and " waits for " in f], fps
    assert not fut.done(), "the ExecSync is still stuck: capturing changed nothing"
    # status still answers after the capture
    assert c.container_status(app, timeout=5).id == app

    # hung_container_info names the same cause for the pod container it finds hung
    # a timeout long enough that the probe of the stuck shim gets all of it on a loaded machine
    res, dummy = run_module("hung_container_info", {"engines": ["containerd"], "timeout": 8}, env=cri_env(cri))
    entry = next(x for x in res["containers"] if x["id"] == app)
    assert entry["responsive"] is False and entry["diagnosis"]["causes"] == ["pipe_full_init"], entry
    assert pod["id"] not in [x["id"] for x in res["containers"]]


def test_cri_pod_pipe_deadlock_and_stopped_pod_shim(cri, cri_release, undo):
    """Under CRI one shim serves the pod (its -id is the sandbox): the container is
    found by its cgroup and the runc exec argv, never by the shim's -id."""
    pod = cri.run_pod("tri-0", namespace="shop")
    undo["pods"].append(pod)
    app, sidecar = pod["containers"]["app"], pod["containers"]["sidecar"]
    fut, pid = cri.hang_execsync(app, request_timeout=IN_FLIGHT)
    assert_really_stuck(cri, pod, app, fut, pid)
    res, rows = doctor(cri, [app])
    diag = row(res, rows, app)["diagnosis"]
    assert diag["causes"] == ["pipe_full_init"], diag  # engine_lock is dockerd's; containerd has none
    shim = cri.shim_of(pod["id"])
    assert [x["pid"] for x in diag["chain"] if x["role"] == "shim"] == [shim]
    assert any(x["role"] == "runc_init" and x["pid"] == pid for x in diag["chain"]), diag["chain"]
    cri.release_all()

    # the pod's shim stopped: both containers of the pod name it, the sandbox is never named
    os.kill(shim, signal.SIGSTOP)
    undo["stopped"].append(shim)
    wait_for(lambda: hdharness.proc_state(shim) == "T", 10, "the shim to stop")
    res, rows = doctor(cri, [app, sidecar], check_engine=False)
    for cid in (app, sidecar):
        assert rows[cid]["diagnosis"]["causes"] == ["shim_unresponsive"], rows[cid]["diagnosis"]
        assert rows[cid]["diagnosis"]["evidence"]["shim_unresponsive"]["pid"] == shim
    res, rows = doctor(cri, [], check_engine=False)
    assert_sandbox_never_named(pod, rows)
    # found by the cheap pass alone (other rows are other harnesses' on this machine)
    assert sorted(cid for cid in rows if cid in (app, sidecar, pod["id"])) == sorted([app, sidecar]), rows


# ---- frozen_cgroup, and containerd's own pause as the decoy ------------------------

TICKER = ("sh", "-c", "while :; do echo tick >> /tmp/ticks; sleep 0.2; done")


def test_cri_frozen_cgroup_is_named_thawed_only_when_asked_and_ctr_pause_is_not(cri, cri_release, undo):
    pod = pod_with(cri, "tri-frz", app=TICKER, sidecar=TICKER)
    undo["pods"].append(pod)
    app, sidecar = pod["containers"]["app"], pod["containers"]["sidecar"]
    pid = init_pid(cri, app)
    ticks = "/proc/%d/root/tmp/ticks" % pid
    wait_for(lambda: size_of(ticks) > 0, 20, "the ticker")
    state = freezer_state_file(pid)
    assert state.endswith("/%s/freezer.state" % app), state
    undo["frozen"].append(state)
    with open(state, "w") as f:
        f.write("FROZEN")
    wait_for(lambda: read(state) == "FROZEN", 10, "the freezer")
    # the hang is real: the container stops making progress, its init sits frozen in D
    wait_for(lambda: hdharness.proc_state(pid) == "D", 10, "the init to freeze")
    before = size_of(ticks)
    time.sleep(1.5)
    assert size_of(ticks) == before, "the frozen container still ticks"
    # containerd's task says running: nobody paused it through containerd
    assert "RUNNING" in [ln.split()[2] for ln in ctr_task(cri, "ls").splitlines() if ln.startswith(app)]

    res, rows = doctor(cri, [app, sidecar])
    diag = rows[app]["diagnosis"]
    assert diag["causes"] == ["frozen_cgroup"], diag
    ev = diag["evidence"]["frozen_cgroup"]
    assert ev["freezer_state"] == "FROZEN" and ev["engine_paused"] is False, ev
    assert ev["engine_state"] == "running", ev
    assert ev["freezer_file"].endswith("/%s/freezer.state" % app), ev
    assert pid in ev["frozen_pids"], ev
    assert sidecar not in rows, rows
    assert_sandbox_never_named(pod, rows)
    assert read(state) == "FROZEN", "detect must not thaw"

    # thaw only when asked
    res, rows = doctor(cri, [app], mode="remediate", require_guard="never")
    assert read(state) == "FROZEN" and rows[app]["diagnosis"]["done"] is None
    res, rows = doctor(cri, [app], mode="remediate", require_guard="never", thaw=True)
    assert rows[app]["diagnosis"]["done"].startswith("thawed"), rows[app]["diagnosis"]
    wait_for(lambda: read(state) == "THAWED", 10, "the thaw")
    wait_for(lambda: size_of(ticks) > before, 10, "the ticker to run again")

    # the decoy: containerd paused the sidecar's task itself (ctr task pause): not frozen_cgroup, never thawed
    sstate = freezer_state_file(init_pid(cri, sidecar))
    ctr_task(cri, "pause", sidecar)
    undo["paused"].append(sidecar)
    wait_for(lambda: read(sstate) == "FROZEN", 10, "ctr task pause")
    assert "PAUSED" in [ln.split()[2] for ln in ctr_task(cri, "ls").splitlines() if ln.startswith(sidecar)]
    res, rows = doctor(cri, [sidecar], mode="remediate", require_guard="never", thaw=True)
    assert sidecar not in rows or "frozen_cgroup" not in rows[sidecar]["diagnosis"]["causes"], rows
    assert read(sstate) == "FROZEN", "a task containerd paused must never be thawed"
    assert_sandbox_never_named(pod, rows)
    ctr_task(cri, "resume", sidecar)
    undo["paused"].remove(sidecar)


# ---- exec_fifo_wait: a CRI StartContainer whose runc start is held -------------------

def test_cri_runc_init_waiting_on_exec_fifo_is_exec_fifo_wait(cri, cri_release, undo):
    pod = cri.run_pod("tri-fifo", namespace="shop", containers=("sidecar",))
    undo["pods"].append(pod)
    c = cri.client()
    cid = c.create_container(pod["id"], pod["config"], "app", IMAGE, ["/bin/sleep", "100000"])
    cri.hold_start(cid)
    start = c.rt.StartContainer.future(c.pb2.StartContainerRequest(container_id=cid), timeout=120)
    try:
        # the hang is real: StartContainer does not return, the container's runc init waits opening exec.fifo
        init = wait_for(lambda: [p for p in hdharness.pids() if hdharness.proc_comm(p) == "runc:[2:INIT]"
                                 and hdharness.wchan_of(p) in ("fifo_open", "wait_for_partner")
                                 and cid in cgroup_text(p)], 30,
                        "runc init on exec.fifo")
        time.sleep(1.0)
        assert not start.done(), "StartContainer returned"
        assert c.container_status(cid, timeout=5).state == c.pb2.CONTAINER_CREATED

        res, rows = doctor(cri, [cid])
        diag = rows[cid]["diagnosis"]
        assert diag["causes"] == ["exec_fifo_wait"], diag
        (ev,) = diag["evidence"]["exec_fifo_wait"]["runc_init"]
        assert ev["pid"] == init[0]
        link = next(x for x in diag["chain"] if x["pid"] == init[0])
        assert link["role"] == "runc_init" and link["blocking_fd"]["kind"] == "fifo", link
        assert any(x["role"] == "runc" for x in diag["chain"]), diag["chain"]
        assert [x["pid"] for x in diag["chain"] if x["role"] == "shim"] == [cri.shim_of(pod["id"])]
        assert_sandbox_never_named(pod, rows)
    finally:
        cri.release_start(cid)
    start.result(timeout=60)
    assert c.container_status(cid, timeout=5).state == c.pb2.CONTAINER_RUNNING


# ---- uninterruptible_io: a FUSE mount that never answers ---------------------------------

def test_cri_process_on_a_fuse_mount_that_never_answers_is_uninterruptible_io(cri, cri_release, undo):
    cmd = ("sh", "-c", "mkdir -p /fuse; while [ ! -e /go ]; do sleep 0.1; done; cat /fuse/x; sleep 100000")
    pod = pod_with(cri, "tri-fuse", app=cmd)
    undo["pods"].append(pod)
    app = pod["containers"]["app"]
    pid = init_pid(cri, app)
    server = subprocess.Popen([sys.executable, str(Path(hdharness.__file__).parent / "fuse_never.py"), str(pid),
                               "/fuse", "/go"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "mounted", server.stderr.read()
        # the hang is real: cat (a child of the container's sh) sits in D waiting for the file system
        cat = wait_for(lambda: [p for p in hdharness.pids() if hdharness.proc_ppid(p) == pid
                                and hdharness.proc_comm(p) == "cat" and hdharness.proc_state(p) == "D"], 20,
                       "cat in D")
        time.sleep(1.0)
        assert hdharness.proc_state(cat[0]) == "D"

        res, rows = doctor(cri, [app])
        diag = rows[app]["diagnosis"]
        assert diag["causes"] == ["uninterruptible_io"], diag
        (p,) = diag["evidence"]["uninterruptible_io"]["processes"]
        assert p["pid"] == cat[0] and p["comm"] == "cat" and p["wchan"], p
        assert any("fuse" in frame for frame in p["stack"] or []), p
        assert_sandbox_never_named(pod, rows)
    finally:
        server.kill()
        server.wait(timeout=10)


# ---- stdio_stall, and a busy writer as the decoy ---------------------------------------

def test_cri_stdout_blocked_behind_a_stopped_pod_shim_is_stdio_stall(cri, cri_release, undo):
    # the writer starts after a pause, once the shim is stopped; 4 MB is far more than the pipe holds
    cmd = ("sh", "-c", "sleep 3; i=0; while [ $i -lt 20000 ]; do echo %s; i=$((i+1)); done; sleep 100000" % LINE)
    pod = pod_with(cri, "tri-stdio", app=cmd)
    undo["pods"].append(pod)
    app = pod["containers"]["app"]
    pid = init_pid(cri, app)
    shim = cri.shim_of(pod["id"])
    os.kill(shim, signal.SIGSTOP)
    undo["stopped"].append(shim)
    # the hang is real: the container's process sits in write(2) on fd 1, the pipe full, the shim its reader
    seen = (hdharness.syscall_of(pid)[:2], hdharness.wchan_of(pid), hdharness.proc_state(shim))
    wait_for(lambda: hdharness.syscall_of(pid)[:2] in (["1", "0x1"], ["64", "0x1"]), 60,
             "the writer to block (at first: syscall %s, wchan %s, shim state %s)" % seen)
    queued, cap = hdharness.pipe_fill(pid, fd=1)
    assert queued > cap - 4096, (queued, cap)
    res, rows = doctor(cri, [app], check_engine=False)
    diag = rows[app]["diagnosis"]
    assert diag["causes"] == ["stdio_stall", "shim_unresponsive"], diag
    (w,) = diag["evidence"]["stdio_stall"]["writers"]
    assert w["pid"] == pid and w["fd"] == 1 and w["queued"] == queued
    assert any(r["pid"] == shim for r in w["readers"]), w
    assert_sandbox_never_named(pod, rows)


def test_cri_decoy_progressing_writer_is_not_stdio_stall(cri, cri_release, undo):
    cmd = ("sh", "-c", "i=0; while [ $i -lt 400000 ]; do echo %s; i=$((i+1)); done; sleep 100000" % LINE)
    pod = pod_with(cri, "tri-busy", app=cmd)
    undo["pods"].append(pod)
    app = pod["containers"]["app"]
    pid = init_pid(cri, app)
    res, rows = doctor(cri, [app])
    alive = hdharness.proc_state(pid)
    assert app not in rows, rows
    assert_sandbox_never_named(pod, rows)
    assert alive in ("R", "S", "D"), alive
    # the writer really was writing (through the shim into the CRI log) while it was looked at
    log = next((cri.logs).glob("shop_tri-busy_*/app/0.log"))
    assert log.stat().st_size > 1000000, log.stat().st_size


# ---- exec_pileup: stale execs under the pod's shim ----------------------------------------

def test_cri_stale_exec_pileup_is_named_and_reaped_only_when_asked(cri, cri_release, undo):
    pod = cri.run_pod("tri-pile", namespace="shop")
    undo["pods"].append(pod)
    app, sidecar = pod["containers"]["app"], pod["containers"]["sidecar"]
    init, side_init = init_pid(cri, app), init_pid(cri, sidecar)
    shim = cri.shim_of(pod["id"])
    time.sleep(1.5)  # execs start well after the container's init
    for n in range(3):
        ctr_task(cri, "exec", "--detach", "--exec-id", "stale-%d" % n, app, "sleep", "100000")

    def execs():
        # the sandbox's process is a sleep too: execs are the shim's sleeps in the app's cgroup
        return [p for p in hdharness.pids() if hdharness.proc_ppid(p) == shim and hdharness.proc_comm(p) == "sleep"
                and p not in (init, side_init) and app in cgroup_text(p)]
    wait_for(lambda: len(execs()) == 3, 20, "three execs")
    stale = execs()
    time.sleep(4)
    res, rows = doctor(cri, [], stale_exec_min_age_seconds=3)
    diag = rows[app]["diagnosis"]
    assert diag["causes"] == ["exec_pileup"], diag
    assert diag["evidence"]["exec_pileup"]["count"] == 3
    assert sorted(p["pid"] for p in diag["evidence"]["exec_pileup"]["processes"]) == sorted(stale)
    # the pod's other containers and its sandbox are not execs of anything
    assert sidecar not in rows and pod["id"] not in rows, rows
    assert all(os.path.exists("/proc/%d" % p) for p in stale), "detect reaps nothing"

    res, rows = doctor(cri, [app], stale_exec_min_age_seconds=3, mode="remediate", require_guard="never",
                       reap_stale_execs=True)
    assert rows[app]["diagnosis"]["done"].startswith("reaped 3"), rows[app]["diagnosis"]
    wait_for(lambda: not any(os.path.exists("/proc/%d" % p) for p in stale), 10, "the reap")
    for p in (init, side_init, shim):
        assert hdharness.proc_state(p) in ("S", "R"), "pid %d was not a stale exec" % p
    assert cri.exec_answers(app, request_timeout=5.0)


def test_cri_healthy_pod_of_many_containers_is_no_pileup(cri, cri_release, undo):
    """A pod's containers are all children of its one shim, started after the
    sandbox: that is not a pile of execs, and the cheap pass does not say so."""
    pod = cri.run_pod("tri-many", namespace="shop", containers=())
    undo["pods"].append(pod)
    c = cri.client()
    for n in range(4):
        time.sleep(1.2)
        cid = c.create_container(pod["id"], pod["config"], "c%d" % n, IMAGE, ["/bin/sleep", "100000"])
        c.start_container(cid)
        pod["containers"]["c%d" % n] = cid
    shim = cri.shim_of(pod["id"])
    kids = [p for p in hdharness.pids() if hdharness.proc_ppid(p) == shim]
    assert len(kids) == 5, kids  # the sandbox's pause and four containers
    res, rows = doctor(cri, [], stale_exec_min_age_seconds=0)
    assert not [cid for cid in rows if cid in pod["containers"].values() or cid == pod["id"]], rows
    # the raw count alone (children started a second after the first) would have called it a pileup
    late = [p for p in kids if hdharness.proc_stat_starttime(p) - min(map(hdharness.proc_stat_starttime, kids)) > 100]
    assert len(late) >= 3, late
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs, _runtime_tree, "
            "_node_doctor\n"
            "proc = _procfs.Proc('/proc'); t = _runtime_tree.ProcessTable.snapshot(proc)\n"
            "print(len(_node_doctor.exec_pileup_children(t, %d)))\n") % (collections_path(), shim)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip() == "0", out


# ---- a slow but answering status call is not a hang --------------------------------------

def test_cri_decoy_slow_but_answering_shim_is_not_hung(cri, cri_release, undo):
    """The pod's shim answers its task call after about three seconds (stopped,
    then resumed while the call waits): slow is not hung, no diagnosis."""
    pod = cri.run_pod("tri-slow", namespace="shop")
    undo["pods"].append(pod)
    app = pod["containers"]["app"]
    shim = cri.shim_of(pod["id"])
    os.kill(shim, signal.SIGSTOP)
    undo["stopped"].append(shim)

    sock = (cri.ctd / "state" / TASK_DIR / "k8s.io" / pod["id"] / "address").read_text().strip()[len("unix://"):]

    def pending_connections():
        # a connection the stopped shim has not accepted yet: its socket path, state 02 (connecting)
        with open("/proc/net/unix") as f:
            return [ln for ln in f if ln.rstrip().endswith(" " + sock) and ln.split()[5] == "02"]

    def resume_later():
        try:
            wait_for(pending_connections, 120, "the module's call to the shim")
            time.sleep(3.0)
        finally:
            os.kill(shim, signal.SIGCONT)
    timer = threading.Thread(target=resume_later)
    timer.start()
    res, dummy = run_module("hung_container_info", {"engines": ["containerd"], "timeout": 30}, env=cri_env(cri))
    timer.join()
    entry = next(x for x in res["containers"] if x["id"] == app)
    # the call really waited for the stopped shim, and it answered
    assert entry["responsive"] is True and entry["latency_ms"] >= 500, entry
    assert "diagnosis" not in entry and app not in res["hung"], entry
