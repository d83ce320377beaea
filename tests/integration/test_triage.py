"""Triage against the real runtime: every hung container gets its named causes,
its wait chain and its evidence.  Each test first proves the hang is real
(inspect does not answer, the process really sits where the cause says), then
asserts the exact causes named; decoys assert no false cause."""
import os
import signal
import subprocess
import time

import pytest

from conftest import run_module
from harness import hdharness
from test_runc_pipe_drain import assert_stuck, new_container


def opts(harness, tmp_path, **over):
    args = {"docker_host": harness.docker_host, "inspect_timeout": 2, "confirm_interval": 0.3,
            "metrics_dir": str(tmp_path / "metrics"), "evidence_dir": str(tmp_path / "evidence"),
            "drain_min_age_seconds": 0}
    (tmp_path / "metrics").mkdir(exist_ok=True)
    args.update(over)
    return args


def node_doctor(harness, tmp_path, cids, **over):
    res, dummy = run_module("node_doctor", opts(harness, tmp_path, container_ids=list(cids), **over))
    assert res["_status"] in ("SUCCESS", "CHANGED"), res
    rows = dict((r["container_id"], r) for r in res["ansible_facts"]["hangdoctor"]["containers"])
    return res, rows


def roles(diag):
    return [link["role"] for link in diag["chain"]]


def freezer_dir(cid):
    for line in open("/proc/%d/cgroup" % init_pid(cid)):
        dummy, ctl, path = line.strip().split(":", 2)
        if "freezer" in ctl.split(","):
            return "/sys/fs/cgroup/freezer" + path
    raise AssertionError("no freezer cgroup")


def init_pid(cid):
    out = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", cid], capture_output=True, text=True,
                         timeout=10, env=HARNESS_ENV[0], check=True).stdout.strip()
    return int(out)


HARNESS_ENV = [None]


@pytest.fixture(autouse=True)
def _env(harness):
    HARNESS_ENV[0] = dict(os.environ, **harness.env())
    yield


def test_pipe_deadlock_is_pipe_full_init_and_engine_lock(harness, release, tmp_path):
    cid = new_container(harness)
    exec_proc, pid = harness.hang(cid)
    assert_stuck(harness, cid, pid)

    res, rows = node_doctor(harness, tmp_path, [cid])
    diag = rows[cid]["diagnosis"]
    assert diag["causes"] == ["pipe_full_init", "engine_lock"], diag
    assert diag["done"] is None
    assert roles(diag)[:2] == ["engine", "shim"] and "runc_init" in roles(diag), roles(diag)
    init = next(link for link in diag["chain"] if link["role"] == "runc_init")
    assert init["pid"] == pid and init["syscall"] in ("write", "writev")
    assert init["blocking_fd"]["fd"] == 2 and init["blocking_fd"]["kind"] == "pipe"
    assert any(p["comm"].startswith("containerd-shim") for p in init["blocking_fd"]["peers"]), init
    assert diag["evidence"]["pipe_full_init"]["writer"]["pid"] == pid
    holder = diag["evidence"]["engine_lock"]["holder"]
    assert any(h["pid"] == pid for h in holder), holder
    assert "drain" in diag["action"]

    # runc_exec_info gives the same diagnosis for the stuck exec it proves
    res, dummy = run_module("runc_exec_info", {"container_ids": [cid], "confirm_interval": 0.3})
    (rec,) = res["stuck_execs"]
    assert rec["diagnosis"]["causes"][0] == "pipe_full_init", rec["diagnosis"]

    # hung_container_info names the causes of the container it finds hung
    res, dummy = run_module("hung_container_info", {"docker_host": harness.docker_host, "inspect_timeout": 2})
    (entry,) = [c for c in res["containers"] if c["id"] == cid]
    assert entry["responsive"] is False
    assert entry["diagnosis"]["causes"] == ["pipe_full_init", "engine_lock"], entry["diagnosis"]


def test_healthy_containers_get_no_diagnosis(harness, release, tmp_path):
    cid = new_container(harness)
    assert harness.inspect_answers(cid, timeout=3.0)
    res, rows = node_doctor(harness, tmp_path, [cid])
    assert cid not in rows and rows == {}, rows
