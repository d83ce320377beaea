"""The scan under hostile load, with real processes: a workload that fakes
a hundred runc inits blocked on one pipe, next to tens of thousands of open
fds, made one scan take longer than the node-problem-detector plugin's 30 s.
Candidates are merged by pipe before readers are looked for, one fd map
serves the scan, and an overall deadline ends it with a partial result that
says so (never "healthy").  These exercise the full scan (the fallback
and the reference of the scan by shim, see _shim_scan); the last test runs
the default, which asks the shims first."""
import os

import pytest

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _exec_candidates
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _stuck_exec
from ansible_collections.hangdoctor.runtime.tests.unit.plugins.module_utils.hostile_writers import Hostile

PROC = _procfs.Proc('/proc')

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="raising RLIMIT_NOFILE for the fd holders needs root")


class CountingProc(_procfs.Proc):
    """The real /proc, counting the walks over every process's fds."""

    def __init__(self):
        super(CountingProc, self).__init__('/proc')
        self.full_walks = 0

    def pipe_holders(self, inodes, pids=None, deadline=None):
        if pids is None:
            self.full_walks += 1
        return super(CountingProc, self).pipe_holders(inodes, pids, deadline)


@pytest.fixture(scope="module")
def hostile():
    with Hostile(writers=120, fds=30000) as h:
        yield h


def mine(records, hostile):
    return [r for r in records if r['pipe']['inode'] == hostile.pipe_inode]


def test_a_hundred_fake_runc_inits_on_one_pipe_cost_one_fd_walk(hostile):
    assert len(hostile.blocked_writers()) == 120 and hostile.held >= 29000
    proc = CountingProc()
    found = _exec_candidates.find(proc, confirm_interval=0.2, method='full')
    fakes = [pid for pid, role in found['candidates'] if pid in set(hostile.children())]
    assert len(fakes) == 120  # every fake passes the cheap first pass
    result = _stuck_exec.scan(proc, _stuck_exec.ScanOptions(confirm_interval=0.2, kmsg=False), first_pass=found)
    # merged by pipe: one suspect for the hostile pipe, never a stuck exec
    assert mine(result['stuck_execs'], hostile) == []
    suspects = mine(result['suspects'], hostile)
    assert len(suspects) == 1
    assert 'parent is not runc exec' in suspects[0]['reason']
    assert 'reader is not a shim' in suspects[0]['reason']
    assert suspects[0]['writer']['pid'] in hostile.children()
    # the fds of every process were walked once, not once per fake writer
    assert proc.full_walks == 1
    assert result['partial'] is False and result['unexamined_candidates'] == 0


def test_the_scan_deadline_gives_an_honest_partial_result(hostile):
    found = _exec_candidates.find(PROC, confirm_interval=0.2, method='full')
    # a deadline already past when the diagnosis starts: nothing examined
    result = _stuck_exec.scan(PROC, _stuck_exec.ScanOptions(confirm_interval=0.2, kmsg=False, deadline_seconds=1e-9), first_pass=found)
    assert result['partial'] is True
    assert 'scan deadline' in result['partial_reason']
    assert result['stuck_execs'] == []
    assert result['unexamined_candidates'] >= 120


def test_a_deadline_inside_the_fd_walk_stops_it(hostile, monkeypatch):
    """The deadline reached while every process's fds are walked: the walk
    stops there and the examined writer stays a suspect, marked unconfirmed."""
    proc = CountingProc()
    found = _exec_candidates.find(proc, confirm_interval=0.2, method='full')
    real = _procfs.Proc.pipe_holders

    def slow(self, inodes, pids=None, deadline=None):
        if pids is None:
            raise _procfs.Timeout('walk past the deadline')
        return real(self, inodes, pids, deadline)

    monkeypatch.setattr(CountingProc, 'pipe_holders', slow)
    result = _stuck_exec.scan(proc, _stuck_exec.ScanOptions(confirm_interval=0.2, kmsg=False), first_pass=found)
    assert result['partial'] is True and result['unexamined_candidates'] >= 120
    assert mine(result['stuck_execs'], hostile) == []


def _host_shims():
    """How many containerd shims run on this host now."""
    n = 0
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/comm' % pid) as f:
                n += f.read().startswith('containerd-shim')
        except (IOError, OSError):
            pass
    return n


def test_the_default_scan_never_calls_the_fakes_stuck(hostile):
    """scan_method auto: the fakes' pipe has no shim reader.  Either the
    shims prove the node clean (no process table, no fd walk: the fakes
    cost nothing), or (another engine's shim holds a full pipe, a shim of
    unknown state) the full scan runs and names them a suspect, as above."""
    proc = CountingProc()
    before = _host_shims()
    result = _stuck_exec.scan(proc, _stuck_exec.ScanOptions(confirm_interval=0.2, kmsg=False))
    assert mine(result['stuck_execs'], hostile) == []
    if result['scan_method'] == 'shims':
        assert result['scan_fallback_reason'] is None and proc.full_walks == 0
        # only shims were looked at (other tests' and benchmarks' shims may run on this host), not the
        # fakes: each shim and at most its init's pid file and parent (a v2 shim: three reads)
        assert result['scanned_processes'] <= 3 * max(before, _host_shims())
    else:
        assert result['scan_fallback_reason']
        suspects = mine(result['suspects'], hostile)
        assert len(suspects) == 1 and 'reader is not a shim' in suspects[0]['reason']
