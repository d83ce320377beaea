"""The drain against real pipes: a child process blocked in write(2) on a full
pipe whose read end this test holds (standing in for the shim).  No docker."""
import errno
import hashlib
import os
import signal
import subprocess
import time

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _evidence
from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import HangdoctorError
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _pipe_drain as pd
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _pipe_lock
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils.pipe_writers import CID, ERROR_LINE, PROC
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils import drain_helpers as dh


def ok_verify(proc, record, confirm_interval=1.0):
    return True, ""


def run_drain(record, evdir, lockdir, **kw):
    kw.setdefault("verify", ok_verify)
    kw.setdefault("timeout", 10.0)
    return dh.drain(PROC, record, evdir, hostname="node-1", lock_dir=lockdir, **kw)


def body_of(path):
    header, body, trailer = _evidence.read_evidence(path)
    return header, body, trailer


# ---- the drain -------------------------------------------------------------
def test_drain_keeps_every_byte_and_unblocks_the_writer(writers, evdir, lockdir):
    w = writers(256 * 1024)
    w.wait_blocked()
    assert w.queued() == _procfs.pipe_capacity(w.r)
    kind, entry = run_drain(w.record(), evdir, lockdir, engine=lambda cid: (True, ""))
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


def test_drain_reads_the_runc_exec_error_line_or_leaves_the_pipe_room_for_it(writers, evdir, lockdir):
    w = writers(200 * 1024, mode="parent")
    w.wait_blocked()
    kind, entry = run_drain(w.record(), evdir, lockdir)
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


def test_drain_stops_when_the_writer_settles_without_exiting(writers, evdir, lockdir):
    w = writers(100 * 1024, mode="sleep")
    w.wait_blocked()
    t0 = time.monotonic()
    kind, entry = run_drain(w.record(), evdir, lockdir)
    assert kind == "drained"
    assert entry["stop"] == "writer settled" and entry["unblocked"]
    assert entry["bytes"] == len(w.data)
    assert time.monotonic() - t0 < 3
    assert w.p.poll() is None


def test_timeout_without_fallback_leaves_the_writer_and_says_so(writers, evdir, lockdir):
    w = writers(70 * 1024, mode="forever")
    w.wait_blocked()
    kind, entry = run_drain(w.record(), evdir, lockdir, timeout=0.5, max_evidence_bytes=64 * 1024)
    assert kind == "drained"
    assert entry["stop"] == "timeout" and entry["unblocked"] is False and entry["verified"] is False
    assert entry["killed"] is False and w.p.poll() is None
    assert entry["evidence_truncated"] and entry["evidence_elided_bytes"] == entry["bytes"] - 64 * 1024
    dummy, body, trailer = body_of(entry["evidence_path"])
    assert body.startswith(w.data[:32 * 1024])
    assert ("%d bytes elided" % entry["evidence_elided_bytes"]).encode() in body
    assert "%d elided" % entry["evidence_elided_bytes"] in trailer
    # not marked done: a later run (with fallback: kill) may still repair it
    assert run_drain(w.record(), evdir, lockdir, timeout=0.2)[0] == "drained"


def test_fallback_kill_kills_the_identified_writer_and_reads_what_is_left(writers, evdir, lockdir):
    w = writers(70 * 1024, mode="forever")
    w.wait_blocked()
    kind, entry = run_drain(w.record(), evdir, lockdir, timeout=0.5, fallback="kill")
    assert entry["killed"] is True and entry["unblocked"] is True
    assert entry["stop"].startswith("killed")
    assert w.p.wait(5) == -signal.SIGKILL
    assert w.queued() == 0
    assert entry["bytes"] >= len(w.data)


# ---- refusals --------------------------------------------------------------
def test_pid_reuse_or_other_inode_is_never_read(writers, evdir, lockdir):
    w = writers()
    w.wait_blocked()
    before = w.queued()
    rec = w.record()
    rec["writer"] = dict(rec["writer"], start_time=w.start_time + 1)
    kind, entry = run_drain(rec, evdir, lockdir)
    assert (kind, entry["reason"]) == ("skipped", pd.SKIP_STALE)
    rec = w.record(pipe={"inode": w.inode + 1, "fd": 2})
    kind, entry = run_drain(rec, evdir, lockdir)
    assert (kind, entry["reason"]) == ("skipped", pd.SKIP_STALE)
    assert "expected pipe:[%d]" % (w.inode + 1) in entry["detail"]
    assert w.queued() == before
    assert pd.writer_state(PROC, w.pid, w.start_time, w.inode) == pd.BLOCKED


