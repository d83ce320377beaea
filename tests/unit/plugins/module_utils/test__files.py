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

    def spy(src, dst, **kwargs):
        seen.append(os.path.basename(src))
        return real(src, dst, **kwargs)

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


# ---- a directory someone else can write in (issue 21) -------------------------


def test_a_symlink_in_the_temporary_files_place_is_never_chmodded(tmp_path, monkeypatch):
    """The owner of a textfile directory swaps the temporary file for a
    symlink while root writes it: root must not chmod the link's target.  The
    old writer chmodded the temporary file by path after writing it, following
    the link (any file on the host made 0644)."""
    victim = tmp_path / "shadow"
    victim.write_text("secret\n")
    victim.chmod(0o600)
    d = tmp_path / "textfile"
    d.mkdir()
    real_fsync = os.fsync

    def swap_then_fsync(fd):
        # the race, made certain: while the data goes to disk, the temporary name becomes a link
        for n in os.listdir(str(d)):
            if n.startswith(".hangdoctor.prom.") and not os.path.islink(str(d / n)):
                os.unlink(str(d / n))
                os.symlink(str(victim), str(d / n))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", swap_then_fsync)
    try:
        fl.write_atomic(str(d / "hangdoctor.prom"), b"a 1\n", 0o644)
    except fl.WriteError:
        pass
    monkeypatch.undo()
    assert oct(victim.stat().st_mode & 0o777) == oct(0o600)
    assert victim.read_text() == "secret\n"


def test_mode_is_set_on_the_descriptor_not_by_path(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "chmod", lambda *a, **k: calls.append(a))
    fl.write_atomic(str(tmp_path / "f"), b"x", 0o640)
    assert not calls
    assert oct((tmp_path / "f").stat().st_mode & 0o777) == oct(0o640)


@pytest.mark.parametrize("uid,mode,why", [
    (1000, 0o755, "owned by uid 1000"),
    (0, 0o777, "every user may write"),
    (0, 0o1777, None),
    (0, 0o755, None),
])
def test_safe_dir_refuses_a_directory_of_another_user(tmp_path, uid, mode, why):
    d = tmp_path / "reports"
    d.mkdir()
    os.chown(str(d), uid, 0)
    os.chmod(str(d), mode)
    if why is None:
        fl.write_atomic(str(d / "r.md"), b"ok\n", 0o640, safe_dir=True)
        assert (d / "r.md").read_bytes() == b"ok\n"
        assert fl.check_dir(str(d)) is None
        return
    with pytest.raises(fl.WriteError) as e:
        fl.write_atomic(str(d / "r.md"), b"all clear\n", 0o640, safe_dir=True)
    assert why in str(e.value) and "refusing to write" in str(e.value)
    assert not (d / "r.md").exists()
    assert why in fl.check_dir(str(d))


def test_safe_dir_refuses_a_symlink_in_the_directorys_place(tmp_path):
    real = tmp_path / "elsewhere"
    real.mkdir()
    (tmp_path / "reports").symlink_to(real)
    with pytest.raises(fl.WriteError) as e:
        fl.write_atomic(str(tmp_path / "reports" / "r.md"), b"x", safe_dir=True)
    assert "not a directory" in str(e.value)
    assert os.listdir(str(real)) == []


def test_same_file_does_not_follow_a_symlink(tmp_path):
    (tmp_path / "real").write_bytes(b"x")
    (tmp_path / "real").chmod(0o644)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert fl.same_file(str(tmp_path / "real"), b"x", 0o644)
    assert not fl.same_file(str(tmp_path / "link"), b"x", 0o644)
