"""Fixtures of the drain's unit tests: blocked writers, an evidence directory."""
import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _evidence
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _pipe_lock
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils.pipe_writers import Writer


@pytest.fixture
def writers():
    made = []

    def make(*args, **kwargs):
        w = Writer(*args, **kwargs)
        made.append(w)
        return w
    yield make
    for w in made:
        w.close()


@pytest.fixture
def evdir(tmp_path):
    made = _evidence.prepare_evidence_dir(str(tmp_path / "evidence"))
    _pipe_lock.prepare_lock_dir(made)
    return made
