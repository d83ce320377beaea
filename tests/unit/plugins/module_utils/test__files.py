"""Atomic writes and bounded reads of our own files (module_utils/_files.py)."""
import os

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _files as fl


def test_write_atomic_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "m" / "hangdoctor.prom"
    fl.write_atomic(str(p), b"a 1\n", 0o644)
    fl.write_atomic(str(p), b"a 2\n", 0o600)
    assert p.read_bytes() == b"a 2\n"
    assert oct(p.stat().st_mode & 0o777) == oct(0o600)
    assert os.listdir(str(p.parent)) == ["hangdoctor.prom"]


def test_rename_is_atomic_for_an_open_reader(tmp_path):
    p = tmp_path / "hangdoctor.prom"
    p.write_text("old\n")
    with open(str(p)) as reader:
        fl.write_atomic(str(p), b"new\n")
        assert reader.read() == "old\n"
    assert p.read_text() == "new\n"


def test_temp_file_is_not_a_prom_file(tmp_path, monkeypatch):
    seen = []
    real = os.rename

    def spy(src, dst):
        seen.append(os.path.basename(src))
        return real(src, dst)

    monkeypatch.setattr(os, "rename", spy)
    fl.write_atomic(str(tmp_path / "hangdoctor.prom"), b"x 1\n")
    assert seen and seen[0].startswith(".hangdoctor.prom.") and seen[0].endswith(".tmp")


def test_same_file_and_bad_mode():
    assert fl.parse_mode("0640") == 0o640
    with pytest.raises(fl.WriteError):
        fl.parse_mode("rw-r")


def test_write_atomic_without_dir_creation(tmp_path):
    with pytest.raises(fl.WriteError):
        fl.write_atomic(str(tmp_path / "no" / "f"), b"x", create_dir=False)


def test_write_atomic_keeps_the_owner_of_the_file_it_replaces(tmp_path):
    p = tmp_path / "pod.yaml"
    p.write_text("a: 1\n")
    os.chown(str(p), 65534, 65534)
    fl.write_atomic(str(p), b"a: 2\n", 0o640, keep_owner=True)
    st = p.stat()
    assert (st.st_uid, st.st_gid) == (65534, 65534) and p.read_text() == "a: 2\n"


def test_read_small_bounded_no_symlink_no_fifo(tmp_path):
    f = tmp_path / "m.prom"
    f.write_bytes(b"x" * 100)
    assert fl.read_small(str(f), limit=10) == "x" * 10
    assert fl.read_small(str(tmp_path / "absent")) == ""
    link = tmp_path / "link"
    link.symlink_to(f)
    assert fl.read_small(str(link)) == ""
    fifo = tmp_path / "fifo"
    os.mkfifo(str(fifo))
    assert fl.read_small(str(fifo)) == ""  # returns at once, never blocks on the FIFO
