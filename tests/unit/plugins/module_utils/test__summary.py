"""The host summary node_doctor builds on the node (module_utils/_summary.py)."""
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _crash_dump
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _summary as sm
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils.summary_fixtures import (
    CID, OTHER, drain_result, hung_info, stuck)


def test_host_summary_correlates_engine_and_proc_by_container_id():
    s = sm.host_summary({"stuck_execs": [stuck(cid=CID[:12])], "scan_seconds": 1.2}, hung_info(CID), host="n1", now=10)
    assert s["host"] == "n1" and s["hung"] == [CID]
    assert len(s["containers"]) == 1
    row = s["containers"][0]
    assert row["container_id"] == CID and row["name"] == "web" and row["pod"] == "shop/web-0"
    assert row["hung"] is True and row["stuck_execs"] == 1 and row["cause"] == "pthread_create_eagain"
    x = s["stuck_execs"][0]
    assert x["container_name"] == "web"
    assert x["dump_head"][0].startswith("runtime/cgo: pthread_create failed")
    assert len(x["dump_head"]) == sm.PEEK_LINES
    assert x["pipe_queued"] == x["pipe_capacity"] == 65536
    assert s["engines"] == [{"reachable": True, "version": "20.10.24", "name": "docker", "checked": True}]


def test_host_summary_without_engine_says_not_checked():
    s = sm.host_summary({"stuck_execs": [stuck()]}, {"skipped": True}, host="n1", engine_skipped="no Docker socket at /x")
    assert s["engine"] == {"reachable": None, "skipped": "no Docker socket at /x"}
    assert s["engines"][0]["checked"] is False
    assert s["containers"][0]["hung"] is None


def test_host_summary_takes_an_engines_list():
    report = dict(hung_info(CID), engines=[
        {"name": "docker", "present": False, "checked": False, "reachable": None},
        {"name": "containerd", "present": True, "checked": True, "reachable": True, "version": "1.6.20"}])
    del report["engine"]
    s = sm.host_summary({"stuck_execs": []}, report, host="n1")
    assert [e["name"] for e in s["engines"]] == ["docker", "containerd"]
    assert s["engine"]["name"] == "containerd"


def test_host_summary_hung_without_stuck_exec_and_suspects():
    info = {"stuck_execs": [], "suspects": [dict(stuck(OTHER), reason="pipe not full")]}
    s = sm.host_summary(info, hung_info(CID), host="n1")
    assert [c["container_id"] for c in s["containers"]] == [CID]
    assert s["containers"][0]["stuck_execs"] == 0
    assert s["suspects"][0]["reason"] == "pipe not full"


def test_remediation_with_explicit_verification():
    busy = sm.host_summary({"stuck_execs": [stuck()]}, hung_info(CID), host="z-busy")
    busy = sm.remediation(busy, drain=drain_result(recurring=True), plan={"skipped": []},
                          verify_exec={"stuck_execs": [stuck(pid=5000)]}, verify_hung={"hung": []})
    assert busy["verify"] == {"still_stuck": [CID], "still_hung": [], "ok": False}
    assert busy["skipped"][0]["reason"] == "locked (another drain holds the lock)"
    assert busy["drained"][0]["rounds"] == 3 and busy["drained"][0]["hint"] == "raise the memory limit"


def test_remediation_verification_comes_from_the_drain_itself():
    base = sm.host_summary({"stuck_execs": [stuck()]}, hung_info(CID), host="n1")
    ok = sm.remediation(base, drain=drain_result())
    assert ok["verify"] == {"still_stuck": [], "still_hung": [], "ok": True}
    again = sm.remediation(base, drain=drain_result(recurring=True))
    assert again["verify"]["still_stuck"] == [CID] and not again["verify"]["ok"]
    hung = sm.remediation(base, drain=drain_result(verified=False))
    assert hung["verify"] == {"still_stuck": [], "still_hung": [CID], "ok": False}
    assert sm.remediation(base)["verify"] is None
    assert ok["resolved"] == [CID] and ok["stuck_execs"][0]["resolved"] is True
    assert again["resolved"] == [] and hung["resolved"] == []


def test_remediation_in_check_mode_reports_would_drain():
    s = sm.host_summary({"stuck_execs": [stuck()]}, None, host="n1")
    w = {"changed": True, "drained": [], "skipped_execs": [], "recurring": [],
         "would_drain": [dict(stuck(), queued=65536, pid=4821)]}
    s = sm.remediation(s, drain=w)
    assert s["drained"][0]["check_mode"] is True and s["drained"][0]["bytes"] == 65536
    assert s["verify"] is None
    assert "would drain" in sm.host_line(s)


def test_advice_from_hint_or_kind():
    assert sm.advice_for({"kind": "x", "hint": "do this"}) == "do this"
    assert sm.advice_for({"kind": "out_of_memory"}) == _crash_dump.HINTS["out_of_memory"]
    assert sm.advice_for("pthread_create_eagain") == _crash_dump.HINTS["pthread_create_eagain"]
    assert sm.advice_for({"kind": "weird"}) == _crash_dump.HINTS["unknown"]