def test_reader_not_a_shim_or_verify_failing_is_skipped(writers, evdir, lockdir):
    w = writers()
    w.wait_blocked()
    before = w.queued()
    called = []

    def verify(proc, record, confirm_interval=1.0):
        called.append(record)
        return False, "reader pid 1 is not a containerd shim"
    rec = w.record(readers=[{"pid": os.getpid(), "fd": w.r, "comm": "python", "is_shim": False}])
    kind, entry = run_drain(rec, evdir, lockdir, verify=verify)
    assert (kind, entry["reason"]) == ("skipped", pd.SKIP_NO_SHIM) and not called
    kind, entry = run_drain(w.record(), evdir, lockdir, verify=verify)
    assert (kind, entry["reason"], entry["detail"]) == ("skipped", pd.SKIP_STALE, "reader pid 1 is not a containerd shim")
    assert w.queued() == before


def test_younger_than_min_age_is_skipped(writers, evdir, lockdir):
    w = writers()
    w.wait_blocked()
    kind, entry = run_drain(w.record(), evdir, lockdir, min_age_seconds=3600)
    assert (kind, entry["reason"]) == ("skipped", pd.SKIP_YOUNG)
    assert pd.writer_state(PROC, w.pid, w.start_time, w.inode) == pd.BLOCKED


def test_locked_and_already_drained(writers, evdir, lockdir):
    w = writers()
    w.wait_blocked()
    rec = w.record()
    lock = lockdir.lock(os.fstat(w.r).st_dev, w.inode, w.pid, w.start_time)
    assert lock.acquire()
    try:
        kind, entry = run_drain(rec, evdir, lockdir)
        assert (kind, entry["reason"]) == ("skipped", pd.SKIP_LOCKED)
    finally:
        lock.release()
    assert run_drain(rec, evdir, lockdir)[0] == "drained"
    kind, entry = run_drain(rec, evdir, lockdir)
    assert (kind, entry["reason"]) == ("skipped", pd.SKIP_DONE)


def test_one_lock_per_pipe_whatever_the_writer_and_evidence_dir(writers, tmp_path, lockdir):
    # runc init blocked on the pipe, runc exec (its parent) holds the same pipe
    w = writers(200 * 1024, mode="parent")
    w.wait_blocked()
    init_rec = w.record()
    exec_rec = w.record(writer={"role": "runc_exec", "pid": w.exec_pid,
                                "start_time": PROC.stat(w.exec_pid)["starttime"]})
    # another run, with its own evidence_dir, holds the pipe through the runc exec record
    other = _evidence.EvidenceDir(str(tmp_path / "other-evidence"))
    held = lockdir.lock(os.fstat(w.r).st_dev, w.inode, w.exec_pid, exec_rec["writer"]["start_time"])
    assert held.acquire()
    try:
        mine = _evidence.EvidenceDir(str(tmp_path / "mine"))
        kind, entry = dh.drain(PROC, init_rec, mine, verify=ok_verify, lock_dir=lockdir)
        assert (kind, entry["reason"]) == ("skipped", pd.SKIP_LOCKED), entry
        mine.close()
    finally:
        held.release()
    assert w.queued() > 0
    kind, entry = dh.drain(PROC, exec_rec, other, verify=ok_verify, lock_dir=lockdir)
    other.close()
    assert kind == "drained" and entry["bytes"] >= len(w.data)


