import json, os, sys, time, subprocess
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import collections_path
from test_cri import cri, cri_release  # noqa
sys.path.insert(0, collections_path())
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs, _shim_probe

def test_probe(cri, cri_release):
    from test_cri import IN_FLIGHT, assert_really_stuck
    pod = cri.run_pod("zz-0", namespace="shop")
    app, sidecar = pod["containers"]["app"], pod["containers"]["sidecar"]
    shim = cri.shim_of(pod["id"])
    proc = _procfs.Proc("/proc")
    print("before", json.dumps(_shim_probe.probe(proc, shim, "v2", app, 2.0)))
    fut, pid = cri.hang_execsync(app, request_timeout=IN_FLIGHT)
    assert_really_stuck(cri, pod, app, fut, pid)
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _cri
    import threading
    r = _shim_probe.probe(proc, shim, "v2", app, 3.0)
    print("nopids", r["answered"], r["elapsed_ms"], r["error"])
    addr = r["socket"]
    def pids(cid):
        try:
            print("pids", cid[:12], _cri.task_pids(addr, cid, 8.0))
        except Exception as e:
            print("pids", cid[:12], "err", e)
    th = threading.Thread(target=pids, args=(app,), daemon=True); th.start()
    time.sleep(1.0)
    for cid in (app, sidecar, "nonexistent"):
        r = _shim_probe.probe(proc, shim, "v2", cid, 2.0)
        print("withpids", cid[:12], r["answered"], r["elapsed_ms"], r["error"])
    th.join(10)
    r = _shim_probe.probe(proc, shim, "v2", app, 2.0)
    print("after", r["answered"], r["elapsed_ms"], r["error"])
    assert False
