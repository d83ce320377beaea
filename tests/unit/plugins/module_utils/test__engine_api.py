# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_engine_api against real sockets served by threads in this process: a
daemon that never answers, one that trickles a byte per second, a correct
one, chunked encoding, error statuses, garbage."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import shutil
import socket
import tempfile
import time

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _engine_api as api
from ansible_collections.hangdoctor.runtime.tests.utils.fake_engine import VERSION, FakeDaemon, answer, never, trickle


def docker_like(conn, line, d):
    """/version, /containers/json and inspect; ids containing 'hung' never answer."""
    path = line.split()[1]
    if path.startswith("/containers/"):
        path = "/v1.41" + path  # unversioned: Docker serves its own version
    if path == "/version":
        return answer(conn, body=VERSION)
    if path.startswith("/v1.41/containers/json"):
        return answer(conn, body=d.listing)
    if path.startswith("/v1.41/containers/") and path.endswith("/json"):
        cid = path[len("/v1.41/containers/"):-len("/json")]
        if "hung" in cid:
            return d.stop.wait(30)
        if not cid.replace("-", "").isalnum():
            return answer(conn, 404, {"message": "No such container: " + cid}, reason="Not Found")
        return answer(conn, body={"Id": cid, "State": {"Running": True}})
    return answer(conn, 404, {"message": "page not found"}, reason="Not Found")


@pytest.fixture
def daemon():
    made = []

    def make(handler, tcp=False, listing=None):
        d = FakeDaemon(handler, tcp=tcp)
        d.listing = listing or []
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


def listing(ids):
    return [{"Id": cid, "Names": ["/c-" + cid], "Image": "busybox", "State": "running",
             "Labels": {"io.kubernetes.pod.namespace": "ns-" + cid, "io.kubernetes.pod.name": "pod-" + cid,
                        "io.kubernetes.container.name": "ctr"}} for cid in ids]


# ---- addresses (parsed in _addresses, tested there) ---------------------------
def test_address_errors_of_the_client_are_engine_errors():
    assert api.EngineClient("tcp://node1").address == ("tcp", "node1", 2375)
    with pytest.raises(api.EngineError) as e:
        api.EngineClient("https://node1:2376")
    assert "not supported" in str(e.value)
    with pytest.raises(api.EngineError):
        api.EngineClient("docker.sock")


def test_bad_api_version_and_timeout_rejected():
    with pytest.raises(api.EngineError):
        api.EngineClient("unix:///x", api_version="latest")
    with pytest.raises(api.EngineError):
        api.EngineClient("unix:///x", timeout=0)
    assert api.EngineClient("unix:///x", api_version="v1.40").api_version == "1.40"


# ---- deadlines -----------------------------------------------------------------
def test_never_answering_daemon_is_cut_off_at_the_deadline(daemon):
    d = daemon(never)
    c = api.EngineClient(d.docker_host, api_version="1.41")
    t0 = time.monotonic()
    with pytest.raises(api.EngineTimeout):
        c.get("/containers/json", timeout=1.0)
    took = time.monotonic() - t0
    assert 1.0 <= took < 2.0, took  # the server would hold it 30 s
    assert d.paths() == ["/v1.41/containers/json"]


def test_trickling_daemon_is_cut_off_at_the_deadline(daemon):
    """One byte per second never trips a per-read timeout; the deadline must."""
    d = daemon(trickle)
    c = api.EngineClient(d.docker_host, api_version="1.41")
    t0 = time.monotonic()
    with pytest.raises(api.EngineTimeout):
        c.get("/containers/json", timeout=2.5)
    took = time.monotonic() - t0
    assert 2.5 <= took < 3.5, took  # the whole answer would take 40 s
    # bytes kept coming, so no single read ever waited a whole second
    assert d.sent >= 3, d.sent


def test_missing_socket_is_unreachable_at_once(tmp_path):
    c = api.EngineClient("unix://%s/nothing.sock" % tmp_path)
    t0 = time.monotonic()
    with pytest.raises(api.EngineUnreachable) as e:
        c.version(timeout=5)
    assert time.monotonic() - t0 < 0.5
    assert "nothing.sock" in str(e.value) and "ENOENT" in str(e.value)


