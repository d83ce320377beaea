"""Drain plan, minimum age and eviction guard (module_utils/_policy.py)."""
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _policy as pol
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils.summary_fixtures import (
    NOW, OTHER, node, pods, stuck)


def test_drain_plan_age_cap_and_order():
    execs = [stuck(age=100, pid=1), stuck(cid=OTHER, age=900, pid=2), stuck(age=10, pid=3)]
    plan = pol.drain_plan(execs, min_age_seconds=60, max_drains=1)
    assert [t["writer"]["pid"] for t in plan["targets"]] == [2]
    reasons = sorted(k["reason"].split(" (")[0] for k in plan["skipped"])
    assert reasons == ["over the per-host drain limit", "younger than min_age_seconds"]


def test_drain_plan_blocked_by_guard_skips_everything_with_its_reason():
    guard = {"enabled": True, "blocked": True, "reason": "3 pod(s) ... drain skipped"}
    plan = pol.drain_plan([stuck(), stuck(OTHER)], 0, 10, guard)
    assert plan["targets"] == []
    assert [k["reason"] for k in plan["skipped"]] == [guard["reason"]] * 2
    off = pol.drain_plan([stuck()], 0, 10, None, allow=False)
    assert off["targets"] == [] and off["skipped"][0]["reason"] == "drain disabled"


def test_too_young_is_one_rule():
    assert pol.too_young(10.0, 60) == "younger than min_age_seconds (10.0s < 60s)"
    assert pol.too_young(60.0, 60) is None
    assert pol.too_young(None, 60) is None
    assert pol.too_young(1.0, 0) is None
    assert pol.record_age({"runc_init": {"age_seconds": "12.5"}}) == 12.5
    assert pol.record_age({"age_seconds": True}) is None


def test_kube_guard_blocks_on_pending_deletions_and_says_why():
    g = pol.kube_guard(node(False), pods("web-0", "web-1"), "n1", now=NOW)
    assert g["ran"] and g["blocked"] and g["ready"] is False
    assert g["not_ready_seconds"] == 600
    assert g["pending_deletions"] == ["shop/web-0", "shop/web-1"]
    assert "2 pod(s)" in g["reason"] and "NotReady for 600s" in g["reason"]


def test_kube_guard_allows_when_asked_or_nothing_pending():
    assert not pol.kube_guard(node(False), pods("web-0"), "n1", allow_pending_deletions=True, now=NOW)["blocked"]
    g = pol.kube_guard(node(True), pods(), "n1", now=NOW)
    assert not g["blocked"] and g["ready"] is True and g["not_ready_seconds"] is None


def test_kube_guard_without_api_says_it_could_not_run():
    g = pol.kube_guard({}, {}, "n1", error="couldn't resolve module/action 'kubernetes.core.k8s_info'")
    assert not g["ran"] and g["blocked"]
    assert g["reason"].startswith("eviction guard could not run")
    g = pol.kube_guard({"failed": True, "msg": "Connection refused"}, {}, "n1", fail_closed=False)
    assert not g["blocked"] and "Connection refused" in g["reason"] and "drained anyway" in g["reason"]


def test_kube_guard_node_not_found_is_not_a_green_light():
    g = pol.kube_guard({"resources": []}, {"resources": []}, "n1", now=NOW)
    assert g["ran"] and g["blocked"] and "node n1 not found in the cluster" in g["reason"]
    assert not pol.kube_guard({"resources": []}, {"resources": []}, "n1", fail_closed=False, now=NOW)["blocked"]
