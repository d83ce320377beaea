"""A real scrape: Debian's prometheus-node-exporter on loopback, its textfile
collector pointed at the directory hangdoctor writes to, during a real
deadlock in the harness (dockerd + containerd + shim v2 + the fault runtime).
The series name the pod while the exec is stuck, and are gone after the drain;
the drain counter has grown."""
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

import hdharness
from conftest import collections_path, run_module

sys.path.insert(0, collections_path())
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _summary as sm  # noqa: E402
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _metrics  # noqa: E402

NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
PROMTOOL = shutil.which("promtool")
POD = {"io.kubernetes.pod.namespace": "shop", "io.kubernetes.pod.name": "web-0", "io.kubernetes.container.name": "web"}

pytestmark = pytest.mark.skipif(NODE_EXPORTER is None, reason="prometheus-node-exporter not installed (Debian package)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def node_exporter(tmp_path):
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    port = free_port()
    log = open(tmp_path / "node_exporter.log", "wb")
    # Only the textfile collector: the test reads what hangdoctor wrote, not the host.
    proc = subprocess.Popen([NODE_EXPORTER, "--collector.disable-defaults", "--collector.textfile",
                             "--collector.textfile.directory=%s" % textfile, "--web.disable-exporter-metrics",
                             "--web.listen-address=127.0.0.1:%d" % port], stdout=log, stderr=subprocess.STDOUT)
    url = "http://127.0.0.1:%d/metrics" % port
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("node_exporter did not start: %s" % (tmp_path / "node_exporter.log").read_text())
                time.sleep(0.1)
        yield {"dir": textfile, "url": url}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def scrape(url):
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    series = {}
    for line in text.splitlines():
        m = re.match(r'^([a-z_]+)(\{.*\})? (\S+)$', line)
        if m:
            labels = dict(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            series.setdefault(m.group(1), []).append((labels, float(m.group(3))))
    return series


def write_metrics(directory, summary):
    """Atomically, as node_doctor does: the collector never reads half a file."""
    target = directory / "hangdoctor.prom"
    previous = target.read_text() if target.exists() else None
    text = _metrics.render(summary, previous_text=previous)
    tmp = directory / ".hangdoctor.prom.tmp"
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)
    return text


def scan(harness, cid):
    # Only this test's container: the machine may run other harnesses' deadlocks.
    info, dummy = run_module("runc_exec_info", {"container_ids": [cid], "confirm_interval": 0.3, "peek_bytes": 1024})
    assert info["_status"] == "SUCCESS", info
    hung, dummy = run_module("hung_container_info", {"docker_host": harness.docker_host, "timeout": 2})
    assert hung["_status"] == "SUCCESS", hung
    summary = sm.host_summary(info, hung, host="localhost")
    engine = hung.get("engine") or {}
    summary["engines"] = [{"name": "docker", "present": True, "checked": True, "reachable": engine.get("reachable"),
                           "version": engine.get("version"), "error": engine.get("error")}]
    return info, hung, summary


def promtool_ok(text):
    if PROMTOOL:
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60,
                           check=False)
        assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr


def pod_container(harness, name):
    """A container with the labels the kubelet gives a pod's container."""
    if harness.container_id(name):
        harness.docker("rm", "-f", name, timeout=30, check=True)
    labels = []
    for k, v in POD.items():
        labels += ["--label", "%s=%s" % (k, v)]
    return harness.docker("run", "-d", "--name", name, "--network", "none", "--runtime", hdharness.FAULT_RUNTIME,
                          *labels, hdharness.IMAGE, "sleep", "100000", timeout=60, check=True).stdout.strip()


def hang_for_real(harness, cid):
    proc, pid = harness.hang(cid)
    assert pid is not None, "the fault runtime did not deadlock the exec"
    ev = hdharness.evidence(pid)
    assert ev["comm"] == "runc:[2:INIT]" and ev["queued"] == ev["capacity"], ev
    assert not harness.inspect_answers(cid, timeout=1.0)
    return proc


