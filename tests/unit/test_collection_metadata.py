"""The collection's metadata is what Galaxy, ansible-core and antsibull-changelog need."""
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = {"major_changes", "minor_changes", "breaking_changes", "deprecated_features", "removed_features",
            "security_fixes", "bugfixes", "known_issues", "trivial", "release_summary"}


def test_galaxy_identity():
    g = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    assert (g["namespace"], g["name"]) == ("hangdoctor", "runtime")
    assert g["license"] == ["GPL-3.0-or-later"]
    assert not g.get("dependencies"), "Galaxy is not reachable from fleets we serve offline: keep dependencies optional"
    for key in ("repository", "documentation", "issues", "build_ignore", "version", "tags"):
        assert g.get(key), key


def test_requires_ansible_216():
    meta = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())
    assert meta["requires_ansible"] == ">=2.16.0"


def test_changelog_fragments_use_known_sections():
    frags = sorted((ROOT / "changelogs" / "fragments").glob("*.y*ml"))
    assert frags
    for f in frags:
        data = yaml.safe_load(f.read_text())
        assert isinstance(data, dict) and data, f
        unknown = set(data) - SECTIONS
        assert not unknown, (f.name, unknown)
        for entries in data.values():
            assert isinstance(entries, (list, str)), f
