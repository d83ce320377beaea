"""Diagnosis on fixture /proc trees: a kernel-3.10 Docker host (shim v1,
docker-runc, wchan pipe_wait), a kernel-6 CRI pod (shim v2 with the sandbox
as -id, writev, a runc exec blocked after its runc init died), arm64 syscall
numbers with a one-page pipe, and near-misses.  Pipe fill and peek cannot
come from files, so they are injected; the real ones are proven on the
real-runtime harness."""
import copy
import json

import os

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils._procfs import Proc
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _stuck_exec as se
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils.proc_tree import (
    materialize, probe_from, set_field)

CID = "bbd5e4b5f9c13666dd0ec7ff7afb2c4c2b0ede40a4adf1de43cc31c606f283f5"
C_APP = "1d1750ecc627cc5d60d80c071b2eb4d515ee8880c5b5136883164f08319869b0"
C_SIDE = "b761e05249245695278b3f409d2d6e5c6a5bff6995ff0cf44d03af4aa9764a30"
SANDBOX = "a" * 64
C_ARM = "c" * 64
DUMP = (b"runtime/cgo: pthread_create failed: Resource temporarily unavailable\n"
        b"SIGABRT: abort\nPC=0x7f512b7365f7 m=0 sigcode=18446744073709551610\n\ngoroutine 0 [idle]:\n") * 50


def scan_kw(proc=None, first_pass=None, **kw):
    """se.scan with its options and seams given by name."""
    seams = dict((k, kw.pop(k)) for k in list(kw) if k in se.Seams._fields)
    return se.scan(proc, se.ScanOptions(**kw), first_pass=first_pass, seams=se.Seams(**seams))


def peek_of(data=DUMP):
    seen = []

    def peek(pid, fd, inode, n):
        seen.append((pid, fd, inode, n))
        return data[:n]
    peek.seen = seen
    return peek


class Sleeps(object):
    def __init__(self):
        self.calls = []

    def __call__(self, seconds):
        self.calls.append(seconds)


def run(tmp_path, name, probes, **kw):
    root = materialize(name, tmp_path)
    kw.setdefault("pipe_peek", peek_of())
    kw.setdefault("sleep", Sleeps())
    kw.setdefault("kmsg", False)
    return root, scan_kw(Proc(root), pipe_probe=probe_from(probes), **kw)


def test_kernel_310_docker_shim_v1(tmp_path):
    sleeps = Sleeps()
    root, res = run(tmp_path, "kernel310_shim_v1", {15638: (65536, 65536)}, machine="x86_64",
                    sleep=sleeps, confirm_interval=1.5)
    assert res["suspects"] == []
    assert len(res["stuck_execs"]) == 1
    rec = res["stuck_execs"][0]
    assert rec["container_id"] == CID
    assert rec["writer"] == {"role": "runc_init", "pid": 15638, "start_time": 5001, "comm": "runc:[2:INIT]",
                             "state": "S", "wchan": "pipe_wait", "syscall": "write"}
    assert rec["runc_init"]["wchan"] == "pipe_wait" and rec["runc_init"]["syscall"] == "write"
    assert rec["runc_exec"]["pid"] == 15581 and rec["runc_exec"]["argv"][0] == "docker-runc"
    assert rec["shim"]["pid"] == 11646 and rec["shim"]["version"] == "v1" and rec["shim"]["id"] is None
    assert rec["pipe"] == {"inode": 1070361747, "capacity": 65536, "queued": 65536, "fd": 2}
    assert rec["readers"] == [{"pid": 11646, "fd": 26, "comm": "docker-containe", "is_shim": True}]
    assert rec["cause"]["kind"] == "pthread_create_eagain"
    assert rec["peek"].startswith("runtime/cgo: pthread_create failed") and rec["peek_bytes"] == 4096
    # Docker's labels (dockershim) found through dockerd's --data-root under its root
    assert rec["pod"] == {"namespace": "shop", "name": "web-0", "container": "super-agent"}
    assert sleeps.calls == [1.5]
    assert rec["evidence"]["queued"] == [65536, 65536]
    assert res["scanned_processes"] == 7
    json.dumps(res)  # the record goes back through Ansible as JSON


