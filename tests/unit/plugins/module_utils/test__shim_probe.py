"""_shim_probe: the ttrpc frames of the liveness call, the proof that a socket
is the shim's own, and the answers (a real unix socket served by a thread;
the deadlocked shim is reproduced for real in tests/integration/test_shim_probe.py)."""
import os
import time

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _cri
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _shim_probe
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils import net_unix_tables as tables
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils import ttrpc_fakes as ttrpc

CID = "c" * 64
PID = 4242


def test_connect_request_frame_is_ttrpc():
    """The bytes on the wire, built by hand from ttrpc's framing: a 10-byte
    header (length, stream id 1, type 1 = request, flags 0) and the protobuf
    Request{service=1, method=2, payload=3 (ConnectRequest{id=1}), timeout_nano=4}."""
    body = _cri.encode_request(_shim_probe.V2_SERVICE, "Connect", _cri._field_bytes(1, "abc"), 2 * 10 ** 9)
    assert body == (b"\x0a\x17containerd.task.v2.Task" + b"\x12\x07Connect" + b"\x1a\x05\x0a\x03abc"
                    + b"\x20" + bytes([0x80, 0xa8, 0xd6, 0xb9, 0x07]))
    frame = _cri.TTRPC_HEADER.pack(len(body), 1, _cri.TTRPC_REQUEST, 0) + body
    assert frame == ttrpc.frame(body, 1, ttrpc.REQUEST)


def test_connect_response_frame_decodes_the_shim_pid():
    # Response{payload=2: ConnectResponse{shim_pid=1: 27976, task_pid=2: 28030}}, as a 1.6 shim answered
    inner = b"\x08" + bytes([0xc8, 0xda, 0x01]) + b"\x10" + bytes([0xfe, 0xda, 0x01])
    code, msg, payload = _cri.decode_response(b"\x12" + bytes([len(inner)]) + inner)
    assert (code, msg) == (0, "") and _shim_probe._answer_pid(payload) == 27976
    # an error status: Response{status=1: Status{code=1: 12, message=2}}
    status = b"\x08\x0c\x12\x07nothing"
    assert _cri.decode_response(b"\x0a" + bytes([len(status)]) + status)[:2] == (12, "nothing")


class Server(ttrpc.FakeShim):
    """A unix socket served like a shim's task API: MODE 'ok' answers with
    PID, 'never' accepts and never answers, 'v3only' answers Unimplemented
    to the v2 service, 'http' answers something that is not ttrpc."""

    def __init__(self, path, mode, pid=PID):
        self.mode, self.pid = mode, pid
        super(Server, self).__init__(path, backlog=8)

    def reply(self, conn, stream, request):
        if self.mode == "never":
            time.sleep(30)
            return
        if self.mode == "http":
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            return
        if self.mode == "v3only" and ttrpc.fields(request)[1] != b"containerd.task.v3.Task":
            resp = ttrpc.status(12, "unknown service")
        else:
            resp = ttrpc.answer(_cri._field_varint(1, self.pid))
        conn.sendall(ttrpc.frame(resp, stream))


class FakeShimProc(object):
    """A procfs tree with one shim (PID): its fds (the listening socket's
    inode among them), its network namespace's net/unix, its working
    directory (the bundle, with an ``address`` file for v2) and root."""

    def __init__(self, tmp_path, sock_path, address=None, inode=tables.SHIM_LISTENER, threads=("S", "S")):
        self.root = tmp_path / "proc"
        d = self.root / str(PID)
        (d / "fd").mkdir(parents=True)
        (d / "net").mkdir()
        os.symlink("/", str(d / "root"))
        bundle = tmp_path / "bundle"
        bundle.mkdir()
        os.symlink(str(bundle), str(d / "cwd"))
        if address is not None:
            (bundle / "address").write_text(address)
        for fd, target in ((0, "/dev/null"), (3, "socket:[%d]" % inode), (4, "socket:[%d]" % tables.SHIM_CONNECTION),
                           (5, "anon_inode:[eventpoll]")):
            os.symlink(target, str(d / "fd" / str(fd)))
        (d / "net" / "unix").write_text(tables.SHIM % {"sock": sock_path})
        (d / "status").write_text("Name:\tcontainerd-shim\nNSpid:\t%d\n" % PID)
        for i, state in enumerate(threads):
            t = d / "task" / str(PID + i)
            t.mkdir(parents=True)
            rest = [state, 1, PID, PID, 0, -1, 0, 0, 0, 0, 0, 7, 3, 0, 0, 20, 0, 1, 0, 100] + [0] * 20
            (t / "stat").write_text("%d (containerd-shim) %s\n" % (PID + i, " ".join(str(x) for x in rest)))
            (t / "wchan").write_text("futex_do_wait" if state == "S" else "ptrace_stop")
            (t / "syscall").write_text("202 0x0 0x80 0x0 0x0 0x0 0x0 0x7ffd 0x4000\n")
        (self.root / "sys" / "kernel").mkdir(parents=True)

    def proc(self):
        return _procfs.Proc(str(self.root))


