"""report_write: atomic writes that a textfile collector never sees half done."""
import json
import os
import subprocess
import sys

import pytest

from ansible_collections.hangdoctor.runtime.plugins.modules import report_write as rw

MODULE = rw.__file__


def run(args, check=False):
    payload = {"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=check)}
    r = subprocess.run([sys.executable, MODULE], input=json.dumps(payload), capture_output=True, text=True, timeout=60,
                       check=False, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    return json.loads(r.stdout)


def test_write_atomic_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "m" / "hangdoctor.prom"
    rw.write_atomic(str(p), b"a 1\n", 0o644)
    rw.write_atomic(str(p), b"a 2\n", 0o600)
    assert p.read_bytes() == b"a 2\n"
    assert oct(p.stat().st_mode & 0o777) == oct(0o600)
    assert os.listdir(str(p.parent)) == ["hangdoctor.prom"]


def test_rename_is_atomic_for_an_open_reader(tmp_path):
    p = tmp_path / "hangdoctor.prom"
    p.write_text("old\n")
    with open(str(p)) as reader:
        rw.write_atomic(str(p), b"new\n")
        assert reader.read() == "old\n"
    assert p.read_text() == "new\n"


def test_temp_file_is_not_a_prom_file(tmp_path, monkeypatch):
    seen = []
    real = os.rename

    def spy(src, dst):
        seen.append(os.path.basename(src))
        return real(src, dst)

    monkeypatch.setattr(os, "rename", spy)
    rw.write_atomic(str(tmp_path / "hangdoctor.prom"), b"x 1\n")
    assert seen and seen[0].startswith(".hangdoctor.prom.") and seen[0].endswith(".tmp")


def test_same_file_and_bad_mode():
    assert rw._mode("0640") == 0o640
    with pytest.raises(rw.WriteError):
        rw._mode("rw-r")


def test_write_atomic_without_dir_creation(tmp_path):
    with pytest.raises(rw.WriteError):
        rw.write_atomic(str(tmp_path / "no" / "f"), b"x", create_dir=False)


def test_module_changed_idempotent_and_check_mode(tmp_path):
    p = str(tmp_path / "r" / "report.md")
    res = run({"path": p, "content": "# report\n"}, check=True)
    assert res["changed"] and not os.path.exists(p)
    res = run({"path": p, "content": "# report\n"})
    assert res["changed"] and open(p).read() == "# report\n" and res["size"] == 9
    assert not run({"path": p, "content": "# report\n"})["changed"]
    assert run({"path": p, "content": "# report\n", "mode": "0600"})["changed"]
    bad = run({"path": str(tmp_path), "content": "x"})
    assert bad["failed"] and "is a directory" in bad["msg"]