def test_kernel_6_cri_pod_container_id_is_not_the_sandbox(tmp_path):
    root, res = run(tmp_path, "kernel6_cri_shim_v2", {4001: (65536, 65536), 4100: (65536, 65536)})
    assert res["suspects"] == []
    by_id = dict((r["container_id"], r) for r in res["stuck_execs"])
    assert sorted(by_id) == sorted([C_APP, C_SIDE])
    assert SANDBOX not in by_id
    app = by_id[C_APP]
    assert app["shim"]["version"] == "v2" and app["shim"]["id"] == SANDBOX
    assert app["writer"]["role"] == "runc_init" and app["runc_init"]["syscall"] == "writev"
    assert app["runc_init"]["wchan"] == "anon_pipe_write"
    assert app["pod"] == {"namespace": "payments", "name": "api-6b7f9", "container": "app"}
    # The sidecar's runc init died (OOM killer): runc exec itself is the blocked writer.
    side = by_id[C_SIDE]
    assert side["writer"]["role"] == "runc_exec" and side["writer"]["pid"] == 4100
    assert side["runc_init"] is None
    assert side["pipe"]["inode"] == 9101 and side["readers"][0]["pid"] == 3000
    assert side["pod"]["container"] == "sidecar"


def test_arm64_numbers_and_a_one_page_pipe(tmp_path):
    root, res = run(tmp_path, "arm64_one_page_pipe", {511: (4096, 4096)})
    assert [r["container_id"] for r in res["stuck_execs"]] == [C_ARM]
    rec = res["stuck_execs"][0]
    assert rec["runc_init"]["syscall"] == "write" and rec["runc_init"]["wchan"] == "pipe_write"
    assert rec["pipe"]["capacity"] == 4096
    # the same tree read as x86_64: 64 is not write there, so nothing is found
    res = scan_kw(Proc(root), pipe_probe=probe_from({511: (4096, 4096)}), machine="x86_64",
                  sleep=Sleeps(), kmsg=False, pipe_peek=peek_of())
    assert res["stuck_execs"] == [] and res["suspects"] == []


def test_one_page_pipe_that_is_not_full_is_only_a_suspect(tmp_path):
    root, res = run(tmp_path, "arm64_one_page_pipe", {511: (1024, 4096)})
    assert res["stuck_execs"] == []
    assert res["suspects"][0]["reason"] == "pipe not full (1024 of 4096 bytes queued)"


def test_near_misses_are_suspects_with_reasons(tmp_path):
    probes = {211: (65536, 65536), 311: [(65536, 65536), (61440, 65536)], 411: (120, 65536),
              511: (65536, 65536), 611: (0, 65536), 711: (65536, 65536)}
    root, res = run(tmp_path, "near_misses", probes)
    assert res["stuck_execs"] == []
    reasons = dict((r["writer"]["pid"], r["reasons"]) for r in res["suspects"])
    assert sorted(reasons) == [211, 311, 411, 511]  # 611 reads, 711 writes fd 1: not candidates
    assert "no containerd shim above runc exec" in reasons[211]
    assert "reader is not a shim" in reasons[211]
    hand = [r for r in res["suspects"] if r["writer"]["pid"] == 211][0]
    assert hand["readers"][0]["comm"] == "tail" and hand["readers"][0]["is_shim"] is False
    assert reasons[311] == ["writer making progress"]
    assert reasons[411] == ["pipe not full (120 of 65536 bytes queued)"]
    assert "state D, not S" in reasons[511]
    assert "wchan folio_wait_bit_common is not a pipe write" in reasons[511]


def test_vanished_writer_between_samples_is_dropped(tmp_path):
    root = materialize("arm64_one_page_pipe", tmp_path)

    def sleep_and_exit(seconds):
        set_field(root, 511, "stat", open(root + "/511/stat").read().replace(" 901 ", " 99999 "))
    res = scan_kw(Proc(root), pipe_probe=probe_from({511: (4096, 4096)}), sleep=sleep_and_exit,
                  kmsg=False, pipe_peek=peek_of())
    assert res["stuck_execs"] == [] and res["suspects"] == []


def test_container_filter_and_min_age(tmp_path):
    probes = {4001: (65536, 65536), 4100: (65536, 65536)}
    root, res = run(tmp_path, "kernel6_cri_shim_v2", probes, container_ids=[C_APP[:12]])
    assert [r["container_id"] for r in res["stuck_execs"]] == [C_APP]
    root, res = run(tmp_path / "x", "kernel6_cri_shim_v2", probes, container_ids=[SANDBOX])
    assert res["stuck_execs"] == [] and res["suspects"] == []
    # now = btime + a few seconds after the writers started: too young
    root, res = run(tmp_path / "y", "kernel6_cri_shim_v2", probes, min_age_seconds=3600,
                    now=1700000000 + 90.0)
    assert res["stuck_execs"] == []
    assert all("younger than min_age_seconds" in r["reason"] for r in res["suspects"])
    assert len(res["suspects"]) == 2


