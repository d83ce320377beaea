"""Unit tests of the triage's readers and classifiers on synthetic /proc trees
(the real causes are reproduced in tests/integration/test_triage.py)."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _runtime_tree as tree
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _triage

ROOT = Path(__file__).resolve().parents[4]
CID = "c" * 64
OTHER = "d" * 64


class FakeProc(object):
    """A procfs tree in a folder: enough of stat, status, comm, wchan,
    syscall, cgroup, cmdline and fd/ for the triage."""

    def __init__(self, root):
        self.root = Path(root)
        (self.root / "self").mkdir(parents=True)
        (self.root / "self" / "stat").write_text("1 (x) S 0\n")
        (self.root / "stat").write_text("cpu 0\nbtime %d\n" % (int(time.time()) - 1000))
        (self.root / "sys" / "kernel").mkdir(parents=True)
        (self.root / "sys" / "kernel" / "arch").write_text("x86_64\n")

    def add(self, pid, comm, ppid, state="S", wchan="0", syscall="202 0x0 0x0 0x0 0x0 0x0 0x0 0x0 0x0",
            cgroup=None, start=100, argv=None, fds=None, ctxt=5):
        d = self.root / str(pid)
        (d / "fd").mkdir(parents=True)
        (d / "fdinfo").mkdir()
        rest = [state, ppid, pid, pid, 0, -1, 0, 0, 0, 0, 0, 7, 3, 0, 0, 20, 0, 1, 0, start] + [0] * 20
        (d / "stat").write_text("%d (%s) %s\n" % (pid, comm, " ".join(str(x) for x in rest)))
        (d / "status").write_text("Name:\t%s\nState:\t%s\nPPid:\t%d\nvoluntary_ctxt_switches:\t%d\n" % (comm, state, ppid, ctxt))
        (d / "comm").write_text(comm + "\n")
        (d / "wchan").write_text(wchan)
        (d / "syscall").write_text(syscall + "\n")
        (d / "cgroup").write_text("" if cgroup is None else
                                  "12:freezer:/docker/%s\n11:pids:/docker/%s\n0::/\n" % (cgroup, cgroup))
        (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in (argv or [comm])) + b"\0")
        for fd, target in (fds or {}).items():
            os.symlink(target, str(d / "fd" / str(fd)))
            (d / "fdinfo" / str(fd)).write_text("pos:\t0\nflags:\t0100000\n")
        return pid

    def proc(self):
        return _procfs.Proc(str(self.root))


def shim_argv(cid):
    return ["/usr/bin/containerd-shim-runc-v2", "-namespace", "moby", "-id", cid, "-address", "/run/c.sock"]


@pytest.fixture
def fake(tmp_path):
    f = FakeProc(tmp_path / "proc")
    f.add(50, "dockerd", 1)
    f.add(100, "containerd-shim", 1, argv=shim_argv(CID))
    f.add(101, "sleep", 100, cgroup=CID)
    return f


def run(fake, cid=CID, engine=None, stuck=(), **settings):
    proc = fake.proc()
    table = tree.ProcessTable.snapshot(proc)
    settings.setdefault("confirm_interval", 0.0)
    return _triage.diagnose(proc, table, [cid], engine_report=engine, stuck_execs=list(stuck),
                            settings=_triage.Settings(**settings))[cid]


def engine(responsive=True, state="running", reachable=True, cid=CID):
    return {"engines": [{"name": "docker", "checked": True, "reachable": reachable}],
            "containers": [{"id": cid, "engine": "docker", "state": state, "responsive": responsive,
                            "error": None if responsive else "inspect did not answer within 2.0s", "latency_ms": 2000}]}


def test_cause_table_is_complete_and_documented():
    assert _triage.CAUSE_IDS == ("pipe_full_init", "frozen_cgroup", "exec_fifo_wait", "uninterruptible_io",
                                 "stdio_stall", "shim_unresponsive", "engine_lock", "exec_pileup", "unknown")
    for cid, what, proof, action in _triage.CAUSES:
        assert what and proof and action
        assert (ROOT / "docs" / "causes" / ("%s.md" % cid)).is_file()
        assert "### Cause %s" % cid in (ROOT / "docs" / "runbook.md").read_text()


def test_cause_pages_are_what_the_table_writes():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_cause_docs.py"), "--check"], capture_output=True,
                       text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("path,cid", [
    ("/docker/" + CID, CID),
    ("/system.slice/docker-%s.scope" % CID, CID),
    ("/kubepods/burstable/pod1/" + CID, CID),
    ("/kubepods.slice/kubepods-pod1.slice/cri-containerd-%s.scope" % CID, CID),
    ("/", None),
    ("/docker/" + CID[:12], None),
    ("/docker/%sx" % CID, None),
])
def test_container_id_in_a_cgroup_path(path, cid):
    assert _triage._id_in_path(path) == cid
    assert _triage.in_container({"pids": path}, CID) is (cid is not None)


def test_cgroups_of_v1_and_v2_lines(fake):
    cg = _triage.cgroups(fake.proc(), 101)
    assert cg["freezer"] == "/docker/" + CID and cg[""] == "/"
    assert _triage.cgroups(fake.proc(), 999) == {}


def test_syscall_names_by_architecture():
    assert _triage.syscall_name(1, "x86_64") == "write" and _triage.syscall_name(257, "x86_64") == "openat"
    assert _triage.syscall_name(64, "aarch64") == "write" and _triage.syscall_name(56, "arm64") == "openat"
    assert _triage.syscall_name(99999, "x86_64") is None


@pytest.mark.parametrize("kw", [dict(pileup_min_count=0), dict(stale_exec_min_age_seconds=-1),
                                dict(confirm_interval=-1)])
def test_settings_refuse_bad_values(kw):
    with pytest.raises(_triage.TriageError):
        _triage.Settings(**kw)


def test_a_healthy_tree_has_nothing_suspicious(fake):
    table = tree.ProcessTable.snapshot(fake.proc())
    assert _triage.suspicious(table) == []


def test_suspicious_finds_d_state_stopped_shim_unstarted_init_and_piles(fake):
    fake.add(102, "cat", 101, state="D", cgroup=CID)
    fake.add(200, "containerd-shim", 1, state="T", argv=shim_argv(OTHER))
    fake.add(201, "sleep", 200, cgroup=OTHER)
    fake.add(300, "containerd-shim", 1)
    fake.add(301, "runc:[2:INIT]", 300)
    fake.add(400, "containerd-shim", 1)
    for pid, start in ((401, 100), (402, 500), (403, 600), (404, 700)):
        fake.add(pid, "sleep", 400, start=start)
    fake.add(500, "cat", 1, state="D")  # not under a shim: not a container's
    table = tree.ProcessTable.snapshot(fake.proc())
    assert _triage.suspicious(table) == [102, 200, 301, 400]
    assert _triage.suspicious(table, pileup_min_count=4) == [102, 200, 301]
    assert _triage.suspect_containers(fake.proc(), table, [102, 200]) == [CID, OTHER]


def test_a_cri_pod_of_many_containers_is_no_pileup_but_its_execs_are(fake):
    """Under CRI the pod's one shim is the parent of the sandbox's and every
    container's init, each in its own cgroup: execs are counted per cgroup."""
    fake.add(600, "containerd-shim", 1, argv=shim_argv("e" * 64))
    for pid, start, cg in ((601, 100, "e" * 64), (602, 300, "1" * 64), (603, 400, "2" * 64), (604, 500, "3" * 64),
                           (605, 600, "4" * 64)):
        fake.add(pid, "sleep", 600, start=start, cgroup=cg)
    table = tree.ProcessTable.snapshot(fake.proc())
    assert tree.late_children(table, 600) == []
    assert _triage.suspicious(table) == []
    for pid, start in ((606, 900), (607, 950), (608, 990)):
        fake.add(pid, "sleep", 600, start=start, cgroup="2" * 64)
    table = tree.ProcessTable.snapshot(fake.proc())
    assert tree.late_children(table, 600) == [606, 607, 608]
    assert _triage.suspicious(table) == [600]


