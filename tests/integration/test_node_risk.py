"""node_risk on real state: the pipe capacity a real shim would give its next
exec under a lowered fs.pipe-user-pages-soft (a root shim keeps full pipes on
this kernel, a real containerd shim running as an unprivileged user does not),
the drain of a real stuck exec on a small pipe under that limit, real
containers at and below their pids limit, and the versions of the installed
binaries."""
import json
import os
import re
import resource
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import hdharness
from conftest import collections_path, run_module

sys.path.insert(0, collections_path())

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _versions  # noqa: E402
from ansible_collections.hangdoctor.runtime.plugins.module_utils._procfs import Proc  # noqa: E402

SOFT = "/proc/sys/fs/pipe-user-pages-soft"
ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "extras" / "prometheus" / "hangdoctor.rules.yml"
PROMTOOL = shutil.which("promtool")
NOBODY = 65534
ONE_PAGE = 4096


def read_soft():
    with open(SOFT) as f:
        return int(f.read())


def write_soft(value):
    with open(SOFT, "w") as f:
        f.write("%d\n" % value)


@pytest.fixture
def low_pipe_soft():
    """fs.pipe-user-pages-soft at 1 page for the test; the value found is
    put back even when the test fails."""
    before = read_soft()
    write_soft(1)
    try:
        yield before
    finally:
        write_soft(before)
        assert read_soft() == before


@pytest.fixture
def nobody_shim():
    """A real containerd-shim-runc-v2 serving (on fd 3, as containerd starts
    it) under uid/gid 65534 with no capabilities: a rootless engine's shim."""
    tmp_path = Path(tempfile.mkdtemp(prefix="hd-risk-shim-"))  # pytest's tmp_path is not reachable for uid 65534
    os.chmod(tmp_path, 0o755)
    work = tmp_path / "shim-bundle"
    work.mkdir()
    os.chown(work, NOBODY, NOBODY)
    os.mkfifo(work / "log")
    os.chmod(work / "log", 0o666)  # mkfifo honours the umask
    log = os.open(work / "log", os.O_RDONLY | os.O_NONBLOCK)  # the shim opens its log FIFO for writing
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "shim.sock"))
    listener.listen(8)

    def as_fd3():
        os.dup2(listener.fileno(), 3)

    p = subprocess.Popen(["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups",
                          "containerd-shim-runc-v2", "-namespace", "hdrisk", "-id", "risk-probe",
                          "-address", str(tmp_path / "containerd.sock"), "-publish-binary", "/bin/true"],
                         cwd=str(work), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=as_fd3, pass_fds=tuple(set([listener.fileno(), 3])))
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and hdharness.proc_comm(p.pid) != "containerd-shim":
            assert p.poll() is None, p.communicate()
            time.sleep(0.05)
        time.sleep(0.3)
        assert p.poll() is None, p.communicate()
        status = open("/proc/%d/status" % p.pid).read()
        assert re.search(r"^Uid:\s+%d\s" % NOBODY, status, re.M) and re.search(r"^CapEff:\s+0+$", status, re.M)
        yield p
    finally:
        p.kill()
        p.communicate()
        listener.close()
        os.close(log)
        shutil.rmtree(tmp_path)


def alerts_over(tmp_path, text, alertname, eval_time):
    """The alerts ALERTNAME has at EVAL_TIME when promtool evaluates the shipped
    rules over the metrics TEXT (one node, scraped every minute): promtool's
    test passes only with the expected set, so try what the file should give."""
    series = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$", line)
        assert m, line
        labels = ",".join(x for x in (m.group(2), 'instance="node-1",job="node"') if x)
        series.append({"series": "%s{%s}" % (m.group(1), labels), "values": "%sx60" % m.group(3)})
    return series