def test_no_candidates_means_no_sleep(tmp_path):
    sleeps = Sleeps()
    root, res = run(tmp_path, "kernel6_cri_shim_v2", {4001: (10, 65536), 4100: (10, 65536)},
                    container_ids=["ffff"], sleep=sleeps)
    assert sleeps.calls == [] and res["confirm_seconds"] == 0


def test_peek_off_and_short_peek(tmp_path):
    peek = peek_of()
    root, res = run(tmp_path, "arm64_one_page_pipe", {511: (4096, 4096)}, peek_bytes=0, pipe_peek=peek)
    assert res["stuck_execs"][0]["peek"] == "" and peek.seen == []
    peek = peek_of()
    root, res = run(tmp_path / "b", "arm64_one_page_pipe", {511: (4096, 4096)}, peek_bytes=20, pipe_peek=peek)
    rec = res["stuck_execs"][0]
    assert rec["peek"] == DUMP[:20].decode() and rec["peek_bytes"] == 20
    assert rec["cause"]["kind"] == "pthread_create_eagain"  # classified on a longer tee
    assert peek.seen[0][:3] == (511, 2, 5002)


def test_oom_lines_attached_from_kernel_log(tmp_path):
    log = tmp_path / "kmsg"
    log.write_text(
        "6,100,5,-;Memory cgroup stats for /kubepods/pod1/%s: cache:0KB rss:40KB\n"
        "4,101,6,-;oom-kill:,cpuset=%s,task_memcg=/kubepods/pod1/%s,task=runc:[2:INIT],pid=12800,uid=0\n"
        "3,102,7,-;Memory cgroup out of memory: Kill process 12800 (runc:[2:INIT]) score 997 or sacrifice child\n"
        "3,103,8,-;Killed process 12788 (runc:[2:INIT]) total-vm:600736kB\n"
        "6,104,9,-;eth0: link up\n" % (CID, CID, CID))
    root, res = run(tmp_path, "kernel310_shim_v1", {15638: (65536, 65536)}, machine="x86_64", kmsg=str(log))
    cause = res["stuck_execs"][0]["cause"]
    assert len(cause["oom_kills"]) == 3 and cause["oom_kills"][0].startswith("oom-kill:")
    assert "3 OOM line(s)" in cause["hint"]


@pytest.mark.parametrize("bad", [{"confirm_interval": -1}, {"peek_bytes": -5}, {"min_age_seconds": -0.1}])
def test_negative_numbers_are_refused(tmp_path, bad):
    root = materialize("arm64_one_page_pipe", tmp_path)
    with pytest.raises(se.DiagnosisError, match="must not be negative"):
        scan_kw(Proc(root), **bad)


def test_not_a_procfs(tmp_path):
    with pytest.raises(se.DiagnosisError, match="not a procfs"):
        scan_kw(Proc(str(tmp_path)))


# ---- verify ------------------------------------------------------------------
def scanned(tmp_path, name="kernel310_shim_v1", pid=15638, machine="x86_64"):
    root, res = run(tmp_path, name, {pid: (65536, 65536)}, machine=machine)
    return root, copy.deepcopy(res["stuck_execs"][0])


def test_verify_confirms_a_real_record(tmp_path):
    root, rec = scanned(tmp_path)
    sleeps = Sleeps()
    ok = se.verify(Proc(root), rec, confirm_interval=0.7, sleep=sleeps,
                   pipe_probe=probe_from({15638: (65536, 65536)}), machine="x86_64")
    assert ok == (True, "") and sleeps.calls == [0.7]


def test_verify_runc_exec_writer(tmp_path):
    root, res = run(tmp_path, "kernel6_cri_shim_v2", {4001: (65536, 65536), 4100: (65536, 65536)})
    rec = [r for r in res["stuck_execs"] if r["writer"]["role"] == "runc_exec"][0]
    assert se.verify(Proc(root), rec, sleep=Sleeps(), pipe_probe=probe_from({4100: (65536, 65536)})) == (True, "")


