"""Reliability: bad input.  Wrong types, unknown ids, nonexistent pids, bad
evidence directories, negative timeouts, malformed ``stuck_execs``, not
running as root, no Docker socket, a ``proc_root`` that is not a procfs: every
case across the four modules comes back FAILED with a clear message (or, where
the documented answer is "nothing to do", SUCCESS with nothing done) and never
with a traceback.  The cases run through real Ansible, a few at a time."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import decoys
from conftest import ansible_env, run_module

UNKNOWN_CID = "f" * 64
NOBODY = 65534
ROOT_MSG = "must run as root"


def _record(**over):
    rec = {"container_id": UNKNOWN_CID,
           "writer": {"role": "runc_init", "pid": 4194000, "start_time": 1},
           "runc_init": {"pid": 4194000, "start_time": 1},
           "runc_exec": {"pid": 4193999, "start_time": 1},
           "shim": {"pid": 4193998, "start_time": 1, "version": "v2"},
           "pipe": {"inode": 1, "capacity": 65536, "queued": 65536, "fd": 2},
           "readers": [{"pid": 1, "fd": 3, "comm": "containerd-shim", "is_shim": True}]}
    rec.update(over)
    return rec


# (id, module, args, expected status, text the message must hold / check of the result)
# "{ev}" in a string argument is a fresh evidence directory of the case.
CASES = [
    ("info-interval-type", "runc_exec_info", {"confirm_interval": "soon"}, "FAILED!", "confirm_interval"),
    ("info-interval-negative", "runc_exec_info", {"confirm_interval": -1}, "FAILED!", "confirm_interval must be between 0 and"),
    ("info-peek-negative", "runc_exec_info", {"peek_bytes": -5}, "FAILED!", "peek_bytes must be between 0 and"),
    ("info-ids-not-hex", "runc_exec_info", {"container_ids": ["web-1; rm -rf /"]}, "FAILED!", "hex container ids"),
    ("info-ids-wrong-type", "runc_exec_info", {"container_ids": {"a": 1}}, "FAILED!", "container_ids"),
    ("info-proc-root-etc", "runc_exec_info", {"proc_root": "/etc"}, "FAILED!", "not a procfs"),
    ("info-proc-root-missing", "runc_exec_info", {"proc_root": "/nonexistent/proc"}, "FAILED!", "not a procfs"),
    ("info-cmdline-timeout-zero", "runc_exec_info", {"cmdline_timeout": 0}, "FAILED!", "cmdline_timeout must be greater than 0"),
    ("info-unknown-option", "runc_exec_info", {"pid": 1}, "FAILED!", "Unsupported parameters"),
    ("info-unknown-container", "runc_exec_info", {"container_ids": [UNKNOWN_CID], "confirm_interval": 0.1},
     "SUCCESS", lambda r: r["stuck_execs"] == [] and r["suspects"] == []),

    ("drain-evidence-relative", "runc_pipe_drain", {"evidence_dir": "evidence", "min_age_seconds": 0},
     "FAILED!", "must be an absolute path"),
    ("drain-evidence-under-a-file", "runc_pipe_drain", {"evidence_dir": "{ev}/file/evidence"},
     "FAILED!", "Not a directory"),
    ("drain-evidence-unwritable", "runc_pipe_drain", {"evidence_dir": "/proc/hangdoctor-evidence"},
     "FAILED!", "cannot create evidence_dir"),
    ("drain-evidence-foreign-symlink", "runc_pipe_drain", {"evidence_dir": "{ev}/link"},
     "FAILED!", "symlink owned by uid %d" % NOBODY),
    ("drain-evidence-foreign-owner", "runc_pipe_drain", {"evidence_dir": "{ev}/theirs"},
     "FAILED!", "owned by uid %d" % NOBODY),
    ("drain-evidence-under-a-foreign-dir", "runc_pipe_drain", {"evidence_dir": "{ev}/theirs/evidence"},
     "FAILED!", "owned by uid %d" % NOBODY),
    ("drain-evidence-world-writable", "runc_pipe_drain", {"evidence_dir": "{ev}/shared"},
     "FAILED!", "writable by group or others (mode 0777)"),
    ("drain-lock-dir-relative", "runc_pipe_drain", {"lock_dir": "run/hangdoctor", "evidence_dir": "{ev}/evidence"},
     "FAILED!", "lock_dir must be an absolute path"),
    ("drain-lock-dir-foreign-symlink", "runc_pipe_drain", {"lock_dir": "{ev}/link", "evidence_dir": "{ev}/evidence"},
     "FAILED!", lambda r: r["msg"].startswith("lock_dir ") and "symlink owned by uid %d" % NOBODY in r["msg"]),
    ("drain-lock-dir-world-writable", "runc_pipe_drain", {"lock_dir": "{ev}/shared", "evidence_dir": "{ev}/evidence"},
     "FAILED!", lambda r: r["msg"].startswith("lock_dir ") and "writable by group or others" in r["msg"]),
    ("drain-retention-count-negative", "runc_pipe_drain", {"evidence_retention_count": -1},
     "FAILED!", "evidence_retention_count must be between 0 and"),
    ("drain-retention-days-type", "runc_pipe_drain", {"evidence_retention_days": "forever"},
     "FAILED!", "evidence_retention_days"),
    ("drain-timeout-negative", "runc_pipe_drain", {"timeout": -1}, "FAILED!", "timeout must be greater than 0"),
    ("drain-timeout-zero", "runc_pipe_drain", {"timeout": 0}, "FAILED!", "timeout must be greater than 0"),
    ("drain-inspect-timeout-negative", "runc_pipe_drain", {"inspect_timeout": -3}, "FAILED!", "greater than 0"),
    ("drain-min-age-negative", "runc_pipe_drain", {"min_age_seconds": -1}, "FAILED!", "min_age_seconds must be between 0 and"),
    ("drain-max-evidence-negative", "runc_pipe_drain", {"max_evidence_bytes": -1}, "FAILED!", "max_evidence_bytes must be between 0 and"),
    ("drain-max-rounds-zero", "runc_pipe_drain", {"max_rounds": 0}, "FAILED!", "max_rounds must be between 1 and"),
    ("drain-fallback-unknown", "runc_pipe_drain", {"fallback": "explode"}, "FAILED!", "fallback"),
    ("drain-proc-root-tmp", "runc_pipe_drain", {"proc_root": "/tmp"}, "FAILED!", "not a procfs"),
    ("drain-both-targets", "runc_pipe_drain", {"stuck_execs": [_record()], "container_ids": [UNKNOWN_CID]},
     "FAILED!", "mutually exclusive"),
    ("drain-record-not-a-dict", "runc_pipe_drain", {"stuck_execs": ["runc init 4242"]}, "FAILED!", "stuck_execs"),
    ("drain-record-no-writer", "runc_pipe_drain", {"stuck_execs": [{"container_id": UNKNOWN_CID}]},
     "FAILED!", "writer missing"),
    ("drain-record-pid-not-int", "runc_pipe_drain",
     {"stuck_execs": [_record(writer={"role": "runc_init", "pid": "4242x", "start_time": 1})]},
     "FAILED!", "writer.pid must be an integer"),
    ("drain-record-bad-role", "runc_pipe_drain",
     {"stuck_execs": [_record(writer={"role": "shim", "pid": 1, "start_time": 1})]},
     "FAILED!", "writer.role must be runc_init or runc_exec"),
    ("drain-record-readers-not-list", "runc_pipe_drain", {"stuck_execs": [_record(readers="containerd-shim")]},
     "FAILED!", "readers must be a list"),
    ("drain-record-nonexistent-pid", "runc_pipe_drain",
     {"stuck_execs": [_record()], "evidence_dir": "{ev}/evidence", "confirm_interval": 0.1},
     "SUCCESS", lambda r: not r["drained"] and [s["reason"] for s in r["skipped_execs"]] == ["no longer matches"]),
    ("drain-record-missing-runc-exec", "runc_pipe_drain",
     {"stuck_execs": [dict((k, v) for k, v in _record().items() if k != "runc_exec")],
      "evidence_dir": "{ev}/evidence", "confirm_interval": 0.1},
     "FAILED!", "runc_exec missing"),
    # checked before anything is drained: after a drain a traceback lost the result and its evidence paths
    ("drain-docker-host-https", "runc_pipe_drain",
     {"docker_host": "https://10.0.0.1:2376", "container_ids": [UNKNOWN_CID], "evidence_dir": "{ev}/evidence"},
     "FAILED!", "https:// is not supported"),
    ("drain-docker-host-no-host", "runc_pipe_drain",
     {"docker_host": "tcp://:2375", "container_ids": [UNKNOWN_CID], "evidence_dir": "{ev}/evidence"},
     "FAILED!", "has no host"),
    ("drain-containerd-address-relative", "runc_pipe_drain",
     {"containerd_address": "run/containerd.sock", "container_ids": [UNKNOWN_CID], "evidence_dir": "{ev}/evidence"},
     "FAILED!", "use an absolute socket path"),
    ("drain-unknown-container", "runc_pipe_drain",
     {"container_ids": [UNKNOWN_CID], "evidence_dir": "{ev}/evidence", "min_age_seconds": 0, "confirm_interval": 0.1},
     "SUCCESS", lambda r: r["changed"] is False and not r["drained"]),

    ("hung-no-socket", "hung_container_info", {"docker_host": "unix:///nonexistent/docker.sock", "timeout": 1},
     "FAILED!", "No such file"),
    ("hung-scheme-unknown", "hung_container_info", {"docker_host": "ftp://localhost:21"}, "FAILED!", "docker_host"),
    ("hung-timeout-negative", "hung_container_info", {"timeout": -1}, "FAILED!", "timeout must be greater than 0"),
    ("hung-total-timeout-zero", "hung_container_info", {"total_timeout": 0}, "FAILED!", "total_timeout must be"),
    ("hung-concurrency-zero", "hung_container_info", {"concurrency": 0}, "FAILED!", "concurrency must be between"),
    ("hung-concurrency-type", "hung_container_info", {"concurrency": "many"}, "FAILED!", "concurrency"),

    ("convert-nothing-given", "exec_probe_swap", {}, "FAILED!", "one of the following is required"),
    ("convert-path-missing", "exec_probe_swap", {"path": "/nonexistent/manifests"}, "FAILED!",
     "neither a file nor a directory"),
    ("convert-definitions-not-dicts", "exec_probe_swap", {"definitions": ["livenessProbe"]}, "FAILED!",
     "definitions"),
    ("convert-min-timeout-zero", "exec_probe_swap", {"definitions": [], "min_timeout_seconds": 0}, "FAILED!",
     "at least 1"),
    ("convert-broken-yaml", "exec_probe_swap", {"path": "{ev}/broken.yaml"}, "FAILED!", "broken.yaml"),
]


def _prepare(case_dir):
    """The files some cases point at."""
    case_dir.mkdir(parents=True, exist_ok=True)
    (case_dir / "file").write_text("not a directory\n")
    target = case_dir / "elsewhere"
    target.mkdir(exist_ok=True)
    os.symlink(str(target), str(case_dir / "link"))
    os.lchown(str(case_dir / "link"), NOBODY, NOBODY)
    (case_dir / "theirs").mkdir(mode=0o700, exist_ok=True)
    os.chown(str(case_dir / "theirs"), NOBODY, NOBODY)
    (case_dir / "shared").mkdir(exist_ok=True)
    (case_dir / "shared").chmod(0o777)
    (case_dir / "broken.yaml").write_text("kind: Pod\nspec: [containers:\n  - {name: x\n")


def _fill(value, ev):
    if isinstance(value, str):
        return value.replace("{ev}", ev)
    if isinstance(value, list):
        return [_fill(v, ev) for v in value]
    if isinstance(value, dict):
        return dict((k, _fill(v, ev)) for k, v in value.items())
    return value


def run_cases(cases, base):
    """All CASES in one ansible-playbook run (one start-up instead of one per
    case): each task registers its result and may fail; the results are
    written to a file as JSON.  Returns {case id: result with _status}."""
    tasks = []
    for i, (name, module, args, dummy, dummy2) in enumerate(cases):
        ev = base / name
        _prepare(ev)
        tasks.append({"name": name, "hangdoctor.runtime." + module: _fill(args, str(ev)),
                      "register": "case_%d" % i, "ignore_errors": True})
    out = base / "results.json"
    tasks.append({"name": "collect", "ansible.builtin.copy": {
        "dest": str(out),
        "content": "{{ %s | to_json }}" % ("[" + ", ".join("case_%d" % i for i in range(len(cases))) + "]")}})
    play = [{"hosts": "localhost", "gather_facts": False, "connection": "local",
             "vars": {"ansible_python_interpreter": sys.executable}, "tasks": tasks}]
    book = base / "bad_input.yml"
    book.write_text(json.dumps(play, indent=1))
    r = subprocess.run(["ansible-playbook", "-i", "localhost,", str(book)], capture_output=True, text=True,
                       timeout=600, env=ansible_env(), check=False)
    assert out.exists(), "playbook did not finish (rc=%s):\n%s\n%s" % (r.returncode, r.stdout[-3000:], r.stderr[-3000:])
    results = json.loads(out.read_text())
    for res in results:
        res["_status"] = "FAILED!" if res.get("failed") else ("CHANGED" if res.get("changed") else "SUCCESS")
    return dict(zip([c[0] for c in cases], results))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    return run_cases(CASES, tmp_path_factory.mktemp("bad-input"))


def judge(tally, result, status, expect):
    """Counted first, asserted after: a traceback or a wrong answer is bad."""
    clean = decoys.no_crash(result)
    if callable(expect):
        right = result["_status"] == status and expect(result)
    else:
        right = result["_status"] == status and expect in result.get("msg", "")
    tally.add("bad_inputs", bad=not (clean and right))
    assert clean, "traceback in %s" % json.dumps(result)[:3000]
    assert right, json.dumps(result)[:3000]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_clearly(outcomes, tally, case):
    name, dummy, dummy2, status, expect = case
    judge(tally, outcomes[name], status, expect)


# ---- not running as root ---------------------------------------------------
@pytest.fixture(scope="module")
def unprivileged():
    """A target interpreter that drops to nobody (setpriv), reachable by it:
    outside /root, world-readable, and the module arrives on stdin
    (pipelining), since nobody cannot read root's remote temp folder."""
    setpriv = shutil.which("setpriv")
    python = "/usr/bin/python3"
    if not setpriv or not os.access(python, os.X_OK):
        pytest.skip("setpriv or /usr/bin/python3 missing: cannot run a module unprivileged")
    d = Path(tempfile.mkdtemp(prefix="hd-nobody-", dir="/tmp"))
    d.chmod(0o1777)
    wrapper = d / "python"
    wrapper.write_text("#!/bin/sh\nexec %s --reuid=%d --regid=%d --clear-groups %s \"$@\"\n"
                       % (setpriv, NOBODY, NOBODY, python))
    wrapper.chmod(0o755)
    yield {"python": str(wrapper), "env": {"ANSIBLE_PIPELINING": "1"}, "dir": d}
    shutil.rmtree(str(d), ignore_errors=True)


