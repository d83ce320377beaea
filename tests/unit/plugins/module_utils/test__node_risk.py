"""The risk reasons, the risk metrics (promtool check metrics), and the
mitigation's rules: raise only when capacity collapsed, never lower, leave 0
(no limit) alone, back up the previous file, check mode changes nothing."""
import shutil
import subprocess

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _node_risk
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _options

CID = "4f2a9c1d7e3b" + "0" * 52


def result(collapsed=True, pids_headroom=0, advisory=True):
    return {
        "pipe": {"limits": {"soft_pages": 1, "hard_pages": 0, "page_size": 4096},
                 "engines": [{"engine": "docker-uid1000", "capacity": 8192 if collapsed else 65536,
                              "collapsed": collapsed, "user_pipes": 12},
                             {"engine": "docker", "capacity": 65536, "collapsed": False, "user_pipes": 300}]},
        "headroom": {"containers": [{"container_id": CID, "name": "k8s_web", "pod_namespace": "shop",
                                     "pod_name": "web-0", "container_name": "web", "pids_headroom": pids_headroom,
                                     "exec_probe": True, "at_risk": pids_headroom <= 0,
                                     "risk_reasons": ["pids_at_limit"] if pids_headroom <= 0 else []}],
                     "at_risk": [CID] if pids_headroom <= 0 else []},
        "versions": {"advisories": [{"component": "runc", "version": "1.3.2", "id": "runc_exec_hang_regression",
                                     "severity": "warning"}] * bool(advisory) + [
            {"component": "runc", "version": "1.3.2", "id": "pipe_deadlock_unfixed", "severity": "info"}]},
    }


def test_reasons():
    found = _node_risk.reasons(result())
    assert sorted(found) == ["advisory", "container_headroom", "pipe_capacity"]
    assert found["pipe_capacity"] == ["docker-uid1000: 8192 bytes"]
    assert _node_risk.reasons(result(collapsed=False, pids_headroom=5, advisory=False)) == {}


def test_rendered_metrics():
    text = _node_risk.render_metrics(result(), now=1700000000)
    assert 'hangdoctor_pipe_capacity_bytes{engine="docker-uid1000"} 8192\n' in text
    assert 'hangdoctor_pipe_capacity_collapsed{engine="docker"} 0\n' in text
    assert ('hangdoctor_container_pids_headroom{namespace="shop",pod="web-0",container="web",'
            'container_id="4f2a9c1d7e3b",exec_probe="true"} 0\n') in text
    assert ('hangdoctor_advisory{component="runc",version="1.3.2",advisory="runc_exec_hang_regression",'
            'severity="warning"} 1\n') in text
    assert 'hangdoctor_node_at_risk{reason="pipe_capacity"} 1\n' in text
    assert 'hangdoctor_risk_last_run_timestamp_seconds 1700000000\n' in text
    quiet = _node_risk.render_metrics(result(collapsed=False, pids_headroom=5, advisory=False), now=1)
    assert 'hangdoctor_node_at_risk{reason="pipe_capacity"} 0\n' in quiet and "severity=\"warning\"" not in quiet


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_check_metrics():
    for r in (result(), result(False, 5, False), {"pipe": None, "headroom": None, "versions": None}):
        p = subprocess.run(["promtool", "check", "metrics"], input=_node_risk.render_metrics(r, now=1),
                           capture_output=True, text=True, check=False)
        assert p.returncode == 0, p.stdout + p.stderr


def opts(tmp_path, **over):
    values = dict(sysctl_file=str(tmp_path / "etc" / "90-hangdoctor-pipe.conf"), mitigate=True)
    values.update(over)
    return _options.RISK.make(**values)


def proc_root(tmp_path, soft):
    d = tmp_path / "proc" / "sys" / "fs"
    d.mkdir(parents=True, exist_ok=True)
    (d / "pipe-user-pages-soft").write_text("%d\n" % soft)
    return str(tmp_path / "proc")


