"""Evidence files: every byte counted and hashed, head and tail past the
limit, never written through a planted file, the directory rules."""
import hashlib
import os

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _evidence
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils.pipe_writers import CID


@pytest.fixture
def evdir(tmp_path):
    d = _evidence.EvidenceDir(str(tmp_path / "ev"))
    yield d
    d.close()


def test_evidence_head_and_tail_past_the_limit(evdir):
    ev = _evidence.Evidence(evdir, "e.log", ["h: 1"], limit=10)
    data = bytes(range(100))
    for i in range(0, 100, 7):
        ev.add(data[i:i + 7])
    ev.close()
    assert ev.total == 100 and ev.elided == 90 and ev.lost == 0
    assert ev.kept_ranges == [[0, 5], [95, 100]] and ev.kept == 10
    assert ev.kept_sha.hexdigest() == hashlib.sha256(data[:5] + data[-5:]).hexdigest()
    dummy, body, trailer = _evidence.read_evidence(ev.path)
    assert body == data[:5] + _evidence.ELIDED_MARK % 90 + data[-5:]
    assert hashlib.sha256(data).hexdigest() in trailer


def test_evidence_file_never_written_through_a_planted_file(evdir, tmp_path):
    target = tmp_path / "planted"
    target.write_text("x")
    os.symlink(str(target), os.path.join(evdir.path, "e.log"))
    ev = _evidence.Evidence(evdir, "e.log", [], 0)
    ev.add(b"abc")
    ev.close()
    assert target.read_text() == "x"
    assert ev.path is None and "File exists" in ev.error
    assert (ev.total, ev.kept, ev.lost) == (3, 0, 3)


def opened_path(path):
    """Open the evidence directory as the drain does (created 0700 or
    checked), close it, and return the path it opened."""
    d = _evidence.EvidenceDir(path)
    d.close()
    return d.path


def test_evidence_dir_rules(tmp_path):
    with pytest.raises(_evidence.EvidenceError, match="absolute"):
        opened_path("relative/dir")
    made = opened_path(str(tmp_path / "a" / "b"))
    assert os.stat(made).st_mode & 0o777 == 0o700
    os.symlink(made, str(tmp_path / "mine"))
    assert opened_path(str(tmp_path / "mine")) == made
    if os.geteuid() == 0:
        os.symlink(made, str(tmp_path / "theirs"))
        os.lchown(str(tmp_path / "theirs"), 65534, 65534)
        with pytest.raises(_evidence.EvidenceError, match="symlink owned by uid 65534"):
            opened_path(str(tmp_path / "theirs"))
    # readable by others only: tightened
    os.chmod(made, 0o755)
    opened_path(made)
    assert os.stat(made).st_mode & 0o777 == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_a_directory_another_user_owns_or_may_write_is_refused(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(str(theirs), 65534, 65534)
    with pytest.raises(_evidence.EvidenceError, match="owned by uid 65534, not by uid 0"):
        opened_path(str(theirs))
    # nor anything below a directory another user could rename things in
    with pytest.raises(_evidence.EvidenceError, match="owned by uid 65534"):
        opened_path(str(theirs / "evidence"))
    assert not (theirs / "evidence").exists()
    for mode in (0o777, 0o770, 0o702):
        shared = tmp_path / ("shared-%o" % mode)
        shared.mkdir()
        os.chmod(str(shared), mode)
        with pytest.raises(_evidence.EvidenceError, match="writable by group or others"):
            opened_path(str(shared))
        assert os.stat(str(shared)).st_mode & 0o777 == mode
    # nor anything below a directory everybody may write to
    with pytest.raises(_evidence.EvidenceError, match="shared-777 is writable by others"):
        opened_path(str(tmp_path / "shared-777" / "evidence"))
    # a root-owned directory its group may write on the way (Ubuntu's /var/log) is fine
    assert opened_path(str(tmp_path / "shared-770" / "evidence")) == str(
        tmp_path / "shared-770" / "evidence")
    # a sticky, world-writable directory on the way (like /tmp) is fine
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(str(sticky), 0o1777)
    assert opened_path(str(sticky / "evidence")) == str(sticky / "evidence")


def test_a_component_swapped_for_a_symlink_is_never_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    real, fd = _evidence.open_private_dir(str(tmp_path / "ev"), "evidence_dir")
    os.close(fd)
    # a component replaced by another user's symlink is refused, and nothing
    # is created in its target
    os.rmdir(real)
    os.symlink(str(elsewhere), real)
    if os.geteuid() == 0:
        os.lchown(real, 65534, 65534)
        with pytest.raises(_evidence.EvidenceError, match="ev is a symlink owned by uid 65534, refusing it"):
            _evidence.open_private_dir(str(tmp_path / "ev" / "sub"), "evidence_dir")
    else:
        # as a user: a symlink in a directory others may write is refused as well
        os.chmod(str(tmp_path), 0o777)
        with pytest.raises(_evidence.EvidenceError, match="symlink in a directory others may write"):
            _evidence.open_private_dir(str(tmp_path / "ev" / "sub"), "evidence_dir")
    assert os.listdir(str(elsewhere)) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="lchown needs root")
