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
