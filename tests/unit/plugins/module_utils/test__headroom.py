"""Parsing of /proc/PID/cgroup and the cgroup files (v1 and v2) into a container's headroom."""
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _headroom

CID = "5d55bb222e20cb32b1e7c584bf11f7560d36638085cb511a766a4a6212c9380e"

V1 = """12:pids:/docker/%s
11:memory:/docker/%s
4:cpu,cpuacct:/docker/%s
0::/
""" % (CID, CID, CID)

V2 = "0::/system.slice/docker-%s.scope\n" % CID


def write(root, rel, text):
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def test_parse_proc_cgroup_v1_and_v2():
    assert _headroom.parse_proc_cgroup(V1) == {"v2": "/", "pids": "/docker/" + CID, "memory": "/docker/" + CID}
    assert _headroom.parse_proc_cgroup(V2) == {"v2": "/system.slice/docker-%s.scope" % CID}


def test_container_id_of_the_layouts():
    for path in ("/docker/" + CID, "/system.slice/docker-%s.scope" % CID,
                 "/kubepods/burstable/pod1234/" + CID, "/kubepods.slice/x/cri-containerd-%s.scope" % CID):
        assert _headroom.container_id_of(path) == CID, path
    assert _headroom.container_id_of("/user.slice") is None and _headroom.container_id_of(None) is None


