"""Benchmark: what one node_doctor run costs beyond an ``ansible ping``, before
and after (issue 25: module run <= 1.2x ping).

The node is an empty one (a procfs fixture with no process, no engine
socket, metrics off), so what is timed is the module's fixed cost: Python,
the AnsiballZ payload, the imports (a module_util is compiled from the zip
on every run, so what is imported on the healthy path costs on every host),
option parsing, the summary.  In the same run:
  - BEFORE: this collection at git revision BASE (``git archive`` into a
    temporary collections tree); AFTER: this checkout;
  - target side: the AnsiballZ files ansible leaves with
    ANSIBLE_KEEP_REMOTE_FILES, each run ROUNDS times interleaved with the
    ping's (wall and CPU of the child; least of N and the median of the
    per-round ratios);
  - whole ad hoc runs (``ansible localhost -m ...``: controller + target),
    PAIRS pairs of node_doctor and ping, median ratio.
Prints every figure, the ratios and met/missed against 1.2x, and the load
average (the machine is shared: wall figures under load say so).

``--floor`` splits AFTER's target-side cost in the same rounds, with two
modules derived from node_doctor's own source in a copy of the tree: one
that only parses node_doctor's options (Python, ansible's basic, the option
tables) and exits, and one that imports everything node_doctor imports on
this path and exits right after the options.  Their differences are what
the import of the shipped module_utils costs and what the run itself costs.
``python bench/bench_module_fixed_cost.py [--base REV] [--rounds 9] [--pairs 3] [--floor]``
"""
import argparse
import glob
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "utils"))
from colltree import collections_path  # noqa: E402

ND_ARGS = "proc_root={fx} docker_host=unix://{fx}/no-docker.sock containerd_address={fx}/no-containerd.sock metrics_dir=''"


def fixture(root):
    """A procfs with nothing on it: btime, self/stat, pid 1's fd folder and
    an empty unix socket table."""
    for d in ("self", "1/fd", "1/net"):
        os.makedirs(os.path.join(root, d))
    with open("/proc/stat") as f:
        btime = [ln for ln in f if ln.startswith("btime ")][0]
    with open(os.path.join(root, "stat"), "w") as f:
        f.write(btime)
    with open(os.path.join(root, "self", "stat"), "w") as f:
        f.write("1 (init) S 0 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 10 0 0\n")
    with open(os.path.join(root, "1", "net", "unix"), "w") as f:
        f.write("Num       RefCount Protocol Flags    Type St Inode Path\n")


def base_tree(rev, tmp):
    coll = os.path.join(tmp, "base", "ansible_collections", "hangdoctor", "runtime")
    os.makedirs(coll)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", coll], input=archive, check=True)
    return os.path.join(tmp, "base")


def env_for(colls, remote_tmp=None):
    env = dict(os.environ)
    env.update({"ANSIBLE_COLLECTIONS_PATH": colls, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "0",
                "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0", "ANSIBLE_HOST_KEY_CHECKING": "0"})
    if remote_tmp:
        env.update({"ANSIBLE_KEEP_REMOTE_FILES": "1", "ANSIBLE_REMOTE_TMP": remote_tmp})
    return env


def adhoc(module, args, env):
    cmd = ["ansible", "localhost", "-c", "local", "-i", "localhost,", "-e",
           "ansible_python_interpreter=%s" % sys.executable, "-m", module]
    if args:
        cmd += ["-a", args]
    return timed(cmd, env)


