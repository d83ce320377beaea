"""The detect and remediate playbooks over a fleet: 100 inventory hosts on the
local connection (forks 10 and 50) and 14 hosts over real SSH (a private
sshd that this benchmark starts on 127.0.0.2-127.0.0.15 and stops, pipelining
and ControlPersist as users run Ansible, forks 10).

Each host runs the whole playbook against an empty proc_root and a missing
Docker socket, so the hosts do the real per-host work of a healthy node (the
common case in a fleet run) without a container runtime.  The remediate
playbook runs with its default serial policy (20%).  A small callback records,
per host, how long each task took; the module share is the time spent in the
hangdoctor modules over the host's total task time.

Baseline, measured in the same run right before each playbook: one
ansible.builtin.ping per host (the fixed cost of reaching a host through
Ansible).  Each ratio is the median of --repeat ping/playbook pairs (default
3), every pair printed with the load average at its start (the machine may be
shared: a pair is at the mercy of its neighbours).  Targets (issue #25):
detect <= 1.2x and remediate of a healthy fleet <= 1.3x the ping wall, local
and over SSH.  --ab TREE runs the playbooks of another collection tree (a
directory holding ansible_collections/hangdoctor/runtime, e.g. an older
commit laid out with git archive) in the same pairs, right after this one's.
--big HOSTS adds one more size at the last forks value (no target).

The SSH variant needs sshd (Debian's openssh-server): when it is missing the
benchmark installs it with apt-get (as root), as scripts/bootstrap.sh does
for the test packages; --ssh 0 leaves it out.

    python bench/bench_remediate_fleet.py [--hosts 100] [--forks 10,50] [--ssh 14] [--repeat 3] [--ab TREE]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CALLBACK = '''
import json, os, time
from ansible.plugins.callback import CallbackBase

class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "hd_timing"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.start = {}
        self.rows = []

    def v2_runner_on_start(self, host, task):
        self.start[(host.get_name(), task._uuid)] = time.monotonic()

    def _end(self, result, **kwargs):
        key = (result._host.get_name(), result._task._uuid)
        t0 = self.start.pop(key, None)
        if t0 is not None:
            self.rows.append([result._host.get_name(), result._task.action, time.monotonic() - t0])

    v2_runner_on_ok = v2_runner_on_failed = v2_runner_on_skipped = v2_runner_on_unreachable = _end

    def v2_playbook_on_stats(self, stats):
        with open(os.environ["HD_TIMING_OUT"], "w") as f:
            json.dump(self.rows, f)
'''

PING = """---
- name: Baseline
  hosts: all
  gather_facts: false
  tasks:
    - name: Ping
      ansible.builtin.ping:
