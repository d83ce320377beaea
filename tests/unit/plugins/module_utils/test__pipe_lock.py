"""Pipe locks and done markers: one holder per pipe, a host-wide directory
that refuses symlinks and shared modes, never a file created through a
planted symlink, pruning that never breaks a held lock."""
import os

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _pipe_lock
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs

PROC = _procfs.Proc("/proc")


@pytest.fixture
def lockdir(tmp_path):
    d = _pipe_lock.LockDir(str(tmp_path / "locks"))
    yield d
    d.close()


def test_one_holder_per_pipe_whatever_the_writer(lockdir):
    assert os.stat(lockdir.path).st_mode & 0o777 == 0o700
    first = lockdir.lock(9, 42, 100, 7)
    # the runc exec of the same pipe
    second = lockdir.lock(9, 42, 99, 6)
    other = lockdir.lock(9, 43, 100, 7)
    assert first.acquire()
    try:
        assert not second.acquire()
        assert other.acquire()
        other.release()
    finally:
        first.release()
    assert second.acquire()
    second.release()
    assert os.stat(first.path).st_mode & 0o777 == 0o600


def test_done_marker_is_per_writer(lockdir):
    lock = lockdir.lock(9, 42, 100, 7)
    assert not lock.is_done()
    lock.mark_done("/var/log/hangdoctor/x.log\n")
    assert lock.is_done() and not lockdir.lock(9, 42, 99, 6).is_done()
    with open(lock.done_path) as f:
        assert f.read() == "/var/log/hangdoctor/x.log\n"
    assert os.stat(lock.done_path).st_mode & 0o777 == 0o600


def test_lock_files_are_never_opened_through_a_symlink(lockdir, tmp_path):
    target = tmp_path / "target"
    target.write_text("x")
    lock = lockdir.lock(9, 42, 100, 7)
    os.symlink(str(target), lock.path)
    os.symlink(str(target), lock.done_path)
    with pytest.raises(OSError):
        lock.acquire()
    with pytest.raises(OSError):
        lock.mark_done("y")
    assert target.read_text() == "x"


def test_lock_dir_that_is_a_symlink_or_a_file_is_refused(tmp_path):
    target = tmp_path / "target"
    target.mkdir(mode=0o700)
    (tmp_path / "run").mkdir(mode=0o700)
    os.symlink(str(target), str(tmp_path / "run" / "hangdoctor"))
    if os.geteuid() == 0:
        os.lchown(str(tmp_path / "run" / "hangdoctor"), 65534, 65534)
        with pytest.raises(_pipe_lock.LockError, match="lock_dir .* symlink owned by uid 65534"):
            _pipe_lock.LockDir(str(tmp_path / "run" / "hangdoctor"))
    (tmp_path / "file").write_text("")
    with pytest.raises(_pipe_lock.LockError, match="Not a directory"):
        _pipe_lock.LockDir(str(tmp_path / "file"))
    assert os.listdir(str(target)) == []


def test_prune_removes_stale_markers_and_unheld_old_locks_only(lockdir):
    me = (os.getpid(), PROC.stat(os.getpid())["starttime"])
    alive = lockdir.lock(9, 42, me[0], me[1])
    alive.mark_done("a\n")
    gone = lockdir.lock(9, 43, 4194300, 1)
    gone.mark_done("b\n")
    held = lockdir.lock(9, 44, 1, 1)
    assert held.acquire()
    free = lockdir.lock(9, 45, 1, 1)
    assert free.acquire()
    free.release()
    young = lockdir.lock(9, 46, 1, 1)
    assert young.acquire()
    young.release()
    old = os.path.getmtime(held.path) - _pipe_lock.LOCK_KEEP_SECONDS - 10
    for lock in (held, free):
        os.utime(lock.path, (old, old))
    assert lockdir.prune(PROC) == 2
    left = sorted(os.listdir(lockdir.path))
    assert left == sorted([alive.done_name, held.name, young.name])
    # the held lock still excludes others after the prune
    assert not lockdir.lock(9, 44, 2, 2).acquire()
    held.release()


def test_a_lock_pruned_between_open_and_flock_is_taken_again(lockdir, monkeypatch):
    lock = lockdir.lock(9, 42, 100, 7)
    real_flock = _pipe_lock._flock
    calls = []

    def flock_after_prune(fd):
        if not calls:
            # another run prunes the file right before our flock
            os.unlink(lock.name, dir_fd=lockdir.fd)
        calls.append(fd)
        return real_flock(fd)
    monkeypatch.setattr(_pipe_lock, "_flock", flock_after_prune)
    assert lock.acquire()
    assert len(calls) == 2 and os.fstat(lock.fd).st_ino == os.stat(lock.path).st_ino
    lock.release()
