"""containerd with its CRI plugin on a private socket and root, and pods run
through the CRI API exactly as kubelet runs them.

No dockerd and no registry: the busybox and sandbox ("pause") images are
written here as OCI image layouts and imported with ``ctr -n k8s.io images
import``.  Pods live in the node's network namespace (no CNI).  The runc
handler's ``BinaryName`` is the fault-injecting runtime, so an armed
container's ExecSync deadlocks in a real containerd-shim-runc-v2 that serves
the whole pod (its ``-id`` is the sandbox id).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hdharness  # noqa: E402
from hdharness import Harness, HarnessError, pipe_fill, syscall_of  # noqa: E402

NAMESPACE = "k8s.io"
IMAGE = "docker.io/hangdoctor/busybox:latest"
SANDBOX_IMAGE = "docker.io/hangdoctor/pause:latest"
REQUIRED = ("containerd", "containerd-shim-runc-v2", "ctr", "runc", "busybox", "cc")


def _arch():
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def _blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return "sha256:" + digest


def busybox_layer():
    """An uncompressed tar of a rootfs holding busybox-static and its applets."""
    busybox = shutil.which("busybox")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, timeout=30, check=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("bin", "tmp", "proc", "sys", "dev", "etc", "root"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(ti)
        with open(busybox, "rb") as f:
            data = f.read()
        ti = tarfile.TarInfo("bin/busybox")
        ti.size, ti.mode = len(data), 0o755
        tar.addfile(ti, io.BytesIO(data))
        for a in sorted(set(applets) - {"busybox"}):
            ti = tarfile.TarInfo("bin/" + a)
            ti.type, ti.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(ti)
        passwd = b"root:x:0:0:root:/root:/bin/sh\n"
        ti = tarfile.TarInfo("etc/passwd")
        ti.size, ti.mode = len(passwd), 0o644
        tar.addfile(ti, io.BytesIO(passwd))
    return buf.getvalue()


def write_oci_archive(path, images):
    """An OCI image layout tar holding IMAGES ({name: cmd}), one shared layer."""
    layout = Path(str(path) + ".d")
    shutil.rmtree(layout, ignore_errors=True)
    layout.mkdir(parents=True)
    layer = busybox_layer()
    layer_digest = _blob(layout, layer)
    manifests = []
    for name, cmd in images.items():
        config = json.dumps({
            "architecture": _arch(), "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Cmd": list(cmd)},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }, sort_keys=True).encode()
        cfg_digest = _blob(layout, config)
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest, "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": len(layer)}],
        }, sort_keys=True).encode()
        manifests.append({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": _blob(layout, manifest), "size": len(manifest),
            "platform": {"architecture": _arch(), "os": "linux"},
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]},
        })
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": manifests}))
    with tarfile.open(path, "w") as tar:
        for p in sorted(layout.rglob("*")):
            tar.add(p, arcname=str(p.relative_to(layout)), recursive=False)
    shutil.rmtree(layout)
    return path


class CriHarness(Harness):
    """containerd + CRI plugin under ``root``; no dockerd (a CRI-only node)."""

    def __init__(self, root=None, dump_size=hdharness.DEFAULT_DUMP_SIZE):
        super().__init__(root, dump_size)
        self.cri_sock = self.ctd / "c.sock"
        self.containerd_sock = self.cri_sock
        self.runc_root = self.ctd / "runc"
        self.logs = self.root / "pods"
        self._client = None
        self._lock = threading.Lock()

    # ---- lifecycle ----------------------------------------------------
    def check_prereqs(self):
        if os.geteuid() != 0:
            raise HarnessError("the CRI harness runs containerd: run it as root")
        path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
        missing = [b for b in REQUIRED if not shutil.which(b, path=path)]
        if missing:
            raise HarnessError("missing binaries: %s (apt-get install containerd runc busybox-static gcc)" % " ".join(missing))

    def is_up(self):
        return self._alive(self.ctd / "c.pid")

    def up(self):
        self.check_prereqs()
        if self.is_up():
            return self
        for d in (self.bin, self.fault / "armed", self.fault / "records", self.fault / "hold-start",
                  self.fault / "frozen", self.fault / "stopped", self.ctd, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        self._build_fault_runtime()
        self._start_cri_containerd()
        self._import_images()
        (self.root / hdharness.STATE_FILE).write_text(json.dumps({
            "containerd_address": str(self.cri_sock), "cgroup_parent": self.cgroup_parent, "kind": "cri"}))
        return self

    def _start_cri_containerd(self):
        cfg = self.ctd / "config.toml"
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        cfg.write_text(f"""version = 2
root = "{self.ctd}/root"
state = "{self.ctd}/state"
[grpc]
  address = "{self.cri_sock}"
