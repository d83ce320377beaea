"""Evidence files: every byte counted and hashed, head and tail past the
limit, never written through a planted file, the directory rules."""
import hashlib
import os

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _evidence
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils.pipe_writers import CID


def test_evidence_head_and_tail_past_the_limit(tmp_path):
    ev = _evidence.Evidence(str(tmp_path / "e.log"), ["h: 1"], limit=10)
    data = bytes(range(100))
    for i in range(0, 100, 7):
        ev.add(data[i:i + 7])
    ev.close()
    assert ev.total == 100 and ev.elided == 90 and ev.truncated
    dummy, body, trailer = _evidence.read_evidence(str(tmp_path / "e.log"))
    assert body == data[:5] + _evidence.ELIDED_MARK % 90 + data[-5:]
    assert hashlib.sha256(data).hexdigest() in trailer


def test_evidence_file_never_overwrites(tmp_path):
    target = tmp_path / "planted"
    target.write_text("x")
    os.symlink(str(target), str(tmp_path / "e.log"))
    with pytest.raises(OSError):
        _evidence.Evidence(str(tmp_path / "e.log"), [], 0)
    assert target.read_text() == "x"


def test_evidence_dir_rules(tmp_path):
    with pytest.raises(_evidence.EvidenceError, match="absolute"):
        _evidence.prepare_evidence_dir("relative/dir")
    made = _evidence.prepare_evidence_dir(str(tmp_path / "a" / "b"))
    assert os.stat(made).st_mode & 0o777 == 0o700
    os.symlink(made, str(tmp_path / "mine"))
    assert _evidence.prepare_evidence_dir(str(tmp_path / "mine")) == made
    if os.geteuid() == 0:
        os.symlink(made, str(tmp_path / "theirs"))
        os.lchown(str(tmp_path / "theirs"), 65534, 65534)
        with pytest.raises(_evidence.EvidenceError, match="symlink owned by uid 65534"):
            _evidence.prepare_evidence_dir(str(tmp_path / "theirs"))


def test_read_evidence_refuses_other_files_and_reads_an_unfinished_one(tmp_path):
    other = tmp_path / "other.log"
    other.write_bytes(b"not evidence\n")
    with pytest.raises(_evidence.EvidenceError, match="not a hangdoctor evidence file"):
        _evidence.read_evidence(str(other))
    ev = _evidence.Evidence(str(tmp_path / "e.log"), ["h: 1"])
    ev.add(b"abc")
    ev.abort()
    assert _evidence.read_evidence(str(tmp_path / "e.log")) == ("h: 1\n", b"abc", "")


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
