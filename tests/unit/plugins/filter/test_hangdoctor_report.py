"""The controller-side filters of the detect and remediate roles."""
import json

from ansible_collections.hangdoctor.runtime.plugins.filter import hangdoctor_report as hr

CID = "4f2a9c1d7e3b" + "0" * 52
OTHER = "9b8c7d6e5f4a" + "1" * 52
DUMP = "runtime/cgo: pthread_create failed: Resource temporarily unavailable\nSIGABRT: abort\nPC=0x4 m=0\n" + "goroutine 1\n" * 40


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


def test_host_summary_correlates_engine_and_proc_by_container_id():
    s = hr.host_summary({"stuck_execs": [stuck(cid=CID[:12])], "scan_seconds": 1.2}, hung_info(CID), host="n1", now=10)
    assert s["host"] == "n1" and s["hung"] == [CID]
    assert len(s["containers"]) == 1
    row = s["containers"][0]
    assert row["container_id"] == CID and row["name"] == "web" and row["pod"] == "shop/web-0"
    assert row["hung"] is True and row["stuck_execs"] == 1 and row["cause"] == "pthread_create_eagain"
    x = s["stuck_execs"][0]
    assert x["container_name"] == "web"
    assert x["dump_head"][0].startswith("runtime/cgo: pthread_create failed")
    assert len(x["dump_head"]) == hr.PEEK_LINES
    assert x["pipe_queued"] == x["pipe_capacity"] == 65536


def test_host_summary_without_engine_says_not_checked():
    s = hr.host_summary({"stuck_execs": [stuck()]}, {"skipped": True}, host="n1", engine_skipped="no Docker socket at /x")
    assert s["engine"] == {"reachable": None, "skipped": "no Docker socket at /x"}
    assert s["containers"][0]["hung"] is None
    assert "not checked" in hr.report_markdown(hr.fleet_report([s]))


def test_host_summary_hung_without_stuck_exec_and_suspects():
    info = {"stuck_execs": [], "suspects": [dict(stuck(OTHER), reason="pipe not full")]}
    s = hr.host_summary(info, hung_info(CID), host="n1")
    assert [c["container_id"] for c in s["containers"]] == [CID]
    assert s["containers"][0]["stuck_execs"] == 0
    assert s["suspects"][0]["reason"] == "pipe not full"


def test_drain_plan_age_cap_and_order():
    execs = {"stuck_execs": [stuck(age=100, pid=1), stuck(cid=OTHER, age=900, pid=2), stuck(age=10, pid=3)]}
    plan = hr.drain_plan(execs, min_age_seconds=60, max_drains=1)
    assert [t["writer"]["pid"] for t in plan["targets"]] == [2]
    reasons = sorted(k["reason"].split(" (")[0] for k in plan["skipped"])
    assert reasons == ["over the per-host drain limit", "younger than min_age_seconds"]


def test_drain_plan_blocked_by_guard_skips_everything_with_its_reason():
    guard = {"enabled": True, "blocked": True, "reason": "3 pod(s) ... drain skipped"}
    plan = hr.drain_plan({"stuck_execs": [stuck(), stuck(OTHER)]}, 0, 10, guard)
    assert plan["targets"] == []
    assert [k["reason"] for k in plan["skipped"]] == [guard["reason"]] * 2


def node(ready, since="2024-01-01T00:00:00Z"):
    return {"resources": [{"metadata": {"name": "n1"}, "status": {"conditions": [
        {"type": "MemoryPressure", "status": "False"},
        {"type": "Ready", "status": "True" if ready else "Unknown", "lastTransitionTime": since}]}}]}


def pods(*deleting):
    out = [{"metadata": {"namespace": "shop", "name": "ok-0"}}]
    out += [{"metadata": {"namespace": "shop", "name": n, "deletionTimestamp": "2024-01-01T00:01:00Z"}} for n in deleting]
    return {"resources": out}


NOW = 1704067200 + 600  # 2024-01-01T00:10:00Z


def test_kube_guard_blocks_on_pending_deletions_and_says_why():
    g = hr.kube_guard(node(False), pods("web-0", "web-1"), "n1", now=NOW)
    assert g["ran"] and g["blocked"] and g["ready"] is False
    assert g["not_ready_seconds"] == 600
    assert g["pending_deletions"] == ["shop/web-0", "shop/web-1"]
    assert "2 pod(s)" in g["reason"] and "NotReady for 600s" in g["reason"]


def test_kube_guard_allows_when_asked_or_nothing_pending():
    assert not hr.kube_guard(node(False), pods("web-0"), "n1", allow_pending_deletions=True, now=NOW)["blocked"]
    g = hr.kube_guard(node(True), pods(), "n1", now=NOW)
    assert not g["blocked"] and g["ready"] is True and g["not_ready_seconds"] is None


def test_kube_guard_without_api_says_it_could_not_run():
    g = hr.kube_guard({}, {}, "n1", error="couldn't resolve module/action 'kubernetes.core.k8s_info'")
    assert not g["ran"] and g["blocked"]
    assert g["reason"].startswith("eviction guard could not run")
    g = hr.kube_guard({"failed": True, "msg": "Connection refused"}, {}, "n1", fail_closed=False)
    assert not g["blocked"] and "Connection refused" in g["reason"] and "drained anyway" in g["reason"]


