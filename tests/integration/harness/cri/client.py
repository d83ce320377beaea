"""A small CRI client for the tests (Debian has no crictl).

The stubs are generated from ``api.proto`` (a subset of k8s.io/cri-api
runtime.v1 with the upstream field numbers) with grpcio-tools at first use and
cached by the proto's hash; generated code is never committed.  Test-only:
grpcio is not a dependency of the collection.
"""
from __future__ import annotations

import hashlib
import importlib
import os
import sys
import tempfile
import threading
from pathlib import Path

import grpc

HERE = Path(__file__).resolve().parent
PROTO = HERE / "api.proto"
# kubelet's --runtime-request-timeout default: ExecSync gets probe timeout + this as its gRPC deadline.
KUBELET_RUNTIME_REQUEST_TIMEOUT = 120.0

_LOCK = threading.Lock()
_MODULES = None


class CriError(RuntimeError):
    pass


def _stubs():
    """(api_pb2, api_pb2_grpc), generated once per proto content."""
    global _MODULES
    with _LOCK:
        if _MODULES is not None:
            return _MODULES
        digest = hashlib.sha256(PROTO.read_bytes()).hexdigest()[:16]
        out = Path(tempfile.gettempdir()) / ("hd-cri-stubs-" + digest)
        if not (out / "api_pb2_grpc.py").exists():
            from grpc_tools import protoc
            import grpc_tools
            work = Path(tempfile.mkdtemp(prefix="hd-cri-stubs-", dir=tempfile.gettempdir()))
            include = str(Path(grpc_tools.__file__).resolve().parent / "_proto")
            rc = protoc.main(["protoc", "-I", str(HERE), "-I", include,
                              "--python_out=" + str(work), "--grpc_python_out=" + str(work), str(PROTO)])
            if rc != 0:
                raise CriError("protoc failed on %s (rc %s)" % (PROTO, rc))
            try:
                os.rename(work, out)
            except OSError:
                # another process generated the same stubs first
                pass
        # The generated grpc module imports "api_pb2" as a top-level module.
        if str(out) not in sys.path:
            sys.path.insert(0, str(out))
        pb2 = importlib.import_module("api_pb2")
        pb2_grpc = importlib.import_module("api_pb2_grpc")
        _MODULES = (pb2, pb2_grpc)
        return _MODULES


