"""Goroutine dump parser and blocking-chain fingerprints (module_utils/_gostacks.py).

Fixtures are real dumps: the incident's pprof profiles (debug=1, dockerd 18.06
and its containerd), and full dumps that dockerd 20.10, containerd 1.6 and a
runc v2 shim wrote on SIGUSR1 in the harness while the pipe deadlock held a
container (docker inspect and docker stats of it pending)."""
import io
from pathlib import Path

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _gostacks as gs

FIX = Path(__file__).resolve().parents[3] / "unit" / "fixtures" / "gostacks"
ENGINE_LOCK = "dockerd: ContainerInspect waits for the container lock held by ContainerExecStart -> containerd Exec"
STATS_LOCK = "dockerd: ContainerStats waits for the container lock held by ContainerExecStart -> containerd Exec"


def parse(name, chunk=gs.CHUNK):
    with open(str(FIX / name), "rb") as f:
        return gs.parse_stream(f, chunk=chunk)


def texts(result):
    return [f["fingerprint"] for f in result["fingerprints"]]


def test_incident_dockerd_profile_names_inspect_behind_exec_start():
    r = parse("incident-dockerd-debug1.txt")
    assert r["format"] == "grouped" and r["header_total"] == 722373
    # the write-up kept four of the profile's stacks
    assert r["goroutines"] == 717594 + 4175 + 1 + 1 and r["distinct_stacks"] == 4
    assert texts(r) == [ENGINE_LOCK, STATS_LOCK]
    # the exec store's RLock waiter is counted under ContainerInspect too
    assert r["fingerprints"][0]["goroutines"] == 717595
    top = r["groups"][0]
    assert top["count"] == 717594 and top["wait"] == "lock" and top["handler"] == "ContainerInspect"
    assert top["top"][:2] == ["sync.runtime_SemacquireMutex", "sync.(*Mutex).Lock"]
    holder = [g for g in r["groups"] if g["handler"] == "ContainerExecStart"]
    assert holder and holder[0]["wait"] == "grpc call" and holder[0]["outbound"] == "containerd Exec"


def test_incident_containerd_profile_waits_on_the_shim():
    r = parse("incident-containerd-debug1.txt")
    assert r["header_total"] == 430 and r["goroutines"] == 1
    assert texts(r) == ["containerd: Start -> shim Start"]
    assert r["groups"][0]["wait"] == "ttrpc call"


def test_harness_dockerd_dump_during_the_pipe_deadlock_has_the_incident_fingerprint():
    r = parse("dockerd-20.10-pipe-deadlock-full.log")
    assert r["format"] == "full" and r["goroutines"] == 56
    assert texts(r) == [ENGINE_LOCK, STATS_LOCK]
    waiters = [g for g in r["groups"] if g["wait"] == "lock"]
    assert sorted(g["state"] for g in waiters) == ["semacquire", "semacquire"]
    assert sorted(g["lock"] for g in waiters) == ["the container lock", "the exec store lock"]
    # the stream copy waits in semacquire on a WaitGroup: no lock
    assert [g["wait"] for g in r["groups"] if "sync.(*WaitGroup).Wait" in g["top"]] == ["waitgroup"]


def test_harness_containerd_and_shim_dumps_show_the_rest_of_the_chain():
    assert texts(parse("containerd-1.6-pipe-deadlock-full.log")) == ["containerd: Start -> shim Start"]
    shim = parse("shim-runc-v2-1.6-pipe-deadlock-full.log")
    assert texts(shim) == ["shim: Start -> runc exec"]
    (start,) = [g for g in shim["groups"] if g["handler"] == "Start"]
    assert start["wait"] == "child process" and start["state"] == "chan receive"


def test_an_idle_dockerd_has_no_fingerprint():
    r = parse("dockerd-20.10-idle-full.log")
    assert r["goroutines"] == 32 and r["fingerprints"] == []


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_any_chunking_gives_the_same_result(chunk):
    whole = parse("dockerd-20.10-pipe-deadlock-full.log")
    assert parse("dockerd-20.10-pipe-deadlock-full.log", chunk=chunk) == whole


