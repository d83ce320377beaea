"""extras/awx: the notification messages use only what AWX gives notification
templates and render as AWX renders them, the surveys are valid survey specs,
and the config-as-code playbook passes --syntax-check and ansible-lint
(production) and runs through ansible-playbook and the real awx.awx modules
against a stand-in for AWX's REST API (fake_awx_api.py).  No live AWX."""
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
import yaml
from jinja2 import meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment

from conftest import collections_path

ROOT = Path(__file__).resolve().parents[2]
AWX = ROOT / "extras" / "awx"

# What AWX puts in a notification's context: JobNotificationMixin.JOB_FIELDS_ALLOWED_LIST
# (awx/main/models/notifications.py; documented in docs/docsite/rst/userguide/
# notification_parameters_supported.rst), which includes the job's artifacts.
TOP_LEVEL = {"job", "approval_node_name", "approval_status", "url", "workflow_url", "job_friendly_name", "job_metadata"}
JOB_ATTRS = {
    "allow_simultaneous", "controller_node", "created", "custom_virtualenv", "description", "diff_mode", "elapsed",
    "execution_node", "failed", "finished", "force_handlers", "forks", "id", "job_explanation", "job_slice_count",
    "job_slice_number", "job_tags", "job_type", "launch_type", "limit", "modified", "name", "playbook", "scm_revision",
    "skip_tags", "start_at_task", "started", "status", "timeout", "type", "url", "use_fact_cache", "verbosity",
    "approval_status", "approval_node_name", "workflow_url", "scm_branch", "artifacts",
    "host_status_counts", "summary_fields"}
# AWX's list reads 'dark' 'processed' without a comma between: neither is in the context.
HOST_STATUS_COUNTS = {"skipped", "ok", "changed", "failures", "darkprocessed", "rescued", "ignored", "failed"}
SUMMARY_FIELDS = {
    "inventory": {"id", "name", "description", "has_active_failures", "total_hosts", "hosts_with_active_failures",
                  "total_groups", "groups_with_active_failures", "has_inventory_sources", "total_inventory_sources",
                  "inventory_sources_with_failures", "organization_id", "kind"},
    "project": {"id", "name", "description", "status", "scm_type"},
    "job_template": {"id", "name", "description"},
    "unified_job_template": {"id", "name", "description", "unified_job_type"},
    "instance_group": {"id", "name"},
    "created_by": {"id", "username", "first_name", "last_name"},
    "labels": {"count", "results"},
}
# A context shaped like the one AWX renders with (values from its docs' example).
CONTEXT = {
    "job": {"id": 42, "name": "hangdoctor detect", "status": "failed", "elapsed": 12.5, "launch_type": "scheduled",
            "limit": "", "job_tags": "", "host_status_counts": {"ok": 3, "failures": 1},
            "summary_fields": {"inventory": {"name": "kubernetes-nodes"}},
            # the report role's set_stats, as AWX stores them with the job
            "artifacts": {"hangdoctor_affected_hosts": ["node-stuck-1", "node-stuck-2"],
                          "hangdoctor_summary": {"missing_hosts": ["node-gone"], "totals": {"stuck_execs": 3}}}},
    "url": "https://awx.example.com/#/jobs/playbook/42", "workflow_url": "https://awx.example.com/#/jobs/workflow/7",
    "job_friendly_name": "Job", "approval_node_name": "Approve draining the stuck execs", "approval_status": "approved",
    "job_metadata": json.dumps({"id": 42, "status": "failed", "hosts": {"node-stuck": {"failures": 1}}}),
}


class AnsibleVarsLoader(yaml.SafeLoader):
    """YAML as Ansible reads a vars file: ``!unsafe`` marks a string that
    Ansible must not template (AWX's own Jinja placeholders)."""


AnsibleVarsLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def load_messages():
    return yaml.load((AWX / "notifications.yml").read_text(), Loader=AnsibleVarsLoader)["hangdoctor_awx_notification_messages"]


def messages():
    doc = load_messages()
    out = []

    def walk(path, node):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(path + (k,), v)
        else:
            out.append(("/".join(path), node))
    walk((), doc)
    return out


def attribute_chains(ast):
    """Every dotted access (job.summary_fields.inventory.name) in a template."""
    chains = []
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        parts = []
        cur = node
        while isinstance(cur, (nodes.Getattr, nodes.Getitem)):
            if isinstance(cur, nodes.Getattr):
                parts.append(cur.attr)
            elif isinstance(cur.arg, nodes.Const):
                parts.append(cur.arg.value)
            cur = cur.node
        if isinstance(cur, nodes.Name):
            chains.append([cur.name] + parts[::-1])
    return chains