def move_reader_to_non_shim(root):
    """The shim (11646) lets go of the pipe and docker-containerd (6655), not
    a shim, holds it for reading.  git keeps no empty fd/ folders: make them."""
    os.unlink(root + "/11646/fd/26")
    for sub in ("fd", "fdinfo"):
        os.makedirs(root + "/6655/" + sub, exist_ok=True)
    os.symlink("pipe:[1070361747]", root + "/6655/fd/9")
    with open(root + "/6655/fdinfo/9", "w") as f:
        f.write("flags:\t0100000\n")


@pytest.mark.parametrize("change,probe,reason", [
    (lambda root: set_field(root, 15638, "stat", open(root + "/15638/stat").read().replace(" 5001 ", " 7777 ")),
     (65536, 65536), "pid reused"),
    (lambda root: __import__("shutil").rmtree(root + "/15638"), (65536, 65536), "writer exited"),
    (lambda root: None, (100, 65536), "pipe not full (100 of 65536 bytes queued)"),
    (lambda root: None, [(65536, 65536), (65000, 65536)], "writer making progress"),
    (lambda root: set_field(root, 15638, "syscall", "0 0x3 0x0 0x1 0x0 0x0 0x0 0x0 0x0\n"), (65536, 65536),
     "not in write(2)"),
    (lambda root: set_field(root, 15638, "stat", open(root + "/15638/stat").read().replace(") S ", ") D ")),
     (65536, 65536), "state D, not S"),
    (move_reader_to_non_shim, (65536, 65536), "reader is not a shim"),
])
def test_verify_says_why_not(tmp_path, change, probe, reason):
    root, rec = scanned(tmp_path)
    change(root)
    ok = se.verify(Proc(root), rec, sleep=Sleeps(), pipe_probe=probe_from({15638: probe}), machine="x86_64")
    assert ok == (False, reason)


def test_verify_pipe_changed(tmp_path):
    root, rec = scanned(tmp_path)
    rec["pipe"]["inode"] = 42
    assert se.verify(Proc(root), rec, sleep=Sleeps(), pipe_probe=probe_from({15638: (65536, 65536)}),
                     machine="x86_64") == (False, "pipe changed")


def test_verify_refuses_malformed_records(tmp_path):
    # the rules themselves are tested once, in test__records.py
    root, rec = scanned(tmp_path)
    rec.pop("writer")
    with pytest.raises(se.DiagnosisError, match="malformed stuck exec record: .*writer missing"):
        se.verify(Proc(root), rec, sleep=Sleeps())
    with pytest.raises(se.DiagnosisError, match="must be a dict"):
        se.verify(Proc(root), ["x"], sleep=Sleeps())


def test_pipe_is_full_allows_page_slack_only():
    assert se.pipe_is_full(65536, 65536)
    assert se.pipe_is_full(65536 - 33 * 10, 65536)  # small Go prints leave slack in page slots
    assert not se.pipe_is_full(65536 - 8192, 65536)
    assert se.pipe_is_full(4096, 4096) and se.pipe_is_full(4000, 4096)
    assert not se.pipe_is_full(2048, 4096)
    assert not se.pipe_is_full(0, 4096) and not se.pipe_is_full(10, 0)


# ---- hostile workloads -------------------------------------------------------
IMPOSTOR_CID = "9" * 64


def scan_within(seconds, fifos, **kw):
    """scan() in a thread: a scan that blocks (on a FIFO) fails the test
    instead of hanging it; the FIFOs are then opened for writing, which lets
    the blocked open return."""
    import threading
    box = {}

    def go():
        try:
            box["res"] = scan_kw(**kw)
        except Exception as e:  # reported below
            box["error"] = e

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        for path in fifos:
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        t.join(5)
        pytest.fail("scan blocked on a FIFO planted where a bundle file should be")
    if "error" in box:
        raise box["error"]
    return box["res"]


def test_fifo_config_json_in_a_bundle_never_blocks_the_scan(tmp_path):
    root = materialize("kernel6_cri_shim_v2", tmp_path)
    config = os.path.join(root, "host/run/containerd/io.containerd.runtime.v2.task/k8s.io", C_APP, "config.json")
    os.unlink(config)
    os.mkfifo(config)
    res = scan_within(10, [config], proc=Proc(root), pipe_probe=probe_from({4001: (65536, 65536), 4100: (65536, 65536)}),
                      pipe_peek=peek_of(), sleep=Sleeps(), kmsg=False)
    app = [r for r in res["stuck_execs"] if r["container_id"] == C_APP][0]
    # the FIFO is refused, not read: the pod stays unknown, the hang is still proven
    assert app["pod"] == {"namespace": None, "name": None, "container": None}