def timed(cmd, env=None, cwd=None):
    """(wall, CPU of the child and its children) of one command; it must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0 or '"failed": true' in r.stdout:
        raise SystemExit("%s failed (rc %s):\n%s\n%s" % (cmd[-3:], r.returncode, r.stdout[-2000:], r.stderr[-2000:]))
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def payload(module, args, env, remote_tmp):
    """The AnsiballZ file ansible builds for MODULE ARGS (kept on the 'target')."""
    adhoc(module, args, env)
    found = glob.glob(os.path.join(remote_tmp, "*", "AnsiballZ_*.py"))
    if len(found) != 1:
        raise SystemExit("expected one AnsiballZ file under %s, found %s" % (remote_tmp, found))
    return found[0]


def floor_tree(tmp):
    """A copy of this checkout's collection with two modules derived from
    node_doctor.py: hd_floor_options (its option parsing alone) and
    hd_floor_imports (its imports, then exit after the options)."""
    src = os.path.join(collections_path(), "ansible_collections", "hangdoctor", "runtime")
    coll = os.path.join(tmp, "floor", "ansible_collections", "hangdoctor", "runtime")
    shutil.copytree(src, coll, ignore=shutil.ignore_patterns("__pycache__", ".git", "tests"))
    text = Path(src, "plugins", "modules", "node_doctor.py").read_text()
    first_import = "from ansible_collections.hangdoctor.runtime.plugins.module_utils import"
    options_at = "        opts = _node_doctor.options(module.params)\n"
    spec = text[text.find("    module = AnsibleModule("):text.find("    with reported(module):")]
    if first_import not in text or options_at not in text or not spec:
        raise SystemExit("node_doctor.py no longer has the shape --floor derives its modules from")
    done = "        module.exit_json(changed=False, msg='floor')\n"
    Path(coll, "plugins", "modules", "hd_floor_imports.py").write_text(text.replace(options_at, options_at + done, 1))
    head = text[:text.index(first_import)] + first_import + " _options\n\n\ndef main():\n"
    Path(coll, "plugins", "modules", "hd_floor_options.py").write_text(
        head + spec + done.replace("        ", "    ", 1) + "\n\nif __name__ == '__main__':\n    main()\n")
    return os.path.join(tmp, "floor")


def verdict(ok):
    return "met" if ok else "MISSED"


def print_floor(runs, rounds):
    """AFTER's CPU over ping, split into option parsing, the import of the
    shipped module_utils and the run itself (medians over the rounds)."""
    # least first: on a shared machine the least of N is the steadier estimate of what each costs
    for how, pick in (("least", min), ("median", statistics.median)):
        cpu = dict((k, pick(c for w, c in v)) for k, v in runs.items())
        ping = cpu["ping"]
        print("target-side CPU split (%s of %d rounds; ping %.0f ms, 1.2x leaves %.0f ms over it):"
              % (how, rounds, ping * 1000, ping * 200))
        for label, k, prev in (("options parsed, then exit", "options", "ping"),
                               ("every import of node_doctor, then exit", "imports", "options"),
                               ("the whole run (healthy node)", "after", "imports")):
            print("  %-42s %.0f ms (%.2fx ping): %+.0f ms over the line above"
                  % (label, cpu[k] * 1000, cpu[k] / ping, (cpu[k] - cpu[prev]) * 1000))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--base", default="118b530", help="git revision measured as BEFORE")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--floor", action="store_true", help="split AFTER's target-side cost (options, imports, run)")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="hd-bench-fixed-")
    try:
        fx = os.path.join(tmp, "proc")
        fixture(fx)
        nd_args = ND_ARGS.format(fx=fx)
        trees = {"before": base_tree(a.base, tmp), "after": collections_path()}
        files = {}
        for name, colls in sorted(trees.items()):
            rt = os.path.join(tmp, "rt-" + name)
            files[name] = payload("hangdoctor.runtime.node_doctor", nd_args, env_for(colls, rt), rt)
        rt = os.path.join(tmp, "rt-ping")
        files["ping"] = payload("ansible.builtin.ping", None, env_for(trees["after"], rt), rt)
        if a.floor:
            floor = floor_tree(tmp)
            for name in ("options", "imports"):
                rt = os.path.join(tmp, "rt-" + name)
                files[name] = payload("hangdoctor.runtime.hd_floor_" + name, nd_args, env_for(floor, rt), rt)
        print("AnsiballZ sizes: %s" % ", ".join("%s %d KB" % (k, os.path.getsize(v) // 1024) for k, v in sorted(files.items())))

        # target side: each AnsiballZ file run as ansible runs it (python FILE), interleaved
        runs = dict((k, []) for k in files)
        order = ("ping", "before", "after") + (("options", "imports") if a.floor else ())
        for dummy in range(a.rounds):
            for k in order:
                runs[k].append(timed([sys.executable, files[k]], cwd=tmp))
        least = dict((k, (min(w for w, c in v), min(c for w, c in v))) for k, v in runs.items())
        ratio = {}
        for k in ("before", "after"):
            ratio[k] = (statistics.median(runs[k][i][0] / runs["ping"][i][0] for i in range(a.rounds)),
                        statistics.median(runs[k][i][1] / runs["ping"][i][1] for i in range(a.rounds)))
        print("target side (python AnsiballZ_*.py), least of %d: wall / CPU" % a.rounds)
        for k in ("ping", "before", "after"):
            print("  %-6s %.3f s / %.3f s" % (k, least[k][0], least[k][1]))
        for k in ("before", "after"):
            print("  node_doctor %s vs ping (median of per-round ratios): wall %.2fx, CPU %.2fx; least-of-N CPU %.2fx"
                  % (k, ratio[k][0], ratio[k][1], least[k][1] / least["ping"][1]))
        print("  node_doctor fixed cost over ping (least CPU): before %.0f ms, after %.0f ms"
              % ((least["before"][1] - least["ping"][1]) * 1000, (least["after"][1] - least["ping"][1]) * 1000))
        if a.floor:
            print_floor(runs, a.rounds)

        # whole ad hoc runs, controller included, in pairs
        pairs = dict((k, []) for k in ("before", "after"))
        for dummy in range(a.pairs):
            for k in ("before", "after"):
                nd = adhoc("hangdoctor.runtime.node_doctor", nd_args, env_for(trees[k]))
                ping = adhoc("ansible.builtin.ping", None, env_for(trees[k]))
                pairs[k].append((nd[0] / ping[0], nd[1] / ping[1], nd, ping))
        for k in ("before", "after"):
            wall = statistics.median(p[0] for p in pairs[k])
            cpu = statistics.median(p[1] for p in pairs[k])
            print("ad hoc node_doctor %s vs ansible ping, median of %d pairs: wall %.2fx (target <= 1.2x): %s; CPU %.2fx: %s"
                  % (k, a.pairs, wall, verdict(wall <= 1.2), cpu, verdict(cpu <= 1.2)))
        print("target-side node_doctor after vs ping, median of %d rounds: wall %.2fx (target <= 1.2x): %s; CPU %.2fx: %s"
              % (a.rounds, ratio["after"][0], verdict(ratio["after"][0] <= 1.2), ratio["after"][1], verdict(ratio["after"][1] <= 1.2)))
        print("machine load while measuring: %s" % open("/proc/loadavg").read().strip())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
