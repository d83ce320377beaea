"""Who may get SIGUSR1 and where the dumps are found (module_utils/_stack_capture.py).

The proc trees here are plain files; the refusal of a real process that does
not catch SIGUSR1 and the capture from real daemons are in
tests/integration/test_stack_capture.py."""
import os
from pathlib import Path

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _gostacks, _options, _procfs
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _stack_capture as sc

FIX = Path(__file__).resolve().parents[3] / "unit" / "fixtures" / "gostacks"
CATCHES = "fffffffd7fc1feff"  # dockerd 20.10 / containerd 1.6 / their shims
NO_USR1 = "0000000000000000"


def make_proc(tmp_path, pid=100, comm="dockerd", exe_name="dockerd", sigcgt=CATCHES, uid="0\t0\t0\t0",
              ns="4026531836", exe_mode=0o755):
    root = tmp_path / "proc"
    for p, nsid in ((1, "4026531836"), (pid, ns)):
        d = root / str(p)
        (d / "ns").mkdir(parents=True, exist_ok=True)
        for kind in ("pid", "mnt"):
            link = d / "ns" / kind
            if not os.path.lexists(str(link)):
                os.symlink("%s:[%s]" % (kind, nsid), str(link))
    d = root / str(pid)
    (d / "stat").write_text("%d (%s) S 1 %d %d 0 -1 0 0 0 0 0 5 6 0 0 20 0 30 0 4242 0 0\n" % (pid, comm, pid, pid))
    (d / "status").write_text("Name:\t%s\nUid:\t%s\nSigCgt:\t%s\n" % (comm, uid, sigcgt))
    (d / "comm").write_text(comm + "\n")
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    exe = bindir / exe_name
    exe.write_text("#!/bin/sh\n")
    os.chmod(str(exe), exe_mode)
    os.symlink(str(exe), str(d / "exe"))
    return _procfs.Proc(str(root))


def test_a_daemon_that_catches_sigusr1_is_a_target(tmp_path):
    t, why = sc.identify(make_proc(tmp_path), 100)
    assert why is None and t.kind == "dockerd" and t.starttime == 4242


@pytest.mark.parametrize("over,reason", [
    (dict(sigcgt=NO_USR1), "does not catch SIGUSR1 (SigCgt): the signal would end it"),
    (dict(sigcgt="zz"), "its signal mask cannot be read"),
    (dict(comm="sleep", exe_name="sleep"), "comm 'sleep' is not dockerd, containerd or a containerd shim"),
    (dict(comm="dockerd", exe_name="evil"), "does not match comm"),
    (dict(uid="1000\t1000\t1000\t1000"), "does not run as root"),
    (dict(ns="4026532999"), "not in the host pid namespace"),
    (dict(exe_mode=0o777), "its executable is not root-owned or is writable by others"),
])
def test_refusals(tmp_path, over, reason):
    t, why = sc.identify(make_proc(tmp_path, **over), 100)
    assert t is None and reason in why


def test_shims_and_containerd_are_told_apart(tmp_path):
    t, why = sc.identify(make_proc(tmp_path, comm="containerd-shim", exe_name="containerd-shim-runc-v2"), 100)
    assert t.kind == "shim", why
    t, why = sc.identify(make_proc(tmp_path / "b", comm="containerd", exe_name="containerd"), 100)
    assert t.kind == "containerd", why


def test_catches_sigusr1_reads_bit_ten_of_sigcgt(tmp_path):
    proc = make_proc(tmp_path, sigcgt="%016x" % (1 << 9))
    assert sc.catches_sigusr1(proc, 100) is True
    proc = make_proc(tmp_path / "b", sigcgt="%016x" % ((1 << 64) - 1 - (1 << 9)))
    assert sc.catches_sigusr1(proc, 100) is False


def test_targets_are_the_engine_and_shim_links_once():
    chain = [{"role": "engine", "pid": 10}, {"role": "shim", "pid": 20}, {"role": "runc", "pid": 30},
             {"role": "runc_init", "pid": 40}, {"role": "process", "pid": 50}, {"role": "shim", "pid": 20},
             {"role": "engine", "pid": True}, {"role": "engine", "pid": "10"}, "junk", {"role": "shim", "pid": -1}]
    assert sc._targets_of(chain) == [10, 20]
    assert sc._targets_of(None) == []