def test_socket_nobody_listens_on_is_unreachable():
    d = tempfile.mkdtemp(prefix="hd-eng-", dir="/tmp")
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(os.path.join(d, "dead.sock"))  # bound, never listening: a daemon that died
        with pytest.raises(api.EngineUnreachable) as e:
            api.EngineClient("unix://%s/dead.sock" % d).version(timeout=2)
        assert "ECONNREFUSED" in str(e.value)
        s.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---- correct answers ---------------------------------------------------------
def test_negotiates_once_and_escapes_paths(daemon):
    d = daemon(docker_like, listing=listing(["a1", "b2"]))
    c = api.EngineClient(d.docker_host, timeout=3)
    assert c.version()["Version"] == "20.10.99-test"
    assert c.api_version == "1.41"
    assert [x["Id"] for x in c.containers()] == ["a1", "b2"]
    c.containers(all_states=True)
    assert c.inspect("a1")["Id"] == "a1"
    with pytest.raises(api.EngineError) as e:
        c.inspect("../../version x")
    assert e.value.status == 404 and "No such container: ..%2F" in str(e.value)
    assert d.paths() == ["/version", "/v1.41/containers/json", "/v1.41/containers/json?all=1",
                         "/v1.41/containers/a1/json", "/v1.41/containers/..%2F..%2Fversion%20x/json"]


def test_given_api_version_skips_negotiation(daemon):
    d = daemon(docker_like)
    c = api.EngineClient(d.docker_host, api_version="1.41")
    assert c.inspect("x")["Id"] == "x"
    assert d.paths() == ["/v1.41/containers/x/json"]


def test_tcp_without_tls(daemon):
    d = daemon(docker_like, tcp=True, listing=listing(["t1"]))
    c = api.EngineClient(d.docker_host)
    assert [x["Id"] for x in c.containers(timeout=3)] == ["t1"]


def test_chunked_answer_with_extensions_and_trailers(daemon):
    body = json.dumps([{"Id": "c%d" % i, "Names": ["/n%d" % i]} for i in range(500)]).encode()

    def chunked(conn, line, d):
        out = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        for i in range(0, len(body), 1000):
            part = body[i:i + 1000]
            out += b"%x;ext=1\r\n" % len(part) + part + b"\r\n"
        out += b"0\r\nX-Trailer: yes\r\n\r\n"
        # in pieces, so the parser sees partial sizes and partial chunks
        for i in range(0, len(out), 777):
            conn.sendall(out[i:i + 777])
            time.sleep(0.001)

    d = daemon(chunked)
    got = api.EngineClient(d.docker_host, api_version="1.41").get("/containers/json", timeout=3)
    assert len(got) == 500 and got[499] == {"Id": "c499", "Names": ["/n499"]}


def test_answer_until_close_without_length(daemon):
    def no_length(conn, line, d):
        conn.sendall(b'HTTP/1.0 200 OK\r\n\r\n{"ok": true}')

    d = daemon(no_length)
    assert api.EngineClient(d.docker_host, api_version="1.41").get("/x", timeout=3) == {"ok": True}


def test_interim_100_answer_is_skipped(daemon):
    def interim(conn, line, d):
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        answer(conn, body={"after": 100})

    d = daemon(interim)
    assert api.EngineClient(d.docker_host, api_version="1.41").get("/x", timeout=3) == {"after": 100}


# ---- wrong answers -------------------------------------------------------------
def test_error_status_carries_status_and_message(daemon):
    def boom(conn, line, d):
        answer(conn, 500, {"message": "boom: containerd is gone"}, reason="Internal Server Error")

    d = daemon(boom)
    with pytest.raises(api.EngineError) as e:
        api.EngineClient(d.docker_host, api_version="1.41").get("/containers/json", timeout=3)
    assert not isinstance(e.value, (api.EngineTimeout, api.EngineUnreachable))
    assert e.value.status == 500
    assert "HTTP 500" in str(e.value) and "boom: containerd is gone" in str(e.value)


