"""report_write: atomic writes that a textfile collector never sees half done."""
import json
import os
import subprocess
import sys

from ansible_collections.hangdoctor.runtime.plugins.modules import report_write as rw

MODULE = rw.__file__


def run(args, check=False):
    payload = {"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=check)}
    r = subprocess.run([sys.executable, MODULE], input=json.dumps(payload), capture_output=True, text=True, timeout=60,
                       check=False, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    return json.loads(r.stdout)


def test_module_changed_idempotent_and_check_mode(tmp_path):
    p = str(tmp_path / "r" / "report.md")
    res = run({"path": p, "content": "# report\n"}, check=True)
    assert res["changed"] and not os.path.exists(p)
    res = run({"path": p, "content": "# report\n"})
    assert res["changed"] and open(p).read() == "# report\n" and res["size"] == 9
    assert not run({"path": p, "content": "# report\n"})["changed"]
    assert run({"path": p, "content": "# report\n", "mode": "0600"})["changed"]
    assert res["msg"].startswith("wrote ") or res["msg"].startswith("unchanged ")
    bad = run({"path": str(tmp_path), "content": "x"})
    assert bad["failed"] and "is a directory" in bad["msg"]


def test_files_writes_several_in_one_execution(tmp_path):
    a, b = str(tmp_path / "r" / "a.json"), str(tmp_path / "r" / "b.md")
    files = [{"path": a, "content": "{}\n"}, {"path": b, "content": "# b\n"}]
    res = run({"files": files, "mode": "0640"}, check=True)
    assert res["changed"] and not os.path.exists(a) and res["msg"].startswith("would write 2 of 2 files")
    res = run({"files": files, "mode": "0640"})
    assert res["changed"] and [f["path"] for f in res["files"]] == [a, b]
    assert open(a).read() == "{}\n" and open(b).read() == "# b\n"
    assert oct(os.stat(b).st_mode & 0o777) == "0o640" and res["files"][1]["size"] == 4
    files[1]["content"] = "# b2\n"
    res = run({"files": files, "mode": "0640"})
    assert res["changed"] and [f["changed"] for f in res["files"]] == [False, True]
    assert res["msg"].startswith("wrote 1 of 2 files") and open(b).read() == "# b2\n"
    res = run({"files": files, "mode": "0640"})
    assert not res["changed"] and res["msg"].startswith("unchanged 2 files")


def test_files_stops_at_the_first_that_cannot_be_written(tmp_path):
    ok = str(tmp_path / "ok.md")
    res = run({"files": [{"path": ok, "content": "x"}, {"path": str(tmp_path), "content": "y"},
                         {"path": str(tmp_path / "never.md"), "content": "z"}]})
    assert res["failed"] and "is a directory" in res["msg"] and "1 of the files before it done" in res["msg"]
    assert open(ok).read() == "x" and not os.path.exists(str(tmp_path / "never.md"))


def test_files_and_path_are_refused_clearly(tmp_path):
    p = str(tmp_path / "x")
    for args, word in (({"files": [{"path": p, "content": "x"}], "path": p}, "mutually exclusive"),
                       ({"path": p}, "content"),
                       ({}, "one of the following is required"),
                       ({"files": []}, "at least one file"),
                       ({"files": [{"path": p}]}, "missing required arguments: content found in files"),
                       ({"files": [{"path": p, "content": "x", "owner": "root"}]}, "owner")):
        res = run(args)
        assert res.get("failed") and word in res["msg"], (args, res)
