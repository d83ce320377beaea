"""Reliability: faults.  dockerd frozen, a Docker socket that never answers,
runc init or the shim killed in the middle of a drain, /proc entries
vanishing during a scan: every module returns within its own time limit
(timeout + 2 s, plus Ansible's start-up cost measured in the same run) with a
clear result, and no byte read from a pipe is lost."""
import base64
import errno
import hashlib
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

import decoys
import hdharness
from conftest import run_module
from fake_engine import FakeDaemon, never

BIG_DUMP = 32 * 1024 * 1024
# Outlasts a 1 s drain timeout through a one-page pipe on a quiet machine too
# (32 MiB drains in under a second there).
KILL_DUMP = 256 * 1024 * 1024
ONE_PAGE = 4096


@pytest.fixture(scope="module")
def overhead():
    """Wall seconds Ansible needs to start, ship and run one of our modules
    that returns at once (it fails its argument check)."""
    walls = []
    for dummy in range(2):
        res, wall = run_module("runc_exec_info", {"confirm_interval": -1})
        assert res["_status"] == "FAILED!", res
        walls.append(wall)
    # half again for the noise of a shared 2-core machine: a real hang is unbounded
    return 1.5 * max(walls)


def timed(tally, overhead, limit, module, args, **kw):
    """Run MODULE; a run longer than LIMIT (the module's own timeouts + 2 s)
    plus start-up counts as a hang in the tally."""
    res, wall = run_module(module, args, **kw)
    hung = wall > limit + overhead
    tally.add("faults", bad=hung or not decoys.no_crash(res))
    assert not hung, "%s took %.1fs, limit %.1fs + %.1fs start-up" % (module, wall, limit, overhead)
    assert decoys.no_crash(res), res
    return res, wall


def drain_args(harness, tmp_path, **over):
    args = {"min_age_seconds": 0, "evidence_dir": str(tmp_path / "evidence"), "docker_host": harness.docker_host,
            "confirm_interval": 0.3, "timeout": 10, "inspect_timeout": 2, "max_rounds": 1,
            # keep every byte: a 32 MiB dump is compared in full with the record
            "max_evidence_bytes": 0}
    args.update(over)
    return args


def drain_limit(args):
    """What runc_pipe_drain may take for one stuck exec: two progress samples
    (diagnosis, re-check), the drain, one more look, the Engine check."""
    return args["timeout"] + args["inspect_timeout"] + 3 * args["confirm_interval"] + 2


class Frozen:
    """dockerd SIGSTOPped for the duration of a with-block (always resumed)."""

    def __init__(self, harness):
        self.pid = int((harness.dkr / "d.pid").read_text())
        self._ctx = hdharness.frozen(self.pid)

    def __enter__(self):
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


def kill_when_drain_starts(evidence_dir, pid, delay=0.1, wait=60):
    """A timer thread: SIGKILL PID DELAY seconds after the drain opened its
    evidence file (the drain is then reading the pipe).  Returns the thread
    and a dict that says when and whether it fired."""
    fired = {}

    def watch():
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if os.path.isdir(evidence_dir) and any(n.endswith(".log") for n in os.listdir(evidence_dir)):
                time.sleep(delay)
                try:
                    os.kill(pid, signal.SIGKILL)
                    fired["at"] = time.monotonic()
                except ProcessLookupError:
                    fired["gone"] = True
                return
            time.sleep(0.005)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t, fired


def test_dockerd_frozen_during_detect(harness, release, tally, overhead):
    cid = harness.run_container("rel-fault-frozen-detect")
    dummy, pid = harness.hang(cid)
    decoys.assert_stuck(harness, cid, pid)
    with Frozen(harness):
        res, dummy = timed(tally, overhead, 4 + 2, "hung_container_info",
                           {"docker_host": harness.docker_host, "timeout": 2, "total_timeout": 4})
        assert res["_status"] == "FAILED!" and "not usable" in res["msg"], res
        res, dummy = timed(tally, overhead, 0.3 + 2, "runc_exec_info", {"container_ids": [cid], "confirm_interval": 0.3})
        assert [r["writer"]["pid"] for r in res["stuck_execs"]] == [pid], res
    # thawed, the daemon answers again (only the stuck container hangs)
    res, dummy = timed(tally, overhead, 4 + 2, "hung_container_info",
                       {"docker_host": harness.docker_host, "timeout": 2, "total_timeout": 4})
    assert res["_status"] == "SUCCESS" and cid in res["hung"], res