@pytest.mark.parametrize("raw,word", [
    (b"SSH-2.0-OpenSSH_9.2\r\n", "not an HTTP answer"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"short\":", "closed after"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nnope!", "not JSON"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n", "bad Content-Length"),
    (b"", "closed in the middle"),
])
def test_garbage_is_a_clear_engine_error(daemon, raw, word):
    d = daemon(lambda conn, line, dd: conn.sendall(raw))
    with pytest.raises(api.EngineError) as e:
        api.EngineClient(d.docker_host, api_version="1.41").get("/x", timeout=3)
    assert word in str(e.value)
    assert not isinstance(e.value, api.EngineTimeout)


def test_oversized_answer_is_refused(daemon):
    d = daemon(lambda conn, line, dd: answer(conn, body=b"[" + b"1," * 50000 + b"1]"))
    c = api.EngineClient(d.docker_host, api_version="1.41", max_body_bytes=10000)
    with pytest.raises(api.EngineError) as e:
        c.get("/x", timeout=3)
    assert "larger than 10000 bytes" in str(e.value)


# ---- probing many containers ---------------------------------------------------
def test_probe_finds_exactly_the_hung_ones_in_one_timeout(daemon):
    ids = ["ok%02d" % i for i in range(27)] + ["hung-a", "hung-b", "hung-c"]
    d = daemon(docker_like)
    c = api.EngineClient(d.docker_host, api_version="1.41")
    t0 = time.monotonic()
    res = api.probe_inspect(c, ids, timeout=1.5, concurrency=8)
    took = time.monotonic() - t0
    assert sorted(k for k, v in res.items() if v["responsive"] is False) == ["hung-a", "hung-b", "hung-c"]
    assert all(res[k]["responsive"] is True and res[k]["error"] is None for k in ids if k.startswith("ok"))
    assert all(res[k]["latency_ms"] >= 1500 for k in ("hung-a", "hung-b", "hung-c"))
    # three stuck requests share the 8 slots with the rest: one timeout, not three (4.5 s)
    assert 1.5 <= took < 3.0, took


def test_probe_returns_by_the_overall_deadline_with_unchecked(daemon):
    """More hung containers than slots: what the deadline kept from finishing
    is unchecked, not called hung, and the call still returns on time."""
    ids = ["hung-%d" % i for i in range(6)] + ["ok"]
    d = daemon(docker_like)
    c = api.EngineClient(d.docker_host, api_version="1.41")
    t0 = time.monotonic()
    res = api.probe_inspect(c, ids, timeout=1.0, concurrency=2, deadline=t0 + 1.6)
    took = time.monotonic() - t0
    assert took < 1.6 + 1.0, took  # unbounded: three rounds of 1 s
    states = dict((k, v["responsive"]) for k, v in res.items())
    assert states["hung-0"] is False and states["hung-1"] is False  # had their whole timeout
    assert None in states.values()
    assert set(states) == set(ids)
    assert all(v["error"] for k, v in res.items() if v["responsive"] is None)


def test_report_maps_pod_labels_and_lists_hung(daemon):
    ids = ["aa", "hung-bb", "cc"]
    d = daemon(docker_like, listing=listing(ids))
    rep = api.hung_container_report(d.docker_host, timeout=1.0, concurrency=4)
    assert rep["engine"]["reachable"] is True and rep["engine"]["version"] == "20.10.99-test"
    assert rep["engine"]["api_version"] == "1.41" and rep["engine"]["error"] is None
    assert rep["hung"] == ["hung-bb"] and rep["unchecked"] == []
    by_id = dict((x["id"], x) for x in rep["containers"])
    assert by_id["aa"]["name"] == "c-aa" and by_id["aa"]["pod_namespace"] == "ns-aa"
    assert by_id["cc"]["pod_name"] == "pod-cc" and by_id["cc"]["pod_container"] == "ctr"
    assert by_id["hung-bb"]["responsive"] is False and by_id["aa"]["responsive"] is True
    assert rep["elapsed_seconds"] < 1.0 + 1.0


def test_report_on_a_daemon_that_never_answers(daemon):
    d = daemon(never)
    t0 = time.monotonic()
    rep = api.hung_container_report(d.docker_host, timeout=1.0)
    assert time.monotonic() - t0 < 1.0 + 1.5
    assert rep["engine"]["reachable"] is False
    assert "no answer within the deadline" in rep["engine"]["error"]
    assert rep["containers"] == [] and rep["hung"] == []


