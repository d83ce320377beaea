"""The scan by shim on the real runtime: the shims of Docker's shim v2 and v1
containers are found from containerd's state folder and proven; a node whose
shims hold no full pipe is proven clean without reading every process; a
stuck exec (v2, v1) or a shim whose state folder is unknown sends the scan to
the full scan; and in every case the fast path finds exactly what the full
scan finds."""
import json
import os
import sys
import time

import pytest

import hdharness
from conftest import collections_path, run_module

sys.path.insert(0, collections_path())

from ansible_collections.hangdoctor.runtime.plugins.module_utils._procfs import Proc  # noqa: E402
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _shim_scan  # noqa: E402
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _stuck_exec  # noqa: E402

OPTS = dict(confirm_interval=0.3, kmsg=False, peek_bytes=0)


def key(r):
    return (r.get("container_id"), r["writer"]["role"], r["writer"]["pid"], r["pipe"]["inode"])


def shim_read(records):
    return sorted(key(r) for r in records if any(x.get("is_shim") for x in r.get("readers") or []))


def scans():
    proc = Proc("/proc")
    fast = _stuck_exec.scan(proc, _stuck_exec.ScanOptions(method="auto", **OPTS))
    full = _stuck_exec.scan(proc, _stuck_exec.ScanOptions(method="full", **OPTS))
    return fast, full


def same_findings(tries=4):
    """(fast, full) once both found the same stuck execs (and the same
    suspects read by a shim).  Other harnesses on this machine may start or
    release a hang between the two scans: a few tries, then the last pair."""
    for dummy in range(tries):
        fast, full = scans()
        assert full["scan_method"] == "full" and full["scan_fallback_reason"] == "scan_method full"
        if (sorted(map(key, fast["stuck_execs"])) == sorted(map(key, full["stuck_execs"]))
                and shim_read(fast["suspects"]) == shim_read(full["suspects"])):
            return fast, full
        time.sleep(1)
    assert sorted(map(key, fast["stuck_execs"])) == sorted(map(key, full["stuck_execs"])), (fast, full)
    assert shim_read(fast["suspects"]) == shim_read(full["suspects"]), (fast, full)
    return fast, full


def shim_of(harness, cid):
    pid = json.loads(harness.docker("inspect", cid, timeout=20, check=True).stdout)[0]["State"]["Pid"]
    return hdharness.proc_ppid(pid)


def bundle(harness, cid, layout):
    d = "io.containerd.runtime.v2.task" if layout == "v2" else "io.containerd.runtime.v1.linux"
    return harness.ctd / "state" / d / "moby" / cid


def address(harness, cid, layout):
    return (bundle(harness, cid, layout) / "address").read_text().strip()[len("unix://"):]


def test_healthy_shims_prove_the_node_clean(harness, release):
    cids = {layout: harness.run_container("shimscan-ok-%s" % layout, layout) for layout in ("v2", "v1")}
    shims = {layout: shim_of(harness, cid) for layout, cid in cids.items()}
    ours = set(address(harness, cid, layout) for layout, cid in cids.items())
    p = _shim_scan.check(Proc("/proc"))
    assert str(harness.ctd / "state") in p.state_dirs, p.as_dict()
    for layout, cid in cids.items():
        info = p.shims.get(shims[layout])
        assert info, (layout, p.as_dict(), p.refused)
        assert info["version"] == layout and info["bundle"].endswith(cid)
    assert not ours & set(p.unknown), p.unknown
    assert not [f for f in p.full if f[0] in shims.values()], p.full

    fast, full = same_findings()
    assert not [r for r in fast["stuck_execs"] + full["stuck_execs"] if r["container_id"] in cids.values()]
    print("healthy node: scan_method %s (%s), %d vs %d processes read" % (
        fast["scan_method"], fast["scan_fallback_reason"], fast["scanned_processes"], full["scanned_processes"]))
    # what else could keep the node from being proven clean is another
    # harness's shim on this machine, never one of ours
    if fast["scan_method"] == "full":
        p = _shim_scan.check(Proc("/proc"))
        assert p.full or p.unknown, fast["scan_fallback_reason"]
        assert not [f for f in p.full if f[0] in shims.values()] and not ours & set(p.unknown), p.as_dict()
    else:
        assert fast["scan_fallback_reason"] is None
        # the shim pass reads per container (a shim, its init, a v2 shim's
        # parent link), never the whole table: bounded by the shims, however
        # many processes the node runs (on a node of one-process containers
        # the two counts are close, so they are not compared)
        after = _shim_scan.check(Proc("/proc"))
        bundles = max(len(p.shims) + len(p.refused), len(after.shims) + len(after.refused))
        assert 0 < fast["scanned_processes"] <= 3 * bundles, (fast, p.as_dict())


