"""Goroutine stacks of the real daemons on a hung container's chain
(module_utils/_stack_capture.py through node_doctor's capture_stacks).

The pipe deadlock holds a container in the harness, with a docker inspect and
a docker stats of it pending; node_doctor then signals dockerd, containerd and
the container's v2 shim (they catch SIGUSR1), keeps what each wrote as 0600
evidence and fingerprints the blocking chain.  A process that does not catch
SIGUSR1 is never signalled, even when it passes every other identity check."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import hdharness
from conftest import collections_path, run_module
from test_runc_pipe_drain import assert_stuck, evidence_body, new_container

sys.path.insert(0, collections_path())
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _options, _procfs, _stack_capture  # noqa: E402

LOCK = "dockerd: ContainerInspect waits for the container lock held by ContainerExecStart -> containerd Exec"
SIGUSR1_BIT = 1 << (signal.SIGUSR1 - 1)


def sigcgt(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("SigCgt:"):
                return int(line.split()[1], 16)
    raise AssertionError("no SigCgt for %d" % pid)


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def shim_of(pid):
    """The containerd shim above runc init PID (its ancestors, nearest first)."""
    while pid > 1:
        pid = hdharness.proc_ppid(pid)
        if (hdharness.proc_comm(pid) or "").startswith("containerd-shim"):
            return pid
    raise AssertionError("no shim above the stuck exec")


def stacks_opts(harness, tmp_path, **over):
    args = {"docker_host": harness.docker_host, "containerd_address": str(harness.containerd_sock),
            "inspect_timeout": 2, "confirm_interval": 0.3, "metrics_dir": "",
            "evidence_dir": str(tmp_path / "evidence"), "lock_dir": str(tmp_path / "locks"),
            "capture_stacks": True, "stacks_timeout": 10}
    args.update(over)
    return args


def test_a_process_that_does_not_catch_sigusr1_is_never_signalled(tmp_path):
    """A real process named and installed like a shim (a root-owned copy of
    sleep called containerd-shim, root, host namespaces) that does not catch
    SIGUSR1: refused for that reason alone, and still alive.  A plain sleep
    is refused too."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "containerd-shim"
    shutil.copy(shutil.which("sleep"), str(fake))
    os.chmod(str(fake), 0o755)
    procs = [subprocess.Popen([str(fake), "300"]), subprocess.Popen(["sleep", "300"])]
    try:
        time.sleep(0.3)
        for p in procs:
            assert alive(p.pid) and not sigcgt(p.pid) & SIGUSR1_BIT
        opts = _options.STACKS.make(capture_stacks=True, stacks_min_interval=0)
        chain = [{"role": "shim", "pid": p.pid} for p in procs]
        out = _stack_capture.capture_for(chain, opts, str(tmp_path / "ev"), lock_dir=str(tmp_path / "locks"),
                                         proc=_procfs.Proc("/proc"))
        reasons = dict((r["pid"], r["reason"]) for r in out["refused"])
        assert reasons[procs[0].pid] == "does not catch SIGUSR1 (SigCgt): the signal would end it", out
        assert reasons[procs[1].pid].startswith("comm 'sleep' is not"), out
        assert out["signalled"] == [] and out["files"] == []
        time.sleep(0.5)
        for p in procs:
            assert p.poll() is None and alive(p.pid), "a process that does not catch SIGUSR1 was signalled"
        # nothing was even rate-limited or written: no target passed
        assert not (tmp_path / "locks").exists() and not (tmp_path / "ev").exists()
    finally:
        for p in procs:
            p.kill()
            p.wait()


def plant_evidence(tmp_path):
    """Four earlier goroutine-stack files (2 h, 3 h, 4 h and 40 days old) in a
    private evidence directory, and three old files that are not ours: a drain's
    evidence file, a file that only looks like ours, and a symlink named
    exactly like ours to a file outside.  Returns (planted, others)."""
    ev = tmp_path / "evidence"
    ev.mkdir(mode=0o700)
    now = time.time()
    planted = []
    for i, age in enumerate((2 * 3600, 3 * 3600, 4 * 3600, 40 * 86400)):
        t = _stack_capture.Target(pid=1000 + i, starttime=77, comm="dockerd", exe="/usr/bin/dockerd", kind="dockerd")
        name = _stack_capture._name(t, "file")
        name = name[:name.rindex("-") + 1] + _stack_capture._stamp(now - age) + ".log"
        (ev / name).write_bytes(b"g" * 1000)
        os.chmod(str(ev / name), 0o600)
        os.utime(str(ev / name), (now - age, now - age))
        planted.append(name)
    (tmp_path / "precious.log").write_text("not evidence")
    others = ["0123456789ab-1-2-20200101T000000.000000Z.log", "stacks-dockerd-notes.log",
              "stacks-shim-9-9-log-20200101T000000.000000Z.log"]
    (ev / others[0]).write_text("a drain's evidence")
    (ev / others[1]).write_text("looks like ours")
    os.symlink(str(tmp_path / "precious.log"), str(ev / others[2]))
    for n in others:
        os.utime(str(ev / n), (0, 0), follow_symlinks=False)
    return planted, others


