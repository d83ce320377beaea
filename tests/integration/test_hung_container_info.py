"""hangdoctor.runtime.hung_container_info against the real runtime: 20
containers, one stuck exec under shim v2 and one under shim v1, a SIGSTOPped
dockerd, and sockets served by this test that never answer or trickle."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest

import hdharness

from conftest import ansible_env, collections_path, run_module
from fake_engine import VERSION, FakeDaemon, answer, never, trickle

MODULE = "hung_container_info"


# What ansible's own start adds varies by seconds on a busy shared 2-core box
# (1-10 s measured), so walls through ansible only get this bound: far below
# the 60 s the fake daemons hold a probe and the forever of a hung inspect,
# which is what stuck probe threads keeping the process alive would add.  The
# module's own time is checked strictly: ``elapsed_seconds`` (measured in the
# module) and, with ``run_direct``, how long the process lives on after it
# printed its result.
ANSIBLE_SLACK = 30.0
EXIT_LAG = 1.0


def run_direct(args, timeout=60):
    """The module as a plain unbuffered python process: (result, seconds the
    process lived on after its result was complete on stdout)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"ANSIBLE_MODULE_ARGS": args}, f)
    env = dict(os.environ, PYTHONPATH=collections_path(), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "ansible_collections.hangdoctor.runtime.plugins.modules." + MODULE, f.name]
    out, result, answered = b"", None, None
    try:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                break
            out += chunk
            if result is None:
                try:
                    result = json.loads(out.decode())
                    answered = time.monotonic()
                except ValueError:
                    pass
        p.wait(max(1.0, deadline - time.monotonic()))
        exited = time.monotonic()
        p.stdout.close()
    finally:
        os.unlink(f.name)
    assert result is not None, out[-2000:]
    return result, exited - answered


@pytest.fixture(scope="module")
def fleet(harness):
    """20 running containers: index 0 (shim v2) and 1 (shim v1) get hung by the tests."""
    tag = "hci%d" % os.getpid()
    layouts = ["v2", "v1"] + ["v2"] * 14 + ["v1"] * 4
    ids = [harness.run_container("%s-%02d" % (tag, i), layout=lay) for i, lay in enumerate(layouts)]
    yield {"ids": ids, "names": dict(zip(ids, ["%s-%02d" % (tag, i) for i in range(len(ids))]))}
    harness.release_all()
    harness.docker("rm", "-f", *ids, timeout=120)


def test_finds_exactly_the_two_hung_containers(harness, release, fleet):
    ids = fleet["ids"]
    hung_v2, hung_v1 = ids[0], ids[1]
    for cid in (hung_v2, hung_v1):
        dummy, pid = harness.hang(cid)
        assert pid is not None, "the fault runtime did not deadlock the exec in %s" % cid
    # the hang is real: inspect of exactly these two no longer answers
    assert not harness.inspect_answers(hung_v2, timeout=2)
    assert not harness.inspect_answers(hung_v1, timeout=2)
    assert harness.inspect_answers(ids[2], timeout=2)

    timeout = 3.0
    result, wall = run_module(MODULE, {"docker_host": harness.docker_host, "timeout": timeout})
    assert result["_status"] == "SUCCESS", result
    assert result["changed"] is False
    assert result["engine"]["reachable"] is True and result["engine"]["error"] is None
    assert result["engine"]["version"] and result["engine"]["api_version"]
    assert isinstance(result["engine"]["list_latency_ms"], int)

    mine = set(ids)
    assert set(result["hung"]) & mine == {hung_v2, hung_v1}
    # another test of this session may have left a hang; if so it must be real
    for other in set(result["hung"]) - mine:
        assert not harness.inspect_answers(other, timeout=2), other
    by_id = {c["id"]: c for c in result["containers"]}
    assert mine <= set(by_id)
    for cid in ids:
        c = by_id[cid]
        assert c["name"] == fleet["names"][cid]
        assert c["pod_namespace"] is None and c["state"] == "running"
        if cid in (hung_v2, hung_v1):
            assert c["responsive"] is False and c["latency_ms"] >= timeout * 1000
            assert "did not answer" in c["error"]
        else:
            assert c["responsive"] is True and c["error"] is None, c
            assert c["latency_ms"] < timeout * 1000
    assert not set(result["unchecked"]) & mine

    # one timeout for both hung containers, not one each
    assert result["elapsed_seconds"] <= timeout + 1.5, result["elapsed_seconds"]
    assert wall <= timeout + 1.5 + ANSIBLE_SLACK, wall
    # and the process ends then: nothing waits on the two inspects still stuck in dockerd
    direct, lag = run_direct({"docker_host": harness.docker_host, "timeout": timeout})
    assert set(direct["hung"]) & mine == {hung_v2, hung_v1}
    assert direct["elapsed_seconds"] <= timeout + 1.5 and lag <= EXIT_LAG, (direct["elapsed_seconds"], lag)