[ttrpc]
  address = "{self.cri_sock}.ttrpc"
[{cri}]
  sandbox_image = "{SANDBOX_IMAGE}"
  # this machine refuses the -998 that CRI gives the sandbox (runc: "can't get final child's PID from pipe")
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        BinaryName = "{self.fault_runc}"
        Root = "{self.runc_root}"
  [{cri}.cni]
    bin_dir = "{self.ctd}/cni/bin"
    conf_dir = "{self.ctd}/cni/conf"
""")
        env = dict(os.environ)
        env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
        log = open(self.ctd / "containerd.log", "ab")
        p = subprocess.Popen(["containerd", "--config", str(cfg)], stdout=log, stderr=log,
                             stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        (self.ctd / "c.pid").write_text(str(p.pid))
        self._wait_for(self._cri_ready, 60, "containerd CRI", p)

    def _cri_ready(self):
        if not self.cri_sock.exists():
            return False
        try:
            self.client().version(timeout=2)
            return True
        except Exception:  # grpc.RpcError while the plugin starts
            return False

    def _import_images(self):
        tar = self.root / "images.tar"
        write_oci_archive(tar, {IMAGE: ["/bin/sh"], SANDBOX_IMAGE: ["/bin/sleep", "2147483647"]})
        # import unpacks into the default snapshotter (overlayfs), which CRI uses
        r = self.ctr("images", "import", str(tar), timeout=120)
        if r.returncode != 0:
            raise HarnessError("ctr images import failed: " + r.stderr.strip())
        listed = self.ctr("images", "ls", "-q", timeout=30).stdout.split()
        missing = [ref for ref in (IMAGE, SANDBOX_IMAGE) if ref not in listed]
        if missing:
            raise HarnessError("images not imported: %s (ctr images ls: %s)" % (missing, listed))
        tar.unlink()

    def down(self):
        errors = []
        if not self.root.exists():
            return errors
        self.release_all()
        if self.is_up():
            try:
                self.remove_all_pods(limit=20)
            except Exception as e:  # the daemon may be wedged: kill below anyway
                errors.append("removing pods: %s" % e)
        if self._client is not None:
            self._client.close()
            self._client = None
        self._kill_cgroup_members()
        self._stop(self.ctd / "c.pid", 15)
        self._kill_matching(str(self.root))
        self._unmount_all()
        self._remove_cgroups()
        shutil.rmtree(self.root, ignore_errors=True)
        if self.root.exists():
            errors.append(f"could not remove {self.root}")
        return [e for e in errors if "removing pods" not in e]

    # ---- clients ------------------------------------------------------
    def client(self):
        with self._lock:
            if self._client is None:
                from cri.client import CriClient
                self._client = CriClient(self.cri_sock)
            return self._client

    def ctr(self, *args, timeout=30, namespace=NAMESPACE):
        cmd = ["ctr", "--address", str(self.cri_sock), "--namespace", namespace, *args]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as e:
            raise HarnessError(f"ctr {' '.join(args)} did not return within {timeout}s") from e

    # ---- pods ---------------------------------------------------------
    def run_pod(self, name, namespace="default", containers=("app", "sidecar"), memory_limit=0):
        """A pod with CONTAINERS (names), each running ``sleep``.  Returns
        {'id', 'name', 'namespace', 'uid', 'config', 'containers': {name: id}}."""
        c = self.client()
        uid = str(uuid.uuid4())
        cfg = c.pod_config(name, namespace, uid, log_directory=self.logs / f"{namespace}_{name}_{uid}",
                           cgroup_parent=f"/{self.cgroup_parent}/pod{uid}")
        (self.logs / f"{namespace}_{name}_{uid}").mkdir(parents=True, exist_ok=True)
        pod_id = c.run_pod_sandbox(cfg)
        out = {"id": pod_id, "name": name, "namespace": namespace, "uid": uid, "config": cfg, "containers": {}}
        for cname in containers:
            cid = c.create_container(pod_id, cfg, cname, IMAGE, ["/bin/sleep", "100000"], memory_limit=memory_limit)
            c.start_container(cid)
            out["containers"][cname] = cid
        return out

    def remove_pod(self, pod_id):
        c = self.client()
        c.stop_pod_sandbox(pod_id)
        c.remove_pod_sandbox(pod_id)

    def remove_all_pods(self, limit=None):
        """Remove every pod through CRI, one by one; with LIMIT, none when
        there are more (down() then ends them by their cgroups: two hundred
        pods take minutes through CRI)."""
        pods = self.client().list_pod_sandbox(timeout=10)
        if limit is not None and len(pods) > limit:
            return
        for sb in pods:
            self.remove_pod(sb.id)

    def shim_of(self, pod_id):
        """pid of the containerd-shim-runc-v2 serving POD_ID (its -id is the sandbox id)."""
        for pid in hdharness.pids():
            argv = hdharness.proc_cmdline(pid)
            if argv and argv[0].endswith("containerd-shim-runc-v2") and "-id" in argv:
                i = argv.index("-id")
                if i + 1 < len(argv) and argv[i + 1] == pod_id and str(self.cri_sock) in " ".join(argv):
                    return pid
        return None

    # ---- the fault through ExecSync -------------------------------------
    def hang_execsync(self, cid, size=None, count=1, wait=20.0, probe_timeout=1, request_timeout=5.0,
                      pipe_size=0, cmd=("true",)):
        """Arm the fault and send a kubelet-style ExecSync for CID; return
        (grpc future of the ExecSync, stuck runc-init pid or None)."""
        self.arm(cid, size, count, pipe_size)
        before = {p for p, dummy in self.fault_inits(cid)}
        fut = self.client().exec_sync_future(cid, list(cmd), probe_timeout=probe_timeout, request_timeout=request_timeout)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            for pid, dummy in self.fault_inits(cid):
                if pid in before:
                    continue
                try:
                    queued, cap = pipe_fill(pid)
                except OSError:
                    continue
                if queued >= cap and syscall_of(pid)[:1] in (["1"], ["20"], ["64"], ["66"]):
                    return fut, pid
            if fut.done():
                return fut, None
            time.sleep(0.05)
        return fut, None

    def exec_answers(self, cid, probe_timeout=1, request_timeout=2.0):
        """Whether an ExecSync of ``true`` in CID answers as kubelet would see it."""
        import grpc
        try:
            code, dummy, dummy2 = self.client().exec_sync(
                cid, ["true"], probe_timeout=probe_timeout, request_timeout=request_timeout)
            return code == 0
        except grpc.RpcError:
            return False

    def env(self):
        return {"CONTAINERD_ADDRESS": str(self.cri_sock), "CONTAINERD_NAMESPACE": NAMESPACE,
                "HANGDOCTOR_HARNESS_DIR": str(self.root)}


def hold_hang(hz, cid, hold, wait=20.0):
    """Deadlock an ExecSync in CID from a detached waiter that keeps it in
    flight for HOLD seconds (this command returns at once); the stuck runc
    init's pid, or None."""
    before = {p for p, dummy in hz.fault_inits(cid)}
    log = open(hz.root / f"execsync-{cid[:12]}.log", "ab")
    subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--root", str(hz.root), "_wait", cid, str(hold)],
                     stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    log.close()
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        for pid, dummy in hz.fault_inits(cid):
            if pid in before:
                continue
            try:
                queued, cap = pipe_fill(pid)
            except OSError:
                continue
            if queued >= cap and syscall_of(pid)[:1] in (["1"], ["20"], ["64"], ["66"]):
                return pid
        time.sleep(0.05)
    return None


