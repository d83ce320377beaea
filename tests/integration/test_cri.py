"""containerd-CRI nodes, on the real thing: containerd 1.6 with its CRI plugin
(no dockerd), pods with two containers created through the CRI API, exec probes
sent as kubelet sends them (ExecSync with the probe's timeout and a gRPC
deadline), the fault runtime as the runc handler's binary.  Every test first
proves the hang is real (ExecSync does not answer, runc init blocked in write
on a full pipe whose reader is the pod's shim), then what the collection does."""
import hashlib
import os
import time

import grpc
import pytest

import hdharness
from conftest import run_module

WRITE_NRS = ("1", "20", "64", "66")
HEADER_END = b"----- hangdoctor: pipe bytes follow -----\n"
TRAILER = b"\n----- hangdoctor: end of pipe bytes"
# kubelet keeps an ExecSync in flight for the probe timeout + --runtime-request-timeout;
# a long deadline keeps the harness's probe waiting through a test, as kubelet's would.
IN_FLIGHT = 60.0


def cri_env(cri):
    # a CRI-only node: dockerd's default socket is not there, containerd is found through
    # CONTAINERD_ADDRESS as ctr finds it
    assert not os.environ.get("DOCKER_HOST")
    return {"CONTAINERD_ADDRESS": str(cri.cri_sock)}


def assert_really_stuck(cri, pod, cid, fut, pid):
    """The hang is real: the kubelet-style ExecSync is still waiting, the
    pod's other container no longer answers exec probes either, and /proc
    shows runc init blocked writing to a full pipe that the pod's shim reads."""
    assert pid is not None, "the fault runtime did not deadlock"
    assert not fut.done(), "ExecSync returned: no deadlock"
    other = [c for c in pod["containers"].values() if c != cid][0]
    with pytest.raises(grpc.RpcError) as e:
        cri.client().exec_sync(other, ["true"], probe_timeout=1, request_timeout=1.0)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    ev = hdharness.evidence(pid)
    assert ev["comm"] == "runc:[2:INIT]"
    assert ev["syscall"][0] in WRITE_NRS and ev["syscall"][1] == "0x2", ev
    assert ev["wchan"] in ("pipe_wait", "pipe_write", "anon_pipe_write"), ev
    assert ev["queued"] == ev["capacity"] > 0, ev
    shim = cri.shim_of(pod["id"])
    assert shim is not None and [p for p, dummy in ev["readers"]] == [shim], (shim, ev)
    runc_exec = hdharness.proc_ppid(pid)
    assert hdharness.proc_ppid(runc_exec) == shim
    # one shim per pod: its -id is the sandbox, the runc exec argv names the container
    shim_argv = hdharness.proc_cmdline(shim)
    assert shim_argv[shim_argv.index("-id") + 1] == pod["id"] != cid
    assert hdharness.proc_cmdline(runc_exec)[-1] == cid
    return ev


def test_execsync_deadlocks_in_a_pod_shim_serving_two_containers(cri, cri_release):
    pod = cri.run_pod("hang-real", namespace="shop")
    app = pod["containers"]["app"]
    assert cri.exec_answers(app) and cri.exec_answers(pod["containers"]["sidecar"])
    fut, pid = cri.hang_execsync(app, request_timeout=IN_FLIGHT)
    assert_really_stuck(cri, pod, app, fut, pid)
    # what still answers: the CRI container status (served from containerd's store)
    t0 = time.monotonic()
    assert cri.client().container_status(app, timeout=2).id == app
    assert time.monotonic() - t0 < 1.0
    # and the whole chain unblocks once the fault runtime's processes are gone
    cri.release_all()
    with pytest.raises(grpc.RpcError):
        fut.result(timeout=10)
    assert cri.exec_answers(pod["containers"]["sidecar"], request_timeout=5.0)


