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
    """An open evidence directory."""
    d = _evidence.EvidenceDir(str(tmp_path / "evidence"))
    yield d
    d.close()


@pytest.fixture
def lockdir(tmp_path):
    """An open lock directory of this test alone (not the host's /run/hangdoctor)."""
    d = _pipe_lock.LockDir(str(tmp_path / "locks"))
    yield d
    d.close()