def test_dockerd_frozen_during_remediate(harness, release, tally, overhead, tmp_path):
    cid = harness.run_container("rel-fault-frozen-drain")
    exec_proc, pid = harness.hang(cid)
    decoys.assert_stuck(harness, cid, pid)
    args = drain_args(harness, tmp_path, container_ids=[cid])
    with Frozen(harness):
        res, dummy = timed(tally, overhead, drain_limit(args), "runc_pipe_drain", args)
        (entry,) = res["drained"]
        # the pipe is repaired without dockerd; only the Engine check cannot say so
        assert entry["unblocked"] is True and entry["verified"] is not True, entry
        assert entry["verify_reason"], entry
    decoys.check_nothing_lost(harness, entry, pid, tally)
    assert harness.inspect_answers(cid, timeout=5)
    exec_proc.wait(timeout=10)


def test_docker_socket_that_never_answers(harness, release, tally, overhead, tmp_path):
    silent = FakeDaemon(never)
    try:
        host = "unix://" + silent.path
        res, dummy = timed(tally, overhead, 1 + 2, "hung_container_info", {"docker_host": host, "timeout": 1})
        assert res["_status"] == "FAILED!" and silent.path in res["msg"], res
        assert silent.held, "the module never connected to the silent socket"

        cid = harness.run_container("rel-fault-silent")
        exec_proc, pid = harness.hang(cid)
        decoys.assert_stuck(harness, cid, pid)
        args = drain_args(harness, tmp_path, container_ids=[cid], docker_host=host, inspect_timeout=1)
        res, dummy = timed(tally, overhead, drain_limit(args), "runc_pipe_drain", args)
        (entry,) = res["drained"]
        assert entry["unblocked"] is True and entry["verified"] is not True and entry["verify_reason"], entry
        decoys.check_nothing_lost(harness, entry, pid, tally)
        exec_proc.wait(timeout=10)
    finally:
        silent.close()


def test_runc_init_exits_in_the_middle_of_a_drain(harness, release, tally, overhead, tmp_path):
    cid = harness.run_container("rel-fault-init-dies")
    # a one-page pipe makes the 32 MiB drain last long enough to be interrupted
    exec_proc, pid = harness.hang(cid, size=BIG_DUMP, pipe_size=ONE_PAGE)
    ev = decoys.assert_stuck(harness, cid, pid)
    assert ev["capacity"] == ONE_PAGE
    args = drain_args(harness, tmp_path, container_ids=[cid])
    timer, fired = kill_when_drain_starts(args["evidence_dir"], pid)
    res, dummy = timed(tally, overhead, drain_limit(args), "runc_pipe_drain", args)
    timer.join(5)
    assert "at" in fired, "runc init was gone before the kill: %s" % fired
    (entry,) = res["drained"]
    assert entry["pid"] == pid and entry["unblocked"] is True, entry
    body = decoys.check_nothing_lost(harness, entry, pid, tally, complete=False)
    assert len(body) < BIG_DUMP, "the drain ended before the kill: nothing was interrupted"
    # nothing is left blocked: runc exec wrote its error line, the shim took it
    exec_proc.wait(timeout=10)
    assert entry["queued_after"] <= len(decoys.exec_error_line(harness, pid)), entry
    assert harness.inspect_answers(cid, timeout=5)


def test_shim_killed_in_the_middle_of_a_drain(harness, release, tally, overhead, tmp_path):
    cid = harness.run_container("rel-fault-shim-dies")
    dummy, pid = harness.hang(cid, size=BIG_DUMP, pipe_size=ONE_PAGE)
    decoys.assert_stuck(harness, cid, pid)
    shim = decoys.shim_of(pid)
    args = drain_args(harness, tmp_path, container_ids=[cid])
    timer, fired = kill_when_drain_starts(args["evidence_dir"], shim)
    res, dummy = timed(tally, overhead, drain_limit(args), "runc_pipe_drain", args)
    timer.join(5)
    assert "at" in fired, "the shim was gone before the kill: %s" % fired
    assert hdharness.proc_comm(shim) is None or hdharness.proc_state(shim) == "Z"
    (entry,) = res["drained"]
    # our read end kept the pipe alive: runc init finished its dump into it
    assert entry["pid"] == pid and entry["unblocked"] is True, entry
    decoys.check_nothing_lost(harness, entry, pid, tally)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and hdharness.proc_state(pid) not in (None, "Z"):
        time.sleep(0.05)
    assert hdharness.proc_state(pid) in (None, "Z"), (hdharness.proc_state(pid), hdharness.syscall_of(pid))
    harness.docker("rm", "-f", cid, timeout=30)


