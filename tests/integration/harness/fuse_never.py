"""A FUSE file system that never answers, mounted inside a container.

    python3 fuse_never.py PID MOUNTPOINT READY

Opens /dev/fuse, enters the mount namespace of PID (a container's process),
mounts the FUSE connection at MOUNTPOINT (a path in that namespace), creates
READY there, and then never reads a request: every process that touches
MOUNTPOINT waits in uninterruptible sleep (D) for an answer that never comes,
as on a hung NFS or FUSE mount.  Killing this process aborts the connection
(the waiters get ENOTCONN).  Raw /dev/fuse and mount(2) through ctypes: no
FUSE library needed.
"""
import ctypes
import os
import sys
import time

CLONE_NEWNS = 0x00020000


def main():
    pid, mountpoint, ready = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open("/dev/fuse", os.O_RDWR)
    ns = os.open("/proc/%d/ns/mnt" % pid, os.O_RDONLY)
    if libc.setns(ns, CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "setns")
    opts = "fd=%d,rootmode=40000,user_id=0,group_id=0" % fd
    if libc.mount(b"hd-fuse-never", mountpoint.encode(), b"fuse", 0, opts.encode()) != 0:
        raise OSError(ctypes.get_errno(), "mount %s" % mountpoint)
    with open(ready, "w") as f:
        f.write("mounted\n")
    print("mounted", flush=True)
    while True:  # never read /dev/fuse: no request is ever answered
        time.sleep(3600)


if __name__ == "__main__":
    main()
