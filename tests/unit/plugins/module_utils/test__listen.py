"""_listen: /proc/PID/net/tcp and tcp6 as a 6.18 x86_64 kernel prints them
(captured from listeners on 127.0.0.1, 0.0.0.0, 127.0.0.53, 192.0.2.2, ::1,
::, ::ffff:127.0.0.1 and fd00::2, with ESTABLISHED and TIME_WAIT rows), the
node-reachability verdict, and the matching of exec_probe_swap rows."""
import ipaddress
import sys
from pathlib import Path

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _listen
from ansible_collections.hangdoctor.runtime.plugins.module_utils._procfs import Proc, ProcessGone

# Captured verbatim (trailing blanks included) from /proc/net/tcp and tcp6.
NET = Path(__file__).resolve().parents[2] / "fixtures" / "net" / "kernel6_x86_64"
TCP = (NET / "tcp").read_text()
TCP6 = (NET / "tcp6").read_text()


@pytest.mark.parametrize("hexaddr,byteorder,addr,scope", [
    ("0100007F", "little", "127.0.0.1", "loopback"),
    ("3500007F", "little", "127.0.0.53", "loopback"),
    ("00000000", "little", "0.0.0.0", "wildcard"),
    ("020200C0", "little", "192.0.2.2", "specific"),
    ("7F000001", "big", "127.0.0.1", "loopback"),  # s390x prints the word unswapped
    ("00000000000000000000000001000000", "little", "::1", "loopback"),
    ("00000000000000000000000000000000", "little", "::", "wildcard"),
    ("0000000000000000FFFF00000100007F", "little", "::ffff:127.0.0.1", "loopback"),
    ("0000000000000000FFFF000000000000", "little", "::ffff:0.0.0.0", "wildcard"),
    ("0000000000000000FFFF0000020200C0", "little", "::ffff:192.0.2.2", "specific"),
    ("000000FD000000000000000002000000", "little", "fd00::2", "specific"),
    ("000080FE00000000FF00FC00010000FE", "little", "fe80::fc:ff:fe00:1", "specific"),
])
def test_decode_and_scope(hexaddr, byteorder, addr, scope):
    decoded = _listen.decode_address(hexaddr, byteorder)
    assert decoded == ipaddress.ip_address(addr)
    assert _listen.address_text(decoded) == addr  # the same text on every Python (3.13 changed v4-mapped)
    assert _listen.scope_of(decoded) == scope


@pytest.mark.parametrize("bad", ["0100007", "0100007G", "01000000FF"])
def test_decode_refuses_garbage(bad):
    with pytest.raises(_listen.ListenError):
        _listen.decode_address(bad, "little")


def test_parse_keeps_only_listeners():
    v4 = _listen.parse_table(TCP, "ipv4", "little")
    assert [(s["port"], s["address"], s["scope"]) for s in v4] == [
        (18080, "127.0.0.1", "loopback"), (18081, "0.0.0.0", "wildcard"), (18082, "127.0.0.53", "loopback"),
        (18086, "192.0.2.2", "specific"), (8081, "192.0.2.2", "specific")]
    assert {s["family"] for s in v4} == {"ipv4"}
    v6 = _listen.parse_table(TCP6, "ipv6", "little")
    assert [(s["port"], s["address"], s["scope"]) for s in v6] == [
        (18085, "::ffff:127.0.0.1", "loopback"), (18083, "::1", "loopback"), (18084, "::", "wildcard"),
        (18087, "fd00::2", "specific"), (8081, "::1", "loopback")]


def test_parse_of_an_empty_table_and_bad_rows():
    assert _listen.parse_table(TCP.splitlines()[0] + "\n", "ipv4") == []
    with pytest.raises(_listen.ListenError):
        _listen.parse_table("header\n   0: 0100007F 00000000:0000 0A\n", "ipv4", "little")


def sockets():
    return _listen.parse_table(TCP, "ipv4", "little") + _listen.parse_table(TCP6, "ipv6", "little")