def test_stopped_dockerd_is_a_clear_engine_error_on_time(harness):
    pid = int((harness.dkr / "d.pid").read_text())
    timeout = 2.0
    with hdharness.frozen(pid):
        # the daemon really is stopped: even /_ping no longer answers
        with pytest.raises((socket.timeout, TimeoutError)):
            harness.api("/_ping", timeout=1)
        args = {"docker_host": harness.docker_host, "timeout": timeout}
        failed, wall = run_module(MODULE, args)
        assert failed["_status"] == "FAILED!", failed
        assert harness.docker_host in failed["msg"] and "no answer within the deadline" in failed["msg"]
        assert "exception" not in failed and "Traceback" not in failed["msg"]
        assert failed["engine"]["reachable"] is False
        assert failed["elapsed_seconds"] <= timeout + 2
        assert wall <= timeout + 2 + ANSIBLE_SLACK, wall
        direct, lag = run_direct(dict(args, fail_on_unreachable=False))
        assert direct["engine"]["reachable"] is False
        assert direct["elapsed_seconds"] <= timeout + 2 and lag <= EXIT_LAG, (direct["elapsed_seconds"], lag)

        ok, wall = run_module(MODULE, dict(args, fail_on_unreachable=False))
        assert ok["_status"] == "SUCCESS", ok
        assert ok["engine"]["reachable"] is False and "no answer" in ok["engine"]["error"]
        assert ok["containers"] == [] and ok["hung"] == []
        assert wall <= timeout + 2 + ANSIBLE_SLACK, wall
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if harness.api("/_ping", timeout=2)[0] == 200:
                break
        except OSError:
            time.sleep(0.2)
    else:
        pytest.fail("dockerd did not come back after SIGCONT")


# ---- sockets served by this test ------------------------------------------------
def fake_docker(ids):
    """A handler that answers /version and the list like dockerd; inspect of
    'never-*' ids never answers, of 'trickle-*' ids sends one byte per second."""
    listing = [{"Id": i, "Names": ["/" + i], "State": "running", "Image": "fake",
                "Labels": {"io.kubernetes.pod.namespace": "shop", "io.kubernetes.pod.name": "pod-" + i,
                           "io.kubernetes.container.name": "app"}} for i in ids]

    def handler(conn, line, d):
        path = line.split()[1]
        if "/never-" in path:
            never(conn, line, d)
        elif "/trickle-" in path:
            trickle(conn, line, d)
        elif path == "/version":
            answer(conn, body=VERSION)
        elif path.startswith("/v1.41/containers/json"):
            answer(conn, body=listing)
        else:
            answer(conn, body={"Id": path.split("/")[3]})
    return handler


@pytest.fixture
def fake():
    made = []

    def make(mode, ids=()):
        d = FakeDaemon({"never": never, "trickle": trickle}.get(mode) or fake_docker(ids))
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


@pytest.mark.parametrize("mode", ["never", "trickle"])
def test_daemon_that_never_answers_or_trickles_is_cut_off(fake, mode):
    d = fake(mode)
    timeout = 2.0
    result, wall = run_module(MODULE, {"docker_host": d.docker_host, "timeout": timeout, "fail_on_unreachable": False})
    assert result["_status"] == "SUCCESS", result
    assert result["engine"]["reachable"] is False
    assert "no answer within the deadline" in result["engine"]["error"]
    assert result["elapsed_seconds"] <= timeout + 0.5
    assert wall <= timeout + 2 + ANSIBLE_SLACK
    if mode == "trickle":
        assert d.sent >= 2  # bytes kept coming: a per-read timeout would have waited on