def test_a_stopped_shim_is_shim_unresponsive(fake):
    (fake.root / "100" / "stat").write_text((fake.root / "100" / "stat").read_text().replace(" S ", " T ", 1))
    d = run(fake, engine=engine())
    assert d["causes"] == ["shim_unresponsive"]
    assert d["evidence"]["shim_unresponsive"] == {"pid": 100, "state": "T", "runc_children": [], "bundle": None}
    assert [x["role"] for x in d["chain"]][:2] == ["engine", "shim"]
    assert d["done"] is None and "never kill the shim" in d["action"]


def test_d_state_twice_is_uninterruptible_io_and_once_is_not(fake):
    fake.add(102, "cat", 101, state="D", wchan="request_wait_answer", cgroup=CID,
             syscall="257 0xffffff9c 0x1 0x0 0x0 0x0 0x0 0x0 0x0")
    d = run(fake, engine=engine())
    assert d["causes"] == ["uninterruptible_io"]
    (p,) = d["evidence"]["uninterruptible_io"]["processes"]
    assert p["pid"] == 102 and p["wchan"] == "request_wait_answer" and p["syscall"] == "openat"


def test_frozen_by_wchan_without_the_engine_pausing_is_frozen_cgroup(fake):
    fake.add(102, "sh", 101, state="D", wchan="__refrigerator", cgroup=CID)
    d = run(fake, engine=engine())
    assert d["causes"] == ["frozen_cgroup"], d
    assert d["evidence"]["frozen_cgroup"]["engine_paused"] is False
    assert d["evidence"]["frozen_cgroup"]["frozen_pids"] == [102]


