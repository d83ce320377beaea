"""The Engine check after a drain: against a fake Engine on a real socket,
and one check per container after its last round."""
import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _drain_verify
from ansible_collections.hangdoctor.runtime.tests.utils.fake_engine import VERSION, FakeDaemon, answer

CID = "c0ffee" + "ab" * 29


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
    assert _drain_verify.engine_check(d.docker_host, 3)(CID) == (True, "")


def test_an_error_answer_still_proves_the_lock_free(engine):
    d = engine(lambda conn, line, dd: answer(conn, 404, {"message": "No such container"}, reason="Not Found"))
    verified, reason = _drain_verify.engine_check(d.docker_host, 3)(CID)
    assert verified is True and "No such container" in reason


def test_a_silent_engine_is_not_verified(engine):
    d = engine(lambda conn, line, dd: dd.stop.wait(30))
    verified, reason = _drain_verify.engine_check(d.docker_host, 0.3)(CID)
    assert verified is False and "did not answer within 0.3s" in reason


def test_no_engine_to_ask(tmp_path):
    assert _drain_verify.engine_check("", 1)(CID) == (None, "no docker_host given")
    verified, reason = _drain_verify.engine_check("unix://%s/docker.sock" % tmp_path, 1)(CID)
    assert verified is None and "not found" in reason


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
        verified, reason = _drain_verify.engine_check(d.docker_host, 2)(CID)
        assert verified is None and "no HTTP answer" in reason, (inspect.__name__, reason)