def promtool_expect(tmp_path, text, alertname, eval_time, exp_labels, value=None):
    """Does promtool, evaluating the shipped rules over TEXT, give exactly the
    alerts EXP_LABELS (their annotations filled from the rule with VALUE)?"""
    import yaml
    rule = next(r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if r.get("alert") == alertname)

    def fill(template, labels):
        out = re.sub(r"\{\{ \$labels\.([a-z_]+) \}\}", lambda m: labels.get(m.group(1), ""), template)
        return out.replace("{{ $value }}", str(value))
    exp = [{"exp_labels": labels, "exp_annotations": dict((k, fill(v, labels)) for k, v in rule["annotations"].items())}
           for labels in exp_labels]
    tests = {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": alerts_over(tmp_path, text, alertname, eval_time),
        "alert_rule_test": [{"alertname": alertname, "eval_time": eval_time, "exp_alerts": exp}]}]}
    f = tmp_path / ("%s-%s.test.yml" % (alertname, eval_time))
    f.write_text(yaml.safe_dump(tests, sort_keys=False))
    r = subprocess.run([PROMTOOL, "test", "rules", str(f)], capture_output=True, text=True, timeout=120, check=False)
    return r.returncode == 0, r.stdout + r.stderr


def engine_with(result, pid):
    found = [e for e in result["pipe"]["engines"] if pid in e["pids"]]
    assert len(found) == 1, (pid, result["pipe"])
    return found[0]


def shim_of_container(cid):
    for pid in hdharness.pids():
        if hdharness.proc_comm(pid) == "containerd-shim" and cid in " ".join(hdharness.proc_cmdline(pid) or []):
            return pid
    raise AssertionError("no shim for %s" % cid)


def test_pipe_capacity_of_a_root_shim_and_of_an_unprivileged_shim(harness, release, nobody_shim, tmp_path):
    cid = harness.run_container("risk-root-shim", "v2")
    root_shim = shim_of_container(cid)
    args = {"risk_checks": ["pipe"], "metrics_dir": str(tmp_path / "metrics")}

    # at the default limit both get full pipes: no false alarm
    if read_soft() >= 16384:
        res, dummy = run_module("node_risk", args)
        assert res["_status"] == "SUCCESS", res
        assert engine_with(res, nobody_shim.pid)["capacity"] == 65536
        assert engine_with(res, root_shim)["collapsed"] is False

    before = read_soft()
    write_soft(1)
    try:
        res, dummy = run_module("node_risk", args)
    finally:
        write_soft(before)
    assert res["_status"] == "SUCCESS", res
    assert res["changed"] is False and res["pipe"]["limits"]["soft_pages"] == 1
    root = engine_with(res, root_shim)
    assert root["uid"] == 0 and root["capabilities_exempt"] is True
    assert root["capacity"] == 65536 and root["collapsed"] is False, root
    nobody = engine_with(res, nobody_shim.pid)
    assert nobody["engine"] == "containerd-uid%d" % NOBODY and nobody["uid"] == NOBODY
    assert nobody["capabilities_exempt"] is False
    # current kernels cut an unprivileged user's new pipes to two pages
    assert nobody["capacity"] == 2 * ONE_PAGE and nobody["collapsed"] is True, nobody
    assert nobody["deadlock_dump_bytes"] == 2 * ONE_PAGE + 1
    assert nobody["user_pipes"] >= 2  # the shim's own stdout/stderr pipes at least
    assert "pipe_capacity" in res["at_risk"] and "containerd-uid65534: 8192 bytes" in res["msg"]
    text = (tmp_path / "metrics" / "hangdoctor_risk.prom").read_text()
    assert 'hangdoctor_pipe_capacity_bytes{engine="containerd-uid65534"} 8192' in text
    assert 'hangdoctor_pipe_capacity_collapsed{engine="containerd-uid65534"} 1' in text
    assert 'hangdoctor_node_at_risk{reason="pipe_capacity"} 1' in text
    assert 'hangdoctor_pipe_user_pages_soft 1' in text
    if PROMTOOL:
        # the shipped alert fires for the unprivileged engine only, after its 15 minutes
        base = {"severity": "warning", "instance": "node-1", "job": "node"}
        ok, out = promtool_expect(tmp_path, text, "HangdoctorPipeCapacityCollapsed", "20m",
                                  [dict(base, engine="containerd-uid%d" % NOBODY)], value=8192)
        assert ok, out + text
        ok, out = promtool_expect(tmp_path, text, "HangdoctorPipeCapacityCollapsed", "10m", [])
        assert ok, out


