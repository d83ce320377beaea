"""What an exec probe command checks: inference, refusals with their reason,
database pings that need an explicit rule."""
import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _probe_errors, _probe_infer
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils.probe_helpers import deployment, container, assert_valid, convert_one, apply_both


# ---- inference: (command, handler kind, handler without host, timeout from the command)
INFER = [
    (["curl", "-f", "http://localhost:8080/healthz"], "httpGet", {"path": "/healthz", "port": 8080}, None),
    (["curl", "-fsS", "--max-time", "3", "http://127.0.0.1/"], "httpGet", {"path": "/", "port": 80}, 3),
    (["curl", "-fsk", "https://127.0.0.1:8443/readyz?verbose"], "httpGet",
     {"path": "/readyz?verbose", "port": 8443, "scheme": "HTTPS"}, None),
    (["curl", "-f", "https://localhost/"], "httpGet", {"path": "/", "port": 443, "scheme": "HTTPS"}, None),
    (["curl", "--fail", "-H", "Host: api.example", "-m", "2.5", "http://[::1]:9000/ping"], "httpGet",
     {"path": "/ping", "port": 9000, "httpHeaders": [{"name": "Host", "value": "api.example"}]}, 3),
    (["curl", "-f", "-X", "GET", "-o", "/dev/null", "http://localhost:80/"], "httpGet", {"path": "/", "port": 80}, None),
    (["sh", "-c", "curl -fsS 'http://localhost:8080/h?a=1&b=2'"], "httpGet", {"path": "/h?a=1&b=2", "port": 8080}, None),
    (["/bin/sh", "-c", "exec curl -f http://localhost:3000/api/health"], "httpGet", {"path": "/api/health", "port": 3000}, None),
    (["wget", "-q", "-O", "/dev/null", "-T", "2", "http://127.0.0.1:8080/ready"], "httpGet", {"path": "/ready", "port": 8080}, 2),
    (["wget", "-qO-", "http://localhost:9090/-/healthy"], "httpGet", {"path": "/-/healthy", "port": 9090}, None),
    (["wget", "--spider", "--no-check-certificate", "--timeout=4", "https://localhost:8443/"], "httpGet",
     {"path": "/", "port": 8443, "scheme": "HTTPS"}, 4),
    (["busybox", "sh", "-c", "wget -q --spider http://localhost:8080/"], "httpGet", {"path": "/", "port": 8080}, None),
    (["nc", "-z", "127.0.0.1", "5672"], "tcpSocket", {"port": 5672}, None),
    (["nc", "-zv", "-w", "2", "localhost", "2181"], "tcpSocket", {"port": 2181}, 2),
    (["sh", "-c", "nc -z localhost 11211"], "tcpSocket", {"port": 11211}, None),
    (["bash", "-c", "</dev/tcp/127.0.0.1/9092"], "tcpSocket", {"port": 9092}, None),
    (["/bin/bash", "-c", "echo > /dev/tcp/localhost/6379"], "tcpSocket", {"port": 6379}, None),
    (["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/5432"], "tcpSocket", {"port": 5432}, None),
    (["/bin/grpc_health_probe", "-addr=:50051"], "grpc", {"port": 50051}, None),
    (["grpc_health_probe", "-addr", "localhost:9090", "-service", "orders.v1", "-connect-timeout", "250ms"], "grpc",
     {"port": 9090, "service": "orders.v1"}, 1),
    (["grpc_health_probe", "-addr=127.0.0.1:8081", "-rpc-timeout=5s", "-v"], "grpc", {"port": 8081}, 5),
]


@pytest.mark.parametrize("command,kind,handler,timeout", INFER, ids=[" ".join(c[0])[:60] for c in INFER])
def test_infer_converts_network_checks(command, kind, handler, timeout):
    got_kind, got, got_timeout, dummy = _probe_infer.infer(command)
    got = dict(got)
    host = got.pop("host", None)
    assert (got_kind, got, got_timeout) == (kind, handler, timeout)
    assert host in (None, "127.0.0.1", "::1")


