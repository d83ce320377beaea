"""Jobs run the way AWX runs them: ansible-runner on a private data dir
(project/, inventory/, env/extravars, env/envvars, job tags), against real
stuck execs on the harness.  The assertions are on what AWX stores from a job:
its status and rc, the ``set_stats`` artifacts carried by the
``playbook_on_stats`` event, and the per-host results (runner_on_* events)."""
import json
import re
import socket
import sys
from pathlib import Path

import ansible_runner
import pytest
import yaml

from conftest import collections_path
from test_runc_pipe_drain import assert_stuck, new_container

ROOT = Path(__file__).resolve().parents[2]
AWX = ROOT / "extras" / "awx"


# ---- a private data dir as AWX lays it out ---------------------------------


def job_template_vars(name):
    """The extra vars the shipped job template sets (extras/awx/job_templates.yml)."""
    for jt in yaml.safe_load((AWX / "job_templates.yml").read_text())["hangdoctor_awx_job_templates"]:
        if jt["name"] == name:
            return dict(jt.get("extra_vars") or {})
    raise AssertionError("no job template %r in extras/awx/job_templates.yml" % name)


def survey_defaults(name):
    """What AWX adds to extra vars when a survey is launched with its defaults."""
    spec = json.loads((AWX / ("survey_%s.json" % name)).read_text())
    return {q["variable"]: q["default"] for q in spec["spec"] if "default" in q}


class Job(object):
    """One finished ansible-runner job, seen as AWX sees it."""

    def __init__(self, runner):
        self.runner = runner
        self.status = runner.status
        self.rc = runner.rc
        self.events = list(runner.events)
        stats = [e for e in self.events if e["event"] == "playbook_on_stats"]
        assert len(stats) == 1, [e["event"] for e in self.events][-10:]
        self.stats = stats[0]["event_data"]
        # AWX stores the stats event's artifact_data as the job's artifacts.
        self.artifacts = self.stats.get("artifact_data") or {}
        self.stdout = runner.stdout.read()

    def host_results(self, task_prefix):
        out = {}
        for e in self.events:
            if e["event"] in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable", "runner_on_skipped"):
                d = e["event_data"]
                if d.get("task", "").startswith(task_prefix) or d.get("task_action", "").endswith(task_prefix):
                    out[d["host"]] = (e["event"], d.get("res") or {})
        return out


def run_job(pdd, playbook, extravars, tags=None, skip_tags=None, check=False, env=None, limit=None):
    envvars = {"ANSIBLE_COLLECTIONS_PATH": collections_path(), "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_HOST_KEY_CHECKING": "0", "ANSIBLE_LOCALHOST_WARNING": "0"}
    envvars.update(env or {})
    (pdd / "env").mkdir(parents=True, exist_ok=True)
    (pdd / "env" / "envvars").write_text(yaml.safe_dump(envvars))
    (pdd / "env" / "extravars").write_text(json.dumps(extravars))
    ident = "job%d" % len(list((pdd / "artifacts").glob("*"))) if (pdd / "artifacts").exists() else "job0"
    r = ansible_runner.run(private_data_dir=str(pdd), playbook=playbook, ident=ident, quiet=True,
                           tags=tags, skip_tags=skip_tags, cmdline="--check" if check else None, limit=limit,
                           timeout=300)
    job = Job(r)
    job.artifact_dir = Path(r.config.artifact_dir)
    return job