def test_scrape_names_the_stuck_pod_and_loses_it_after_the_drain(harness, release, node_exporter, tmp_path):
    name = "metrics-%d" % os.getpid()
    cid = pod_container(harness, name)
    try:
        # Healthy node first: totals, engine, no labelled series.
        dummy, dummy2, healthy = scan(harness, cid)
        promtool_ok(write_metrics(node_exporter["dir"], healthy))
        s = scrape(node_exporter["url"])
        assert s["node_textfile_scrape_error"] == [({}, 0.0)]
        assert "hangdoctor_container_stuck_execs" not in s and "hangdoctor_stuck_exec" not in s and s["hangdoctor_stuck_execs"] == [({}, 0.0)]
        assert s["hangdoctor_engine_reachable"] == [({"engine": "docker"}, 1.0)]

        # The deadlock, for real.
        proc = hang_for_real(harness, cid)

        info, hung, stuck = scan(harness, cid)
        mine = [x for x in info["stuck_execs"] if x["container_id"] == cid]
        assert len(mine) == 1, info["stuck_execs"]
        assert cid in hung["hung"]
        text = write_metrics(node_exporter["dir"], stuck)
        promtool_ok(text)
        s = scrape(node_exporter["url"])
        assert s["node_textfile_scrape_error"] == [({}, 0.0)]
        want = {"namespace": "shop", "pod": "web-0", "container": "web", "container_id": cid[:12]}
        found = [(lab, v) for lab, v in s.get("hangdoctor_container_stuck_execs", []) if lab["container_id"] == cid[:12]]
        assert len(found) == 1, s.get("hangdoctor_container_stuck_execs")
        assert dict((k, found[0][0][k]) for k in want) == want and found[0][1] == 1
        assert found[0][0]["cause"] in _metrics.CAUSES
        # the deprecated name carries the same series until 1.0.0
        assert [(lab, v) for lab, v in s.get("hangdoctor_stuck_exec", []) if lab["container_id"] == cid[:12]] == found
        hung_series = [lab for lab, v in s.get("hangdoctor_hung_container", []) if v == 1]
        assert any(lab["pod"] == "web-0" and lab["container_id"] == cid[:12] for lab in hung_series), hung_series
        ages = dict((lab["container_id"], v) for lab, v in s["hangdoctor_stuck_exec_age_seconds"])
        assert ages[cid[:12]] >= 0
        assert s["hangdoctor_drained_total"] == [({}, 0.0)]

        # Remediate: drain the pipe, look again, publish.
        drain, dummy = run_module("runc_pipe_drain", {"stuck_execs": mine, "min_age_seconds": 0,
                                                      "evidence_dir": str(tmp_path / "evidence"),
                                                      "docker_host": harness.docker_host, "confirm_interval": 0.3})
        assert drain["_status"] == "CHANGED", drain
        assert [d["container_id"] for d in drain["drained"]] == [cid]
        proc.wait(30)
        deadline = time.monotonic() + 20
        while not harness.inspect_answers(cid, timeout=2.0):
            assert time.monotonic() < deadline, "inspect still hangs after the drain"
            time.sleep(0.5)
        info2, hung2, after = scan(harness, cid)
        assert not [x for x in info2["stuck_execs"] if x["container_id"] == cid]
        done = sm.remediation(after, drain=drain, verify_exec=info2, verify_hung=hung2)
        promtool_ok(write_metrics(node_exporter["dir"], done))
        s = scrape(node_exporter["url"])
        assert s["node_textfile_scrape_error"] == [({}, 0.0)]
        assert not [lab for lab, v in s.get("hangdoctor_container_stuck_execs", []) if lab["container_id"] == cid[:12]]
        assert not [lab for lab, v in s.get("hangdoctor_hung_container", []) if lab["container_id"] == cid[:12]]
        assert s["hangdoctor_drained_total"] == [({}, 1.0)]
        assert s["hangdoctor_evidence_files_total"] == [({}, 1.0)]
        assert s["hangdoctor_drained_bytes_total"][0][1] == drain["drained"][0]["bytes"] > 0
        assert s["hangdoctor_verify_failed"] == [({}, 0.0)]
        assert s["hangdoctor_engine_reachable"] == [({"engine": "docker"}, 1.0)]
    finally:
        harness.release_all()
        harness.docker("rm", "-f", name, timeout=60)


def test_node_doctor_writes_what_node_exporter_serves(harness, release, node_exporter, tmp_path):
    """The product path: node_doctor's own metrics file (metrics_dir), detect
    then remediate, scraped through node_exporter."""
    name = "metrics-nd-%d" % os.getpid()
    cid = pod_container(harness, name)
    args = {"docker_host": harness.docker_host, "inspect_timeout": 2, "confirm_interval": 0.3,
            "container_ids": [cid], "metrics_dir": str(node_exporter["dir"]),
            "evidence_dir": str(tmp_path / "evidence"), "drain_min_age_seconds": 0}
    try:
        proc = hang_for_real(harness, cid)
        res, dummy = run_module("node_doctor", args)
        assert res["_status"] == "SUCCESS", res
        promtool_ok((node_exporter["dir"] / "hangdoctor.prom").read_text())
        s = scrape(node_exporter["url"])
        assert s["node_textfile_scrape_error"] == [({}, 0.0)]
        (stuck,) = [lab for lab, v in s.get("hangdoctor_container_stuck_execs", []) if lab["container_id"] == cid[:12]]
        assert (stuck["namespace"], stuck["pod"], stuck["container"]) == ("shop", "web-0", "web"), stuck
        assert [lab["pod"] for lab, v in s.get("hangdoctor_hung_container", []) if lab["container_id"] == cid[:12]] == ["web-0"]
        assert ({"engine": "docker"}, 1.0) in s["hangdoctor_engine_reachable"]

        res, dummy = run_module("node_doctor", dict(args, mode="remediate", require_guard="never"))
        assert res["_status"] == "CHANGED", res
        proc.wait(30)
        promtool_ok((node_exporter["dir"] / "hangdoctor.prom").read_text())
        s = scrape(node_exporter["url"])
        assert not [lab for lab, v in s.get("hangdoctor_container_stuck_execs", []) if lab["container_id"] == cid[:12]]
        assert not [lab for lab, v in s.get("hangdoctor_hung_container", []) if lab["container_id"] == cid[:12]]
        assert s["hangdoctor_drained_total"] == [({}, 1.0)]
        assert s["hangdoctor_evidence_files_total"] == [({}, 1.0)]
    finally:
        harness.release_all()
        harness.docker("rm", "-f", name, timeout=60)