@pytest.mark.parametrize("port,reachable,addresses", [
    (18080, False, ["127.0.0.1"]),
    (18082, False, ["127.0.0.53"]),
    (18083, False, ["::1"]),
    (18085, False, ["::ffff:127.0.0.1"]),
    (18081, True, ["0.0.0.0"]),
    (18084, True, ["::"]),
    (18086, True, ["192.0.2.2"]),
    (8081, True, ["192.0.2.2", "::1"]),  # one non-loopback listener is enough
    (9999, None, []),                    # nothing listens: cannot be told
])
def test_port_reachability(port, reachable, addresses):
    assert _listen.port_reachability(sockets(), port) == {"reachable_from_node": reachable, "addresses": addresses}


def test_container_ports_and_loopback_only():
    ports = _listen.container_ports(sockets())
    assert sorted(ports, key=int) == ["8081", "18080", "18081", "18082", "18083", "18084", "18085", "18086", "18087"]
    assert _listen.loopback_only(ports) == [18080, 18082, 18083, 18085]
    assert _listen.container_ports(sockets(), [18080, 1]) == {
        "18080": {"reachable_from_node": False, "addresses": ["127.0.0.1"]},
        "1": {"reachable_from_node": None, "addresses": []}}


def proc_tree(tmp_path, pid=4242, tcp6=True):
    net = tmp_path / str(pid) / "net"
    net.mkdir(parents=True)
    (net / "tcp").write_text(TCP)
    if tcp6:
        (net / "tcp6").write_text(TCP6)
    (tmp_path / "stat").write_text("cpu 0 0 0 0\nbtime 1700000000\n")
    return Proc(str(tmp_path))


def test_listening_from_a_proc_tree(tmp_path):
    proc = proc_tree(tmp_path)
    got = _listen.listening(proc, 4242, byteorder="little")
    assert len(got) == 10 and got[0]["family"] == "ipv4" and got[-1]["family"] == "ipv6"


def test_no_tcp6_means_ipv6_off_not_gone(tmp_path):
    proc = proc_tree(tmp_path, tcp6=False)
    assert len(_listen.listening(proc, 4242, byteorder="little")) == 5
    with pytest.raises(ProcessGone):
        _listen.listening(proc, 4243)


def test_listening_has_a_deadline(tmp_path):
    proc = proc_tree(tmp_path)
    with pytest.raises(Exception, match="deadline"):
        _listen.listening(proc, 4242, timeout=-1)


def test_report_by_pid(tmp_path):
    proc = proc_tree(tmp_path)
    out = _listen.report(proc, pids=[4242], ports=[18080, 18081, 9])
    c = out["containers"][0]
    assert c["pid"] == 4242 and c["error"] is None and c["loopback_only"] == ([18080] if _little() else [])
    assert set(c["ports"]) == {"9", "18080", "18081"}
    assert {s["port"] for s in c["listening"]} <= {18080, 18081}
    with pytest.raises(_listen.ListenError, match="no process 4243"):
        _listen.report(proc, pids=[4243])


def _little():
    return sys.byteorder == "little"


def row(**kw):
    r = {"kind": "Deployment", "namespace": "shop", "name": "web", "container": "web", "probe": "liveness",
         "result": "converted", "handler": {"httpGet": {"path": "/healthz", "port": 8080}}}
    r.update(kw)
    return r


@pytest.mark.parametrize("r,expected", [
    (row(), ("httpGet", 8080)),
    (row(handler={"tcpSocket": {"port": "5432"}}), ("tcpSocket", 5432)),
    (row(handler={"grpc": {"port": 9090, "service": "x"}}), ("grpc", 9090)),
    (row(handler={"httpGet": {"port": "http"}}), ("httpGet", None)),
    (row(handler={"httpGet": {"port": 8080, "host": "127.0.0.1"}}), None),  # host network: stays on loopback
    (row(handler={"tcpSocket": {"port": 2379, "host": "localhost"}}), None),
    (row(handler={"tcpSocket": {"port": 2379, "host": "10.0.0.1"}}), ("tcpSocket", 2379)),
    (row(result="skipped", handler=None), None),
    (row(result="kept"), None),
    ("not a row", None),
])
def test_probe_port(r, expected):
    assert _listen.probe_port(r) == expected


