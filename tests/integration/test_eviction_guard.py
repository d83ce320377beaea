"""The eviction guard on a Kubernetes node, end to end: a real stuck exec on
the harness, a stand-in kubelet (so node_doctor knows it is a Kubernetes node
and which node name the kubelet uses), the real kubernetes.core modules and
Python client on the controller, and an HTTPS endpoint that serves the Node
and Pod objects a real API server returns (fake_kube_api.py)."""
import pytest

import fake_kube_api as fk
from test_playbook_tags import ok, play, still_stuck

NODE = "node-17.example"  # what the stand-in kubelet's --hostname-override gives, lower-cased


@pytest.fixture
def kube_api(tmp_path):
    d = tmp_path / "kube"
    d.mkdir()
    api = fk.FakeKubeAPI(d)
    yield api
    api.close()


@pytest.fixture
def stuck(harness, release):
    from test_runc_pipe_drain import assert_stuck, new_container
    cid = new_container(harness)
    exec_proc, pid = harness.hang(cid)
    assert_stuck(harness, cid, pid)
    return cid


def run(harness, tmp_path, cid, api, **extra):
    kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")
    return play(harness, tmp_path, "remediate", cid, extra=dict(extra, hangdoctor_kubeconfig=str(kubeconfig)))


def test_pending_deletions_on_a_not_ready_node_block_the_drain(harness, tmp_path, stuck, kubelet, kube_api):
    kube_api.nodes[NODE] = fk.node(NODE, ready=False, since="2026-11-27T08:00:00Z")
    kube_api.pods = [fk.pod("shop", "web-0", NODE, deleting=True), fk.pod("shop", "cart-1", NODE, deleting=True),
                     fk.pod("shop", "ok-2", NODE), fk.pod("other", "elsewhere-0", "node-2", deleting=True)]
    r, rep = run(harness, tmp_path, stuck, kube_api)
    ok(r)
    assert still_stuck(harness, stuck)
    host = rep["hosts"][0]
    (skip,) = host["skipped"]
    assert "2 pod(s) bound to %s carry a deletionTimestamp (node NotReady for " % NODE in skip["reason"], skip
    assert host["guard"]["pending_deletions"] == ["shop/cart-1", "shop/web-0"]
    assert rep["totals"]["guard_blocked_hosts"] == 1 and rep["totals"]["drained"] == 0
    calls = [(m, p, q) for m, p, q in kube_api.requests if p.startswith("/api/v1/")]
    assert ("GET", "/api/v1/nodes/" + NODE, {}) in calls
    assert ("GET", "/api/v1/pods", {"fieldSelector": "spec.nodeName=" + NODE}) in calls
    assert not kube_api.patches


def test_no_pending_deletions_cordon_drain_verify_uncordon(harness, tmp_path, stuck, kubelet, kube_api):
    kube_api.nodes[NODE] = fk.node(NODE, ready=False)
    kube_api.pods = [fk.pod("shop", "ok-2", NODE)]
    r, rep = run(harness, tmp_path, stuck, kube_api, hangdoctor_kube_cordon=True)
    ok(r)
    assert harness.inspect_answers(stuck, timeout=2.0)
    host = rep["hosts"][0]
    assert host["drained"][0]["verified"] is True and host["verify"]["ok"] is True
    assert host["guard"]["cordoned"] is True and host["guard"]["blocked"] is False
    assert [p[2] for p in kube_api.patches] == [{"spec": {"unschedulable": True}}, {"spec": {"unschedulable": False}}]
    assert kube_api.nodes[NODE]["spec"]["unschedulable"] is False


def test_a_node_someone_else_cordoned_is_left_as_it_is(harness, tmp_path, stuck, kubelet, kube_api):
    kube_api.nodes[NODE] = fk.node(NODE, ready=True, unschedulable=True)
    r, rep = run(harness, tmp_path, stuck, kube_api, hangdoctor_kube_cordon=True)
    ok(r)
    assert harness.inspect_answers(stuck, timeout=2.0)
    assert rep["hosts"][0]["guard"]["cordoned"] is False
    assert not kube_api.patches and kube_api.nodes[NODE]["spec"]["unschedulable"] is True


def test_node_unknown_to_the_api_is_not_drained(harness, tmp_path, stuck, kubelet, kube_api):
    r, rep = run(harness, tmp_path, stuck, kube_api)
    ok(r)
    assert still_stuck(harness, stuck)
    assert "node %s not found in the cluster" % NODE in rep["hosts"][0]["skipped"][0]["reason"]


ROLE_IN_BATCHES = """---
- name: The remediate role in a playbook of its own, in serial batches
  hosts: all
  gather_facts: false
  serial: 1
  tasks:
    - name: Remediate
      ansible.builtin.import_role:
        name: hangdoctor.runtime.remediate
"""


def run_fleet(tmp_path, hosts, evars, book="hangdoctor.runtime.remediate"):
    """ansible-playbook over an inventory of HOSTS ({name: hostvars}, local
    connection); EVARS as extra vars (they apply to every host)."""
    import json
    import subprocess
    import sys
    from conftest import ansible_env
    inv = {"all": {"hosts": hosts, "vars": {"ansible_python_interpreter": sys.executable,
                                            "ansible_connection": "local"}}}
    (tmp_path / "inventory.json").write_text(json.dumps(inv))
    r = subprocess.run(["ansible-playbook", "-i", str(tmp_path / "inventory.json"), book, "-e", json.dumps(evars)],
                       capture_output=True, text=True, timeout=600, env=ansible_env(), check=False)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    rep = json.loads((tmp_path / "reports" / "hangdoctor-remediate.json").read_text())
    return r, rep


