"""_cri: the protobuf/ttrpc encoding, the bundle reader, and the per-call
deadline against a fake shim on a real unix socket (the real shims are
exercised in tests/integration/test_cri.py)."""
import json
import os
import socket
import time

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _cri
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _deadline
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils import ttrpc_fakes as ttrpc


def test_varints_and_fields_round_trip():
    for n in (0, 1, 127, 128, 300, 2 ** 35, 2 ** 63):
        enc = _cri._varint(n)
        assert _cri._read_varint(enc, 0) == (n, len(enc))
    msg = _cri._field_bytes(1, "abc") + _cri._field_varint(4, 150) + _cri._field_bytes(3, b"\x00\xff")
    assert _cri.parse_fields(msg) == [(1, 2, b"abc"), (4, 0, 150), (3, 2, b"\x00\xff")]


def test_request_has_upstream_field_numbers():
    req = _cri.encode_request("containerd.task.v2.Task", "Pids", b"\x0a\x01x", 2 * 10 ** 9)
    fields = _cri.parse_fields(req)
    assert fields == [(1, 2, b"containerd.task.v2.Task"), (2, 2, b"Pids"), (3, 2, b"\x0a\x01x"), (4, 0, 2 * 10 ** 9)]


@pytest.mark.parametrize("bad", [b"\x0a\x05ab", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", b"\x0b"])
def test_malformed_protobuf_is_an_error_not_a_crash(bad):
    with pytest.raises(_cri.CriError):
        _cri.parse_fields(bad)


def test_response_status_and_payload():
    status = _cri._field_varint(1, 5) + _cri._field_bytes(2, "not found")
    assert _cri.decode_response(_cri._field_bytes(1, status)) == (5, "not found", b"")
    assert _cri.decode_response(_cri._field_bytes(2, b"payload")) == (0, "", b"payload")


@pytest.mark.parametrize("addr,path", [
    ("unix:///run/containerd/s/abc", "/run/containerd/s/abc"),
    ("/run/containerd/s/abc\n", "/run/containerd/s/abc"),
    ("unix://@/containerd-shim/k8s.io/x/shim.sock", "\0/containerd-shim/k8s.io/x/shim.sock"),
])
def test_shim_addresses(addr, path):
    assert _cri.shim_socket_path(addr) == path


def test_relative_shim_address_is_refused():
    with pytest.raises(_cri.CriError):
        _cri.shim_socket_path("unix://relative/sock")


def make_bundle(root, cid, annotations=None, address="unix:///run/containerd/s/" + "a" * 64, config=None):
    d = root / cid
    d.mkdir(parents=True)
    (d / "address").write_text(address)
    (d / "config.json").write_text(config if config is not None else json.dumps({"annotations": annotations or {}}))
    return d


def test_list_tasks_reads_pods_from_cri_annotations(tmp_path):
    root = tmp_path / "k8s.io"
    sandbox, app = "1" * 64, "2" * 64
    make_bundle(root, sandbox, {"io.kubernetes.cri.container-type": "sandbox",
                                "io.kubernetes.cri.sandbox-name": "web", "io.kubernetes.cri.sandbox-namespace": "shop"})
    make_bundle(root, app, {"io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": sandbox,
                            "io.kubernetes.cri.sandbox-name": "web", "io.kubernetes.cri.sandbox-namespace": "shop",
                            "io.kubernetes.cri.container-name": "app"})
    make_bundle(root, "3" * 64, config="{not json")                 # garbage config: a task without a pod
    (root / ("4" * 64)).mkdir()                                       # no address: not a running task
    os.symlink("/etc/passwd", str(make_bundle(root, "5" * 64, {}) / "evil"))
    # a config.json that is a symlink is not followed
    d6 = root / ("6" * 64)
    d6.mkdir()
    (d6 / "address").write_text("unix:///run/containerd/s/" + "b" * 64)
    os.symlink(str(root / app / "config.json"), str(d6 / "config.json"))
    tasks = {t["id"]: t for t in _cri.list_tasks(roots=[str(root)])}
    assert set(tasks) == {sandbox, app, "3" * 64, "5" * 64, "6" * 64}
    assert tasks[app]["type"] == "container" and tasks[app]["pod_sandbox_id"] == sandbox
    assert (tasks[app]["pod_namespace"], tasks[app]["pod_name"], tasks[app]["container_name"]) == ("shop", "web", "app")
    assert tasks[sandbox]["type"] == "sandbox"
    assert tasks["3" * 64]["pod_name"] is None and tasks["6" * 64]["pod_name"] is None
    assert tasks[app]["shim_address"].endswith("a" * 64)


def test_a_busy_shims_own_bundle_is_read_as_the_walk_reads_it(tmp_path):
    """The early probes read a bundle the workload may have touched: no
    symlinked address is followed, a FIFO init.pid does not block."""
    root = tmp_path / "k8s.io"
    good = make_bundle(root, "8" * 64, {})
    os.mkfifo(str(good / "init.pid"))
    t = _cri._bundle_task(str(good), None)
    assert t["id"] == "8" * 64 and t["init_pid"] is None and t["shim_address"].endswith("a" * 64)
    evil = root / ("9" * 64)
    evil.mkdir()
    os.symlink(str(good / "address"), str(evil / "address"))
    assert _cri._bundle_task(str(evil), None) is None


def test_oversized_config_is_not_read(tmp_path, monkeypatch):
    monkeypatch.setattr(_cri, "MAX_CONFIG_BYTES", 100)
    root = tmp_path / "k8s.io"
    make_bundle(root, "7" * 64, {"io.kubernetes.cri.sandbox-name": "x" * 200})
    (t,) = _cri.list_tasks(roots=[str(root)])
    assert t["pod_name"] is None


def process_info(pid):
    return _cri._field_bytes(1, _cri._field_varint(1, pid))


class FakeShim(ttrpc.FakeShim):
    """A unix socket that answers ttrpc like a shim: 'ok' answers Pids with
    two pids, 'never' accepts and never answers, 'trickle' sends one byte a
    second, 'error' answers with a NotFound status."""

    def __init__(self, path, mode):
        self.mode = mode
        super(FakeShim, self).__init__(path)

    def reply(self, conn, stream, request):
        if self.mode == "never":
            time.sleep(60)
            return
        if self.mode == "http":
            # not ttrpc: what an HTTP server sends to a request it cannot parse
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
            conn.close()
            return
        if self.mode == "garbage":
            # a frame that says response on stream 1 but carries no protobuf
            conn.sendall(ttrpc.frame(b"\xff\xff\xff", stream))
            return
        if self.mode == "slow":
            time.sleep(0.6)
        service = ttrpc.fields(request).get(1)
        method = ttrpc.fields(request).get(2)
        if method == b"State" and self.mode in ("ok", "paused"):
            # StateResponse: id 1, bundle 2, pid 3, status 4 (RUNNING 2, PAUSED 4)
            state = _cri._field_bytes(1, "c" * 64) + _cri._field_varint(3, 42) + _cri._field_varint(4, 4 if self.mode == "paused" else 2)
            resp = ttrpc.answer(state)
        elif self.mode == "error":
            resp = ttrpc.status(5, "task not found")
        elif self.mode == "v3only" and service != b"containerd.task.v3.Task":
            resp = ttrpc.status(12, "service %s" % service.decode())
        else:
            resp = ttrpc.answer(process_info(42) + process_info(43))
        data = ttrpc.frame(resp, stream)
        if self.mode == "trickle":
            for b in data:
                conn.sendall(bytes([b]))
                time.sleep(1.0)
            return
        conn.sendall(data)


@pytest.fixture
def shim(tmp_path):
    yield from ttrpc.fixture_of(lambda mode: FakeShim(tmp_path / ("%s.sock" % mode), mode))


def test_task_pids_speaks_ttrpc(shim):
    s = shim("ok")
    assert _cri.task_pids("unix://" + s.path, "c" * 64, 2.0) == [42, 43]
    (req,) = s.requests
    assert req[0] == (1, 2, b"containerd.task.v2.Task") and req[1] == (2, 2, b"Pids")
    assert _cri.parse_fields(req[2][2]) == [(1, 2, b"c" * 64)]


@pytest.mark.parametrize("mode", ["never", "trickle"])
def test_a_shim_that_never_answers_or_trickles_is_cut_off_at_the_deadline(shim, mode):
    s = shim(mode)
    t0 = time.monotonic()
    with pytest.raises(_cri.ShimTimeout):
        _cri.task_pids(s.path, "c" * 64, 1.5)
    assert 1.4 <= time.monotonic() - t0 < 2.0


def test_a_shim_with_only_the_v3_task_api_is_asked_again(shim):
    s = shim("v3only")
    assert _cri.task_pids(s.path, "c" * 64, 2.0) == [42, 43]
    services = [ttrpc.fields(r)[1] for r in s.requests]
    assert services == [b"containerd.task.v2.Task", b"containerd.task.v3.Task"]


@pytest.mark.parametrize("mode,answered", [("ok", ["containerd.task.v2.Task"]),
                                           ("v3only", ["containerd.task.v2.Task", "containerd.task.v3.Task"]),
                                           ("error", ["containerd.task.v2.Task"])])
def test_task_call_tells_which_services_it_asked(shim, mode, answered):
    s = shim(mode)
    asked = []
    try:
        _cri.task_call(s.path, "Connect", "c" * 64, 2.0, asked=asked)
    except _cri.ShimStatus:
        assert mode == "error"
    assert asked == answered
    assert [ttrpc.fields(r)[1].decode() for r in s.requests] == answered


@pytest.mark.parametrize("mode,status", [("ok", "running"), ("paused", "paused")])
def test_task_state_is_what_containerd_keeps(shim, mode, status):
    s = shim(mode)
    assert _cri.task_state("unix://" + s.path, "c" * 64, 2.0) == status
    (req,) = s.requests
    assert req[1] == (2, 2, b"State") and _cri.parse_fields(req[2][2]) == [(1, 2, b"c" * 64)]


def test_task_state_of_a_shim_that_never_answers_times_out(shim):
    s = shim("never")
    with pytest.raises(_cri.ShimTimeout):
        _cri.task_state(s.path, "c" * 64, 0.5)


def test_abstract_shim_sockets_of_old_containerd(tmp_path):
    name = "/hd-test-%d-%d/shim.sock" % (os.getpid(), time.monotonic_ns())
    s = FakeShim("@" + name, "ok")
    try:
        # containerd 1.2-1.4 wrote the abstract name as if it were a path
        assert _cri.task_pids("unix://" + name, "c" * 64, 2.0) == [42, 43]
    finally:
        s.close()


def test_error_status_is_an_answer(shim):
    s = shim("error")
    with pytest.raises(_cri.CriError) as e:
        _cri.task_pids(s.path, "c" * 64, 2.0)
    assert not isinstance(e.value, (_cri.ShimTimeout, _cri.ShimUnreachable)) and "task not found" in str(e.value)


def test_probe_tasks_is_concurrent_and_bounded(shim, tmp_path):
    ok, never, err = shim("ok"), shim("never"), shim("error")
    tasks = [{"id": "ok-%d" % i, "shim_address": ok.path} for i in range(20)]
    tasks += [{"id": "never-%d" % i, "shim_address": never.path} for i in range(5)]
    tasks += [{"id": "gone", "shim_address": err.path}, {"id": "nosock", "shim_address": str(tmp_path / "none.sock")}]
    t0 = time.monotonic()
    res = _cri.probe_tasks(tasks, timeout=1.0, concurrency=8)
    assert time.monotonic() - t0 < 2.0
    assert all(res["ok-%d" % i]["responsive"] is True for i in range(20))
    assert all(res["never-%d" % i]["responsive"] is False for i in range(5))
    assert res["gone"]["responsive"] is True and "task not found" in res["gone"]["error"]
    assert res["nosock"]["responsive"] is None and "ENOENT" in res["nosock"]["error"]


def test_missing_containerd_is_a_fact(tmp_path):
    rep = _cri.hung_task_report(address=str(tmp_path / "nothing.sock"), timeout=1)
    assert rep["engine"]["present"] is False and rep["engine"]["checked"] is False
    assert "ENOENT" in rep["engine"]["error"] and rep["containers"] == [] and rep["hung"] == []


def test_a_sick_pod_holds_one_slot_not_one_per_container(shim, tmp_path):
    """One shim serves a pod: its containers are asked together, so a pod of
    eight stuck containers costs one timeout and one of the two slots."""
    never = shim("never")
    healthy = [FakeShim(tmp_path / ("ok-%d.sock" % i), "ok") for i in range(6)]
    try:
        tasks = [{"id": "stuck-%d" % i, "shim_address": never.path} for i in range(8)]
        tasks += [{"id": "ok-%d-%d" % (i, j), "shim_address": h.path} for i, h in enumerate(healthy) for j in range(3)]
        t0 = time.monotonic()
        res = _cri.probe_tasks(tasks, timeout=1.0, concurrency=2)
        assert time.monotonic() - t0 < 2.3
        assert [res["stuck-%d" % i]["responsive"] for i in range(8)] == [False] * 8, res
        assert all(r["responsive"] is True for k, r in res.items() if k.startswith("ok-")), res
        assert len(never.requests) == 8
    finally:
        for h in healthy:
            h.close()


def test_busy_shims_are_asked_first_and_get_their_whole_timeout(shim, tmp_path):
    """Healthy shims that take long (runc ps per call) must not eat a sick
    pod's timeout: shims with an exec in flight go first."""
    never = shim("never")
    slow = [FakeShim(tmp_path / ("slow-%d.sock" % i), "slow") for i in range(3)]
    try:
        tasks = [{"id": "slow-%d" % i, "shim_address": h.path} for i, h in enumerate(slow)]
        tasks.append({"id": "stuck", "shim_address": never.path})
        # an overall deadline of timeout + 1 s: the stuck shim's turn comes after 1.8 s of slow ones
        late = _cri.probe_tasks(tasks, timeout=1.0, concurrency=1, deadline=time.monotonic() + 2.0)
        assert late["stuck"]["responsive"] is None and "cut short" in late["stuck"]["error"], late
        early = _cri.probe_tasks(tasks, timeout=1.0, concurrency=1, first={never.path}, deadline=time.monotonic() + 2.0)
        assert early["stuck"]["responsive"] is False, early
    finally:
        for h in slow:
            h.close()


def test_a_busy_shim_is_asked_before_the_walk_and_speaks_for_its_pods_cut_short_calls(shim, tmp_path):
    """A shim with an exec in flight is asked about its own bundle's task at
    once; a container of the same shim whose own call came too late to use
    its whole timeout is not answering, and says which call proved it."""
    never, ok = shim("never"), shim("ok")
    bundles = []
    for name, s in (("sandbox", never), ("other", ok)):
        b = tmp_path / "k8s.io" / name
        b.mkdir(parents=True)
        (b / "address").write_text("unix://" + s.path)
        (b / "init.pid").write_text("4242")
        bundles.append(str(b))
    t0 = time.monotonic()
    early = _cri._EarlyProbes(bundles, {}, 1.0, t0 + 1.5)
    assert [t["id"] for t in early.tasks] == ["other", "sandbox"] and early.tasks[1]["init_pid"] == 4242
    res = early.join(t0 + 1.5)
    assert res["sandbox"]["responsive"] is False and res["other"]["responsive"] is True, res
    assert time.monotonic() - t0 < 1.6
    cut = {"responsive": None, "latency_ms": 400, "error": "probe cut short by the overall deadline after 0.4s"}
    tasks = [{"id": "app", "shim_address": "unix://" + never.path}, {"id": "late", "shim_address": "unix://" + ok.path},
             {"id": "gone", "shim_address": "unix://" + never.path}]
    probes = {"app": cut, "late": cut, "gone": {"responsive": None, "latency_ms": 1, "error": "connection reset"}}
    merged = _cri.merge_early(probes, tasks, early.tasks, res, timeout=1.0)
    assert merged["app"]["responsive"] is False and "task sandbox" in merged["app"]["error"] and "cut short" in merged["app"]["error"]
    # an answering shim proves nothing about a cut-short call; nor does a silent one about a reset
    assert merged["late"] == cut and merged["gone"]["responsive"] is None
    assert merged["sandbox"] == res["sandbox"] and merged["other"] == res["other"]
    # each way the overall deadline decides a call (not started, cut short, no result) counts
    for why in (_deadline.NOT_PROBED, _deadline.CUT_SHORT % 0.4, _deadline.NO_RESULT):
        decided = {"app": {"responsive": None, "latency_ms": None, "error": why}}
        assert _cri.merge_early(decided, tasks[:1], early.tasks, res, timeout=1.0)["app"]["responsive"] is False, why
    # a task the early thread left without a result is undecided, never missing
    assert _cri.merge_early({}, [], early.tasks, {}, timeout=1.0)["sandbox"]["responsive"] is None


@pytest.mark.parametrize("mode", ["http", "garbage"])
def test_an_answer_that_is_not_ttrpc_proves_nothing(shim, mode):
    s = shim(mode)
    with pytest.raises(_cri.ShimProtocol) as e:
        _cri.task_pids(s.path, "c" * 64, 2.0)
    assert "not a ttrpc answer" in str(e.value)
    res = _cri.probe_tasks([{"id": "x", "shim_address": s.path}], timeout=1.0)
    assert res["x"]["responsive"] is None, res
    assert _cri.task_answers({"id": "x" * 64, "shim_address": s.path}, 1.0)[0] is None


def test_an_address_no_connection_is_made_to_proves_nothing():
    res = _cri.probe_tasks([{"id": "x", "shim_address": "tcp://127.0.0.1:1"}], timeout=1.0)
    assert res["x"]["responsive"] is None and "no connection made" in res["x"]["error"], res
    verified, why = _cri.task_answers({"id": "x" * 64, "shim_address": "tcp://127.0.0.1:1"}, 1.0)
    assert verified is None and "no connection made" in why


def test_a_full_listen_backlog_is_not_answering(tmp_path):
    path = str(tmp_path / "full.sock")
    with ttrpc.full_backlog(path):  # a stopped shim: accepts nothing
        res = _cri.probe_tasks([{"id": "x", "shim_address": path}], timeout=0.5)
        assert res["x"]["responsive"] is False and "backlog" in res["x"]["error"], res
        assert _cri.task_answers({"id": "x" * 64, "shim_address": path}, 0.5)[0] is False


def test_a_containerd_whose_backlog_is_full_is_there_and_not_answering(tmp_path):
    path = str(tmp_path / "containerd.sock")
    with ttrpc.full_backlog(path):
        st = _cri.engine_status(path, timeout=0.5)
        assert st["present"] is True and st["reachable"] is False and "backlog" in st["error"], st
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    os.unlink(path)
    srv.bind(path)
    srv.listen(4)
    try:
        st = _cri.engine_status(path, timeout=1.0)
        # the listener's pid comes from the kernel (SO_PEERCRED): here, this process
        assert st["reachable"] is True and st["pid"] == os.getpid(), st
    finally:
        srv.close()
