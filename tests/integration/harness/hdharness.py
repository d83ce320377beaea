"""The real-runtime harness: containerd + dockerd from Debian's packages on
private sockets under one temporary folder, a busybox image made with
``docker import``, and a fault-injecting OCI runtime that reproduces the
runc-init stderr-pipe deadlock in real shim v2 and shim v1 processes.

Usable from tests (``Harness``) and by people (``harness.sh up|run|hang|status|down``).
Controller-side test code: modern Python is fine here.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REAL_RUNC = shutil.which("runc", path="/usr/sbin:/usr/bin:/sbin:/bin") or "/usr/sbin/runc"
F_GETPIPE_SZ = 1032
DEFAULT_DUMP_SIZE = 256 * 1024
FAULT_RUNTIME = "hd-fault"
V1_RUNTIME = "io.containerd.runtime.v1.linux"
IMAGE = "hangdoctor/busybox:latest"
STATE_FILE = "harness.json"
REQUIRED_BINARIES = ("dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2", "runc", "busybox", "cc")


class HarnessError(RuntimeError):
    pass


def _docker_cli():
    # Debian's docker.io client matches its daemon; any client negotiates.
    for cand in ("/usr/bin/docker", shutil.which("docker")):
        if cand and os.path.exists(cand):
            return cand
    raise HarnessError("no docker client found (apt-get install docker.io)")


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


def proc_comm(pid, proc="/proc"):
    try:
        with open(f"{proc}/{pid}/comm") as f:
            return f.read().rstrip("\n")
    except OSError:
        return None


def proc_ppid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
        return int(data[data.rindex(")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _stat_fields(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
        return data[data.rindex(")") + 2:].split()
    except (OSError, ValueError):
        return None


def proc_stat_starttime(pid):
    """stat field 22: with the pid, the identity of a process."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def proc_state(pid):
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def thread_states(pid):
    """State letter of every thread of PID."""
    states = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return states
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                data = f.read()
            states.append(data[data.rindex(")") + 2:].split()[0])
        except (OSError, ValueError):
            continue
    return states


@contextlib.contextmanager
def frozen(pid, timeout=5.0):
    """PID SIGSTOPped for a with-block, and really stopped: SIGSTOP is
    asynchronous, and a thread of a busy daemon may still answer a request
    unless we wait until every thread shows T."""
    os.kill(pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(s in ("T", "t") for s in thread_states(pid) or ["?"]):
            time.sleep(0.02)
        states = thread_states(pid)
        assert states and all(s in ("T", "t") for s in states), states
        yield pid
    finally:
        os.kill(pid, signal.SIGCONT)


def proc_cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def pipe_inode(pid, fd=2):
    try:
        link = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None
    if link.startswith("pipe:["):
        return int(link[6:-1])
    return None


def pipe_fill(pid, fd=2):
    """(queued bytes, capacity) of the pipe at /proc/PID/fd/FD, read without consuming."""
    f = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK)
    try:
        buf = fcntl.ioctl(f, termios.FIONREAD, b"\0\0\0\0")
        queued = int.from_bytes(buf, sys.byteorder)
        cap = fcntl.fcntl(f, F_GETPIPE_SZ)
        return queued, cap
    finally:
        os.close(f)


def pipe_holders(inode):
    """[(pid, fd, flags)] of every process holding pipe INODE open."""
    out = []
    target = f"pipe:[{inode}]"
    for pid in pids():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") != target:
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}") as fi:
                    flags = next(int(l.split()[1], 8) for l in fi if l.startswith("flags:"))
            except (OSError, StopIteration, ValueError):
                continue
            out.append((pid, int(fd), flags))
    return out


def syscall_of(pid):
    try:
        with open(f"/proc/{pid}/syscall") as f:
            return f.read().split()
    except OSError:
        return []


def wchan_of(pid):
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return f.read().strip()
    except OSError:
        return ""