def test_runc_exec_info_unprivileged(unprivileged, tally):
    res, dummy = run_module("runc_exec_info", {}, python=unprivileged["python"], env=unprivileged["env"])
    judge(tally, res, "FAILED!", ROOT_MSG)


def test_runc_pipe_drain_unprivileged_with_a_stuck_exec(harness, release, unprivileged, tally):
    cid = harness.run_container("rel-bad-nobody")
    dummy, pid = harness.hang(cid)
    decoys.assert_stuck(harness, cid, pid)
    # an evidence directory nobody can write, so that only the privilege is missing
    args = {"container_ids": [cid], "min_age_seconds": 0, "confirm_interval": 0.3,
            "evidence_dir": str(unprivileged["dir"] / "evidence")}
    res, dummy = run_module("runc_pipe_drain", args, python=unprivileged["python"], env=unprivileged["env"])
    assert decoys.blocked_on_full_pipe(pid), "the unprivileged run touched the pipe"
    judge(tally, res, "FAILED!", "root")


def test_no_module_needs_psutil():
    """psutil missing: no target module or module_utils imports psutil (only
    the standard library is used on the target), so there is nothing to skip
    or guard.  A new psutil import must come with a missing_required_lib guard
    and a test here."""
    plugins = Path(__file__).resolve().parents[2] / "plugins"
    importers = [str(p) for p in plugins.rglob("*.py")
                 if any(line.split()[:2] in (["import", "psutil"], ["from", "psutil"])
                        for line in p.read_text().splitlines())]
    assert importers == []


