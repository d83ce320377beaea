"""Shared by the drain's unit tests (fixtures in conftest.py): a child process blocked in write(2) on a
full pipe whose read end the test holds (standing in for the shim)."""
import os
import signal
import subprocess
import sys
import time

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _pipe_drain
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs

PROC = _procfs.Proc('/proc')
CID = 'c0ffee' + 'ab' * 29

# Deterministic, no two lines alike: a lost or reordered chunk changes the sha256.
WRITER = r'''
import os, sys, time
n, mode = int(sys.argv[1]), sys.argv[2]
data = b"".join(b"goroutine %d [chan receive]: runc init crash dump line\n" % i for i in range(n // 40 + 1))[:n]
if mode == "parent":
    # like runc exec: a child (runc init) writes the dump, the parent then its error line
    child = os.fork()
    if child == 0:
        view = memoryview(data)
        while view:
            view = view[os.write(2, view):]
        os._exit(2)
    os.write(1, b"%d\n" % child)
    os.waitpid(child, 0)
    os.write(2, b"exec failed: read init-p: connection reset by peer\n")
    sys.exit(1)
view = memoryview(data)
while view:
    view = view[os.write(2, view):]
if mode == "sleep":
    time.sleep(120)
elif mode == "forever":
    while True:
        os.write(2, b"x" * 4096)
'''
ERROR_LINE = b"exec failed: read init-p: connection reset by peer\n"


def payload(n):
    return b"".join(b"goroutine %d [chan receive]: runc init crash dump line\n" % i for i in range(n // 40 + 1))[:n]


class Writer(object):
    """A child blocked writing N bytes to fd 2, a pipe whose read end we hold."""

    def __init__(self, n=256 * 1024, mode="exit"):
        self.r, w = os.pipe()
        self.inode = os.fstat(self.r).st_ino
        out = subprocess.PIPE if mode == "parent" else subprocess.DEVNULL
        self.p = subprocess.Popen([sys.executable, "-c", WRITER, str(n), mode], stderr=w, stdout=out,
                                  stdin=subprocess.DEVNULL)
        os.close(w)
        self.pid = self.p.pid
        self.exec_pid = None
        if mode == "parent":
            self.exec_pid = self.p.pid
            self.pid = int(self.p.stdout.readline())
        self.start_time = PROC.stat(self.pid)["starttime"]
        self.data = payload(n)

    def wait_blocked(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _pipe_drain.writer_state(PROC, self.pid, self.start_time, self.inode) == _pipe_drain.BLOCKED:
                return
            time.sleep(0.01)
        raise AssertionError("writer %d never blocked on pipe:[%d]" % (self.pid, self.inode))

    def queued(self):
        return _procfs.pipe_queued(self.r)

    def record(self, **over):
        rec = {
            "container_id": CID,
            "writer": {"role": "runc_init", "pid": self.pid, "start_time": self.start_time},
            "runc_init": {"pid": self.pid, "start_time": self.start_time, "comm": "runc:[2:INIT]"},
            # without a runc exec parent, this test process stands in for it
            # (never blocked on the pipe)
            "runc_exec": ({"pid": self.exec_pid, "start_time": PROC.stat(self.exec_pid)["starttime"]}
                          if self.exec_pid else {"pid": os.getpid(), "start_time": PROC.stat(os.getpid())["starttime"]}),
            "shim": {"pid": os.getpid(), "start_time": 0, "version": "v2", "argv": [], "id": CID},
            "pipe": {"inode": self.inode, "capacity": 65536, "queued": 65536, "fd": 2},
            "readers": [{"pid": os.getpid(), "fd": self.r, "comm": "python", "is_shim": True}],
            "peek": "",
            "cause": {"kind": "pthread_create_eagain", "summary": "runtime/cgo: pthread_create failed"},
            "pod": {"namespace": "default", "name": "web-0", "container": "app"},
            "age_seconds": 0,
        }
        rec.update(over)
        return rec

    def close(self):
        for pid in (self.pid, self.exec_pid):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        self.p.wait(10)
        if self.p.stdout:
            self.p.stdout.close()
        os.close(self.r)
