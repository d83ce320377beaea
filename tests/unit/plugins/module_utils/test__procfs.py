"""The existing _procfs readers: parsers on real-looking text, a fixture tree,
and the pipe functions on real pipes (tee leaves the pipe as full as it was)."""
import locale
import os

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs as pf
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils.proc_tree import materialize


def test_parse_stat_with_spaces_and_parens_in_comm():
    st = pf.parse_stat("42 (a (b) c) S 7 42 42 0 -1 0 1 2 3 4 5 6 0 0 20 0 3 0 98765 0 0\n")
    assert st["comm"] == "a (b) c" and st["state"] == "S" and st["ppid"] == 7
    assert st["utime"] == 5 and st["stime"] == 6 and st["num_threads"] == 3 and st["starttime"] == 98765
    with pytest.raises(pf.ProcError):
        pf.parse_stat("garbage")


def test_parse_status():
    st = pf.parse_status("Name:\trunc:[2:INIT]\nState:\tS (sleeping)\nPPid:\t15581\n"
                         "Uid:\t0\t0\t0\t0\nvoluntary_ctxt_switches:\t41\nnonvoluntary_ctxt_switches:\t3\n")
    assert st == {"Name": "runc:[2:INIT]", "State": "S (sleeping)", "PPid": 15581, "Uid": [0, 0, 0, 0],
                  "voluntary_ctxt_switches": 41, "nonvoluntary_ctxt_switches": 3}


@pytest.mark.parametrize("text,nr,args,running", [
    ("1 0x2 0xc4200ae000 0x21 0x0 0x0 0x0 0x7ffe 0x7f51\n", 1, [2, 0xc4200ae000, 0x21, 0, 0, 0], False),
    ("64 0x2 0x4000 0x21 0x0 0x0 0x0 0xffff 0xffff\n", 64, [2, 0x4000, 0x21, 0, 0, 0], False),
    ("running\n", None, [], True),
    ("-1 0x7ffe 0x7f51\n", -1, [0x7ffe, 0x7f51], False),
    ("", None, [], False),
])
def test_parse_syscall(text, nr, args, running):
    assert pf.parse_syscall(text) == {"nr": nr, "args": args, "running": running}


def test_write_syscall_numbers_per_arch():
    assert pf.write_syscall_name(1, "x86_64") == "write" and pf.write_syscall_name(20, "x86_64") == "writev"
    assert pf.write_syscall_name(64, "aarch64") == "write" and pf.write_syscall_name(66, "arm64") == "writev"
    assert pf.write_syscall_name(64, "x86_64") is None and pf.write_syscall_name(1, "aarch64") is None
    assert pf.write_syscall_name(1, "s390x") is None


def test_parse_fdinfo_and_modes():
    info = pf.parse_fdinfo("pos:\t0\nflags:\t02004000\nmnt_id:\t15\nino:\t18383\n")
    assert info == {"pos": 0, "flags": 0o2004000, "mnt_id": 15, "ino": 18383}
    assert pf.access_mode(0o2004000) == "r" and pf.access_mode(0o1) == "w" and pf.access_mode(0o2) == "rw"


def test_pipe_inode_of():
    assert pf.pipe_inode_of("pipe:[1070361747]") == 1070361747
    assert pf.pipe_inode_of("socket:[1]") is None and pf.pipe_inode_of(None) is None
    assert pf.pipe_inode_of("pipe:[x]") is None