def test_a_container_the_engine_paused_is_not_frozen_cgroup(fake):
    fake.add(102, "sh", 101, state="D", wchan="__refrigerator", cgroup=CID)
    d = run(fake, engine=engine(state="paused"))
    assert "frozen_cgroup" not in d["causes"] and "uninterruptible_io" not in d["causes"], d
    assert d["evidence"]["engine_paused"]["engine_paused"] is True
    # and thaw refuses it
    forced = _triage.act(fake.proc(), dict(d, causes=["frozen_cgroup"]), thaw=True)
    assert forced["done"] == "not thawed: the engine reports the container paused", forced["done"]


def test_thaw_refuses_when_the_engine_did_not_say(fake):
    fake.add(102, "sh", 101, state="D", wchan="__refrigerator", cgroup=CID)
    d = run(fake)
    assert d["causes"] == ["frozen_cgroup"] and d["evidence"]["frozen_cgroup"]["engine_paused"] is None
    _triage.act(fake.proc(), d, thaw=True)
    assert d["done"].startswith("not thawed: the engine did not say"), d["done"]


def test_runc_init_opening_a_fifo_under_the_shim_is_exec_fifo_wait(fake):
    fake.add(103, "runc:[2:INIT]", 100, wchan="wait_for_partner", cgroup=CID,
             syscall="257 0xffffff9c 0x1 0x0 0x0 0x0 0x0 0x0 0x0")
    fake.add(104, "runc", 100)
    d = run(fake, engine=engine(responsive=False))
    assert d["causes"] == ["exec_fifo_wait", "engine_lock"], d
    link = next(x for x in d["chain"] if x["pid"] == 103)
    assert link["role"] == "runc_init" and link["blocking_fd"]["kind"] == "fifo"
    assert [h["pid"] for h in d["evidence"]["engine_lock"]["holder"]] == [103, 104]


def test_an_answering_engine_is_no_engine_lock_and_nothing_proven_is_unknown(fake):
    assert run(fake, engine=engine())["causes"] == ["unknown"]
    d = run(fake, engine=engine(responsive=False, reachable=False))
    assert d["causes"] == ["unknown"], "an engine that does not answer at all holds no container lock we can name"
    assert d["evidence"]["unknown"]["shim_found"] is True


def test_stale_execs_make_a_pileup_and_reap_spares_the_init(fake):
    for pid in (110, 111, 112):
        fake.add(pid, "sleep", 100, cgroup=CID, start=200)
    d = run(fake, engine=engine(), stale_exec_min_age_seconds=0, pileup_min_count=3)
    assert d["causes"] == ["exec_pileup"]
    assert sorted(p["pid"] for p in d["evidence"]["exec_pileup"]["processes"]) == [110, 111, 112]
    assert 101 not in [p["pid"] for p in d["evidence"]["exec_pileup"]["processes"]]
    assert run(fake, engine=engine(), stale_exec_min_age_seconds=0, pileup_min_count=4)["causes"] == ["unknown"]
    assert run(fake, engine=engine(), stale_exec_min_age_seconds=1e9)["causes"] == ["unknown"]


