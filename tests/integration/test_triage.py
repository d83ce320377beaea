"""Triage against the real runtime: every hung container gets its named causes,
its wait chain and its evidence.  Each test first proves the hang is real
(inspect does not answer, the process really sits where the cause says), then
asserts the exact causes named; decoys assert no false cause."""
import os
import signal
import stat
import subprocess
import time

import json
import shutil
from pathlib import Path
import sys

import pytest

import hdharness
from conftest import collections_path, read, row, run_module, wait_for
from test_runc_pipe_drain import assert_stuck, new_container


def opts(harness, tmp_path, **over):
    args = {"docker_host": harness.docker_host, "inspect_timeout": 2, "confirm_interval": 0.3,
            "metrics_dir": str(tmp_path / "metrics"), "evidence_dir": str(tmp_path / "evidence"),
            "drain_min_age_seconds": 0}
    (tmp_path / "metrics").mkdir(exist_ok=True)
    args.update(over)
    return args


def node_doctor(harness, tmp_path, cids, **over):
    res, dummy = run_module("node_doctor", opts(harness, tmp_path, container_ids=list(cids), **over))
    assert res["_status"] in ("SUCCESS", "CHANGED"), res
    rows = dict((r["container_id"], r) for r in res["ansible_facts"]["hangdoctor"]["containers"])
    return res, rows


def roles(diag):
    return [link["role"] for link in diag["chain"]]


def freezer_dir(cid):
    for line in open("/proc/%d/cgroup" % init_pid(cid)):
        dummy, ctl, path = line.strip().split(":", 2)
        if "freezer" in ctl.split(","):
            return "/sys/fs/cgroup/freezer" + path
    raise AssertionError("no freezer cgroup")


def init_pid(cid):
    out = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", cid], capture_output=True, text=True,
                         timeout=10, env=HARNESS_ENV[0], check=True).stdout.strip()
    return int(out)


HARNESS_ENV = [None]


@pytest.fixture(autouse=True)
def _env(harness):
    HARNESS_ENV[0] = dict(os.environ, **harness.env())
    yield


RULES = Path(__file__).resolve().parents[2] / "extras" / "prometheus" / "hangdoctor.rules.yml"


