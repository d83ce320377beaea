"""The drain's writer rules against hostile or unlucky writers, on real pipes:
a writer that pauses between writes, one whose blocked thread is not the
leader, one found blocked again behind a done marker, a CPU-bound one that a
timeout must not get killed, and a kill refused across pid namespaces."""
import os
import subprocess
import sys
import time

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _pipe_drain as pd
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils import drain_helpers as dh
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils.pipe_writers import CID, PROC, Writer

SCRIPT = r'''
import os, sys, threading, time
mode = sys.argv[1]
chunk = b"y" * 4096

def write(n):
    view = memoryview(b"z" * n)
    while view:
        view = view[os.write(2, view):]

if mode == "pause":
    # fills the pipe, then (once drained) pauses outside write(2), then writes again
    write(100 * 1024)
    time.sleep(0.08)
    write(100 * 1024)
elif mode == "thread":
    # the leader waits in join(); another thread is the blocked writer
    t = threading.Thread(target=write, args=(200 * 1024,))
    t.start()
    t.join()
elif mode == "spin":
    # a little output, then CPU-bound: never blocked on the pipe
    os.write(2, b"started\n")
    end = time.time() + 60
    while time.time() < end:
        pass
'''
TOTAL = {"pause": 200 * 1024, "thread": 200 * 1024}


class Scripted(Writer):
    def __init__(self, mode):
        self.r, w = os.pipe()
        self.inode = os.fstat(self.r).st_ino
        self.p = subprocess.Popen([sys.executable, "-c", SCRIPT, mode], stderr=w, stdout=subprocess.DEVNULL,
                                  stdin=subprocess.DEVNULL)
        os.close(w)
        self.pid = self.p.pid
        self.exec_pid = None
        self.start_time = PROC.stat(self.pid)["starttime"]


@pytest.fixture
def scripted():
    made = []

    def make(mode):
        w = Scripted(mode)
        made.append(w)
        return w
    yield make
    for w in made:
        w.close()


def ok_verify(proc, record, confirm_interval=1.0):
    return True, ""


def drain(w, evdir, lockdir, **kw):
    kw.setdefault("verify", ok_verify)
    kw.setdefault("timeout", 10.0)
    return dh.drain(PROC, w.record(), evdir, hostname="node-1", lock_dir=lockdir, **kw)


def test_a_short_pause_outside_write_is_not_settled(scripted, evdir, lockdir):
    w = scripted("pause")
    w.wait_blocked()
    kind, entry = drain(w, evdir, lockdir)
    assert kind == "drained"
    # judged "settled" during the pause, the drain would stop and the writer block again
    assert entry["stop"] == "writer exited", entry
    assert entry["bytes"] == TOTAL["pause"] and entry["unblocked"]
    assert w.p.wait(5) == 0


def test_a_writer_in_a_page_fault_is_not_settled():
    """``/proc/PID/syscall`` shows -1 while a task sleeps in a page fault
    (reclaim under memory.high): it writes again as soon as it returns."""
    class FaultingProc(object):
        def machine(self):
            return "x86_64"

        def stat(self, pid):
            return {"starttime": 7, "state": "S"}

        def tasks(self, pid):
            return [pid]

        def task_stat(self, pid, tid):
            return self.stat(pid)

        def task_syscall(self, pid, tid):
            return _procfs.parse_syscall("-1 0x7ffc19517988 0x7f513875a350\n")
    assert pd.writer_state(FaultingProc(), 42, 7, 99) == pd.RUNNABLE


def test_the_blocked_writer_may_be_any_thread(scripted, evdir, lockdir):
    w = scripted("thread")
    w.wait_blocked()
    # the leader sleeps in join(): only task/* shows the writer
    assert PROC.syscall(w.pid)["nr"] not in (1, 20, 64, 66)
    assert pd.writer_state(PROC, w.pid, w.start_time, w.inode) == pd.BLOCKED
    kind, entry = drain(w, evdir, lockdir)
    assert entry["stop"] == "writer exited" and entry["bytes"] == TOTAL["thread"], entry
    assert w.p.wait(5) == 0


