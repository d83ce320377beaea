"""The drain against real pipes: a child process blocked in write(2) on a full
pipe whose read end this test holds (standing in for the shim).  No docker."""
import errno
import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _pipe_drain as pd
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs

PROC = _procfs.Proc('/proc')
CID = 'c0ffee' + 'ab' * 29

# Deterministic, no two lines alike: a lost or reordered chunk changes the sha256.
WRITER = r'''
import os, sys, time
n, mode = int(sys.argv[1]), sys.argv[2]
data = b"".join(b"goroutine %d [chan receive]: runc init crash dump line\n" % i for i in range(n // 40 + 1))[:n]
if mode == "parent":
    # like runc exec: a child (runc init) writes the dump, the parent then its error line
    child = os.fork()
    if child == 0:
        view = memoryview(data)
        while view:
            view = view[os.write(2, view):]
        os._exit(2)
    os.write(1, b"%d\n" % child)
    os.waitpid(child, 0)
    os.write(2, b"exec failed: read init-p: connection reset by peer\n")
    sys.exit(1)
view = memoryview(data)
while view:
    view = view[os.write(2, view):]
if mode == "sleep":
    time.sleep(120)
elif mode == "forever":
    while True:
        os.write(2, b"x" * 4096)
'''
ERROR_LINE = b"exec failed: read init-p: connection reset by peer\n"


