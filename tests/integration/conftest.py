"""Fixtures for the real-runtime tests: one harness (containerd + dockerd +
fault runtime) per test session, brought up once and torn down at the end."""
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "harness"))

import hdharness  # noqa: E402


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="real-runtime tests start dockerd: run as root")
        for item in items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def harness():
    hz = hdharness.Harness()
    try:
        hz.up()
        yield hz
    finally:
        errors = hz.down()
        assert not errors, errors


@pytest.fixture
def release(harness):
    """Undo every hang a test left behind, even when it failed half way."""
    yield harness
    harness.release_all()
