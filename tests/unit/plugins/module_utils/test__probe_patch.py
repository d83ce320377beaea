"""The guarded JSON patch: pointers, the applier (against the jsonpatch
library), the annotation that keeps the original probes."""
import copy
import json

import jsonpatch
import pytest
from ruamel.yaml.comments import CommentedMap

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _probe_errors, _probe_patch


def test_pointer_escapes_like_rfc6901():
    assert _probe_patch.pointer("metadata", "annotations", "hangdoctor.runtime/original-exec-probes") == \
        "/metadata/annotations/hangdoctor.runtime~1original-exec-probes"
    assert _probe_patch.pointer("a~b", 0) == "/a~0b/0"


DOC = {"spec": {"containers": [{"name": "app", "livenessProbe": {"exec": {"command": ["x"]}, "periodSeconds": 5}}]}}
SWAP = [{"op": "test", "path": "/spec/containers/0/name", "value": "app"},
        {"op": "remove", "path": "/spec/containers/0/livenessProbe/exec"},
        {"op": "add", "path": "/spec/containers/0/livenessProbe/tcpSocket", "value": {"port": 80}},
        {"op": "add", "path": "/spec/containers/0/ports", "value": []},
        {"op": "add", "path": "/spec/containers/0/ports/-", "value": {"containerPort": 80}},
        {"op": "replace", "path": "/spec/containers/0/livenessProbe/periodSeconds", "value": 10}]


def test_applier_agrees_with_jsonpatch_and_copies():
    ours = _probe_patch.apply_patch(DOC, SWAP)
    assert ours == jsonpatch.JsonPatch(SWAP).apply(copy.deepcopy(DOC))
    assert "exec" in DOC["spec"]["containers"][0]["livenessProbe"]  # the input is untouched


@pytest.mark.parametrize("op", [
    {"op": "test", "path": "/spec/containers/0/name", "value": "other"},
    {"op": "remove", "path": "/spec/containers/3"},
    {"op": "replace", "path": "/spec/missing", "value": 1},
    {"op": "move", "path": "/spec", "from": "/x"}])
def test_applier_refuses_what_does_not_hold(op):
    with pytest.raises(_probe_errors.ProbeError):
        _probe_patch.apply_patch(DOC, [op])


def test_in_place_on_an_ordered_mapping_puts_the_handler_where_exec_was():
    probe = CommentedMap([("initialDelaySeconds", 3), ("exec", {"command": ["x"]}), ("periodSeconds", 5)])
    doc = {"probe": probe}
    _probe_patch.apply_patch(doc, [{"op": "remove", "path": "/probe/exec"},
                                   {"op": "add", "path": "/probe/grpc", "value": {"port": 9090}}], in_place=True)
    assert list(doc["probe"]) == ["initialDelaySeconds", "grpc", "periodSeconds"]


def test_annotation_keeps_the_first_original():
    first = {"app/liveness": {"exec": {"command": ["old"]}}}
    obj = {"metadata": {"annotations": {_probe_patch.ANNOTATION: json.dumps(first)}}}
    ops = _probe_patch.annotation_ops(obj, {"app/liveness": {"exec": {"command": ["new"]}},
                                            "app/readiness": {"exec": {"command": ["r"]}}})
    assert ops[0]["op"] == "test"
    record = json.loads(ops[-1]["value"])
    assert record["app/liveness"] == first["app/liveness"] and "app/readiness" in record
    assert _probe_patch.annotation_ops({"metadata": {}}, first)[0]["path"] == "/metadata/annotations"