def undocumented(template):
    ast = SandboxedEnvironment().parse(template)
    bad = sorted(meta.find_undeclared_variables(ast) - TOP_LEVEL)
    for chain in attribute_chains(ast):
        if chain[0] != "job" or len(chain) < 2:
            continue
        if chain[1] not in JOB_ATTRS:
            bad.append(".".join(chain))
        elif chain[1] == "host_status_counts" and len(chain) > 2 and chain[2] not in HOST_STATUS_COUNTS:
            bad.append(".".join(chain))
        elif chain[1] == "summary_fields" and len(chain) > 2 and (
                chain[2] not in SUMMARY_FIELDS or (len(chain) > 3 and chain[3] not in SUMMARY_FIELDS[chain[2]])):
            bad.append(".".join(chain))
    return bad


def awx_render(template, context):
    """As AWX renders a notification (JobNotificationMixin.build_notification_message):
    an immutable sandbox with the default Undefined, and an empty message for
    a template that raises (an undefined attribute)."""
    try:
        return ImmutableSandboxedEnvironment().from_string(template).render(**context)
    except (jinja2.TemplateSyntaxError, jinja2.UndefinedError, jinja2.exceptions.SecurityError):
        return ""


def without_artifacts(artifacts):
    ctx = copy.deepcopy(CONTEXT)
    if artifacts is None:
        del ctx["job"]["artifacts"]
    else:
        ctx["job"]["artifacts"] = artifacts
    return ctx


@pytest.mark.parametrize("key,template", messages())
def test_notification_messages_use_only_documented_variables(key, template):
    assert undocumented(template) == [], key
    text = awx_render(template, CONTEXT)
    assert "{{" not in text and text.strip(), key
    if key.endswith("/message"):
        assert "\n" not in text.strip(), key  # AWX: a message is one line
    # a job that failed before its report published artifacts still alerts
    for ctx in (without_artifacts(None), without_artifacts({}), without_artifacts({"hangdoctor_summary": None})):
        assert awx_render(template, ctx).strip(), key


def test_the_failure_alert_names_the_affected_nodes():
    doc = load_messages()
    message = awx_render(doc["error"]["message"], CONTEXT)
    assert "stuck execs on 2 node(s): node-stuck-1, node-stuck-2" in message, message
    assert "no result from 1 node(s): node-gone" in message, message
    body = awx_render(doc["error"]["body"], CONTEXT)
    assert "node-stuck-1, node-stuck-2" in body and "node-gone" in body, body
    many = without_artifacts({"hangdoctor_affected_hosts": ["n%02d" % i for i in range(25)]})
    message = awx_render(doc["error"]["message"], many)
    assert "stuck execs on 25 node(s): n00, " in message and "n09 and 15 more" in message and "n10" not in message


def test_the_checker_catches_what_awx_does_not_provide():
    assert undocumented("{{ artifacts.hangdoctor_summary.totals }}") == ["artifacts"]
    assert undocumented("{{ job.artifacts.hangdoctor_affected_hosts }}") == []  # AWX allows the job's artifacts
    assert undocumented("{{ job.extra_vars }}") == ["job.extra_vars"]
    assert undocumented("{{ job.host_status_counts.stuck }}") == ["job.host_status_counts.stuck"]
    assert undocumented("{{ job.host_status_counts.dark }}") == ["job.host_status_counts.dark"]
    assert undocumented("{{ job.summary_fields.inventory.secret }}") == ["job.summary_fields.inventory.secret"]
    assert undocumented("{{ job.id }} {{ url }}") == []


def test_the_message_kinds_are_those_awx_knows():
    doc = load_messages()
    assert set(doc) <= {"started", "success", "error", "workflow_approval"}
    assert set(doc["workflow_approval"]) <= {"running", "approved", "denied", "timed_out"}
    for kind, m in doc.items():
        parts = m.values() if kind == "workflow_approval" else [m]
        for p in parts:
            assert set(p) <= {"message", "body"}, (kind, p)


@pytest.mark.parametrize("name", ["detect", "remediate"])
def test_surveys_are_valid_survey_specs(name):
    spec = json.loads((AWX / ("survey_%s.json" % name)).read_text())
    assert set(spec) == {"name", "description", "spec"}
    variables = [q["variable"] for q in spec["spec"]]
    assert len(variables) == len(set(variables))
    argspec = {}
    for role in ("detect", "remediate", "report"):
        argspec.update(yaml.safe_load((ROOT / "roles" / role / "meta/argument_specs.yml").read_text())
                       ["argument_specs"]["main"]["options"])
    for q in spec["spec"]:
        assert q["type"] in {"text", "textarea", "password", "integer", "float", "multiplechoice", "multiselect"}, q
        assert q["question_name"] and q["variable"].startswith("hangdoctor_") and "required" in q, q
        if q["variable"] != "hangdoctor_serial":  # a play keyword, not a role option
            assert q["variable"] in argspec, q["variable"]
        if q["type"] == "multiplechoice":
            assert q["default"] in q["choices"], q
            if argspec.get(q["variable"], {}).get("type") == "bool":
                assert set(q["choices"]) == {"true", "false"}, q  # the roles cast with | bool
            elif "choices" in argspec.get(q["variable"], {}):
                assert set(q["choices"]) <= set(argspec[q["variable"]]["choices"]), q
        if q["type"] == "integer":
            assert q["min"] <= q["default"] <= q["max"], q
    # hangdoctor_affected_hosts is never a survey question: a survey default
    # would stand in for the detect job's artifact.
    assert "hangdoctor_affected_hosts" not in variables