def test_a_done_marker_does_not_hide_a_writer_blocked_again(writers, evdir, lockdir, tmp_path):
    w = writers(256 * 1024)
    w.wait_blocked()
    # an earlier run drained this writer and judged it settled
    lock = lockdir.lock(os.fstat(w.r).st_dev, w.inode, w.pid, w.start_time)
    lock.mark_done("earlier.log\n")
    kind, entry = drain(w, evdir, lockdir)
    assert kind == "drained", entry
    assert entry["recurring"] is True and entry["blocked_again"] is True
    assert entry["bytes"] == 256 * 1024 and entry["unblocked"]
    # a run reports the container as recurring, not as repaired
    w2 = writers(256 * 1024)
    w2.wait_blocked()
    lockdir.lock(os.fstat(w2.r).st_dev, w2.inode, w2.pid, w2.start_time).mark_done("x\n")
    res = dh.run(PROC, stuck_execs=[w2.record()], evidence_dir=str(tmp_path / "ev"), lock_dir=lockdir.path,
                 min_age_seconds=0, verify=ok_verify,
                 scan=lambda proc, **kw: {"stuck_execs": []}, sleep=lambda s: None, timeout=10.0,
                 engine=lambda cid: (True, ""))
    assert [e["pid"] for e in res["drained"]] == [w2.pid]
    assert res["skipped_execs"] == []
    assert [r["container_id"] for r in res["recurring"]] == [CID]
    assert res["drained"][0]["verified"] is False


def test_a_cpu_bound_writer_is_not_killed_at_the_timeout(scripted, evdir, lockdir):
    w = scripted("spin")
    deadline = time.monotonic() + 10
    while pd.writer_state(PROC, w.pid, w.start_time, w.inode) != pd.RUNNABLE and time.monotonic() < deadline:
        time.sleep(0.02)
    kind, entry = drain(w, evdir, lockdir, timeout=0.5, fallback="kill")
    assert entry["stop"] == "timeout" and entry["killed"] is False, entry
    assert "not killed" in entry["kill_note"] and "not blocked in write(2)" in entry["kill_note"]
    assert w.p.poll() is None


def test_a_stuck_writer_is_killed_through_a_pidfd(writers, evdir, lockdir):
    w = writers(70 * 1024, mode="forever")
    w.wait_blocked()
    kind, entry = drain(w, evdir, lockdir, timeout=0.5, fallback="kill")
    assert entry["killed"] is True, entry
    if _procfs.pidfd_open(os.getpid()) is not None:
        assert "by pidfd" in entry["kill_note"]
    assert w.p.wait(5) == -9


def test_pidfd_helpers():
    p = subprocess.Popen(["sleep", "30"])
    try:
        fd = _procfs.pidfd_open(p.pid)
        if fd is None:
            pytest.skip("no pidfd on this kernel")
        _procfs.pidfd_kill(fd, 9)
        assert p.wait(5) == -9
        with pytest.raises(_procfs.ProcessGone):
            _procfs.pidfd_kill(fd, 9)
        os.close(fd)
    finally:
        p.kill()
        p.wait(5)


def test_kill_fallback_refused_in_another_pid_namespace(tmp_path):
    fake = tmp_path / "hostproc"
    fake.mkdir()
    (fake / "self").symlink_to("1" if os.getpid() != 1 else "2")
    with pytest.raises(pd.DrainError, match="fallback=kill refused: .* another pid namespace"):
        dh.run(_procfs.Proc(str(fake)), stuck_execs=[], evidence_dir=str(tmp_path / "ev"),
               lock_dir=str(tmp_path / "locks"), fallback="kill")
    # fallback none does not need it
    dh.run(_procfs.Proc(str(fake)), stuck_execs=[], evidence_dir=str(tmp_path / "ev"),
           lock_dir=str(tmp_path / "locks"), fallback="none")
    # this process's own procfs is proven
    dh.run(PROC, stuck_execs=[], evidence_dir=str(tmp_path / "ev2"), lock_dir=str(tmp_path / "locks"),
           fallback="kill")


def test_a_writer_someone_else_reads_is_not_killed(writers, evdir, lockdir):
    """Blocked in write(2) at every sample, but another reader takes a little
    now and then: progress, so not stuck, so not killed."""
    import threading
    w = writers(70 * 1024, mode="forever")
    w.wait_blocked()
    stop = threading.Event()

    def read_slowly():
        while not stop.is_set():
            try:
                os.read(w.r, 512)
            except BlockingIOError:
                pass
            stop.wait(0.05)
    os.set_blocking(w.r, False)
    t = threading.Thread(target=read_slowly, daemon=True)
    t.start()
    try:
        kind, entry = drain(w, evdir, lockdir, timeout=0.5, fallback="kill")
    finally:
        stop.set()
        t.join(2)
    assert entry["killed"] is False and "making progress" in entry["kill_note"], entry
    assert w.p.poll() is None