def test_proc_entries_vanishing_during_the_scan(harness, release, tally, overhead, tmp_path):
    cid = harness.run_container("rel-fault-churn")
    exec_proc, pid = harness.hang(cid)
    decoys.assert_stuck(harness, cid, pid)
    churn = [subprocess.Popen(["sh", "-c", "while :; do /bin/true; /bin/true & wait; done"],
                              start_new_session=True) for dummy in range(2)]
    try:
        time.sleep(0.3)
        res, dummy = timed(tally, overhead, 0.3 + 2, "runc_exec_info", {"confirm_interval": 0.3})
        assert pid in [r["writer"]["pid"] for r in res["stuck_execs"]], res
        args = drain_args(harness, tmp_path)
        res, dummy = timed(tally, overhead, drain_limit(args), "runc_pipe_drain", args, check=True)
        assert pid in [w["pid"] for w in res["would_drain"]], res
        args = drain_args(harness, tmp_path, container_ids=[cid])
        res, dummy = timed(tally, overhead, drain_limit(args), "runc_pipe_drain", args)
        (entry,) = res["drained"]
        assert entry["pid"] == pid and entry["unblocked"], entry
        decoys.check_nothing_lost(harness, entry, pid, tally)
        exec_proc.wait(timeout=10)
    finally:
        for p in churn:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


def _resets(conn, line, d):
    """Reads the request and hangs up with a reset: EPIPE/ECONNRESET, no answer."""
    import struct
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _banner(conn, line, d):
    conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")


@pytest.mark.parametrize("peer", [_resets, _banner], ids=["resets", "non-http-banner"])
def test_engine_peer_without_an_http_answer_never_verifies(harness, release, tally, overhead, tmp_path, peer):
    """After a real drain, the Engine check talks to a peer that resets the
    connection or speaks something other than HTTP: not an answer, so the
    repair is not 'verified'."""
    fake = FakeDaemon(peer)
    try:
        cid = harness.run_container("rel-fault-no-http-%s" % peer.__name__.strip("_"))
        exec_proc, pid = harness.hang(cid)
        decoys.assert_stuck(harness, cid, pid)
        args = drain_args(harness, tmp_path, container_ids=[cid], docker_host=fake.docker_host, inspect_timeout=2)
        res, dummy = timed(tally, overhead, drain_limit(args), "runc_pipe_drain", args)
        (entry,) = res["drained"]
        assert fake.requests, "the Engine check never reached the peer"
        assert entry["unblocked"] is True and entry["verified"] is None, entry
        assert "no HTTP answer" in entry["verify_reason"], entry
        decoys.check_nothing_lost(harness, entry, pid, tally)
        exec_proc.wait(timeout=10)
    finally:
        fake.close()


