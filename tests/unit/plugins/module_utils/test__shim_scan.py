"""The scan by shim (_shim_scan): parsers of the socket table and of
containerd's config, on every fixture the same findings as the full scan
(fixtures have no socket table: the fallback), and with real processes (a
containerd that listens on its two sockets, a shim that is a copy of a host
binary working in its bundle and reading a pipe): a shim found from shim.pid
(v1) or from init.pid's parent (v2) is proven, a full pipe or a shim whose
socket no known state folder explains sends the caller to the full scan, a
pid file naming a reused or foreign pid proves nothing."""
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils._procfs import Proc
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _shim_scan as ss
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _stuck_exec as se
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils import net_unix_tables as tables
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils.proc_tree import materialize


def test_listening_sockets_and_what_they_are(tmp_path):
    (tmp_path / "1" / "net").mkdir(parents=True)
    (tmp_path / "1" / "net" / "unix").write_text(tables.HOST)
    listening = ss.listening_unix(Proc(str(tmp_path)))
    assert "/tmp/hd/containerd/c.sock" in listening and "/run/systemd/notify" not in listening
    assert ss.containerd_addresses(listening) == ["/tmp/hd/containerd/c.sock"]
    assert ss.shim_sockets(listening) == set(["/run/containerd/s/" + "ab" * 32, "@/containerd-shim/moby/abc/shim.sock"])
    assert ss.listening_unix(Proc(str(tmp_path / "nothing"))) is None


def test_the_one_net_unix_parser():
    """The parser both the shim pass (host table, paths) and the shim probe
    (a shim's namespace, filtered by the inodes the shim holds) use."""
    sock = "/run/containerd/s/" + "a" * 64
    table = (tables.SHIM % {"sock": sock}).encode()
    assert dict(ss.parse_net_unix(table)) == {tables.SHIM_LISTENER: sock,
                                              7000001: "/run/containerd/containerd.sock",
                                              7000002: "@/containerd-shim/other.sock"}
    assert ss.parse_net_unix(table, {tables.SHIM_LISTENER, tables.SHIM_CONNECTION}) == [(tables.SHIM_LISTENER, sock)]
    assert ss.parse_net_unix(b"Num RefCount\nbad line\n") == []
    host = ss.parse_net_unix(tables.HOST.encode())
    assert (2921, "/tmp/hd/containerd/c.sock") in host and (2960, "@/containerd-shim/moby/abc/shim.sock") in host
    assert [p for i, p in host if i in (2950, 2962, 2963)] == []  # connected / not listening / no name
    # hostile or garbled lines: flags not hex are skipped, an inode that is not
    # a number keeps the path (the pass counts it) but never matches an inode
    odd = b"Num\n0: 2 0 zz 1 1 5 /a\n0: 2 0 00010000 1 1 x /b\n0: 2 0 00010000 1 1 6 /c with space\n"
    assert ss.parse_net_unix(odd) == [(None, "/b"), (6, "/c with space")]
    assert ss.parse_net_unix(odd, {5, 6}) == [(6, "/c with space")]
    assert ss.parse_net_unix(b"") == [] and ss.parse_net_unix(b"\xff\xfe") == []


def test_the_table_is_read_bounded_and_never_through_a_link(tmp_path, monkeypatch):
    net = tmp_path / "7" / "net"
    net.mkdir(parents=True)
    (net / "unix").write_text(tables.HOST)
    monkeypatch.setattr(ss, "MAX_NET_UNIX_BYTES", 100)
    assert ss.read_net_unix(Proc(str(tmp_path)), 7) == tables.HOST.encode()[:100]
    (net / "unix").rename(net / "real")
    os.symlink(str(net / "real"), str(net / "unix"))
    with pytest.raises(ss.ProcError, match="symlink"):
        ss.read_net_unix(Proc(str(tmp_path)), 7, 1.0)


def test_containerd_config_state():
    assert ss._toml_state('version = 2\nroot = "/r"\nstate = "/tmp/s"\n[grpc]\n  state = "/x"\n') == "/tmp/s"
    assert ss._toml_state('version = 2\n[plugins]\nstate = "/x"\n') is None
    assert ss._toml_state("state = '/y'") == "/y"


