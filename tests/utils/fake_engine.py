"""A fake Docker Engine for tests: a unix (or tcp) socket served by threads in
the test process, where HANDLER(conn, request_line, daemon) answers each
connection.  Handlers for the misbehaving daemons the collection must survive:
one that accepts and never answers, one that trickles a byte per second."""
import json
import os
import shutil
import socket
import tempfile
import threading

VERSION = {"ApiVersion": "1.41", "Version": "20.10.99-test", "MinAPIVersion": "1.12"}


class FakeDaemon(object):
    def __init__(self, handler, tcp=False):
        self.handler = handler
        self.requests = []
        self.held = []
        self.sent = 0
        self.stop = threading.Event()
        # short path: sun_path holds 108 bytes, pytest's tmp_path may be longer
        self.dir = tempfile.mkdtemp(prefix="hd-eng-", dir="/tmp")
        if tcp:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.bind(("127.0.0.1", 0))
            self.docker_host = "tcp://127.0.0.1:%d" % self.sock.getsockname()[1]
            self.path = None
        else:
            self.path = os.path.join(self.dir, "d.sock")
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(self.path)
            self.docker_host = "unix://" + self.path
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._serve)
        self.thread.daemon = True
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, dummy = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.held.append(conn)
            t = threading.Thread(target=self._one, args=(conn,))
            t.daemon = True
            t.start()

    def _one(self, conn):
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            line = data.split(b"\r\n", 1)[0].decode()
            self.requests.append(line)
            self.handler(conn, line, self)
        except OSError:
            pass
        finally:
            conn.close()

    def paths(self):
        return [r.split()[1] for r in self.requests]

    def close(self):
        self.stop.set()
        self.sock.close()
        self.thread.join(2)
        shutil.rmtree(self.dir, ignore_errors=True)


def answer(conn, status=200, body=b"", reason="OK", headers=None):
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    head = "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (status, reason, len(body))
    for k, v in (headers or {}).items():
        head += "%s: %s\r\n" % (k, v)
    conn.sendall(head.encode() + b"\r\n" + body)


def never(conn, line, d):
    """Accepts, reads the request, never answers."""
    d.stop.wait(60)


def trickle(conn, line, d):
    """Answers one byte a second: no single read times out."""
    payload = b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}'
    for i in range(len(payload)):
        conn.sendall(payload[i:i + 1])
        d.sent += 1
        if d.stop.wait(1.0):
            return
