"""Version parsing on the output of several releases, and the advisory table."""
import re
from pathlib import Path

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _versions

FIXTURES = Path(__file__).resolve().parents[3] / "unit" / "fixtures" / "versions"


def out(name):
    return (FIXTURES / name).read_text()


@pytest.mark.parametrize("name, component, version, go", [
    ("runc-1.1.5-debian12.txt", "runc", "1.1.5+ds1", "1.19.8"),
    ("runc-1.0.0-rc92.txt", "runc", "1.0.0-rc92", None),
    ("runc-1.1.12.txt", "runc", "1.1.12", "1.20.13"),
    ("runc-1.1.12-go1.22.2.txt", "runc", "1.1.12", "1.22.2"),
    ("runc-1.3.0.txt", "runc", "1.3.0", "1.23.8"),
    ("containerd-1.6.20-debian12.txt", "containerd", "1.6.20~ds1", None),
    ("containerd-1.6.33-containerd.io.txt", "containerd", "1.6.33", None),
    ("containerd-1.7.13.txt", "containerd", "v1.7.13", None),
    ("containerd-2.0.0.txt", "containerd", "v2.0.0", None),
    ("containerd-1.4.0.txt", "containerd", "v1.4.0", None),
    ("dockerd-20.10.24-debian12.txt", "dockerd", "20.10.24+dfsg1", None),
    ("dockerd-24.0.7.txt", "dockerd", "24.0.7", None),
    ("dockerd-19.03.15.txt", "dockerd", "19.03.15", None),
    ("shim-1.6.20-debian12.txt", "shim", "1.6.20~ds1", "1.19.8"),
    ("shim-1.7.13.txt", "shim", "v1.7.13", "1.20.13"),
])
def test_parse_output_of_real_releases(name, component, version, go):
    assert _versions.parse_output(component, out(name)) == {"version": version, "go_version": go}


@pytest.mark.parametrize("text, expected", [
    ("1.1.5+ds1", (1, 1, 5)), ("v1.7.13", (1, 7, 13)), ("1.6.20~ds1", (1, 6, 20)), ("1.0.0-rc92", (1, 0, 0)),
    ("19.03.15", (19, 3, 15)), ("1.22", (1, 22, 0)), ("", None), (None, None), ("unknown", None),
])
def test_parse_version(text, expected):
    assert _versions.parse_version(text) == expected


def ids(component, fixture):
    parsed = _versions.parse_output(component, out(fixture))
    found = _versions.advisories_for(component, parsed["version"])
    if parsed["go_version"] and component == "runc":
        found += _versions.advisories_for("runc_go", parsed["go_version"])
    return sorted(a["id"] for a in found)


def test_advisories_match_the_table():
    assert ids("runc", "runc-1.1.5-debian12.txt") == ["pipe_deadlock_unfixed"]
    assert ids("runc", "runc-1.3.0.txt") == ["pipe_deadlock_unfixed", "runc_exec_hang_regression"]
    assert ids("runc", "runc-1.1.12-go1.22.2.txt") == ["pipe_deadlock_unfixed", "runc_go_1_22_abort"]
    assert ids("containerd", "containerd-1.4.0.txt") == ["containerd_end_of_life", "containerd_shim_v1_log_pipe"]
    assert ids("containerd", "containerd-2.0.0.txt") == []
    assert ids("containerd", "containerd-1.7.13.txt") == ["containerd_end_of_life"]
    assert ids("dockerd", "dockerd-20.10.24-debian12.txt") == ["dockerd_inspect_blocks_on_exec"]
    assert ids("dockerd", "dockerd-24.0.7.txt") == []
    # the edges of a range
    assert [a["id"] for a in _versions.advisories_for("runc", "1.3.5")][0] == "runc_exec_hang_regression"
    assert [a["id"] for a in _versions.advisories_for("runc", "1.3.6")] == ["pipe_deadlock_unfixed"]
    assert [a["id"] for a in _versions.advisories_for("runc", "1.4.2")] == ["pipe_deadlock_unfixed"]
    assert [a["id"] for a in _versions.advisories_for("runc_go", "1.22.4")] == []


def test_every_row_is_documented_and_linked():
    assert re.match(r"^\d{4}-\d{2}-\d{2}$", _versions.CHECKED)
    for row in _versions.ADVISORIES:
        assert row["links"] and all(link.startswith("https://github.com/") for link in row["links"]), row
        assert row["problem"] and row["fixed_in"] and row["ranges"]
    no_fix = [r for r in _versions.ADVISORIES if r["id"] == "pipe_deadlock_unfixed"]
    assert no_fix and no_fix[0]["ranges"] == [(None, None)] and no_fix[0]["severity"] == "info"
    assert "No containerd, runc or Docker version fixes the pipe deadlock" in _versions.NO_FIX


def test_an_unparsable_version_matches_nothing():
    assert _versions.advisories_for("runc", None) == [] and _versions.advisories_for("runc", "garbage") == []
    assert _versions.parse_output("runc", "no such binary\n") == {"version": None, "go_version": None}