def test_capture_off_does_nothing(tmp_path):
    opts = _options.STACKS.make()
    assert opts.capture_stacks is False
    out = sc.capture_for([{"role": "engine", "pid": os.getpid()}], opts, str(tmp_path / "ev"),
                         lock_dir=str(tmp_path / "locks"))
    assert out["signalled"] == [] and out["refused"] == [] and not (tmp_path / "ev").exists()


def test_the_rate_limit_is_per_node_and_zero_lifts_it(tmp_path):
    locks = str(tmp_path / "locks")
    sc._rate_limit(locks, 900, 1000000.0)
    st = os.stat(os.path.join(locks, sc.STAMP))
    assert st.st_mode & 0o777 == 0o600 and st.st_mtime == 1000000.0
    with pytest.raises(sc.RateLimited, match="rate limited: the last capture on this node was 100s ago"):
        sc._rate_limit(locks, 900, 1000100.0)
    sc._rate_limit(locks, 900, 1000900.0)
    sc._rate_limit(locks, 0, 1000901.0)


def test_a_planted_stamp_is_refused(tmp_path):
    locks = tmp_path / "locks"
    locks.mkdir(mode=0o700)
    os.symlink("/etc/passwd", str(locks / sc.STAMP))
    with pytest.raises(sc.RateLimited, match="is not a regular file"):
        sc._rate_limit(str(locks), 900, 1000000.0)


def test_a_shim_dump_is_found_in_containerds_log_by_its_pid(tmp_path):
    """containerd 1.6 copies a v2 shim's log into its own: one logrus line with
    the dump escaped and pid=<shim pid> after it (a line from the harness)."""
    log = tmp_path / "containerd.log"
    line = (FIX / "containerd-1.6-log-shim-dump.log").read_bytes()
    log.write_bytes(b'time="x" level=info msg="other"\n' + line)
    (found,) = sc._log_blocks(str(log), 0, None)
    pid, body = found
    assert pid == 25962
    parsed = _gostacks.parse_bytes(body)
    assert parsed["format"] == "full" and parsed["goroutines"] > 10
    assert sc._log_blocks(str(log), len(log.read_bytes()), None) == []


def test_a_dump_file_must_be_a_regular_root_file(tmp_path):
    target = tmp_path / "real.log"
    target.write_text("goroutine 1 [running]:\n")
    os.symlink(str(target), str(tmp_path / "link.log"))
    with pytest.raises(OSError):
        sc._open_dump(str(tmp_path / "link.log"))
    os.mkfifo(str(tmp_path / "fifo.log"))
    with pytest.raises(OSError):
        sc._open_dump(str(tmp_path / "fifo.log"))
    fd, st = sc._open_dump(str(target))
    os.close(fd)
    os.chown(str(target), 1000, 1000)
    with pytest.raises(OSError):
        sc._open_dump(str(target))


# ---- retention of the goroutine-stack evidence ----------------------------------

def _stacks_file(evdir, kind, pid, age, now, how="file", size=100):
    t = sc.Target(pid=pid, starttime=4242, comm=kind, exe="/usr/bin/" + kind, kind=kind)
    name = sc._name(t, how)
    # the stamp of the capture time (as _name gives it), not of the test's clock
    name = name[:name.rindex("-") + 1] + sc._stamp(now - age) + ".log"
    path = os.path.join(evdir.path, name)
    with open(path, "wb") as f:
        f.write(b"g" * size)
    os.utime(path, (now - age, now - age))
    return name


@pytest.fixture
def evdir(tmp_path):
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _evidence
    d = _evidence.EvidenceDir(str(tmp_path / "ev"))
    yield d
    d.close()


def stacks_opts(**over):
    return _options.STACKS.make(capture_stacks=True, **over)


def test_the_names_a_capture_gives_are_the_names_retention_removes():
    for kind in ("dockerd", "containerd", "shim"):
        for how in ("file", "log"):
            t = sc.Target(pid=12, starttime=34, comm=kind, exe="x", kind=kind)
            assert sc.STACKS_RE.match(sc._name(t, how)), sc._name(t, how)
    for name in ("stacks-capture.stamp", "stacks-shim-1-2-file-20260101T000000.000000Z.log.tmp",
                 "stacks-evil-1-2-file-20260101T000000.000000Z.log", "x-stacks-shim-1-2-log-20260101T000000.000000Z.log",
                 "0123456789ab-1-2-20260101T000000.000000Z.log"):
        assert not sc.STACKS_RE.match(name), name


