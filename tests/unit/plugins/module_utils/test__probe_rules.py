"""The API server's probe rules, as validate_probe applies them."""
import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _probe_rules


# ---- the API server's probe rules
VALIDATION = [
    ({"exec": {"command": ["x"]}, "httpGet": {"port": 80}}, "liveness", "exactly one handler"),
    ({"periodSeconds": 3}, "liveness", "exactly one handler"),
    ({"tcpSocket": {"port": 80}, "successThreshold": 2}, "liveness", "successThreshold must be 1"),
    ({"tcpSocket": {"port": 80}, "successThreshold": 2}, "startup", "successThreshold must be 1"),
    ({"tcpSocket": {"port": 80}, "terminationGracePeriodSeconds": 5}, "readiness", "not allowed on readiness"),
    ({"tcpSocket": {"port": 80}, "terminationGracePeriodSeconds": 0}, "liveness", "positive integer"),
    ({"grpc": {"port": "grpc"}}, "liveness", "grpc.port must be a number"),
    ({"httpGet": {"port": "metrics"}}, "readiness", "not a named port"),
    ({"httpGet": {"port": "Http_Port"}}, "readiness", "IANA_SVC_NAME"),
    ({"tcpSocket": {"port": "a-very-long-port-name"}}, "readiness", "IANA_SVC_NAME"),
    ({"tcpSocket": {"port": "8080"}}, "readiness", "IANA_SVC_NAME"),
    ({"tcpSocket": {"port": 70000}}, "readiness", "between 1 and 65535"),
    ({"httpGet": {"port": 80, "path": "health"}}, "readiness", "must start with /"),
    ({"httpGet": {"port": 80, "httpHeaders": [{"name": "Bad Header", "value": "x"}]}}, "readiness", "header name"),
    ({"tcpSocket": {"port": 80}, "timeoutSeconds": -1}, "readiness", "non-negative"),
]


@pytest.mark.parametrize("probe,kind,error", VALIDATION)
def test_validator_applies_api_rules(probe, kind, error):
    c = {"name": "app", "ports": [{"name": "http", "containerPort": 8080}]}
    errors = _probe_rules.validate_probe(probe, kind, c)
    assert any(error in e for e in errors), errors


def test_validator_accepts_valid_probes():
    c = {"name": "app", "ports": [{"name": "http", "containerPort": 8080}]}
    for probe, kind in (({"httpGet": {"port": "http", "path": "/"}, "successThreshold": 1}, "liveness"),
                        ({"tcpSocket": {"port": 8080}, "successThreshold": 3}, "readiness"),
                        ({"grpc": {"port": 9090}, "terminationGracePeriodSeconds": 10}, "startup")):
        assert _probe_rules.validate_probe(probe, kind, c) == []