def test_mitigation_raises_the_soft_limit_and_never_lowers_it(low_pipe_soft, nobody_shim, tmp_path):
    conf = tmp_path / "sysctl.d" / "90-hangdoctor-pipe.conf"
    conf.parent.mkdir()
    conf.write_text("fs.pipe-user-pages-soft = 1\n")
    args = {"risk_checks": ["pipe"], "mitigate": True, "sysctl_file": str(conf), "metrics_dir": ""}

    res, dummy = run_module("node_risk", args, check=True)
    assert res["_status"] == "CHANGED" and res["changed"] is True, res
    assert res["mitigation"]["action"] == "raise" and res["mitigation"]["after"] == 65536
    assert read_soft() == 1 and conf.read_text() == "fs.pipe-user-pages-soft = 1\n"

    res, dummy = run_module("node_risk", args)
    assert res["_status"] == "CHANGED" and res["changed"] is True, res
    assert read_soft() == 65536
    assert "fs.pipe-user-pages-soft = 65536" in conf.read_text()
    backup = res["mitigation"]["backup"]
    assert backup and open(backup).read() == "fs.pipe-user-pages-soft = 1\n"
    assert stat.S_IMODE(os.stat(conf).st_mode) == 0o644

    # the unprivileged shim's next pipe is full again; a second run changes nothing
    res, dummy = run_module("node_risk", args)
    assert res["changed"] is False, res
    assert engine_with(res, nobody_shim.pid)["capacity"] == 65536
    assert read_soft() == 65536

    # at or above the configured value nothing is touched, even with capacity
    # collapsed: here the user holds more pipe pages than the limit (leaked pipes)
    write_soft(16384)
    leaker = hold_pipes(NOBODY, 1100)  # 1100 pipes x 16 pages > 16384
    try:
        res, dummy = run_module("node_risk", dict(args, pipe_user_pages_soft=16384))
        nobody = engine_with(res, nobody_shim.pid)
        assert nobody["collapsed"] is True and nobody["user_pipes"] >= 1100, nobody
        assert res["changed"] is False and read_soft() == 16384, res
        assert "never lowered" in res["mitigation"]["reason"]
        res, dummy = run_module("node_risk", dict(args, pipe_user_pages_soft=65536))
        assert res["changed"] is True and read_soft() == 65536, res
    finally:
        leaker.kill()
        leaker.wait()


def hold_pipes(uid, count):
    """A process of UID that holds COUNT pipes open (created under its own uid)."""
    def more_fds():
        resource.setrlimit(resource.RLIMIT_NOFILE, (4 * count, 4 * count))
    code = ("import os,sys,time\nps=[os.pipe() for i in range(%d)]\nsys.stdout.write('ready\\n')\n"
            "sys.stdout.flush()\ntime.sleep(600)\n" % count)
    p = subprocess.Popen(["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups", sys.executable,
                          "-c", code], stdout=subprocess.PIPE, preexec_fn=more_fds)
    assert p.stdout.readline() == b"ready\n"
    return p


def test_drain_of_a_stuck_exec_on_a_small_pipe_under_the_low_limit(harness, release, low_pipe_soft, tmp_path):
    cid = harness.run_container("risk-small-pipe", "v2")
    exec_proc, pid = harness.hang(cid, size=64 * 1024, pipe_size=ONE_PAGE)
    assert pid is not None and exec_proc.poll() is None, "no deadlock"
    ev = hdharness.evidence(pid)
    assert ev["capacity"] == ONE_PAGE and ev["queued"] == ONE_PAGE
    res, dummy = run_module("runc_pipe_drain", {
        "container_ids": [cid], "min_age_seconds": 0, "evidence_dir": str(tmp_path / "evidence"),
        "docker_host": harness.docker_host, "confirm_interval": 0.3, "timeout": 10, "max_evidence_bytes": 0})
    assert res["_status"] == "CHANGED", res
    (entry,) = [d for d in res["drained"] if d["container_id"] == cid]
    assert entry["unblocked"] is True, entry
    length, dummy, dump = harness.record(pid)
    assert entry["bytes"] >= length == 64 * 1024
    assert dump in open(entry["evidence_path"], "rb").read()  # every byte of the dump kept
    exec_proc.wait(timeout=10)
    assert harness.inspect_answers(cid, timeout=5)


