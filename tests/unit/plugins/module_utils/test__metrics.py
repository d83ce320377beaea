"""Textfile metrics of a node: labelled series that name the pod and go away
with the problem, engines always present, counters that only grow, bounded
cardinality and escaped label values.  The summaries are built with the
detect/remediate filters from module-shaped results, as the roles build them."""
import os
import re

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _summary as sm
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _metrics as m
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils import summary_fixtures as fx

CID = "4f2a9c1d7e3b" + "0" * 52
OTHER = "9b8c7d6e5f4a" + "1" * 52
THIRD = "0123456789ab" + "2" * 52

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')


def parse(text):
    """{(name, frozenset(labels)): value} with the exposition format's escapes
    undone, plus the TYPE of each family; fails on a duplicate series."""
    series, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            dummy, dummy2, name, kind = line.split(" ", 3)
            assert name not in types, "family %s twice" % name
            types[name] = kind
            continue
        if line.startswith("#") or not line:
            continue
        mt = _SAMPLE.match(line)
        assert mt, "not a sample line: %r" % line
        labels = {}
        if mt.group(2):
            consumed = "".join(x.group(0) for x in _LABEL.finditer(mt.group(2)))
            assert consumed == mt.group(2), "bad label set: %r" % mt.group(2)
            for x in _LABEL.finditer(mt.group(2)):
                labels[x.group(1)] = x.group(2).replace('\\n', '\n').replace('\\"', '"').replace('\\\\', '\\')
        key = (mt.group(1), frozenset(labels.items()))
        assert key not in series, "duplicate series %r" % (key,)
        series[key] = float(mt.group(3))
    return series, types


def values(series, name):
    return dict((labels, v) for (n, labels), v in series.items() if n == name)


def one(series, name):
    found = values(series, name)
    assert list(found) == [frozenset()], found
    return found[frozenset()]


def stuck(cid=CID, age=300.0, pid=4821, pod=None, kind="pthread_create_eagain"):
    return {
        "container_id": cid,
        "writer": {"role": "runc_init", "pid": pid, "start_time": 99},
        "runc_init": {"pid": pid, "start_time": 99, "age_seconds": age, "wchan": "anon_pipe_write"},
        "runc_exec": {"pid": pid - 1},
        "shim": {"pid": 100, "version": "v2"},
        "pipe": {"inode": 555, "capacity": 65536, "queued": 65536},
        "peek": "runtime/cgo: pthread_create failed: Resource temporarily unavailable\n",
        "cause": {"kind": kind, "summary": "runtime/cgo: pthread_create failed", "hint": "", "oom_kills": 0},
        "pod": pod if pod is not None else {"namespace": "shop", "name": "web-0", "container": "web"},
        "age_seconds": age,
    }


def hung_info(*ids):
    return {
        "containers": [
            {"id": CID, "name": "k8s_web_web-0_shop_uid_0", "pod_namespace": "shop", "pod_name": "web-0",
             "responsive": CID not in ids, "latency_ms": 5000},
            {"id": OTHER, "name": "db", "pod_namespace": None, "pod_name": None, "responsive": OTHER not in ids,
             "latency_ms": 3},
        ],
        "hung": list(ids),
        "engine": {"reachable": True, "version": "20.10.24"},
    }


ENGINES = [
    {"name": "docker", "address": "unix:///var/run/docker.sock", "present": True, "checked": True, "reachable": True,
     "version": "20.10.24", "error": None},
    {"name": "containerd", "address": "/run/containerd/containerd.sock", "present": False, "checked": False,
     "reachable": None, "version": None, "error": None},
]


def summary(execs=(), hung=(), engines="default", **kw):
    s = sm.host_summary({"stuck_execs": list(execs), "scan_seconds": 0.42}, hung_info(*hung), host="n1", now=1000)
    if engines == "default":
        s["engines"] = [dict(e) for e in ENGINES]
    elif engines is not None:
        s["engines"] = engines
    s.update(kw)
    return s


