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
    # -k does nothing on plain http (no -L to follow a redirect to https)
    (["curl", "-fk", "http://localhost/"], "httpGet", {"path": "/", "port": 80}, None),
    (["curl", "--insecure", "--fail", "-s", "http://127.0.0.1:8080/healthz"], "httpGet", {"path": "/healthz", "port": 8080}, None),
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


# ---- refusals: (command, reason kind, words the reason must contain)
REFUSED = [
    (["sh", "-c", "curl -sf http://localhost:9100/metrics | grep -q up"], "shell", "pipeline"),
    (["sh", "-c", "curl -f http://localhost/ && touch /tmp/ok"], "shell", "command list"),
    (["sh", "-c", "curl -f http://localhost:$PORT/health"], "variable", "PORT (not in the container env"),
    (["sh", "-c", "curl -f -H 'Host: x' http://localhost:$SECRET_PORT/"], "credential", "SECRET_PORT, a credential by its name"),
    (["sh", "-c", "curl -f http://$(hostname -i):80/"], "shell", "command substitution"),
    (["sh", "-c", "curl -f http://localhost/ > /dev/null"], "shell", "shell operators"),
    (["sh", "-c", "curl -f http://localhost/; true"], "never-fails", 'ends with "; true"'),
    (["sh", "-c", "curl -f http://localhost/ || true"], "never-fails", "exits 0 whatever"),
    (["sh", "-c", "$0"], "never-fails", "only command is $0"),
    (["/bin/sh", "-c", "\"$0\""], "never-fails", "only command is $0"),
    (["true"], "never-fails", "always exits 0"),
    (["sh", "-c", "exit 0"], "never-fails", 'only command is "exit 0"'),
    (["sh", "-c", "echo ok"], "never-fails", "always exits 0"),
    (["sh", "-c", "curl -f http://localhost/\ncurl -f http://localhost/b"], "shell", "more than one command"),
    (["sh", "-e", "/probe.sh"], "script", "script file /probe.sh"),
    (["bash", "/scripts/ready.sh"], "script", "script file /scripts/ready.sh"),
    (["/health/ping_liveness_local.sh", "5"], "script", "script file"),
    (["sh", "-c", "/health/ping_liveness_local.sh 5"], "script", "script file"),
    (["sh", "-i", "-c", "true"], "shell", "option -i"),
    (["curl", "-f", "-X", "POST", "http://localhost/check"], "app-check", "only sends GET"),
    (["curl", "-f", "-d", "{}", "http://localhost/check"], "app-check", "request body"),
    (["curl", "-f", "-u", "admin:secret", "http://localhost/"], "credential", "credential"),
    (["curl", "-f", "-H", "Authorization: Bearer abc", "http://localhost/"], "credential", "credential"),
    (["curl", "-f", "-H", "apikey: abc", "http://localhost:8000/status"], "credential", "apikey header is a credential"),
    (["curl", "-f", "-H", "X-Api-Key: abc", "http://localhost:8000/"], "credential", "X-Api-Key header is a credential"),
    (["wget", "-q", "--header=X-Sonar-Passcode: $(PASSCODE)", "http://localhost:9000/api/system/liveness"], "credential",
     "credential"),
    (["curl", "-f", "http://localhost:8080/health?access_token=abc"], "credential", "access_token is a credential"),
    (["curl", "-f", "http://localhost:8080/health?api_key=abc&x=1"], "credential", "credential"),
    (["curl", "-f", "http://admin:secret@localhost/"], "credential", "user info"),
    (["sh", "-c", "curl -f -H \"Authorization: Bearer $TOKEN\" http://localhost/"], "credential", "credential"),
    (["sh", "-c", "redis-cli -a $REDIS_PASSWORD ping"], "credential", "credential"),
    (["sh", "-c", "mysqladmin ping -u root -p${MYSQL_ROOT_PASSWORD}"], "credential", "credential"),
    (["sh", "-c", "MYSQL_PWD=$MYSQL_ROOT_PASSWORD mysqladmin ping"], "credential", "credential"),
    (["curl", "--unix-socket", "/run/app.sock", "http://localhost/health"], "unix-socket", "unix socket"),
    (["curl", "-f", "--cert", "/tls/tls.crt", "--key", "/tls/tls.key", "https://localhost:8443/"], "tls", "mTLS"),
    (["curl", "-f", "http://db.internal:8080/"], "remote-host", "not the container itself"),
    (["curl", "-f", "http://10.0.0.7:8080/"], "remote-host", "not the container itself"),
    (["curl", "-fkL", "http://localhost/"], "tls", "-L may follow a redirect to https"),
    (["curl", "--insecure", "--location", "-f", "http://localhost:8080/"], "tls", "-L may follow a redirect to https"),
    (["curl", "http://localhost:8080/healthz"], "stricter", "an httpGet probe fails on status >= 400"),
    (["curl", "-sS", "-o", "/dev/null", "http://127.0.0.1:9000/minio/health/live"], "stricter", "without --fail"),
    (["sh", "-c", "curl -s http://localhost:8080/"], "stricter", "allow httpGet with allow_stricter, tcpSocket with allow_lossy"),
    (["curl", "-k", "http://localhost:8080/"], "stricter", "something answers HTTP on port 8080"),
    (["curl", "-f", "--retry-all-errors", "http://localhost/"], "unsupported", "unsupported curl option"),
    (["curl", "-f", "http://localhost/a", "http://localhost/b"], "unsupported", "exactly one literal URL"),
    (["wget", "--post-data", "x=1", "http://localhost/"], "app-check", "request body"),
    (["wget", "--http-user", "u", "--http-password", "p", "http://localhost/"], "credential", "credential"),
    (["wget", "-O", "/tmp/out", "http://localhost/"], "unsupported", "writes to"),
    (["nc", "-U", "/run/app.sock"], "unix-socket", "unix socket"),
    (["nc", "-zu", "127.0.0.1", "53"], "udp", "UDP"),
    (["nslookup", "kubernetes.default", "127.0.0.1"], "udp", "UDP"),
    (["nc", "localhost", "80"], "app-check", "without -z"),
    (["nc", "-z", "redis", "6379"], "remote-host", "not the container itself"),
    (["sh", "-c", "</dev/tcp/127.0.0.1/80"], "never-fails", "bash feature"),
    (["bash", "-c", "</dev/udp/127.0.0.1/53"], "udp", "only TCP"),
    (["bash", "-c", "</dev/tcp/example.org/80"], "remote-host", "not the container itself"),
    (["grpc_health_probe", "-addr=:443", "-tls"], "tls", "TLS"),
    (["grpc-health-probe", "-addr=:8081", "-tls", "-tls-no-verify"], "tls", "TLS"),
    (["/bin/grpc-health-probe", "-addr", "localhost:9000", "-tls-ca-cert", "/ca.pem"], "tls", "TLS"),
    (["grpc_health_probe", "-addr=:50051", "-rpc-header=authorization: x"], "credential", "credential"),
    (["grpc_health_probe", "-addr=unix:/run/app.sock"], "unix-socket", "unix socket"),
    (["grpc_health_probe", "-addr=backend:50051"], "remote-host", "not the container itself"),
    (["grpc_health_probe"], "unsupported", "without -addr"),
    (["redis-cli", "-a", "secret", "ping"], "credential", "credential"),
    (["redis-cli", "-s", "/run/redis.sock", "ping"], "unix-socket", "unix socket"),
    (["mysqladmin", "ping", "-psecret"], "credential", "credential"),
    (["mysqladmin", "-S", "/run/mysqld/mysqld.sock", "ping"], "unix-socket", "unix socket"),
    (["mysqladmin", "--socket=/run/mysqld/mysqld.sock", "ping"], "unix-socket", "unix socket"),
    (["pg_isready", "-h", "/var/run/postgresql"], "unix-socket", "unix socket"),
    (["mongosh", "--eval", "db.adminCommand('ping')"], "app-check", "application-level check"),
    (["cat", "/tmp/healthy"], "file-check", "checks a file"),
    (["pgrep", "nginx"], "process-check", "checks a process"),
    ("curl http://localhost/", "invalid", "not a list"),
]