class Harness:
    """One private containerd + dockerd under ``root``.  ``up()`` is idempotent
    for a root that is already up (the CLI calls it across invocations)."""

    def __init__(self, root=None, dump_size=DEFAULT_DUMP_SIZE, shim_debug=False):
        self.root = Path(root or tempfile.mkdtemp(prefix="hd-", dir="/tmp")).resolve()
        self.dump_size = dump_size
        # containerd's v1 runtime copies its shims' stderr into its own log only with shim_debug
        self.shim_debug = shim_debug
        self.bin = self.root / "bin"
        self.fault = self.root / "fault"
        self.ctd = self.root / "containerd"
        self.dkr = self.root / "docker"
        self.containerd_sock = self.ctd / "c.sock"
        self.docker_sock = self.dkr / "d.sock"
        self.cgroup_parent = "hangdoctor-" + self.root.name
        self.fault_runc = self.bin / "runc"
        self.docker_host = f"unix://{self.docker_sock}"

    # ---- lifecycle -------------------------------------------------------
    def check_prereqs(self):
        if os.geteuid() != 0:
            raise HarnessError("the harness runs dockerd and containerd: run it as root")
        missing = [b for b in REQUIRED_BINARIES if not shutil.which(b, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")]
        if missing:
            raise HarnessError("missing binaries: %s (apt-get install docker.io containerd runc busybox-static gcc)" % " ".join(missing))

    def is_up(self):
        return self._alive(self.dkr / "d.pid") and self._alive(self.ctd / "c.pid")

    def up(self):
        self.check_prereqs()
        if self.is_up():
            return self
        for d in (self.bin, self.fault / "armed", self.fault / "records", self.fault / "hold-start",
                  self.fault / "frozen", self.fault / "stopped", self.ctd, self.dkr):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        self._build_fault_runtime()
        self._start_containerd()
        self._start_dockerd()
        self._make_image()
        (self.root / STATE_FILE).write_text(json.dumps({"docker_host": self.docker_host, "cgroup_parent": self.cgroup_parent}))
        return self

    def _build_fault_runtime(self):
        src = HERE / "fault_runc.c"
        cmd = ["cc", "-O2", "-Wall", "-o", str(self.fault_runc), str(src),
               f'-DREAL_RUNC="{REAL_RUNC}"', f'-DFAULT_DIR="{self.fault}"']
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if r.returncode != 0:
            raise HarnessError("building the fault runtime failed:\n" + r.stderr)

    def _start_containerd(self):
        cfg = self.ctd / "config.toml"
        cfg.write_text(f"""version = 2
root = "{self.ctd}/root"
state = "{self.ctd}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{self.containerd_sock}"
[ttrpc]
  address = "{self.containerd_sock}.ttrpc"
[plugins."io.containerd.runtime.v1.linux"]
  shim = "containerd-shim"
  runtime = "runc"
  no_shim = false
  shim_debug = {"true" if self.shim_debug else "false"}
""")
        env = dict(os.environ)
        # shim v1 finds "runc" through PATH: the fault runtime comes first.
        env["PATH"] = f"{self.bin}:/usr/sbin:/usr/bin:/sbin:/bin"
        log = open(self.ctd / "containerd.log", "ab")
        p = subprocess.Popen(["containerd", "--config", str(cfg)], stdout=log, stderr=log,
                             stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        (self.ctd / "c.pid").write_text(str(p.pid))
        self._wait_for(self.containerd_sock.exists, 30, "containerd socket", p)

    def _start_dockerd(self):
        cfg = self.dkr / "daemon.json"
        cfg.write_text(json.dumps({
            "runtimes": {FAULT_RUNTIME: {"path": str(self.fault_runc)}},
            "features": {"buildkit": False},
        }))
        cmd = ["dockerd", "--config-file", str(cfg),
               "--data-root", str(self.dkr / "data"), "--exec-root", str(self.dkr / "exec"),
               "-H", self.docker_host, "--pidfile", str(self.dkr / "d.pid"),
               "--containerd", str(self.containerd_sock), "--containerd-namespace", "moby",
               "--bridge=none", "--iptables=false", "--ip-masq=false", "--ip6tables=false",
               "--userland-proxy=false", "--cgroup-parent", self.cgroup_parent,
               "--exec-opt", "native.cgroupdriver=cgroupfs", "--log-level", "warn"]
        env = dict(os.environ)
        env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
        log = open(self.dkr / "dockerd.log", "ab")
        p = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
                             start_new_session=True)
        self._wait_for(self._ping, 60, "dockerd", p)

    def _make_image(self):
        if self.docker("images", "-q", IMAGE, timeout=30).stdout.strip():
            return
        rootfs = self.root / "image"
        (rootfs / "bin").mkdir(parents=True, exist_ok=True)
        for d in ("tmp", "proc", "sys", "dev", "etc", "root"):
            (rootfs / d).mkdir(exist_ok=True)
        busybox = shutil.which("busybox")
        shutil.copy2(busybox, rootfs / "bin" / "busybox")
        applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, timeout=30, check=True).stdout.split()
        for a in applets:
            link = rootfs / "bin" / a
            if not link.exists():
                link.symlink_to("busybox")
        (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        tar = self.root / "image.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True, timeout=60)
        self.docker("import", "-c", "ENV PATH=/bin", "-c", 'CMD ["/bin/sh"]', str(tar), IMAGE, timeout=120, check=True)
        shutil.rmtree(rootfs)
        tar.unlink()

    def down(self):
        """Stop everything this root started, unmount, remove the folder."""
        errors = []
        if not self.root.exists():
            return errors
        self.release_all()
        if self._alive(self.dkr / "d.pid"):
            # a courtesy to dockerd: whatever it does not finish in time, the
            # kills below end (a thousand containers outlast any fixed timeout)
            try:
                ids = self.docker("ps", "-aq", timeout=20).stdout.split()
                if ids:
                    self.docker("rm", "-f", *ids, timeout=60 + len(ids) // 5)
            except HarnessError:
                pass
        self._stop(self.dkr / "d.pid", 30)
        self._kill_cgroup_members()
        self._kill_matching(str(self.root))
        self._stop(self.ctd / "c.pid", 15)
        self._kill_matching(str(self.root))
        self._unmount_all()
        self._remove_cgroups()
        shutil.rmtree(self.root, ignore_errors=True)
        if self.root.exists():
            errors.append(f"could not remove {self.root}")
        return errors

    # ---- docker ----------------------------------------------------------
    def docker(self, *args, timeout=60, check=False, input=None):
        cmd = [_docker_cli(), "-H", self.docker_host, *args]
        env = dict(os.environ, DOCKER_CONFIG=str(self.root / "client"))
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, input=input, check=False)
        except subprocess.TimeoutExpired as e:
            raise HarnessError(f"docker {' '.join(args)} did not return within {timeout}s") from e
        if check and r.returncode != 0:
            raise HarnessError(f"docker {' '.join(args)} failed: {r.stderr.strip()}")
        return r

    def docker_bg(self, *args, log=None):
        """A docker CLI call left running (the stuck exec).  Output goes to LOG
        (a path) when given, so the call may outlive this process."""
        env = dict(os.environ, DOCKER_CONFIG=str(self.root / "client"))
        out = open(log, "ab") if log else subprocess.PIPE
        try:
            return subprocess.Popen([_docker_cli(), "-H", self.docker_host, *args], env=env,
                                    stdout=out, stderr=subprocess.STDOUT if log else subprocess.PIPE,
                                    stdin=subprocess.DEVNULL, start_new_session=bool(log))
        finally:
            if log:
                out.close()

    def api(self, path, timeout=5.0, method="GET"):
        """(status, body) of one Engine API call; raises socket.timeout past ``timeout``."""
        conn = _UnixHTTPConnection(str(self.docker_sock), timeout)
        try:
            conn.request(method, path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def inspect_answers(self, cid, timeout=3.0):
        try:
            status = self.api(f"/containers/{cid}/json", timeout=timeout)[0]
            return status == 200
        except (socket.timeout, TimeoutError):
            return False

    def _ping(self):
        try:
            return self.api("/_ping", timeout=2)[0] == 200
        except OSError:
            return False

    def run_container(self, name, layout="v2", memory=None, cmd=("sleep", "100000")):
        runtime = FAULT_RUNTIME if layout == "v2" else V1_RUNTIME
        args = ["run", "-d", "--name", name, "--network", "none", "--runtime", runtime]
        if memory:
            args += ["--memory", memory]
        if self.container_id(name):
            # Names are shared by every test in a session: a leftover of an
            # earlier test makes way (its hang, if any, is released first).
            self.release_all()
            self.docker("rm", "-f", name, timeout=30, check=True)
        r = self.docker(*args, IMAGE, *cmd, timeout=60, check=True)
        return r.stdout.strip()

    def container_id(self, name):
        return self.docker("ps", "-aq", "--no-trunc", "--filter", f"name=^/{name}$", timeout=20, check=True).stdout.strip()

    # ---- the fault -------------------------------------------------------
    def arm(self, cid, size=None, count=1, pipe_size=0):
        """The next COUNT execs in CID crash with a SIZE-byte dump (-1: every
        exec); PIPE_SIZE > 0 shrinks the stderr pipe first (a one-page pipe)."""
        p = self.fault / "armed" / cid
        p.write_text(f"{size or self.dump_size} {count} {pipe_size}\n")

    def hold_start(self, cid):
        """The next ``runc start`` of CID waits until ``release_start``: its
        runc init waits opening exec.fifo (a created, never started container)."""
        (self.fault / "hold-start" / cid).write_text("")

    def release_start(self, cid=None):
        for p in (self.fault / "hold-start").glob(cid or "*"):
            p.unlink()

    def init_pid(self, name_or_id):
        """The container's init pid (asks inspect: call it before hanging the container)."""
        out = self.docker("inspect", "-f", "{{.State.Pid}}", name_or_id, timeout=20, check=True).stdout.strip()
        return int(out)

    def freeze(self, name_or_id):
        """Freeze the container's cgroup behind the engine's back (FROZEN in
        its freezer.state, cgroup v1); ``release_all`` thaws it."""
        pid = self.init_pid(name_or_id)
        with open(f"/proc/{pid}/cgroup") as f:
            path = next("/sys/fs/cgroup/freezer" + line.strip().split(":", 2)[2] for line in f
                        if "freezer" in line.split(":")[1].split(","))
        state = path + "/freezer.state"
        (self.fault / "frozen" / str(pid)).write_text(state)
        with open(state, "w") as f:
            f.write("FROZEN")
        return state

    def stop_shim(self, name_or_id):
        """SIGSTOP the container's shim; ``release_all`` resumes it."""
        shim = proc_ppid(self.init_pid(name_or_id))
        if not (proc_comm(shim) or "").startswith("containerd-shim"):
            raise HarnessError(f"the parent of the container's init is {proc_comm(shim)}, not a shim")
        (self.fault / "stopped" / str(shim)).write_text(str(proc_stat_starttime(shim)))
        os.kill(shim, signal.SIGSTOP)
        return shim

    def _undo_freeze_and_stop(self):
        for f in (self.fault / "frozen").glob("*"):
            try:
                with open(f.read_text(), "w") as g:
                    g.write("THAWED")
            except OSError:
                pass
            f.unlink(missing_ok=True)
        for f in (self.fault / "stopped").glob("*"):
            pid = int(f.name)
            if str(proc_stat_starttime(pid)) == f.read_text():
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            f.unlink(missing_ok=True)

    def disarm(self, cid):
        try:
            (self.fault / "armed" / cid).unlink()
        except FileNotFoundError:
            pass

    def hang(self, name_or_id, size=None, count=1, wait=20.0, exec_cmd=("true",), log=None, pipe_size=0):
        """Start ``docker exec`` in the background with the fault armed; return
        (Popen, stuck runc-init pid or None when the payload fits the pipe)."""
        cid = self.container_id(name_or_id) if len(name_or_id) != 64 else name_or_id
        if not cid:
            raise HarnessError(f"no container {name_or_id}")
        self.arm(cid, size, count, pipe_size)
        before = {p for p, dummy in self.fault_inits(cid)}
        proc = self.docker_bg("exec", cid, *exec_cmd, log=log)
        deadline = time.monotonic() + wait
        size = size or self.dump_size
        while time.monotonic() < deadline:
            for pid, dummy in self.fault_inits(cid):
                if pid in before:
                    continue
                try:
                    queued, cap = pipe_fill(pid)
                except OSError:
                    continue
                if queued >= cap and syscall_of(pid)[:1] in (["1"], ["20"], ["64"], ["66"]):
                    return proc, pid
            if proc.poll() is not None:
                return proc, None
            time.sleep(0.05)
        return proc, None

    def fault_inits(self, cid=None):
        """[(pid, container id)] of live runc:[2:INIT] children of the fault runtime."""
        out = []
        for rec in (self.fault / "records").glob("*.json"):
            try:
                meta = json.loads(rec.read_text())
            except (OSError, ValueError):
                continue
            pid = meta["pid"]
            if proc_comm(pid) != "runc:[2:INIT]":
                continue
            if cid and meta["container_id"] != cid:
                continue
            out.append((pid, meta["container_id"]))
        return out

    def record(self, pid):
        """What the fault child PID wrote: (length, sha256, bytes)."""
        data = (self.fault / "records" / f"{pid}.dump").read_bytes()
        meta = json.loads((self.fault / "records" / f"{pid}.json").read_text())
        assert meta["length"] == len(data)
        return len(data), hashlib.sha256(data).hexdigest(), data

    def records(self):
        out = []
        for rec in sorted((self.fault / "records").glob("*.json")):
            try:
                meta = json.loads(rec.read_text())
            except (OSError, ValueError):
                continue
            out.append(meta)
        return out

    def fault_processes(self):
        """Live processes running the fault runtime binary (parents and children)."""
        out = []
        target = str(self.fault_runc)
        for pid in pids():
            try:
                if os.readlink(f"/proc/{pid}/exe") == target:
                    out.append(pid)
            except OSError:
                continue
        return out

    def release_all(self):
        """Undo every injected hang: kill the fault runtime's processes (both
        the runc:[2:INIT] child and its parent, or the parent blocks again)."""
        self.release_start()
        self._undo_freeze_and_stop()
        for f in (self.fault / "armed").glob("*"):
            f.unlink(missing_ok=True)
        for dummy in range(3):
            victims = self.fault_processes()
            if not victims:
                break
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)

    # ---- helpers ---------------------------------------------------------
    def _wait_for(self, cond, timeout, what, proc=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            if proc is not None and proc.poll() is not None:
                raise HarnessError(f"{what} exited with {proc.returncode}; see logs under {self.root}")
            time.sleep(0.1)
        raise HarnessError(f"{what} not ready within {timeout}s; see logs under {self.root}")

    @staticmethod
    def _pid_from(pidfile):
        try:
            return int(Path(pidfile).read_text().strip())
        except (OSError, ValueError):
            return None

    def _alive(self, pidfile):
        pid = self._pid_from(pidfile)
        if not pid:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return proc_comm(pid) not in (None,)

    def _stop(self, pidfile, timeout):
        pid = self._pid_from(pidfile)
        if not pid:
            return
        for sig in (signal.SIGCONT, signal.SIGTERM):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
                # reap if it is our child
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
            except ProcessLookupError:
                return
            if proc_comm(pid) is None:
                return
            time.sleep(0.1)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _kill_matching(self, needle):
        me = os.getpid()
        for pid in pids():
            if pid == me:
                continue
            if any(needle in a for a in proc_cmdline(pid)):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _cgroup_dirs(self):
        base = Path("/sys/fs/cgroup")
        out = []
        if not base.exists():
            return out
        for ctrl in base.iterdir():
            d = ctrl / self.cgroup_parent
            if d.is_dir():
                out.append(d)
        return out

    def _kill_cgroup_members(self):
        for d in self._cgroup_dirs():
            for procs in d.rglob("cgroup.procs"):
                try:
                    for line in procs.read_text().split():
                        try:
                            os.kill(int(line), signal.SIGKILL)
                        except (ProcessLookupError, ValueError):
                            pass
                except OSError:
                    pass

    def _remove_cgroups(self):
        for d in self._cgroup_dirs():
            subdirs = sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
            for sub in subdirs + [d]:
                for dummy in range(20):
                    try:
                        sub.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.1)

    def _unmount_all(self):
        root = str(self.root)
        mounts = []
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mp = line.split()[4].replace("\\040", " ")
                if mp == root or mp.startswith(root + "/"):
                    mounts.append(mp)
        for mp in sorted(set(mounts), key=len, reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True, timeout=30, check=False)

    def env(self):
        return {"DOCKER_HOST": self.docker_host, "HANGDOCTOR_HARNESS_DIR": str(self.root)}


# ---- evidence, as the harness's own test and `status` show it ---------------
def evidence(pid):
    """The /proc signals of a stuck runc init, gathered the slow obvious way."""
    ino = pipe_inode(pid)
    queued, cap = pipe_fill(pid)
    holders = pipe_holders(ino) if ino else []
    readers = [(p, proc_comm(p)) for p, dummy, fl in holders if fl & os.O_ACCMODE == os.O_RDONLY]
    sysc = syscall_of(pid)
    return {
        "pid": pid,
        "comm": proc_comm(pid),
        "ppid": proc_ppid(pid),
        "syscall": sysc[:2],
        "wchan": wchan_of(pid),
        "pipe_inode": ino,
        "queued": queued,
        "capacity": cap,
        "readers": readers,
    }


def drain_pipe(pid, timeout=10.0):
    """Read /proc/PID/fd/2 until the fault child and its parent are gone and the
    pipe is empty (the test's own unblock, independent of the collection)."""
    fd = os.open(f"/proc/{pid}/fd/2", os.O_RDONLY | os.O_NONBLOCK)
    parent = proc_ppid(pid)
    data = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                chunk = None
            if chunk:
                data += chunk
                continue
            writers_alive = proc_comm(pid) == "runc:[2:INIT]" or (parent and proc_comm(parent) == "runc")
            if not writers_alive:
                # one last read for what the parent wrote just before exiting
                try:
                    while True:
                        more = os.read(fd, 65536)
                        if not more:
                            break
                        data += more
                except BlockingIOError:
                    pass
                return bytes(data)
            time.sleep(0.02)
    finally:
        os.close(fd)
    raise HarnessError(f"pipe of {pid} not drained within {timeout}s")


def _cli(argv=None):
    ap = argparse.ArgumentParser(prog="harness.sh", description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--root", default=os.environ.get("HANGDOCTOR_HARNESS_DIR", "/tmp/hangdoctor-harness"))
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up", help="start containerd + dockerd and build the image")
    r = sub.add_parser("run", help="start a container")
    r.add_argument("name")
    r.add_argument("--v1", action="store_true", help="shim v1 layout (containerd-shim)")
    h = sub.add_parser("hang", help="deadlock a docker exec in container NAME (created if missing)")
    h.add_argument("name")
    h.add_argument("--v1", action="store_true")
    h.add_argument("--size", type=int, default=DEFAULT_DUMP_SIZE)
    fr = sub.add_parser("freeze", help="freeze container NAME's cgroup behind the engine's back")
    fr.add_argument("name")
    ss = sub.add_parser("stop-shim", help="SIGSTOP the shim of container NAME")
    ss.add_argument("name")
    sub.add_parser("status", help="containers, responsiveness and stuck runc inits")
    sub.add_parser("release", help="undo every hang: kill the fault runtime's processes, thaw, resume shims")
    sub.add_parser("env", help="print DOCKER_HOST for this harness")
    sub.add_parser("down", help="stop everything and remove the folder")
    a = ap.parse_args(argv)
    hz = Harness(a.root)
    try:
        if a.cmd == "up":
            hz.up()
            print(f"up: DOCKER_HOST={hz.docker_host}")
        elif a.cmd == "env":
            print(f"export DOCKER_HOST={hz.docker_host}")
        elif a.cmd == "run":
            print(hz.run_container(a.name, "v1" if a.v1 else "v2"))
        elif a.cmd == "hang":
            if not hz.container_id(a.name):
                hz.run_container(a.name, "v1" if a.v1 else "v2")
            proc, pid = hz.hang(a.name, size=a.size, log=str(hz.root / f"exec-{a.name}.log"))
            if pid is None:
                print(f"no deadlock: docker exec returned {proc.returncode}" if proc.poll() is not None
                      else "docker exec still running but no stuck runc init found")
                return 1
            print(json.dumps(evidence(pid), indent=2))
            print(f"docker exec (pid {proc.pid}) is stuck; runc:[2:INIT] pid {pid}")
        elif a.cmd == "freeze":
            print(hz.freeze(a.name))
        elif a.cmd == "stop-shim":
            print(hz.stop_shim(a.name))
        elif a.cmd == "status":
            for line in hz.docker("ps", "--format", "{{.ID}} {{.Names}}", timeout=10).stdout.splitlines():
                cid, name = line.split()
                full = hz.container_id(name)
                ok = hz.inspect_answers(full, timeout=2)
                print(f"{name:20} {cid} inspect={'answers' if ok else 'HANGS'}")
            for pid, cid in hz.fault_inits():
                print(json.dumps({"container": cid[:12], **evidence(pid)}))
        elif a.cmd == "release":
            hz.release_all()
        elif a.cmd == "down":
            errs = hz.down()
            for e in errs:
                print(e, file=sys.stderr)
            return 1 if errs else 0
    except HarnessError as e:
        print(f"harness: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