def test_reap_refuses_a_process_whose_start_time_changed(fake):
    for pid in (110, 111, 112):
        fake.add(pid, "sleep", 100, cgroup=CID, start=200)
    d = run(fake, engine=engine(), stale_exec_min_age_seconds=0)
    for x in d["_stale"]:
        x["start_time"] += 1  # the pid was reused since
    _triage.act(fake.proc(), d, reap=True)
    assert d["done"].startswith("reaped nothing, left [110, 111, 112]"), d["done"]


def test_pipe_full_init_comes_from_the_confirmed_stuck_exec(fake):
    rec = {"container_id": CID, "writer": {"role": "runc_init", "pid": 103, "wchan": "pipe_write", "syscall": "write"},
           "shim": {"pid": 100}, "pipe": {"inode": 7, "queued": 65536, "capacity": 65536}, "readers": [{"pid": 100}]}
    d = run(fake, engine=engine(responsive=False), stuck=[rec])
    assert d["causes"] == ["pipe_full_init", "engine_lock"]
    assert d["evidence"]["pipe_full_init"]["pipe"]["queued"] == 65536


def test_public_diagnosis_has_exactly_the_contract_keys(fake):
    d = _triage.public(run(fake, engine=engine(responsive=False)))
    assert set(d) == {"causes", "chain", "evidence", "action", "done"}
    for link in d["chain"]:
        assert set(link) == {"role", "pid", "comm", "state", "wchan", "syscall", "age_seconds", "blocking_fd", "stack"}
    assert set(_triage.unknown("why")) == set(d)


def test_a_hostile_cgroup_path_is_not_read(fake, tmp_path):
    (fake.root / "101" / "cgroup").write_text("12:freezer:/../../etc\n")
    assert _triage._freezer_state(fake.proc(), _triage.cgroups(fake.proc(), 101)) == (None, None)


def test_the_engine_link_is_the_daemon_of_the_engine_asked_never_a_guess(fake):
    fake.add(60, "dockerd", 1, argv=["/usr/bin/dockerd", "-H", "unix:///tmp/h/d.sock", "--data-root", "/tmp/h/data"])
    rep = engine(responsive=False)
    rep["engines"][0]["address"] = "unix:///tmp/h/d.sock"
    assert [x["pid"] for x in run(fake, engine=rep)["chain"] if x["role"] == "engine"] == [60]
    rep["engines"][0]["address"] = "unix:///var/run/docker.sock"
    assert [x["pid"] for x in run(fake, engine=rep)["chain"] if x["role"] == "engine"] == [50]
    fake.add(61, "dockerd", 1)  # two daemons on the default socket: cannot tell
    assert [x for x in run(fake, engine=rep)["chain"] if x["role"] == "engine"] == []


def test_the_healthy_path_gate_loads_the_triage_only_for_unusual_tables(fake):
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _node_doctor
    table = tree.ProcessTable.snapshot(fake.proc())
    assert _node_doctor._unusual(table, 3) is False
    for pid, start in ((110, 300), (111, 300)):
        fake.add(pid, "sleep", 100, cgroup=CID, start=start)
    assert _node_doctor._unusual(tree.ProcessTable.snapshot(fake.proc()), 3) is False
    fake.add(112, "sleep", 100, cgroup=CID, start=300)
    assert _node_doctor._unusual(tree.ProcessTable.snapshot(fake.proc()), 3) is True  # three execs after the init
    assert _node_doctor._unusual(tree.ProcessTable.snapshot(fake.proc()), 4) is False
    fake.add(120, "cat", 101, state="D", cgroup=CID)
    assert _node_doctor._unusual(tree.ProcessTable.snapshot(fake.proc()), 4) is True


# ---- shim v1: its bundle under containerd's state folder holds shim.pid -----------

def v1_shim_argv(cid):
    return ["containerd-shim", "-namespace", "moby", "-workdir",
            "/var/lib/containerd/io.containerd.runtime.v1.linux/moby/" + cid, "-address", "/run/containerd/c.sock",
            "-containerd-binary", "/usr/bin/containerd", "-runtime-root", "/var/run/docker/runtime-runc"]


def bundle_of(tmp_path, layout, cid, pid_text):
    folder = {"v1": "io.containerd.runtime.v1.linux", "v2": "io.containerd.runtime.v2.task"}[layout]
    d = tmp_path / "state" / folder / "moby" / cid
    d.mkdir(parents=True)
    (d / ("shim.pid" if layout == "v1" else "init.pid")).write_text(pid_text)
    return d