def _cli(argv=None):
    ap = argparse.ArgumentParser(prog="harness.sh cri", description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--root", default=os.environ.get("HANGDOCTOR_HARNESS_DIR", "/tmp/hangdoctor-cri-harness"))
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up", help="start containerd with its CRI plugin and import the images")
    p = sub.add_parser("pod", help="run a pod with two containers (app, sidecar)")
    p.add_argument("name")
    h = sub.add_parser("hang", help="deadlock a kubelet-style ExecSync in container app of pod NAME (created if missing)")
    h.add_argument("name")
    h.add_argument("--hold", type=float, default=600.0,
                   help="seconds a detached waiter keeps the ExecSync in flight, as kubelet does (its deadline "
                        "ends the hang: the shim then kills runc exec)")
    w = sub.add_parser("_wait", help=argparse.SUPPRESS)
    w.add_argument("cid")
    w.add_argument("hold", type=float)
    sub.add_parser("status", help="pods, containers and stuck runc inits")
    sub.add_parser("release", help="kill the fault runtime's processes (undo every hang)")
    sub.add_parser("env", help="print CONTAINERD_ADDRESS for this harness")
    sub.add_parser("down", help="stop everything and remove the folder")
    a = ap.parse_args(argv)
    hz = CriHarness(a.root)
    try:
        if a.cmd == "up":
            hz.up()
            print(f"up: CONTAINERD_ADDRESS={hz.cri_sock} (namespace {NAMESPACE})")
        elif a.cmd == "env":
            for k, v in hz.env().items():
                print(f"export {k}={v}")
        elif a.cmd == "pod":
            print(json.dumps({k: v for k, v in hz.run_pod(a.name).items() if k != "config"}, indent=2))
        elif a.cmd == "hang":
            pod = next((s for s in hz.client().list_pod_sandbox() if s.metadata.name == a.name), None)
            if pod is None:
                cid = hz.run_pod(a.name)["containers"]["app"]
            else:
                cid = next(c.id for c in hz.client().list_containers(pod.id) if c.metadata.name == "app")
            pid = hold_hang(hz, cid, a.hold)
            if pid is None:
                print("no deadlock")
                return 1
            print(json.dumps(dict(hdharness.evidence(pid), container_id=cid), indent=2))
            print(f"ExecSync in {cid[:12]} is stuck (held for {a.hold:.0f}s); runc:[2:INIT] pid {pid}")
        elif a.cmd == "_wait":
            # the kubelet's side of a stuck probe: an ExecSync in flight until its deadline
            hz.arm(a.cid)
            try:
                hz.client().exec_sync(a.cid, ["true"], probe_timeout=1, request_timeout=a.hold)
            except Exception:  # the deadline or the exec's failure after a drain: both end the wait
                pass
        elif a.cmd == "status":
            for sb in hz.client().list_pod_sandbox():
                for c in hz.client().list_containers(sb.id):
                    print(f"{sb.metadata.namespace}/{sb.metadata.name:20} {c.metadata.name:10} {c.id[:12]}")
            for pid, cid in hz.fault_inits():
                print(json.dumps({"container": cid[:12], **hdharness.evidence(pid)}))
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
