"""Evidence before conversion: loopback listen addresses a container
configures, pods of a workload, the verdict from what a node saw, and the
exec probe inventory per node."""
import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _probe_evidence
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils.probe_helpers import container, convert_one, deployment


@pytest.mark.parametrize("spec,port,expected", [
    ({"args": ["--web.listen-address=127.0.0.1:9090"]}, 9090, "--web.listen-address=127.0.0.1:9090"),
    ({"args": ["--web.listen-address=127.0.0.1:9090"]}, 9091, None),
    ({"args": ["--bind-address", "127.0.0.1"]}, 8080, "--bind-address 127.0.0.1"),
    ({"command": ["app", "--metrics-bind-address=localhost:8080"]}, 8080, "--metrics-bind-address=localhost:8080"),
    ({"args": ["-listen", "[::1]:7000"]}, 7000, "-listen [::1]:7000"),
    ({"args": ["--host=127.0.0.1", "--port=3000"]}, 3000, "--host=127.0.0.1"),
    ({"env": [{"name": "LISTEN_ADDR", "value": "127.0.0.1:8080"}]}, 8080, "env LISTEN_ADDR=127.0.0.1:8080"),
    ({"env": [{"name": "HOST", "value": "localhost"}]}, 3000, "env HOST=localhost"),
    ({"command": ["/cloud_sql_proxy", "-instances=p:r:db=tcp:5432"]}, 5432, "cloud_sql_proxy listens on 127.0.0.1"),
    # where to connect, not where to listen
    ({"args": ["--db-host=localhost", "--server-address=127.0.0.1:443"]}, 443, None),
    ({"env": [{"name": "DB_HOST", "value": "127.0.0.1"}]}, 5432, None),
    ({"args": ["--web.listen-address=0.0.0.0:9090"]}, 9090, None),
    ({"command": ["/cloud_sql_proxy", "-instances=p:r:db=tcp:0.0.0.0:5432"]}, 5432, None),
])
def test_loopback_listen_settings(spec, port, expected):
    found = _probe_evidence.loopback_setting_for(spec, port)
    if expected is None:
        assert found is None
    else:
        assert found is not None and expected in found


def test_the_configured_loopback_listener_is_named_as_the_reason():
    # the exec probe would even convert (declared port, --fail): the listener says it must not
    c = container(["curl", "-f", "http://localhost:9090/-/healthy"], ports=[{"containerPort": 9090}])
    c["args"] = ["--web.listen-address=127.0.0.1:9090"]
    report = convert_one(deployment([c]))
    row = report["skipped"][0]
    assert row["reason_kind"] == "loopback-only" and "--web.listen-address=127.0.0.1:9090" in row["reason"]
    # a refusal for shell syntax is explained by the listener instead ("command substitution" is true, not why)
    c = container(["sh", "-c", "wget -qO- http://127.0.0.1:9090/-/ready | grep -q Ready"], ports=[{"containerPort": 9090}])
    c["args"] = ["--web.listen-address=127.0.0.1:9090"]
    row = convert_one(deployment([c]))["skipped"][0]
    assert row["reason_kind"] == "loopback-only" and "also: the script is a pipeline" in row["reason"]
    # a credential stays the reason: it is never weakened into another kind
    c = container(["curl", "-u", "a:b", "http://127.0.0.1:9090/"], ports=[{"containerPort": 9090}])
    c["args"] = ["--web.listen-address=127.0.0.1:9090"]
    assert convert_one(deployment([c]))["skipped"][0]["reason_kind"] == "credential"
    # an explicit rule converts with the setting as a warning
    c = container(["curl", "-f", "http://localhost:9090/-/healthy"], ports=[{"containerPort": 9090}])
    c["args"] = ["--web.listen-address=127.0.0.1:9090"]
    report = convert_one(deployment([c]), rules=[{"action": "tcp"}])
    assert report["converted"] and any("--web.listen-address" in w for w in report["converted"][0]["warnings"])


def test_workload_pods_follow_the_owner_chain_and_the_selector():
    dep = deployment([container(["true"])], name="web")
    pods = [
        {"metadata": {"name": "web-5d9-a", "namespace": "ns", "labels": {"app": "web"},
                      "ownerReferences": [{"kind": "ReplicaSet", "name": "web-5d9"}]}},
        {"metadata": {"name": "webhook-1-b", "namespace": "ns", "labels": {"app": "webhook"},
                      "ownerReferences": [{"kind": "ReplicaSet", "name": "webhook-1"}]}},
        {"metadata": {"name": "web-5d9-c", "namespace": "other", "labels": {"app": "web"},
                      "ownerReferences": [{"kind": "ReplicaSet", "name": "web-5d9"}]}},
        {"metadata": {"name": "web-x", "namespace": "ns", "labels": {"app": "web"}}},
    ]
    assert [p["metadata"]["name"] for p in _probe_evidence.workload_pods(dep, pods)] == ["web-5d9-a"]