def test_proc_on_a_fixture_tree(tmp_path):
    proc = pf.Proc(materialize("kernel310_shim_v1", tmp_path))
    assert proc.is_procfs()
    assert proc.pids() == [1, 6600, 6655, 11646, 11680, 15581, 15638]
    assert proc.comm(15638) == "runc:[2:INIT]" and proc.wchan(15638) == "pipe_wait"
    assert proc.wchan(1) == ""  # "0": not sleeping in the kernel
    assert proc.fd_link(15638, 2) == "pipe:[1070361747]"
    assert proc.fd_link(11646, 26) == "pipe:[1070361747]"
    assert proc.fdinfo(11646, 26)["flags"] == 0o100000
    assert proc.cmdline(11646)[0] == "docker-containerd-shim"
    assert proc.stat(15638)["starttime"] == 5001
    assert proc.same_process(15638, 5001) and not proc.same_process(15638, 1) and not proc.same_process(4242, 1)
    assert proc.boot_time() == 1589000000
    holders = proc.pipe_holders([1070361747])
    assert sorted(holders[1070361747]) == [(11646, 26, "r"), (15581, 2, "w"), (15638, 2, "w")]
    assert proc.pipe_holders([1070361747], pids=[11646]) == {1070361747: [(11646, 26, "r")]}
    with pytest.raises(pf.ProcessGone):
        proc.stat(4242)
    with pytest.raises(pf.ProcessGone):
        proc.fd_link(15638, 9)


def test_real_pipe_fill_and_tee_peek_do_not_consume():
    r, w = os.pipe()
    try:
        os.write(w, b"runtime/cgo: pthread_create failed\n" * 100)
        queued_before = pf.pipe_queued(r)
        assert queued_before == 3500
        assert pf.pipe_capacity(r) >= 4096
        head = pf.tee_peek(r, 50)
        assert head == (b"runtime/cgo: pthread_create failed\n" * 2)[:50]
        assert pf.pipe_queued(r) == queued_before
        queued, cap = pf.Proc().pipe_fill(os.getpid(), r)
        assert (queued, cap) == (queued_before, pf.pipe_capacity(r))
        assert pf.tee_peek(r, 0) == b""
        assert os.read(r, 5) == b"runti"  # the content is still all there
    finally:
        os.close(r)
        os.close(w)


def test_empty_pipe_peek_and_open_fd_checks_inode():
    r, w = os.pipe()
    try:
        assert pf.tee_peek(r, 100) == b""
        proc = pf.Proc()
        ino = os.fstat(r).st_ino
        os.close(proc.open_fd(os.getpid(), r, ino))
        with pytest.raises(pf.ProcessGone):
            proc.open_fd(os.getpid(), r, ino + 1)
    finally:
        os.close(r)
        os.close(w)


# ---- files a workload controls -----------------------------------------------
def test_read_regular_file_refuses_fifo_symlink_and_big_files(tmp_path):
    good = tmp_path / "config.json"
    good.write_bytes(b'{"a": 1}')
    assert pf.read_regular_file(str(good), 100) == b'{"a": 1}'
    fifo = tmp_path / "fifo.json"
    os.mkfifo(str(fifo))
    with pytest.raises(pf.ProcError, match="not a regular file"):
        pf.read_regular_file(str(fifo), 100, timeout=5)  # a blocking open would never return
    link = tmp_path / "link.json"
    link.symlink_to(good)
    with pytest.raises(pf.ProcError, match="symlink"):
        pf.read_regular_file(str(link), 100)
    with pytest.raises(pf.ProcError, match="larger than 4 bytes"):
        pf.read_regular_file(str(good), 4)
    with pytest.raises(pf.ProcessGone):
        pf.read_regular_file(str(tmp_path / "missing"), 100)


def test_read_regular_file_says_refused_apart_from_errors_and_truncates_on_request(tmp_path):
    good = tmp_path / "m.prom"
    good.write_bytes(b"x" * 100)
    link = tmp_path / "link"
    link.symlink_to(good)
    fifo = tmp_path / "fifo"
    os.mkfifo(str(fifo))
    for path, limit in ((link, 1000), (fifo, 1000), (good, 10)):
        with pytest.raises(pf.Refused):
            pf.read_regular_file(str(path), limit, timeout=5)
    assert pf.read_regular_file(str(good), 10, truncate=True) == b"x" * 10
    # a /proc table is a regular file of size 0 that reads like any other
    assert pf.read_regular_file("/proc/self/net/tcp", 1 << 20).startswith(b"  sl")