def test_hung_container_info_on_a_cri_only_node_names_the_pod(cri, cri_release):
    sick = cri.run_pod("web-7d9f", namespace="shop")
    healthy = cri.run_pod("api-5c4b", namespace="shop")
    app = sick["containers"]["app"]
    fut, pid = cri.hang_execsync(app, request_timeout=IN_FLIGHT)
    assert_really_stuck(cri, sick, app, fut, pid)
    assert not os.path.exists("/var/run/docker.sock")

    timeout = 2.0
    # the README's ad hoc command, unchanged (no options)
    result, dummy = run_module("hung_container_info", None, env=cri_env(cri))
    assert result["_status"] == "SUCCESS", result
    engines = {e["name"]: e for e in result["engines"]}
    assert engines["docker"]["present"] is False and engines["docker"]["checked"] is False
    assert "ENOENT" in engines["docker"]["error"]
    assert engines["containerd"]["present"] is True and engines["containerd"]["checked"] is True
    assert engines["containerd"]["version"].startswith("1.")
    assert app in result["hung"], result
    assert "shop/web-7d9f/app" in result["msg"] and "not on this node: docker" in result["msg"], result["msg"]

    result, dummy = run_module("hung_container_info", {"timeout": timeout, "engines": ["containerd"]}, env=cri_env(cri))
    assert result["_status"] == "SUCCESS", result
    by_id = {c["id"]: c for c in result["containers"]}
    c = by_id[app]
    assert c["responsive"] is False and c["latency_ms"] >= timeout * 1000 and c["engine"] == "containerd"
    assert (c["pod_namespace"], c["pod_name"], c["container_name"]) == ("shop", "web-7d9f", "app")
    assert c["pod_sandbox_id"] == sick["id"]
    # the sandbox ("pause") tasks are not reported as containers
    assert sick["id"] not in by_id and healthy["id"] not in by_id
    for name, cid in healthy["containers"].items():
        assert by_id[cid]["responsive"] is True and by_id[cid]["container_name"] == name, by_id[cid]
        assert cid not in result["hung"]
    assert [e["name"] for e in result["engines"]] == ["containerd"]
    # the whole check ends by its deadline (timeout + 1 s), however many containers hang
    assert result["elapsed_seconds"] <= timeout + 1.5, result["elapsed_seconds"]

    # a mistyped containerd address is an error, not "no engine here"
    bad, dummy = run_module("hung_container_info", {"containerd_address": "/nonexistent/hd/containerd.sock"},
                            env=cri_env(cri))
    assert bad["_status"] == "FAILED!" and "ENOENT" in bad["msg"] and "Traceback" not in bad["msg"], bad


def evidence_body(path):
    data = open(path, "rb").read()
    head, sep, rest = data.partition(HEADER_END)
    assert sep, "no header in %s" % path
    cut = rest.rfind(TRAILER)
    assert cut >= 0, "no trailer in %s" % path
    return head.decode(), rest[:cut]


def test_runc_exec_info_and_drain_on_a_cri_pod_verified_through_the_shim(cri, cri_release, tmp_path):
    pod = cri.run_pod("db-0", namespace="data")
    app = pod["containers"]["app"]
    fut, pid = cri.hang_execsync(app, request_timeout=IN_FLIGHT)
    assert_really_stuck(cri, pod, app, fut, pid)
    shim = cri.shim_of(pod["id"])

    info, dummy = run_module("runc_exec_info", {"container_ids": [app], "confirm_interval": 0.3})
    assert info["_status"] == "SUCCESS", info
    recs = [r for r in info["stuck_execs"] if r["container_id"] == app]
    assert len(recs) == 1, info
    rec = recs[0]
    # the container from the runc exec argv, not the pod shim's -id (the sandbox)
    assert rec["container_id"] == app != pod["id"]
    assert rec["writer"]["pid"] == pid and rec["shim"]["pid"] == shim and rec["shim"]["version"] == "v2"
    assert rec["pod"]["namespace"] == "data" and rec["pod"]["name"] == "db-0" and rec["pod"]["container"] == "app", rec

    args = {"container_ids": [app], "min_age_seconds": 0, "evidence_dir": str(tmp_path / "ev"),
            "confirm_interval": 0.3, "inspect_timeout": 2}
    res, dummy = run_module("runc_pipe_drain", args, env=cri_env(cri))
    assert res["_status"] == "CHANGED", res
    (entry,) = res["drained"]
    assert (entry["container_id"], entry["pid"]) == (app, pid)
    assert entry["unblocked"] is True
    # verified through the CRI path: dockerd is not here, the pod shim answers again
    assert entry["verified"] is True and "containerd shim" in entry["verify_reason"], entry
    length, sha, dummy = cri.record(pid)
    header, body = evidence_body(entry["evidence_path"])
    assert hashlib.sha256(body[:length]).hexdigest() == sha and entry["bytes"] == len(body)
    # the kubelet's probe gets its answer (the exec failed) long before its deadline
    with pytest.raises(grpc.RpcError) as e:
        fut.result(timeout=10)
    assert e.value.code() != grpc.StatusCode.DEADLINE_EXCEEDED
    assert cri.exec_answers(app, request_timeout=5.0) and cri.exec_answers(pod["containers"]["sidecar"])


