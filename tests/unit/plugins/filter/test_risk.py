"""The fleet view of node_risk: N nodes at risk by reason, in the risk role's
summary and in the detect report."""
from ansible_collections.hangdoctor.runtime.plugins.filter import report as rp
from ansible_collections.hangdoctor.runtime.plugins.filter.risk import risk_lines, risk_report


def fact(*reasons):
    return {"at_risk": list(reasons), "reasons": dict((r, ["%s detail" % r]) for r in reasons),
            "pipe_capacity": {"docker": 65536}, "containers_at_risk": 0, "advisories": [], "checked_at": 1}


class HostVars(object):
    """What hostvars looks like to a filter: a mapping that raises for a host without vars yet."""

    def __init__(self, d):
        self.d = d

    def __getitem__(self, k):
        return self.d[k]

    def keys(self):
        return self.d.keys()


def test_nodes_at_risk_by_reason():
    hv = {"n1": {"hangdoctor_node_risk": fact("pipe_capacity", "container_headroom")},
          "n2": {"hangdoctor_node_risk": fact()}, "n3": {"hangdoctor_node_risk": fact("container_headroom")},
          "n4": {"other": 1}}
    r = risk_report(hv, ["n1", "n2", "n3", "n4", "n5"])
    assert r["hosts_checked"] == 3 and r["hosts_at_risk"] == 2
    assert r["by_reason"] == {"pipe_capacity": ["n1"], "container_headroom": ["n1", "n3"], "advisory": []}
    lines = risk_lines(r)
    assert lines[0] == "2 of 3 node(s) at risk of the pipe deadlock: pipe_capacity 1, container_headroom 2"
    assert lines[1] == "n1: pipe_capacity (pipe_capacity detail); container_headroom (container_headroom detail)"
    assert len(lines) == 3
    assert risk_lines(risk_report({"n2": {"hangdoctor_node_risk": fact()}}))[0] == \
        "0 of 1 node(s) at risk of the pipe deadlock"


def summary(host):
    return {"host": host, "stuck_execs": [], "hung": [], "containers": [], "engine": {}}


def test_the_detect_report_says_how_many_nodes_are_at_risk():
    hv = HostVars({"n1": {"hangdoctor": summary("n1"), "hangdoctor_node_risk": fact("pipe_capacity")},
                   "n2": {"hangdoctor": summary("n2"), "hangdoctor_node_risk": fact()}})
    report = rp.fleet_report(hv, hosts=["n1", "n2"], mode="detect")
    assert report["risk"]["hosts_at_risk"] == 1 and report["risk"]["by_reason"]["pipe_capacity"] == ["n1"]
    assert list(report["risk"]["hosts"]) == ["n1"]  # only the hosts at risk are carried
    lines = rp.report_lines(report)
    assert "1 of 2 node(s) at risk of the pipe deadlock: pipe_capacity 1" in lines
    md = rp.report_markdown(report)
    assert "## Node risk (before it hangs)" in md and "1 of 2 node(s) at risk" in md


def test_without_risk_facts_the_report_is_unchanged():
    hv = HostVars({"n1": {"hangdoctor": summary("n1")}})
    report = rp.fleet_report(hv, hosts=["n1"], mode="detect")
    assert report["risk"] is None
    assert not any("at risk" in line for line in rp.report_lines(report))
    assert "Node risk" not in rp.report_markdown(report)
