"""The engine check after a drain (the one path, _engines.container_check):
against a fake Engine on a real socket, and one check per container after its
last round."""
import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _drain_verify, _engines
from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import HangdoctorError
from ansible_collections.hangdoctor.runtime.tests.utils.fake_engine import VERSION, FakeDaemon, answer

CID = "c0ffee" + "ab" * 29


def engine_check(docker_host, timeout, tmp="/nonexistent-hd"):
    """The drain's check with dockerd at DOCKER_HOST and no containerd."""
    return _engines.container_check(docker_host, tmp + "/containerd.sock", timeout)


@pytest.fixture
def engine():
    made = []

    def make(inspect):
        def handler(conn, line, d):
            if line.split()[1] == "/version":
                return answer(conn, body=VERSION)
            return inspect(conn, line, d)
        d = FakeDaemon(handler)
        made.append(d)
        return d
    yield make
    for d in made:
        d.close()


def test_an_answering_engine_verifies(engine):
    d = engine(lambda conn, line, dd: answer(conn, body={"Id": CID}))
    assert engine_check(d.docker_host, 3)(CID) == (True, "dockerd answered inspect")


def test_a_404_says_dockerd_does_not_know_the_container(engine):
    d = engine(lambda conn, line, dd: answer(conn, 404, {"message": "No such container"}, reason="Not Found"))
    verified, reason = engine_check(d.docker_host, 3)(CID)
    assert verified is None and "dockerd does not know" in reason and "no containerd socket" in reason


def test_a_silent_engine_is_not_verified(engine):
    d = engine(lambda conn, line, dd: dd.stop.wait(30))
    verified, reason = engine_check(d.docker_host, 0.3)(CID)
    assert verified is False and "did not answer within 0.3s" in reason


def test_no_engine_to_ask(tmp_path):
    verified, reason = engine_check("unix://%s/docker.sock" % tmp_path, 1)(CID)
    assert verified is None and "no dockerd socket" in reason and "no containerd socket" in reason


@pytest.mark.parametrize("docker_host", ["https://10.0.0.1:2376", "tcp://:2375", "", "docker.sock"])
def test_an_address_the_clients_cannot_use_fails_before_any_drain(docker_host):
    with pytest.raises(_engines.EnginesError):
        _engines.container_check(docker_host, "/run/containerd/containerd.sock", 1)


def test_an_engine_check_that_fails_keeps_the_drain_result():
    result = {"recurring": [], "drained": [
        {"container_id": CID, "unblocked": True, "verified": None, "verify_reason": "", "evidence_path": "/e"}]}

    def check(cid):
        raise _engines.EnginesError("containerd_address 'x': use an absolute socket path")
    _drain_verify.verify_containers(result, check)
    entry = result["drained"][0]
    assert entry["evidence_path"] == "/e"
    assert entry["verified"] is None and entry["verify_reason"].startswith("engine check failed: containerd_address")
    assert issubclass(_engines.EnginesError, HangdoctorError)


def test_one_check_per_container_after_its_last_round():
    other = "d" * 64
    result = {
        "recurring": [{"container_id": other}],
        "drained": [
            {"container_id": CID, "unblocked": True, "verified": None, "verify_reason": ""},
            {"container_id": CID, "unblocked": True, "verified": None, "verify_reason": ""},
            {"container_id": other, "unblocked": True, "verified": None, "verify_reason": ""},
            {"container_id": "e" * 64, "unblocked": False, "verified": False, "verify_reason": "still blocked"},
        ]}
    asked = []

    def check(cid):
        asked.append(cid)
        return True, "answered"
    _drain_verify.verify_containers(result, check)
    assert asked == [CID]
    assert [(e["verified"], e["verify_reason"]) for e in result["drained"]] == [
        (True, "answered"), (True, "answered"), (False, "the container deadlocked again (see recurring)"),
        (False, "still blocked")]


def test_only_an_http_answer_verifies(engine):
    """A peer that resets the connection (EPIPE/ECONNRESET) or answers with
    a non-HTTP banner has not shown that the container's lock is free."""
    import socket
    import struct

    def reset(conn, line, dd):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def banner(conn, line, dd):
        conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
    for inspect in (reset, banner):
        d = engine(inspect)
        verified, reason = engine_check(d.docker_host, 2)(CID)
        assert verified is None and "no HTTP answer" in reason, (inspect.__name__, reason)
