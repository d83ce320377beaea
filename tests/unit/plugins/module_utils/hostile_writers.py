"""Hostile processes for the scan's denial-of-service tests and bench: N
processes named ``runc:[2:INIT]`` blocked in write(2) on fd 2, all on one
full pipe that no shim reads, next to processes holding many open fds.

Everything hangs off one spawner process: the writers and fd holders die
with it (PR_SET_PDEATHSIG), and :meth:`Hostile.stop` kills it, so a failed
test leaves nothing behind."""
import os
import signal
import subprocess
import sys
import time

SPAWNER = r'''
import ctypes, os, resource, signal, sys, time
writers, fds = int(sys.argv[1]), int(sys.argv[2])
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_NAME, PR_SET_PDEATHSIG = 15, 1
r, w = os.pipe()
os.set_blocking(w, False)
try:
    while True:
        os.write(w, b"fatal error: hostile\n" * 100)
except BlockingIOError:
    pass
os.set_blocking(w, True)
kids = []

def child(body):
    pid = os.fork()
    if pid:
        kids.append(pid)
        return
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:
        os._exit(0)
    body()
    os._exit(0)

def writer():
    os.close(r)
    os.dup2(w, 2)
    libc.prctl(PR_SET_NAME, b"runc:[2:INIT]", 0, 0, 0)
    os.write(2, b"x" * 4096)

def holder(n):
    def body():
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        held = []
        try:
            for dummy in range(n):
                held.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        os.write(report_w, b"%d\n" % len(held))
        time.sleep(3600)
    return body

report_r, report_w = os.pipe()
for dummy in range(writers):
    child(writer)
per = 15000
left = fds
holders = 0
while left > 0:
    child(holder(min(per, left)))
    left -= per
    holders += 1
held = 0
with os.fdopen(report_r) as reports:
    for dummy in range(holders):
        held += int(reports.readline())
os.write(1, b"spawned %d\n" % held)
sys.stdin.read()  # until the test closes our stdin (or kills us)
for k in kids:
    os.kill(k, signal.SIGKILL)
'''


class Hostile(object):
    """WRITERS fake runc inits on one full pipe and FDS open fds, real processes."""

    def __init__(self, writers=120, fds=38000, timeout=60.0):
        self.writers = writers
        self.p = subprocess.Popen([sys.executable, '-c', SPAWNER, str(writers), str(fds)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.held = 0
        try:
            deadline = time.monotonic() + timeout
            while True:
                line = self.p.stdout.readline()
                if not line:
                    raise AssertionError('hostile spawner died')
                if line.startswith(b'spawned '):
                    self.held = int(line.split()[1])
                    break
            self.pipe_inode = None
            # every writer blocked in write(2) on the pipe
            while time.monotonic() < deadline:
                blocked = self.blocked_writers()
                if len(blocked) == writers:
                    break
                time.sleep(0.05)
            else:
                raise AssertionError('only %d of %d hostile writers blocked' % (len(self.blocked_writers()), writers))
        except BaseException:
            self.stop()
            raise

    def children(self):
        out = []
        for name in os.listdir('/proc'):
            if not name.isdigit():
                continue
            try:
                with open('/proc/%s/stat' % name) as f:
                    text = f.read()
            except (IOError, OSError):
                continue
            if int(text[text.rindex(')') + 2:].split()[1]) == self.p.pid:
                out.append(int(name))
        return out

    def blocked_writers(self):
        out = []
        for pid in self.children():
            try:
                with open('/proc/%d/comm' % pid) as f:
                    comm = f.read().strip()
                with open('/proc/%d/syscall' % pid) as f:
                    sc = f.read().split()
                link = os.readlink('/proc/%d/fd/2' % pid)
            except (IOError, OSError):
                continue
            if comm == 'runc:[2:INIT]' and len(sc) > 1 and sc[0] in ('1', '64') and int(sc[1], 16) == 2:
                out.append(pid)
                self.pipe_inode = int(link[6:-1])
        return out

    def stop(self):
        if self.p.poll() is None:
            kids = self.children()
            try:
                self.p.stdin.close()
            except (IOError, OSError):
                pass
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
            for k in kids:
                try:
                    os.kill(k, signal.SIGKILL)
                except OSError:
                    pass
        self.p.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