def add_impostor(root, tmp_path):
    """Process 5000 inside a container, a child of shim 3000 (every
    container's init is): named runc, argv ``runc exec <id>``, fd 2 a full
    pipe read by its own child 5001, its working directory a folder of the
    container holding a FIFO named config.json, in another mount namespace."""
    import shutil
    shutil.copytree(root + "/4100", root + "/5000", symlinks=True)
    set_field(root, 5000, "stat", open(root + "/4100/stat").read().replace("4100", "5000").replace(" 8200 ", " 9000 "))
    set_field(root, 5000, "cmdline", "runc\0exec\0%s\0" % IMPOSTOR_CID)
    os.unlink(root + "/5000/fd/2")
    os.symlink("pipe:[9501]", root + "/5000/fd/2")
    inside = tmp_path / "container-root" / "run/containerd/io.containerd.runtime.v2.task/k8s.io" / IMPOSTOR_CID
    inside.mkdir(parents=True)
    fifo = str(inside / "config.json")
    os.mkfifo(fifo)
    os.unlink(root + "/5000/cwd")
    os.symlink(str(inside), root + "/5000/cwd")
    os.makedirs(root + "/5000/ns")
    os.symlink("mnt:[4026532999]", root + "/5000/ns/mnt")
    os.makedirs(root + "/3000/ns")
    os.symlink("mnt:[4026531840]", root + "/3000/ns/mnt")
    # its reader: a child holding the read end
    shutil.copytree(root + "/3030", root + "/5001", symlinks=True)
    set_field(root, 5001, "stat", open(root + "/3030/stat").read().replace("3030 (sleep) S 3000", "5001 (sleep) S 5000"))
    for sub in ("fd", "fdinfo"):
        os.makedirs(root + "/5001/" + sub)
    os.symlink("pipe:[9501]", root + "/5001/fd/0")
    set_field(root, 5001, "fdinfo/0", "flags:\t0100000\n")
    return fifo


def test_impostor_runc_exec_in_a_container_is_a_suspect_and_never_blocks(tmp_path):
    root = materialize("kernel6_cri_shim_v2", tmp_path)
    fifo = add_impostor(root, tmp_path)
    probes = {4001: (65536, 65536), 4100: (65536, 65536), 5000: (65536, 65536)}
    res = scan_within(10, [fifo], proc=Proc(root), pipe_probe=probe_from(probes), pipe_peek=peek_of(),
                      sleep=Sleeps(), kmsg=False)
    assert 5000 not in [r["writer"]["pid"] for r in res["stuck_execs"]]
    assert sorted(r["container_id"] for r in res["stuck_execs"]) == sorted([C_APP, C_SIDE])
    (sus,) = [r for r in res["suspects"] if r["writer"]["pid"] == 5000]
    assert "runc exec is in another mnt namespace than its shim" in sus["reasons"]
    assert "runc exec bundle is not next to its shim's bundle" in sus["reasons"]
    assert "reader is not a shim" in sus["reasons"]
    assert sus["runc_exec"]["bundle"] is None
    # even verify() of a hand-written record claiming it stuck says no
    rec = copy.deepcopy(sus)
    rec["readers"] = [{"pid": 3000, "fd": 24, "comm": "containerd-shim", "is_shim": True}]
    ok, why = se.verify(Proc(root), rec, sleep=Sleeps(), pipe_probe=probe_from(probes))
    assert ok is False and "namespace" in why