def stopped_v1(tmp_path, shim_pid_text="100", argv=None):
    f = FakeProc(tmp_path / "proc")
    f.add(50, "dockerd", 1)
    f.add(100, "containerd-shim", 1, state="T", argv=v1_shim_argv(CID) if argv is None else argv)
    f.add(101, "sleep", 100, cgroup=CID)
    os.symlink(str(bundle_of(tmp_path, "v1", CID, shim_pid_text)), str(f.root / "100" / "cwd"))
    return f


def test_a_stopped_v1_shim_is_proven_by_the_shim_pid_of_its_bundle(tmp_path):
    d = run(stopped_v1(tmp_path), engine=engine())
    assert d["causes"] == ["shim_unresponsive"], d
    ev = d["evidence"]["shim_unresponsive"]
    assert ev["pid"] == 100 and ev["state"] == "T"
    assert ev["bundle"] == {"layout": "v1", "bundle": str(tmp_path / "state" / "io.containerd.runtime.v1.linux" / "moby" / CID),
                            "id": CID, "pid_file": "shim.pid", "recorded_pid": 100, "agrees": True}, ev


def test_a_shim_pid_naming_another_process_says_so(tmp_path):
    ev = run(stopped_v1(tmp_path, shim_pid_text="4321\n"), engine=engine())["evidence"]["shim_unresponsive"]
    assert ev["bundle"]["recorded_pid"] == 4321 and ev["bundle"]["agrees"] is False, ev
    ev = run(stopped_v1(tmp_path / "b", shim_pid_text="not a pid"),
             engine=engine())["evidence"]["shim_unresponsive"]
    assert ev["bundle"]["recorded_pid"] is None and ev["bundle"]["agrees"] is None, ev


def test_a_planted_shim_pid_symlink_is_not_followed(tmp_path):
    f = stopped_v1(tmp_path)
    pid_file = tmp_path / "state" / "io.containerd.runtime.v1.linux" / "moby" / CID / "shim.pid"
    pid_file.unlink()
    (tmp_path / "elsewhere").write_text("100")
    os.symlink(str(tmp_path / "elsewhere"), str(pid_file))
    ev = run(f, engine=engine())["evidence"]["shim_unresponsive"]
    assert ev["bundle"]["layout"] == "v1" and ev["bundle"]["agrees"] is None, ev


def test_a_v2_bundle_agrees_when_init_pid_is_a_child_of_the_shim(tmp_path):
    f = FakeProc(tmp_path / "proc")
    f.add(100, "containerd-shim", 1, state="T", argv=shim_argv(CID))
    f.add(101, "sleep", 100, cgroup=CID)
    os.symlink(str(bundle_of(tmp_path, "v2", CID, "101")), str(f.root / "100" / "cwd"))
    ev = run(f)["evidence"]["shim_unresponsive"]
    assert (ev["bundle"]["layout"], ev["bundle"]["pid_file"], ev["bundle"]["recorded_pid"], ev["bundle"]["agrees"]) \
        == ("v2", "init.pid", 101, True), ev


def test_a_v1_shim_whose_argv_cannot_be_read_is_found_by_its_bundle(tmp_path):
    """No argv, and no process of the container under it to find it by cgroup
    (a created container): the bundle it works in, with shim.pid naming it."""
    f = FakeProc(tmp_path / "proc")
    f.add(100, "containerd-shim", 1, state="T", argv=[])
    (f.root / "100" / "cmdline").write_bytes(b"")
    os.symlink(str(bundle_of(tmp_path, "v1", CID, "100")), str(f.root / "100" / "cwd"))
    d = run(f)
    assert [x["pid"] for x in d["chain"] if x["role"] == "shim"] == [100], d
    assert d["causes"] == ["shim_unresponsive"] and d["evidence"]["shim_unresponsive"]["bundle"]["agrees"] is True
    # another container's bundle, or a bundle whose shim.pid names another process: not this container's shim
    assert [x for x in run(f, cid=OTHER)["chain"] if x["role"] == "shim"] == []
    (tmp_path / "state" / "io.containerd.runtime.v1.linux" / "moby" / CID / "shim.pid").write_text("999")
    assert [x for x in run(f)["chain"] if x["role"] == "shim"] == []