class CriClient:
    """The RuntimeService calls kubelet makes, over the CRI socket."""

    def __init__(self, socket_path, timeout=30.0):
        self.pb2, pb2_grpc = _stubs()
        self.socket_path = str(socket_path)
        self.timeout = timeout
        self.channel = grpc.insecure_channel("unix://" + self.socket_path)
        self.rt = pb2_grpc.RuntimeServiceStub(self.channel)

    def close(self):
        self.channel.close()

    # ---- runtime ------------------------------------------------------
    def version(self, timeout=None):
        return self.rt.Version(self.pb2.VersionRequest(version="v1"), timeout=timeout or self.timeout)

    # ---- pods ---------------------------------------------------------
    def pod_config(self, name, namespace, uid, log_directory, cgroup_parent, labels=None, annotations=None):
        """A pod in the node's network namespace (no CNI here), as kubelet
        builds it for hostNetwork pods: no hostname (no private UTS namespace)."""
        pb = self.pb2
        labels = dict(labels or {})
        labels.update({"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": namespace,
                       "io.kubernetes.pod.uid": uid})
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace=namespace, attempt=0),
            log_directory=str(log_directory),
            labels=labels,
            annotations=dict(annotations or {}),
            linux=pb.LinuxPodSandboxConfig(
                cgroup_parent=cgroup_parent,
                security_context=pb.LinuxSandboxSecurityContext(
                    namespace_options=pb.NamespaceOption(network=pb.NODE, pid=pb.CONTAINER, ipc=pb.POD))),
        )

    def run_pod_sandbox(self, config, runtime_handler=""):
        return self.rt.RunPodSandbox(self.pb2.RunPodSandboxRequest(config=config, runtime_handler=runtime_handler),
                                     timeout=self.timeout).pod_sandbox_id

    def stop_pod_sandbox(self, pod_id, timeout=None):
        self.rt.StopPodSandbox(self.pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=timeout or self.timeout)

    def remove_pod_sandbox(self, pod_id, timeout=None):
        self.rt.RemovePodSandbox(self.pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=timeout or self.timeout)

    def list_pod_sandbox(self, timeout=None):
        return list(self.rt.ListPodSandbox(self.pb2.ListPodSandboxRequest(), timeout=timeout or self.timeout).items)

    # ---- containers ---------------------------------------------------
    def create_container(self, pod_id, pod_config, name, image, command, memory_limit=0, labels=None):
        """kubelet's labels: io.kubernetes.{pod.name,pod.namespace,pod.uid,container.name}."""
        pb = self.pb2
        md = pod_config.metadata
        all_labels = {"io.kubernetes.pod.name": md.name, "io.kubernetes.pod.namespace": md.namespace,
                      "io.kubernetes.pod.uid": md.uid, "io.kubernetes.container.name": name}
        all_labels.update(labels or {})
        cfg = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name, attempt=0),
            image=pb.ImageSpec(image=image),
            command=list(command),
            labels=all_labels,
            annotations={"io.kubernetes.container.restartCount": "0"},
            log_path="%s/0.log" % name,
            linux=pb.LinuxContainerConfig(
                resources=pb.LinuxContainerResources(memory_limit_in_bytes=int(memory_limit or 0)),
                security_context=pb.LinuxContainerSecurityContext(
                    namespace_options=pb.NamespaceOption(network=pb.NODE, pid=pb.CONTAINER, ipc=pb.POD))),
        )
        req = pb.CreateContainerRequest(pod_sandbox_id=pod_id, config=cfg, sandbox_config=pod_config)
        return self.rt.CreateContainer(req, timeout=self.timeout).container_id

    def start_container(self, cid):
        self.rt.StartContainer(self.pb2.StartContainerRequest(container_id=cid), timeout=self.timeout)

    def stop_container(self, cid, grace=0, timeout=None):
        self.rt.StopContainer(self.pb2.StopContainerRequest(container_id=cid, timeout=grace), timeout=timeout or self.timeout)

    def remove_container(self, cid, timeout=None):
        self.rt.RemoveContainer(self.pb2.RemoveContainerRequest(container_id=cid), timeout=timeout or self.timeout)

    def list_containers(self, pod_id=None, timeout=None):
        flt = self.pb2.ContainerFilter(pod_sandbox_id=pod_id or "")
        return list(self.rt.ListContainers(self.pb2.ListContainersRequest(filter=flt), timeout=timeout or self.timeout).containers)

    def container_status(self, cid, timeout=None):
        return self.rt.ContainerStatus(self.pb2.ContainerStatusRequest(container_id=cid),
                                       timeout=timeout or self.timeout).status

    # ---- exec probes, exactly as kubelet sends them -------------------
    def _exec_request(self, cid, cmd, probe_timeout):
        return self.pb2.ExecSyncRequest(container_id=cid, cmd=list(cmd), timeout=int(probe_timeout))

    def exec_sync(self, cid, cmd, probe_timeout=1, request_timeout=KUBELET_RUNTIME_REQUEST_TIMEOUT):
        """kubelet's ExecSync: the probe's timeoutSeconds in the request, and
        a gRPC deadline of timeoutSeconds + --runtime-request-timeout.
        Returns (exit_code, stdout, stderr); raises grpc.RpcError past the deadline."""
        r = self.rt.ExecSync(self._exec_request(cid, cmd, probe_timeout), timeout=probe_timeout + request_timeout)
        return r.exit_code, r.stdout, r.stderr

    def exec_sync_future(self, cid, cmd, probe_timeout=1, request_timeout=KUBELET_RUNTIME_REQUEST_TIMEOUT):
        """The same call left in flight (a probe the kubelet is waiting on)."""
        return self.rt.ExecSync.future(self._exec_request(cid, cmd, probe_timeout),
                                       timeout=probe_timeout + request_timeout)
