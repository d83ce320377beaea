"""Decoys for the reliability suite: processes that look like a stuck runc
init in some ways but must never be drained or killed.  Each builder returns
an object with ``pid`` (the process a careless tool would act on) and
``cleanup()``; ``intact()`` tells whether the decoy was left as it was."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
import time
import uuid

import hdharness


class Decoy:
    def __init__(self, name, pid, procs=(), fds=(), threads=(), on_cleanup=None):
        self.name = name
        self.pid = pid
        self.start = hdharness.proc_stat_starttime(pid)
        self.procs = list(procs)
        self.fds = list(fds)
        self.threads = list(threads)
        self.on_cleanup = on_cleanup
        self.queued_before = None

    def alive(self):
        return hdharness.proc_stat_starttime(self.pid) == self.start

    def cleanup(self):
        if self.on_cleanup:
            self.on_cleanup()
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                try:
                    p.kill()
                except ProcessLookupError:
                    pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass


def _wait_blocked(pid, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            queued, cap = hdharness.pipe_fill(pid)
            if queued >= cap and hdharness.syscall_of(pid)[:1] in (["1"], ["20"], ["64"], ["66"]):
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def runc_init_with_ordinary_reader(harness, size=256 * 1024):
    """The fault runtime run by hand, outside any shim: a `runc exec` parent
    and a `runc:[2:INIT]` child blocked on a full pipe whose only reader is a
    plain `sleep`.  Not a containerd deadlock: never to be drained."""
    fake_cid = uuid.uuid4().hex + uuid.uuid4().hex
    harness.arm(fake_cid, size, 1)
    r, w = os.pipe()
    reader = subprocess.Popen(["sleep", "100000"], stdin=r, start_new_session=True)
    os.close(r)
    writer = subprocess.Popen([str(harness.fault_runc), "--root", str(harness.root / "decoy-root"),
                               "exec", "--process", "/dev/null", fake_cid],
                              stderr=w, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                              start_new_session=True)
    os.close(w)
    deadline = time.monotonic() + 10
    child = None
    while time.monotonic() < deadline and child is None:
        for pid in hdharness.pids():
            if hdharness.proc_ppid(pid) == writer.pid and hdharness.proc_comm(pid) == "runc:[2:INIT]":
                child = pid
        time.sleep(0.05)
    assert child and _wait_blocked(child), "decoy runc init did not block"
    d = Decoy("runc init, reader not a shim", child, procs=[writer, reader])
    d.container_id = fake_cid
    return d


def yes_into_unread_pipe(harness, name="decoy-yes"):
    """Inside a container, `yes` blocked writing to a pipe nobody reads."""
    cid = harness.run_container(name, "v2", cmd=("sh", "-c", "yes | sleep 100000"))
    deadline = time.monotonic() + 10
    pid = None
    while time.monotonic() < deadline and pid is None:
        for p in hdharness.pids():
            if hdharness.proc_comm(p) == "yes" and cid in _cgroup(p):
                pid = p
        time.sleep(0.05)
    assert pid, "yes did not start"
    d = Decoy("yes | sleep in a container", pid)
    d.container_id = cid
    return d


def slow_reader(harness, cid, chunk=512, period=0.2):
    """A real stuck exec whose pipe is being read slowly by someone else: the
    writer makes progress, so it is not stuck and must not be drained."""
    proc, pid = harness.hang(cid)
    assert pid, "no stuck runc init to slow-read"
    fd = os.open("/proc/%d/fd/2" % pid, os.O_RDONLY | os.O_NONBLOCK)
    stop = threading.Event()
    taken = bytearray()

    def read_slowly():
        while not stop.is_set():
            try:
                taken.extend(os.read(fd, chunk))
            except BlockingIOError:
                pass
            except OSError:
                return
            stop.wait(period)

    t = threading.Thread(target=read_slowly, daemon=True)
    t.start()

    def finish():
        stop.set()
        t.join(2)

    d = Decoy("writer making slow progress", pid, procs=[proc], fds=[fd], on_cleanup=finish)
    d.container_id = cid
    d.taken = taken
    return d


def stopped_lookalike(harness, cid):
    """A real stuck exec whose runc init was SIGSTOPped by someone (a debugger):
    state T, not S.  Looks like the failure, but is not ours to touch."""
    proc, pid = harness.hang(cid)
    assert pid
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and hdharness.proc_state(pid) not in ("T", "t"):
        time.sleep(0.02)

    def resume():
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass

    d = Decoy("SIGSTOPped runc init", pid, procs=[proc], on_cleanup=resume)
    d.container_id = cid
    return d


def impostor_runc_exec(harness, victim_cid, name="rel-decoy-impostor"):
    """A container whose init passes itself off as a stuck ``runc exec`` of
    another, real container VICTIM_CID: a child of the shim named runc with
    the argv ``runc exec VICTIM_CID``, working in a folder of its own rootfs
    named like the victim's host bundle, a FIFO there as config.json, fd 2
    a full pipe read by its own child.  See impostor_runc.c."""
    out = harness.root / "impostor"
    out.mkdir(exist_ok=True)
    binary = out / "runc"
    if not binary.exists():
        r = subprocess.run(["cc", "-static", "-O2", "-Wall", "-o", str(binary), str(hdharness.HERE / "impostor_runc.c")],
                           capture_output=True, text=True, timeout=120, check=False)
        assert r.returncode == 0, "building the impostor failed:\n" + r.stderr
    bundle = harness.ctd / "state" / "io.containerd.runtime.v2.task" / "moby" / victim_cid
    assert (bundle / "config.json").is_file(), "no host bundle at %s" % bundle
    if harness.container_id(name):
        harness.docker("rm", "-f", name, timeout=30, check=True)
    cid = harness.docker("run", "-d", "--name", name, "--network", "none", "--runtime", hdharness.FAULT_RUNTIME,
                         "-v", "%s:/impostor:ro" % out, "-e", "IMPOSTOR_BUNDLE=%s" % bundle,
                         hdharness.IMAGE, "/impostor/runc", "exec", victim_cid,
                         timeout=60, check=True).stdout.strip()
    pid = int(harness.docker("inspect", "-f", "{{.State.Pid}}", cid, timeout=30, check=True).stdout.strip())

    fifo = "/proc/%d/root%s/config.json" % (pid, bundle)

    def remove():
        # free anything still blocked opening the FIFO (an older tool on this
        # shared machine): a writer's non-blocking open lets its open return
        for dummy in range(3):
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                break
        harness.docker("rm", "-f", cid, timeout=30)

    d = Decoy("runc exec impostor inside a container", pid, on_cleanup=remove)
    if not _wait_blocked(pid):
        d.cleanup()
        raise AssertionError("the impostor did not block on its full pipe")
    d.container_id = victim_cid
    d.own_container_id = cid
    d.bundle = str(bundle)
    return d


def _cgroup(pid):
    try:
        with open("/proc/%d/cgroup" % pid) as f:
            return f.read()
    except OSError:
        return ""


# ---- checks shared by the reliability tests ---------------------------------
WRITE_NRS = ("1", "20", "64", "66")
HEADER_END = b"----- hangdoctor: pipe bytes follow -----\n"
TRAILER = b"\n----- hangdoctor: end of pipe bytes"
# What a module result must never hold: signs of an unhandled exception.
CRASH_WORDS = ("Traceback", "MODULE FAILURE", "exception")


def blocked_on_full_pipe(pid, fd=2):
    """The state a stuck exec (or its imitation) is in: write(2) on FD, a full pipe."""
    sc = hdharness.syscall_of(pid)
    try:
        queued, cap = hdharness.pipe_fill(pid, fd)
    except OSError:
        return False
    return bool(sc[:2]) and sc[0] in WRITE_NRS and sc[1] == hex(fd) and queued == cap


def assert_stuck(harness, cid, pid):
    """The deadlock is real: runc init in write(2) on fd 2 of a full pipe, a
    shim its reader, and inspect of the container does not answer."""
    assert pid is not None, "the fault runtime did not deadlock"
    ev = hdharness.evidence(pid)
    assert ev["comm"] == "runc:[2:INIT]", ev
    assert ev["syscall"][0] in WRITE_NRS and ev["syscall"][1] == "0x2", ev
    assert ev["queued"] == ev["capacity"], ev
    assert any(comm and comm.startswith("containerd-shim") for dummy, comm in ev["readers"]), ev
    assert not harness.inspect_answers(cid, timeout=1.0), "inspect answers: no deadlock"
    return ev


def evidence_body(path):
    """(header, kept bytes) of an evidence file, parsed here rather than with
    the module's own reader."""
    with open(path, "rb") as f:
        data = f.read()
    head, sep, rest = data.partition(HEADER_END)
    assert sep, "no header in %s" % path
    cut = rest.rfind(TRAILER)
    assert cut >= 0, "no trailer in %s" % path
    return head.decode(), rest[:cut]


