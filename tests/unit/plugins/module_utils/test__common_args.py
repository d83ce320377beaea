"""A module's own options and the host checks (module_utils/_common_args.py)."""
import errno

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _common_args as ca


@pytest.mark.parametrize("name,value,words", [
    ("concurrency", 0, "between 1 and 8192"),
    ("concurrency", 8193, "between 1 and 8192"),
    ("inspect_concurrency", float("nan"), "finite"),
    ("total_timeout", 0, "greater than 0 and at most 3600"),
    ("max_drains", True, "must be a number"),
])
def test_bad_numbers_name_the_option_and_its_range(name, value, words):
    with pytest.raises(ca.OptionError) as e:
        ca.check_numbers({name: value})
    assert str(e.value).startswith(name) and words in str(e.value)


def test_good_numbers_and_unbounded_options_pass():
    ca.check_numbers({"concurrency": 16, "max_drains": 0, "mode": "detect", "total_timeout": None})


def test_fd_access_is_refused_without_ptrace_rights(monkeypatch):
    ca.require_fd_access("/proc", "x")  # root on the host: fine

    def denied(path):
        raise OSError(errno.EACCES, "Permission denied", path)
    monkeypatch.setattr(ca.os, "listdir", denied)
    with pytest.raises(ca.OptionError) as e:
        ca.require_fd_access("/host/proc", "runc_exec_info")
    assert "runc_exec_info cannot read /host/proc/1/fd" in str(e.value) and "CAP_SYS_PTRACE" in str(e.value)