def live(tmp_path):
    return int((tmp_path / "proc" / "sys" / "fs" / "pipe-user-pages-soft").read_text())


def test_mitigation_raises_and_backs_up(tmp_path):
    root = proc_root(tmp_path, 1)
    conf = tmp_path / "etc" / "90-hangdoctor-pipe.conf"
    conf.parent.mkdir()
    conf.write_text("fs.pipe-user-pages-soft = 1\n")
    o = opts(tmp_path)
    m = _node_risk.mitigation(result(), o, root, check_mode=True)
    assert m["changed"] and m["after"] == 65536 and live(tmp_path) == 1 and m["backup"] is None
    assert m["diff"][0]["before"] == "fs.pipe-user-pages-soft = 1\n"
    assert m["diff"][0]["after"] == "fs.pipe-user-pages-soft = 65536\n"
    m = _node_risk.mitigation(result(), o, root)
    assert m["changed"] and live(tmp_path) == 65536
    assert "fs.pipe-user-pages-soft = 65536\n" in conf.read_text()
    assert open(m["backup"]).read() == "fs.pipe-user-pages-soft = 1\n"


@pytest.mark.parametrize("soft, collapsed, why", [
    (1, False, "no engine"), (0, True, "no limit"), (65536, True, "never lowered"), (1 << 20, True, "never lowered")])
def test_mitigation_never_lowers_and_acts_only_on_collapse(tmp_path, soft, collapsed, why):
    root = proc_root(tmp_path, soft)
    m = _node_risk.mitigation(result(collapsed=collapsed), opts(tmp_path), root)
    assert m["changed"] is False and live(tmp_path) == soft and why in m["reason"], m
    assert not (tmp_path / "etc").exists()


def test_mitigation_without_a_readable_limit_is_a_clear_error(tmp_path):
    with pytest.raises(_node_risk.NodeRiskError, match="cannot read"):
        _node_risk.mitigation(result(), opts(tmp_path), str(tmp_path / "nothing"))


def test_sysctl_files_that_set_the_key_are_found_in_order(tmp_path):
    a, b = tmp_path / "etc", tmp_path / "usr"
    a.mkdir()
    b.mkdir()
    (a / "99-late.conf").write_text("fs.pipe-user-pages-soft=1024\n")
    (b / "10-early.conf").write_text("# comment\nfs/pipe-user-pages-soft = 2048\n")
    (b / "99-late.conf").write_text("fs.pipe-user-pages-soft = 7\n")  # hidden by /etc's file of that name
    assert _node_risk.sysctl_settings([str(a), str(b)], conf=None) == [
        (str(b / "10-early.conf"), 2048), (str(a / "99-late.conf"), 1024)]


def test_risk_options_are_checked():
    with pytest.raises(_options.OptionError, match="risk_checks"):
        _options.RISK.make(risk_checks=["pipe", "kernel"])
    with pytest.raises(_options.OptionError, match="pipe_user_pages_soft"):
        _options.RISK.make(pipe_user_pages_soft=100)
    with pytest.raises(_options.OptionError, match="version_cache"):
        _options.RISK.make(version_cache="relative/path")


def test_state_keeps_the_memory_counters_for_the_next_run(tmp_path):
    path = str(tmp_path / "cache" / "risk-state.json")
    head = {"containers": [{"container_id": CID, "memory_events": {"max": 4}}]}
    assert _node_risk.save_state(path, head, check_mode=True)["written"] is False
    assert _node_risk.load_state(path) == {}
    assert _node_risk.save_state(path, head)["written"] is True
    assert _node_risk.load_state(path) == {"memory_events": {CID: {"max": 4}}}
    import os
    import stat
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    (tmp_path / "cache" / "risk-state.json").write_text("not json")
    assert _node_risk.load_state(path) == {} and _node_risk.load_state("") == {}