def test_stuck_exec_series_names_namespace_pod_container_and_cause():
    series, types = parse(m.render(summary([stuck()], hung=[CID]), now=1000))
    labels = frozenset({"namespace": "shop", "pod": "web-0", "container": "web",
                        "container_id": CID[:12], "cause": "pthread_create_eagain"}.items())
    assert values(series, "hangdoctor_container_stuck_execs") == {labels: 1}
    assert values(series, "hangdoctor_stuck_exec_age_seconds") == {labels: 300.0}
    # The same labels for the engine's view of the container: one join in PromQL.
    assert values(series, "hangdoctor_hung_container") == {labels: 1}
    assert one(series, "hangdoctor_stuck_execs") == 1
    assert one(series, "hangdoctor_hung_containers") == 1
    assert one(series, "hangdoctor_last_run_timestamp_seconds") == 1000
    assert one(series, "hangdoctor_scan_duration_seconds") == 0.42
    assert types["hangdoctor_drained_total"] == "counter" and types["hangdoctor_container_stuck_execs"] == "gauge"


def test_series_disappear_when_the_problem_is_gone_but_totals_and_engines_stay():
    first = m.render(summary([stuck()], hung=[CID]), now=1000)
    quiet = m.render(summary(), previous_text=first, now=2000)
    series, dummy = parse(quiet)
    for name in ("hangdoctor_container_stuck_execs", "hangdoctor_stuck_exec_age_seconds", "hangdoctor_hung_container"):
        assert values(series, name) == {}, name
        assert "# TYPE %s " % name not in quiet
    assert one(series, "hangdoctor_stuck_execs") == 0
    assert one(series, "hangdoctor_hung_containers") == 0
    reach = values(series, "hangdoctor_engine_reachable")
    assert reach == {frozenset({"engine": "docker"}.items()): 1, frozenset({"engine": "containerd"}.items()): 0}
    assert values(series, "hangdoctor_engine_present")[frozenset({"engine": "containerd"}.items())] == 0
    assert values(series, "hangdoctor_engine_checked")[frozenset({"engine": "docker"}.items())] == 1


def test_unreachable_engine_is_checked_and_zero():
    engines = [dict(ENGINES[0], reachable=False, error="timed out"), ENGINES[1]]
    series, dummy = parse(m.render(summary(engines=engines), now=1))
    docker = frozenset({"engine": "docker"}.items())
    assert values(series, "hangdoctor_engine_reachable")[docker] == 0
    assert values(series, "hangdoctor_engine_checked")[docker] == 1


def test_counters_continue_and_gauges_reset():
    s = sm.remediation(sm.host_summary({"stuck_execs": [fx.stuck()]}, fx.hung_info(fx.CID), host="n1"),
                       drain=fx.drain_result())
    first = m.render(s, previous_text="", now=1000)
    assert "hangdoctor_drained_total 1\n" in first
    assert "hangdoctor_last_run_timestamp_seconds 1000\n" in first
    second = m.render(s, previous_text=first, now=2000)
    assert "hangdoctor_drained_total 2\n" in second and "hangdoctor_drained_bytes_total 524288\n" in second
    quiet = m.render(sm.host_summary({}, None, host="n1"), previous_text=second, now=3000)
    assert "hangdoctor_drained_total 2\n" in quiet and "hangdoctor_stuck_execs 0\n" in quiet


def test_engine_skipped_for_a_missing_socket_is_not_present():
    s = sm.host_summary({}, {"skipped": True}, host="n1", engine_skipped="no Docker socket at /var/run/docker.sock")
    series, dummy = parse(m.render(s, now=1))
    docker = frozenset({"engine": "docker"}.items())
    assert values(series, "hangdoctor_engine_present")[docker] == 0
    assert values(series, "hangdoctor_engine_checked")[docker] == 0
    assert values(series, "hangdoctor_engine_reachable")[docker] == 0