def run_limited(harness, name, pids_limit, cmd):
    if harness.container_id(name):
        harness.docker("rm", "-f", name, timeout=30, check=True)
    r = harness.docker("run", "-d", "--name", name, "--network", "none", "--pids-limit", str(pids_limit),
                       hdharness.IMAGE, "sh", "-c", cmd, timeout=60, check=True)
    return r.stdout.strip()


def test_container_at_its_pids_limit_is_flagged_and_one_with_headroom_is_not(harness, release, tmp_path):
    # sh and two sleeps: three pids, the limit
    full = run_limited(harness, "risk-pids-full", 3, "sleep 100000 & sleep 100000 & wait")
    roomy = run_limited(harness, "risk-pids-roomy", 100, "sleep 100000 & wait")
    deadline = time.monotonic() + 10
    cg = None
    while time.monotonic() < deadline:
        res, dummy = run_module("node_risk", {"risk_checks": ["headroom"], "metrics_dir": str(tmp_path / "m"),
                                              "exec_probe_containers": ["risk-pids-roomy"]})
        assert res["_status"] == "SUCCESS", res
        mine = dict((c["container_id"], c) for c in res["headroom"]["containers"] if c["container_id"] in (full, roomy))
        cg = mine.get(full)
        if cg and cg["pids_current"] == 3 and roomy in mine:
            break
        time.sleep(0.3)
    assert cg and cg["pids_max"] == 3 and cg["pids_current"] == 3, mine
    assert cg["name"] == "risk-pids-full" and cg["pids_headroom"] == 0
    assert cg["at_risk"] is True and "pids_at_limit" in cg["risk_reasons"]
    other = mine[roomy]
    assert other["pids_max"] == 100 and other["pids_headroom"] == 98 and other["at_risk"] is False, other
    assert other["exec_probe"] is True and cg["exec_probe"] is False
    order = [c["container_id"] for c in res["headroom"]["containers"]]
    assert order.index(full) < order.index(roomy)
    assert full in res["headroom"]["at_risk"] and roomy not in res["headroom"]["at_risk"]
    assert "container_headroom" in res["at_risk"]
    text = (tmp_path / "m" / "hangdoctor_risk.prom").read_text()
    assert re.search(r'hangdoctor_container_pids_headroom\{[^}]*container="risk-pids-full",container_id="%s"'
                     r',exec_probe="false"\} 0\n' % full[:12], text), text
    assert re.search(r'container="risk-pids-roomy",container_id="%s",exec_probe="true"\} 98\n' % roomy[:12], text)
    if PROMTOOL:
        # the shipped alert names the full container, not the roomy one (others' containers may be in the file)
        ours = "\n".join(line for line in text.splitlines()
                         if "container_pids_headroom{" not in line or full[:12] in line or roomy[:12] in line)
        labels = {"severity": "warning", "instance": "node-1", "job": "node", "namespace": "", "pod": "",
                  "container": "risk-pids-full", "container_id": full[:12], "exec_probe": "false"}
        labels = dict((k, v) for k, v in labels.items() if v)
        ok, out = promtool_expect(tmp_path, ours, "HangdoctorContainerPidsExhausted", "15m", [labels])
        assert ok, out + ours


def test_versions_of_the_installed_binaries(tmp_path):
    cache = tmp_path / "cache" / "versions.json"
    res, dummy = run_module("node_risk", {"risk_checks": ["versions"], "version_cache": str(cache), "metrics_dir": ""})
    assert res["_status"] == "SUCCESS", res
    comps = dict((c["component"], c) for c in res["versions"]["components"])
    for component, package in (("runc", "runc"), ("containerd", "containerd"), ("dockerd", "docker.io"),
                               ("shim", "containerd")):
        pkg = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True,
                             check=True).stdout
        assert comps[component]["error"] is None, comps[component]
        # Debian's package version starts with the upstream version the binary prints
        assert pkg.startswith(comps[component]["version"].lstrip("v")), (component, pkg, comps[component])
    assert re.match(r"^\d+\.\d+", comps["runc"]["go_version"])
    assert res["versions"]["kernel"] == os.uname().release
    assert "No containerd, runc or Docker version fixes the pipe deadlock" in res["versions"]["note"]
    ids = [a["id"] for a in res["versions"]["advisories"]]
    assert "pipe_deadlock_unfixed" in ids
    assert res["versions"]["cache"]["written"] is True and stat.S_IMODE(os.stat(cache).st_mode) == 0o600
    assert res["versions"]["cache"]["hits"] == 0
    res2, dummy = run_module("node_risk", {"risk_checks": ["versions"], "version_cache": str(cache), "metrics_dir": ""})
    assert res2["versions"]["cache"]["hits"] == len(comps) and res2["versions"]["components"] == res["versions"]["components"]