def test_report_on_a_missing_socket(tmp_path):
    rep = api.hung_container_report("unix://%s/gone.sock" % tmp_path, timeout=2)
    assert rep["engine"]["reachable"] is False
    assert "gone.sock" in rep["engine"]["error"]
    assert rep["elapsed_seconds"] < 0.5


# ---- hostile or odd peers ----------------------------------------------------
def closes_at_once(conn, line, d):
    """Accepts, reads the request and hangs up with a reset: no answer."""
    import struct
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def banner(conn, line, d):
    conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")


def test_only_an_http_answer_counts_as_answered(daemon, tmp_path):
    ok = daemon(docker_like)
    assert api.inspect_answers(ok.docker_host, "abc", timeout=2.0) == (True, "")
    verified, why = api.inspect_answers(ok.docker_host, "bad/../id", timeout=2.0)
    assert verified is True and "HTTP 404" in why  # an error status is an answer: the lock is free
    for handler in (closes_at_once, banner):
        d = daemon(handler)
        verified, why = api.inspect_answers(d.docker_host, "abc", timeout=2.0)
        assert verified is None and "no HTTP answer" in why, (handler.__name__, why)
    assert api.inspect_answers("unix://%s/gone.sock" % tmp_path, "abc", timeout=2.0)[0] is None


def test_engine_check_has_one_deadline(daemon):
    """A daemon that answers nothing: the whole check (no /version round trip
    first) ends by its one timeout, not twice that."""
    d = daemon(never)
    t0 = time.monotonic()
    verified, why = api.inspect_answers(d.docker_host, "abc", timeout=1.0)
    assert time.monotonic() - t0 < 1.5
    assert verified is False and "did not answer within 1.0s" in why
    assert d.paths() == ["/containers/abc/json"]


def test_full_listen_backlog_is_not_answering_not_unreachable():
    path = os.path.join(tempfile.mkdtemp(prefix="hd-eng-", dir="/tmp"), "d.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(0)  # never accepted: the backlog fills at once
    held = []
    try:
        for dummy in range(3):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.setblocking(False)
            try:
                c.connect(path)
            except OSError:
                pass
            held.append(c)
        client = api.EngineClient("unix://" + path, api_version="1.41", timeout=0.5)
        t0 = time.monotonic()
        with pytest.raises(api.EngineTimeout, match="listen backlog full"):
            client.inspect("abc")
        assert 0.4 < time.monotonic() - t0 < 1.5
        assert api.inspect_answers("unix://" + path, "abc", timeout=0.5)[0] is False
        rep = api.hung_container_report("unix://" + path, timeout=0.5)
        assert rep["engine"]["reachable"] is False and "not accepting" in rep["engine"]["error"]
    finally:
        for c in held:
            c.close()
        listener.close()
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)


ODD = [
    {"Id": ["x"], "Names": ["/n"]},
    {"Id": "odd1", "Names": [1, None], "Labels": "x", "Image": {"a": 1}, "State": 3},
    {"Id": "odd2", "Names": "not-a-list", "Labels": {"io.kubernetes.pod.name": 5}},
    {"Id": "odd2", "Names": ["/dup"]},
    "not a dict",
    None,
    {"Names": ["/no-id"]},
]


def test_report_survives_odd_json_from_a_non_docker_peer(daemon):
    d = daemon(docker_like, listing=ODD)
    rep = api.hung_container_report(d.docker_host, timeout=1.0)
    by_id = dict((c["id"], c) for c in rep["containers"])
    assert sorted(by_id) == ["odd1", "odd2"]
    assert by_id["odd1"]["name"] is None and by_id["odd1"]["image"] is None and by_id["odd1"]["state"] is None
    assert by_id["odd2"]["pod_name"] is None and by_id["odd2"]["name"] is None
    assert rep["engine"]["skipped_entries"] == 5
    json.dumps(rep)


