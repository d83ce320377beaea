"""Fixtures for the real-runtime tests: one harness (containerd + dockerd +
fault runtime) per test session, brought up once and torn down at the end."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "harness"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "utils"))

import hdharness  # noqa: E402
from colltree import collections_path  # noqa: E402  (re-exported for the tests)


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="real-runtime tests start dockerd: run as root")
        for item in items:
            item.add_marker(skip)


def harness_up(hz):
    """The body of a harness fixture (``yield from harness_up(...)``): HZ
    brought up, handed to the tests, and torn down after them, even when
    bringing it up failed; a teardown that leaves anything behind fails."""
    try:
        hz.up()
        yield hz
    finally:
        errors = hz.down()
        assert not errors, errors


@pytest.fixture(scope="session")
def harness():
    yield from harness_up(hdharness.Harness())


@pytest.fixture(scope="module")
def cri():
    """A containerd-CRI node (containerd with its CRI plugin, no dockerd; the
    fault runtime as the runc handler's binary), one per test file: brought
    up on first use, torn down when the file's tests are done."""
    from cri.harness import CriHarness  # needs grpc: only the CRI tests pay for it
    yield from harness_up(CriHarness())


@pytest.fixture
def cri_release(cri):
    """Undo every hang a CRI test left behind, even when it failed half way."""
    yield cri
    cri.release_all()


@pytest.fixture
def kubelet(tmp_path):
    """A process whose comm is "kubelet" with a --hostname-override, as on a
    Kubernetes node (a copy of sleep under that name)."""
    exe = tmp_path / "kubelet"
    # a script's comm is its file name; the shell keeps it while sleep runs
    exe.write_text("#!/bin/sh\nsleep 600\n")
    exe.chmod(0o755)
    p = subprocess.Popen([str(exe), "--hostname-override=Node-17.Example"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(0.2)
    yield p
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()


@pytest.fixture
def release(harness):
    """Undo every hang a test left behind, even when it failed half way."""
    yield harness
    harness.release_all()


def wait_for(cond, timeout, what):
    """COND()'s first true value within TIMEOUT seconds (asked every 0.1 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def read(path):
    """The text of a small file (a cgroup's freezer.state), stripped."""
    with open(path) as f:
        return f.read().strip()


def row(res, rows, cid):
    """The row of CID among ROWS ({container id: row} of node_doctor's
    RES), with what node_doctor saw when there is none."""
    fact = res["ansible_facts"]["hangdoctor"]
    keys = ("engines", "hung", "stuck_execs", "suspects", "scan_partial", "scan_partial_reason", "scan_seconds",
            "scanned_processes")
    assert cid in rows, dict((k, fact.get(k)) for k in keys)
    return rows[cid]


# ---- running the collection's modules through real Ansible ------------------


def ansible_env(extra=None):
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": collections_path(),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default",
        "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
        "ANSIBLE_HOST_KEY_CHECKING": "0",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
    })
    env.update(extra or {})
    return env


def run_module(module, args=None, check=False, timeout=120, python=None, env=None, ansible_bin="ansible"):
    """Run hangdoctor.runtime.MODULE on localhost through ``ansible`` (ad hoc,
    local connection) and return (result dict, wall seconds).  ``python`` is
    the target interpreter; ``ansible_bin`` another controller (ansible-core 2.16)."""
    cmd = [ansible_bin, "localhost", "-c", "local", "-i", "localhost,",
           "-e", "ansible_python_interpreter=%s" % (python or sys.executable),
           "-m", module if "." in module else "hangdoctor.runtime." + module]
    if args:
        cmd += ["-a", json.dumps(args)]
    if check:
        cmd.append("--check")
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ansible_env(env), check=False)
    wall = time.monotonic() - t0
    try:
        # "localhost | SUCCESS => {...}" / "localhost | FAILED! => {...}"
        start = r.stdout.index("localhost | ")
        arrow = r.stdout.index(" => ", start)
        result = json.JSONDecoder().raw_decode(r.stdout[arrow + 4:].lstrip())[0]
        result["_status"] = r.stdout[start + 12:arrow].strip()
    except ValueError:
        raise AssertionError("ansible output not understood (rc=%s):\n%s\n%s" % (r.returncode, r.stdout[-3000:], r.stderr[-3000:]))
    return result, wall


# ---- the reliability tally ---------------------------------------------------
# Reliability tests count what they tried and what went wrong; the terminal
# summary prints one line with the counts (decoys tried / wrongly acted on,
# faults / hangs, bad inputs / tracebacks, drains / bytes lost).
_TALLY = {}


class Tally:
    KINDS = {
        "decoys": ("tried", "wrongly acted on"),
        "faults": ("injected", "hangs"),
        "bad_inputs": ("tried", "tracebacks"),
        "drains": ("checked", "lost bytes"),
    }

    def add(self, kind, bad=False, n=1):
        tried, wrong = _TALLY.get(kind, (0, 0))
        _TALLY[kind] = (tried + n, wrong + (n if bad else 0))


@pytest.fixture(scope="session")
def tally():
    return Tally()


def pytest_terminal_summary(terminalreporter):
    if not _TALLY:
        return
    parts = []
    for kind, (ok_word, bad_word) in Tally.KINDS.items():
        if kind in _TALLY:
            n, bad = _TALLY[kind]
            parts.append("%s: %d %s / %d %s" % (kind.replace("_", " "), n, ok_word, bad, bad_word))
    terminalreporter.write_line("reliability summary: " + "; ".join(parts))


# ---- the report role over host facts given as files --------------------------
REPORT_PLAYBOOK = """
- name: Hosts with their node facts, then the run report
  hosts: all
  gather_facts: false
  tasks:
    - name: The node's hangdoctor fact
      ansible.builtin.set_fact:
        hangdoctor: "{{ lookup('ansible.builtin.file', facts_dir ~ '/' ~ inventory_hostname ~ '.json') | from_json }}"
    - name: Write the report
      ansible.builtin.include_role:
        name: hangdoctor.runtime.report
      vars:
        hangdoctor_report_mode: detect
        hangdoctor_publish_stats: false
"""


def run_report_role(tmp_path, facts, forks=None, timeout=300):
    """The report role in detect mode through ansible-playbook, over one local
    host per entry of FACTS ({host: its hangdoctor fact, as node_doctor
    publishes it}).  Asserts that the play succeeded; returns (the completed
    ansible-playbook, the report directory)."""
    (tmp_path / "facts").mkdir()
    for host, fact in facts.items():
        (tmp_path / "facts" / ("%s.json" % host)).write_text(json.dumps(fact))
    (tmp_path / "play.yml").write_text(REPORT_PLAYBOOK)
    inv = {"all": {"hosts": dict((h, {}) for h in facts),
                   "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}
    (tmp_path / "inv.yml").write_text(json.dumps(inv))
    reports = tmp_path / "reports"
    cmd = ["ansible-playbook", "-i", str(tmp_path / "inv.yml"), str(tmp_path / "play.yml"),
           "-e", "facts_dir=%s" % (tmp_path / "facts"), "-e", "hangdoctor_report_dir=%s" % reports]
    if forks:
        cmd += ["-f", str(forks)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ansible_env(), check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r, reports
