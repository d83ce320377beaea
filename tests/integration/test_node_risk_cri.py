"""node_risk on a real containerd CRI node: a pod at its pod-level pids limit
(set on the pod's cgroup as the kubelet's podPidsLimit does) has every
container flagged, named with pod and container from the CRI annotations; a
pod with headroom is not flagged."""
import os

from conftest import run_module


def pod_pids_cgroup(cri, pod):
    return "/sys/fs/cgroup/pids/%s/pod%s" % (cri.cgroup_parent, pod["uid"])


def test_pod_at_its_pids_limit_is_flagged_and_a_pod_with_headroom_is_not(cri, tmp_path):
    full = cri.run_pod("risk-full", namespace="shop", containers=("app", "sidecar"))
    roomy = cri.run_pod("risk-roomy", namespace="shop", containers=("app",))
    try:
        d = pod_pids_cgroup(cri, full)
        assert os.path.isdir(d), d
        with open(os.path.join(d, "pids.current")) as f:
            current = int(f.read())
        assert current >= 3  # pause and two sleeps
        with open(os.path.join(d, "pids.max"), "w") as f:
            f.write("%d\n" % current)  # what the kubelet's podPidsLimit does, at its limit
        with open(os.path.join(pod_pids_cgroup(cri, roomy), "pids.max"), "w") as f:
            f.write("100\n")
        res, dummy = run_module("node_risk", {"risk_checks": ["headroom"], "metrics_dir": str(tmp_path / "m"),
                                              "exec_probe_containers": ["shop/risk-full/app"]})
        assert res["_status"] == "SUCCESS", res
        by_id = dict((c["container_id"], c) for c in res["headroom"]["containers"])
        for name in ("app", "sidecar"):
            c = by_id[full["containers"][name]]
            assert (c["pod_namespace"], c["pod_name"], c["container_name"]) == ("shop", "risk-full", name), c
            assert c["pids_max"] == current and c["pids_headroom"] == 0, c
            assert c["pids_limit_cgroup"] == "/%s/pod%s" % (cri.cgroup_parent, full["uid"])
            assert c["at_risk"] is True and "pids_at_limit" in c["risk_reasons"]
        assert by_id[full["containers"]["app"]]["exec_probe"] is True
        assert by_id[full["containers"]["sidecar"]]["exec_probe"] is False
        ok = by_id[roomy["containers"]["app"]]
        assert ok["pod_name"] == "risk-roomy" and ok["pids_max"] == 100 and ok["at_risk"] is False, ok
        order = [c["container_id"] for c in res["headroom"]["containers"]]
        # at risk first, the exec-probe container before its sidecar
        assert order.index(full["containers"]["app"]) < order.index(full["containers"]["sidecar"]) \
            < order.index(roomy["containers"]["app"])
        text = (tmp_path / "m" / "hangdoctor_risk.prom").read_text()
        assert ('hangdoctor_container_pids_headroom{namespace="shop",pod="risk-full",container="app",'
                'container_id="%s",exec_probe="true"} 0\n' % full["containers"]["app"][:12]) in text, text
    finally:
        for pod in (full, roomy):
            cri.remove_pod(pod["id"])