def private_data_dir(tmp, hosts):
    """project/ with the two playbooks a platform team's project holds
    (docs/awx.md), inventory/hosts with per-host variables."""
    pdd = tmp / "pdd"
    (pdd / "project").mkdir(parents=True, exist_ok=True)
    for book in ("detect", "remediate"):
        (pdd / "project" / ("hangdoctor_%s.yml" % book)).write_text(
            "---\n- name: Run the hangdoctor %s playbook\n  ansible.builtin.import_playbook: hangdoctor.runtime.%s\n"
            % (book, book))
    (pdd / "inventory").mkdir(exist_ok=True)
    inv = {"all": {"hosts": {}, "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}
    inv["all"]["hosts"].update(hosts)
    (pdd / "inventory" / "hosts.yml").write_text(yaml.safe_dump(inv))
    return pdd


def base_vars(tmp, **extra):
    v = {"hangdoctor_become": False, "hangdoctor_metrics_dir": "", "hangdoctor_inspect_timeout": 2,
         "hangdoctor_confirm_interval": 0.3, "hangdoctor_drain_min_age_seconds": 0,
         "hangdoctor_evidence_dir": str(tmp / "evidence"), "hangdoctor_kube_guard": "never",
         "hangdoctor_report_dir": str(tmp / "reports")}
    v.update(extra)
    return v


@pytest.fixture
def hung_engine(tmp_path):
    """A Docker socket that accepts connections and never answers (a hung dockerd)."""
    path = tmp_path / "hung-docker.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(64)
    yield "unix://%s" % path
    s.close()


@pytest.fixture
def fleet(harness, release, tmp_path, hung_engine):
    """Three nodes (all this machine, told apart by their variables): a stuck
    one (a real runc exec deadlock), one whose engine does not answer, and a
    healthy one.  The harness has one dockerd, which the stuck container makes
    report a hung container to whoever asks: the healthy node of this fleet is
    a node without Docker (a containerd-only node); test_a_healthy_node_*
    checks a healthy node with the real engine, before any hang."""
    healthy = new_container(harness)
    stuck = new_container(harness)
    _exec_proc, pid = harness.hang(stuck)
    assert_stuck(harness, stuck, pid)
    hosts = {
        "node-healthy": {"hangdoctor_docker_host": "unix://%s" % (tmp_path / "no-docker.sock"),
                         "hangdoctor_container_ids": [healthy]},
        "node-stuck": {"hangdoctor_docker_host": harness.docker_host, "hangdoctor_container_ids": [stuck]},
        "node-engine-down": {"hangdoctor_docker_host": hung_engine, "hangdoctor_container_ids": [healthy]},
    }
    return private_data_dir(tmp_path, hosts), stuck


@pytest.fixture
def stuck_node(harness, release, tmp_path):
    """One node with a real stuck exec."""
    stuck = new_container(harness)
    _exec_proc, pid = harness.hang(stuck)
    assert_stuck(harness, stuck, pid)
    pdd = private_data_dir(tmp_path, {"node-stuck": {"hangdoctor_docker_host": harness.docker_host,
                                                     "hangdoctor_container_ids": [stuck]}})
    return pdd, stuck


# ---- the scheduled detect job ------------------------------------------------


def test_a_healthy_node_gives_a_green_job_and_empty_findings(harness, release, tmp_path):
    healthy = new_container(harness)
    pdd = private_data_dir(tmp_path, {"node-healthy": {"hangdoctor_docker_host": harness.docker_host,
                                                       "hangdoctor_container_ids": [healthy]}})
    evars = dict(job_template_vars("hangdoctor detect"), **survey_defaults("detect"))
    evars.update(base_vars(tmp_path))
    job = run_job(pdd, "hangdoctor_detect.yml", evars)
    assert job.status == "successful" and job.rc == 0, job.stdout[-3000:]
    assert job.stats["failures"] == {} and job.stats["ok"]["node-healthy"] >= 1
    event, res = job.host_results("Check the node")["node-healthy"]
    fact = res["ansible_facts"]["hangdoctor"]
    assert event == "runner_on_ok" and fact["stuck_execs"] == [] and fact["hung"] == []
    assert fact["engine"].get("error") is None and not fact["engine"].get("skipped"), fact["engine"]
    assert job.artifacts["hangdoctor_affected_hosts"] == []
    assert job.artifacts["hangdoctor_summary"]["totals"]["stuck_execs"] == 0
    assert job.artifacts["hangdoctor_summary"]["hosts"] == []


def test_reports_never_land_in_a_discarded_directory_unsaid(harness, release, tmp_path):
    """In an AWX job (AWX sets awx_job_id), `auto` writes no file into the
    execution environment and says so; a path under the private data dir is
    written and flagged; a report host keeps the files."""
    healthy = new_container(harness)
    pdd = private_data_dir(tmp_path, {
        "node-healthy": {"hangdoctor_docker_host": harness.docker_host, "hangdoctor_container_ids": [healthy]},
    })
    default_dir = Path("/var/tmp/hangdoctor-reports/hangdoctor-detect.json")
    before = default_dir.stat().st_mtime_ns if default_dir.exists() else None
    evars = dict(job_template_vars("hangdoctor detect"), **survey_defaults("detect"))
    evars.update(base_vars(tmp_path), awx_job_id=4242)
    evars["hangdoctor_report_dir"] = "auto"
    job = run_job(pdd, "hangdoctor_detect.yml", evars)
    assert job.status == "successful", job.stdout[-3000:]
    assert "Report files not written: in an AWX job" in job.stdout
    assert "Report: " not in job.stdout
    after = default_dir.stat().st_mtime_ns if default_dir.exists() else None
    assert before == after
    assert job.artifacts["hangdoctor_summary"]["mode"] == "detect"  # the summary travels with the job

    # A path inside the job's private data dir: written, and said to be discarded.
    # (/tmp, /var/tmp and /runner are the EE container's own directories.)
    evars["hangdoctor_report_dir"] = str(pdd / "artifacts" / "reports")
    job = run_job(pdd, "hangdoctor_detect.yml", evars)
    assert (pdd / "artifacts" / "reports" / "hangdoctor-detect.json").is_file()
    assert "The report files are inside the execution environment container" in job.stdout
    assert "AWX discards them after the job unless a volume is mounted there" in job.stdout

    # Outside AWX, auto is /var/tmp/hangdoctor-reports (not exercised here: a
    # shared machine path).  A report host: the files are written there.
    evars.pop("awx_job_id")
    evars["hangdoctor_report_dir"] = str(tmp_path / "kept")
    evars["hangdoctor_report_host"] = "reports-host"
    inv = yaml.safe_load((pdd / "inventory" / "hosts.yml").read_text())
    inv["all"]["children"] = {"keepers": {"hosts": {"reports-host": {}}}}
    (pdd / "inventory" / "hosts.yml").write_text(yaml.safe_dump(inv))
    evars["hangdoctor_hosts"] = "node-healthy"
    job = run_job(pdd, "hangdoctor_detect.yml", evars)
    assert job.status == "successful", job.stdout[-3000:]
    assert (tmp_path / "kept" / "hangdoctor-detect.json").is_file()
    assert oct((tmp_path / "kept" / "hangdoctor-detect.md").stat().st_mode & 0o777) == "0o640"
    assert "Report: reports-host:%s/hangdoctor-detect.md" % (tmp_path / "kept") in job.stdout
    assert "-> reports-host]" in job.stdout  # delegated to the report host
    assert "inside the execution environment" not in job.stdout


def test_scheduled_detect_fails_on_stuck_execs_and_carries_the_artifacts(harness, tmp_path, fleet):
    pdd, stuck = fleet
    jt = job_template_vars("hangdoctor detect")
    assert jt["hangdoctor_fail_on_stuck"] is True  # the AWX policy: findings fail the job
    evars = dict(jt, **survey_defaults("detect"))
    evars.update(base_vars(tmp_path))
    job = run_job(pdd, "hangdoctor_detect.yml", evars)

    # What AWX shows: the job failed (so "on failure" notifications fire), only
    # the stuck node failed, the others are ok.
    assert job.status == "failed" and job.rc == 2, job.stdout[-3000:]
    assert job.stats["failures"] == {"node-stuck": 1}, job.stats
    assert set(job.stats["ok"]) == {"node-healthy", "node-stuck", "node-engine-down"}
    checks = job.host_results("Check the node")
    assert {h: ev for h, (ev, res) in checks.items()} == {
        "node-healthy": "runner_on_ok", "node-stuck": "runner_on_ok", "node-engine-down": "runner_on_ok"}
    assert checks["node-stuck"][1]["ansible_facts"]["hangdoctor"]["stuck_execs"][0]["container_id"] == stuck
    assert checks["node-healthy"][1]["ansible_facts"]["hangdoctor"]["stuck_execs"] == []
    down = checks["node-engine-down"][1]
    assert down["ansible_facts"]["hangdoctor"]["engine"].get("error"), down["ansible_facts"]["hangdoctor"]["engine"]
    failed = job.host_results("Fail the hosts")
    assert failed["node-stuck"][0] == "runner_on_failed"
    assert "1 stuck exec(s) on node-stuck" in failed["node-stuck"][1]["msg"]

    # The artifacts AWX keeps with the job and hands to the next workflow node.
    art = job.artifacts
    assert art["hangdoctor_affected_hosts"] == ["node-stuck"]
    summary = art["hangdoctor_summary"]
    assert summary["mode"] == "detect" and summary["totals"]["stuck_execs"] == 1
    assert [h["host"] for h in summary["hosts"]] == ["node-stuck"], summary["hosts"]
    assert len(json.dumps(summary)) <= evars.get("hangdoctor_stats_max_bytes", 16384)
    # ansible-runner's artifacts dir holds the same event, as AWX ingests it.
    (stats_file,) = [p for p in (job.artifact_dir / "job_events").glob("*.json")
                     if json.loads(p.read_text())["event"] == "playbook_on_stats"]
    assert json.loads(stats_file.read_text())["event_data"]["artifact_data"] == art
    assert (job.artifact_dir / "rc").read_text().strip() == "2"
    assert (job.artifact_dir / "status").read_text().strip() == "failed"
    # The report files went where the job said.
    rep = json.loads((tmp_path / "reports" / "hangdoctor-detect.json").read_text())
    assert rep["totals"]["stuck_execs"] == 1
    assert "Report: %s/hangdoctor-detect.md" % (tmp_path / "reports") in job.stdout
    assert not harness.inspect_answers(stuck, timeout=1.0)  # detect changed nothing


def test_detect_stays_green_when_asked_and_when_the_fleet_is_healthy(harness, tmp_path, fleet):
    pdd, stuck = fleet
    evars = dict(job_template_vars("hangdoctor detect"), **survey_defaults("detect"))
    evars.update(base_vars(tmp_path, hangdoctor_fail_on_stuck="false"))  # survey answers are strings
    job = run_job(pdd, "hangdoctor_detect.yml", evars)
    assert job.status == "successful" and job.rc == 0, job.stdout[-3000:]
    assert job.artifacts["hangdoctor_affected_hosts"] == ["node-stuck"]  # green, yet it says so
    assert job.artifacts["hangdoctor_summary"]["totals"]["stuck_execs"] == 1
    assert not harness.inspect_answers(stuck, timeout=1.0)

    evars = dict(job_template_vars("hangdoctor detect"), **survey_defaults("detect"))
    evars.update(base_vars(tmp_path))
    # The job template's own policy on the nodes without findings: green.
    evars["hangdoctor_hosts"] = "node-healthy,node-engine-down"
    job = run_job(pdd, "hangdoctor_detect.yml", evars)
    assert job.status == "successful" and job.rc == 0, job.stdout[-3000:]
    assert job.artifacts["hangdoctor_affected_hosts"] == []
    assert job.artifacts["hangdoctor_summary"]["totals"]["stuck_execs"] == 0

    # The survey's other switch: an engine that does not answer fails its node.
    # (With the stuck node kept green, so that the job's only failure is that.)
    evars.update(hangdoctor_hosts="node-stuck,node-engine-down", hangdoctor_engine_required="true",
                 hangdoctor_fail_on_stuck="false")
    job = run_job(pdd, "hangdoctor_detect.yml", evars)
    assert job.status == "failed" and job.stats["failures"] == {"node-engine-down": 1}, job.stdout[-3000:]
    event, res = job.host_results("Check the node")["node-engine-down"]
    assert event == "runner_on_failed" and "not usable" in res["msg"], res
    assert job.artifacts["hangdoctor_summary"]["missing_hosts"] == ["node-engine-down"]
    assert job.artifacts["hangdoctor_affected_hosts"] == ["node-stuck"]


# ---- the workflow: detect -> approval -> remediate limited to the findings --


def test_workflow_hands_detect_artifacts_to_remediate(harness, tmp_path, fleet):
    pdd, stuck = fleet
    detect_vars = dict(job_template_vars("hangdoctor detect"), **survey_defaults("detect"))
    detect_vars.update(base_vars(tmp_path))
    detect = run_job(pdd, "hangdoctor_detect.yml", detect_vars)
    assert detect.status == "failed"  # the workflow's "on failure" path: the approval node

    # AWX merges every ancestor's artifacts into the next job's extra vars,
    # above the job template's own extra vars (awx/main/models/workflow.py).
    rem_vars = dict(job_template_vars("hangdoctor remediate"), **survey_defaults("remediate"))
    rem_vars.update(base_vars(tmp_path))
    assert "hangdoctor" not in detect.artifacts  # it would hide the host fact in the remediate job
    rem_vars.update(detect.artifacts)
    remediate = run_job(pdd, "hangdoctor_remediate.yml", rem_vars)
    assert remediate.status == "successful" and remediate.rc == 0, remediate.stdout[-3000:]
    # Limited to the affected host: the others were not even contacted.
    plays = [e for e in remediate.events if e["event"] == "runner_on_ok"]
    assert {e["event_data"]["host"] for e in plays} == {"node-stuck"}
    assert remediate.artifacts["hangdoctor_summary"]["totals"]["drained"] == 1
    assert harness.inspect_answers(stuck, timeout=3.0)


def test_remediate_with_no_affected_hosts_touches_nothing(harness, tmp_path, fleet):
    pdd, stuck = fleet
    rem_vars = dict(job_template_vars("hangdoctor remediate"), **survey_defaults("remediate"))
    rem_vars.update(base_vars(tmp_path, hangdoctor_affected_hosts="", hangdoctor_summary={"totals": {}}))
    job = run_job(pdd, "hangdoctor_remediate.yml", rem_vars)
    assert job.status == "successful", job.stdout[-3000:]
    assert not [e for e in job.events if e["event"] == "runner_on_ok"]
    assert not harness.inspect_answers(stuck, timeout=1.0)


def test_remediate_launched_alone_is_a_dry_run_on_the_limit(harness, tmp_path, stuck_node):
    """The job template's job type is check (AWX passes --check) and the
    launcher gives a Limit: what would be drained, nothing drained."""
    pdd, stuck = stuck_node
    (jt,) = [t for t in yaml.safe_load((AWX / "job_templates.yml").read_text())["hangdoctor_awx_job_templates"]
             if t["name"] == "hangdoctor remediate"]
    assert jt["job_type"] == "check" and jt["ask_job_type_on_launch"] and jt["ask_limit_on_launch"]
    evars = dict(jt["extra_vars"], **survey_defaults("remediate"))
    evars.update(base_vars(tmp_path))
    job = run_job(pdd, "hangdoctor_remediate.yml", evars, check=jt["job_type"] == "check", limit="node-stuck")
    assert job.status == "successful", job.stdout[-3000:]
    summary = job.artifacts["hangdoctor_summary"]
    assert summary["check_mode"] is True and summary["totals"]["would_drain"] == 1 and summary["totals"]["drained"] == 0
    assert not harness.inspect_answers(stuck, timeout=1.0)


# ---- every documented tag, as AWX "Job Tags" / "Skip Tags" --------------------


def documented_tags():
    """(playbook, tag) pairs from the Tags table of docs/roles.md: the same
    table tests/integration/test_playbook_tags.py exercises with ansible-playbook."""
    text = (ROOT / "docs" / "roles.md").read_text()
    table = text.split("## Tags", 1)[1]
    pairs = []
    for line in table.splitlines():
        m = re.match(r"^\| `([a-z_]+)` \| (.*?) \| (.*?) \|$", line)
        if m:
            tag, det, rem = m.groups()
            if det.strip() != "-":
                pairs.append(("detect", tag))
            if rem.strip() != "-":
                pairs.append(("remediate", tag))
    return pairs


def test_the_tag_table_is_what_the_playbooks_announce():
    pairs = documented_tags()
    assert ("detect", "detect") in pairs and ("remediate", "drain") in pairs and len(pairs) >= 7
    for book in ("detect", "remediate"):
        header = (ROOT / "playbooks" / ("%s.yml" % book)).read_text()
        for b, tag in pairs:
            if b == book:
                assert re.search(r"^# Tags:.*\b%s\b" % tag, header, re.M), (book, tag)


@pytest.mark.parametrize("mode", ["tags", "skip_tags"])
@pytest.mark.parametrize("book,tag", documented_tags())
def test_every_documented_tag_through_ansible_runner(harness, tmp_path, stuck_node, book, tag, mode):
    pdd, stuck = stuck_node
    evars = dict(job_template_vars("hangdoctor %s" % book), **survey_defaults(book))
    evars.update(base_vars(tmp_path, hangdoctor_fail_on_stuck=False, hangdoctor_affected_hosts=["node-stuck"]))
    job = run_job(pdd, "hangdoctor_%s.yml" % book, evars, **{mode: tag})
    assert job.status == "successful" and job.rc == 0, job.stdout[-3000:]
    assert "ERROR!" not in job.stdout
    drains = book == "remediate" and ((mode == "tags" and tag in ("drain", "remediate"))
                                      or (mode == "skip_tags" and tag in ("guard", "report")))
    assert harness.inspect_answers(stuck, timeout=2.0) == drains, (book, mode, tag)
    skipped_all = book == "remediate" and tag == "remediate"  # the playbook tags its whole role
    reported = (mode == "tags" and tag in ("report", "remediate")) or (
        mode == "skip_tags" and tag != "report" and not skipped_all)
    assert ("hangdoctor_summary" in job.artifacts) == reported, (book, mode, tag, job.artifacts)
