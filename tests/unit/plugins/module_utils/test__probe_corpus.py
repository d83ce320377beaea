"""The corpus: exec probes as public charts and manifests write them
(fixtures/probe_corpus.yml, each with its source), converted one by one; the
outcome must be the one recorded, and every conversion must be a valid object
whose original exec probe is recorded."""
from pathlib import Path

import pytest
import yaml

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _probe_errors, _probe_rules
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils.probe_helpers import (
    apply_both, assert_valid, convert_one, deployment)

CORPUS = yaml.safe_load((Path(__file__).parent / "fixtures" / "probe_corpus.yml").read_text())
FIELDS = dict(_probe_rules.PROBE_FIELDS)


def test_the_corpus_is_large_and_sourced():
    assert len(CORPUS) >= 60
    for entry in CORPUS:
        assert entry["source"]["repo"].count("/") == 1 and entry["source"]["path"], entry
        assert entry["expect"]["result"] in ("converted", "skipped"), entry
        assert entry["why"]
    kinds = {e["expect"].get("reason_kind") for e in CORPUS if e["expect"]["result"] == "skipped"}
    assert kinds <= set(_probe_errors.REASON_KINDS)
    # the corpus covers both sides and the reasons that matter most
    assert {"credential", "loopback-only", "script", "app-check", "shell", "lossy", "file-check"} <= kinds
    assert sum(e["expect"]["result"] == "converted" for e in CORPUS) >= 4


def _object(entry):
    container = {"name": "main", "image": "registry.example/main:1",
                 FIELDS[entry["probe"]]: {"exec": {"command": entry["command"]}}}
    if entry.get("ports"):
        container["ports"] = entry["ports"]
    if entry.get("env"):
        container["env"] = entry["env"]
    if entry.get("container_command"):
        container["command"] = entry["container_command"]
    if entry.get("args"):
        container["args"] = entry["args"]
    return deployment([container], name="corpus")


IDS = ["%02d-%s-%s" % (i, e["source"]["path"].rsplit("/", 1)[-1], e["probe"]) for i, e in enumerate(CORPUS)]


@pytest.mark.parametrize("entry", CORPUS, ids=IDS)
def test_corpus_entry(entry):
    obj = _object(entry)
    report = convert_one(obj)
    rows = report["converted"] + report["skipped"]
    assert len(rows) == 1
    row = rows[0]
    expect = entry["expect"]
    if expect["result"] == "converted":
        assert report["converted"], row.get("reason")
        assert row["handler"] == expect["handler"]
        assert "connects to the pod IP" in row["caveat"]
        # offline there is no node to ask: every conversion says so
        assert row["verification"] == "unverified"
        after = apply_both(obj, report["patch"])
        assert_valid(after)
        probe = after["spec"]["template"]["spec"]["containers"][0][FIELDS[entry["probe"]]]
        assert probe.get("timeoutSeconds") == entry.get("timeout")
    else:
        assert report["skipped"], row
        assert row["reason_kind"] == expect["reason_kind"], row["reason"]
        assert expect.get("reason_contains", "") in row["reason"]
        assert report["patch"] == []
        # a credential is never echoed into the reason either
        assert "Z3Vlc3Q6Z3Vlc3Q=" not in row["reason"]
