"""Shared module options (module_utils/_common_args.py)."""
import errno

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _common_args as ca


@pytest.mark.parametrize("name,value,words", [
    ("inspect_timeout", float("nan"), "finite"),
    ("inspect_timeout", float("inf"), "finite"),
    ("inspect_timeout", 0.0, "greater than 0 and at most 600"),
    ("inspect_timeout", 1e12, "greater than 0 and at most 600"),
    ("confirm_interval", -0.5, "between 0 and 60"),
    ("min_age_seconds", float("nan"), "finite"),
    ("peek_bytes", 1 << 30, "between 0 and 1048576"),
    ("concurrency", 0, "between 1 and 256"),
    ("max_rounds", 0, "between 1 and 100"),
    ("timeout", True, "must be a number"),
])
def test_bad_numbers_name_the_option_and_its_range(name, value, words):
    with pytest.raises(ca.OptionError) as e:
        ca.check_number(name, value)
    assert str(e.value).startswith(name) and words in str(e.value)


def test_good_numbers_and_unbounded_options_pass():
    ca.check_numbers({"inspect_timeout": 5.0, "confirm_interval": 0, "min_age_seconds": 60, "peek_bytes": 0,
                      "max_rounds": 3, "mode": "detect", "total_timeout": None})


def test_argument_spec_gives_fresh_dicts():
    a = ca.argument_spec(ca.ENGINE_ARGS, ca.PROC_ARGS, mode=dict(type="str"))
    a["inspect_timeout"]["aliases"] = ["timeout"]
    assert "aliases" not in ca.ENGINE_ARGS["inspect_timeout"]
    assert set(a) == {"docker_host", "inspect_timeout", "proc_root", "confirm_interval", "peek_bytes", "mode"}


def test_container_ids_are_hex():
    assert ca.container_ids([" AbC1 ", "", None]) == ["abc1"]
    with pytest.raises(ca.OptionError):
        ca.container_ids(["web-1"])


def test_fd_access_is_refused_without_ptrace_rights(monkeypatch):
    ca.require_fd_access("/proc", "x")  # root on the host: fine

    def denied(path):
        raise OSError(errno.EACCES, "Permission denied", path)
    monkeypatch.setattr(ca.os, "listdir", denied)
    with pytest.raises(ca.OptionError) as e:
        ca.require_fd_access("/host/proc", "runc_exec_info")
    assert "runc_exec_info cannot read /host/proc/1/fd" in str(e.value) and "CAP_SYS_PTRACE" in str(e.value)
