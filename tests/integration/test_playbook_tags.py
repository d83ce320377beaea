"""Every tag the detect and remediate playbooks document works alone, with
--skip-tags, and in --check, against a real stuck exec on the harness."""
import json
import subprocess
import sys

import pytest

from conftest import ansible_env
from test_runc_pipe_drain import assert_stuck, new_container


def play(harness, tmp_path, book, cid, *flags, extra=None, env=None):
    report_dir = tmp_path / "reports"
    for f in report_dir.glob("*"):
        f.unlink()
    evars = {"ansible_python_interpreter": sys.executable, "hangdoctor_become": False,
             "hangdoctor_docker_host": harness.docker_host, "hangdoctor_container_ids": [cid],
             "hangdoctor_report_dir": str(report_dir), "hangdoctor_metrics_dir": "",
             "hangdoctor_evidence_dir": str(tmp_path / "evidence"), "hangdoctor_inspect_timeout": 2,
             "hangdoctor_confirm_interval": 0.3, "hangdoctor_drain_min_age_seconds": 0}
    evars.update(extra or {})
    cmd = ["ansible-playbook", "-i", "localhost,", "-c", "local", "hangdoctor.runtime." + book,
           "-e", json.dumps(evars)] + list(flags)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ansible_env(env), check=False)
    report = None
    path = report_dir / ("hangdoctor-%s.json" % book)
    if path.exists():
        report = json.loads(path.read_text())
    return r, report


def ok(r):
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "ERROR!" not in r.stdout + r.stderr
    return r


@pytest.fixture
def stuck_exec(harness, release):
    cid = new_container(harness)
    exec_proc, pid = harness.hang(cid)
    assert_stuck(harness, cid, pid)
    return cid, pid


def still_stuck(harness, cid):
    return not harness.inspect_answers(cid, timeout=1.0)


def test_detect_playbook_tags(harness, tmp_path, stuck_exec):
    cid, pid = stuck_exec
    r, rep = play(harness, tmp_path, "detect", cid)
    ok(r)
    assert rep["totals"]["stuck_execs"] == 1 and rep["totals"]["hung_containers"] == 1
    r, rep = play(harness, tmp_path, "detect", cid, "--tags", "detect")
    ok(r)
    assert rep is None and "TASK [hangdoctor.runtime.detect : Check the node" in r.stdout
    r, rep = play(harness, tmp_path, "detect", cid, "--tags", "report")
    ok(r)
    assert rep["missing_hosts"] == ["localhost"]  # no node check ran: said, not guessed
    r, rep = play(harness, tmp_path, "detect", cid, "--skip-tags", "report")
    ok(r)
    assert rep is None
    r, rep = play(harness, tmp_path, "detect", cid, "--skip-tags", "detect")
    ok(r)
    assert rep["missing_hosts"] == ["localhost"]
    r, rep = play(harness, tmp_path, "detect", cid, "--check")
    ok(r)
    assert rep["check_mode"] is True and rep["totals"]["stuck_execs"] == 1
    r, rep = play(harness, tmp_path, "detect", cid, extra={"hangdoctor_fail_on_stuck": True})
    assert r.returncode != 0 and "1 stuck exec(s) on localhost" in r.stdout
    assert rep["totals"]["stuck_execs"] == 1  # the report is written before the host fails
    assert still_stuck(harness, cid)


def test_remediate_tags_that_must_not_drain(harness, tmp_path, stuck_exec):
    cid, pid = stuck_exec
    for flags in (["--tags", "detect"], ["--skip-tags", "drain"], ["--tags", "report"], ["--tags", "guard"],
                  ["--skip-tags", "detect"], ["--check"], ["--tags", "remediate", "--check"]):
        r, rep = play(harness, tmp_path, "remediate", cid, *flags, extra={"hangdoctor_kube_guard": "never"})
        ok(r)
        assert still_stuck(harness, cid), flags
        if rep is not None:
            assert rep["totals"]["drained"] == 0, (flags, rep["totals"])
    r, rep = play(harness, tmp_path, "remediate", cid, "--check", extra={"hangdoctor_kube_guard": "never"})
    assert rep["totals"]["would_drain"] == 1


@pytest.mark.parametrize("flags", [["--tags", "drain"], ["--skip-tags", "guard"], ["--tags", "remediate"], []])
def test_remediate_tags_that_drain(harness, tmp_path, stuck_exec, flags):
    cid, pid = stuck_exec
    r, rep = play(harness, tmp_path, "remediate", cid, *flags, extra={"hangdoctor_kube_guard": "never"})
    ok(r)
    assert harness.inspect_answers(cid, timeout=2.0), flags
    if "--tags" in flags and "drain" in flags:
        assert rep is None  # report not selected
    else:
        assert rep["totals"]["drained"] == 1 and rep["hosts"][0]["verify"]["ok"] is True


def test_kubernetes_node_without_a_reachable_api_is_not_drained(harness, tmp_path, stuck_exec, kubelet):
    cid, pid = stuck_exec
    r, rep = play(harness, tmp_path, "remediate", cid,
                  env={"K8S_AUTH_KUBECONFIG": str(tmp_path / "no-kubeconfig")})
    ok(r)
    assert still_stuck(harness, cid)
    (skip,) = rep["hosts"][0]["skipped"]
    assert skip["reason"].startswith("eviction guard could not run"), skip
    assert rep["totals"]["guard_blocked_hosts"] == 1


def test_the_affected_hosts_list_limits_remediate(harness, tmp_path, stuck_exec):
    cid, pid = stuck_exec
    r, rep = play(harness, tmp_path, "remediate", cid, extra={"hangdoctor_affected_hosts": []})
    ok(r)
    assert rep is None and still_stuck(harness, cid)
    r, rep = play(harness, tmp_path, "remediate", cid,
                  extra={"hangdoctor_affected_hosts": ["localhost"], "hangdoctor_kube_guard": False})
    ok(r)
    assert rep["totals"]["drained"] == 1


def test_old_filter_names_still_work_with_a_deprecation(tmp_path):
    r = subprocess.run(["ansible", "localhost", "-c", "local", "-i", "localhost,", "-m", "ansible.builtin.debug",
                        "-a", "msg={{ 'out_of_memory' | hangdoctor.runtime.hangdoctor_advice }}"],
                       capture_output=True, text=True, timeout=120, env=ansible_env(), check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "raise the memory limit" in r.stdout.lower() or "memory limit" in r.stdout
    assert "deprecat" in (r.stdout + r.stderr).lower()
