"""The fleet grouped by cause and by goroutine-stack fingerprint (module_utils/_summary.fleet_groups)."""
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _summary as sm

LOCK = "dockerd: ContainerInspect waits for the container lock held by ContainerExecStart -> containerd Exec"
STATS = "dockerd: ContainerStats waits for the container lock held by ContainerExecStart -> containerd Exec"
SHIM = "shim: Start -> runc exec"


def host(name, *rows, **extra):
    s = {"host": name, "containers": list(rows)}
    s.update(extra)
    return s


def row(cid, causes=None, fps=None):
    r = {"container_id": cid, "name": cid}
    diag = {}
    if causes is not None:
        diag["causes"] = causes
    if fps is not None:
        diag["evidence"] = {"stacks": {"fingerprints": fps}}
    if diag:
        r["diagnosis"] = diag
    return r


def test_phrases():
    assert sm.fingerprint_phrase(LOCK) == "ContainerInspect behind ContainerExecStart"
    assert sm.fingerprint_phrase(SHIM) == "Start waiting on runc exec"
    assert sm.fingerprint_phrase("dockerd: X waits for a lock") == "X waiting for a lock"
    assert sm.fingerprint_phrase("something else") == "something else"


def test_hosts_group_by_cause_and_by_fingerprint_largest_first():
    fleet = [host("n%02d" % i, row("a%d" % i, ["pipe_full_init", "engine_lock"], [LOCK, STATS, SHIM])) for i in range(37)]
    fleet += [host("f1", row("b1", ["frozen_cgroup"])), host("f2", row("b2", ["frozen_cgroup"]), row("b3", ["frozen_cgroup"]))]
    fleet.append(host("quiet"))
    g = sm.fleet_groups(fleet)
    assert [(c["cause"], len(c["hosts"]), c["containers"]) for c in g["by_cause"]] == [
        ("engine_lock", 37, 37), ("pipe_full_init", 37, 37), ("frozen_cgroup", 2, 3)]
    texts = [x["text"] for x in g["by_fingerprint"]]
    assert texts == [
        "37 nodes: engine_lock in ContainerInspect behind ContainerExecStart",
        "37 nodes: engine_lock in ContainerStats behind ContainerExecStart",
        "37 nodes: pipe_full_init in Start waiting on runc exec",
    ]
    assert g["by_fingerprint"][0]["hosts"] == sorted("n%02d" % i for i in range(37))
    assert g["by_fingerprint"][0]["fingerprint"] == LOCK


def test_a_host_counts_once_per_group_and_the_node_level_capture_stands_in():
    stacks = {"fingerprints": [LOCK]}
    fleet = [host("a", row("c1", ["engine_lock"]), row("c2", ["engine_lock"]), stacks=stacks),
             host("b", row("c3", ["engine_lock"], [LOCK]))]
    g = sm.fleet_groups(fleet)
    assert g["by_cause"] == [{"cause": "engine_lock", "hosts": ["a", "b"], "containers": 3}]
    assert [(x["text"], x["hosts"]) for x in g["by_fingerprint"]] == [
        ("2 nodes: engine_lock in ContainerInspect behind ContainerExecStart", ["a", "b"])]


def test_without_a_named_cause_the_fingerprint_stands_alone_and_bad_input_is_ignored():
    fleet = [host("a", row("c1", fps=[{"fingerprint": LOCK}])), "junk", {"containers": [row("x", ["unknown"])]},
             host("b", "not a row", row("c2", ["unknown", 5, None]))]
    g = sm.fleet_groups(fleet)
    assert g["by_cause"] == [{"cause": "unknown", "hosts": ["b"], "containers": 1}]
    assert [x["text"] for x in g["by_fingerprint"]] == ["1 node: ContainerInspect behind ContainerExecStart"]
    assert sm.fleet_groups([]) == {"by_cause": [], "by_fingerprint": []}