@pytest.fixture
def root_dir():
    """A directory whose every ancestor is root's and writable by nobody else
    (pytest's tmp_path is under the sticky, world-writable /tmp)."""
    d = tempfile.mkdtemp(prefix="hd-risk-", dir=os.path.expanduser("~"))
    os.chmod(d, 0o755)
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d)


def test_a_binary_that_is_not_root_owned_is_not_run(root_dir):
    tmp_path = root_dir
    d = tmp_path / "bin"
    d.mkdir()
    marker = tmp_path / "ran"
    runc = d / "runc"
    runc.write_text("#!/bin/sh\ntouch %s\necho 'runc version 1.3.1'\n" % marker)
    runc.chmod(0o755)
    os.chmod(d, 0o777)  # writable by others: anyone could have replaced it
    res = _versions.assess(Proc("/proc"), {"dirs": [str(d)], "cache_path": ""})
    (entry,) = res["components"]
    assert entry["version"] is None and entry["error"].startswith("not run:"), entry
    assert not marker.exists() and res["advisories"] == []
    os.chmod(d, 0o755)
    res = _versions.assess(Proc("/proc"), {"dirs": [str(d)], "cache_path": ""})
    (entry,) = res["components"]
    assert entry["version"] == "1.3.1" and marker.exists(), entry
    assert [a["id"] for a in res["advisories"]] == ["runc_exec_hang_regression", "pipe_deadlock_unfixed"]


def test_a_version_command_that_never_ends_is_cut_off(root_dir):
    d = root_dir / "bin"
    d.mkdir()
    pids = root_dir / "pids"
    (d / "runc").write_text("#!/bin/sh\nsleep 600 &\necho $! $$ > %s\nexec sleep 600\n" % pids)
    (d / "runc").chmod(0o755)
    t0 = time.monotonic()
    res = _versions.assess(Proc("/proc"), {"dirs": [str(d)], "cache_path": "", "timeout": 0.5})
    assert time.monotonic() - t0 < 5
    (entry,) = res["components"]
    assert "did not answer within 0.5 s" in entry["error"], entry
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) == 2
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(hdharness.proc_state(p) not in (None, "Z") for p in started):
        time.sleep(0.05)
    assert [hdharness.proc_state(p) for p in started if hdharness.proc_state(p) not in (None, "Z")] == []
    json.dumps(res)


def playbook(book, tmp_path, extra):
    from conftest import ansible_env
    evars = {"ansible_python_interpreter": sys.executable, "hangdoctor_become": False, "hangdoctor_metrics_dir": "",
             "hangdoctor_report_dir": str(tmp_path / "reports"), "hangdoctor_check_engine": False,
             "hangdoctor_confirm_interval": 0.3}
    evars.update(extra)
    r = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", "hangdoctor.runtime." + book,
                        "-e", json.dumps(evars)], capture_output=True, text=True, timeout=300, env=ansible_env(),
                       check=False)
    assert r.returncode == 0 and "ERROR!" not in r.stdout + r.stderr, r.stdout[-4000:] + r.stderr[-2000:]
    return r