def test_docker_socket_with_a_full_listen_backlog(tally, overhead, tmp_path):
    """A daemon that stopped accepting: its backlog is full and a timed unix
    connect fails with EAGAIN at once.  That is a daemon not answering (the
    stuck engine), not one that is absent."""
    path = str(tmp_path / "d.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(0)
    held = []
    try:
        for dummy in range(3):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.setblocking(False)
            try:
                c.connect(path)
            except OSError:
                pass
            held.append(c)
        res, dummy = timed(tally, overhead, 1 + 2, "hung_container_info", {"docker_host": "unix://" + path, "timeout": 1})
        assert res["_status"] == "FAILED!" and "not accepting connections" in res["msg"], res
        assert "Resource temporarily unavailable" not in res["msg"], res
    finally:
        for c in held:
            c.close()
        listener.close()


def test_fallback_kill_kills_only_a_writer_still_stuck_at_that_moment(harness, release, tally, overhead, tmp_path):
    """A dump that outlasts the drain's timeout (256 MiB through a one-page
    pipe, 1 s): with fallback=kill the writer is killed only after it is seen,
    with reading paused, blocked on its pipe without progress, through a
    pidfd; what it wrote stays evidence and the container is repaired."""
    cid = harness.run_container("rel-fault-kill-proven")
    exec_proc, pid = harness.hang(cid, size=KILL_DUMP, pipe_size=ONE_PAGE)
    decoys.assert_stuck(harness, cid, pid)
    args = drain_args(harness, tmp_path, container_ids=[cid], timeout=1, fallback="kill")
    res, dummy = timed(tally, overhead, drain_limit(args) + 5 + 1, "runc_pipe_drain", args)
    (entry,) = res["drained"]
    assert entry["pid"] == pid and entry["killed"] is True, entry
    assert entry["kill_note"].startswith("writer pid %d killed (blocked in write on pipe" % pid), entry
    assert "by pidfd" in entry["kill_note"], entry
    assert entry["unblocked"] is True, entry
    body = decoys.check_nothing_lost(harness, entry, pid, tally, complete=False)
    assert len(body) < KILL_DUMP, "the dump ended before the timeout: nothing was killed"
    exec_proc.wait(timeout=10)
    assert harness.inspect_answers(cid, timeout=5)


# ---- a full disk: the workload is repaired even when its evidence cannot be written
@pytest.fixture
def tiny_fs(tmp_path):
    """A tmpfs of SIZE bytes: a disk that fills up for real."""
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


def kept_as_evidence(harness, entry, init_pid, tally):
    """A drain's result says exactly what its evidence file kept: the kept
    ranges are the file's body, their sha256 is stated, kept + elided + lost
    is everything read, and everything read begins with what runc init wrote.
    Counted in the tally as a drain (lost bytes here are an accounting error,
    not the disk's)."""
    length, sha, data = harness.record(init_pid)
    kept = b"".join(data[a:b] for a, b in entry["evidence_kept_ranges"])
    body = b""
    if entry["evidence_path"]:
        # a full disk may leave no room for the trailer: the result is the record
        with open(entry["evidence_path"], "rb") as f:
            head, sep, body = f.read().partition(b"----- hangdoctor: pipe bytes follow -----\n")
        body = body[:body.rfind(b"\n----- hangdoctor: end of pipe bytes")] if b"end of pipe bytes" in body else body
    wrong = (body != kept or entry["evidence_kept_bytes"] != len(kept)
             or entry["evidence_kept_sha256"] != hashlib.sha256(kept).hexdigest()
             or entry["evidence_kept_bytes"] + entry["evidence_elided_bytes"] + entry["evidence_lost_bytes"] != entry["bytes"]
             or entry["bytes"] < length)
    tally.add("drains", bad=wrong)
    assert not wrong, entry
    return kept


def test_disk_full_in_the_middle_of_a_drain(harness, release, tally, overhead, tiny_fs):
    fs = tiny_fs(64 * 1024)
    cid = harness.run_container("rel-fault-disk-full")
    exec_proc, pid = harness.hang(cid, size=1024 * 1024)
    decoys.assert_stuck(harness, cid, pid)
    args = drain_args(harness, fs, container_ids=[cid])
    res, dummy = timed(tally, overhead, drain_limit(args), "runc_pipe_drain", args)
    (entry,) = res["drained"]
    assert entry["pid"] == pid and entry["unblocked"] is True and entry["verified"] is True, entry
    assert "No space left" in entry["evidence_error"] and 0 < entry["evidence_kept_bytes"] < 1024 * 1024, entry
    assert entry["evidence_kept_ranges"] == [[0, entry["evidence_kept_bytes"]]]
    assert entry["evidence_lost_bytes"] == entry["bytes"] - entry["evidence_kept_bytes"]
    assert "not kept as evidence" in res["msg"], res["msg"]
    kept_as_evidence(harness, entry, pid, tally)
    length, sha, data = harness.record(pid)
    assert entry["sha256"] == hashlib.sha256(data + decoys.exec_error_line(harness, pid)[:entry["bytes"] - length]).hexdigest()
    exec_proc.wait(timeout=10)
    assert harness.inspect_answers(cid, timeout=5)


def test_disk_full_before_the_drain_still_repairs_and_leaves_no_files(harness, release, tally, overhead, tiny_fs):
    fs = tiny_fs(32 * 1024)
    args = drain_args(harness, fs)
    os.makedirs(args["evidence_dir"], mode=0o700)
    fd = os.open(str(fs / "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"f" * 512)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)
    cid = harness.run_container("rel-fault-disk-full-start")
    for attempt in range(2):
        exec_proc, pid = harness.hang(cid)
        decoys.assert_stuck(harness, cid, pid)
        res, dummy = timed(tally, overhead, drain_limit(args), "runc_pipe_drain", dict(args, container_ids=[cid]))
        (entry,) = res["drained"]
        assert entry["pid"] == pid and entry["unblocked"] is True and entry["verified"] is True, entry
        assert entry["evidence_path"] is None and entry["evidence_kept_bytes"] == 0, entry
        assert entry["evidence_lost_bytes"] == entry["bytes"] > 0 and "No space left" in entry["evidence_error"]
        kept_as_evidence(harness, entry, pid, tally)
        exec_proc.wait(timeout=10)
        assert harness.inspect_answers(cid, timeout=5)
    # retries on a full disk leave no pile of half-written files
    assert os.listdir(args["evidence_dir"]) == []


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory bind-mounted read-only onto itself: a read-only filesystem for real."""
    mounts = []

    def make():
        d = tmp_path / ("ro%d" % len(mounts))
        d.mkdir(mode=0o700)
        subprocess.run(["mount", "--bind", str(d), str(d)], check=True)
        mounts.append(d)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(d)], check=True)
        return d
    yield make
    for d in mounts:
        subprocess.run(["umount", "-l", str(d)], check=False)


def test_no_room_for_the_evidence_dir_and_a_read_only_lock_dir_still_repair(harness, release, tally, overhead,
                                                                            tiny_fs, read_only_dir):
    """The evidence directory cannot be created (a filesystem out of inodes:
    ENOSPC) and the lock directory is on a read-only filesystem (EROFS): the
    drain still repairs the stuck exec, counts and hashes every byte, carries
    them in the result (head and tail, up to 1 MiB) and says what it could not
    do, instead of failing with the writer still blocked."""
    fs = tiny_fs(64 * 1024)
    subprocess.run(["mount", "-o", "remount,nr_inodes=1", str(fs)], check=True)
    with pytest.raises(OSError) as full:
        os.mkdir(str(fs / "probe"))
    assert full.value.errno == errno.ENOSPC
    locks = read_only_dir()
    with pytest.raises(OSError) as ro:
        os.mkdir(str(locks / "probe"))
    assert ro.value.errno == errno.EROFS
    cid = harness.run_container("rel-fault-no-evidence-no-lock")
    exec_proc, pid = harness.hang(cid)
    decoys.assert_stuck(harness, cid, pid)
    args = drain_args(harness, fs, container_ids=[cid], lock_dir=str(locks / "hangdoctor"))
    res, dummy = timed(tally, overhead, drain_limit(args), "runc_pipe_drain", args)
    assert res["_status"] == "CHANGED" and res["changed"] is True, res
    assert "No space left" in res["evidence_dir_error"] and "Read-only" in res["lock_dir_error"], res
    (entry,) = res["drained"]
    assert entry["pid"] == pid and entry["unblocked"] is True and entry["verified"] is True, entry
    assert entry["evidence_path"] is None and "No space left" in entry["evidence_error"], entry
    assert "drained without the lock" in entry["lock_error"] and "Read-only" in entry["lock_error"], entry
    length, sha, data = harness.record(pid)
    assert length < 512 * 1024  # the whole dump fits the inline head
    inline = entry["evidence_inline"]
    kept = base64.b64decode(inline["base64"])
    assert inline["ranges"] == [[0, entry["bytes"]]] and len(kept) == entry["bytes"] >= length
    assert kept[:length] == data and hashlib.sha256(kept).hexdigest() == entry["sha256"] == inline["sha256"]
    tally.add("drains", bad=kept[:length] != data)
    exec_proc.wait(timeout=10)
    assert harness.inspect_answers(cid, timeout=5)
    assert os.listdir(str(locks)) == [] and os.listdir(str(fs)) == []