def test_check_mode_reads_nothing(writers, tmp_path):
    w = writers()
    w.wait_blocked()
    before = w.queued()
    res = dh.run(PROC, stuck_execs=[w.record()], evidence_dir=str(tmp_path / "ev"), lock_dir=str(tmp_path / "locks"), min_age_seconds=0,
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

    def __call__(self, proc, options, **kw):
        self.calls.append(options.container_ids)
        return {"stuck_execs": self.batches.pop(0)() if self.batches else []}


def test_recurrence_drains_the_next_exec_in_a_later_round(writers, tmp_path):
    first, second = writers(), writers(90 * 1024)
    first.wait_blocked()
    second.wait_blocked()
    scan = Rescans(lambda: [first.record()], lambda: [second.record()], lambda: [])
    res = dh.run(PROC, container_ids=[CID], evidence_dir=str(tmp_path / "ev"), lock_dir=str(tmp_path / "locks"), min_age_seconds=3600,
                 max_rounds=3, confirm_interval=0.05, scan=scan, verify=ok_verify, sleep=time.sleep)
    # min_age_seconds held back round 1 only
    assert [(s["pid"], s["reason"]) for s in res["skipped_execs"]] == [(first.pid, pd.SKIP_YOUNG)]
    assert not res["drained"] and res["rounds"] == 1

    scan = Rescans(lambda: [first.record()], lambda: [second.record()], lambda: [])
    asked = []

    def engine(cid):
        asked.append(cid)
        return True, ""
    res = dh.run(PROC, container_ids=[CID], evidence_dir=str(tmp_path / "ev"), lock_dir=str(tmp_path / "locks"), min_age_seconds=0,
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
    res = dh.run(PROC, stuck_execs=[first.record()], evidence_dir=str(tmp_path / "ev"), lock_dir=str(tmp_path / "locks"), min_age_seconds=0,
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


@pytest.fixture
def tiny_fs(tmp_path):
    """A tmpfs of SIZE bytes (root only): a disk that fills up for real."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounts = []

    def make(size):
        d = tmp_path / ("fs%d" % len(mounts))
        d.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d,mode=0700" % size, "tmpfs", str(d)], check=True)
        mounts.append(d)
        return d
    yield make
    for d in mounts:
        subprocess.run(["umount", "-l", str(d)], check=False)


def fill(directory):
    """Fill DIRECTORY's filesystem to the last byte."""
    fd = os.open(str(directory / "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"f" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    try:
        while True:
            os.write(fd, b"f")
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)


def kept_bytes(data, entry):
    return b"".join(data[a:b] for a, b in entry["evidence_kept_ranges"])


def test_disk_full_mid_drain_keeps_draining_and_says_what_was_kept(writers, tiny_fs, lockdir):
    fs = tiny_fs(64 * 1024)
    evdir = _evidence.EvidenceDir(str(fs / "evidence"))
    w = writers(256 * 1024)
    w.wait_blocked()
    kind, entry = run_drain(w.record(), evdir, lockdir)
    evdir.close()
    assert kind == "drained" and entry["unblocked"] and entry["error"] is None, entry
    assert entry["bytes"] == len(w.data) and entry["sha256"] == hashlib.sha256(w.data).hexdigest()
    kept = entry["evidence_kept_bytes"]
    assert 0 < kept < len(w.data) and entry["evidence_kept_ranges"] == [[0, kept]]
    assert entry["evidence_lost_bytes"] == len(w.data) - kept and entry["evidence_elided_bytes"] == 0
    assert entry["evidence_kept_sha256"] == hashlib.sha256(w.data[:kept]).hexdigest()
    assert "No space left" in entry["evidence_error"]
    dummy, body, dummy2 = _evidence.read_evidence(entry["evidence_path"])
    assert body == w.data[:kept]
    assert w.p.wait(5) == 0


def test_disk_full_with_a_size_limit_accounts_head_tail_and_loss(tiny_fs, tmp_path):
    fs = tiny_fs(16 * 1024)
    evdir = _evidence.EvidenceDir(str(fs / "evidence"))
    data = os.urandom(1024 * 1024)
    ev = _evidence.Evidence(evdir, "e.log", ["h: 1"], limit=24 * 1024)
    for i in range(0, len(data), 5000):
        ev.add(data[i:i + 5000])
    ev.close()
    evdir.close()
    assert ev.total == len(data) and ev.kept + ev.elided + ev.lost == ev.total and ev.lost > 0
    assert ev.kept_sha.hexdigest() == hashlib.sha256(b"".join(data[a:b] for a, b in ev.kept_ranges)).hexdigest()
    assert ev.sha.hexdigest() == hashlib.sha256(data).hexdigest()


def test_disk_full_at_start_still_repairs_and_piles_up_no_files(writers, tiny_fs, lockdir):
    fs = tiny_fs(32 * 1024)
    evdir = _evidence.EvidenceDir(str(fs / "evidence"))
    fill(fs)
    for dummy in range(3):
        w = writers(100 * 1024)
        w.wait_blocked()
        kind, entry = run_drain(w.record(), evdir, lockdir)
        assert kind == "drained" and entry["unblocked"], entry
        assert entry["bytes"] == len(w.data) and entry["sha256"] == hashlib.sha256(w.data).hexdigest()
        assert entry["evidence_path"] is None and entry["evidence_kept_bytes"] == 0
        assert entry["evidence_lost_bytes"] == len(w.data) and entry["evidence_kept_ranges"] == []
        assert "No space left" in entry["evidence_error"]
        assert w.p.wait(5) == 0
    assert os.listdir(str(fs / "evidence")) == []
    evdir.close()


def test_file_size_limit_efbig_mid_drain(writers, evdir, lockdir):
    import resource
    w = writers(256 * 1024)
    w.wait_blocked()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100 * 1024, hard))
    try:
        kind, entry = run_drain(w.record(), evdir, lockdir)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert kind == "drained" and entry["unblocked"], entry
    assert "File too large" in entry["evidence_error"]
    kept = entry["evidence_kept_bytes"]
    assert 0 < kept < len(w.data) and entry["evidence_lost_bytes"] == len(w.data) - kept
    dummy, body, dummy2 = _evidence.read_evidence(entry["evidence_path"])
    assert body == w.data[:kept] and entry["evidence_kept_sha256"] == hashlib.sha256(body).hexdigest()


def test_run_refuses_a_malformed_record_before_draining_anything(writers, tmp_path):
    w = writers()
    w.wait_blocked()
    before = w.queued()
    with pytest.raises(pd.DrainError, match="writer missing"):
        dh.run(PROC, stuck_execs=[w.record(), {"container_id": CID}], evidence_dir=str(tmp_path / "ev"), lock_dir=str(tmp_path / "locks"),
               min_age_seconds=0, scan=lambda *a, **k: {}, verify=ok_verify)
    assert w.queued() == before and not (tmp_path / "ev").exists()


# ---- one failing record never aborts the run -------------------------------
def test_an_unexpected_error_is_that_records_error_and_the_others_are_drained(writers, tmp_path):
    bad, good = writers(), writers()
    bad.wait_blocked()
    good.wait_blocked()

    def verify(proc, record, confirm_interval=1.0):
        if record["writer"]["pid"] == bad.pid:
            raise _procfs.ProcError("/proc/%d/fdinfo/2: Input/output error" % bad.pid)
        return True, ""
    res = dh.run(PROC, stuck_execs=[bad.record(), good.record()], evidence_dir=str(tmp_path / "ev"),
                 lock_dir=str(tmp_path / "locks"), min_age_seconds=0, max_rounds=1, confirm_interval=0.01,
                 scan=lambda *a, **k: {"stuck_execs": []}, verify=verify)
    assert [(s["pid"], s["reason"]) for s in res["skipped_execs"]] == [(bad.pid, pd.SKIP_ERROR)]
    assert "Input/output error" in res["skipped_execs"][0]["detail"]
    assert [d["pid"] for d in res["drained"]] == [good.pid] and res["drained"][0]["unblocked"]


def test_a_lock_that_cannot_be_opened_is_that_records_error(writers, tmp_path):
    bad, good = writers(), writers()
    bad.wait_blocked()
    good.wait_blocked()
    locks = tmp_path / "locks"
    locks.mkdir(mode=0o700)
    # ELOOP: a symlink planted where the lock of BAD's pipe goes
    os.symlink("/etc/passwd", str(locks / ("pipe-%d-%d.lock" % (pd.pipefs_device(), bad.inode))))
    res = dh.run(PROC, stuck_execs=[bad.record(), good.record()], evidence_dir=str(tmp_path / "ev"),
                 lock_dir=str(locks), min_age_seconds=0, max_rounds=1, confirm_interval=0.01,
                 scan=lambda *a, **k: {"stuck_execs": []}, verify=ok_verify)
    (skipped,) = res["skipped_execs"]
    assert (skipped["pid"], skipped["reason"]) == (bad.pid, pd.SKIP_ERROR) and "symbolic links" in skipped["detail"]
    assert [d["pid"] for d in res["drained"]] == [good.pid]
    assert bad.queued() > 0


def test_eperm_from_kill_keeps_the_drain_result(writers, evdir, lockdir, monkeypatch):
    w = writers(70 * 1024, mode="forever")
    w.wait_blocked()

    def no_permission(*args):
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))
    monkeypatch.setattr(pd.os, "kill", no_permission)
    # where the kill goes through a pidfd, that is refused too
    monkeypatch.setattr(_procfs, "pidfd_kill", no_permission, raising=False)
    kind, entry = run_drain(w.record(), evdir, lockdir, timeout=0.3, fallback="kill")
    assert kind == "drained" and entry["killed"] is False and entry["unblocked"] is False
    dummy, dummy2, trailer = _evidence.read_evidence(entry["evidence_path"])
    # said in the entry or in the evidence trailer, never a traceback
    assert "Operation not permitted" in (entry["error"] or "") + trailer, (entry, trailer)
    assert entry["bytes"] >= len(w.data) and entry["evidence_kept_bytes"] == entry["bytes"]
    assert w.p.poll() is None


