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


# ---- a report directory another user owns; diff mode (issue 21) -------------

def test_a_report_directory_another_user_owns_is_refused_clearly(tmp_path):
    """/var/tmp/hangdoctor-reports can be created in advance by any user, who
    then replaces the report with an "all clear": refused, run or check mode."""
    d = tmp_path / "hangdoctor-reports"
    d.mkdir()
    os.chown(str(d), 1000, 1000)
    for check in (True, False):
        res = run({"files": [{"path": str(d / "hangdoctor-detect.md"), "content": "# 2 stuck execs\n"}]}, check=check)
        assert res.get("failed") and "refusing to write" in res["msg"] and "owned by uid 1000" in res["msg"], res
        assert "Traceback" not in res["msg"]
    assert os.listdir(str(d)) == []
    os.chown(str(d), 0, 0)
    os.chmod(str(d), 0o777)
    res = run({"path": str(d / "r.md"), "content": "x"})
    assert res.get("failed") and "every user may write" in res["msg"], res
    os.chmod(str(d), 0o755)
    assert run({"path": str(d / "r.md"), "content": "x"})["changed"]


def test_a_symlink_in_the_report_directory_s_place_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "reports").symlink_to(elsewhere)
    res = run({"path": str(tmp_path / "reports" / "r.md"), "content": "x"})
    assert res.get("failed") and "not a directory" in res["msg"], res
    assert os.listdir(str(elsewhere)) == []


def test_diff_mode_shows_before_and_after(tmp_path):
    p = str(tmp_path / "r" / "report.md")
    res = run({"path": p, "content": "# one\n", "_ansible_diff": True})
    assert res["diff"] == {"before": "", "after": "# one\n", "before_header": p, "after_header": p}
    res = run({"path": p, "content": "# two\n", "_ansible_diff": True}, check=True)
    assert res["changed"] and res["diff"]["before"] == "# one\n" and res["diff"]["after"] == "# two\n"
    assert open(p).read() == "# one\n"
    assert "diff" not in run({"path": p, "content": "# one\n", "_ansible_diff": True})
    assert "diff" not in run({"path": p, "content": "# two\n"}, check=True)
    a = str(tmp_path / "r" / "a.json")
    res = run({"files": [{"path": a, "content": "{}\n"}, {"path": p, "content": "# two\n"}], "_ansible_diff": True})
    assert [d["after_header"] for d in res["diff"]] == [a, p]
    assert res["diff"][1]["before"] == "# one\n" and "diff" not in res["files"][0]
