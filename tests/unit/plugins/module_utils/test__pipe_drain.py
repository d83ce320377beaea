"""The drain against real pipes: a child process blocked in write(2) on a full
pipe whose read end this test holds (standing in for the shim).  No docker."""
import errno
import hashlib
import os
import signal
import time

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _evidence
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _pipe_drain as pd
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _pipe_lock
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils.pipe_writers import CID, ERROR_LINE, PROC


def ok_verify(proc, record, confirm_interval=1.0):
    return True, ""


def run_drain(record, evdir, **kw):
    kw.setdefault("verify", ok_verify)
    kw.setdefault("timeout", 10.0)
    return pd.drain(PROC, record, evdir, hostname="node-1", **kw)


def body_of(path):
    header, body, trailer = _evidence.read_evidence(path)
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
    lock = _pipe_lock.PipeLock(evdir, w.inode, w.pid, w.start_time)
    assert lock.acquire()
    try:
        kind, entry = run_drain(rec, evdir)
        assert (kind, entry["reason"]) == ("skipped", pd.SKIP_LOCKED)
    finally:
        lock.release()
    assert run_drain(rec, evdir)[0] == "drained"
    kind, entry = run_drain(rec, evdir)
    assert (kind, entry["reason"]) == ("skipped", pd.SKIP_DONE)


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
    monkeypatch.setattr(_evidence.Evidence, "_keep", full_disk)
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
    monkeypatch.setattr(_evidence.Evidence, "__init__", refuse)
    kind, entry = run_drain(w.record(), evdir)
    assert (kind, entry["reason"]) == ("skipped", pd.SKIP_EVIDENCE)
    assert w.queued() == before


def test_run_refuses_a_malformed_record_before_draining_anything(writers, tmp_path):
    w = writers()
    w.wait_blocked()
    before = w.queued()
    with pytest.raises(pd.DrainError, match="writer missing"):
        pd.run(PROC, stuck_execs=[w.record(), {"container_id": CID}], evidence_dir=str(tmp_path / "ev"),
               min_age_seconds=0, scan=lambda *a, **k: {}, verify=ok_verify)
    assert w.queued() == before and not (tmp_path / "ev").exists()