def check_nothing_lost(harness, entry, init_pid, tally, complete=True):
    """The evidence of one drain holds what runc init wrote: its first LENGTH
    bytes match the fault runtime's record (length and sha256).  With
    COMPLETE=False (runc init killed mid-write) the body must be a prefix of
    the record, optionally followed by runc exec's error line.  Counted in the
    tally as a drain; returns the body."""
    length, sha, data = harness.record(init_pid)
    dummy, body = evidence_body(entry["evidence_path"])
    lost = False
    if complete:
        lost = len(body) < length or hashlib.sha256(body[:length]).hexdigest() != sha
    else:
        err = exec_error_line(harness, init_pid)
        dump = body[:-len(err)] if err and body.endswith(err) else body
        lost = data[:len(dump)] != dump or not dump
    lost = lost or entry["bytes"] != len(body) or entry["sha256"] != hashlib.sha256(body).hexdigest()
    tally.add("drains", bad=lost)
    assert not lost, "evidence %s does not hold what runc init %d wrote" % (entry["evidence_path"], init_pid)
    return body


def exec_error_line(harness, init_pid):
    """The line the fault runtime's runc exec writes once its runc init is gone."""
    meta = [m for m in harness.records() if m["pid"] == init_pid]
    if not meta:
        return b""
    try:
        return (harness.fault / "records" / ("%d.err" % meta[0]["ppid"])).read_bytes()
    except OSError:
        return b""