@pytest.fixture
def server(tmp_path):
    yield from ttrpc.fixture_of(lambda mode, pid=PID: Server(tmp_path / ("%s.sock" % mode), mode, pid))


def test_a_live_v2_shim_answers_connect(tmp_path, server):
    s = server("ok")
    fake = FakeShimProc(tmp_path, s.path, address="unix://" + s.path)
    r = _shim_probe.probe(fake.proc(), PID, "v2", CID, 2.0)
    assert r["answered"] is True and r["answer_pid"] == PID, r
    assert r["socket"] == s.path and "address file" in r["how"]
    assert r["request"] == "containerd.task.v2.Task/Connect" and r["threads"] is None
    (req,) = [ttrpc.fields(r) for r in s.requests]
    assert req[2] == b"Connect" and _cri.parse_fields(req[3]) == [(1, 2, CID.encode())]


def test_a_v1_shim_is_asked_shim_info_on_the_one_socket_it_listens_on(tmp_path, server):
    s = server("ok")
    fake = FakeShimProc(tmp_path, s.path)
    r = _shim_probe.probe(fake.proc(), PID, "v1", CID, 2.0)
    assert r["answered"] is True and r["request"] == "containerd.runtime.linux.shim.v1.Shim/ShimInfo", r
    assert "only unix socket" in r["how"] and ttrpc.fields(s.requests[0])[3] == b""


def test_a_shim_that_never_answers_is_reported_with_its_threads(tmp_path, server):
    s = server("never")
    fake = FakeShimProc(tmp_path, s.path, address=s.path, threads=("S", "t"))
    t0 = time.monotonic()
    r = _shim_probe.probe(fake.proc(), PID, "v2", CID, 0.5, name_of={202: "futex"}.get)
    assert 0.45 <= time.monotonic() - t0 < 3.0
    assert r["answered"] is False and r["elapsed_ms"] >= 450 and "did not answer" in r["error"], r
    assert r["request"] == "containerd.task.v2.Task/Connect"
    assert r["threads"] == [{"tid": PID, "state": "S", "wchan": "futex_do_wait", "syscall": "futex"},
                            {"tid": PID + 1, "state": "t", "wchan": "ptrace_stop", "syscall": "futex"}]


def test_a_v3_only_shim_is_asked_again_with_the_v3_service(tmp_path, server):
    s = server("v3only")
    fake = FakeShimProc(tmp_path, s.path, address=s.path)
    r = _shim_probe.probe(fake.proc(), PID, "v2", CID, 2.0)
    assert r["answered"] is True and r["request"] == "containerd.task.v3.Task/Connect", r
    assert [ttrpc.fields(q)[1] for q in s.requests] == [b"containerd.task.v2.Task", b"containerd.task.v3.Task"]


@pytest.mark.parametrize("mode,pid,why", [("http", PID, "not a ttrpc answer"), ("ok", PID + 7, "not by shim")])
def test_no_proof_either_way(tmp_path, server, mode, pid, why):
    s = server(mode, pid)
    fake = FakeShimProc(tmp_path, s.path, address=s.path)
    r = _shim_probe.probe(fake.proc(), PID, "v2", CID, 1.0)
    assert r["answered"] is None and why in r["error"], r


def test_a_socket_the_shim_does_not_hold_is_never_asked(tmp_path, server):
    s = server("ok")
    # the table lists the socket, but the shim's fds hold another inode
    fake = FakeShimProc(tmp_path, s.path, address=s.path, inode=999)
    r = _shim_probe.probe(fake.proc(), PID, "v2", CID, 1.0)
    assert r["answered"] is None and "listens on no unix socket" in r["error"] and not s.requests, r


def test_an_address_file_naming_another_socket_is_refused(tmp_path, server):
    s = server("ok")
    fake = FakeShimProc(tmp_path, s.path, address="unix:///run/containerd/s/" + "b" * 64)
    r = _shim_probe.probe(fake.proc(), PID, "v2", CID, 1.0)
    assert r["answered"] is None and "does not listen on" in r["error"] and not s.requests, r


def test_triage_settings_take_the_probe_deadline():
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _triage
    assert _triage.Settings().shim_probe_timeout == 2.0
    assert _triage.Settings(shim_probe_timeout=0).shim_probe_timeout == 0.0
    with pytest.raises(_triage.TriageError):
        _triage.Settings(shim_probe_timeout=-1)