@pytest.mark.parametrize("summary,match", [
    ({"pod_namespace": "shop", "pod_name": "web-5d9c8b7f6-x2x4q", "pod_container": "web"}, True),
    ({"pod_namespace": "shop", "pod_name": "web", "pod_container": "web"}, True),
    ({"pod_namespace": "shop", "pod_name": "webshop-5d9c8b7f6-x2x4q", "pod_container": "web"}, False),
    ({"pod_namespace": "other", "pod_name": "web-5d9c8b7f6-x2x4q", "pod_container": "web"}, False),
    ({"pod_namespace": "shop", "pod_name": "web-5d9c8b7f6-x2x4q", "pod_container": "metrics"}, False),
    ({"pod_namespace": "shop", "pod_name": "web-5d9c8b7f6-x2x4q", "pod_container": "POD"}, False),
    ({"pod_namespace": None, "pod_name": None, "pod_container": None}, False),
])
def test_probe_matches(summary, match):
    assert _listen.probe_matches(row(), summary) is match


def test_probe_without_namespace_is_the_default_namespace():
    summary = {"pod_namespace": "default", "pod_name": "etcd-node1", "pod_container": "etcd"}
    assert _listen.probe_matches(row(namespace=None, name="etcd", container="etcd", kind="Pod"), summary)


class FakeClient(object):
    """The two Engine calls _listen makes, answered from a table."""

    def __init__(self, containers, pids):
        self.listed = containers
        self.pids = pids

    def containers(self, timeout=None):
        return self.listed

    def inspect(self, cid, timeout=None):
        from ansible_collections.hangdoctor.runtime.plugins.module_utils._engine_api import EngineError
        for c in self.listed:
            if c["Id"].startswith(cid):
                return {"Id": c["Id"], "Name": "/" + c["Names"][0].lstrip("/"), "Config": {"Labels": c["Labels"]},
                        "State": {"Running": True, "Status": "running", "Pid": self.pids[c["Id"]]}}
        raise EngineError("No such container: %s" % cid, status=404)


def k8s_container(cid, pod, container, ns="shop"):
    return {"Id": cid, "Names": ["/k8s_%s_%s" % (container, pod)],
            "Labels": {"io.kubernetes.pod.namespace": ns, "io.kubernetes.pod.name": pod,
                       "io.kubernetes.container.name": container}}


@pytest.mark.skipif(not _little(), reason="fixture tables are little-endian")
def test_probe_checks_warn_only_for_loopback_only_ports(tmp_path):
    proc = proc_tree(tmp_path)
    client = FakeClient([k8s_container("a" * 64, "web-5d9c-x2x4q", "web"),
                         k8s_container("b" * 64, "web-5d9c-x2x4q", "POD"),
                         k8s_container("c" * 64, "db-0", "db")], {"a" * 64: 4242, "b" * 64: 4242, "c" * 64: 4242})
    probes = [row(handler={"httpGet": {"path": "/", "port": 18080}}),
              row(probe="readiness", handler={"tcpSocket": {"port": 18081}}),
              row(probe="startup", handler={"httpGet": {"port": "http"}}),
              row(name="db", container="db", kind="StatefulSet", handler={"tcpSocket": {"port": 18085}}),
              row(name="gone", container="gone")]
    out = _listen.report(proc, client, probes=probes)
    checks = [(c["name"], c["probe"], c["port"], c["reachable_from_node"], bool(c["warning"])) for c in out["probe_checks"]]
    assert checks == [("web", "liveness", 18080, False, True), ("web", "readiness", 18081, True, False),
                      ("web", "startup", None, None, False), ("db", "liveness", 18085, False, True)]
    assert "127.0.0.1" in out["probe_checks"][0]["warning"] and "web-5d9c-x2x4q" in out["probe_checks"][0]["warning"]
    assert "named port" in out["probe_checks"][2]["error"]
    assert [c["container_id"] for c in out["containers"]] == ["a" * 64, "c" * 64]  # each container read once


def test_unknown_container_is_bad_input(tmp_path):
    proc = proc_tree(tmp_path)
    with pytest.raises(_listen.ListenError, match="unknown or stopped containers: nope"):
        _listen.report(proc, FakeClient([], {}), container_ids=["nope"])