def test_impostor_whose_folder_has_the_bundle_name_is_still_refused(tmp_path):
    """Namespace links hidden, the working directory named like a real bundle
    in the container's view: the host has no such directory (on the real
    runtime the name resolves to another one), so it is not the bundle."""
    root = materialize("kernel6_cri_shim_v2", tmp_path)
    add_impostor(root, tmp_path)
    os.unlink(root + "/5000/ns/mnt")
    os.unlink(root + "/3000/ns/mnt")
    os.unlink(root + "/5000/cwd")
    os.symlink("/run/containerd/io.containerd.runtime.v2.task/k8s.io/" + IMPOSTOR_CID, root + "/5000/cwd")
    probes = {4001: (65536, 65536), 4100: (65536, 65536), 5000: (65536, 65536)}
    res = scan_within(10, [], proc=Proc(root), pipe_probe=probe_from(probes), pipe_peek=peek_of(),
                      sleep=Sleeps(), kmsg=False)
    (sus,) = [r for r in res["suspects"] if r["writer"]["pid"] == 5000]
    assert ("runc exec working directory /run/containerd/io.containerd.runtime.v2.task/k8s.io/%s "
            "is not the host directory of that name" % IMPOSTOR_CID) in sus["reasons"], sus["reasons"]


def test_the_blocked_writer_may_be_a_thread_other_than_the_leader(tmp_path):
    """runc init's crash dump is written by the thread that crashed: the
    leader may sleep in a futex while thread 4005 is the one in writev(2)."""
    root = materialize("kernel6_cri_shim_v2", tmp_path)
    leader_syscall = open(root + "/4001/syscall").read()
    for tid in ("4001", "4005"):
        os.makedirs(root + "/4001/task/" + tid)
        for name in ("stat", "status", "wchan"):
            text = open(root + "/4001/" + name).read()
            set_field(root, 4001, "task/%s/%s" % (tid, name), text.replace("4001 (", tid + " (", 1))
    set_field(root, 4001, "task/4001/syscall", "202 0xc000 0x80 0x0 0x0 0x0 0x0 0x7ffc 0x4567\n")
    set_field(root, 4001, "task/4001/wchan", "futex_wait_queue")
    set_field(root, 4001, "task/4005/syscall", leader_syscall)
    set_field(root, 4001, "syscall", "202 0xc000 0x80 0x0 0x0 0x0 0x0 0x7ffc 0x4567\n")
    set_field(root, 4001, "wchan", "futex_wait_queue")
    res = scan_kw(Proc(root), pipe_probe=probe_from({4001: (65536, 65536), 4100: (65536, 65536)}),
                  pipe_peek=peek_of(), sleep=Sleeps(), kmsg=False)
    app = [r for r in res["stuck_execs"] if r["container_id"] == C_APP]
    assert len(app) == 1, res["suspects"]
    assert app[0]["writer"]["pid"] == 4001 and app[0]["writer"]["tid"] == 4005
    assert app[0]["runc_init"]["syscall"] == "writev" and app[0]["runc_init"]["wchan"] == "anon_pipe_write"


def test_the_first_pass_alone_decides_a_node_without_candidates(tmp_path):
    """_exec_candidates.find is the scan's first pass: where it finds the stuck
    exec, the scan given that pass reports exactly what a whole scan does;
    where it finds nothing, its result is the scan's result."""
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _exec_candidates
    root = materialize("kernel310_shim_v1", tmp_path)
    first = _exec_candidates.find(Proc(root), machine="x86_64")
    assert [pid for pid, dummy in first["candidates"]] == [15638]

    def kw():
        return dict(pipe_probe=probe_from({15638: (65536, 65536)}), pipe_peek=peek_of(), sleep=Sleeps(), kmsg=False,
                    machine="x86_64", now=2000000000.0)
    whole = scan_kw(Proc(root), **kw())
    given = scan_kw(Proc(root), first_pass=first, **kw())
    for res in (whole, given):
        res.pop("scan_seconds")
    assert given == whole and len(given["stuck_execs"]) == 1

    # the same node once the writer left write(2): no candidate, nothing to diagnose
    set_field(root, 15638, "syscall", "7 0x0 0x0 0x0 0x0 0x0 0x0 0x7ffd 0x7f51")
    first = _exec_candidates.find(Proc(root), machine="x86_64")
    assert first["candidates"] == []
    res = _exec_candidates.result(first)
    assert res["stuck_execs"] == [] and res["suspects"] == [] and res["scanned_processes"] == 7
    assert res["confirm_seconds"] == 0.0


@pytest.mark.parametrize("option", ["confirm_interval", "peek_bytes", "min_age_seconds"])
def test_the_first_pass_refuses_negative_options(tmp_path, option):
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _exec_candidates
    root = materialize("kernel310_shim_v1", tmp_path)
    with pytest.raises(se.DiagnosisError) as e:
        _exec_candidates.find(Proc(root), **{option: -1})
    assert "%s must not be negative" % option in str(e.value)