def test_a_done_marker_that_cannot_be_written_keeps_the_drain_result(writers, evdir, lockdir, monkeypatch):
    w = writers()
    w.wait_blocked()

    def read_only(self, text):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    monkeypatch.setattr(_pipe_lock.PipeLock, "mark_done", read_only)
    kind, entry = run_drain(w.record(), evdir, lockdir)
    assert kind == "drained" and entry["unblocked"] and "Read-only file system" in entry["error"]
    assert entry["sha256"] == hashlib.sha256(w.data).hexdigest()


def test_a_failing_rescan_keeps_the_drains_of_the_round(writers, tmp_path):
    w = writers()
    w.wait_blocked()

    def scan(proc, options, **kw):
        raise _procfs.ProcError("/proc: Permission denied")
    res = dh.run(PROC, stuck_execs=[w.record()], evidence_dir=str(tmp_path / "ev"), lock_dir=str(tmp_path / "locks"),
                 min_age_seconds=0, max_rounds=2, confirm_interval=0.01, scan=scan, verify=ok_verify)
    assert [d["pid"] for d in res["drained"]] == [w.pid] and res["changed"]
    (err,) = res["errors"]
    assert "after round 1 failed" in err and "Permission denied" in err


# ---- retention and the host-wide lock directory in a run ---------------------
def test_a_run_bounds_the_evidence_it_keeps_and_never_removes_its_own(writers, tmp_path):
    ev = tmp_path / "ev"
    ev.mkdir(mode=0o700)
    old = []
    for i in range(3):
        name = _evidence.evidence_name(CID, 1000 + i, 1, 1000000 + i)
        (ev / name).write_bytes(b"old" * 100)
        os.utime(str(ev / name), (1000000 + i, 1000000 + i))
        old.append(name)
    w = writers()
    w.wait_blocked()
    res = dh.run(PROC, stuck_execs=[w.record()], evidence_dir=str(ev), lock_dir=str(tmp_path / "locks"),
                 min_age_seconds=0, max_rounds=1, confirm_interval=0.01, scan=lambda *a, **k: {"stuck_execs": []},
                 verify=ok_verify, evidence_retention_count=1, evidence_retention_days=0)
    (entry,) = res["drained"]
    assert os.listdir(str(ev)) == [os.path.basename(entry["evidence_path"])]
    assert res["retention"]["evidence_removed"] == 3 and res["retention"]["evidence_removed_bytes"] == 900