def no_crash(result):
    """True when a module result shows no unhandled exception.  ansible-core
    2.19 adds ``exception: (traceback unavailable)`` to every registered
    failure: that placeholder means the module raised nothing."""
    result = dict(result)
    if result.get("exception") == "(traceback unavailable)":
        del result["exception"]
    text = json.dumps(result)
    return not any(w in text for w in CRASH_WORDS)


def shim_of(init_pid):
    """The containerd shim above a stuck runc init (runc init -> runc exec -> shim)."""
    rexec = hdharness.proc_ppid(init_pid)
    shim = hdharness.proc_ppid(rexec) if rexec else None
    comm = hdharness.proc_comm(shim) if shim else None
    assert comm and comm.startswith("containerd-shim"), (init_pid, rexec, shim, comm)
    return shim


def shim_of_process(pid):
    """The containerd shim that is PID's parent (a container's init), or None."""
    parent = hdharness.proc_ppid(pid)
    comm = hdharness.proc_comm(parent) if parent else None
    return parent if comm and comm.startswith("containerd-shim") else None


CONMON_C = r"""
/* A stand-in for CRI-O's conmon running an exec (conmon --exec): it makes the
 * stderr pipe, forks the runtime's `exec ... -d <id>` with the write end as
 * fd 2, keeps the read end, and waitpid()s the runtime before reading it, as
 * conmon does.  Built only by the reliability tests. */
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    int fds[2];
    if (argc < 2 || pipe(fds) < 0)
        return 1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        execv(argv[1], argv + 1);
        _exit(127);
    }
    close(fds[1]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        ;
    return 0;
}
"""


def conmon_exec_tree(harness, size=256 * 1024):
    """CRI-O's layout: conmon -> runc exec -> runc:[2:INIT] blocked writing a
    full stderr pipe whose only reader is conmon (no containerd shim).  What
    the deadlock looks like under CRI-O; hangdoctor must not drain it."""
    binary = harness.root / "bin" / "conmon"
    if not binary.exists():
        src = harness.root / "conmon.c"
        src.write_text(CONMON_C)
        subprocess.run(["cc", "-O2", "-o", str(binary), str(src)], check=True, capture_output=True, timeout=120)
    fake_cid = uuid.uuid4().hex + uuid.uuid4().hex
    harness.arm(fake_cid, size, 1)
    conmon = subprocess.Popen([str(binary), str(harness.fault_runc), "--root", str(harness.root / "decoy-root"),
                               "exec", "--pid-file", "/dev/null", "--process", "/dev/null", "-d", fake_cid],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    deadline = time.monotonic() + 10
    child = None
    while time.monotonic() < deadline and child is None:
        for pid in hdharness.pids():
            if hdharness.proc_comm(pid) == "runc:[2:INIT]":
                rexec = hdharness.proc_ppid(pid)
                if rexec and hdharness.proc_ppid(rexec) == conmon.pid:
                    child = pid
        time.sleep(0.05)
    assert child and _wait_blocked(child), "conmon decoy's runc init did not block"
    d = Decoy("runc init under conmon (CRI-O layout)", child, procs=[conmon])
    d.container_id = fake_cid
    d.conmon = conmon.pid
    return d
