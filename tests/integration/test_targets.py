"""Runs every integration target under tests/integration/targets/ (roles, as
ansible-test lays them out) with ansible-playbook against the session's harness.
Targets whose aliases say `hidden` (setup_*) run only as dependencies."""
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ansible_env

TARGETS = Path(__file__).resolve().parent / "targets"


def _targets():
    out = []
    for d in sorted(TARGETS.iterdir()):
        aliases = (d / "aliases").read_text().split() if (d / "aliases").exists() else []
        if (d / "tasks" / "main.yml").exists() and "hidden" not in aliases and "disabled" not in aliases:
            out.append(d.name)
    return out


@pytest.mark.parametrize("target", _targets())
def test_target(harness, release, target, tmp_path):
    play = tmp_path / "play.yml"
    play.write_text(
        "---\n- name: integration target %s\n  hosts: localhost\n  gather_facts: false\n"
        "  roles:\n    - role: %s\n" % (target, target))
    r = subprocess.run(
        ["ansible-playbook", "-i", "localhost,", "-c", "local", str(play),
         "-e", "ansible_python_interpreter=%s" % sys.executable, "-e", "hd_harness_dir=%s" % harness.root],
        capture_output=True, text=True, timeout=600, check=False,
        env=ansible_env({"ANSIBLE_ROLES_PATH": str(TARGETS), "ANSIBLE_CALLBACK_RESULT_FORMAT": "yaml"}))
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert "failed=0" in r.stdout