def test_stacks_retention_keeps_the_newest_by_count_age_and_bytes(evdir):
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _evidence
    now = 1000000000.0
    hour = 3600
    names = [_stacks_file(evdir, kind, 100 + i, age, now) for i, (kind, age) in enumerate(
        [("dockerd", 2 * hour), ("containerd", 3 * hour), ("shim", 4 * hour), ("dockerd", 5 * hour),
         ("shim", 40 * 86400)])]
    # the drain's evidence and other files of the directory are not ours to count or remove, however old
    drain = _evidence.evidence_name("0123456789ab", 7, 8, now - 90 * 86400)
    others = [drain, "notes.txt", "stacks-notes.log", sc.STAMP]
    for n in others:
        with open(os.path.join(evdir.path, n), "w") as f:
            f.write("not a dump")
        os.utime(os.path.join(evdir.path, n), (0, 0))

    got = sc.retain(evdir, stacks_opts(stacks_retention_count=0, stacks_retention_bytes=0, stacks_retention_days=30),
                    now=now)
    assert got == {"removed": 1, "removed_bytes": 100}
    assert sorted(os.listdir(evdir.path)) == sorted(names[:4] + others)
    got = sc.retain(evdir, stacks_opts(stacks_retention_count=2, stacks_retention_bytes=0, stacks_retention_days=0),
                    now=now)
    assert got["removed"] == 2
    assert sorted(n for n in os.listdir(evdir.path) if sc.STACKS_RE.match(n)) == sorted(names[:2])
    # this capture's files (KEEP, as paths) stay even when they are the oldest and over the bytes
    got = sc.retain(evdir, stacks_opts(stacks_retention_count=0, stacks_retention_bytes=50, stacks_retention_days=0),
                    keep=[os.path.join(evdir.path, names[1])], now=now)
    assert got == {"removed": 1, "removed_bytes": 100}
    assert sorted(n for n in os.listdir(evdir.path) if sc.STACKS_RE.match(n)) == [names[1]]
    assert sorted(n for n in os.listdir(evdir.path) if not sc.STACKS_RE.match(n)) == sorted(others)


def test_stacks_retention_spares_fresh_files_and_zero_lifts_every_bound(evdir):
    now = 1000000000.0
    fresh = [_stacks_file(evdir, "shim", 200 + i, 60 * (i + 1), now) for i in range(3)]
    old = [_stacks_file(evdir, "dockerd", 300 + i, 400 * 86400, now) for i in range(2)]
    none = stacks_opts(stacks_retention_count=0, stacks_retention_bytes=0, stacks_retention_days=0)
    assert sc.retain(evdir, none, now=now) == {"removed": 0, "removed_bytes": 0}
    # modified in the last hour: a concurrent capture may still be writing it
    got = sc.retain(evdir, stacks_opts(stacks_retention_count=1, stacks_retention_bytes=0, stacks_retention_days=0),
                    now=now)
    assert got["removed"] == 2
    assert sorted(os.listdir(evdir.path)) == sorted(fresh) and not set(old) & set(os.listdir(evdir.path))


def test_stacks_retention_never_follows_a_symlink_nor_removes_a_directory(evdir, tmp_path):
    now = 1000000000.0
    target = tmp_path / "precious.log"
    target.write_text("keep me")
    t = sc.Target(pid=1, starttime=2, comm="shim", exe="x", kind="shim")
    link = "stacks-shim-1-2-file-%s.log" % sc._stamp(0)
    os.symlink(str(target), os.path.join(evdir.path, link))
    folder = "stacks-shim-3-4-log-%s.log" % sc._stamp(0)
    os.mkdir(os.path.join(evdir.path, folder))
    assert sc.STACKS_RE.match(link) and sc.STACKS_RE.match(folder) and t
    got = sc.retain(evdir, stacks_opts(stacks_retention_count=0, stacks_retention_bytes=0, stacks_retention_days=1),
                    now=now)
    assert got["removed"] == 0
    assert target.read_text() == "keep me" and os.path.islink(os.path.join(evdir.path, link))
    assert os.path.isdir(os.path.join(evdir.path, folder))


def test_stacks_retention_reports_a_directory_it_cannot_list(tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("")

    class NotADir(object):
        path = str(plain)
        fd = os.open(str(plain), os.O_RDONLY)
    try:
        got = sc.retain(NotADir(), stacks_opts())
    finally:
        os.close(NotADir.fd)
    assert set(got) == {"error"} and got["error"].startswith("retention of %s:" % plain), got


def test_stacks_retention_defaults_and_bounds():
    o = _options.STACKS.make()
    assert (o.stacks_retention_count, o.stacks_retention_days) == (50, 30)
    assert o.stacks_retention_bytes == 1024 ** 3