def test_stacks_of_the_real_daemons_name_the_engine_lock(harness, release, tmp_path):
    cid = new_container(harness)
    exec_proc, pid = harness.hang(cid)
    assert_stuck(harness, cid, pid)
    shim = shim_of(pid)
    dockerd = int((harness.dkr / "d.pid").read_text())
    containerd = int((harness.ctd / "c.pid").read_text())
    for p in (dockerd, containerd, shim):
        assert sigcgt(p) & SIGUSR1_BIT, "harness daemon %d does not catch SIGUSR1" % p
    # earlier captures in the evidence directory, and files that are not ours to remove
    planted, others = plant_evidence(tmp_path)
    # the hang as users see it: inspect and stats of the container pending in dockerd
    pending = [harness.docker_bg("inspect", cid), harness.docker_bg("stats", "--no-stream", cid)]
    try:
        time.sleep(1.0)
        assert all(p.poll() is None for p in pending), "inspect/stats answered: no engine lock"
        res, dummy = run_module("node_doctor", stacks_opts(harness, tmp_path, container_ids=[cid],
                                                           stacks_retention_count=4))
        assert res["_status"] == "SUCCESS", res
        fact = res["ansible_facts"]["hangdoctor"]
        stacks = fact["stacks"]
        assert fact["hung"] == [cid]
        assert stacks["refused"] == [], stacks
        assert sorted(s["pid"] for s in stacks["signalled"]) == sorted([dockerd, containerd, shim]), \
            json.dumps(dict((k, v) for k, v in fact.items() if k not in ("stacks",)), default=str)[:6000]
        by_kind = dict((f["kind"], f) for f in stacks["files"])
        assert sorted(by_kind) == ["containerd", "dockerd", "shim"], stacks
        # dockerd's file under its exec root, containerd's stacks file, the shim's dump from containerd's log
        assert os.path.basename(by_kind["dockerd"]["source"]).startswith("goroutine-stacks-")
        assert by_kind["dockerd"]["source"].endswith(".log") and "/exec/" in by_kind["dockerd"]["source"]
        assert by_kind["containerd"]["source"].endswith("/tmp/containerd.%d.stacks.log" % containerd)
        assert by_kind["shim"]["source"].endswith("containerd.log")
        for f in stacks["files"]:
            st = os.stat(f["path"])
            assert st.st_mode & 0o777 == 0o600 and st.st_uid == 0
            dummy, body = evidence_body(f["path"])
            assert len(body) == f["bytes"] and hashlib.sha256(body).hexdigest() == f["sha256"]
            assert f["goroutines"] > 5 and f["format"] == "full"
        assert LOCK in stacks["fingerprints"], stacks["fingerprints"]
        # retention: this capture's 3 files and the newest earlier one are kept (stacks_retention_count 4),
        # the older captures go; what is not ours stays, a symlink and its target included
        assert stacks["retention"] == {"removed": 3, "removed_bytes": 3 * 1000}, stacks
        left = set(os.listdir(str(tmp_path / "evidence")))
        assert left == set(os.path.basename(f["path"]) for f in stacks["files"]) | {planted[0]} | set(others), left
        assert (tmp_path / "precious.log").read_text() == "not evidence"
        assert os.path.islink(str(tmp_path / "evidence" / others[2]))
        assert "containerd: Start -> shim Start" in stacks["fingerprints"]
        assert "shim: Start -> runc exec" in stacks["fingerprints"]
        (row,) = fact["containers"]
        assert row["diagnosis"]["evidence"]["stacks"]["fingerprints"] == stacks["fingerprints"]
        for p in (dockerd, containerd, shim):
            assert alive(p), "daemon %d died of SIGUSR1" % p
        assert_stuck(harness, cid, pid)  # capturing changed nothing

        # rate limit: a second run within stacks_min_interval signals nobody
        before = sorted(os.listdir(str(tmp_path / "evidence")))
        res, dummy = run_module("node_doctor", stacks_opts(harness, tmp_path, container_ids=[cid]))
        again = res["ansible_facts"]["hangdoctor"]["stacks"]
        assert again["signalled"] == [] and again["files"] == []
        assert again["refused"] and all(r["reason"].startswith("rate limited") for r in again["refused"]), again
        assert sorted(os.listdir(str(tmp_path / "evidence"))) == before
    finally:
        for p in pending:
            p.kill()
            p.wait()
        harness.release_all()
        try:
            os.unlink("/tmp/containerd.%d.stacks.log" % containerd)  # what the signal made containerd write
        except OSError:
            pass


def test_a_healthy_node_is_not_signalled(harness, tmp_path):
    cid = new_container(harness)
    assert harness.inspect_answers(cid, timeout=2.0)
    dumps = set(os.listdir(str(harness.dkr / "exec")))
    res, dummy = run_module("node_doctor", stacks_opts(harness, tmp_path, container_ids=[cid]))
    assert res["_status"] == "SUCCESS", res
    fact = res["ansible_facts"]["hangdoctor"]
    assert fact["hung"] == [] and "stacks" not in fact
    assert set(os.listdir(str(harness.dkr / "exec"))) == dumps
    assert not (tmp_path / "locks").exists() and not (tmp_path / "evidence").exists()