def alert_fires_on(prom_text, tmp_path, cid):
    """promtool's unit test of HangdoctorHangCause on the series of a metrics
    file node_doctor really wrote (as node_exporter would expose them)."""
    import yaml
    series = []
    for line in prom_text.splitlines():
        if line.startswith("hangdoctor_container_cause{"):
            labels = line[line.index("{") + 1:line.rindex("}")]
            series.append({"series": "hangdoctor_container_cause{%s,instance=\"n1\",job=\"node\"}" % labels,
                           "values": "1x10"})
    assert series, prom_text
    names = [s["series"] for s in series]
    causes = sorted(n.split('cause="')[1].split('"')[0] for n in names)
    (tmp_path / "hangdoctor.rules.yml").write_text(RULES.read_text())
    exp = [{"exp_labels": {"severity": "warning", "instance": "n1", "job": "node", "namespace": "", "pod": "",
                           "container": c.split('container="')[1].split('"')[0], "container_id": cid[:12], "cause": cause}}
           for c, cause in zip(sorted(names, key=lambda n: n.split('cause="')[1]), causes)]
    for e in exp:
        e["exp_labels"] = dict((k, v) for k, v in e["exp_labels"].items() if v != "")
        lab = e["exp_labels"]
        e["exp_annotations"] = {
            "summary": "Container of pod / hangs: %s on n1" % lab["cause"],
            "description": "hangdoctor named the cause %s for container %s (%s) of pod /. The runbook has a section per "
                           "cause: what proves it and what is safe to do." % (lab["cause"], lab["container"], cid[:12]),
            "runbook_url": "https://github.com/hangdoctor/hangdoctor.runtime/blob/main/docs/runbook.md#hangdoctorhangcause"}
    test = {"rule_files": ["hangdoctor.rules.yml"], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": series,
                       "alert_rule_test": [{"alertname": "HangdoctorHangCause", "eval_time": "6m", "exp_alerts": exp}]}]}
    (tmp_path / "t.yml").write_text(yaml.safe_dump(test))
    r = subprocess.run(["promtool", "test", "rules", "t.yml"], cwd=str(tmp_path), capture_output=True, text=True,
                       timeout=120, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    return causes


@pytest.mark.parametrize("layout", ["v2", "v1"])
def test_pipe_deadlock_is_pipe_full_init_and_engine_lock(harness, release, tmp_path, layout):
    cid = new_container(harness, layout=layout)
    exec_proc, pid = harness.hang(cid)
    assert_stuck(harness, cid, pid)

    res, rows = node_doctor(harness, tmp_path, [cid])
    diag = row(res, rows, cid)["diagnosis"]
    # on failure: the container's row (the inspect's answer, latency, error) and the engines
    assert diag["causes"] == ["pipe_full_init", "engine_lock"], (rows[cid], res["ansible_facts"]["hangdoctor"]["engines"])
    assert diag["done"] is None
    assert roles(diag)[:2] == ["engine", "shim"] and "runc_init" in roles(diag), roles(diag)
    init = next(link for link in diag["chain"] if link["role"] == "runc_init")
    assert init["pid"] == pid and init["syscall"] in ("write", "writev")
    assert init["blocking_fd"]["fd"] == 2 and init["blocking_fd"]["kind"] == "pipe"
    assert any(p["comm"].startswith("containerd-shim") for p in init["blocking_fd"]["peers"]), init
    assert diag["evidence"]["pipe_full_init"]["writer"]["pid"] == pid
    holder = diag["evidence"]["engine_lock"]["holder"]
    assert any(h["pid"] == pid for h in holder), holder
    assert "drain" in diag["action"]
    # the metrics carry the causes, and the alert fires on what was really written
    prom = (tmp_path / "metrics" / "hangdoctor.prom").read_text()
    assert 'cause="pipe_full_init"} 1' in prom.split("hangdoctor_hung_container{", 1)[1].splitlines()[0], prom
    if shutil.which("promtool"):
        assert alert_fires_on(prom, tmp_path, cid) == ["engine_lock", "pipe_full_init"]

    # runc_exec_info gives the same diagnosis for the stuck exec it proves
    res, dummy = run_module("runc_exec_info", {"container_ids": [cid], "confirm_interval": 0.3})
    (rec,) = res["stuck_execs"]
    assert rec["diagnosis"]["causes"][0] == "pipe_full_init", rec["diagnosis"]

    # hung_container_info names the causes of the container it finds hung
    res, dummy = run_module("hung_container_info", {"docker_host": harness.docker_host, "inspect_timeout": 2})
    (entry,) = [c for c in res["containers"] if c["id"] == cid]
    assert entry["responsive"] is False
    assert entry["diagnosis"]["causes"] == ["pipe_full_init", "engine_lock"], entry["diagnosis"]


def test_healthy_containers_get_no_diagnosis(harness, release, tmp_path):
    cid = new_container(harness)
    assert harness.inspect_answers(cid, timeout=3.0)
    res, rows = node_doctor(harness, tmp_path, [cid])
    assert cid not in rows and rows == {}, rows


# ---- helpers for the other causes --------------------------------------------

def docker(*args, timeout=30):
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, env=HARNESS_ENV[0],
                          check=True).stdout.strip()


def shim_of(cid):
    pid = init_pid(cid)
    shim = hdharness.proc_ppid(pid)
    assert hdharness.proc_comm(shim).startswith("containerd-shim"), hdharness.proc_comm(shim)
    return shim


def runtime(layout):
    """The --runtime of a container of LAYOUT: the fault runtime under shim v2,
    shim v1 (containerd-shim, which finds the fault runtime as "runc" in PATH)."""
    return hdharness.FAULT_RUNTIME if layout == "v2" else hdharness.V1_RUNTIME


def shim_exe(pid):
    """The executable's name of shim PID (both shims' comm is "containerd-shim": 15 characters)."""
    return os.path.basename(os.readlink("/proc/%d/exe" % pid))


def assert_layout(cid, layout):
    """The container really runs under the shim of LAYOUT (v1: containerd-shim;
    v2: containerd-shim-runc-v2)."""
    exe = shim_exe(shim_of(cid))
    assert exe == ("containerd-shim" if layout == "v1" else "containerd-shim-runc-v2"), (layout, exe)


TRIAGE = r"""
import json, sys
sys.path.insert(0, %(coll)r)
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs, _runtime_tree, _triage
proc = _procfs.Proc('/proc')
table = _runtime_tree.ProcessTable.snapshot(proc)
d = _triage.diagnose(proc, table, [%(cid)r], settings=_triage.Settings(confirm_interval=0.5))
print(json.dumps(_triage.public(d[%(cid)r])))
"""


