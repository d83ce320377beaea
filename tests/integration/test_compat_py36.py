"""Compatibility: the modules run by ansible-core 2.16 (the last controller
that manages Python 3.6 targets) with a Python 3.6 target interpreter, on the
real harness: detect (hung_container_info, runc_exec_info) and drain
(runc_pipe_drain) work there as they do on the newest ansible-core."""
import os

import pytest

import decoys
from conftest import run_module


@pytest.fixture(scope="module")
def compat():
    venv = os.environ.get("HD_VENV_COMPAT")
    py36 = os.environ.get("HD_PY36")
    if not venv or not os.access(os.path.join(venv, "bin", "ansible"), os.X_OK):
        pytest.skip("HD_VENV_COMPAT (a virtualenv with ansible-core 2.16) is not set or has no bin/ansible")
    if not py36 or not os.access(py36, os.X_OK):
        pytest.skip("HD_PY36 (a Python 3.6 interpreter for the target) is not set or not executable")
    return {"ansible_bin": os.path.join(venv, "bin", "ansible"), "python": py36}


@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_detect_and_drain_with_ansible_core_216_and_python36(harness, release, tally, tmp_path, compat, layout):
    cid = harness.run_container("rel-compat-%s" % layout, layout=layout)
    exec_proc, pid = harness.hang(cid)
    decoys.assert_stuck(harness, cid, pid)

    res, dummy = run_module("hung_container_info", {"docker_host": harness.docker_host, "timeout": 2}, **compat)
    assert res["_status"] == "SUCCESS" and cid in res["hung"], res
    assert "ansible_facts" not in res or res["ansible_facts"].get("discovered_interpreter_python") is None

    res, dummy = run_module("runc_exec_info", {"container_ids": [cid], "confirm_interval": 0.3}, **compat)
    assert res["_status"] == "SUCCESS" and decoys.no_crash(res), res
    (rec,) = res["stuck_execs"]
    assert rec["writer"]["pid"] == pid and rec["shim"]["version"] == layout, rec
    assert rec["cause"]["kind"] == "pthread_create_eagain"

    res, dummy = run_module("runc_pipe_drain", {"stuck_execs": [rec], "min_age_seconds": 0, "confirm_interval": 0.3,
                                                "evidence_dir": str(tmp_path / "evidence"),
                                                "docker_host": harness.docker_host}, **compat)
    assert res["_status"] == "CHANGED" and decoys.no_crash(res), res
    (entry,) = res["drained"]
    assert entry["pid"] == pid and entry["unblocked"] is True and entry["verified"] is True, entry
    decoys.check_nothing_lost(harness, entry, pid, tally)
    exec_proc.wait(timeout=10)
    assert harness.inspect_answers(cid, timeout=2.0)


def test_the_detect_role_runs_node_doctor_through_its_action_plugin_on_ansible_core_216(compat, tmp_path):
    """node_doctor has an action plugin; ansible-core 2.16 has no per-argument
    hook, so every role argument is templated the old way there: the role
    works and the values arrive."""
    import json
    import subprocess
    from conftest import ansible_env
    evars = {"ansible_python_interpreter": compat["python"], "hangdoctor_check_engine": False,
             "hangdoctor_container_ids": ["fffffffffff0"], "hangdoctor_metrics_dir": "", "hangdoctor_become": False,
             "hangdoctor_confirm_interval": 0.1, "hangdoctor_report_dir": str(tmp_path / "reports"),
             "hd_n": 3, "hangdoctor_pileup_min_count": "{{ hd_n + 4 }}", "hangdoctor_scan_method": "full"}
    playbook = os.path.join(os.path.dirname(compat["ansible_bin"]), "ansible-playbook")
    r = subprocess.run([playbook, "-vvv", "-i", "localhost,", "-c", "local", "hangdoctor.runtime.detect",
                        "-e", json.dumps(evars)], capture_output=True, text=True, timeout=600, env=ansible_env(), check=False)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    task = r.stdout.index("TASK [hangdoctor.runtime.detect : Check the node")
    start = r.stdout.index("[localhost] => ", task) + len("[localhost] => ")
    res = json.JSONDecoder().raw_decode(r.stdout[start:])[0]
    args = res["invocation"]["module_args"]
    assert (args["pileup_min_count"], args["scan_method"], args["container_ids"]) == (7, "full", ["fffffffffff0"]), args
