"""Goroutine stacks of a real containerd-shim v1 (containerd 1.6).

A v1 shim writes its SIGUSR1 dump to its stderr, a pipe that containerd
reads and passes through the FIFO ``<workdir>/shim.stderr.log``: without
``shim_debug`` into nothing, so the dump cannot be read without taking
containerd's bytes; the shim is not signalled and ``not_collected`` says
why.  With ``shim_debug = true`` containerd copies it into its own log: the
dump is collected from there like a v2 shim's."""
import hashlib
import os
import signal
import sys

import pytest

import hdharness
from conftest import collections_path, harness_up
from test_runc_pipe_drain import evidence_body, new_container

sys.path.insert(0, collections_path())
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _options, _procfs, _stack_capture  # noqa: E402

SIGUSR1_BIT = 1 << (signal.SIGUSR1 - 1)


def v1_shim(harness, cid):
    pid = int(harness.docker("inspect", "-f", "{{.State.Pid}}", cid, timeout=10, check=True).stdout)
    shim = hdharness.proc_ppid(pid)
    assert hdharness.proc_comm(shim) == "containerd-shim", hdharness.proc_comm(shim)
    assert os.path.basename(os.readlink("/proc/%d/exe" % shim)) == "containerd-shim"
    with open("/proc/%d/status" % shim) as f:
        sigcgt = int([x for x in f if x.startswith("SigCgt:")][0].split()[1], 16)
    assert sigcgt & SIGUSR1_BIT, "the v1 shim does not catch SIGUSR1"
    return shim


def start_time(pid):
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


def capture(shim, tmp_path):
    opts = _options.STACKS.make(capture_stacks=True, stacks_min_interval=0, stacks_timeout=10)
    return _stack_capture.capture_for([{"role": "shim", "pid": shim}], opts, str(tmp_path / "ev"),
                                      lock_dir=str(tmp_path / "locks"), proc=_procfs.Proc("/proc"))


def test_v1_shim_without_shim_debug_is_not_signalled_and_says_why(harness, tmp_path):
    cid = new_container(harness, layout="v1")
    shim = v1_shim(harness, cid)
    born = start_time(shim)
    # its stderr is a pipe its containerd reads (and, without shim_debug, passes into nothing)
    stderr = os.readlink("/proc/%d/fd/2" % shim)
    containerd = int((harness.ctd / "c.pid").read_text())
    assert stderr.startswith("pipe:[") and hdharness.proc_ppid(shim) == containerd, stderr
    assert stderr in [os.readlink("/proc/%d/fd/%s" % (containerd, fd)) for fd in os.listdir("/proc/%d/fd" % containerd)]
    assert "shim_debug = false" in (harness.ctd / "config.toml").read_text()
    log = harness.ctd / "containerd.log"
    size = log.stat().st_size
    out = capture(shim, tmp_path)
    assert out["signalled"] == [] and out["files"] == [] and out["refused"] == [], out
    (nc,) = out["not_collected"]
    assert nc["pid"] == shim and "containerd %d" % containerd in nc["reason"], nc
    assert "shim_debug is not true in %s" % (harness.ctd / "config.toml") in nc["reason"], nc
    assert "%s/shim.stderr.log" % cid in nc["reason"], nc
    assert "not signalled" in nc["reason"], nc
    assert start_time(shim) == born and hdharness.proc_state(shim) in ("S", "R")
    assert b"goroutine stack dump" not in log.read_bytes()[size:]


@pytest.fixture(scope="module")
def debug_harness():
    """A second harness whose containerd runs its v1 shims with shim_debug = true."""
    yield from harness_up(hdharness.Harness(shim_debug=True))


def test_v1_shim_with_shim_debug_dump_is_collected_from_containerds_log(debug_harness, tmp_path):
    harness = debug_harness
    cid = harness.run_container("v1-stacks-%d" % os.getpid(), layout="v1")
    shim = v1_shim(harness, cid)
    born = start_time(shim)
    # with shim_debug the shim's stderr is a pipe that its containerd reads and copies into its log
    assert os.readlink("/proc/%d/fd/2" % shim).startswith("pipe:[")
    containerd = int((harness.ctd / "c.pid").read_text())
    assert hdharness.proc_ppid(shim) == containerd
    out = capture(shim, tmp_path)
    assert out["not_collected"] == [] and out["refused"] == [], out
    assert [s["pid"] for s in out["signalled"]] == [shim]
    (f,) = out["files"]
    assert f["kind"] == "shim" and f["pid"] == shim and f["source"].endswith(str(harness.ctd / "containerd.log")), f
    st = os.stat(f["path"])
    assert st.st_mode & 0o777 == 0o600 and st.st_uid == 0
    dummy, body = evidence_body(f["path"])
    assert len(body) == f["bytes"] and hashlib.sha256(body).hexdigest() == f["sha256"]
    assert b"containerd-shim/main_unix.go" in body and f["goroutines"] >= 3 and f["format"] == "full", f
    assert start_time(shim) == born and hdharness.proc_state(shim) in ("S", "R"), "the v1 shim died of SIGUSR1"