def test_two_runs_with_different_evidence_dirs_share_the_host_lock(writers, tmp_path):
    w = writers()
    w.wait_blocked()
    locks = str(tmp_path / "locks")
    lockdir = _pipe_lock.LockDir(locks)
    held = lockdir.lock(pd.pipefs_device(), w.inode, w.pid, w.start_time)
    assert held.acquire()
    try:
        res = dh.run(PROC, stuck_execs=[w.record()], evidence_dir=str(tmp_path / "adhoc"), lock_dir=locks,
                     min_age_seconds=0, max_rounds=1, confirm_interval=0.01, verify=ok_verify,
                     scan=lambda *a, **k: {"stuck_execs": []})
    finally:
        held.release()
        lockdir.close()
    assert not res["drained"] and [s["reason"] for s in res["skipped_execs"]] == [pd.SKIP_LOCKED]
    assert w.queued() > 0


def test_retention_options_must_not_be_negative(tmp_path):
    with pytest.raises(HangdoctorError, match="evidence_retention_days must be between 0 and"):
        dh.run(PROC, stuck_execs=[], evidence_dir=str(tmp_path / "ev"), evidence_retention_days=-1)


def test_no_evidence_dir_and_a_read_only_lock_dir_still_repair_with_the_bytes_in_the_result(writers, tiny_fs, tmp_path):
    """The evidence directory cannot be created (ENOSPC: a tmpfs out of
    inodes) and the lock directory is on a read-only bind mount (EROFS): the
    run drains anyway, without the lock, and the result carries the bytes."""
    import base64
    if os.geteuid() != 0:
        pytest.skip("a bind mount needs root")
    fs = tiny_fs(64 * 1024)
    subprocess.run(["mount", "-o", "remount,nr_inodes=1", str(fs)], check=True)
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o700)
    subprocess.run(["mount", "--bind", str(ro), str(ro)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
        small, big = writers(100 * 1024), writers(3 * 1024 * 1024)
        for w in (small, big):
            w.wait_blocked()
        res = dh.run(PROC, stuck_execs=[small.record(), big.record()], evidence_dir=str(fs / "evidence"),
                     lock_dir=str(ro / "hangdoctor"), min_age_seconds=0, max_rounds=1,
                     scan=lambda *a, **k: {"stuck_execs": []}, verify=ok_verify, max_evidence_bytes=0)
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)
    assert "No space left" in res["evidence_dir_error"] and "Read-only file system" in res["lock_dir_error"]
    assert len(res["errors"]) == 2
    small_entry, big_entry = res["drained"]
    for w, entry in ((small, small_entry), (big, big_entry)):
        assert entry["unblocked"] and entry["bytes"] == len(w.data), entry
        assert entry["sha256"] == hashlib.sha256(w.data).hexdigest()
        assert entry["evidence_path"] is None and entry["evidence_lost_bytes"] == len(w.data)
        assert "drained without the lock" in entry["lock_error"]
        inline = entry["evidence_inline"]
        kept = base64.b64decode(inline["base64"])
        assert kept == b"".join(w.data[a:b] for a, b in inline["ranges"])
        assert inline["sha256"] == hashlib.sha256(kept).hexdigest()
        assert w.p.wait(5) == 0
    # all of a small dump; head and tail of a big one, 1 MiB in all
    assert small_entry["evidence_inline"]["ranges"] == [[0, len(small.data)]]
    half = _evidence.INLINE_BYTES // 2
    assert big_entry["evidence_inline"]["ranges"] == [[0, half], [len(big.data) - half, len(big.data)]]


def test_an_unsafe_evidence_or_lock_dir_still_fails_the_run(writers, tmp_path):
    """Only the node's condition (a full disk, a read-only filesystem) is
    drained through; a path that is not safe stays a clear error."""
    (tmp_path / "file").write_text("")
    with pytest.raises(pd.DrainError, match="Not a directory"):
        dh.run(PROC, stuck_execs=[], evidence_dir=str(tmp_path / "file" / "ev"), lock_dir=str(tmp_path / "locks"),
               scan=lambda *a, **k: {"stuck_execs": []}, verify=ok_verify)
    with pytest.raises(HangdoctorError, match="lock_dir must be an absolute path"):
        dh.run(PROC, stuck_execs=[], evidence_dir=str(tmp_path / "ev"), lock_dir="run/hangdoctor",
               scan=lambda *a, **k: {"stuck_execs": []}, verify=ok_verify)


def test_an_existing_lock_dir_on_a_read_only_filesystem_still_repairs(writers, evdir, tmp_path):
    """The lock directory opens, but no lock file can be created in it
    (EROFS): that record is drained without the lock, not skipped."""
    if os.geteuid() != 0:
        pytest.skip("a bind mount needs root")
    ro = tmp_path / "ro"
    (ro / "hangdoctor").mkdir(parents=True, mode=0o700)
    subprocess.run(["mount", "--bind", str(ro), str(ro)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
        locks = _pipe_lock.LockDir(str(ro / "hangdoctor"))
        w = writers()
        w.wait_blocked()
        try:
            kind, entry = run_drain(w.record(), evdir, locks)
        finally:
            locks.close()
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)
    assert kind == "drained" and entry["unblocked"], entry
    assert "Read-only file system" in entry["lock_error"] and entry["sha256"] == hashlib.sha256(w.data).hexdigest()
    assert entry["evidence_inline"] is None and entry["evidence_kept_bytes"] == len(w.data)