def test_engine_from_the_older_single_engine_dict():
    s = summary(engines=None)
    series, dummy = parse(m.render(s, now=1))
    assert values(series, "hangdoctor_engine_reachable") == {frozenset({"engine": "docker"}.items()): 1}
    skipped = sm.host_summary({}, {"skipped": True}, host="n1", engine_skipped="no Docker socket at /var/run/docker.sock")
    series, dummy = parse(m.render(skipped, now=1))
    docker = frozenset({"engine": "docker"}.items())
    assert values(series, "hangdoctor_engine_present")[docker] == 0
    assert values(series, "hangdoctor_engine_checked")[docker] == 0


def test_drain_counters_continue_from_the_previous_file_and_check_mode_does_not_count():
    s = summary([stuck()], hung=[CID])
    drain = {"drained": [{"container_id": CID, "pid": 4821, "bytes": 70000, "sha256": "ab",
                          "evidence_path": "/var/log/hangdoctor/x.log", "unblocked": True,
                          "cause": {"kind": "pthread_create_eagain"}}],
             "recurring": [{"container_id": CID, "rounds": 2, "hint": "fix the memory limit"}]}
    after = sm.remediation(s, drain=drain)
    first = m.render(after, previous_text="", now=1000)
    series, dummy = parse(first)
    assert one(series, "hangdoctor_drained_total") == 1
    assert one(series, "hangdoctor_drained_bytes_total") == 70000
    assert one(series, "hangdoctor_evidence_files_total") == 1
    assert one(series, "hangdoctor_recurring_total") == 1
    rec = values(series, "hangdoctor_recurring_drain")
    assert [(dict(k)["pod"], v) for k, v in rec.items()] == [("web-0", 2)]

    second = m.render(after, previous_text=first, now=2000)
    series, dummy = parse(second)
    assert one(series, "hangdoctor_drained_total") == 2
    assert one(series, "hangdoctor_drained_bytes_total") == 140000
    assert one(series, "hangdoctor_evidence_files_total") == 2

    would = sm.remediation(s, drain={"would_drain": [{"container_id": CID, "queued": 65536}]})
    series, dummy = parse(m.render(would, previous_text=second, now=3000))
    assert one(series, "hangdoctor_drained_total") == 2
    assert one(series, "hangdoctor_drained_bytes_total") == 140000
    assert values(series, "hangdoctor_recurring_drain") == {}


def test_guard_skip_and_verify_gauges():
    s = sm.remediation(summary([stuck()]), plan={"skipped": [{"container_id": CID, "reason": "guard"}]},
                       guard={"enabled": True, "blocked": True, "reason": "pending deletions"})
    series, dummy = parse(m.render(s, now=1))
    assert one(series, "hangdoctor_guard_blocked") == 1
    assert one(series, "hangdoctor_skipped_drains") == 1
    assert one(series, "hangdoctor_verify_failed") == 0
    s = sm.remediation(summary([stuck()]), drain={"drained": [{"container_id": CID, "bytes": 1}]},
                       verify_exec={"stuck_execs": [{"container_id": CID}]}, verify_hung={"hung": []})
    series, dummy = parse(m.render(s, now=1))
    assert one(series, "hangdoctor_verify_failed") == 1


@pytest.mark.parametrize("previous", [
    "hangdoctor_drained_total -5\n",
    "hangdoctor_drained_total NaN\n",
    "hangdoctor_drained_total +Inf\n",
    "hangdoctor_drained_total{pod=\"x\"} 99\n",
    "hangdoctor_other_total 7\n",
    "garbage\x00\n",
    b"\xff\xfe hangdoctor_drained_total 3",
    "x" * (m.MAX_PREVIOUS_BYTES + 1) + "\nhangdoctor_drained_total 3\n",
])
def test_a_damaged_previous_file_restarts_counters_instead_of_failing(previous):
    series, dummy = parse(m.render(summary(), previous_text=previous, now=1))
    assert one(series, "hangdoctor_drained_total") == 0


