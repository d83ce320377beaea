"""_addresses: the docker_host forms, the containerd socket path and the
presence test, on real files and a real unix socket."""
import socket

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _addresses


@pytest.mark.parametrize("host,expected", [
    ("unix:///var/run/docker.sock", ("unix", "/var/run/docker.sock")),
    ("/run/docker.sock", ("unix", "/run/docker.sock")),
    ("tcp://10.0.0.5:2375", ("tcp", "10.0.0.5", 2375)),
    ("http://dockerd.example:4243/", ("tcp", "dockerd.example", 4243)),
    ("tcp://[::1]:2375", ("tcp", "::1", 2375)),
    ("tcp://node1", ("tcp", "node1", 2375)),
])
def test_parse_docker_host(host, expected):
    assert _addresses.parse_docker_host(host) == expected


@pytest.mark.parametrize("host,word", [
    ("https://node1:2376", "not supported"),
    ("ssh://root@node1", "not supported"),
    ("npipe:////./pipe/docker_engine", "not supported"),
    ("unix://relative.sock", "absolute"),
    ("tcp://node1:99999", "bad port"),
    ("tcp://:2375", "no host"),
    ("tcp://[::1:2375", "unbalanced"),
    ("docker.sock", "no scheme"),
    ("", "non-empty"),
    (None, "non-empty"),
    ("gopher://x", "unknown scheme"),
])
def test_parse_docker_host_rejects_with_reason(host, word):
    with pytest.raises(_addresses.AddressError) as e:
        _addresses.parse_docker_host(host)
    assert word in str(e.value)


@pytest.mark.parametrize("address,path", [
    ("/run/containerd/containerd.sock", "/run/containerd/containerd.sock"),
    ("unix:///run/k3s/containerd/containerd.sock", "/run/k3s/containerd/containerd.sock"),
    ("", "/run/containerd/containerd.sock"),
    (None, "/run/containerd/containerd.sock"),
    ("relative.sock", "relative.sock"),  # the caller refuses a relative path
])
def test_containerd_socket_path(address, path):
    assert _addresses.containerd_socket_path(address) == path


def test_socket_missing_tells_a_socket_from_a_file_and_nothing(tmp_path):
    sock_path = str(tmp_path / "engine.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        srv.bind(sock_path)
        assert _addresses.socket_missing(sock_path) is None
    finally:
        srv.close()
    plain = tmp_path / "plain"
    plain.write_text("x")
    assert _addresses.socket_missing(str(plain)) == "%s is not a socket" % plain
    why = _addresses.socket_missing(str(tmp_path / "none.sock"))
    assert why.startswith("no socket at %s" % (tmp_path / "none.sock")) and "(ENOENT)" in why
