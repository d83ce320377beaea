"""ttrpc frames and a fake shim socket, shared by the unit tests of _cri and
_shim_probe.  Frames are built here from ttrpc's framing (a 10-byte header:
length, stream id, type, flags; big endian), not by _cri, so the tests check
_cri's own framing against them."""
import contextlib
import socket
import struct
import threading

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _cri
from ansible_collections.hangdoctor.runtime.tests.utils.backlog import fill_backlog

HEADER = struct.Struct(">IIBB")
REQUEST, RESPONSE = 1, 2


def frame(body, stream=1, mtype=RESPONSE):
    return HEADER.pack(len(body), stream, mtype, 0) + body


def read_frame(conn):
    """(stream, body) of the next frame on CONN."""
    length, stream, dummy, dummy = HEADER.unpack(conn.recv(HEADER.size))
    body = b""
    while len(body) < length:
        body += conn.recv(length - len(body))
    return stream, body


def answer(payload):
    """A ttrpc Response carrying PAYLOAD (field 2)."""
    return _cri._field_bytes(2, payload)


def status(code, message):
    """A ttrpc Response carrying an error Status{code=1, message=2} (field 1)."""
    return _cri._field_bytes(1, _cri._field_varint(1, code) + _cri._field_bytes(2, message))


def fields(request):
    """{field number: value} of a recorded request."""
    return dict((n, v) for n, w, v in request)


class FakeShim(object):
    """A unix socket (PATH; ``@name`` for an abstract one) served like a
    shim's ttrpc API: every request's protobuf fields go to ``requests``,
    and ``reply(conn, stream, request)`` of the subclass answers it."""

    def __init__(self, path, backlog=16):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path.replace("@", "\0", 1) if self.path.startswith("@") else self.path)
        self.sock.listen(backlog)
        self.requests = []
        self.conns = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, dummy = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn):
        try:
            stream, body = read_frame(conn)
            self.requests.append(_cri.parse_fields(body))
            self.reply(conn, stream, self.requests[-1])
        except OSError:
            pass  # the client gave up first (its deadline), or the test closed the socket

    def reply(self, conn, stream, request):
        raise NotImplementedError

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def fixture_of(make):
    """The body of a pytest fixture handing out MAKE(...) (a FakeShim
    factory) and closing every fake it made after the test."""
    made = []

    def make_one(*args, **kwargs):
        made.append(make(*args, **kwargs))
        return made[-1]
    yield make_one
    for s in made:
        s.close()


@contextlib.contextmanager
def full_backlog(path):
    """A unix socket at PATH that accepts nothing (a stopped shim or
    containerd), its listen backlog filled until a connect says EAGAIN."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(0)
    held = []
    try:
        held = fill_backlog(path)
        yield srv
    finally:
        for c in held:
            c.close()
        srv.close()