def test_previous_counter_with_timestamp_is_read():
    assert m.previous_counters("hangdoctor_drained_total 4 1700000000000\n") == {"hangdoctor_drained_total": 4.0}


def test_two_stuck_execs_of_one_container_are_one_series_counting_two():
    series, dummy = parse(m.render(summary([stuck(age=50, pid=10), stuck(age=700, pid=20)]), now=1))
    assert list(values(series, "hangdoctor_container_stuck_execs").values()) == [2]
    assert list(values(series, "hangdoctor_stuck_exec_age_seconds").values()) == [700.0]
    assert one(series, "hangdoctor_stuck_execs") == 2


def test_hostile_label_values_are_cut_stripped_and_escaped():
    pod = {"namespace": 'a"b\\c', "name": "p\nod\x00\x1b[31m" + "x" * 500, "container": "c\u2028d"}
    text = m.render(summary([stuck(pod=pod, kind="evil\"} 1\nhangdoctor_guard_blocked 1")]), now=1)
    series, dummy = parse(text)   # fails on a line the format does not allow
    (labels,) = values(series, "hangdoctor_container_stuck_execs")
    labels = dict(labels)
    assert labels["namespace"] == 'a"b\\c'
    assert "\n" not in labels["pod"] and "\x00" not in labels["pod"] and "\x1b" not in labels["pod"]
    assert len(labels["pod"]) == m.MAX_LABEL_CHARS and labels["pod"].endswith("~")
    assert labels["container"] == "c?d"
    assert labels["cause"] == "other"
    assert one(series, "hangdoctor_guard_blocked") == 0


def test_hung_container_without_stuck_exec_takes_the_container_name_from_the_kubelet_name():
    series, dummy = parse(m.render(summary(hung=[CID]), now=1))
    (labels,) = values(series, "hangdoctor_hung_container")
    assert dict(labels) == {"namespace": "shop", "pod": "web-0", "container": "web",
                            "container_id": CID[:12], "cause": "unknown"}


def test_container_without_pod_uses_its_engine_name():
    series, dummy = parse(m.render(summary([stuck(cid=OTHER, pod={})], hung=[OTHER]), now=1))
    (labels,) = values(series, "hangdoctor_container_stuck_execs")
    assert dict(labels)["pod"] == "" and dict(labels)["namespace"] == "" and dict(labels)["container"] == "db"
    (labels,) = values(series, "hangdoctor_hung_container")
    assert dict(labels)["container"] == "db" and dict(labels)["cause"] == "pthread_create_eagain"


def test_series_are_capped_per_metric_and_the_rest_counted():
    n = m.MAX_SERIES_PER_METRIC + 7
    execs = [stuck(cid="%012x" % i + "0" * 52, pid=1000 + i,
                   pod={"namespace": "ns", "name": "pod-%03d" % i, "container": "c"}) for i in range(n)]
    series, dummy = parse(m.render(summary(execs), now=1))
    assert len(values(series, "hangdoctor_container_stuck_execs")) == m.MAX_SERIES_PER_METRIC
    assert len(values(series, "hangdoctor_stuck_exec_age_seconds")) == m.MAX_SERIES_PER_METRIC
    # The same containers in both capped metrics.
    assert set(values(series, "hangdoctor_container_stuck_execs")) == set(values(series, "hangdoctor_stuck_exec_age_seconds"))
    assert one(series, "hangdoctor_series_dropped") == 14
    assert one(series, "hangdoctor_stuck_execs") == n


