"""_engines: option parsing, a node without engines, and the one-line message."""
import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _engines


@pytest.mark.parametrize("value,expected", [
    ("auto", None), (["auto"], None), (None, None),
    (["containerd"], ("containerd",)), (["containerd", "docker"], ("docker", "containerd")),
    ("docker,containerd", ("docker", "containerd")),
])
def test_parse_engines(value, expected):
    assert _engines.parse_engines(value) == expected


@pytest.mark.parametrize("bad", [["podman"], [], "cri-o", ["docker", "crio"]])
def test_unknown_engines_are_refused_clearly(bad):
    with pytest.raises(_engines.EnginesError) as e:
        _engines.parse_engines(bad)
    assert "engines must be 'auto'" in str(e.value)


def test_node_without_engines_is_a_result(tmp_path):
    r = _engines.check_engines(_engines.EngineQuery(docker_host="unix://%s/d.sock" % tmp_path,
                                                    containerd_address=str(tmp_path / "c.sock"), timeout=1))
    assert [(e["name"], e["present"], e["checked"]) for e in r["engines"]] == [
        ("docker", False, False), ("containerd", False, False)]
    assert r["containers"] == [] and r["hung"] == []
    assert _engines.summary_msg(r) == "no container engine found on this node (looked for docker, containerd)"


def test_only_the_engines_asked_for_are_listed(tmp_path):
    r = _engines.check_engines(_engines.EngineQuery(engines=["containerd"], containerd_address=str(tmp_path / "c.sock"),
                                                    timeout=1))
    assert [e["name"] for e in r["engines"]] == ["containerd"]
    assert r["engines"][0]["error"].startswith("no socket at")


@pytest.mark.parametrize("kwargs,word", [
    ({"docker_host": "https://x:2376"}, "not supported"),
    ({"containerd_address": "relative.sock"}, "absolute"),
    ({"timeout": 0}, "timeout"),
])
def test_bad_options_raise(kwargs, word):
    with pytest.raises(_engines.EnginesError) as e:
        _engines.check_engines(_engines.EngineQuery(**kwargs))
    assert word in str(e.value)


def test_message_names_hung_pods():
    r = {"engines": [{"name": "docker", "present": False, "checked": False},
                     {"name": "containerd", "present": True, "checked": True, "reachable": True}],
         "containers": [{"id": "a" * 64, "pod_namespace": "shop", "pod_name": "web", "container_name": "app"},
                        {"id": "b" * 64, "pod_namespace": None, "pod_name": None, "name": "b"}],
         "hung": ["a" * 64], "unchecked": []}
    assert _engines.summary_msg(r) == ("1 of 2 containers hung (shop/web/app); checked containerd; "
                                       "not on this node: docker")


# ---- "checked" means "we asked": a hung or dead engine is checked and unreachable ----

def _stale_socket(path):
    """What a killed daemon leaves: the socket file, nobody listening (ECONNREFUSED)."""
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()


def _silent_listener(path):
    """A daemon that is stopped (SIGSTOP): the kernel accepts into the backlog, nobody answers."""
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(64)
    return s


def test_a_dead_dockerd_is_checked_and_unreachable(tmp_path):
    _stale_socket(tmp_path / "d.sock")
    r = _engines.check_engines(_engines.EngineQuery(engines=["docker"], docker_host="unix://%s/d.sock" % tmp_path,
                                                    timeout=1))
    (e,) = r["engines"]
    assert (e["present"], e["checked"], e["reachable"]) == (True, True, False), e
    msg = _engines.summary_msg(r)
    assert msg.startswith("docker UNREACHABLE, not usable: ") and "not checked" not in msg, msg


def test_a_hung_dockerd_is_checked_and_unreachable(tmp_path):
    s = _silent_listener(tmp_path / "d.sock")
    try:
        r = _engines.check_engines(_engines.EngineQuery(engines=["docker"], docker_host="unix://%s/d.sock" % tmp_path,
                                                        timeout=0.5))
    finally:
        s.close()
    (e,) = r["engines"]
    assert (e["present"], e["checked"], e["reachable"]) == (True, True, False), e
    assert "UNREACHABLE" in _engines.summary_msg(r)


def test_a_dead_containerd_is_checked_and_unreachable(tmp_path):
    _stale_socket(tmp_path / "c.sock")
    r = _engines.check_engines(_engines.EngineQuery(engines=["containerd"], containerd_address=str(tmp_path / "c.sock"),
                                                    timeout=1))
    (e,) = r["engines"]
    assert (e["present"], e["checked"], e["reachable"]) == (True, True, False), e
    assert _engines.summary_msg(r).startswith("containerd UNREACHABLE, not usable: ")


def test_message_names_an_unreachable_engine_next_to_one_that_answers():
    r = {"engines": [{"name": "docker", "present": True, "checked": True, "reachable": False, "error": "timed out"},
                     {"name": "containerd", "present": True, "checked": True, "reachable": True}],
         "containers": [], "hung": [], "unchecked": []}
    assert _engines.summary_msg(r) == "0 of 0 containers hung; checked containerd; docker UNREACHABLE, not usable: timed out"
