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
