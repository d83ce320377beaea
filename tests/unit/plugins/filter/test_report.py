"""The controller-side report filters (plugins/filter/report.py)."""
import json

from ansible_collections.hangdoctor.runtime.plugins.filter import report as rp
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _summary as sm
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils.summary_fixtures import (
    CID, NOW, drain_result, hung_info, stuck)


def test_fleet_report_puts_recurring_first():
    quiet = sm.host_summary({"stuck_execs": []}, hung_info(), host="a-quiet")
    busy = sm.host_summary({"stuck_execs": [stuck()]}, hung_info(CID), host="z-busy")
    busy = sm.remediation(busy, drain=drain_result(recurring=True), plan={"skipped": []})
    rep = rp.fleet_report([quiet, busy, None], hosts=["a-quiet", "z-busy", "gone"], mode="remediate", now=NOW)
    assert rep["hosts"][0]["host"] == "z-busy"
    assert rep["missing_hosts"] == ["gone"]
    assert rep["totals"]["drained"] == 1 and rep["totals"]["drained_bytes"] == 262144
    assert rep["totals"]["verify_failed_hosts"] == 1
    assert rep["recurring"] == [{"host": "z-busy", "container_id": CID, "name": "web", "pod": "shop/web-0",
                                 "cause": "pthread_create_eagain", "rounds": 3, "advice": "raise the memory limit"}]
    md = rp.report_markdown(rep)
    assert md.index("Recurring deadlocks") < md.index("## z-busy") < md.index("Hosts without stuck execs")
    assert "runtime/cgo: pthread_create failed" in md and "/var/log/hangdoctor/x.log" in md
    assert "gone" in md and "a-quiet" in md
    json.dumps(rep)


def test_markdown_says_engine_not_checked():
    s = sm.host_summary({"stuck_execs": [stuck()]}, {"skipped": True}, host="n1", engine_skipped="no Docker socket at /x")
    assert "not checked" in rp.report_markdown(rp.fleet_report([s]))


def test_check_mode_totals():
    s = sm.host_summary({"stuck_execs": [stuck()]}, None, host="n1")
    s = sm.remediation(s, drain={"would_drain": [dict(stuck(), queued=65536)]})
    rep = rp.fleet_report([s], check_mode=True)
    assert rep["totals"]["drained"] == 0 and rep["totals"]["would_drain"] == 1


def test_stats_are_bounded():
    summaries = [sm.host_summary({"stuck_execs": [stuck()]}, None, host="node-%04d" % i) for i in range(3000)]
    rep = rp.fleet_report(summaries)
    st = rp.report_stats(rep, max_bytes=4096)
    assert len(json.dumps(st)) <= 4096 and st["truncated"]
    assert st["totals"]["stuck_execs"] == 3000


def test_report_lines_and_affected_hosts():
    busy = sm.host_summary({"stuck_execs": [stuck()]}, hung_info(CID), host="n2")
    quiet = sm.host_summary({"stuck_execs": []}, hung_info(), host="n1")
    rep = rp.fleet_report([quiet, busy], hosts=["n1", "n2", "n3"], mode="detect")
    assert rp.affected_hosts(rep) == ["n2"]
    lines = rp.report_lines(rep, report_dir="/r")
    assert lines[0].startswith("2/3 host(s): 1 hung container(s), 1 stuck exec(s)")
    assert lines[1].startswith("n2: 1 hung container(s), 1 stuck exec(s); web (pod shop/web-0)")
    assert lines[2] == "no result (unreachable or failed): n3"
    assert lines[3] == "Report: /r/hangdoctor-detect.md"
    assert not any(line.startswith("n1:") for line in lines)


def test_filters_are_registered():
    names = rp.FilterModule().filters()
    assert sorted(names) == ["affected_hosts", "fleet_report", "report_lines", "report_markdown", "report_stats"]


class FakeHostvars(object):
    """hostvars as a filter sees it: hosts of later serial batches have no fact yet."""

    def __init__(self, facts):
        self.facts = facts

    def __getitem__(self, host):
        return self.facts[host]


def test_fleet_report_from_hostvars_names_hosts_by_inventory_name():
    s = sm.host_summary({"stuck_execs": [stuck()]}, None, host="node-own-hostname")
    rep = rp.fleet_report(FakeHostvars({"n1": {"hangdoctor": s}, "n2": {}}), hosts=["n1", "n2", "n3"])
    assert rep["totals"]["hosts_reported"] == 1 and rep["totals"]["stuck_execs"] == 1
    assert rep["hosts"][0]["host"] == "n1"
    assert rep["missing_hosts"] == ["n2", "n3"]


def test_hosts_of_later_serial_batches_are_pending_not_missing():
    s = sm.host_summary({"stuck_execs": []}, None, host="n1")
    rep = rp.fleet_report(FakeHostvars({"n1": {"hangdoctor": s}, "n2": {}, "n3": {}, "n4": {}}),
                          hosts=["n1", "n2", "n3", "n4"], pending=["n3", "n4", "n1"])
    assert rep["missing_hosts"] == ["n2"]  # in this batch, no fact: failed or unreachable
    assert rep["pending_hosts"] == ["n3", "n4"]  # a reported host is never pending
    assert rep["totals"]["hosts_pending"] == 2 and rep["totals"]["hosts"] == 4
    lines = rp.report_lines(rep)
    assert "no result (unreachable or failed): n2" in lines
    assert "2 host(s) in later serial batches, not reached yet" in lines
    assert "Hosts of later serial batches, not reached yet: n3, n4" in rp.report_markdown(rep)