def test_the_fleet_view_says_how_many_nodes_are_at_risk(harness, release, tmp_path):
    run_limited(harness, "risk-fleet-full", 2, "sleep 100000 & wait")
    r = playbook("detect", tmp_path, {"hangdoctor_risk": True})
    report = json.loads((tmp_path / "reports" / "hangdoctor-detect.json").read_text())
    assert report["risk"]["hosts_checked"] == 1 and report["risk"]["hosts_at_risk"] == 1, report["risk"]
    assert report["risk"]["by_reason"]["container_headroom"] == ["localhost"]
    assert any("risk-fleet-full" in d for d in report["risk"]["hosts"]["localhost"]["reasons"]["container_headroom"])
    assert "1 of 1 node(s) at risk of the pipe deadlock" in r.stdout
    md = (tmp_path / "reports" / "hangdoctor-detect.md").read_text()
    assert "## Node risk (before it hangs)" in md

    # off (the default): node_risk does not run and the report has no risk
    r = playbook("detect", tmp_path, {})
    report = json.loads((tmp_path / "reports" / "hangdoctor-detect.json").read_text())
    assert report["risk"] is None and "at risk of the pipe deadlock" not in r.stdout

    r = playbook("risk", tmp_path, {"hangdoctor_risk_checks": ["headroom"]})
    assert "1 of 1 node(s) at risk of the pipe deadlock: container_headroom 1" in r.stdout, r.stdout[-3000:]


def test_node_risk_with_ansible_core_216_and_python36(nobody_shim, tmp_path):
    venv, py36 = os.environ.get("HD_VENV_COMPAT"), os.environ.get("HD_PY36")
    if not venv or not os.access(os.path.join(venv, "bin", "ansible"), os.X_OK) or not py36 or not os.access(py36, os.X_OK):
        pytest.skip("HD_VENV_COMPAT (ansible-core 2.16) and HD_PY36 (a Python 3.6 target) are not set")
    compat = {"ansible_bin": os.path.join(venv, "bin", "ansible"), "python": py36}
    before = read_soft()
    write_soft(1)
    try:
        res, dummy = run_module("node_risk", {"version_cache": str(tmp_path / "v.json"), "metrics_dir": ""}, **compat)
    finally:
        write_soft(before)
    assert res["_status"] == "SUCCESS", res
    nobody = engine_with(res, nobody_shim.pid)
    assert nobody["capacity"] == 8192 and nobody["collapsed"] is True, nobody
    assert res["versions"]["components"] and all(c["error"] is None for c in res["versions"]["components"])
    assert isinstance(res["headroom"]["containers"], list)


def test_a_container_hitting_its_memory_limit_between_two_runs_is_flagged(harness, release, tmp_path):
    trigger = Path(tempfile.mkdtemp(prefix="hd-risk-mem-"))
    try:
        name = "risk-mem"
        if harness.container_id(name):
            harness.docker("rm", "-f", name, timeout=30, check=True)
        # tail keeps a line without a newline in memory: past the 16 MiB limit the cgroup reclaims and OOM-kills
        cid = harness.docker("run", "-d", "--name", name, "--network", "none", "--memory", "16m",
                             "--memory-swap", "16m", "-v", "%s:/t" % trigger, hdharness.IMAGE, "sh", "-c",
                             "while :; do if [ -f /t/go ]; then rm /t/go; head -c 64000000 /dev/zero | tail >/dev/null;"
                             " touch /t/done; fi; sleep 0.2; done", timeout=60, check=True).stdout.strip()
        args = {"risk_checks": ["headroom"], "metrics_dir": "", "risk_state_file": str(tmp_path / "state.json")}
        res, dummy = run_module("node_risk", args)
        (first,) = [c for c in res["headroom"]["containers"] if c["container_id"] == cid]
        assert first["memory_limit"] == 16 * 1024 * 1024 and first["memory_events_growth"] == {}, first
        assert "memory_events_growing" not in first["risk_reasons"] and first["at_risk"] is False
        (trigger / "go").write_text("")
        # a cgroup at its limit reclaims before it OOM-kills: on a loaded
        # machine that can take a while
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not (trigger / "done").exists():
            time.sleep(0.2)
        assert (trigger / "done").exists(), "the allocation did not run"
        res, dummy = run_module("node_risk", args)
        (second,) = [c for c in res["headroom"]["containers"] if c["container_id"] == cid]
        assert sum(second["memory_events_growth"].values()) > 0, second  # max (failcnt) or oom_kill
        assert "memory_events_growing" in second["risk_reasons"] and second["at_risk"] is True
        res, dummy = run_module("node_risk", args)  # nothing more happened: no growth, no risk
        (third,) = [c for c in res["headroom"]["containers"] if c["container_id"] == cid]
        assert third["memory_events_growth"] == {} and third["at_risk"] is False, third
    finally:
        shutil.rmtree(trigger, ignore_errors=True)
