"""Node metrics (module_utils/_metrics.py)."""
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _metrics as mt
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _summary as sm
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils.summary_fixtures import (
    CID, drain_result, hung_info, stuck)


def test_counters_continue_and_gauges_reset():
    s = sm.remediation(sm.host_summary({"stuck_execs": [stuck()]}, hung_info(CID), host="n1"), drain=drain_result())
    first = mt.render(s, previous_text="", now=1000)
    assert "hangdoctor_drained_total 1\n" in first
    assert "hangdoctor_last_run_timestamp_seconds 1000\n" in first
    second = mt.render(s, previous_text=first, now=2000)
    assert "hangdoctor_drained_total 2\n" in second and "hangdoctor_drained_bytes_total 524288\n" in second
    quiet = mt.render(sm.host_summary({}, None, host="n1"), previous_text=second, now=3000)
    assert "hangdoctor_drained_total 2\n" in quiet and "hangdoctor_stuck_execs 0\n" in quiet


def test_find_textfile_dir(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    b.mkdir()
    assert mt.find_textfile_dir([str(a), str(b)]) == str(b)
    assert mt.find_textfile_dir([str(a)]) is None