def test_stuck_and_trickling_inspects_are_hung_pods_are_named(fake):
    d = fake("docker", ids=["ok-1", "never-1", "trickle-1", "ok-2"])
    timeout = 2.0
    # DOCKER_HOST of the target is used when docker_host is not given; check mode changes nothing
    result, wall = run_module(MODULE, {"timeout": timeout, "concurrency": 2}, check=True,
                              env={"DOCKER_HOST": d.docker_host})
    assert result["_status"] == "SUCCESS", result
    assert result["engine"]["docker_host"] == d.docker_host
    assert result["engine"]["version"] == VERSION["Version"]
    assert sorted(result["hung"]) == ["never-1", "trickle-1"]
    by_id = {c["id"]: c for c in result["containers"]}
    assert by_id["ok-1"]["responsive"] is True and by_id["ok-2"]["responsive"] is True
    assert by_id["trickle-1"]["pod_name"] == "pod-trickle-1" and by_id["trickle-1"]["pod_namespace"] == "shop"
    assert by_id["never-1"]["pod_container"] == "app"
    assert d.sent >= 2
    assert result["elapsed_seconds"] <= timeout + 1.0
    assert wall <= timeout + 1.5 + ANSIBLE_SLACK


def test_module_process_exits_while_the_daemon_still_holds_its_probes(fake):
    """Without ansible's own start in the way: the process ends at the deadline
    although the daemon keeps every stuck inspect connection open for 60 s."""
    d = fake("docker", ids=["ok-1"] + ["never-%d" % i for i in range(20)] + ["trickle-1"])
    timeout = 2.0
    result, lag = run_direct({"docker_host": d.docker_host, "timeout": timeout, "concurrency": 32})
    assert len(result["hung"]) == 21 and result["unchecked"] == []
    assert result["elapsed_seconds"] <= timeout + 1.5, result["elapsed_seconds"]
    assert lag <= EXIT_LAG, lag


@pytest.mark.parametrize("args,words", [
    ({"docker_host": "unix:///nonexistent/hd/docker.sock"}, ["not usable", "/nonexistent/hd/docker.sock", "ENOENT"]),
    ({"docker_host": "https://node1:2376"}, ["not supported"]),
    ({"docker_host": "unix:///x", "timeout": 0}, ["timeout must be greater than 0"]),
    ({"docker_host": "unix:///x", "concurrency": 0}, ["concurrency must be between"]),
    ({"docker_host": "unix:///x", "api_version": "latest"}, ["MAJOR.MINOR"]),
    ({"docker_host": "unix:///x", "timeout": "soon"}, ["timeout"]),
])
def test_bad_input_fails_clearly(args, words):
    result, dummy = run_module(MODULE, args)
    assert result["_status"] == "FAILED!", result
    assert "exception" not in result and "Traceback" not in result["msg"], result
    for w in words:
        assert w in result["msg"], (w, result["msg"])


def test_missing_socket_is_a_result_when_asked():
    result, dummy = run_module(MODULE, {"docker_host": "unix:///nonexistent/hd/docker.sock", "fail_on_unreachable": False})
    assert result["_status"] == "SUCCESS", result
    assert result["engine"]["reachable"] is False and "ENOENT" in result["engine"]["error"]
    assert result["containers"] == [] and result["hung"] == [] and result["unchecked"] == []


def test_ansible_doc_renders_the_module():
    r = subprocess.run([shutil.which("ansible-doc") or "ansible-doc", "hangdoctor.runtime." + MODULE],
                       capture_output=True, text=True, timeout=120, env=ansible_env(), check=False)
    assert r.returncode == 0, r.stderr
    assert "[WARNING]" not in r.stderr, r.stderr
    for word in ("docker_host", "concurrency", "fail_on_unreachable", "total_timeout", "RETURN VALUES",
                 "latency_ms", "EXAMPLES"):
        assert word in r.stdout, word