def test_queued_kubelet_probes_deadlock_again_after_a_drain(cri, cri_release, tmp_path):
    pod = cri.run_pod("queue-0", namespace="shop")
    app = pod["containers"]["app"]
    first, pid = cri.hang_execsync(app, count=3, request_timeout=IN_FLIGHT)
    assert_really_stuck(cri, pod, app, first, pid)
    # kubelet keeps probing: two more ExecSync calls wait behind the stuck one in the pod's shim
    queued = [cri.client().exec_sync_future(app, ["true"], probe_timeout=1, request_timeout=IN_FLIGHT)
              for dummy in range(2)]
    time.sleep(0.5)
    assert not any(q.done() for q in queued)
    assert [p for p, dummy in cri.fault_inits(app)] == [pid]

    args = {"container_ids": [app], "min_age_seconds": 0, "evidence_dir": str(tmp_path / "ev"),
            "confirm_interval": 0.3, "inspect_timeout": 2, "max_rounds": 1}
    res, dummy = run_module("runc_pipe_drain", args, env=cri_env(cri))
    assert [e["pid"] for e in res["drained"]] == [pid], res
    (rec,) = res["recurring"]
    assert rec["container_id"] == app
    (again,) = rec["stuck_pids"]
    assert again != pid and again in [p for p, dummy in cri.fault_inits(app)]
    # detection sees the pod hung again
    again_info, dummy = run_module("hung_container_info", {"timeout": 2, "engines": ["containerd"]}, env=cri_env(cri))
    assert app in again_info["hung"], again_info


