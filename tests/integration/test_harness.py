"""The harness's own test: the fault runtime really deadlocks a docker exec in
real dockerd/containerd/shim/runc processes, for both shim layouts, and the
evidence in /proc is what DESIGN.md describes.  The test unblocks the hang by
reading the pipe itself (independently of the collection's code)."""
import os
import socket
import time

import pytest

import hdharness

WRITE_SYSCALLS = {"1", "20", "64", "66"}  # x86_64 write/writev, arm64 write/writev


@pytest.mark.parametrize("layout,shim_comm", [("v2", "containerd-shim"), ("v1", "containerd-shim")])
def test_deadlock_is_real_and_reading_the_pipe_ends_it(harness, release, layout, shim_comm):
    name = f"harness-{layout}"
    cid = harness.run_container(name, layout)
    assert harness.inspect_answers(cid, timeout=3), "inspect must answer before the fault"

    proc, pid = harness.hang(cid)
    assert pid is not None, "no stuck runc init appeared"

    # The exec does not return within 5 s.
    with pytest.raises(Exception):
        proc.wait(timeout=5)
    assert proc.poll() is None

    # inspect of that container hangs while the container list answers.
    with pytest.raises((socket.timeout, TimeoutError)):
        harness.api(f"/containers/{cid}/json", timeout=3)
    status, body = harness.api("/containers/json", timeout=3)
    assert status == 200 and cid.encode() in body

    ev = hdharness.evidence(pid)
    assert ev["comm"] == "runc:[2:INIT]"
    assert ev["syscall"][0] in WRITE_SYSCALLS and int(ev["syscall"][1], 16) == 2
    assert ev["pipe_inode"] is not None
    assert ev["queued"] == ev["capacity"] > 0
    readers = [p for p, comm in ev["readers"]]
    assert any(comm == shim_comm for _p, comm in ev["readers"]), ev["readers"]
    # the reader is the shim that is the grandparent of runc init
    parent = hdharness.proc_ppid(pid)
    assert hdharness.proc_comm(parent) == "runc"
    assert hdharness.proc_ppid(parent) in readers
    shim_args = hdharness.proc_cmdline(hdharness.proc_ppid(parent))
    if layout == "v2":
        assert os.path.basename(shim_args[0]) == "containerd-shim-runc-v2" and "-id" in shim_args
    else:
        assert shim_args[0] == "containerd-shim" and "-workdir" in shim_args
        assert shim_args[shim_args.index("-workdir") + 1].endswith("/" + cid)
    # runc exec's argv ends with the container id
    assert hdharness.proc_cmdline(parent)[-1] == cid

    # Unblock by reading the pipe; nothing of the dump is lost.
    data = hdharness.drain_pipe(pid)
    length, sha, dump = harness.record(pid)
    assert data[:length] == dump
    assert data[length:].startswith(b"exec failed:") and b"read init-p: connection reset by peer" in data[length:]

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not harness.inspect_answers(cid, timeout=1):
        pass
    assert harness.inspect_answers(cid, timeout=2)
    proc.wait(timeout=10)
    assert proc.returncode != 0  # the exec failed cleanly, as the real one does


@pytest.mark.parametrize("layout", ["v2", "v1"])
def test_small_dump_fails_cleanly_without_hang(harness, release, layout):
    cid = harness.run_container(f"small-{layout}", layout)
    proc, pid = harness.hang(cid, size=1024, wait=10)
    assert pid is None
    assert proc.wait(timeout=10) != 0
    assert harness.inspect_answers(cid, timeout=3)


def test_unarmed_exec_passes_through(harness):
    cid = harness.run_container("plain", "v2")
    r = harness.docker("exec", cid, "echo", "ok", timeout=20)
    assert r.returncode == 0 and r.stdout.strip() == "ok"


def test_one_page_pipe_deadlocks_too(harness, release):
    """A pipe shrunk to one page (as for a user past fs.pipe-user-pages-soft)
    fills with 4 KiB: the evidence must compare with F_GETPIPE_SZ, not 64 KiB."""
    cid = harness.run_container("onepage", "v2")
    proc, pid = harness.hang(cid, size=64 * 1024, pipe_size=4096)
    assert pid is not None
    ev = hdharness.evidence(pid)
    assert ev["capacity"] == ev["queued"] == 4096
    assert not harness.inspect_answers(cid, timeout=2)
    data = hdharness.drain_pipe(pid)
    assert data[:64 * 1024] == harness.record(pid)[2]
    proc.wait(timeout=10)
    assert harness.inspect_answers(cid, timeout=3)
