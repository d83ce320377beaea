"""_deadline: the one worker pool and unix connect under a deadline, with real
threads and real sockets."""
import errno
import os
import socket
import threading
import time

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _deadline
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils.ttrpc_fakes import full_backlog


def test_pool_collects_every_result_and_returns_at_once_when_done():
    pool = _deadline.DeadlinePool(time.monotonic() + 30)
    pool.map(range(20), lambda i: pool.call(i, lambda x: x * x, i, repr), 4)
    t0 = time.monotonic()
    out = pool.collect(range(20), lambda k: 'missing')
    assert out == dict((i, i * i) for i in range(20))
    assert time.monotonic() - t0 < 5


def test_pool_returns_by_the_deadline_with_stuck_work_marked_missing():
    release = threading.Event()
    pool = _deadline.DeadlinePool(time.monotonic() + 0.5)

    def work(i):
        if i == 3:
            release.wait(30)  # stuck: never before the deadline
        return i

    pool.map(range(6), lambda i: pool.call(i, work, i, repr), 6)
    t0 = time.monotonic()
    out = pool.collect(range(6), lambda k: 'missing %d' % k)
    took = time.monotonic() - t0
    release.set()
    assert out[3] == 'missing 3' and [out[i] for i in (0, 1, 2, 4, 5)] == [0, 1, 2, 4, 5]
    assert took < 0.5 + _deadline.GRACE + 1.0, took


def test_pool_concurrency_is_bounded_and_a_surprise_keeps_its_key():
    running = []
    peak = []
    lock = threading.Lock()

    def work(i):
        with lock:
            running.append(i)
            peak.append(len(running))
        time.sleep(0.05)
        with lock:
            running.remove(i)
        if i == 7:
            raise ValueError('boom')
        return i

    pool = _deadline.DeadlinePool(time.monotonic() + 30)
    pool.map(range(12), lambda i: pool.call(i, work, i, lambda e: 'failed: %r' % (e,)), 3)
    out = pool.collect(range(12), lambda k: 'missing')
    assert max(peak) <= 3
    assert out[7] == "failed: ValueError('boom')" and out[11] == 11


def test_connect_unix_reaches_a_listener_and_reports_nothing_there(tmp_path):
    path = str(tmp_path / 's.sock')
    with pytest.raises(OSError) as e:
        _deadline.connect_unix(path, time.monotonic() + 1)
    assert e.value.errno == errno.ENOENT
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(4)
    try:
        c = _deadline.connect_unix(path, time.monotonic() + 1)
        c.close()
    finally:
        srv.close()


def test_connect_unix_calls_a_full_backlog_not_accepting_by_the_deadline(tmp_path):
    path = str(tmp_path / 'full.sock')
    with full_backlog(path):  # never accepts
        t0 = time.monotonic()
        with pytest.raises(_deadline.BacklogFull) as e:
            _deadline.connect_unix(path, time.monotonic() + 0.4)
        assert 0.35 <= time.monotonic() - t0 < 3
        assert 'backlog full' in str(e.value)
        assert isinstance(e.value, _deadline.DeadlineExceeded)


def test_connect_unix_reaches_a_socket_whose_path_is_longer_than_sun_path(tmp_path):
    deep = tmp_path
    while len(str(deep)) < 150:
        deep = deep / ('d' * 20)
    deep.mkdir(parents=True)
    path = str(deep / 's.sock')
    assert len(path) > _deadline.MAX_UNIX_PATH
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cwd = os.getcwd()
    os.chdir(str(deep))
    try:
        srv.bind('s.sock')  # bind through a short relative name
    finally:
        os.chdir(cwd)
    srv.listen(4)
    try:
        c = _deadline.connect_unix(path, time.monotonic() + 1)
        a, dummy = srv.accept()
        c.sendall(b'x')
        assert a.recv(1) == b'x'
        a.close()
        c.close()
    finally:
        srv.close()


# ---- run_bounded: a command under a deadline, with its process group ----------

def _gone_or_zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (IOError, OSError):
        return True


def test_run_bounded_returns_the_output_and_exit_code():
    rc, out, err = _deadline.run_bounded(["sh", "-c", "echo out; echo err >&2; exit 3"], 30)
    assert (rc, out, err) == (3, b"out\n", b"err\n")
    rc, out, err = _deadline.run_bounded(["sh", "-c", "echo out; echo err >&2"], 30, merge_stderr=True,
                                         env={"PATH": "/usr/bin:/bin"}, cwd="/")
    assert (rc, out, err) == (0, b"out\nerr\n", None)


def test_run_bounded_kills_a_command_that_ignores_its_deadline_with_its_process_group(tmp_path):
    """sh starts a sleep of its own and waits for another: at the deadline
    both die (SIGKILL to the group), sh is reaped (no zombie is left behind),
    and the call returns long before either sleep would end."""
    pids = tmp_path / "pids"
    script = "sleep 30 & echo $$ $! > %s; sleep 30" % pids
    t0 = time.monotonic()
    with pytest.raises(_deadline.CommandTimeout) as e:
        _deadline.run_bounded(["sh", "-c", script], 1.0)
    took = time.monotonic() - t0
    assert took < 1.0 + _deadline.REAP_SECONDS, took
    sh_pid, background = [int(x) for x in pids.read_text().split()]
    assert e.value.pid == sh_pid and "did not finish within 1.0 s" in str(e.value)
    # our child is reaped by the call itself
    assert not os.path.exists("/proc/%d" % sh_pid)
    # the background sleep, reparented to init, was killed with the group
    deadline = time.monotonic() + 10
    while not _gone_or_zombie(background) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone_or_zombie(background)


def test_run_bounded_leaves_a_command_that_cannot_start_to_the_caller(tmp_path):
    with pytest.raises(OSError):
        _deadline.run_bounded([str(tmp_path / "absent")], 5)