def test_odd_version_answer_is_not_a_crash(daemon):
    def odd_version(conn, line, d):
        if line.split()[1] == "/version":
            return answer(conn, body={"ApiVersion": "1.41", "Version": ["20"]})
        return docker_like(conn, line, d)
    d = daemon(odd_version, listing=[])
    rep = api.hung_container_report(d.docker_host, timeout=1.0)
    assert rep["engine"]["reachable"] is True and rep["engine"]["version"] is None


# ---- ids known before the list ---------------------------------------------------
def test_ids_that_come_late_are_probed_and_unlisted_early_ones_dropped(daemon):
    """The early ids (the daemon's containers folder) are asked at once; the
    listed ones that were not among them are asked when the list arrives."""
    d = daemon(docker_like)
    c = api.EngineClient(d.docker_host, api_version="1.41")
    calls = {"n": 0}

    def more():
        calls["n"] += 1
        return None if calls["n"] < 3 else ["ok-1", "hung-late", "ok-late"]

    t0 = time.monotonic()
    res = api.probe_inspect(c, ["ok-1", "hung-1"], timeout=1.0, concurrency=64, deadline=t0 + 1.5, more=more)
    assert res["ok-1"]["responsive"] is True and res["ok-late"]["responsive"] is True
    assert res["hung-1"]["responsive"] is False  # asked before the list came
    assert res["hung-late"]["responsive"] is False
    assert time.monotonic() - t0 < 1.5 + 0.5


HUNG_ID, OK_ID, OTHER_HUNG = "a" * 64, "b" * 64, "c" * 64


def slow_list(conn, line, d):
    """docker_like, but the list takes 0.8 s and the ids in d.hung never answer inspect."""
    path = line.split()[1]
    if path.startswith("/v1.41/containers/json"):
        time.sleep(0.8)
        return answer(conn, body=d.listing)
    if path.startswith("/v1.41/containers/") and path.split("/")[3] in d.hung:
        d.asked.append(path.split("/")[3])
        return d.stop.wait(30)
    return docker_like(conn, line, d)


@pytest.mark.parametrize("wanted,decided", [(None, False), ([HUNG_ID], True), ([HUNG_ID[:12]], False)])
def test_containers_asked_for_by_id_are_inspected_before_the_list(daemon, wanted, decided):
    """A slow list would leave a hung container's inspect too little of the
    deadline to be called hung; one asked for by its full id is asked at once
    and decided.  Only the wanted containers are inspected and reported."""
    d = daemon(slow_list, listing=listing([HUNG_ID, OK_ID, OTHER_HUNG]))
    d.hung, d.asked = {HUNG_ID, OTHER_HUNG}, []
    t0 = time.monotonic()
    rep = api.hung_container_report(d.docker_host, timeout=1.0, total_timeout=1.5, wanted=wanted)
    assert time.monotonic() - t0 < 1.5 + 0.5
    by_id = dict((c["id"], c) for c in rep["containers"])
    assert by_id[HUNG_ID]["responsive"] is (False if decided else None), by_id[HUNG_ID]
    assert rep["hung"] == ([HUNG_ID] if decided else [])
    if wanted:
        assert sorted(by_id) == [HUNG_ID] and OTHER_HUNG not in d.asked and rep["unchecked"] == (
            [] if decided else [HUNG_ID])
    else:
        assert sorted(by_id) == [HUNG_ID, OK_ID, OTHER_HUNG]


@pytest.mark.parametrize("argv,config,want", [
    (["dockerd", "--data-root", "/srv/docker"], None, "/srv/docker"),
    (["dockerd", "--data-root=/srv/d2", "-H", "unix:///x"], None, "/srv/d2"),
    (["dockerd", "-g", "/old"], None, "/old"),
    (["dockerd", "--config-file", "/etc/d.json"], b'{"data-root": "/from/json"}', "/from/json"),
    (["dockerd"], b'{"graph": "/graph"}', "/graph"),
    (["dockerd"], b'not json', "/var/lib/docker"),
    (["dockerd", "--data-root", "relative"], None, "/var/lib/docker"),
])
def test_data_root_from_argv_or_daemon_json(argv, config, want):
    seen = []

    def read(path):
        seen.append(path)
        return config
    assert api.data_root(argv, read) == want
    if "--config-file" in argv:
        assert seen == ["/etc/d.json"]