@pytest.mark.parametrize("command,kind,reason", REFUSED, ids=[str(c[0])[:60] for c in REFUSED])
def test_infer_refuses_with_reason(command, kind, reason):
    with pytest.raises(_probe_errors.Refused) as e:
        _probe_infer.infer(command)
    assert (e.value.kind, reason in str(e.value)) == (kind, True), str(e.value)
    assert e.value.kind in _probe_errors.REASON_KINDS


# ---- spellings and preambles that do not change the check
SAME_CHECK = [
    (["sh", "-c", "nc -z localhost 80 || exit 1"], "tcpSocket", {"port": 80}),
    (["/bin/sh", "-c", "-e", "exec pg_isready -U postgres -h 127.0.0.1 -p 5432"], "lossy", 5432),
    (["/bin/bash", "-ec", "curl -f http://localhost:8080/healthz"], "httpGet", {"path": "/healthz", "port": 8080}),
    (["sh", "-ce", "curl -f http://localhost:8080/healthz"], "httpGet", {"path": "/healthz", "port": 8080}),
    (["bash", "-o", "pipefail", "-c", "set -euo pipefail; curl -f http://localhost:8080/"], "httpGet", {"path": "/", "port": 8080}),
    (["sh", "-c", "set -e;\nwget -q -O /dev/null http://localhost:8080/ready"], "httpGet", {"path": "/ready", "port": 8080}),
    (["sh", "-c", "#!/bin/sh\n# readiness: the admin port answers\nnc -z 127.0.0.1 9000"], "tcpSocket", {"port": 9000}),
    (["sh", "-c", "curl -fsS \\\n  http://localhost:3000/api/health"], "httpGet", {"path": "/api/health", "port": 3000}),
    (["env", "sh", "-c", "exec nc -z localhost 5672"], "tcpSocket", {"port": 5672}),
    (["wget", "-q", "-O", "-", "localhost:9104"], "httpGet", {"path": "/", "port": 9104}),
    (["wget", "--spider", "-q", "localhost:8123/ping"], "httpGet", {"path": "/ping", "port": 8123}),
    (["curl", "-f", "127.0.0.1:15672/api/health/checks/alarms"], "httpGet", {"path": "/api/health/checks/alarms", "port": 15672}),
    (["curl", "-f", "http://0.0.0.0:8080/healthz"], "httpGet", {"path": "/healthz", "port": 8080}),
    (["curl", "-f", "http://[0:0:0:0:0:0:0:1]:8080/"], "httpGet", {"path": "/", "port": 8080}),
    (["curl", "-f", "http://localhost.localdomain:8080/"], "httpGet", {"path": "/", "port": 8080}),
    (["nc", "-z", "::ffff:127.0.0.1", "8080"], "tcpSocket", {"port": 8080}),
    (["curl", "-f", "--cacert", "/tls/ca.crt", "https://localhost:8443/livez"], "httpGet",
     {"path": "/livez", "port": 8443, "scheme": "HTTPS"}),
    (["grpc-health-probe", "-addr=:50051"], "grpc", {"port": 50051}),
    (["/bin/grpc-health-probe", "-addr", "127.0.0.1:9090", "-rpc-timeout", "5s", "-service", "health"], "grpc",
     {"port": 9090, "service": "health"}),
    (["grpc_health_probe", "--addr=:8080", "-connect-timeout=2s"], "grpc", {"port": 8080}),
    (["timeout", "3", "nc", "-z", "localhost", "11211"], "tcpSocket", {"port": 11211}),
    (["mysqladmin", "ping", "-s", "-h", "127.0.0.1"], "lossy", 3306),
    (["mysqladmin", "--silent", "ping"], "lossy", 3306),
]