def test_engines_are_capped_and_their_names_sanitised():
    engines = [{"name": 'dock"er\n%d' % i, "present": True, "checked": True, "reachable": True} for i in range(20)]
    series, dummy = parse(m.render(summary(engines=engines), now=1))
    names = [dict(k)["engine"] for k in values(series, "hangdoctor_engine_reachable")]
    assert len(names) == m.MAX_ENGINES
    assert all(re.match(r"^[a-z0-9_]+$", n) for n in names)


def test_empty_summary_renders_totals_and_timestamp():
    series, dummy = parse(m.render({}, now=5))
    assert one(series, "hangdoctor_stuck_execs") == 0
    assert one(series, "hangdoctor_last_run_timestamp_seconds") == 5
    assert values(series, "hangdoctor_engine_reachable") == {}


def test_timestamp_defaults_to_the_summary_check_time():
    series, dummy = parse(m.render(summary()))
    assert one(series, "hangdoctor_last_run_timestamp_seconds") == 1000


@pytest.mark.parametrize("bad", [[], "text", 3])
def test_bad_summary_raises_a_metrics_error(bad):
    with pytest.raises(m.MetricsError, match="must be a dict"):
        m.render(bad)


def test_find_textfile_dir_takes_the_first_existing_candidate(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    b.mkdir()
    c.mkdir()
    (tmp_path / "file").write_text("")
    (tmp_path / "link").symlink_to(c)
    assert m.find_textfile_dir([str(a), str(tmp_path / "file"), str(tmp_path / "link"), str(b), str(c)]) == str(b)
    assert m.find_textfile_dir([str(a)]) is None
    assert m.find_textfile_dir([]) is None


def test_default_textfile_dirs_are_absolute_and_include_the_debian_one():
    assert "/var/lib/prometheus/node-exporter" in m.TEXTFILE_DIRS
    assert "/var/lib/node_exporter/textfile_collector" in m.TEXTFILE_DIRS
    assert all(os.path.isabs(d) for d in m.TEXTFILE_DIRS)
    expected = next((d for d in m.TEXTFILE_DIRS if os.path.isdir(d) and not os.path.islink(d)), None)
    assert m.find_textfile_dir() == expected


def test_documented_metric_names_are_all_rendered_somewhere():
    """The metrics tables of docs/alerting.md list every metric (node_doctor's
    file and node_risk's), and only those."""
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _node_risk
    doc = open(os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "docs", "alerting.md")).read()
    documented = set(re.findall(r"^\| `(hangdoctor_[a-z_]+)`", doc, re.M))
    names = set(name for name, dummy, dummy2 in m.METRICS + _node_risk.METRICS)
    assert names <= documented, names - documented
    assert documented <= names, documented - names


def _drained(cid=CID, pid=4821, **kw):
    d = {"container_id": cid, "pid": pid, "bytes": 65536, "evidence_path": "/e", "unblocked": True,
         "cause": {"kind": "pthread_create_eagain"}}
    d.update(kw)
    return d


def test_a_remediate_run_shows_what_it_left_not_what_it_found():
    s = sm.remediation(summary([stuck()], hung=[CID]), drain={"drained": [_drained()]},
                       verify_exec={"stuck_execs": []}, verify_hung={"hung": []})
    assert s["stuck_execs"] and s["hung"]   # the fact still tells what was found
    series, dummy = parse(m.render(s, now=1))
    assert values(series, "hangdoctor_container_stuck_execs") == {}
    assert values(series, "hangdoctor_hung_container") == {}
    assert one(series, "hangdoctor_stuck_execs") == 0 and one(series, "hangdoctor_hung_containers") == 0
    assert one(series, "hangdoctor_drained_total") == 1


def test_drained_but_stuck_again_at_verification_stays():
    s = sm.remediation(summary([stuck()], hung=[CID]), drain={"drained": [_drained()]},
                       verify_exec={"stuck_execs": [{"container_id": CID}]}, verify_hung={"hung": [CID]})
    series, dummy = parse(m.render(s, now=1))
    assert list(values(series, "hangdoctor_container_stuck_execs").values()) == [1]
    assert list(values(series, "hangdoctor_hung_container").values()) == [1]
    assert one(series, "hangdoctor_verify_failed") == 1


