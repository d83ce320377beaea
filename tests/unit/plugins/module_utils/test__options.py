"""Option groups (module_utils/_options.py): bounds, checks, option objects."""
import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _options as o


@pytest.mark.parametrize("group,name,value,words", [
    (o.ENGINE, "inspect_timeout", float("nan"), "finite"),
    (o.ENGINE, "inspect_timeout", float("inf"), "finite"),
    (o.ENGINE, "inspect_timeout", 0.0, "greater than 0 and at most 600"),
    (o.ENGINE, "inspect_timeout", 1e12, "greater than 0 and at most 600"),
    (o.PROC, "confirm_interval", -0.5, "between 0 and 60"),
    (o.SCAN, "min_age_seconds", float("nan"), "finite"),
    (o.PROC, "peek_bytes", 1 << 30, "between 0 and 1048576"),
    (o.DRAIN, "max_rounds", 0, "between 1 and 100"),
    (o.DRAIN, "timeout", True, "must be a number"),
    (o.EVIDENCE, "evidence_retention_days", -1, "between 0 and 36500"),
    (o.CONTAINERD, "containerd_namespace", "a/b", "containerd namespace such as k8s.io"),
    (o.SCAN, "container_ids", ["web-1"], "hex container ids"),
    (o.METRICS, "metrics_file", "../x", "a file name, not a path"),
    (o.METRICS, "metrics_dir", "relative", "absolute path, auto or empty"),
    (o.EVIDENCE, "evidence_dir", "evidence", "must be an absolute path"),
    (o.ENGINE_CHECK, "engines", ["podman"], "unknown engine"),
    (o.GUARD, "require_guard", "sometimes", "must be one of auto, always, never"),
])
def test_bad_values_name_the_option(group, name, value, words):
    with pytest.raises(o.OptionError) as e:
        group.values({name: value})
    assert name in str(e.value) and words in str(e.value), str(e.value)


def test_a_renamed_option_is_named_as_the_module_names_it():
    with pytest.raises(o.OptionError) as e:
        o.DRAIN.values({"drain_timeout": 0}, o.NODE_DOCTOR_DRAIN_NAMES)
    assert str(e.value).startswith("drain_timeout must be greater than 0")
    assert o.DRAIN.values({"drain_timeout": 5, "timeout": 99}, o.NODE_DOCTOR_DRAIN_NAMES).timeout == 5


def test_values_take_the_group_defaults_and_are_immutable():
    d = o.drain_run({})
    assert d.drain.min_age_seconds == 60 and d.evidence.max_evidence_bytes == 16 * 1024 * 1024
    assert d.proc.proc_root == "/proc" and d.evidence.lock_dir == "/run/hangdoctor"
    with pytest.raises(AttributeError):
        d.drain.timeout = 1
    assert o.SCAN.values({"container_ids": [" AbC1 ", "", None]}).container_ids == ["abc1"]
    assert o.ENGINE_CHECK.values({"engines": ["auto"]}).engines == "auto"


def test_make_refuses_an_unknown_name():
    with pytest.raises(o.OptionError):
        o.DRAIN.make(drain_timeout=3)
    assert o.DRAIN.make(timeout=3).timeout == 3


def test_argument_spec_gives_fresh_dicts_and_refuses_a_name_twice():
    a = o.argument_spec(o.ENGINE, o.PROC, mode=dict(type="str"))
    a["inspect_timeout"]["aliases"] = ["timeout"]
    assert "aliases" not in o.ENGINE.argument_spec()["inspect_timeout"]
    assert set(a) == {"docker_host", "inspect_timeout", "proc_root", "confirm_interval", "peek_bytes", "mode"}
    assert a["docker_host"]["fallback"][1] == ["DOCKER_HOST"]
    with pytest.raises(ValueError):
        o.argument_spec(o.SCAN, o.DRAIN)  # min_age_seconds twice
    o.argument_spec(o.SCAN, (o.DRAIN, o.NODE_DOCTOR_DRAIN_NAMES))
