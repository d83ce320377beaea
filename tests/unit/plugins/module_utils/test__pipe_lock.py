"""Pipe locks and done markers: one holder at a time, never created through a
planted symlink, the lock directory rules."""
import os

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _pipe_lock


def test_one_holder_per_pipe_and_writer(tmp_path):
    locks = _pipe_lock.prepare_lock_dir(str(tmp_path))
    assert os.stat(locks).st_mode & 0o777 == 0o700
    first = _pipe_lock.PipeLock(str(tmp_path), 42, 100, 7)
    second = _pipe_lock.PipeLock(str(tmp_path), 42, 100, 7)
    other = _pipe_lock.PipeLock(str(tmp_path), 43, 100, 7)
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


def test_done_marker(tmp_path):
    _pipe_lock.prepare_lock_dir(str(tmp_path))
    lock = _pipe_lock.PipeLock(str(tmp_path), 42, 100, 7)
    assert not lock.is_done()
    lock.mark_done("/var/log/hangdoctor/x.log\n")
    assert lock.is_done()
    with open(lock.done_path) as f:
        assert f.read() == "/var/log/hangdoctor/x.log\n"


def test_lock_files_are_never_opened_through_a_symlink(tmp_path):
    _pipe_lock.prepare_lock_dir(str(tmp_path))
    target = tmp_path / "target"
    target.write_text("x")
    lock = _pipe_lock.PipeLock(str(tmp_path), 42, 100, 7)
    os.symlink(str(target), lock.path)
    os.symlink(str(target), lock.done_path)
    with pytest.raises(OSError):
        lock.acquire()
    with pytest.raises(OSError):
        lock.mark_done("y")
    assert target.read_text() == "x"


def test_lock_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / ".locks").write_text("")
    with pytest.raises(_pipe_lock.LockError, match="not a directory"):
        _pipe_lock.prepare_lock_dir(str(tmp_path))
