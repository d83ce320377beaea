"""A DaemonSet's pod, emulated on this machine from its manifest with the
kernel's own mechanisms, to run the pod's exact command against a real
runtime.  No kubelet or image registry is reachable here; what a pod is made
of is rebuilt from the YAML:

- the image: a read-only overlay whose top layer holds what
  extras/container/Containerfile adds (its ``install`` lines, the collection
  at /usr/share/ansible/collections, python3/ansible at /usr/local/bin, its
  ``ENV``) over this machine's root, read-only when the manifest says
  ``readOnlyRootFilesystem: true``;
- a private mount namespace (``unshare --mount``), a new pid namespace unless
  ``hostPID: true``, a fresh /proc of the pod's pid namespace, a minimal /dev;
- every volumeMount at its mountPath: hostPath volumes bound from the node's
  path (``node_path`` maps a hostPath to this machine: the test's stand-in
  node folders; /proc stays the machine's procfs), read-only where the mount
  says so; emptyDir and the projected API token as folders the test can read,
  and the kubelet's automounted token unless ``automountServiceAccountToken``
  is false;
- the container's env (downward-API fields resolved, as the kubelet does,
  plus the KUBERNETES_SERVICE_* variables every pod gets);
- the securityContext: chroot into the root, then ``setpriv`` with the
  uid/gid, ``no_new_privs`` for ``allowPrivilegeEscalation: false`` and the
  capability bounding set drop ALL + add;
- ``command`` + ``args`` exactly as written.

Not emulated: the pod's network namespace (the pod reaches the test's API
endpoint and serves its probe on the machine's loopback), seccomp and
AppArmor profiles, cgroup limits."""
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "extras" / "container" / "Containerfile"
# The python base image's own ENV (docker.io/library/python:*-slim).
BASE_IMAGE_ENV = {"PATH": "/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                  "LANG": "C.UTF-8"}
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


def load_daemonset(path):
    (ds,) = [d for d in yaml.safe_load_all(Path(path).read_text()) if d and d.get("kind") == "DaemonSet"]
    return ds


def image_env():
    """The ENV lines of the Containerfile over the base image's."""
    text = CONTAINERFILE.read_text().replace("\\\n", " ")
    env = dict(BASE_IMAGE_ENV)
    for line in text.splitlines():
        if line.startswith("ENV "):
            for word in shlex.split(line[4:]):
                k, v = word.split("=", 1)
                env[k] = v
    return env


def image_installs():
    """[(file in the collection, path in the image)] of the Containerfile's install lines."""
    text = CONTAINERFILE.read_text().replace("\\\n", " ")
    return re.findall(r"install -D -m 0644 /src/hangdoctor\.runtime/(\S+)\s+(\S+)", text)


def _capability(name):
    return "+" + name.lower().replace("cap_", "")


def _unit_bytes(text):
    m = re.match(r"^(\d+)(Ki|Mi|Gi)?$", str(text))
    return int(m.group(1)) * {None: 1, "Ki": 1024, "Mi": 1024 ** 2, "Gi": 1024 ** 3}[m.group(2)]


class EmulatedPod(object):
    def __init__(self, manifest, workdir, node_path, node_name, python, collection, api=None, pod_name=None):
        self.ds = load_daemonset(manifest)
        self.spec = self.ds["spec"]["template"]["spec"]
        (self.container,) = self.spec["containers"]
        self.workdir = Path(workdir)
        self.node_path = node_path
        self.node_name = node_name
        self.python = python
        self.collection = collection
        self.api = api
        self.pod_name = pod_name or "%s-x7k2p" % self.ds["metadata"]["name"]
        self.namespace = self.ds["metadata"]["namespace"]
        self.volumes = dict((v["name"], v) for v in self.spec["volumes"])
        self.proc = None
        self.log = self.workdir / "pod.log"
        self.volume_dirs = {}

    # ---- what the pod is made of ----------------------------------------
    def env(self):
        env = image_env()
        env["HOSTNAME"] = self.pod_name
        if self.api is not None:
            host, port = self.api.url.split("//", 1)[1].rsplit(":", 1)
            env.update({"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port,
                        "KUBERNETES_SERVICE_PORT_HTTPS": port, "KUBERNETES_PORT": "tcp://%s:%s" % (host, port)})
        fields = {"spec.nodeName": self.node_name, "metadata.name": self.pod_name,
                  "metadata.namespace": self.namespace}
        for e in self.container.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
            else:
                env[e["name"]] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
        return env

    def command(self):
        return list(self.container.get("command") or []) + list(self.container.get("args") or [])

    def _image_layer(self):
        layer = self.workdir / "image-layer"
        (layer / "usr" / "local" / "bin").mkdir(parents=True)
        py = layer / "usr" / "local" / "bin" / "python3"
        # a wrapper, not a symlink: the virtualenv is found from the path python runs as
        py.write_text("#!/bin/sh\nexec %s \"$@\"\n" % shlex.quote(self.python))
        py.chmod(0o755)
        bindir = Path(self.python).parent
        for tool in ("ansible", "ansible-playbook", "ansible-doc", "ansible-galaxy"):
            (layer / "usr" / "local" / "bin" / tool).symlink_to(bindir / tool)
        coll = layer / "usr" / "share" / "ansible" / "collections" / "ansible_collections" / "hangdoctor"
        coll.mkdir(parents=True)
        # a copy, as the image holds one: a symlink to a checkout under /tmp
        # (where make test lays the collection out) would point into the
        # pod's own /tmp volume
        shutil.copytree(self.collection, str(coll / "runtime"), symlinks=True,
                        ignore=shutil.ignore_patterns(".git", "tests", "__pycache__", "*.pyc"))
        for src, dest in image_installs():
            target = layer / dest.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((ROOT / src).read_bytes())
            target.chmod(0o644)
        # /var/run is /run in Debian images; relative, so it resolves inside the root
        (layer / "var").mkdir()
        (layer / "var" / "run").symlink_to("../run")
        # the image's /run is empty: opaque, so this machine's /run (its
        # containerd shim sockets, its /run/hangdoctor) does not show through
        (layer / "run").mkdir()
        os.setxattr(str(layer / "run"), "trusted.overlay.opaque", b"y")
        for mp in [m["mountPath"] for m in self.container.get("volumeMounts", [])] + ["/var/run/secrets/kubernetes.io/serviceaccount"]:
            (layer / mp.replace("/var/run/", "/run/", 1).lstrip("/")).mkdir(parents=True, exist_ok=True)
        return layer

    def _volume_source(self, vol):
        """(path on this machine, how to mount it)."""
        if "hostPath" in vol:
            hp = vol["hostPath"]
            src = Path(self.node_path(hp["path"]))
            kind = hp.get("type", "")
            if kind == "DirectoryOrCreate":
                src.mkdir(parents=True, exist_ok=True)
            elif kind == "Directory":
                assert src.is_dir(), "hostPath %s (type Directory) missing on the node" % hp["path"]
            return src
        d = self.workdir / "volumes" / vol["name"]
        d.mkdir(parents=True, exist_ok=True)
        if "emptyDir" in vol:
            self.volume_dirs[vol["name"]] = d
            return d
        if "projected" in vol:
            assert self.api is not None, "a projected API token needs the API endpoint"
            for s in vol["projected"]["sources"]:
                if "serviceAccountToken" in s:
                    (d / s["serviceAccountToken"]["path"]).write_text("not-a-secret")
                elif "configMap" in s:
                    assert s["configMap"]["name"] == "kube-root-ca.crt"
                    for item in s["configMap"]["items"]:
                        (d / item["path"]).write_bytes(Path(self.api.ca).read_bytes())
                elif "downwardAPI" in s:
                    for item in s["downwardAPI"]["items"]:
                        assert item["fieldRef"]["fieldPath"] == "metadata.namespace"
                        (d / item["path"]).write_text(self.namespace)
            self.volume_dirs[vol["name"]] = d
            return d
        raise AssertionError("volume kind not emulated: %s" % vol)

    def setup_script(self, node_prep=""):
        sc = self.container["securityContext"]
        assert sc.get("privileged") is False, "a privileged pod is not emulated"
        layer = self._image_layer()
        lower = self.workdir / "image"
        root = self.workdir / "root"
        lower.mkdir()
        root.mkdir()
        q = shlex.quote
        lines = ["set -eu", node_prep,
                 # the layer on a tmpfs: overlayfs refuses a layer inside another layer's tree
                 "mount -t tmpfs -o mode=0755 hd-image %s" % q(str(lower)),
                 "cp -a %s/. %s/" % (q(str(layer)), q(str(lower)))]
        if sc.get("readOnlyRootFilesystem"):
            lines.append("mount -t overlay overlay -o ro,lowerdir=%s:/ %s" % (lower, q(str(root))))
        else:
            up = self.workdir / "rw"
            lines.append("mkdir -p %s/u %s/w && mount -t overlay overlay -o lowerdir=%s:/,upperdir=%s/u,workdir=%s/w %s"
                         % (up, up, lower, up, up, q(str(root))))
        mounts = list(self.container.get("volumeMounts", []))
        token_dir = "/var/run/secrets/kubernetes.io/serviceaccount"
        if self.spec.get("automountServiceAccountToken") is not False and self.api is not None \
                and token_dir not in [m["mountPath"] for m in mounts]:
            # the kubelet's automounted token (the volume it adds, kube-api-access-*)
            self.volumes["kube-api-access"] = {"name": "kube-api-access", "projected": {"sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}}
            mounts.append({"name": "kube-api-access", "mountPath": token_dir, "readOnly": True})
        mounts.sort(key=lambda m: m["mountPath"].count("/"))
        for m in mounts:
            vol = self.volumes[m["name"]]
            src = self._volume_source(vol)
            dest = q(str(root) + m["mountPath"].replace("/var/run/", "/run/", 1))
            lines.append("mount --rbind %s %s" % (q(str(src)), dest))
            if m.get("readOnly"):
                lines.append("mount -o remount,bind,ro %s" % dest)
        # the pod's own /proc (of its pid namespace), /dev and a read-only /sys
        lines += ["mount -t proc proc %s/proc" % q(str(root)),
                  "mount -t tmpfs -o mode=0755,size=1m dev %s/dev" % q(str(root))]
        for d in DEVICES:
            lines.append("touch %s/dev/%s && mount --bind /dev/%s %s/dev/%s" % (q(str(root)), d, d, q(str(root)), d))
        # every container gets a /dev/shm (runc's default mounts; Ansible needs it for its locks)
        lines.append("mkdir %s/dev/shm && mount -t tmpfs -o mode=1777,size=64m shm %s/dev/shm" % (q(str(root)), q(str(root))))
        lines += ["mount --rbind /sys %s/sys" % q(str(root)), "mount -o remount,bind,ro %s/sys" % q(str(root))]
        caps = sc["capabilities"]
        assert caps.get("drop") == ["ALL"], caps
        bounding = ",".join(["-all"] + [_capability(c) for c in caps.get("add", [])])
        setpriv = ["/usr/bin/setpriv", "--reuid", str(sc.get("runAsUser", 0)), "--regid", str(sc.get("runAsGroup", 0)),
                   "--clear-groups", "--inh-caps", "-all", "--bounding-set", bounding]
        if sc.get("allowPrivilegeEscalation") is False:
            setpriv.append("--no-new-privs")
        lines.append("cd / && exec chroot %s %s -- \"$@\"" % (q(str(root)), " ".join(q(a) for a in setpriv)))
        return "\n".join(lines)

    # ---- running it -------------------------------------------------------
    def start(self, node_prep=""):
        script = self.setup_script(node_prep)
        ns = ["unshare", "--mount", "--propagation", "private", "--ipc", "--uts"]
        if not self.spec.get("hostPID"):
            ns += ["--pid", "--fork"]
        argv = ns + ["sh", "-c", script, "pod-setup"] + self.command()
        self.started = time.time()
        out = open(self.log, "ab")
        try:
            self.proc = subprocess.Popen(argv, env=self.env(), stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            out.close()
        return self

    def output(self):
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def members(self):
        """Host pids of the pod's processes (its session)."""
        out = []
        if self.proc is None:
            return out
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % name) as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[3]) == self.proc.pid:   # session id
                out.append(int(name))
        return out

    def heartbeat(self):
        try:
            return os.stat(str(self.volume_dirs["tmp"] / "heartbeat")).st_mtime_ns
        except (KeyError, OSError):
            return None

    def wait_for_runs(self, runs=1, timeout=300):
        """Wait until the loop touched its heartbeat after RUNS runs (it
        touches it once before the first)."""
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            hb = self.heartbeat()
            if hb is not None and (not seen or seen[-1] != hb):
                seen.append(hb)
                if len(seen) > runs:
                    return
            if self.proc.poll() is not None:
                raise AssertionError("the pod exited (%s):\n%s" % (self.proc.returncode, self.output()[-6000:]))
            time.sleep(0.2)
        raise AssertionError("the pod's loop did not finish %d run(s) in %d s:\n%s" % (runs, timeout, self.output()[-6000:]))

    def stop(self):
        if self.proc is None:
            return
        for dummy in range(50):
            victims = self.members()
            if not victims:
                break
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
