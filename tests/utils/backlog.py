"""Fill a unix socket's listen backlog, as a stopped shim or containerd
leaves it: connect until the kernel refuses with EAGAIN."""
import errno
import socket


def fill_backlog(path, limit=20000):
    """The connected sockets that fill the backlog of the listener at PATH
    (they must stay open while it is to stay full)."""
    held = []
    while len(held) < limit:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(path)
        except OSError as e:
            s.close()
            if e.errno == errno.EAGAIN:
                return held
            for c in held:
                c.close()
            raise
        held.append(s)
    for c in held:
        c.close()
    raise AssertionError("the backlog of %s never filled" % path)