def empty_proc(tmp_path):
    from pathlib import Path
    proc = tmp_path / "proc"
    proc.mkdir(exist_ok=True)
    (proc / "stat").write_text(Path("/proc/stat").read_text())
    return proc


def test_serial_batches_ask_the_api_only_about_their_own_nodes(tmp_path, kube_api):
    """The role in a playbook of one's own with serial batches: the hosts of
    later batches have no node check yet: they are neither guard targets of
    this batch (an API round trip per node per batch) nor hosts "without a
    result" in its summary.  Nothing is stuck on these three nodes (an empty
    /proc), so the API is never asked."""
    (tmp_path / "batches.yml").write_text(ROLE_IN_BATCHES)
    evars = {"hangdoctor_become": False, "hangdoctor_proc_root": str(empty_proc(tmp_path)),
             "hangdoctor_kube_guard": "always",
             "hangdoctor_docker_host": "unix://%s/none.sock" % tmp_path, "hangdoctor_metrics_dir": "",
             "hangdoctor_report_dir": str(tmp_path / "reports"),
             "hangdoctor_kubeconfig": str(kube_api.kubeconfig(tmp_path / "kubeconfig"))}
    r, rep = run_fleet(tmp_path, {"node-a": {}, "node-b": {}, "node-c": {}}, evars, book=str(tmp_path / "batches.yml"))
    assert not [p for m, p, q in kube_api.requests if p.startswith("/api/v1/")], kube_api.requests
    assert r.stdout.count("PLAY [") == 3  # one play run per batch
    assert "2 host(s) in later serial batches, not reached yet" in r.stdout
    assert "1 host(s) in later serial batches, not reached yet" in r.stdout
    assert "no result (unreachable or failed)" not in r.stdout
    assert rep["totals"]["hosts_reported"] == 3 and rep["pending_hosts"] == [] and rep["missing_hosts"] == []


def test_remediate_playbook_batches_only_the_hosts_with_stuck_execs(harness, tmp_path, stuck, kubelet, kube_api):
    """The remediate playbook checks every host in one pass; only the host
    with a real stuck exec goes through the serial batches, the eviction
    guard (asked about that node alone), the drain and its verification.  The
    healthy hosts (an empty /proc, no engine) never enter the batches, though
    hangdoctor_kube_guard is always and the batches are one host each."""
    kube_api.nodes[NODE] = fk.node(NODE, ready=True)
    kube_api.pods = [fk.pod("shop", "ok-2", NODE)]
    healthy = {"hangdoctor_proc_root": str(empty_proc(tmp_path)),
               "hangdoctor_docker_host": "unix://%s/none.sock" % tmp_path}
    hosts = {"node-a": healthy, "hung": {"hangdoctor_docker_host": harness.docker_host,
                                         "hangdoctor_container_ids": [stuck]},
             "node-b": healthy, "node-c": healthy}
    evars = {"hangdoctor_become": False, "hangdoctor_serial": 1, "hangdoctor_kube_guard": "always",
             "hangdoctor_metrics_dir": "", "hangdoctor_report_dir": str(tmp_path / "reports"),
             "hangdoctor_evidence_dir": str(tmp_path / "evidence"), "hangdoctor_inspect_timeout": 2,
             "hangdoctor_confirm_interval": 0.3, "hangdoctor_drain_min_age_seconds": 0,
             "hangdoctor_kubeconfig": str(kube_api.kubeconfig(tmp_path / "kubeconfig"))}
    r, rep = run_fleet(tmp_path, hosts, evars)
    assert harness.inspect_answers(stuck, timeout=2.0)
    # the check: one play over the four hosts; the batches: one play run, the hung host's
    batches = r.stdout.split("PLAY [Remediate stuck execs]")
    assert len(batches) == 2, r.stdout[-4000:]
    drain_play = batches[1].split("PLAY [Report the remediate run]")[0]
    assert "[hung]" in drain_play
    for h in ("node-a", "node-b", "node-c"):
        assert "[%s]" % h not in drain_play, (h, drain_play[-3000:])
    calls = [p for m, p, q in kube_api.requests if p.startswith("/api/v1/")]
    assert calls and all(p == "/api/v1/nodes/" + NODE or p == "/api/v1/pods" for p in calls), calls
    assert rep["totals"]["hosts_reported"] == 4 and rep["totals"]["drained"] == 1
    assert rep["missing_hosts"] == [] and rep["pending_hosts"] == []
    by_host = {h["host"]: h for h in rep["hosts"]}
    assert by_host["hung"]["drained"][0]["verified"] is True and by_host["hung"]["verify"]["ok"] is True
    assert by_host["hung"]["guard"]["blocked"] is False
    for h in ("node-a", "node-b", "node-c"):
        assert not by_host[h].get("stuck_execs") and not by_host[h].get("drained")
