"""The ad hoc runner the integration tests use really reaches Ansible."""
from conftest import run_module


def test_runner_reaches_ansible():
    result, wall = run_module("ansible.builtin.ping", {"data": "pong-hd"})
    assert result["ping"] == "pong-hd"
    assert wall < 60
