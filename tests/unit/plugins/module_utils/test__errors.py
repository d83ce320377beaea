"""The one exception base and how a module's main() reports errors."""
import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _errors
from ansible_collections.hangdoctor.runtime.plugins.module_utils._pipe_drain import DrainError


class Failed(SystemExit):
    pass


class FakeModule(object):
    def __init__(self):
        self.failed = None

    def fail_json(self, **kw):
        self.failed = kw
        raise Failed(1)


def test_an_error_of_the_collection_is_one_line():
    m = FakeModule()
    with pytest.raises(Failed):
        with _errors.reported(m):
            raise DrainError("evidence_dir /x is owned by uid 1000,\n  not by root")
    assert m.failed == {"msg": "evidence_dir /x is owned by uid 1000, not by root"}


def test_anything_else_is_reported_as_a_bug_with_its_traceback():
    m = FakeModule()
    with pytest.raises(Failed):
        with _errors.reported(m):
            {}["missing"]
    assert m.failed["msg"].startswith("a bug in hangdoctor.runtime") and "KeyError: 'missing'" in m.failed["msg"]
    assert "Traceback" in m.failed["exception"]


def test_exit_and_fail_pass_through():
    m = FakeModule()
    with pytest.raises(SystemExit):
        with _errors.reported(m):
            raise SystemExit(0)
    assert m.failed is None
