"""The one rule for stuck exec records, shared by the diagnosis's verify()
and the drain."""
import copy

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _records

CID = "bbd5e4b5f9c13666dd0ec7ff7afb2c4c2b0ede40a4adf1de43cc31c606f283f5"
RECORD = {
    "container_id": CID,
    "writer": {"role": "runc_init", "pid": 15638, "start_time": 900},
    "runc_exec": {"pid": 15630, "start_time": 899},
    "shim": {"pid": 1200, "start_time": 10},
    "pipe": {"inode": 4242, "fd": 2},
    "readers": [{"pid": 1200, "fd": 14, "is_shim": True}],
}


def test_a_runc_init_record_watches_runc_exec_too():
    assert _records.check_record(copy.deepcopy(RECORD)) == {
        "container_id": CID, "role": "runc_init", "pid": 15638, "start_time": 900, "inode": 4242, "fd": 2,
        "watch": [(15638, 900), (15630, 899)]}


def test_a_runc_exec_record_watches_only_itself():
    rec = copy.deepcopy(RECORD)
    rec["writer"] = {"role": "runc_exec", "pid": 15630, "start_time": 899}
    del rec["pipe"]["fd"]
    info = _records.check_record(rec)
    assert info["watch"] == [(15630, 899)] and info["fd"] == 2


@pytest.mark.parametrize("mutate,msg", [
    (lambda r: r.pop("writer"), "writer missing"),
    (lambda r: r.update(container_id="web"), "container_id must be 64 hex digits"),
    (lambda r: r.update(container_id=CID.upper()), "container_id must be 64 hex digits"),
    (lambda r: r["writer"].update(role="dockerd"), "writer.role must be runc_init or runc_exec"),
    (lambda r: r["writer"].update(pid="15638"), "writer.pid must be an integer"),
    (lambda r: r["writer"].update(pid=True), "writer.pid must be an integer"),
    (lambda r: r["writer"].update(pid=0), "writer.pid must be an integer > 0"),
    (lambda r: r["writer"].update(start_time=-1), "writer.start_time must be an integer >= 0"),
    (lambda r: r.pop("runc_exec"), "runc_exec missing"),
    (lambda r: r["runc_exec"].update(start_time=None), "runc_exec.start_time"),
    (lambda r: r.update(shim=None), "shim missing"),
    (lambda r: r["shim"].update(pid=-4), "shim.pid"),
    (lambda r: r["pipe"].pop("inode"), "pipe.inode"),
    (lambda r: r["pipe"].update(fd="2"), "pipe.fd"),
    (lambda r: r.update(readers="containerd-shim"), "readers must be a list"),
])
def test_malformed_records_are_refused_with_the_field(mutate, msg):
    rec = copy.deepcopy(RECORD)
    mutate(rec)
    with pytest.raises(_records.RecordError, match=msg):
        _records.check_record(rec)


def test_not_a_dict():
    with pytest.raises(_records.RecordError, match="must be a dict, not a list"):
        _records.check_record(["x"])


def test_has_shim_reader():
    assert _records.has_shim_reader(RECORD)
    assert not _records.has_shim_reader(dict(RECORD, readers=[{"is_shim": False}, "shim"]))
    assert not _records.has_shim_reader(dict(RECORD, readers=None))