@pytest.mark.parametrize("layout", ["v2", "v1"])
def test_a_full_shim_pipe_runs_the_full_diagnosis(harness, release, layout):
    cid = harness.run_container("shimscan-hang-%s" % layout, layout)
    proc, pid = harness.hang(cid)
    assert pid is not None and proc.poll() is None, "no deadlock"
    shim = hdharness.proc_ppid(hdharness.proc_ppid(pid))
    ev = hdharness.evidence(pid)
    assert ev["queued"] == ev["capacity"] > 0

    p = _shim_scan.check(Proc("/proc"))
    assert not p.clean and shim in p.shims, p.as_dict()
    fast, full = same_findings()
    why = fast["scan_fallback_reason"]
    assert fast["scan_method"] == "full" and ("full pipe" in why or "do not move" in why), why
    mine = [r for r in fast["stuck_execs"] if r["container_id"] == cid]
    assert [(r["writer"]["pid"], r["shim"]["pid"], r["shim"]["version"]) for r in mine] == [(pid, shim, layout)]

    result, dummy = run_module("runc_exec_info", {"container_ids": [cid], "confirm_interval": 0.3})
    assert result["_status"] == "SUCCESS", result
    assert result["scan_method"] == "full" and [r["writer"]["pid"] for r in result["stuck_execs"]] == [pid]


def test_a_shim_whose_state_folder_is_unknown_falls_back_to_the_full_scan(harness, release):
    """containerd's socket moved away: the fast path cannot ask it for its
    state folder, so its shims' sockets are live and unaccounted."""
    cid = harness.run_container("shimscan-unknown", "v2")
    proc, pid = harness.hang(cid)
    assert pid is not None and proc.poll() is None, "no deadlock"
    sock = harness.containerd_sock
    hidden = sock.with_name(sock.name + ".hidden")
    os.rename(sock, hidden)
    try:
        p = _shim_scan.check(Proc("/proc"))
        assert not p.clean
        assert address(harness, cid, "v2") in p.unknown, p.as_dict()
        assert str(harness.ctd / "state") not in p.state_dirs
        fast, full = same_findings()
        # with other containerds on the machine its shim's socket is the unknown one; alone, no state is known
        why = fast["scan_fallback_reason"]
        assert fast["scan_method"] == "full" and ("socket" in why or "no containerd state folder known" in why), why
        assert [r["writer"]["pid"] for r in fast["stuck_execs"] if r["container_id"] == cid] == [pid]
    finally:
        os.rename(hidden, sock)


def test_module_reports_the_method_and_can_force_the_full_scan(harness, release):
    harness.run_container("shimscan-module", "v2")
    result, dummy = run_module("runc_exec_info", {"scan_method": "full", "confirm_interval": 0})
    assert result["_status"] == "SUCCESS", result
    assert result["scan_method"] == "full" and result["scan_fallback_reason"] == "scan_method full"
    result, dummy = run_module("runc_exec_info", {"scan_method": "auto", "confirm_interval": 0})
    assert result["_status"] == "SUCCESS", result
    assert result["scan_method"] in ("shims", "full")
    if result["scan_method"] == "shims":
        assert "no containerd shim holds a full pipe" in result["msg"]
    result, dummy = run_module("runc_exec_info", {"scan_method": "fast"})
    assert result["_status"].startswith("FAILED") and "scan_method" in result["msg"], result


# ---- CRI: one v2 shim per pod, bundles in the k8s.io namespace ---------------

def test_cri_pod_shims_are_proven_and_a_stuck_pod_exec_falls_back(cri):
    try:
        sick = cri.run_pod("shimscan-sick", namespace="shop")
        healthy = cri.run_pod("shimscan-ok", namespace="shop")
        shims = {name: cri.shim_of(pod["id"]) for name, pod in (("sick", sick), ("ok", healthy))}
        p = _shim_scan.check(Proc("/proc"))
        for name, pid in shims.items():
            assert pid in p.shims, (name, p.as_dict(), p.refused)
            assert p.shims[pid]["version"] == "v2" and p.shims[pid]["namespace"] == "k8s.io"
        assert not [f for f in p.full if f[0] in shims.values()], p.full
        same_findings()

        app = sick["containers"]["app"]
        fut, pid = cri.hang_execsync(app, request_timeout=60.0)
        assert pid is not None and not fut.done(), "no deadlock"
        p = _shim_scan.check(Proc("/proc"))
        assert [f for f in p.full if f[0] == shims["sick"]], p.as_dict()
        assert not [f for f in p.full if f[0] == shims["ok"]], p.as_dict()
        fast, full = same_findings()
        assert fast["scan_method"] == "full"
        mine = [r for r in fast["stuck_execs"] if r["container_id"] == app]
        assert [(r["writer"]["pid"], r["shim"]["pid"]) for r in mine] == [(pid, shims["sick"])], fast
    finally:
        cri.release_all()