def test_fingerprints_are_stable_across_goroutine_ids_addresses_and_order():
    """The same blocking chain seen twice (other goroutine ids, arguments,
    minutes, and stacks in another order) gives the same strings."""
    data = (FIX / "dockerd-20.10-pipe-deadlock-full.log").read_bytes()
    blocks = data.split(b"\n\n")
    changed = b"\n\n".join(reversed(blocks)).replace(b"goroutine 1", b"goroutine 9").replace(b"0xc0", b"0xd1")
    assert texts(gs.parse_bytes(changed)) == texts(gs.parse_bytes(data))


def test_minutes_and_created_by_are_read():
    dump = (b"goroutine 7 [semacquire, 12 minutes]:\n"
            b"sync.runtime_SemacquireMutex(0xc000, 0x0, 0x1)\n\t/go/sema.go:71 +0x47\n"
            b"sync.(*Mutex).Lock(...)\n\t/go/mutex.go:81\n"
            b"github.com/docker/docker/daemon.(*Daemon).ContainerInspectCurrent(0xc0, {0x1, 0x2})\n\t/x.go:1 +0x1\n"
            b"created by net/http.(*Server).Serve in goroutine 1\n\t/y.go:2 +0x2\n\n"
            b"goroutine 8 [semacquire, 3 minutes]:\n"
            b"sync.runtime_SemacquireMutex(0xc000, 0x0, 0x1)\n\t/go/sema.go:71 +0x47\n"
            b"sync.(*Mutex).Lock(...)\n\t/go/mutex.go:81\n"
            b"github.com/docker/docker/daemon.(*Daemon).ContainerInspectCurrent(0xc1, {0x3, 0x4})\n\t/x.go:1 +0x1\n"
            b"created by net/http.(*Server).Serve in goroutine 1\n\t/y.go:2 +0x2\n")
    r = gs.parse_bytes(dump)
    (g,) = r["groups"]
    assert g["count"] == 2 and g["max_minutes"] == 12 and g["created_by"] == "net/http.(*Server).Serve"
    assert texts(r) == ["dockerd: ContainerInspectCurrent waits for the container lock"]


def test_hostile_input_is_bounded():
    """A line of megabytes is cut, frames past MAX_FRAMES are dropped, distinct
    stacks past max_groups are counted but not kept, and garbage is no dump."""
    p = gs.DumpParser(max_groups=3)
    long_line = b"goroutine 1 [select]:\n" + b"x" * (3 * gs.MAX_BLOCK) + b"(0x1)\n\t/f.go:1\n"
    for i in range(0, len(long_line), 65536):
        p.feed(long_line[i:i + 65536])
        assert len(p._rest) <= gs.MAX_BLOCK + 65536
    for i in range(10):
        p.feed(b"\ngoroutine %d [select]:\n" % (i + 2))
        p.feed(b"".join(b"pkg.f%d_%d()\n\t/f%d.go:%d\n" % (i, j, i, j) for j in range(gs.MAX_FRAMES + 20)))
    r = p.result()
    assert r["long_lines"] == 1
    assert r["goroutines"] == 11 and r["distinct_stacks"] == 3 and r["ungrouped"] == 8
    assert all(len(g["top"]) <= 8 for g in r["groups"])
    assert max(len(g.frames()[0]) for g in p.groups.values()) == gs.MAX_FRAMES
    assert max(len(k[1]) for k in p.groups) <= gs.MAX_KEY
    assert max(len(f) for g in p.groups.values() for f in g.frames()[0]) <= gs.MAX_FUNC
    junk = gs.parse_stream(io.BytesIO(b"\x00\xff not a dump\n" * 1000))
    assert junk["format"] == "none" and junk["goroutines"] == 0 and junk["fingerprints"] == []


def test_limit_stops_reading():
    data = (FIX / "dockerd-20.10-pipe-deadlock-full.log").read_bytes()
    r = gs.parse_stream(io.BytesIO(data), limit=1000)
    assert r["bytes"] == 1000 and r["goroutines"] < 56
