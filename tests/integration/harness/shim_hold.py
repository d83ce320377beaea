"""Hold a running shim in a deadlock-like state: every thread of PID except
its leader is seized and interrupted with ptrace (PTRACE_SEIZE +
PTRACE_INTERRUPT), while the leader stays parked in futex(2).  The process
as a whole is not stopped (``/proc/PID/stat`` shows the leader: S), yet no
thread polls the network or runs the Go scheduler, so its task API accepts
connections and never answers: what a Go deadlock in a shim looks like from
outside (containerd#2438, #3529, #7561).

Usage: shim_hold.py PID READY_FILE.  Writes READY_FILE (json: the held
thread ids and the leader's state) once every other thread is in its
ptrace stop, then waits until its stdin closes or it gets SIGTERM, and
detaches every thread (they resume where they were).  If it dies, the kernel
detaches them for it: the shim always survives.
"""
import ctypes
import json
import os
import select
import signal
import sys
import time

PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
WALL = 0x40000000
FUTEX_X86_64 = 202

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]


def ptrace(req, tid):
    if libc.ptrace(req, tid, None, None) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "ptrace(%#x, %d): %s" % (req, tid, os.strerror(e)))


def thread_state(pid, tid):
    with open("/proc/%d/task/%d/stat" % (pid, tid)) as f:
        state = f.read().rsplit(")", 1)[1].split()[0]
    with open("/proc/%d/task/%d/syscall" % (pid, tid)) as f:
        nr = f.read().split()[0]
    return state, nr


def main():
    pid, ready = int(sys.argv[1]), sys.argv[2]
    held = []
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    # the leader must sit in futex: that is what a deadlocked Go thread does
    deadline = time.monotonic() + 10
    while thread_state(pid, pid) != ("S", str(FUTEX_X86_64)):
        if time.monotonic() > deadline:
            raise SystemExit("the leader of %d is not parked in futex: %r" % (pid, thread_state(pid, pid)))
        time.sleep(0.01)
    try:
        # threads may start while we seize: go round until none is left
        for dummy in range(5):
            tids = sorted(int(t) for t in os.listdir("/proc/%d/task" % pid))
            new = [t for t in tids if t != pid and t not in held]
            if not new:
                break
            for tid in new:
                ptrace(PTRACE_SEIZE, tid)
                held.append(tid)
                ptrace(PTRACE_INTERRUPT, tid)
                os.waitpid(tid, WALL)
        with open(ready + ".tmp", "w") as f:
            json.dump({"held": held, "leader": thread_state(pid, pid)}, f)
        os.rename(ready + ".tmp", ready)
        while not stop:
            r, dummy, dummy = select.select([sys.stdin], [], [], 0.2)
            if r and not os.read(sys.stdin.fileno(), 1):
                break
    finally:
        for tid in held:
            try:
                ptrace(PTRACE_DETACH, tid)
            except OSError:
                pass


if __name__ == "__main__":
    main()