def test_read_small_is_bounded_and_never_follows_a_link(tmp_path):
    """/proc/PID/cgroup and /proc/PID/stack as _runtime_tree, _headroom and
    _triage read them: the first bytes only, None for a link, a FIFO or a
    process that is gone."""
    d = tmp_path / "7"
    d.mkdir()
    (d / "cgroup").write_text("12:pids:/docker/%s\n" % ("c" * 64) * 100)
    proc = pf.Proc(str(tmp_path))
    assert proc.read_small(7, "cgroup", 30) == ("12:pids:/docker/%s\n" % ("c" * 64)).encode()[:30]
    assert proc.read_small(7, "cgroup", 1 << 20) == (d / "cgroup").read_bytes()
    os.symlink(str(d / "cgroup"), str(d / "stack"))
    os.mkfifo(str(d / "environ"))
    assert proc.read_small(7, "stack", 100) is None
    assert proc.read_small(7, "environ", 100) is None
    assert proc.read_small(8, "cgroup", 100) is None
    assert pf.Proc("/proc").read_small(os.getpid(), "cgroup", 1 << 16).endswith(b"\n")


def test_the_reader_s_time_bound_gives_up_on_a_read_that_does_not_return():
    import threading
    import time
    stuck = threading.Event()
    t0 = time.monotonic()
    with pytest.raises(pf.Timeout):
        pf._bounded(lambda: stuck.wait(30), 0.3, "reading a file on a stuck mount")
    assert time.monotonic() - t0 < 1.5
    stuck.set()


def test_own_pid_namespace(tmp_path):
    assert pf.own_pid_namespace(pf.Proc("/proc")) == (True, "")
    # another pid namespace's procfs: self is another number, pid 1 elsewhere
    fake = tmp_path / "hostproc"
    (fake / "1" / "ns").mkdir(parents=True)
    (fake / "self").symlink_to("4242" if os.getpid() != 4242 else "4243")
    ok, why = pf.own_pid_namespace(pf.Proc(str(fake)))
    assert ok is False and "another pid namespace" in why
    # same self number, but NSpid shows a second level
    (fake / "self").unlink()
    (fake / "me").mkdir()
    (fake / "me" / "status").write_text("Name:\tx\nNSpid:\t%d\t7\n" % os.getpid())
    (fake / "self").symlink_to(str(os.getpid()))
    (fake / str(os.getpid())).symlink_to(fake / "me")
    ok, why = pf.own_pid_namespace(pf.Proc(str(fake)))
    assert ok is False and "across pid namespaces" in why
    # no NSpid (old kernel): pid 1's namespace decides
    (fake / "me" / "status").write_text("Name:\tx\n")
    (fake / "1" / "ns" / "pid").symlink_to("pid:[1]")
    ok, why = pf.own_pid_namespace(pf.Proc(str(fake)))
    assert ok is False and "pid 1 of" in why
    (fake / "1" / "ns" / "pid").unlink()
    (fake / "1" / "ns" / "pid").symlink_to(os.readlink("/proc/self/ns/pid"))
    assert pf.own_pid_namespace(pf.Proc(str(fake))) == (True, "")


def test_read_returns_what_open_returns(tmp_path):
    """_read skips the file object but must read as open() does: the
    locale's encoding, universal newlines, every byte in binary."""
    path = tmp_path / "f"
    data = "1 (a\r\nb\rc \u00e9) S 2\n".encode(locale.getpreferredencoding(False), "replace") + b"x" * 70000
    path.write_bytes(data)
    with open(str(path)) as f:
        assert pf._read(str(path)) == f.read()
    assert pf._read(str(path), binary=True) == data
    with pytest.raises(pf.ProcessGone):
        pf._read(str(tmp_path / "missing"))
    with pytest.raises(pf.ProcError):
        pf._read(str(tmp_path))
