"""The DaemonSets' liveness endpoint (extras/container/hangdoctor_health.py):
200 while the loop's heartbeat is fresh, 503 when it is stale or missing,
nonsense limits refused; served over real HTTP as the kubelet's httpGet probe
asks it."""
import http.client
import importlib.util
import os
import subprocess
import sys
import threading
import time
from http.server import HTTPServer
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "extras" / "container" / "hangdoctor_health.py"
spec = importlib.util.spec_from_file_location("hangdoctor_health", str(SCRIPT))
health = importlib.util.module_from_spec(spec)
spec.loader.exec_module(health)


def test_verdicts(tmp_path):
    hb = tmp_path / "heartbeat"
    ok, why = health.verdict(str(hb), 60)
    assert not ok and "no heartbeat" in why
    hb.touch()
    assert health.verdict(str(hb), 60)[0] is True
    old = time.time() - 61
    os.utime(str(hb), (old, old))
    ok, why = health.verdict(str(hb), 60)
    assert not ok and "not going round" in why
    future = time.time() + 3600
    os.utime(str(hb), (future, future))
    assert health.verdict(str(hb), 60)[0] is False


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "0", "-5", "soon"])
def test_nonsense_max_age_is_refused(bad, tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT), "--heartbeat", str(tmp_path / "hb"), "--max-age", bad],
                       capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 2 and "--max-age" in r.stderr and "Traceback" not in r.stderr, r.stderr


def _get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def test_served_over_http(tmp_path):
    hb = tmp_path / "heartbeat"
    server = HTTPServer(("127.0.0.1", 0), health.make_handler(str(hb), 30))
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    port = server.server_address[1]
    try:
        assert _get(port, "/healthz")[0] == 503
        hb.touch()
        status, body = _get(port, "/healthz")
        assert status == 200 and "limit 30 s" in body
        old = time.time() - 31
        os.utime(str(hb), (old, old))
        assert _get(port, "/healthz")[0] == 503
        assert _get(port, "/")[0] == 404
    finally:
        server.shutdown()
        server.server_close()