"""


def collections_path():
    sys.path.insert(0, str(ROOT / "tests" / "utils"))
    from colltree import collections_path as tree  # pylint: disable=import-outside-toplevel
    return tree()


def run(work, playbook, hosts, forks, tree=None, inventory="inventory.json"):
    out = work / ("timing-%s-%d.json" % (Path(playbook).stem, forks))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=tree or collections_path(), ANSIBLE_CALLBACK_PLUGINS=str(work / "cb"),
               ANSIBLE_CALLBACKS_ENABLED="hd_timing", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal",
               ANSIBLE_HOST_KEY_CHECKING="0", HD_TIMING_OUT=str(out), ANSIBLE_LOCALHOST_WARNING="0",
               # over SSH as users run Ansible: pipelining, ControlPersist
               ANSIBLE_PIPELINING="1", ANSIBLE_SSH_CONTROL_PATH_DIR=str(work / "cp"))
    # become is a play keyword: an extra var, not an inventory var.  The
    # playbooks' own serial policies (detect 100%, remediate 20%) stay.
    play_vars = {"hangdoctor_become": False}
    cmd = ["ansible-playbook", "-i", str(work / inventory), "-f", str(forks), playbook,
           "-e", json.dumps(play_vars)]
    t0 = time.monotonic()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600, check=False)
    wall = time.monotonic() - t0
    if r.returncode != 0:
        sys.exit("%s failed (rc %d):\n%s\n%s" % (playbook, r.returncode, r.stdout[-3000:], r.stderr[-3000:]))
    rows = json.loads(out.read_text())
    per_host = {}
    module = {}
    for host, action, secs in rows:
        per_host[host] = per_host.get(host, 0.0) + secs
        if action.startswith("hangdoctor.runtime.") and action != "hangdoctor.runtime.report_write":
            module[host] = module.get(host, 0.0) + secs
    assert len(per_host) == hosts, (len(per_host), hosts)
    total = sum(per_host.values())
    return {"wall": wall, "task_seconds_per_host": total / hosts,
            "module_seconds_per_host": sum(module.values()) / hosts,
            "module_share": (sum(module.values()) / total) if total else 0.0}


TARGETS = {"detect": 1.2, "remediate": 1.3}


def write_inventory(work, hosts, name="inventory.json", hostvars=None, common=None):
    hostvars = hostvars or {"node%03d" % i: {} for i in range(hosts)}
    inv = {"all": {"hosts": hostvars, "vars": dict(common or {"ansible_connection": "local"}, **{
        "ansible_python_interpreter": sys.executable,
        "hangdoctor_proc_root": str(work / "proc"),
        "hangdoctor_docker_host": "unix://%s/none.sock" % work,
        "hangdoctor_report_dir": str(work / "report"),
        "hangdoctor_metrics_dir": str(work / "metrics"),
        "hangdoctor_confirm_interval": 0.2})}}
    (work / name).write_text(json.dumps(inv))


def row(name, hosts, r, load):
    print("%-34s %8.1f %10.1f %12.3f %8.3f %7.0f%% %6.2f" % (
        name, r["wall"], hosts / r["wall"], r["task_seconds_per_host"], r["module_seconds_per_host"],
        100 * r["module_share"], load), flush=True)


def compare(work, hosts, forks, opts, label="local", inventory="inventory.json", targets=True):
    """ping, then each playbook (and the --ab tree's), REPEAT times at FORKS;
    prints every pair with the load average at its start and the median of
    the pairs' ratios, and returns the medians."""
    trees = [("", None)] + ([("ab ", opts.ab)] if opts.ab else [])
    ratios = {}
    for book in opts.books.split(","):
        pairs = {name: [] for name, dummy in trees}
        loads = []
        for dummy in range(opts.repeat):
            load = os.getloadavg()[0]
            loads.append(load)
            base = run(work, str(work / "ping.yml"), hosts, forks, inventory=inventory)
            row("ping %s forks=%d" % (label, forks), hosts, base, load)
            for name, tree in trees:
                load = os.getloadavg()[0]
                r = run(work, "hangdoctor.runtime." + book, hosts, forks, tree=tree, inventory=inventory)
                row("%s%s %s forks=%d" % (name, book, label, forks), hosts, r, load)
                pairs[name].append(r["wall"] / base["wall"])
                report = json.loads((work / "report" / ("hangdoctor-%s.json" % book)).read_text())
                assert report["totals"]["hosts_reported"] == hosts, report["totals"]
        for name, dummy in trees:
            ratio = statistics.median(pairs[name])
            ratios[name + book] = ratio
            verdict = ""
            if targets and not name:
                verdict = " (target <= %.1fx: %s)" % (TARGETS[book], "met" if ratio <= TARGETS[book] else "MISSED")
            print("  %s%s / ping wall ratio, %d hosts %s, forks=%d: %.2fx%s  [pairs: %s; load %s]" % (
                name, book, hosts, label, forks, ratio, verdict, ", ".join("%.2f" % x for x in pairs[name]),
                "-".join("%.1f" % x for x in (min(loads), max(loads)))), flush=True)
    return ratios


SSHD_CONFIG = """Port {port}
{listen}
HostKey {d}/host_ed25519
PidFile {d}/sshd.pid
AuthorizedKeysFile {d}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxStartups 200:30:400
MaxSessions 100
"""


def free_port():
    import socket  # pylint: disable=import-outside-toplevel
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sshd(work, hosts):
    """A private sshd on 127.0.0.2 .. 127.0.0.(HOSTS+1), one port, root by key
    only; returns (process, inventory vars per host)."""
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.path.exists(sshd):
        print("installing openssh-server (apt-get) for the SSH variant", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "openssh-server"],
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), check=True, stdout=subprocess.DEVNULL)
    d = work / "ssh"
    d.mkdir(mode=0o700)
    (work / "cp").mkdir(exist_ok=True)
    for key in ("host_ed25519", "client_ed25519"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
    (d / "authorized_keys").write_text((d / "client_ed25519.pub").read_text())
    port = free_port()
    addrs = ["127.0.0.%d" % (i + 2) for i in range(hosts)]
    (d / "sshd_config").write_text(SSHD_CONFIG.format(
        port=port, d=d, listen="\n".join("ListenAddress %s:%d" % (a, port) for a in addrs)))
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    proc = subprocess.Popen([sshd, "-D", "-f", str(d / "sshd_config"), "-E", str(d / "sshd.log")])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit("sshd did not start: %s" % (d / "sshd.log").read_text()[-2000:])
        try:
            import socket  # pylint: disable=import-outside-toplevel
            socket.create_connection((addrs[-1], port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    hostvars = {"ssh%02d" % i: {"ansible_host": a, "ansible_port": port} for i, a in enumerate(addrs)}
    common = {"ansible_connection": "ssh", "ansible_user": "root",
              "ansible_ssh_private_key_file": str(d / "client_ed25519"),
              "ansible_ssh_common_args": "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no"}
    return proc, hostvars, common


def stop_sshd(work, proc):
    # the ControlPersist masters first: their sessions outlive the listener
    for sock in (work / "cp").glob("*") if (work / "cp").is_dir() else []:
        subprocess.run(["ssh", "-o", "ControlPath=%s" % sock, "-O", "exit", "x"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=10, check=False)
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--hosts", type=int, default=100, help="local hosts (0: no local run)")
    ap.add_argument("--forks", default="10,50")
    ap.add_argument("--ssh", type=int, default=14, help="hosts over SSH at forks 10 (0: no SSH run)")
    ap.add_argument("--big", type=int, default=0, help="also this many hosts at the last forks value")
    ap.add_argument("--repeat", type=int, default=3, help="ping/playbook pairs per ratio (the median is reported)")
    ap.add_argument("--books", default="detect,remediate")
    ap.add_argument("--ab", default="", help="another collection tree, run in the same pairs")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hd-bench-fleet-"))
    sshd = None
    try:
        (work / "cb").mkdir()
        (work / "metrics").mkdir()
        (work / "cb" / "hd_timing.py").write_text(CALLBACK)
        # A fixture /proc of a node without containers: only the system-wide
        # stat file the modules use to tell a procfs from a typo.
        (work / "proc").mkdir()
        (work / "proc" / "stat").write_text(Path("/proc/stat").read_text())
        (work / "ping.yml").write_text(PING)
        forks = [int(f) for f in a.forks.split(",")]
        print("detect and remediate playbooks (empty proc_root, no Docker socket), %d cores" % os.cpu_count())
        print("%-34s %8s %10s %12s %8s %8s %6s" % ("run", "wall s", "hosts/s", "task s/host", "module", "share", "load"))
        if a.ssh:
            sshd, hostvars, common = start_sshd(work, a.ssh)
            write_inventory(work, a.ssh, "ssh.json", hostvars, common)
            run(work, str(work / "ping.yml"), a.ssh, 10, inventory="ssh.json")  # warm the ControlPersist masters
            compare(work, a.ssh, 10, a, label="ssh", inventory="ssh.json")
        if a.hosts:
            write_inventory(work, a.hosts)
            for f in forks:
                compare(work, a.hosts, f, a)
        if a.big:
            write_inventory(work, a.big)
            compare(work, a.big, forks[-1], a, targets=False)
    finally:
        stop_sshd(work, sshd)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