def triage_direct(cid):
    """The diagnosis of CID asked directly (a container no engine or scan flags)."""
    out = subprocess.run([sys.executable, "-c", TRIAGE % {"coll": collections_path(), "cid": cid}],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return json.loads(out)


@pytest.fixture
def stopped():
    """Processes a test stopped are resumed, frozen cgroups thawed, even when it fails."""
    pids, freezers = [], []
    yield pids, freezers
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    for path in freezers:
        try:
            with open(path, "w") as f:
                f.write("THAWED")
        except OSError:
            pass


@pytest.mark.parametrize("layout", ["v2", "v1"])
def test_frozen_cgroup_is_named_and_thawed_only_when_asked(harness, release, tmp_path, stopped, layout):
    cid = new_container(harness, layout=layout)
    assert_layout(cid, layout)
    pid = init_pid(cid)
    state = freezer_dir(cid) + "/freezer.state"
    stopped[1].append(state)
    with open(state, "w") as f:
        f.write("FROZEN")
    wait_for(lambda: read(state) == "FROZEN", 10, "the freezer")
    # the hang is real: the container's init is frozen (a freezable sleep is frozen in place: state D, the
    # wchan where it slept; a task that wakes meets the refrigerator), and docker top, which asks runc, hangs
    wait_for(lambda: hdharness.proc_state(pid) == "D", 10, "the init to freeze")

    res, rows = node_doctor(harness, tmp_path, [cid])
    diag = row(res, rows, cid)["diagnosis"]
    assert diag["causes"] == ["frozen_cgroup"], diag
    ev = diag["evidence"]["frozen_cgroup"]
    assert ev["freezer_state"] == "FROZEN" and ev["engine_paused"] is False, ev
    assert ev["freezer_file"].endswith("/%s/freezer.state" % cid), ev
    assert pid in ev["frozen_pids"], ev
    assert read(state) == "FROZEN", "detect must not thaw"

    # thaw only when asked
    res, rows = node_doctor(harness, tmp_path, [cid], mode="remediate", require_guard="never")
    assert read(state) == "FROZEN" and row(res, rows, cid)["diagnosis"]["done"] is None
    res, rows = node_doctor(harness, tmp_path, [cid], mode="remediate", require_guard="never", thaw=True)
    assert row(res, rows, cid)["diagnosis"]["done"].startswith("thawed"), rows[cid]["diagnosis"]
    wait_for(lambda: read(state) == "THAWED", 10, "the thaw")


@pytest.mark.parametrize("layout", ["v2", "v1"])
def test_decoy_engine_paused_container_is_not_frozen_cgroup(harness, release, tmp_path, stopped, layout):
    cid = new_container(harness, layout=layout)
    state = freezer_dir(cid) + "/freezer.state"
    docker("pause", cid)
    stopped[1].append(state)
    wait_for(lambda: read(state) == "FROZEN", 10, "docker pause")
    try:
        res, rows = node_doctor(harness, tmp_path, [cid], mode="remediate", require_guard="never", thaw=True)
        assert cid not in rows or "frozen_cgroup" not in rows[cid]["diagnosis"]["causes"], rows
        assert read(state) == "FROZEN", "a container the engine paused must never be thawed"
        res, dummy = run_module("hung_container_info", {"docker_host": harness.docker_host, "inspect_timeout": 2})
        (entry,) = [c for c in res["containers"] if c["id"] == cid]
        assert entry["state"] == "paused" and entry["responsive"] is True and "diagnosis" not in entry, entry
    finally:
        docker("unpause", cid)


@pytest.mark.parametrize("layout", ["v2", "v1"])
def test_stopped_shim_is_shim_unresponsive(harness, release, tmp_path, stopped, layout):
    cid = new_container(harness, layout=layout)
    assert_layout(cid, layout)
    shim = shim_of(cid)
    init = init_pid(cid)
    os.kill(shim, signal.SIGSTOP)
    stopped[0].append(shim)
    wait_for(lambda: hdharness.proc_state(shim) == "T", 10, "the shim to stop")
    res, rows = node_doctor(harness, tmp_path, [cid])
    diag = row(res, rows, cid)["diagnosis"]
    assert diag["causes"] == ["shim_unresponsive"], diag
    assert diag["evidence"]["shim_unresponsive"]["pid"] == shim
    # containerd's own record names the stopped process as the container's shim: v1's bundle (the shim's
    # working directory under containerd's state folder) holds shim.pid, v2's init.pid (a child of the shim)
    bundle = diag["evidence"]["shim_unresponsive"]["bundle"]
    folder = "io.containerd.runtime.v1.linux" if layout == "v1" else "io.containerd.runtime.v2.task"
    assert bundle["bundle"] == str(harness.ctd / "state" / folder / "moby" / cid), bundle
    assert bundle["layout"] == layout and bundle["id"] == cid and bundle["agrees"] is True, bundle
    assert bundle["pid_file"] == ("shim.pid" if layout == "v1" else "init.pid"), bundle
    assert bundle["recorded_pid"] == (shim if layout == "v1" else init), bundle
    assert hdharness.proc_state(shim) == "T", "the shim is left as it was"


LINE = "x" * 200


def descends_from(pid, ancestor):
    for dummy in range(32):
        pid = hdharness.proc_ppid(pid)
        if pid == ancestor:
            return True
        if not pid or pid <= 1:
            return False
    return False


def fd_targets(pid):
    out = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            out.add(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
        except OSError:
            pass
    return out


@pytest.mark.parametrize("layout", ["v2", "v1"])
def test_stdout_blocked_behind_a_stopped_shim_is_stdio_stall(harness, release, tmp_path, stopped, layout):
    # the writer starts after a pause, once the shim is stopped; 4 MB is far more than the pipe holds
    cmd = ("sh", "-c", "sleep 3; i=0; while [ $i -lt 20000 ]; do echo %s; i=$((i+1)); done; sleep 100000" % LINE)
    cid = harness.run_container("triage-stdio-%s-%d" % (layout, os.getpid()), layout=layout, cmd=cmd)
    assert_layout(cid, layout)
    shim = shim_of(cid)
    pid = init_pid(cid)
    os.kill(shim, signal.SIGSTOP)
    stopped[0].append(shim)
    # the hang is real: the container's process sits in write(2) on fd 1, the pipe full
    wait_for(lambda: hdharness.syscall_of(pid)[:2] in (["1", "0x1"], ["64", "0x1"]), 30, "the writer to block")
    queued, cap = hdharness.pipe_fill(pid, fd=1)
    assert queued > cap - 4096, (queued, cap)  # every page in use: a 201-byte line fits in none
    # what really blocks, on both layouts: fd 1 is a pipe (not dockerd's FIFO) whose only reader is the
    # stopped shim; the shim copies it into dockerd's init-stdout FIFO (v1 too: containerd-shim makes the
    # pipes and holds the FIFOs, dockerd reads them), so the copy loop that stopped is the shim's
    inode = hdharness.pipe_inode(pid, fd=1)
    assert inode is not None, os.readlink("/proc/%d/fd/1" % pid)
    readers = set(h for h, fd, flags in hdharness.pipe_holders(inode) if flags & os.O_ACCMODE == os.O_RDONLY)
    assert readers == {shim}, readers
    fifo = str(harness.dkr / "exec" / "containerd" / cid / "init-stdout")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert fifo in fd_targets(shim), "the shim does not hold the init-stdout FIFO"
    assert fifo in fd_targets(int((harness.dkr / "d.pid").read_text())), "dockerd does not read the FIFO"
    res, rows = node_doctor(harness, tmp_path, [cid])
    diag = row(res, rows, cid)["diagnosis"]
    assert diag["causes"] == ["stdio_stall", "shim_unresponsive"], diag
    (w,) = diag["evidence"]["stdio_stall"]["writers"]
    assert w["pid"] == pid and w["fd"] == 1 and w["queued"] == queued and w["inode"] == inode
    assert [r["pid"] for r in w["readers"]] == [shim], w
    link = next(x for x in diag["chain"] if x["pid"] == pid)
    assert link["role"] == "process" and link["blocking_fd"]["kind"] == "pipe", link
    assert diag["evidence"]["shim_unresponsive"]["pid"] == shim


@pytest.mark.parametrize("layout", ["v2", "v1"])
def test_decoy_progressing_writer_is_not_stdio_stall(harness, release, tmp_path, layout):
    cmd = ("sh", "-c", "i=0; while [ $i -lt 400000 ]; do echo %s; i=$((i+1)); done; sleep 100000" % LINE)
    cid = harness.run_container("triage-busy-%s-%d" % (layout, os.getpid()), layout=layout, cmd=cmd)
    pid = init_pid(cid)
    diag = triage_direct(cid)
    alive = hdharness.proc_state(pid)
    assert "stdio_stall" not in diag["causes"], diag
    res, rows = node_doctor(harness, tmp_path, [cid])
    assert cid not in rows, rows
    assert alive in ("R", "S", "D"), alive


@pytest.mark.parametrize("layout", ["v2", "v1"])
def test_stale_exec_pileup_is_named_and_reaped_only_when_asked(harness, release, tmp_path, layout):
    cid = new_container(harness, layout=layout)
    assert_layout(cid, layout)
    time.sleep(2)  # execs start well after the container's init
    for dummy in range(3):
        docker("exec", "-d", cid, "sleep", "100000")
    init = init_pid(cid)
    shim = shim_of(cid)
    execs = wait_for(lambda: [p for p in hdharness.pids() if hdharness.proc_ppid(p) == shim and p != init
                              and hdharness.proc_comm(p) == "sleep"] or None, 20, "the execs")
    wait_for(lambda: len([p for p in hdharness.pids() if hdharness.proc_ppid(p) == shim and p != init
                          and hdharness.proc_comm(p) == "sleep"]) == 3, 20, "three execs")
    time.sleep(5)
    res, rows = node_doctor(harness, tmp_path, [cid], stale_exec_min_age_seconds=5)
    diag = row(res, rows, cid)["diagnosis"]
    assert diag["causes"] == ["exec_pileup"], diag
    assert diag["evidence"]["exec_pileup"]["count"] == 3
    assert all(os.path.exists("/proc/%d" % p) for p in execs), "detect reaps nothing"

    res, rows = node_doctor(harness, tmp_path, [cid], stale_exec_min_age_seconds=5, mode="remediate",
                            require_guard="never", reap_stale_execs=True)
    assert row(res, rows, cid)["diagnosis"]["done"].startswith("reaped 3"), rows[cid]["diagnosis"]
    wait_for(lambda: not any(os.path.exists("/proc/%d" % p) for p in execs), 10, "the reap")
    assert hdharness.proc_state(init) in ("S", "R"), "the container's own process is left alone"
    assert harness.inspect_answers(cid, timeout=3.0)


@pytest.fixture
def fuse_server():
    procs = []
    yield procs
    for p in procs:
        p.kill()
        p.wait(timeout=10)


@pytest.mark.parametrize("layout", ["v2", "v1"])
def test_process_on_a_fuse_mount_that_never_answers_is_uninterruptible_io(harness, release, tmp_path, fuse_server,
                                                                          layout):
    cmd = ("sh", "-c", "mkdir -p /fuse; while [ ! -e /go ]; do sleep 0.1; done; cat /fuse/x; sleep 100000")
    cid = harness.run_container("triage-fuse-%s-%d" % (layout, os.getpid()), layout=layout, cmd=cmd)
    assert_layout(cid, layout)
    pid = init_pid(cid)
    server = subprocess.Popen([sys.executable, str(Path(hdharness.__file__).parent / "fuse_never.py"), str(pid),
                               "/fuse", "/go"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    fuse_server.append(server)
    assert server.stdout.readline().strip() == "mounted", server.stderr.read()
    # the hang is real: cat (a child of the container's sh) sits in D waiting for the file system
    cat = wait_for(lambda: [p for p in hdharness.pids() if hdharness.proc_ppid(p) == pid
                            and hdharness.proc_comm(p) == "cat" and hdharness.proc_state(p) == "D"], 20, "cat in D")
    time.sleep(1.0)
    assert hdharness.proc_state(cat[0]) == "D"

    res, rows = node_doctor(harness, tmp_path, [cid])
    diag = row(res, rows, cid)["diagnosis"]
    assert diag["causes"] == ["uninterruptible_io"], diag
    (p,) = diag["evidence"]["uninterruptible_io"]["processes"]
    assert p["pid"] == cat[0] and p["comm"] == "cat" and p["wchan"], p
    assert any("fuse" in frame for frame in p["stack"] or []), p
    assert "nothing is safe" in diag["action"]


def fifo_inits(cid):
    """The runc inits of CID waiting to open its exec.fifo (a start the fault runtime holds)."""
    return [p for p in hdharness.pids() if hdharness.proc_comm(p) == "runc:[2:INIT]"
            and hdharness.wchan_of(p) in ("fifo_open", "wait_for_partner")
            and cid in open("/proc/%d/cgroup" % p).read()]


@pytest.mark.parametrize("layout", ["v2", "v1"])
def test_runc_init_waiting_on_exec_fifo_is_exec_fifo_wait(harness, release, tmp_path, layout):
    name = "triage-fifo-%s-%d" % (layout, os.getpid())
    cid = docker("create", "--name", name, "--network", "none", "--runtime", runtime(layout),
                 hdharness.IMAGE, "sleep", "100000")
    harness.hold_start(cid)
    starter = harness.docker_bg("start", cid)
    try:
        # the hang is real: a runc init of the container waits opening exec.fifo under its shim
        init = wait_for(lambda: fifo_inits(cid), 30, "runc init on exec.fifo")
        assert not harness.inspect_answers(cid, timeout=1.0)
        shim = hdharness.proc_ppid(init[0])
        assert shim_exe(shim) == ("containerd-shim" if layout == "v1" else "containerd-shim-runc-v2"), shim

        # node_doctor asks the engine about running containers only: this one is "created"
        res, rows = node_doctor(harness, tmp_path, [cid])
        diag = row(res, rows, cid)["diagnosis"]
        assert diag["causes"] == ["exec_fifo_wait"], diag
        (ev,) = diag["evidence"]["exec_fifo_wait"]["runc_init"]
        assert ev["pid"] == init[0]
        link = next(x for x in diag["chain"] if x["pid"] == init[0])
        assert link["role"] == "runc_init" and link["blocking_fd"]["kind"] == "fifo", link
        assert any(x["role"] == "runc" and x["comm"] == "runc" for x in diag["chain"]), diag["chain"]

        # asked about every container, the engine does not answer for it: its start holds the lock
        res, dummy = run_module("hung_container_info", {"docker_host": harness.docker_host, "inspect_timeout": 2,
                                                        "include_stopped": True})
        (entry,) = [c for c in res["containers"] if c["id"] == cid]
        assert entry["responsive"] is False
        diag = entry["diagnosis"]
        assert diag["causes"] == ["exec_fifo_wait", "engine_lock"], diag
        holder = diag["evidence"]["engine_lock"]["holder"]
        assert any(h["role"] == "runc" for h in holder), holder
    finally:
        harness.release_start(cid)
        starter.wait(timeout=60)


@pytest.mark.parametrize("layout", ["v2", "v1"])
def test_decoy_slow_but_answering_inspect_is_not_engine_lock(harness, release, tmp_path, layout):
    """dockerd holds the container's lock for about a second (a slow start), and
    inspect answers within its deadline: slow is not hung, no engine_lock."""
    import threading
    name = "triage-slow-%s-%d" % (layout, os.getpid())
    cid = docker("create", "--name", name, "--network", "none", "--runtime", runtime(layout),
                 hdharness.IMAGE, "sleep", "100000")
    harness.hold_start(cid)
    starter = harness.docker_bg("start", cid)
    try:
        wait_for(lambda: fifo_inits(cid), 30, "the held start")

        # released 4 s after the module's own process started (ansible takes seconds to get there); the
        # module of this test only (a descendant of this process), not one another run on the machine started
        def release_later():
            # cmdline only of python processes: a stuck runc init's cmdline read never ends
            wait_for(lambda: any("AnsiballZ_hung_container_info" in " ".join(hdharness.proc_cmdline(p))
                                 for p in hdharness.pids() if (hdharness.proc_comm(p) or "").startswith("python")
                                 and descends_from(p, os.getpid())),
                     60, "the module")
            time.sleep(4.0)
            harness.release_start(cid)
        timer = threading.Thread(target=release_later)
        timer.start()
        res, dummy = run_module("hung_container_info", {"docker_host": harness.docker_host, "inspect_timeout": 30,
                                                        "include_stopped": True})
        timer.join()
        (entry,) = [c for c in res["containers"] if c["id"] == cid]
        # the inspect really waited for the lock, and answered
        assert entry["responsive"] is True and entry["latency_ms"] >= 500, entry
        assert "diagnosis" not in entry and cid not in res["hung"], entry
    finally:
        harness.release_start(cid)
        starter.wait(timeout=60)
