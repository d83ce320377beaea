"""The eviction guard's controller-side filters (plugins/filter/guard.py)."""
from ansible_collections.hangdoctor.runtime.plugins.filter import guard as gd
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils.summary_fixtures import NOW, node, pods


def test_guard_targets_only_hosts_that_wait_or_were_not_checked():
    hv = {
        "a": {"hangdoctor": {"guard_needed": True, "kubernetes": {"node_name": "node-a.k8s"}}},
        "b": {"hangdoctor": {"guard_needed": False}},
        "c": {"hangdoctor": {"guard_needed": True}, "hangdoctor_kube_node_name": "override-c"},
        "d": {},
    }
    assert gd.guard_targets(hv, ["a", "b", "c", "d", "missing"]) == [
        {"host": "a", "node": "node-a.k8s"}, {"host": "c", "node": "override-c"}, {"host": "d", "node": "d"}]


def test_drain_targets_only_hosts_with_stuck_execs_or_without_a_check():
    hv = {
        "healthy": {"hangdoctor": {"stuck_execs": [], "hung": ["c1"], "suspects": [{"pid": 1}]}},
        "stuck": {"hangdoctor": {"stuck_execs": [{"container_id": "ab" * 32}]}},
        "unchecked": {},
        "odd": {"hangdoctor": "not a dict"},
    }
    assert gd.drain_targets(hv, ["healthy", "stuck", "unchecked", "odd", "missing"]) == ["stuck", "unchecked", "odd"]
    assert gd.drain_targets(hv, []) == [] and gd.drain_targets(hv, None) == []


def test_host_facts_walks_the_readable_hosts_with_their_fact():
    """One walk serves guard_targets and drain_targets: a host whose hostvars
    raise (a later serial batch) or are missing is left out, hostvars that
    are not a mapping give no fact, and the order of HOSTS is kept."""
    class LaterBatch(dict):
        def __getitem__(self, host):
            if host == "later":
                raise KeyError(host)
            return dict.__getitem__(self, host)

    fact = {"stuck_execs": [{"container_id": "ab" * 32}]}
    hv = LaterBatch({"b": {"hangdoctor": fact, "x": 1}, "a": {}, "odd": "not a mapping", "later": {"hangdoctor": {}}})
    assert list(gd._host_facts(hv, ["b", "later", "a", "missing", "odd"])) == [
        ("b", {"hangdoctor": fact, "x": 1}, fact), ("a", {}, None), ("odd", "not a mapping", None)]
    assert list(gd._host_facts(hv, None)) == []
    assert gd.drain_targets(hv, ["b", "later", "a"]) == ["b", "a"]
    assert gd.guard_targets(hv, ["later", "a"]) == [{"host": "a", "node": "a"}]


def test_kube_guard_verdicts_per_host_from_looped_results():
    targets = [{"host": "a", "node": "na"}, {"host": "b", "node": "nb"}, {"host": "c", "node": "nc"}]
    nodes = [dict(node(False), item=targets[0]), dict(node(True), item=targets[1]),
             {"failed": True, "msg": "Unauthorized", "item": targets[2]}]
    pod_results = [dict(pods("web-0"), item=targets[0]), dict(pods(), item=targets[1]), dict(pods(), item=targets[2])]
    v = gd.kube_guard_verdicts(targets, nodes, pod_results, now=NOW)
    assert v["a"]["blocked"] and "1 pod(s) bound to na" in v["a"]["reason"]
    assert not v["b"]["blocked"] and v["b"]["reason"] == "no pending pod deletions on nb"
    assert v["c"]["blocked"] and "Unauthorized" in v["c"]["reason"]


def test_kube_guard_verdicts_with_one_error_for_all():
    v = gd.kube_guard_verdicts([{"host": "a", "node": "na"}], error="kubernetes.core is not installed", fail_closed=True)
    assert v["a"]["blocked"] and "kubernetes.core is not installed" in v["a"]["reason"]
    v = gd.kube_guard_verdicts([{"host": "a", "node": "na"}], error="x", fail_closed=False)
    assert not v["a"]["blocked"]


def test_kube_guard_verdicts_missing_answer_is_an_error():
    v = gd.kube_guard_verdicts([{"host": "a", "node": "na"}], nodes=[], pods=[])
    assert v["a"]["blocked"] and "no Kubernetes API answer for node na" in v["a"]["reason"]


def test_cordon_only_schedulable_nodes_the_guard_lets_drain_and_uncordon_only_verified_ones():
    targets = [{"host": "a", "node": "na"}, {"host": "b", "node": "nb"}, {"host": "c", "node": "nc"},
               {"host": "d", "node": "nd"}]
    verdicts = {"a": {"ran": True, "blocked": False, "unschedulable": False, "node": "na"},
                "b": {"ran": True, "blocked": True, "unschedulable": False, "node": "nb"},
                "c": {"ran": True, "blocked": False, "unschedulable": True, "node": "nc"},  # cordoned by someone else
                "d": {"ran": False, "blocked": False, "unschedulable": None, "node": "nd"}}  # guard could not run
    assert gd.cordon_targets(verdicts, targets) == [{"host": "a", "node": "na"}]
    marked = gd.mark_cordoned(verdicts, [{"item": {"host": "a", "node": "na"}, "changed": True}])
    assert [h for h, v in sorted(marked.items()) if v["cordoned"]] == ["a"]
    assert gd.mark_cordoned(verdicts, [{"item": {"host": "a"}, "failed": True}])["a"]["cordoned"] is False
    hv = {"a": {"hangdoctor": {"verify": {"ok": True}}}}
    assert gd.uncordon_targets(hv, marked) == [{"host": "a", "node": "na"}]
    hv = {"a": {"hangdoctor": {"verify": {"ok": False}}}}
    assert gd.uncordon_targets(hv, marked) == []  # stays cordoned: the drain did not repair it


def test_verdict_records_whether_the_node_was_schedulable():
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _policy
    n = node(True)
    assert _policy.kube_guard(n, pods(), "n1", now=NOW)["unschedulable"] is False
    n["resources"][0]["spec"] = {"unschedulable": True}
    assert _policy.kube_guard(n, pods(), "n1", now=NOW)["unschedulable"] is True