FULL = 65536


@pytest.mark.parametrize("name", sorted(os.listdir(os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "proc"))))
def test_every_fixture_finds_what_the_full_scan_finds(tmp_path, name):
    root = materialize(name, tmp_path)

    def scan(method):
        return se.scan(Proc(str(root)), se.ScanOptions(method=method, kmsg=False, peek_bytes=0),
                       seams=se.Seams(sleep=lambda s: None, pipe_probe=lambda pid, fd, inode: (FULL, FULL)))
    fast, full = scan("auto"), scan("full")
    assert full["scan_method"] == "full" and full["scan_fallback_reason"] == "scan_method full"
    assert fast["scan_method"] == "full" and "socket table" in fast["scan_fallback_reason"]

    def keys(rs):
        return sorted((r["container_id"], r["writer"]["pid"], r.get("reason")) for r in rs)
    assert keys(fast["stuck_execs"]) == keys(full["stuck_execs"])
    assert keys(fast["suspects"]) == keys(full["suspects"])
    assert fast["stuck_execs"] or fast["suspects"]


# ---- real processes -----------------------------------------------------------

CONTAINERD = r"""
import socket, sys, time
open('/proc/self/comm', 'w').write('containerd')
socks = []
for path in sys.argv[1:-2]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(8)
    socks.append(s)
print('ready', flush=True)
time.sleep(600)
"""