def drain_result(recurring=False):
    d = {"container_id": CID, "pid": 4821, "bytes": 262144, "sha256": "ab" * 32, "evidence_path": "/var/log/hangdoctor/x.log",
         "unblocked": True, "verified": True, "seconds": 0.04, "round": 1, "recurring": recurring,
         "cause": {"kind": "pthread_create_eagain"}}
    return {"changed": True, "drained": [d], "would_drain": [], "rounds": 1,
            "skipped_execs": [{"container_id": OTHER, "pid": 7, "reason": "locked", "detail": "another drain holds the lock"}],
            "recurring": [{"container_id": CID, "rounds": 3, "hint": "raise the memory limit"}] if recurring else []}


def test_remediation_and_fleet_report_put_recurring_first():
    quiet = hr.host_summary({"stuck_execs": []}, hung_info(), host="a-quiet")
    busy = hr.host_summary({"stuck_execs": [stuck()]}, hung_info(CID), host="z-busy")
    busy = hr.remediation(busy, drain=drain_result(recurring=True), plan={"skipped": []},
                          verify_exec={"stuck_execs": [stuck(pid=5000)]}, verify_hung={"hung": []})
    assert busy["verify"] == {"still_stuck": [CID], "still_hung": [], "ok": False}
    assert busy["skipped"][0]["reason"] == "locked (another drain holds the lock)"
    rep = hr.fleet_report([quiet, busy, None], hosts=["a-quiet", "z-busy", "gone"], mode="remediate", now=NOW)
    assert rep["hosts"][0]["host"] == "z-busy"
    assert rep["missing_hosts"] == ["gone"]
    assert rep["totals"]["drained"] == 1 and rep["totals"]["drained_bytes"] == 262144
    assert rep["recurring"] == [{"host": "z-busy", "container_id": CID, "name": "web", "pod": "shop/web-0",
                                 "cause": "pthread_create_eagain", "rounds": 3, "advice": "raise the memory limit"}]
    md = hr.report_markdown(rep)
    assert md.index("Recurring deadlocks") < md.index("## z-busy") < md.index("Hosts without stuck execs")
    assert "runtime/cgo: pthread_create failed" in md and "/var/log/hangdoctor/x.log" in md
    assert "gone" in md and "a-quiet" in md
    json.dumps(rep)


def test_remediation_in_check_mode_reports_would_drain():
    s = hr.host_summary({"stuck_execs": [stuck()]}, None, host="n1")
    w = {"changed": True, "drained": [], "skipped_execs": [], "recurring": [],
         "would_drain": [dict(stuck(), queued=65536, pid=4821)]}
    s = hr.remediation(s, drain=w)
    assert s["drained"][0]["check_mode"] is True and s["drained"][0]["bytes"] == 65536
    rep = hr.fleet_report([s], check_mode=True)
    assert rep["totals"]["drained"] == 0 and rep["totals"]["would_drain"] == 1
    assert "would drain" in hr.host_line(s)


def test_advice_from_hint_or_kind():
    assert hr.advice_for({"kind": "x", "hint": "do this"}) == "do this"
    assert "pids" in hr.advice_for({"kind": "pids_limit"})
    assert hr.advice_for({"kind": "weird"}) == hr.DEFAULT_ADVICE


def test_stats_are_bounded():
    summaries = [hr.host_summary({"stuck_execs": [stuck()]}, None, host="node-%04d" % i) for i in range(3000)]
    rep = hr.fleet_report(summaries)
    st = hr.stats(rep, max_bytes=4096)
    assert len(json.dumps(st)) <= 4096 and st["truncated"]
    assert st["totals"]["stuck_execs"] == 3000


def test_prometheus_counters_continue_and_gauges_reset():
    s = hr.remediation(hr.host_summary({"stuck_execs": [stuck()]}, hung_info(CID), host="n1"), drain=drain_result())
    first = hr.prometheus_textfile(s, previous="", now=1000)
    assert "hangdoctor_drained_total 1\n" in first and "hangdoctor_stuck_execs 1\n" in first
    assert "hangdoctor_hung_containers 1\n" in first and "hangdoctor_engine_reachable 1\n" in first
    assert "hangdoctor_last_run_timestamp_seconds 1000\n" in first
    second = hr.prometheus_textfile(s, previous=first, now=2000)
    assert "hangdoctor_drained_total 2\n" in second and "hangdoctor_drained_bytes_total 524288\n" in second
    quiet = hr.prometheus_textfile(hr.host_summary({}, None, host="n1"), previous=second, now=3000)
    assert "hangdoctor_drained_total 2\n" in quiet and "hangdoctor_stuck_execs 0\n" in quiet
    assert "hangdoctor_engine_reachable" not in quiet
    for line in quiet.splitlines():
        assert line.startswith("# ") or len(line.split()) == 2


def test_filters_are_registered():
    names = hr.FilterModule().filters()
    for n in ("hangdoctor_host_summary", "hangdoctor_drain_plan", "hangdoctor_kube_guard", "hangdoctor_remediation",
              "hangdoctor_fleet_report", "hangdoctor_report_markdown", "hangdoctor_stats", "hangdoctor_prometheus"):
        assert callable(names[n])


class FakeHostvars(object):
    """hostvars as a filter sees it: hosts of later serial batches have no fact yet."""

    def __init__(self, facts):
        self.facts = facts

    def __getitem__(self, host):
        return self.facts[host]


def test_fleet_report_from_hostvars_with_later_batches_missing():
    s = hr.host_summary({"stuck_execs": [stuck()]}, None, host="n1")
    rep = hr.fleet_report(FakeHostvars({"n1": {"hangdoctor": s}, "n2": {}}), hosts=["n1", "n2", "n3"])
    assert rep["totals"]["hosts_reported"] == 1 and rep["totals"]["stuck_execs"] == 1
    assert rep["missing_hosts"] == ["n2", "n3"]
