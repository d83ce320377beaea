"""container_listen_info as Ansible runs it: options, clear failures for bad
input, read-only in check mode, one warning per loopback-only port."""
import json
import sys

import pytest

from ansible_collections.hangdoctor.runtime.plugins.modules import container_listen_info
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils.test__listen import proc_tree
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.modules.module_runner import run_main


def run(args, capsys):
    return run_main(container_listen_info, args, capsys)


@pytest.fixture
def root(monkeypatch):
    monkeypatch.setattr(container_listen_info.os, "geteuid", lambda: 0)


@pytest.mark.skipif(sys.byteorder != "little", reason="fixture tables are little-endian")
def test_pid_mode_in_check_mode(tmp_path, capsys, root):
    proc = proc_tree(tmp_path)
    result = run({"pids": [4242], "ports": [18080, 18081], "proc_root": proc.root, "_ansible_check_mode": True}, capsys)
    assert not result.get("failed"), result
    assert result["changed"] is False
    c = result["containers"][0]
    assert c["ports"]["18080"] == {"reachable_from_node": False, "addresses": ["127.0.0.1"]}
    assert c["ports"]["18081"] == {"reachable_from_node": True, "addresses": ["0.0.0.0"]}
    assert result["loopback_only"] == [{"container_id": None, "pod_name": None, "pid": 4242, "port": 18080,
                                        "addresses": ["127.0.0.1"]}]
    # ansible-core 2.19 wraps each warning in a WarningSummary; older ones give the text
    assert len(result["warnings"]) == 1 and "port 18080 only on 127.0.0.1" in json.dumps(result["warnings"][0])
    assert result["probe_checks"] == []


@pytest.mark.parametrize("args,msg", [
    ({}, "give container_ids, cri_container_ids, pids or probes"),
    ({"pids": [1], "timeout": -1}, "timeout must be greater than 0"),
    ({"pids": [1], "timeout": 0}, "timeout must be greater than 0"),
    ({"pids": [0]}, "pids must be positive"),
    ({"pids": ["x"]}, "pids"),
    ({"pids": [1], "ports": [70000]}, "ports must be between 1 and 65535"),
    ({"container_ids": ["../x"]}, "container_ids must be ids"),
    ({"pids": [1], "proc_root": "/nonexistent"}, "is not a procfs"),
    ({"pids": [1], "proc_root": "/etc"}, "is not a procfs"),
    ({"container_ids": ["web"], "docker_host": "ssh://node"}, "not supported"),
    ({"pids": [2 ** 22 + 7]}, "no process"),
    ({"cri_container_ids": ["../x"]}, "cri_container_ids must be container ids"),
    ({"cri_container_ids": ["abcdef"], "containerd_address": "/nonexistent/containerd.sock"}, "cri_container_ids: no containerd task abcdef"),
])
def test_bad_input_fails_clearly(args, msg, capsys, root):
    result = run(args, capsys)
    assert result["failed"] is True and msg in result["msg"], result
    assert "Traceback" not in json.dumps(result)


def test_refuses_to_run_unprivileged(monkeypatch, capsys):
    monkeypatch.setattr(container_listen_info.os, "geteuid", lambda: 1000)
    result = run({"pids": [1]}, capsys)
    assert result["failed"] is True and "must run as root" in result["msg"]


def test_unreachable_daemon_fails_clearly(capsys, root, tmp_path):
    result = run({"container_ids": ["web"], "docker_host": "unix://%s/none.sock" % tmp_path, "timeout": 1}, capsys)
    assert result["failed"] is True and "none.sock" in result["msg"]