def payload(n):
    return b"".join(b"goroutine %d [chan receive]: runc init crash dump line\n" % i for i in range(n // 40 + 1))[:n]


class Writer(object):
    """A child blocked writing N bytes to fd 2, a pipe whose read end we hold."""

    def __init__(self, n=256 * 1024, mode="exit"):
        self.r, w = os.pipe()
        self.inode = os.fstat(self.r).st_ino
        out = subprocess.PIPE if mode == "parent" else subprocess.DEVNULL
        self.p = subprocess.Popen([sys.executable, "-c", WRITER, str(n), mode], stderr=w, stdout=out,
                                  stdin=subprocess.DEVNULL)
        os.close(w)
        self.pid = self.p.pid
        self.exec_pid = None
        if mode == "parent":
            self.exec_pid = self.p.pid
            self.pid = int(self.p.stdout.readline())
        self.start_time = PROC.stat(self.pid)["starttime"]
        self.data = payload(n)

    def wait_blocked(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pd.writer_state(PROC, self.pid, self.start_time, self.inode) == pd.BLOCKED:
                return
            time.sleep(0.01)
        raise AssertionError("writer %d never blocked on pipe:[%d]" % (self.pid, self.inode))

    def queued(self):
        return _procfs.pipe_queued(self.r)

    def record(self, **over):
        rec = {
            "container_id": CID,
            "writer": {"role": "runc_init", "pid": self.pid, "start_time": self.start_time},
            "runc_init": {"pid": self.pid, "start_time": self.start_time, "comm": "runc:[2:INIT]"},
            "runc_exec": ({"pid": self.exec_pid, "start_time": PROC.stat(self.exec_pid)["starttime"]}
                          if self.exec_pid else None),
            "shim": {"pid": os.getpid(), "start_time": 0, "version": "v2", "argv": [], "id": CID},
            "pipe": {"inode": self.inode, "capacity": 65536, "queued": 65536, "fd": 2},
            "readers": [{"pid": os.getpid(), "fd": self.r, "comm": "python", "is_shim": True}],
            "peek": "",
            "cause": {"kind": "pthread_create_eagain", "summary": "runtime/cgo: pthread_create failed"},
            "pod": {"namespace": "default", "name": "web-0", "container": "app"},
            "age_seconds": 0,
        }
        rec.update(over)
        return rec

    def close(self):
        for pid in (self.pid, self.exec_pid):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        self.p.wait(10)
        if self.p.stdout:
            self.p.stdout.close()
        os.close(self.r)


@pytest.fixture
def writers():
    made = []

    def make(*args, **kwargs):
        w = Writer(*args, **kwargs)
        made.append(w)
        return w
    yield make
    for w in made:
        w.close()


@pytest.fixture
def evdir(tmp_path):
    return pd.prepare_evidence_dir(str(tmp_path / "evidence"))


def ok_verify(proc, record, confirm_interval=1.0):
    return True, ""


def run_drain(record, evdir, **kw):
    kw.setdefault("verify", ok_verify)
    kw.setdefault("timeout", 10.0)
    return pd.drain(PROC, record, evdir, hostname="node-1", **kw)


def body_of(path):
    header, body, trailer = pd.read_evidence(path)
    return header, body, trailer


# ---- the drain -------------------------------------------------------------
def test_drain_keeps_every_byte_and_unblocks_the_writer(writers, evdir):
    w = writers(256 * 1024)
    w.wait_blocked()
    assert w.queued() == _procfs.pipe_capacity(w.r)
    kind, entry = run_drain(w.record(), evdir, engine=lambda cid: (True, ""))
    assert kind == "drained", entry
    assert entry["bytes"] == len(w.data) == 256 * 1024
    assert entry["sha256"] == hashlib.sha256(w.data).hexdigest()
    assert entry["unblocked"] is True and entry["verified"] is True
    assert entry["stop"] == "writer exited"
    assert entry["evidence_truncated"] is False
    header, body, trailer = body_of(entry["evidence_path"])
    assert body == w.data
    assert "container: %s" % CID in header and "host: node-1" in header and "default/web-0" in header
    assert "sha256 %s" % entry["sha256"] in trailer
    assert os.stat(entry["evidence_path"]).st_mode & 0o777 == 0o600
    assert os.path.basename(entry["evidence_path"]).startswith("%s-%d-%d-" % (CID[:12], w.pid, w.start_time))
    assert w.p.wait(5) == 0


def test_drain_reads_the_runc_exec_error_line_or_leaves_the_pipe_room_for_it(writers, evdir):
    w = writers(200 * 1024, mode="parent")
    w.wait_blocked()
    kind, entry = run_drain(w.record(), evdir)
    assert kind == "drained", entry
    dummy, body, dummy2 = body_of(entry["evidence_path"])
    assert body[:len(w.data)] == w.data
    assert body[len(w.data):] in (b"", ERROR_LINE)
    # the "runc exec" is not blocked behind us: it writes its line and exits
    assert w.p.wait(5) == 1
    leftover = b""
    try:
        leftover = os.read(w.r, 4096)
    except BlockingIOError:
        pass
    assert body[len(w.data):] + leftover == ERROR_LINE


def test_drain_stops_when_the_writer_settles_without_exiting(writers, evdir):
    w = writers(100 * 1024, mode="sleep")
    w.wait_blocked()
    t0 = time.monotonic()
    kind, entry = run_drain(w.record(), evdir)
    assert kind == "drained"
    assert entry["stop"] == "writer settled" and entry["unblocked"]
    assert entry["bytes"] == len(w.data)
    assert time.monotonic() - t0 < 3
    assert w.p.poll() is None


def test_timeout_without_fallback_leaves_the_writer_and_says_so(writers, evdir):
    w = writers(70 * 1024, mode="forever")
    w.wait_blocked()
    kind, entry = run_drain(w.record(), evdir, timeout=0.5, max_evidence_bytes=64 * 1024)
    assert kind == "drained"
    assert entry["stop"] == "timeout" and entry["unblocked"] is False and entry["verified"] is False
    assert entry["killed"] is False and w.p.poll() is None
    assert entry["evidence_truncated"] and entry["evidence_elided_bytes"] == entry["bytes"] - 64 * 1024
    dummy, body, trailer = body_of(entry["evidence_path"])
    assert body.startswith(w.data[:32 * 1024])
    assert ("%d bytes elided" % entry["evidence_elided_bytes"]).encode() in body
    assert "%d elided" % entry["evidence_elided_bytes"] in trailer
    # not marked done: a later run (with fallback: kill) may still repair it
    assert run_drain(w.record(), evdir, timeout=0.2)[0] == "drained"


def test_fallback_kill_kills_the_identified_writer_and_reads_what_is_left(writers, evdir):
    w = writers(70 * 1024, mode="forever")
    w.wait_blocked()
    kind, entry = run_drain(w.record(), evdir, timeout=0.5, fallback="kill")
    assert entry["killed"] is True and entry["unblocked"] is True
    assert entry["stop"].startswith("killed")
    assert w.p.wait(5) == -signal.SIGKILL
    assert w.queued() == 0
    assert entry["bytes"] >= len(w.data)


def test_evidence_head_and_tail_past_the_limit(tmp_path):
    ev = pd.Evidence(str(tmp_path / "e.log"), ["h: 1"], limit=10)
    data = bytes(range(100))
    for i in range(0, 100, 7):
        ev.add(data[i:i + 7])
    ev.close()
    assert ev.total == 100 and ev.elided == 90 and ev.truncated
    dummy, body, trailer = pd.read_evidence(str(tmp_path / "e.log"))
    assert body == data[:5] + pd.ELIDED_MARK % 90 + data[-5:]
    assert hashlib.sha256(data).hexdigest() in trailer


def test_evidence_file_never_overwrites(tmp_path):
    target = tmp_path / "planted"
    target.write_text("x")
    os.symlink(str(target), str(tmp_path / "e.log"))
    with pytest.raises(OSError):
        pd.Evidence(str(tmp_path / "e.log"), [], 0)
    assert target.read_text() == "x"


# ---- refusals --------------------------------------------------------------
def test_pid_reuse_or_other_inode_is_never_read(writers, evdir):
    w = writers()
    w.wait_blocked()
    before = w.queued()
    rec = w.record()
    rec["writer"] = dict(rec["writer"], start_time=w.start_time + 1)
    kind, entry = run_drain(rec, evdir)
    assert (kind, entry["reason"]) == ("skipped", pd.SKIP_STALE)
    rec = w.record(pipe={"inode": w.inode + 1, "fd": 2})
    kind, entry = run_drain(rec, evdir)
    assert (kind, entry["reason"]) == ("skipped", pd.SKIP_STALE)
    assert "expected pipe:[%d]" % (w.inode + 1) in entry["detail"]
    assert w.queued() == before
    assert pd.writer_state(PROC, w.pid, w.start_time, w.inode) == pd.BLOCKED


def test_reader_not_a_shim_or_verify_failing_is_skipped(writers, evdir):
    w = writers()
    w.wait_blocked()
    before = w.queued()
    called = []

    def verify(proc, record, confirm_interval=1.0):
        called.append(record)
        return False, "reader pid 1 is not a containerd shim"
    rec = w.record(readers=[{"pid": os.getpid(), "fd": w.r, "comm": "python", "is_shim": False}])
    kind, entry = run_drain(rec, evdir, verify=verify)
    assert (kind, entry["reason"]) == ("skipped", pd.SKIP_NO_SHIM) and not called
    kind, entry = run_drain(w.record(), evdir, verify=verify)
    assert (kind, entry["reason"], entry["detail"]) == ("skipped", pd.SKIP_STALE, "reader pid 1 is not a containerd shim")
    assert w.queued() == before


def test_younger_than_min_age_is_skipped(writers, evdir):
    w = writers()
    w.wait_blocked()
    kind, entry = run_drain(w.record(), evdir, min_age_seconds=3600)
    assert (kind, entry["reason"]) == ("skipped", pd.SKIP_YOUNG)
    assert pd.writer_state(PROC, w.pid, w.start_time, w.inode) == pd.BLOCKED


def test_locked_and_already_drained(writers, evdir):
    w = writers()
    w.wait_blocked()
    rec = w.record()
    lock = pd.PipeLock(evdir, w.inode, w.pid, w.start_time)
    assert lock.acquire()
    try:
        kind, entry = run_drain(rec, evdir)
        assert (kind, entry["reason"]) == ("skipped", pd.SKIP_LOCKED)
    finally:
        lock.release()
    assert run_drain(rec, evdir)[0] == "drained"
    kind, entry = run_drain(rec, evdir)
    assert (kind, entry["reason"]) == ("skipped", pd.SKIP_DONE)


def test_evidence_dir_rules(tmp_path):
    with pytest.raises(pd.DrainError, match="absolute"):
        pd.prepare_evidence_dir("relative/dir")
    made = pd.prepare_evidence_dir(str(tmp_path / "a" / "b"))
    assert os.stat(made).st_mode & 0o777 == 0o700
    assert os.path.isdir(os.path.join(made, ".locks"))
    os.symlink(made, str(tmp_path / "mine"))
    assert pd.prepare_evidence_dir(str(tmp_path / "mine")) == made
    if os.geteuid() == 0:
        os.symlink(made, str(tmp_path / "theirs"))
        os.lchown(str(tmp_path / "theirs"), 65534, 65534)
        with pytest.raises(pd.DrainError, match="symlink owned by uid 65534"):
            pd.prepare_evidence_dir(str(tmp_path / "theirs"))


def test_malformed_records_are_refused():
    for bad in ({}, {"container_id": CID}, {"container_id": CID, "writer": {"role": "shim", "pid": 1, "start_time": 1}},
                {"container_id": CID, "writer": {"role": "runc_init", "pid": "x", "start_time": 1},
                 "pipe": {"inode": 1}, "readers": []}):
        with pytest.raises(pd.DrainError):
            pd.check_record(bad)
    with pytest.raises(pd.DrainError):
        pd.run(PROC, stuck_execs=[{"container_id": CID}], scan=lambda *a, **k: {}, verify=ok_verify)


# ---- whole runs: check mode, recurrence ------------------------------------
def test_check_mode_reads_nothing(writers, tmp_path):
    w = writers()
    w.wait_blocked()
    before = w.queued()
    res = pd.run(PROC, stuck_execs=[w.record()], evidence_dir=str(tmp_path / "ev"), min_age_seconds=0,
                 check_mode=True, scan=lambda *a, **k: {}, verify=ok_verify, peek_bytes=64)
    assert res["changed"] is True and not res["drained"]
    (would,) = res["would_drain"]
    assert would["pid"] == w.pid and would["queued"] == before
    assert would["peek"] == w.data[:64].decode()
    assert w.queued() == before and not (tmp_path / "ev").exists()
    assert pd.writer_state(PROC, w.pid, w.start_time, w.inode) == pd.BLOCKED


class Rescans(object):
    """scan() stand-in: each call returns the next list of records."""

    def __init__(self, *batches):
        self.batches = list(batches)
        self.calls = []

    def __call__(self, proc, container_ids=None, **kw):
        self.calls.append(container_ids)
        return {"stuck_execs": self.batches.pop(0)() if self.batches else []}


def test_recurrence_drains_the_next_exec_in_a_later_round(writers, tmp_path):
    first, second = writers(), writers(90 * 1024)
    first.wait_blocked()
    second.wait_blocked()
    scan = Rescans(lambda: [first.record()], lambda: [second.record()], lambda: [])
    res = pd.run(PROC, container_ids=[CID], evidence_dir=str(tmp_path / "ev"), min_age_seconds=3600,
                 max_rounds=3, confirm_interval=0.05, scan=scan, verify=ok_verify, sleep=time.sleep)
    # min_age_seconds held back round 1 only
    assert [(s["pid"], s["reason"]) for s in res["skipped_execs"]] == [(first.pid, pd.SKIP_YOUNG)]
    assert not res["drained"] and res["rounds"] == 1

    scan = Rescans(lambda: [first.record()], lambda: [second.record()], lambda: [])
    asked = []

    def engine(cid):
        asked.append(cid)
        return True, ""
    res = pd.run(PROC, container_ids=[CID], evidence_dir=str(tmp_path / "ev"), min_age_seconds=0,
                 max_rounds=3, confirm_interval=0.05, scan=scan, verify=ok_verify, engine=engine)
    assert [(d["pid"], d["round"], d["bytes"]) for d in res["drained"]] == [
        (first.pid, 1, len(first.data)), (second.pid, 2, len(second.data))]
    assert res["rounds"] == 2 and not res["recurring"] and res["changed"]
    assert scan.calls == [[CID], [CID], [CID]]
    # the Engine is asked once, after the container's last round
    assert asked == [CID] and [d["verified"] for d in res["drained"]] == [True, True]


def test_recurrence_past_max_rounds_is_reported(writers, tmp_path):
    first, second = writers(), writers()
    first.wait_blocked()
    second.wait_blocked()
    scan = Rescans(lambda: [second.record()])
    res = pd.run(PROC, stuck_execs=[first.record()], evidence_dir=str(tmp_path / "ev"), min_age_seconds=0,
                 max_rounds=1, confirm_interval=0.01, scan=scan, verify=ok_verify)
    assert [d["pid"] for d in res["drained"]] == [first.pid]
    assert res["drained"][0]["recurring"] is True and res["drained"][0]["verified"] is False
    (rec,) = res["recurring"]
    assert rec["container_id"] == CID and rec["stuck_pids"] == [second.pid] and "memory limit" in rec["hint"]
    assert pd.writer_state(PROC, second.pid, second.start_time, second.inode) == pd.BLOCKED


def test_writer_states(writers):
    w = writers(10, mode="sleep")
    deadline = time.monotonic() + 5
    while pd.writer_state(PROC, w.pid, w.start_time, w.inode) != pd.SETTLED and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pd.writer_state(PROC, w.pid, w.start_time, w.inode) == pd.SETTLED
    assert pd.writer_state(PROC, w.pid, w.start_time + 5, w.inode) == pd.GONE
    w.p.kill()
    w.p.wait(5)
    assert pd.writer_state(PROC, w.pid, w.start_time, w.inode) == pd.GONE


def test_a_failing_evidence_file_does_not_stop_the_repair(writers, evdir, monkeypatch):
    w = writers()
    w.wait_blocked()

    def full_disk(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(pd.Evidence, "_keep", full_disk)
    kind, entry = run_drain(w.record(), evdir)
    assert kind == "drained" and entry["unblocked"]
    assert entry["bytes"] == len(w.data) and entry["sha256"] == hashlib.sha256(w.data).hexdigest()
    assert "No space left" in entry["evidence_error"]
    assert w.p.wait(5) == 0


def test_no_evidence_file_means_no_drain(writers, evdir, monkeypatch):
    w = writers()
    w.wait_blocked()
    before = w.queued()

    def refuse(self, path, header_lines, limit=0):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    monkeypatch.setattr(pd.Evidence, "__init__", refuse)
    kind, entry = run_drain(w.record(), evdir)
    assert (kind, entry["reason"]) == ("skipped", pd.SKIP_EVIDENCE)
    assert w.queued() == before