def test_job_templates_name_existing_playbooks_and_surveys():
    jts = yaml.safe_load((AWX / "job_templates.yml").read_text())["hangdoctor_awx_job_templates"]
    assert [jt["name"] for jt in jts] == ["hangdoctor detect", "hangdoctor remediate"]
    for jt in jts:
        assert (AWX / jt["survey"]).is_file()
        book = jt["playbook"].replace("playbooks/hangdoctor_", "").replace(".yml", "")
        assert (ROOT / "playbooks" / ("%s.yml" % book)).is_file()


def _env():
    env = dict(os.environ)
    env["ANSIBLE_COLLECTIONS_PATH"] = collections_path()
    env["PATH"] = "%s:%s" % (Path(sys.executable).parent, env.get("PATH", ""))
    return env


def test_configure_playbook_passes_syntax_check():
    r = subprocess.run(["ansible-playbook", "--syntax-check", "-i", "localhost,", str(AWX / "configure.yml")],
                       capture_output=True, text=True, timeout=120, env=_env(), check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_configure_playbook_passes_ansible_lint_production():
    r = subprocess.run(["ansible-lint", "--profile", "production", "--offline", "--nocolor", "extras/awx"],
                       capture_output=True, text=True, timeout=300, env=_env(), cwd=str(ROOT), check=False)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "1 files processed" in r.stderr + r.stdout or "files processed" in r.stderr + r.stdout


# ---- configure.yml run by ansible-playbook against an AWX API ---------------


@pytest.fixture
def awx_api():
    from fake_awx_api import FakeAWX, serve
    fake = FakeAWX(seed={"inventories": [{"name": "kubernetes-nodes", "organization": 1}],
                         "credentials": [{"name": "node-ssh"}, {"name": "k8s-api-token"}]})
    server, url = serve(fake)
    yield fake, url
    server.shutdown()
    server.server_close()


def run_configure(url, *extra):
    env = _env()
    env.update({"CONTROLLER_HOST": url, "CONTROLLER_OAUTH_TOKEN": "fake-token", "CONTROLLER_VERIFY_SSL": "false",
                "HANGDOCTOR_SLACK_TOKEN": "xoxb-test", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "0",
                "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0"})
    return subprocess.run(["ansible-playbook", "-i", "localhost,", "-e", "ansible_python_interpreter=%s" % sys.executable,
                           str(AWX / "configure.yml")] + list(extra),
                          capture_output=True, text=True, timeout=300, env=env, check=False)


def test_configure_playbook_creates_every_awx_object(awx_api):
    """The playbook through ansible-playbook and the real awx.awx modules: AWX
    receives the notification messages exactly as notifications.yml has them
    (Ansible must not template AWX's own {{ job_friendly_name }})."""
    fake, url = awx_api
    r = run_configure(url)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    objs = fake.objects
    nts = list(objs["notification_templates"].values())
    assert [n["name"] for n in nts] == ["hangdoctor alerts"]
    assert nts[0]["messages"] == load_messages(), nts[0]["messages"]
    assert "{{ job_friendly_name }}" in nts[0]["messages"]["error"]["message"]
    assert nts[0]["notification_configuration"]["token"] == "xoxb-test"
    assert sorted(j["name"] for j in objs["job_templates"].values()) == ["hangdoctor detect", "hangdoctor remediate"]
    wf = list(objs["workflow_job_templates"].values())
    assert [w["name"] for w in wf] == ["hangdoctor detect, approve, remediate"]
    nodes = dict((n["identifier"], n) for n in objs["workflow_job_template_nodes"].values())
    assert sorted(nodes) == ["approve", "detect", "remediate"]
    assert fake.links[("workflow_job_template_nodes", nodes["detect"]["id"], "failure_nodes")] == [nodes["approve"]["id"]]
    assert fake.links[("workflow_job_template_nodes", nodes["approve"]["id"], "success_nodes")] == [nodes["remediate"]["id"]]
    for jt in objs["job_templates"].values():
        assert fake.links[("job_templates", jt["id"], "notification_templates_error")] == [nts[0]["id"]]
        assert fake.surveys[("job_templates", jt["id"])]["spec"]
    assert [s["rrule"] for s in objs["schedules"].values()] == ["DTSTART:20250101T000000Z RRULE:FREQ=MINUTELY;INTERVAL=15"]
    # a second run changes nothing
    r = run_configure(url)
    assert r.returncode == 0 and "changed=0" in r.stdout, r.stdout[-3000:]
