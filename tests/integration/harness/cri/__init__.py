"""The CRI side of the real-runtime harness: containerd's CRI plugin on a
private socket, a test-only CRI client, pods created the way kubelet does."""
