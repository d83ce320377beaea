"""The node-problem-detector plugin against a real deadlock in the harness
(dockerd + containerd + shim v2 + the fault runtime): OK on a healthy node,
a problem naming the pod while an exec is stuck (scanning /proc itself, and
reading a metrics file rendered from a real scan), OK again once released."""
import glob
import os
import subprocess
import sys
from pathlib import Path

import hdharness
from conftest import collections_path, run_module

sys.path.insert(0, collections_path())
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _summary as sm  # noqa: E402
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _metrics  # noqa: E402

PLUGIN = Path(__file__).resolve().parents[2] / "extras" / "node-problem-detector" / "hangdoctor_npd.py"
POD = {"io.kubernetes.pod.namespace": "shop", "io.kubernetes.pod.name": "cart-0", "io.kubernetes.container.name": "cart"}
LIMIT = 80
# The oldest python3 a node may have (CentOS 7's 3.6), when pyenv has it.
NODE_PYTHON = (sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.6.*/bin/python3.6"))) or [sys.executable])[0]


def plugin(*args):
    """As NPD runs it: a node's python3, exit code and the first line of output."""
    r = subprocess.run([NODE_PYTHON, str(PLUGIN), "--max-output", str(LIMIT), *map(str, args)],
                       capture_output=True, text=True, timeout=60, check=False)
    line = r.stdout.split("\n", 1)[0]
    assert len(line) <= LIMIT, line
    return r.returncode, line


CAP_SYS_PTRACE = 19


def as_in_the_daemonset(tmp_path, scope, caps="+sys_ptrace"):
    """Run the plugin in a new pid and mount namespace with the host's /proc
    bound at HOST/proc and its own /proc remounted, with every capability but
    CAP_SYS_PTRACE dropped: (exit code, first line, CapEff of the plugin)."""
    host_proc = tmp_path / ("host%s" % caps) / "proc"
    host_proc.mkdir(parents=True)
    out = tmp_path / ("capeff%s" % caps)
    inner = ("mount --bind /proc {hp} && mount -t proc proc /proc && "
             "exec setpriv --no-new-privs --bounding-set -all{caps} --inh-caps -all "
             "sh -c 'grep CapEff /proc/self/status > {out}; exec \"$0\" \"$@\"' "
             "{py} {plugin} --max-output {limit} --proc-root {hp} {scope}").format(
        hp=host_proc, out=out, caps="," + caps if caps else "", py=NODE_PYTHON, plugin=PLUGIN, limit=LIMIT, scope=" ".join(scope))
    r = subprocess.run(["unshare", "--pid", "--fork", "--mount", "--propagation", "private", "sh", "-c", inner],
                       capture_output=True, text=True, timeout=60, check=False)
    line = r.stdout.split("\n", 1)[0]
    assert out.exists(), r.stderr
    return r.returncode, line, out.read_text().split()[-1]


def test_plugin_on_a_healthy_node_a_real_deadlock_and_after(harness, release, tmp_path):
    name = "npd-%d" % os.getpid()
    if harness.container_id(name):
        harness.docker("rm", "-f", name, timeout=30, check=True)
    labels = []
    for k, v in POD.items():
        labels += ["--label", "%s=%s" % (k, v)]
    cid = harness.docker("run", "-d", "--name", name, "--network", "none", "--runtime", hdharness.FAULT_RUNTIME,
                         *labels, hdharness.IMAGE, "sleep", "100000", timeout=60, check=True).stdout.strip()
    # Other deadlocks on a shared machine are not this test's: look at this container only.
    scope = ["--collection-path", collections_path(), "--container-ids", cid, "--confirm-interval", "0.3"]
    try:
        rc, line = plugin(*scope)
        assert rc == 0 and line.startswith("no stuck exec"), line

        proc, pid = harness.hang(cid)
        assert pid is not None, "the fault runtime did not deadlock the exec"
        ev = hdharness.evidence(pid)
        assert ev["comm"] == "runc:[2:INIT]" and ev["queued"] == ev["capacity"], ev
        assert not harness.inspect_answers(cid, timeout=1.0)

        rc, line = plugin(*scope)
        assert rc == 1, line
        assert line == "1 stuck exec(s): shop/cart-0 (cart)", line

        # As the detect DaemonSet runs: its own pid namespace (hostPID false),
        # the host's procfs at another path, CAP_SYS_PTRACE as its only
        # capability, no_new_privs.
        rc, line, caps = as_in_the_daemonset(tmp_path, scope)
        assert caps == "%016x" % (1 << CAP_SYS_PTRACE), caps
        assert rc == 1 and line == "1 stuck exec(s): shop/cart-0 (cart)", line
        # Root without CAP_SYS_PTRACE cannot read the fds of processes that
        # hold every capability: the plugin says "unknown", never "OK".
        rc, line, caps = as_in_the_daemonset(tmp_path, scope, caps="")
        assert caps == "0" * 16, caps
        assert rc == 2 and "CAP_SYS_PTRACE" in line, line

        # The textfile source, on a file rendered from a real scan.
        info, dummy = run_module("runc_exec_info", {"container_ids": [cid], "confirm_interval": 0.3})
        assert [x["container_id"] for x in info["stuck_execs"]] == [cid]
        metrics = tmp_path / "hangdoctor.prom"
        metrics.write_text(_metrics.render(sm.host_summary(info, None, host="localhost")))
        rc, line = plugin("--source", "textfile", "--metrics-file", metrics)
        assert rc == 1 and line == "1 stuck exec(s): shop/cart-0 (cart)", line

        harness.release_all()
        proc.wait(30)
        rc, line = plugin(*scope)
        assert rc == 0, line
    finally:
        harness.release_all()
        harness.docker("rm", "-f", name, timeout=60)