# ---- refusals: (command, words the reason must contain)
REFUSED = [
    (["sh", "-c", "curl -sf http://localhost:9100/metrics | grep -q up"], "pipeline"),
    (["sh", "-c", "curl -f http://localhost/ && touch /tmp/ok"], "command list"),
    (["sh", "-c", "nc -z localhost 80 || exit 1"], "command list"),
    (["sh", "-c", "curl -f http://localhost:$PORT/health"], "variables"),
    (["sh", "-c", "curl -f http://$(hostname -i):80/"], "variables or command substitution"),
    (["sh", "-c", "curl -f http://localhost/ > /dev/null"], "shell operators"),
    (["sh", "-c", "curl -f http://localhost/; true"], "shell operators"),
    (["sh", "-c", "curl -f http://localhost/\ncurl -f http://localhost/b"], "more than one line"),
    (["sh", "-e", "/probe.sh"], "shell invocation"),
    (["curl", "-f", "-X", "POST", "http://localhost/check"], "only sends GET"),
    (["curl", "-f", "-d", "{}", "http://localhost/check"], "request body"),
    (["curl", "-f", "-u", "admin:secret", "http://localhost/"], "credentials"),
    (["curl", "-f", "-H", "Authorization: Bearer abc", "http://localhost/"], "credential"),
    (["curl", "-f", "http://admin:secret@localhost/"], "credentials"),
    (["curl", "--unix-socket", "/run/app.sock", "http://localhost/health"], "unix socket"),
    (["curl", "-f", "http://db.internal:8080/"], "not loopback"),
    (["curl", "-f", "http://10.0.0.7:8080/"], "not loopback"),
    (["curl", "-fk", "http://localhost/"], "-k on a plain http"),
    (["curl", "-f", "--retry-all-errors", "http://localhost/"], "unsupported curl option"),
    (["curl", "-f", "http://localhost/a", "http://localhost/b"], "exactly one literal URL"),
    (["wget", "--post-data", "x=1", "http://localhost/"], "request body"),
    (["wget", "--http-user", "u", "--http-password", "p", "http://localhost/"], "credentials"),
    (["wget", "-O", "/tmp/out", "http://localhost/"], "writes to"),
    (["nc", "-U", "/run/app.sock"], "unix socket"),
    (["nc", "localhost", "80"], "without -z"),
    (["nc", "-z", "redis", "6379"], "not loopback"),
    (["sh", "-c", "</dev/tcp/127.0.0.1/80"], "bash feature"),
    (["bash", "-c", "</dev/tcp/example.org/80"], "not loopback"),
    (["grpc_health_probe", "-addr=:443", "-tls"], "TLS"),
    (["grpc_health_probe", "-addr=:50051", "-rpc-header=authorization: x"], "credentials"),
    (["grpc_health_probe", "-addr=backend:50051"], "not loopback"),
    (["grpc_health_probe"], "without -addr"),
    (["redis-cli", "-a", "secret", "ping"], "password"),
    (["mysqladmin", "ping", "-psecret"], "password"),
    (["pg_isready", "--socket=/var/run/postgresql"], "unix socket"),
    (["/health/ping_liveness_local.sh", "5"], "not a known network check"),
    (["mongosh", "--eval", "db.adminCommand('ping')"], "not a known network check"),
    ("curl http://localhost/", "not a list"),
]


@pytest.mark.parametrize("command,reason", REFUSED, ids=[str(c[0])[:60] for c in REFUSED])
def test_infer_refuses_with_reason(command, reason):
    with pytest.raises(_probe_errors.Refused) as e:
        _probe_infer.infer(command)
    assert reason in str(e.value)


LOSSY = [
    (["pg_isready", "-U", "postgres", "-h", "127.0.0.1", "-p", "5433"], 5433),
    (["pg_isready", "-U", "postgres"], 5432),
    (["redis-cli", "ping"], 6379),
    (["redis-cli", "-h", "localhost", "-p", "6380", "PING"], 6380),
    (["mysqladmin", "ping", "-h", "127.0.0.1", "-P", "3307"], 3307),
    (["sh", "-c", "exec pg_isready -U \"postgres\" -h 127.0.0.1 -p 5432"], 5432),
]


@pytest.mark.parametrize("command,port", LOSSY, ids=[" ".join(c[0])[:50] for c in LOSSY])
def test_database_pings_need_an_explicit_rule(command, port):
    with pytest.raises(_probe_errors.Lossy) as e:
        _probe_infer.infer(command)
    assert e.value.port == port and "rule" in str(e.value)
    kind, handler, dummy, warns = _probe_infer.infer(command, allow_lossy=True)
    assert kind == "tcpSocket" and handler["port"] == port
    assert "no longer checked" in warns[0]

    obj = deployment([container(command)])
    assert convert_one(obj)["converted"] == []
    for rules in ([{"command": "pg_isready|redis-cli|mysqladmin", "action": "tcp"}],
                  [{"workload": "app", "allow_lossy": True}]):
        report = convert_one(obj, rules)
        assert [c["handler"] for c in report["converted"]] == [{"tcpSocket": {"port": port}}]
        after = apply_both(obj, report["patch"])
        assert_valid(after)
