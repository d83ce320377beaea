"""Stuck-exec records, engine reports and drain results as the modules return
them, shared by the summary, policy, metrics and report tests."""

CID = "4f2a9c1d7e3b" + "0" * 52
OTHER = "9b8c7d6e5f4a" + "1" * 52
DUMP = "runtime/cgo: pthread_create failed: Resource temporarily unavailable\nSIGABRT: abort\nPC=0x4 m=0\n" + "goroutine 1\n" * 40
NOW = 1704067200 + 600  # 2024-01-01T00:10:00Z


def stuck(cid=CID, age=300.0, pid=4821, pod=None):
    return {
        "container_id": cid,
        "writer": {"role": "runc_init", "pid": pid, "start_time": 99},
        "runc_init": {"pid": pid, "start_time": 99, "age_seconds": age, "wchan": "anon_pipe_write"},
        "runc_exec": {"pid": pid - 1},
        "shim": {"pid": 100, "version": "v2"},
        "pipe": {"inode": 555, "capacity": 65536, "queued": 65536},
        "peek": DUMP,
        "cause": {"kind": "pthread_create_eagain", "summary": "runtime/cgo: pthread_create failed", "hint": "", "oom_kills": 0},
        "pod": pod or {},
        "age_seconds": age,
    }


def hung_info(*ids):
    return {
        "containers": [
            {"id": CID, "name": "web", "pod_namespace": "shop", "pod_name": "web-0", "responsive": CID not in ids, "latency_ms": 5000},
            {"id": OTHER, "name": "db", "pod_namespace": None, "pod_name": None, "responsive": OTHER not in ids, "latency_ms": 3},
        ],
        "hung": list(ids),
        "engine": {"reachable": True, "version": "20.10.24"},
    }


def drain_result(recurring=False, verified=True):
    d = {"container_id": CID, "pid": 4821, "bytes": 262144, "sha256": "ab" * 32, "evidence_path": "/var/log/hangdoctor/x.log",
         "unblocked": True, "verified": verified, "seconds": 0.04, "round": 1, "recurring": recurring,
         "cause": {"kind": "pthread_create_eagain"}}
    return {"changed": True, "drained": [d], "would_drain": [], "rounds": 1,
            "skipped_execs": [{"container_id": OTHER, "pid": 7, "reason": "locked", "detail": "another drain holds the lock"}],
            "recurring": [{"container_id": CID, "rounds": 3, "hint": "raise the memory limit"}] if recurring else []}


def node(ready, since="2024-01-01T00:00:00Z"):
    return {"resources": [{"metadata": {"name": "n1"}, "status": {"conditions": [
        {"type": "MemoryPressure", "status": "False"},
        {"type": "Ready", "status": "True" if ready else "Unknown", "lastTransitionTime": since}]}}]}


def pods(*deleting):
    out = [{"metadata": {"namespace": "shop", "name": "ok-0"}}]
    out += [{"metadata": {"namespace": "shop", "name": n, "deletionTimestamp": "2024-01-01T00:01:00Z"}} for n in deleting]
    return {"resources": out}