def test_a_middle_symlink_of_another_user_is_not_followed(tmp_path):
    """realpath() resolved the whole path before the O_NOFOLLOW walk: a
    symlink another user planted half way (in a sticky directory such as
    /tmp) was followed into a directory of that user's choosing."""
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(str(sticky), 0o1777)
    bait = tmp_path / "bait"
    bait.mkdir(mode=0o700)  # root's, private: would pass every check at the end of the walk
    os.symlink(str(bait), str(sticky / "hd"))
    os.lchown(str(sticky / "hd"), 65534, 65534)
    with pytest.raises(_evidence.EvidenceError, match="hd is a symlink owned by uid 65534, refusing it"):
        opened_path(str(sticky / "hd" / "evidence"))
    assert os.listdir(str(bait)) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_root_symlinks_are_followed_only_where_only_root_could_put_them(tmp_path):
    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    run = tmp_path / "run"
    run.mkdir(mode=0o755)
    # like /var/run -> ../run: root's, in a directory only root may write
    os.symlink("../run", str(var / "run"))
    assert opened_path(str(var / "run" / "hangdoctor")) == str(run / "hangdoctor")
    assert os.stat(str(run / "hangdoctor")).st_mode & 0o777 == 0o700
    # an absolute target is walked from / the same way
    os.symlink(str(run), str(var / "abs"))
    assert opened_path(str(var / "abs" / "hangdoctor")) == str(run / "hangdoctor")
    # a directory its group may write could have had the link renamed into it
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(str(shared), 0o775)
    os.symlink(str(run), str(shared / "run"))
    with pytest.raises(_evidence.EvidenceError, match="symlink in a directory others may write"):
        opened_path(str(shared / "run" / "x"))
    # loops end
    os.symlink("loop", str(var / "loop"))
    with pytest.raises(_evidence.EvidenceError, match="too many levels"):
        opened_path(str(var / "loop" / "x"))
    assert sorted(os.listdir(str(run))) == ["hangdoctor"]


def test_read_evidence_refuses_other_files_and_reads_an_unfinished_one(evdir, tmp_path):
    other = tmp_path / "other.log"
    other.write_bytes(b"not evidence\n")
    with pytest.raises(_evidence.EvidenceError, match="not a hangdoctor evidence file"):
        _evidence.read_evidence(str(other))
    ev = _evidence.Evidence(evdir, "e.log", ["h: 1"])
    ev.add(b"abc")
    os.close(ev.fd)  # the run died before close(): no trailer
    assert _evidence.read_evidence(ev.path) == ("h: 1\n", b"abc", "")


def _evidence_files(evdir, ages, size=1000, now=1000000000.0):
    names = []
    for i, age in enumerate(ages):
        name = _evidence.evidence_name(CID, 100 + i, 7, now - age)
        with open(os.path.join(evdir.path, name), "wb") as f:
            f.write(b"x" * size)
        os.utime(os.path.join(evdir.path, name), (now - age, now - age))
        names.append(name)
    return names


def test_retention_by_age_count_and_bytes_oldest_first(evdir):
    now = 1000000000.0
    hour = 3600
    names = _evidence_files(evdir, [2 * hour, 3 * hour, 4 * hour, 5 * hour, 6 * hour, 40 * 86400], now=now)
    other = os.path.join(evdir.path, "notes.txt")
    with open(other, "w") as f:
        f.write("not ours")
    os.utime(other, (0, 0))
    got = _evidence.apply_retention(evdir, count=0, max_bytes=0, days=30, now=now)
    assert got == {"removed": 1, "removed_bytes": 1000}
    assert sorted(os.listdir(evdir.path)) == sorted(names[:5] + ["notes.txt"])
    assert _evidence.apply_retention(evdir, count=3, max_bytes=0, days=0, now=now)["removed"] == 2
    assert sorted(n for n in os.listdir(evdir.path) if n.endswith(".log")) == sorted(names[:3])
    # bytes: the newest that fit; this run's file (KEEP) stays even when it is the oldest
    got = _evidence.apply_retention(evdir, count=0, max_bytes=1500, days=0, keep={names[2]}, now=now)
    assert got["removed"] == 1
    assert sorted(n for n in os.listdir(evdir.path) if n.endswith(".log")) == sorted([names[0], names[2]])
    # a file written in the last hour may still be open in a concurrent drain: never removed
    fresh = _evidence_files(evdir, [60], now=now)
    assert _evidence.apply_retention(evdir, count=1, max_bytes=0, days=0, now=now)["removed"] == 2
    assert sorted(n for n in os.listdir(evdir.path) if n.endswith(".log")) == sorted(fresh)


def test_retention_skips_symlinks_and_directories(evdir, tmp_path):
    target = tmp_path / "target.log"
    target.write_text("keep me")
    name = _evidence.evidence_name(CID, 1, 1, 0)
    os.symlink(str(target), os.path.join(evdir.path, name))
    os.mkdir(os.path.join(evdir.path, _evidence.evidence_name(CID, 2, 2, 0)))
    assert _evidence.apply_retention(evdir, count=0, max_bytes=0, days=1)["removed"] == 0
    assert target.read_text() == "keep me"


def test_header_names_the_writer_pod_and_cause():
    record = {"pod": {"namespace": "ns", "name": "web-0", "container": "app"},
              "cause": {"kind": "oom", "summary": "fatal error: out of memory"},
              "shim": {"pid": 7, "version": "v2"}, "runc_exec": {"pid": 8},
              "pipe": {"capacity": 65536, "queued": 65536}}
    info = {"container_id": CID, "role": "runc_init", "pid": 9, "start_time": 1, "inode": 42}
    lines = _evidence.header(record, info, "node-1", 0, _procfs.Proc("/nonexistent-proc"))
    assert lines[0] == "hangdoctor.runtime.runc_pipe_drain evidence"
    assert "pod: ns/web-0 container app" in lines and "host: node-1" in lines
    assert "writer: runc_init pid 9 start_time 1 (started unknown)" in lines
    assert "pipe: inode 42 capacity 65536 queued 65536 (at diagnosis)" in lines
    assert lines[-1] == "drained_at: 1970-01-01T00:00:00.000000Z"


def test_evidence_name_sorts_by_container_writer_and_time():
    assert _evidence.evidence_name(CID, 12, 34, 0) == "%s-12-34-19700101T000000.000000Z.log" % CID[:12]