@pytest.mark.parametrize("command,kind,expected", SAME_CHECK, ids=[str(c[0])[:60] for c in SAME_CHECK])
def test_same_check_in_other_spellings(command, kind, expected):
    if kind == "lossy":
        with pytest.raises(_probe_errors.Lossy) as e:
            _probe_infer.infer(command)
        assert e.value.port == expected
        return
    got_kind, got, dummy, dummy2 = _probe_infer.infer(command)
    got = dict(got)
    got.pop("host", None)
    assert (got_kind, got) == (kind, expected)


# ---- $(VAR) and $VAR from the container's env
ENV = [{"name": "PORT", "value": "8080"}, {"name": "HEALTH_PATH", "value": "/healthz"},
       {"name": "ADDR", "value": ":$(PORT)"}, {"name": "DB_PORT", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
       {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}]


@pytest.mark.parametrize("command,handler", [
    (["curl", "-f", "http://localhost:$(PORT)$(HEALTH_PATH)"], {"path": "/healthz", "port": 8080}),
    (["grpc_health_probe", "-addr=$(ADDR)"], {"port": 8080}),
    (["sh", "-c", "curl -f http://localhost:$PORT${HEALTH_PATH}"], {"path": "/healthz", "port": 8080}),
    (["sh", "-c", "nc -z 127.0.0.1 $(PORT)"], {"port": 8080}),
])
def test_variables_from_the_container_env_are_resolved(command, handler):
    dummy, got, dummy2, dummy3 = _probe_infer.infer(command, env=ENV)
    got = dict(got)
    got.pop("host", None)
    assert got == handler


@pytest.mark.parametrize("command,words", [
    (["curl", "-f", "http://localhost:$(OTHER)/"], "OTHER (not in the container env; it may come from envFrom"),
    (["curl", "-f", "http://localhost:$(DB_PORT)/"], "DB_PORT (set from configMapKeyRef"),
    (["sh", "-c", "curl -f http://$HOST_IP:8080/"], "HOST_IP (set from fieldRef"),
    (["sh", "-c", "curl -f http://localhost:$1/"], "$1 (a shell parameter)"),
    (["sh", "-c", "curl -f http://localhost:$$(PORT)/"], "command substitution"),
])
def test_unresolvable_variables_are_refused_saying_which(command, words):
    with pytest.raises(_probe_errors.Refused) as e:
        _probe_infer.infer(command, env=ENV)
    assert e.value.kind in ("variable", "shell") and words in str(e.value), str(e.value)


def test_kubelet_expansion_rules():
    env = _probe_infer.literal_env(ENV)
    assert env["ADDR"] == ":8080" and "DB_PORT" not in env
    assert _probe_infer.kubelet_expand("a$$(PORT)b$(PORT)$(NOPE)$", env) == ("a$(PORT)b8080$(NOPE)$", {"NOPE"})


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

    obj = deployment([container(command, ports=[{"containerPort": port}])])
    assert convert_one(obj)["converted"] == []
    for rules in ([{"command": "pg_isready|redis-cli|mysqladmin", "action": "tcp"}],
                  [{"workload": "app", "allow_lossy": True}]):
        report = convert_one(obj, rules)
        assert [c["handler"] for c in report["converted"]] == [{"tcpSocket": {"port": port}}]
        after = apply_both(obj, report["patch"])
        assert_valid(after)


# ---- curl without --fail: exit 0 on any HTTP status -------------------------------

def test_curl_without_fail_converts_only_when_the_loss_or_the_strictness_is_accepted():
    command = ["curl", "-s", "-m", "3", "http://localhost:8080/healthz"]
    with pytest.raises(_probe_errors.Stricter) as e:
        _probe_infer.infer(command)
    assert e.value.kind == "stricter" and "status >= 400" in str(e.value)
    kind, handler, timeout, warns = _probe_infer.infer(command, allow_stricter=True)
    assert (kind, handler, timeout) == ("httpGet", {"host": "127.0.0.1", "path": "/healthz", "port": 8080}, 3)
    assert any("allow_stricter" in w and "fails on status >= 400" in w for w in warns)
    kind, handler, timeout, warns = _probe_infer.infer(command, allow_lossy=True)
    assert (kind, handler, timeout) == ("tcpSocket", {"host": "127.0.0.1", "port": 8080}, 3)
    assert any("allow_lossy" in w and "tcpSocket" in w for w in warns)
    # strictness wins over the loss when both are allowed: it keeps the path
    assert _probe_infer.infer(command, allow_lossy=True, allow_stricter=True)[0] == "httpGet"
    # a credential still wins over both
    with pytest.raises(_probe_errors.Refused) as e:
        _probe_infer.infer(["curl", "-H", "Authorization: Bearer x", "http://localhost/"], allow_lossy=True, allow_stricter=True)
    assert e.value.kind == "credential"


def test_stricter_through_rules_and_the_whole_object():
    obj = deployment([container(["curl", "-s", "http://localhost:8080/"], ports=[{"containerPort": 8080}])])
    report = convert_one(obj)
    assert report["converted"] == [] and report["skipped"][0]["reason_kind"] == "stricter" and report["patch"] == []
    report = convert_one(obj, rules=[{"workload": "app", "allow_stricter": True}])
    assert report["converted"][0]["handler"] == {"httpGet": {"path": "/", "port": 8080}}
    assert_valid(apply_both(obj, report["patch"]))
    report = convert_one(obj, rules=[{"workload": "app", "allow_lossy": True}])
    assert report["converted"][0]["handler"] == {"tcpSocket": {"port": 8080}}
    # an explicit http rule keeps the path the command asked for
    report = convert_one(obj, rules=[{"workload": "app", "action": "http"}])
    assert report["converted"][0]["handler"] == {"httpGet": {"path": "/", "port": 8080}}


@pytest.mark.parametrize("command", [["wget", "-q", "-O", "-", "http://localhost:8080/"],
                                     ["wget", "--spider", "-q", "http://localhost:8080/"]])
def test_wget_fails_on_http_errors_so_it_is_not_stricter(command):
    """GNU wget exits 8 (6 on 401) and busybox wget exits 1 on status >= 400,
    checked against the real binaries in tests/integration: the httpGet probe
    checks the same thing."""
    assert _probe_infer.infer(command)[0] == "httpGet"