@pytest.mark.parametrize("drain", [
    {"drained": [_drained(unblocked=False)]},          # the writer is still blocked
    {"would_drain": [{"container_id": CID, "queued": 65536}]},   # check mode changed nothing
    {"drained": [_drained(cid=OTHER)]},                 # another container
])
def test_a_drain_that_did_not_repair_this_exec_leaves_it_stuck(drain):
    s = sm.remediation(summary([stuck()], hung=[CID]), drain=drain)
    series, dummy = parse(m.render(s, now=1))
    assert list(values(series, "hangdoctor_container_stuck_execs").values()) == [1]
    assert one(series, "hangdoctor_stuck_execs") == 1


def test_one_of_two_stuck_execs_drained_leaves_the_container_stuck():
    s = sm.remediation(summary([stuck(pid=10, age=500), stuck(pid=20, age=50)]), drain={"drained": [_drained(pid=10)]},
                       verify_exec={"stuck_execs": [{"container_id": CID}]}, verify_hung={"hung": []})
    series, dummy = parse(m.render(s, now=1))
    assert list(values(series, "hangdoctor_container_stuck_execs").values()) == [2]
    assert one(series, "hangdoctor_stuck_execs") == 2


def test_unblocked_without_an_engine_answer_is_no_longer_stuck_but_still_hung():
    s = sm.remediation(summary([stuck()], hung=[CID]), drain={"drained": [_drained(verified=False)]})
    series, dummy = parse(m.render(s, now=1))
    assert values(series, "hangdoctor_container_stuck_execs") == {}
    assert list(values(series, "hangdoctor_hung_container").values()) == [1]


def test_the_summary_s_own_resolved_marks_are_honoured():
    s = summary([stuck()], hung=[CID])
    s["stuck_execs"] = [dict(x, resolved=True) for x in s["stuck_execs"]]
    s["resolved"] = [CID]
    series, dummy = parse(m.render(s, now=1))
    assert values(series, "hangdoctor_container_stuck_execs") == {} and values(series, "hangdoctor_hung_container") == {}
    assert one(series, "hangdoctor_stuck_execs") == 0 and one(series, "hangdoctor_hung_containers") == 0


# ---- textfile_target: the metrics_dir option of every metrics writer --------

def test_textfile_target_auto_takes_the_first_existing_directory_and_never_creates_one(tmp_path):
    found = tmp_path / "b"
    found.mkdir()
    path, create_dir, reason = m.textfile_target("auto", "x.prom", [str(tmp_path / "a"), str(found)])
    assert (path, create_dir, reason) == (str(found / "x.prom"), False, None)


def test_textfile_target_auto_without_a_directory_says_why_nothing_is_written(tmp_path):
    path, create_dir, reason = m.textfile_target("auto", "x.prom", [str(tmp_path / "absent")])
    assert path is None and reason == "no node_exporter textfile directory on this node"


def test_textfile_target_auto_uses_the_default_directories(tmp_path, monkeypatch):
    d = tmp_path / "collector"
    d.mkdir()
    monkeypatch.setattr(m, "TEXTFILE_DIRS", (str(tmp_path / "none"), str(d)))
    assert m.textfile_target("auto", "hangdoctor.prom") == (str(d / "hangdoctor.prom"), False, None)


def test_textfile_target_named_directory_is_created_and_empty_turns_metrics_off(tmp_path):
    named = str(tmp_path / "not-yet")
    assert m.textfile_target(named, "r.prom") == (os.path.join(named, "r.prom"), True, None)
    path, dummy, reason = m.textfile_target("", "r.prom")
    assert path is None and reason == "metrics turned off"
    assert not os.path.exists(named)  # resolving creates nothing; the writer does
