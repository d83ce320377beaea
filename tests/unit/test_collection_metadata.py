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
    # Changes are recorded: either fragments wait for the next release, or the
    # version in galaxy.yml is a release in changelog.yaml (the release took them).
    released = yaml.safe_load((ROOT / "changelogs" / "changelog.yaml").read_text())["releases"] or {}
    version = str(yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"])
    assert frags or version in released, "no changelog fragments and %s is not released in changelog.yaml" % version
    for f in frags:
        data = yaml.safe_load(f.read_text())
        assert isinstance(data, dict) and data, f
        unknown = set(data) - SECTIONS
        assert not unknown, (f.name, unknown)
        for entries in data.values():
            assert isinstance(entries, (list, str)), f
            for entry in entries if isinstance(entries, list) else [entries]:
                assert isinstance(entry, str), (f.name, entry)  # a ": " inside an entry makes it a dict


def _filters():
    import importlib
    names = {}
    for f in sorted((ROOT / "plugins" / "filter").glob("*.py")):
        mod = importlib.import_module("ansible_collections.hangdoctor.runtime.plugins.filter." + f.stem)
        for name in mod.FilterModule().filters():
            assert name not in names, "filter %s defined twice" % name
            names[name] = f.stem
    return names


def test_every_filter_is_documented_and_no_doc_is_orphaned():
    names = _filters()
    docs = {f.stem: yaml.safe_load(f.read_text()) for f in (ROOT / "plugins" / "filter").glob("*.yml")}
    assert sorted(names) == sorted(docs)
    for name, doc in docs.items():
        assert doc["DOCUMENTATION"]["name"] == name
        assert doc["DOCUMENTATION"]["short_description"] and doc["EXAMPLES"] and doc["RETURN"]["_value"]
        assert not name.startswith("hangdoctor_"), "no stutter: hangdoctor.runtime.%s" % name


def test_old_filter_names_redirect_to_existing_filters():
    routing = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())["plugin_routing"]["filter"]
    names = _filters()
    assert routing
    for old, route in routing.items():
        assert old.startswith("hangdoctor_")
        target = route["redirect"].split(".")[-1]
        assert route["redirect"] == "hangdoctor.runtime." + target and target in names, old
        assert route["deprecation"]["removal_version"] and route["deprecation"]["warning_text"]


def test_the_changelog_is_released_with_antsibull_changelog():
    """changelog.yaml holds the galaxy.yml version as a release with its changes,
    CHANGELOG.rst is generated from it, and the fragments folder stays for the
    next release's fragments."""
    changelog = yaml.safe_load((ROOT / "changelogs" / "changelog.yaml").read_text())
    version = str(yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"])
    versions = sorted(changelog["releases"], key=lambda v: tuple(int(x) for x in v.split(".")))
    assert "0.2.0" in versions
    # galaxy.yml names the latest release, or the next one (fragments waiting)
    assert versions[-1] == version or version not in versions, (version, versions)
    release = changelog["releases"]["0.2.0"]
    assert release["changes"]["release_summary"] and release["changes"]["minor_changes"]
    assert release["release_date"]
    assert set(release["changes"]) <= SECTIONS
    assert "v0.2.0" in (ROOT / "CHANGELOG.rst").read_text()
    assert (ROOT / "changelogs" / "fragments").is_dir()
    config = yaml.safe_load((ROOT / "changelogs" / "config.yaml").read_text())
    assert config["notesdir"] == "fragments" and config["changes_file"] == "changelog.yaml"