# ---- hostile peers and namespaces --------------------------------------------
ODD_LISTING = [{"Id": ["x"], "Names": ["/a"]}, {"Id": "odd-1", "Names": [1], "Labels": "x", "State": 3},
               {"Id": "odd-2", "Names": "y", "Labels": {"io.kubernetes.pod.name": ["p"]}}, "junk", None]


def test_hung_container_info_with_odd_json_from_a_non_docker_peer(tally):
    from fake_engine import FakeDaemon, answer

    def odd(conn, line, d):
        path = line.split()[1]
        if path == "/version":
            return answer(conn, body={"ApiVersion": "1.41", "Version": {"odd": True}})
        if path.startswith("/v1.41/containers/json"):
            return answer(conn, body=ODD_LISTING)
        return answer(conn, body={"Id": ["x"]})
    peer = FakeDaemon(odd)
    try:
        res, dummy = run_module("hung_container_info", {"docker_host": peer.docker_host, "timeout": 2})
        judge(tally, res, "SUCCESS",
              lambda r: sorted(c["id"] for c in r["containers"]) == ["odd-1", "odd-2"] and r["hung"] == [])
    finally:
        peer.close()


def test_kill_fallback_with_another_pid_namespaces_procfs(tally, tmp_path):
    """proc_root pointing at the procfs of another pid namespace (here a
    fresh one, as a pod without hostPID sees the host's): its pids are not
    ours, so a kill would hit another process or none."""
    unshare = shutil.which("unshare")
    if not unshare:
        pytest.skip("unshare missing")
    p = subprocess.Popen([unshare, "--pid", "--fork", "--mount-proc", "sleep", "300"], start_new_session=True)
    try:
        proc_root = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc_root is None:
            try:
                with open("/proc/%d/task/%d/children" % (p.pid, p.pid)) as f:
                    kids = f.read().split()
            except OSError:
                kids = []
            if kids and os.path.isfile("/proc/%s/root/proc/1/stat" % kids[0]):
                proc_root = "/proc/%s/root/proc" % kids[0]
            time.sleep(0.05)
        assert proc_root, "no procfs of a new pid namespace"
        args = {"proc_root": proc_root, "fallback": "kill", "min_age_seconds": 0, "confirm_interval": 0.1,
                "evidence_dir": str(tmp_path / "evidence")}
        res, dummy = run_module("runc_pipe_drain", args)
        judge(tally, res, "FAILED!", "fallback=kill refused")
        # fallback none works there: nothing is signalled
        res, dummy = run_module("runc_pipe_drain", dict(args, fallback="none"))
        judge(tally, res, "SUCCESS", lambda r: r["drained"] == [])
    finally:
        os.killpg(p.pid, 9)
        p.wait(10)