class Node(object):
    """A containerd (comm containerd, listening on ADDRESS and ADDRESS.ttrpc,
    ``--state STATE``) and the shims that tests add under STATE."""

    def __init__(self, tmp_path, ttrpc=True):
        self.tmp = tmp_path
        self.state = tmp_path / "state"
        # sun_path is short: the shims' sockets live in a short folder
        self.short = Path(tempfile.mkdtemp(prefix="hds", dir="/tmp"))
        self.sockdir = self.short / "s"
        self.sockdir.mkdir()
        self.address = str(self.short / "c.sock")
        self.procs = []
        self.pipes = []
        self.shim_sockets = []
        paths = [self.address] + ([self.address + ".ttrpc"] if ttrpc else [])
        self.paths = paths
        self.containerd = self._spawn([sys.executable, "-c", CONTAINERD] + paths, cwd=str(tmp_path),
                                      extra=["--state", str(self.state)])
        line = self.containerd.stdout.readline()
        assert line.strip() == b"ready", line

    def _spawn(self, argv, cwd, extra=(), stdin=subprocess.DEVNULL):
        p = subprocess.Popen(list(argv) + list(extra), cwd=cwd, stdin=stdin, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(p)
        return p

    def listen(self, cid):
        path = str(self.sockdir / hashlib.sha256(cid.encode()).hexdigest())
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.listen(1)
        self.shim_sockets.append(s)
        return path

    def shim(self, cid, layout="v1", ns="moby", listen=True):
        """A shim of CID: a copy of sh named containerd-shim working in its
        bundle, reading a pipe on fd 0, with a child (its container's init)."""
        d = "io.containerd.runtime.v1.linux" if layout == "v1" else "io.containerd.runtime.v2.task"
        bundle = self.state / d / ns / cid
        bundle.mkdir(parents=True)
        exe = self.tmp / ("containerd-shim" if layout == "v1" else "containerd-shim-runc-v2")
        if not exe.exists():
            shutil.copy("/bin/sh", str(exe))
        r, w = os.pipe()
        p = self._spawn([str(exe), "-c", "sleep 600; exit 0"], cwd=str(bundle), stdin=r)
        os.close(r)
        self.pipes.append(w)
        deadline = time.monotonic() + 5
        child = None
        while child is None and time.monotonic() < deadline:
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        if open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()[1] == str(p.pid):
                            child = int(pid)
                    except (IOError, IndexError):
                        pass
            time.sleep(0.02)
        assert child, "the shim's child did not start"
        (bundle / ("shim.pid" if layout == "v1" else "init.pid")).write_text(str(p.pid if layout == "v1" else child))
        address = self.listen(cid) if listen else str(self.sockdir / ("0" * 64))
        (bundle / "address").write_text("unix://" + address)
        return p.pid, w, bundle

    def close(self):
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait()
        for w in self.pipes:
            os.close(w)
        for s in self.shim_sockets:
            s.close()
        shutil.rmtree(str(self.short), ignore_errors=True)


@pytest.fixture
def node(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("reads other processes' fds: root only")
    n = Node(tmp_path)
    yield n
    n.close()


def fill(w):
    os.set_blocking(w, False)
    try:
        while True:
            os.write(w, b"x" * 4096)
    except BlockingIOError:
        pass


@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_a_shim_from_its_bundle_is_proven_and_its_pipes_measured(node, layout):
    pid, w, bundle = node.shim("1" * 64, layout)
    p = ss.check(Proc("/proc"))
    assert str(node.state) in p.state_dirs, p.as_dict()
    assert pid in p.shims and p.shims[pid]["version"] == layout, (p.as_dict(), p.refused)
    assert not [u for u in p.unknown if u.startswith(str(node.sockdir))]
    assert not [f for f in p.full if f[0] == pid]
    fill(w)
    p = ss.check(Proc("/proc"))
    assert not p.clean and [f for f in p.full if f[0] == pid], p.as_dict()
    assert "full pipe" in p.reason or "do not move" in p.reason


def test_a_pipe_holding_bytes_that_do_not_move_is_not_clean(node):
    pid, w, bundle = node.shim("2" * 64)
    os.write(w, b"y" * 100)
    p = ss.check(Proc("/proc"))
    assert not p.clean and [f for f in p.full if f[0] == pid], p.as_dict()


def test_a_shim_socket_no_state_folder_explains_falls_back(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("root only")
    n = Node(tmp_path, ttrpc=False)  # not recognisable as a containerd
    try:
        pid, w, bundle = n.shim("3" * 64)
        p = ss.check(Proc("/proc"))
        assert not p.clean and pid not in p.shims
        assert str(n.sockdir / hashlib.sha256(("3" * 64).encode()).hexdigest()) in p.unknown, p.as_dict()
        found = se.scan(Proc("/proc"), se.ScanOptions(kmsg=False, confirm_interval=0))
        assert found["scan_method"] == "full" and found["scan_fallback_reason"]
    finally:
        n.close()


def test_a_pid_file_naming_a_later_or_foreign_process_proves_nothing(node):
    pid, w, bundle = node.shim("4" * 64)
    # pid reuse: the file is older than the process it names
    os.utime(str(bundle / "shim.pid"), (time.time() - 3600, time.time() - 3600))
    p = ss.check(Proc("/proc"))
    assert pid not in p.shims and not p.clean
    assert [r for r in p.refused if r["bundle"] == str(bundle) and "started later" in r["reason"]], p.refused
    # a process that is no shim (the containerd itself)
    (bundle / "shim.pid").write_text(str(node.containerd.pid))
    p = ss.check(Proc("/proc"))
    assert [r for r in p.refused if r["bundle"] == str(bundle) and "not a shim" in r["reason"]], p.refused
    # a symlinked pid file is not followed
    (bundle / "shim.pid").unlink()
    other = Path(str(node.tmp)) / "elsewhere.pid"
    other.write_text(str(pid))
    os.symlink(str(other), str(bundle / "shim.pid"))
    p = ss.check(Proc("/proc"))
    assert pid not in p.shims and [r for r in p.refused if r["bundle"] == str(bundle)], p.refused


def test_a_shim_working_elsewhere_is_refused(node):
    pid, w, bundle = node.shim("5" * 64)
    other = bundle.parent / ("6" * 64)
    other.mkdir()
    (other / "address").write_text("unix://" + node.listen("6" * 64))
    (other / "shim.pid").write_text(str(pid))  # names the shim of another bundle
    p = ss.check(Proc("/proc"))
    assert [r for r in p.refused if r["bundle"] == str(other) and "another socket" in r["reason"]], p.refused
    assert pid in p.shims and not p.clean