def test_v1_limits_and_a_container_at_its_pids_limit(tmp_path):
    write(tmp_path, "pids/docker/%s/pids.max" % CID, "3\n")
    write(tmp_path, "pids/docker/%s/pids.current" % CID, "3\n")
    write(tmp_path, "memory/docker/%s/memory.limit_in_bytes" % CID, "9223372036854771712\n")
    write(tmp_path, "memory/docker/%s/memory.usage_in_bytes" % CID, "331776\n")
    write(tmp_path, "memory/docker/%s/memory.failcnt" % CID, "0\n")
    write(tmp_path, "memory/docker/%s/memory.oom_control" % CID, "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    lim = _headroom.read_limits(str(tmp_path), _headroom.parse_proc_cgroup(V1))
    assert lim["cgroup_version"] == 1 and lim["pids_max"] == 3 and lim["pids_current"] == 3
    assert lim["memory_limit"] is None and lim["memory_usage"] == 331776
    assert lim["memory_events"] == {"max": 0, "oom_kill": 2}
    reasons, score = _headroom.assess_container(lim, 8, 0.05)
    assert reasons == ["pids_at_limit", "memory_oom_seen"] and lim["pids_headroom"] == 0 and score >= 100


def test_v2_limits_memory_near_its_limit(tmp_path):
    d = "system.slice/docker-%s.scope" % CID
    write(tmp_path, d + "/pids.max", "max\n")
    write(tmp_path, d + "/pids.current", "7\n")
    write(tmp_path, d + "/memory.max", "104857600\n")
    write(tmp_path, d + "/memory.current", "103809024\n")
    write(tmp_path, d + "/memory.events", "low 0\nhigh 0\nmax 12\noom 1\noom_kill 0\n")
    lim = _headroom.read_limits(str(tmp_path), _headroom.parse_proc_cgroup(V2))
    assert lim["cgroup_version"] == 2 and lim["pids_max"] is None and lim["memory_limit"] == 104857600
    assert lim["memory_events"] == {"max": 12, "oom": 1, "oom_kill": 0}
    reasons, dummy = _headroom.assess_container(lim, 8, 0.05)
    assert reasons == ["memory_near_limit", "memory_oom_seen"] and lim["pids_headroom"] is None
    assert lim["memory_headroom_bytes"] == 104857600 - 103809024


def test_headroom_left_is_not_a_risk(tmp_path):
    lim = {"pids_max": 100, "pids_current": 2, "memory_limit": 1000, "memory_usage": 100, "memory_events": {}}
    assert _headroom.assess_container(lim, 8, 0.05) == ([], 0.0)
    lim = {"pids_max": 10, "pids_current": 5, "memory_limit": None, "memory_usage": 100, "memory_events": {}}
    assert _headroom.assess_container(lim, 8, 0.05)[0] == ["pids_low_headroom"]


def test_a_symlinked_cgroup_file_is_not_followed(tmp_path):
    write(tmp_path, "elsewhere", "1\n")
    d = tmp_path / "pids" / "docker" / CID
    d.mkdir(parents=True)
    (d / "pids.max").symlink_to(tmp_path / "elsewhere")
    lim = _headroom.read_limits(str(tmp_path), _headroom.parse_proc_cgroup(V1))
    assert lim["pids_max"] is None


def test_a_pod_level_pids_limit_bounds_its_containers(tmp_path):
    """The kubelet's pod pids limit sits on the pod's cgroup, the parent of the
    container's: the tightest level counts."""
    pod = "kubepods/besteffort/pod1234"
    cg = "12:pids:/%s/%s\n11:memory:/%s/%s\n" % (pod, CID, pod, CID)
    write(tmp_path, "pids/%s/%s/pids.max" % (pod, CID), "max\n")
    write(tmp_path, "pids/%s/%s/pids.current" % (pod, CID), "3\n")
    write(tmp_path, "pids/%s/pids.max" % pod, "10\n")
    write(tmp_path, "pids/%s/pids.current" % pod, "10\n")
    write(tmp_path, "pids/kubepods/pids.max", "30000\n")
    write(tmp_path, "pids/kubepods/pids.current", "200\n")
    write(tmp_path, "memory/%s/%s/memory.limit_in_bytes" % (pod, CID), "1000000\n")
    write(tmp_path, "memory/%s/%s/memory.usage_in_bytes" % (pod, CID), "10000\n")
    lim = _headroom.read_limits(str(tmp_path), _headroom.parse_proc_cgroup(cg))
    assert (lim["pids_max"], lim["pids_current"], lim["pids_limit_cgroup"]) == (10, 10, "/" + pod)
    assert (lim["memory_limit"], lim["memory_usage"]) == (1000000, 10000)
    assert lim["memory_limit_cgroup"] == "/%s/%s" % (pod, CID)
    assert _headroom.assess_container(lim, 8, 0.05)[0] == ["pids_at_limit"]


def test_v2_parent_memory_limit_is_seen(tmp_path):
    path = "kubepods.slice/kubepods-pod1.slice/cri-containerd-%s.scope" % CID
    write(tmp_path, path + "/memory.max", "max\n")
    write(tmp_path, path + "/memory.current", "5000\n")
    write(tmp_path, "kubepods.slice/kubepods-pod1.slice/memory.max", "100000\n")
    write(tmp_path, "kubepods.slice/kubepods-pod1.slice/memory.current", "99000\n")
    lim = _headroom.read_limits(str(tmp_path), {"v2": "/" + path})
    assert lim["memory_limit"] == 100000 and lim["memory_usage"] == 99000
    assert lim["memory_limit_cgroup"] == "/kubepods.slice/kubepods-pod1.slice"
    assert "memory_near_limit" in _headroom.assess_container(lim, 8, 0.05)[0]


def test_memory_event_growth_since_the_previous_run():
    assert _headroom.events_growth({"max": 12, "oom": 1, "oom_kill": 0}, {"max": 10, "oom": 1, "oom_kill": 0}) == {"max": 2}
    assert _headroom.events_growth({"max": 3}, None) == {}  # first run: nothing to compare
    assert _headroom.events_growth({"max": 3}, {"max": 9}) == {}  # a new cgroup under the same id
    assert _headroom.events_growth({"max": 3}, {"max": True}) == {}
    lim = {"pids_max": None, "pids_current": 2, "memory_limit": 1000, "memory_usage": 10,
           "memory_events": {"max": 12}, "memory_events_growth": {"max": 2}}
    reasons, score = _headroom.assess_container(lim, 8, 0.05)
    assert reasons == ["memory_events_growing"]
    assert score >= 60