def test_cri_detection_runs_on_a_python36_target(cri, cri_release):
    """Targets may be CentOS 7-era: the CRI detection is Python 3.6 stdlib only."""
    import glob
    import json
    import subprocess
    from conftest import collections_path
    py36 = os.environ.get("HD_PY36") or next(iter(sorted(glob.glob("/root/.pyenv/versions/3.6*/bin/python3.6"))), None)
    if not py36:
        pytest.skip("no Python 3.6 interpreter (HD_PY36)")
    pod = cri.run_pod("py36-0", namespace="old")
    app = pod["containers"]["app"]
    fut, pid = cri.hang_execsync(app, request_timeout=IN_FLIGHT)
    assert_really_stuck(cri, pod, app, fut, pid)
    code = ("import json, sys; sys.path.insert(0, %r)\n"
            "from ansible_collections.hangdoctor.runtime.plugins.module_utils._engines import EngineQuery, check_engines\n"
            "print(json.dumps(check_engines(EngineQuery(containerd_address=%r, timeout=2))))"
            % (collections_path(), str(cri.cri_sock)))
    r = subprocess.run([py36, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, check=False)
    assert r.returncode == 0, r.stderr.decode()
    res = json.loads(r.stdout.decode())
    assert app in res["hung"], res
    by_id = {c["id"]: c for c in res["containers"]}
    assert (by_id[app]["pod_namespace"], by_id[app]["pod_name"]) == ("old", "py36-0")


def test_a_node_with_both_engines_has_both_checked(harness, release, cri, cri_release):
    """dockerd and containerd-CRI on one node (a migration in progress): auto checks both,
    and a stuck exec in each is found, each with its engine."""
    pod = cri.run_pod("both-0", namespace="mixed")
    app = pod["containers"]["app"]
    fut, pid = cri.hang_execsync(app, request_timeout=IN_FLIGHT)
    assert_really_stuck(cri, pod, app, fut, pid)
    cid = harness.run_container("cri-mixed-docker")
    dummy, dpid = harness.hang(cid)
    assert dpid is not None and not harness.inspect_answers(cid, timeout=1.0)

    result, dummy = run_module("hung_container_info", {"docker_host": harness.docker_host, "timeout": 2},
                               env=cri_env(cri))
    assert result["_status"] == "SUCCESS", result
    engines = {e["name"]: e for e in result["engines"]}
    assert engines["docker"]["checked"] is True and engines["containerd"]["checked"] is True, engines
    by_id = {c["id"]: c for c in result["containers"]}
    assert by_id[cid]["engine"] == "docker" and by_id[app]["engine"] == "containerd"
    assert {cid, app} <= set(result["hung"]), result["hung"]
    assert "checked docker, containerd" in result["msg"], result["msg"]
    # the old single-engine field still describes dockerd
    assert result["engine"]["docker_host"] == harness.docker_host and result["engine"]["reachable"] is True


def test_node_doctor_detects_and_remediates_a_cri_pod(cri, cri_release, tmp_path):
    """What the detect and remediate roles run on the node, on a CRI-only node."""
    pod = cri.run_pod("nd-0", namespace="shop")
    app = pod["containers"]["app"]
    fut, pid = cri.hang_execsync(app, request_timeout=IN_FLIGHT)
    assert_really_stuck(cri, pod, app, fut, pid)
    base = {"container_ids": [app], "metrics_dir": "", "confirm_interval": 0.3}

    res, dummy = run_module("node_doctor", base, env=cri_env(cri))
    assert res["_status"] == "SUCCESS", res
    fact = res["ansible_facts"]["hangdoctor"]
    (rec,) = [s for s in fact["stuck_execs"] if s["container_id"] == app]
    assert rec["pod"] == "shop/nd-0" and rec["pod_container"] == "app" and rec["writer_pid"] == pid, rec
    assert rec["shim_pid"] == cri.shim_of(pod["id"]) and rec["shim_version"] == "v2"
    # containerd was asked (CONTAINERD_ADDRESS of the target), only about the container asked for
    (ctr,) = [e for e in fact["engines"] if e["name"] == "containerd"]
    assert ctr["present"] and ctr["checked"], fact["engines"]
    assert fact["hung"] == [app], fact["hung"]

    # require_guard never: another test on this machine may run a process named kubelet
    res, dummy = run_module("node_doctor", dict(base, mode="remediate", drain_min_age_seconds=0, require_guard="never",
                                                evidence_dir=str(tmp_path / "ev")), env=cri_env(cri))
    assert res["_status"] == "CHANGED", res
    (entry,) = res["ansible_facts"]["hangdoctor"]["drained"]
    assert entry["container_id"] == app and entry["pid"] == pid and entry["unblocked"] is True, entry
    assert entry["verified"] is True, entry  # the pod shim answered again
    length, sha, dummy = cri.record(pid)
    header, body = evidence_body(entry["evidence_path"])
    assert hashlib.sha256(body[:length]).hexdigest() == sha
    with pytest.raises(grpc.RpcError) as e:
        fut.result(timeout=10)
    assert e.value.code() != grpc.StatusCode.DEADLINE_EXCEEDED
    assert cri.exec_answers(app, request_timeout=5.0) and cri.exec_answers(pod["containers"]["sidecar"])


def test_detect_and_remediate_playbooks_on_a_cri_only_node(cri, cri_release, tmp_path):
    import json
    import subprocess
    import sys
    from conftest import ansible_env
    pod = cri.run_pod("books-0", namespace="shop")
    app = pod["containers"]["app"]
    fut, pid = cri.hang_execsync(app, request_timeout=IN_FLIGHT)
    assert_really_stuck(cri, pod, app, fut, pid)
    reports = tmp_path / "reports"

    def play(book):
        evars = {"ansible_python_interpreter": sys.executable, "hangdoctor_become": False,
                 "hangdoctor_container_ids": [app], "hangdoctor_report_dir": str(reports),
                 "hangdoctor_metrics_dir": "", "hangdoctor_evidence_dir": str(tmp_path / "evidence"),
                 "hangdoctor_inspect_timeout": 2, "hangdoctor_confirm_interval": 0.3,
                 "hangdoctor_drain_min_age_seconds": 0, "hangdoctor_containerd_address": str(cri.cri_sock),
                 # a test elsewhere on this machine may run a process named kubelet, which makes
                 # this a "Kubernetes node" whose drains wait for the eviction guard: not tested here
                 "hangdoctor_kube_guard": "never"}
        r = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", "hangdoctor.runtime." + book,
                            "-e", json.dumps(evars)], capture_output=True, text=True, timeout=300,
                           env=ansible_env(cri_env(cri)), check=False)
        assert r.returncode == 0 and "ERROR!" not in r.stdout + r.stderr, r.stdout[-4000:] + r.stderr[-2000:]
        return json.loads((reports / ("hangdoctor-%s.json" % book)).read_text())

    rep = play("detect")
    assert rep["totals"]["stuck_execs"] == 1 and rep["totals"]["hung_containers"] == 1, rep["totals"]
    assert [e["checked"] for e in rep["hosts"][0]["engines"] if e["name"] == "containerd"] == [True]
    assert not fut.done()
    rep = play("remediate")
    assert rep["totals"]["drained"] == 1 and rep["totals"]["drained_bytes"] >= cri.record(pid)[0], json.dumps(rep)[:3000]
    assert rep["totals"]["verify_failed_hosts"] == 0, rep["totals"]
    assert rep["hosts"][0]["drained"][0]["verified"] is True, rep["hosts"][0]["drained"]
    with pytest.raises(grpc.RpcError) as e:
        fut.result(timeout=10)
    assert e.value.code() != grpc.StatusCode.DEADLINE_EXCEEDED
    assert cri.exec_answers(app, request_timeout=5.0)
    assert list((tmp_path / "evidence").glob("*.log")), "no evidence file"
