# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The drain (private module_utils): repair a stuck exec by reading its
stderr pipe, keeping every byte as evidence.

A stuck exec is a runc init (or, once runc init died, ``runc exec``) blocked
in write(2) on the pipe whose only reader is a containerd shim that will not
read before ``runc exec`` returns.  Reading that pipe ourselves lets the writer
finish; the shim then collects ``runc exec``'s exit and the container's
exec-store lock in dockerd is released.

Order of one drain: lock (one drain per pipe per host) -> done marker (a
racing run skips) -> verify every hard signal and the identity -> re-check
(pid, starttime) -> open /proc/PID/fd/2 non-blocking with an fstat inode check
-> read with poll into the evidence file until no writer is blocked on the pipe
*and* it is empty -> optional SIGKILL fallback -> mark done -> Engine check.
The evidence files live in ``_evidence``, the locks and done markers in
``_pipe_lock``, the record rules in ``_records``, the Engine check in
``_drain_verify``.

Target-side code: Python 3.6+ syntax and stdlib only.  Nothing here calls
``fail_json``: bad input raises :class:`DrainError`.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os
import select
import signal
import socket
import time
from collections import namedtuple

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _exec_candidates
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _policy
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _drain_verify
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _evidence
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _pipe_lock
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _records
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _stuck_exec
from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import HangdoctorError


RECURRING_HINT = (
    'the container deadlocked again after its pipe was drained: the cause persists '
    '(usually its memory cgroup at its limit). Raise the memory limit, restart the '
    'container, or move its exec probes off exec (hangdoctor.runtime.exec_probe_swap).')

SKIP_LOCKED = 'locked'
SKIP_DONE = 'already drained'
SKIP_STALE = 'no longer matches'
SKIP_YOUNG = 'younger than min_age_seconds'
SKIP_NO_SHIM = 'pipe reader is not a shim'
SKIP_MALFORMED = 'malformed record'
SKIP_ERROR = 'error'

# A writer is settled after this many consecutive samples, with the pipe empty,
# in which it sleeps somewhere other than write(2) on the pipe, spanning at
# least SETTLE_SECONDS: a writer that pauses for a few tens of milliseconds
# between writes (reclaim under memory.high, a Go scheduler hiccup) would
# otherwise be "settled" and block again right after the drain.
SETTLE_SAMPLES = 2
SETTLE_SECONDS = 0.5
# Before a kill, the writer must be seen blocked, without progress, on a full
# pipe over this interval (reading paused).
KILL_PROOF_SECONDS = 0.3
# After a SIGKILL, how long to keep reading what the dead writer left and the
# error line runc exec writes next.
KILL_GRACE_SECONDS = 5.0


class DrainError(HangdoctorError):
    """Bad input or an unusable evidence or lock directory."""


# What verify() may raise for a record it cannot read.
VERIFY_ERRORS = (DrainError, _records.RecordError, _stuck_exec.DiagnosisError, KeyError, TypeError, ValueError)
# What one record's drain may fail with (a vanished /proc entry, EPERM,
# EROFS or ELOOP on its lock, ...): that record's error, never the run's.
RECORD_ERRORS = VERIFY_ERRORS + (_procfs.ProcError, _evidence.EvidenceError, _pipe_lock.LockError,
                                 OSError)


# ---- the writer ------------------------------------------------------------
GONE = _exec_candidates.GONE
BLOCKED = _exec_candidates.BLOCKED
RUNNABLE = _exec_candidates.RUNNABLE
SETTLED = _exec_candidates.SETTLED
# the one "blocked in write(2) on this pipe" predicate (first pass, diagnosis, drain)
_thread_state = _exec_candidates.thread_write_state


def thread_states(proc, pid, start_time, inode, machine=None):
    """{tid: state} of every thread of the watched writer (``task/*``): any
    thread, not only the leader, may be the one blocked in write(2).  {} when
    the process is gone or its pid was reused."""
    try:
        st = proc.stat(pid)
        if st['starttime'] != start_time:
            return {}
        tids = proc.tasks(pid)
    except _procfs.ProcessGone:
        return {}
    except _procfs.ProcError:
        tids = [pid]
    machine = machine or proc.machine()
    return dict((tid, _thread_state(proc, pid, tid, inode, machine=machine)) for tid in tids)


def writer_state(proc, pid, start_time, inode, machine=None):
    """Where a watched writer is now, over all its threads: ``gone`` (exited,
    zombie or pid reused), ``blocked`` (a thread in write(2)/writev(2) on pipe
    INODE), ``runnable`` (a thread running, woken inside write(2), or in a
    page fault: not yet settled), or ``settled`` (every thread asleep
    somewhere else)."""
    states = [s for s in thread_states(proc, pid, start_time, inode, machine=machine).values() if s != GONE]
    if not states:
        return GONE
    for state in (BLOCKED, RUNNABLE):
        if state in states:
            return state
    return SETTLED


def _read_available(f, evidence, chunk=65536):
    got = 0
    while True:
        try:
            data = os.read(f, chunk)
        except (IOError, OSError) as e:
            if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                return got
            if e.errno == errno.EINTR:
                continue
            raise
        if not data:
            # every write end closed: nothing more can come
            return got
        evidence.add(data)
        got += len(data)


def drain_pipe(proc, f, inode, watch, evidence, deadline, clock=time.monotonic, sample_interval=0.02):
    """Read pipe F into EVIDENCE until the writer is no longer blocked on it
    and it is empty, or DEADLINE (``clock()`` time).  WATCH: [(pid,
    start_time)], the stuck writer first, then runc exec (which must not be
    blocked either).

    Returns (outcome, states): outcome ``writer exited``, ``writer settled``
    (no thread in write on the pipe, running or in a page fault, for
    SETTLE_SAMPLES consecutive samples over SETTLE_SECONDS while the pipe was
    empty) or ``timeout``.  Both halves of the stop rule matter: bytes a
    dead runc init wrote stay in the pipe until read, and a still-full pipe
    blocks runc exec's own error line next."""
    machine = proc.machine()
    poller = select.poll()
    poller.register(f, select.POLLIN)
    quiet = 0
    quiet_since = None
    states = []
    while True:
        if clock() >= deadline:
            return 'timeout', states
        if _read_available(f, evidence):
            quiet = 0
        states = [writer_state(proc, pid, st, inode, machine=machine) for pid, st in watch]
        # the pipe may have filled again between the read and the sample
        if _read_available(f, evidence):
            quiet = 0
            continue
        # watch[0] is the stuck writer; the others (runc exec) only must not
        # be blocked, so that their next line is left for the shim
        if BLOCKED in states[1:]:
            quiet = 0
        elif states[0] == GONE:
            return 'writer exited', states
        elif states[0] == SETTLED:
            if quiet == 0:
                quiet_since = clock()
            quiet += 1
            if quiet >= SETTLE_SAMPLES and clock() - quiet_since >= SETTLE_SECONDS:
                return 'writer settled', states
        else:
            quiet = 0
        left = deadline - clock()
        if left > 0:
            # PEP 475: poll retries by itself on EINTR
            poller.poll(int(min(sample_interval, left) * 1000) or 1)


def _blocked_switches(proc, pid, start_time, inode, machine):
    """{tid: voluntary context switches} of the threads of PID blocked in
    write(2) on pipe INODE."""
    out = {}
    for tid, state in thread_states(proc, pid, start_time, inode, machine=machine).items():
        if state != BLOCKED:
            continue
        try:
            out[tid] = proc.task_status(pid, tid).get('voluntary_ctxt_switches')
        except _procfs.ProcError:
            out[tid] = None
    return out


def still_stuck(proc, f, pid, start_time, inode, machine=None, interval=KILL_PROOF_SECONDS, sleep=time.sleep):
    """(True, '') when PID is still the stuck writer of pipe F (INODE): with
    reading paused for INTERVAL, the same threads stay blocked in write(2) on
    that pipe, the pipe stays full and unchanged, and those threads do not
    wake.  Else (False, why).  A writer that runs, sleeps elsewhere or makes
    progress is not stuck, whatever a timeout says.  Fullness is not asked in
    bytes: a write of up to a page needs room for all of it, so a writer can
    block with a little room left; an empty pipe, though, blocks nobody."""
    machine = machine or proc.machine()
    sleep(interval)  # give a writer we just read for time to fill the pipe again
    first = _blocked_switches(proc, pid, start_time, inode, machine=machine)
    if not first:
        return False, 'not blocked in write(2) on pipe:[%d] (%s)' % (
            inode, writer_state(proc, pid, start_time, inode, machine=machine))
    try:
        queued1 = _procfs.pipe_queued(f)
        sleep(interval)
        queued2, capacity = _procfs.pipe_queued(f), _procfs.pipe_capacity(f)
    except (IOError, OSError) as e:
        return False, 'pipe:[%d] unreadable: %s' % (inode, e)
    second = _blocked_switches(proc, pid, start_time, inode, machine=machine)
    if second != first:
        return False, 'making progress (blocked threads and their context switches changed)'
    if queued2 != queued1:
        return False, 'making progress (%d -> %d bytes queued)' % (queued1, queued2)
    if not queued2:
        return False, 'pipe:[%d] is empty (capacity %d bytes)' % (inode, capacity)
    return True, ''


def kill_if_still_stuck(proc, f, info, machine=None, interval=KILL_PROOF_SECONDS, sleep=time.sleep):
    """SIGKILL the writer of INFO only if it is, at that moment, provably the
    stuck writer (:func:`still_stuck`) and pids read from PROC are pids of
    this process's namespace.  A pidfd, where the kernel has them, is opened
    before the checks and carries the signal: it cannot reach another
    process that took the pid meanwhile.  Returns (killed, note)."""
    pid, start_time, inode = info['pid'], info['start_time'], info['inode']
    same_ns, why = _procfs.own_pid_namespace(proc)
    if not same_ns:
        return False, 'writer pid %d not killed: %s' % (pid, why)
    try:
        pidfd = _procfs.pidfd_open(pid)
    except _procfs.ProcessGone:
        return False, 'writer pid %d exited before the kill' % pid
    except _procfs.ProcError as e:
        return False, 'writer pid %d not killed: %s' % (pid, e)
    try:
        if not proc.same_process(pid, start_time):
            return False, 'writer pid %d exited or was reused: not killed' % pid
        stuck, why = still_stuck(proc, f, pid, start_time, inode=inode, machine=machine, interval=interval, sleep=sleep)
        if not stuck:
            return False, 'writer pid %d not killed: %s' % (pid, why)
        try:
            if pidfd is not None:
                _procfs.pidfd_kill(pidfd, signal.SIGKILL)
            else:
                # no pidfd (kernel < 5.3): identity checked once more right before
                if not proc.same_process(pid, start_time):
                    return False, 'writer pid %d exited or was reused: not killed' % pid
                os.kill(pid, signal.SIGKILL)
        except _procfs.ProcessGone:
            return False, 'writer pid %d exited before the kill' % pid
        except OSError as e:
            if e.errno == errno.ESRCH:
                return False, 'writer pid %d exited before the kill' % pid
            return False, 'writer pid %d not killed: %s' % (pid, e.strerror or e)
        except _procfs.ProcError as e:
            return False, 'writer pid %d not killed: %s' % (pid, e)
        return True, 'writer pid %d killed (blocked in write on pipe:[%d], no progress%s)' % (
            pid, inode, ', by pidfd' if pidfd is not None else '')
    finally:
        if pidfd is not None:
            os.close(pidfd)


def pipe_left(f):
    try:
        return _procfs.pipe_queued(f)
    except (IOError, OSError):
        return None


# ---- one drain -------------------------------------------------------------
def _age(proc, info, record, clock):
    try:
        return max(0.0, clock() - proc.start_epoch(info['start_time']))
    except _procfs.ProcError:
        age = record.get('age_seconds')
        return float(age) if isinstance(age, (int, float)) else 0.0


def _skip(info_or_record, reason, detail=''):
    if isinstance(info_or_record, dict) and 'role' in info_or_record:
        cid, pid = info_or_record['container_id'], info_or_record['pid']
    else:
        rec = info_or_record if isinstance(info_or_record, dict) else {}
        cid = rec.get('container_id')
        pid = (rec.get('writer') or {}).get('pid') if isinstance(rec.get('writer'), dict) else None
    return 'skipped', {'container_id': cid, 'pid': pid, 'reason': reason, 'detail': detail}


def preflight(proc, record, min_age_seconds, clock=time.time):
    """The checks that need no lock: (info, None) or (None, skipped entry)."""
    try:
        info = _records.check_record(record)
    except _records.RecordError as e:
        return None, _skip(record, SKIP_MALFORMED, str(e))[1]
    if not _records.has_shim_reader(record):
        return None, _skip(info, SKIP_NO_SHIM, 'no reader of pipe:[%d] is a containerd shim' % info['inode'])[1]
    if min_age_seconds:
        age = _age(proc, info, record, clock)
        if _policy.too_young(age, min_age_seconds):
            return None, _skip(info, SKIP_YOUNG, 'stuck for %.1fs < %ss' % (age, min_age_seconds))[1]
    return info, None


_PIPEFS_DEV = []


def pipefs_device():
    """The device of pipefs, which holds every anonymous pipe of the kernel
    ("pipe:[N]" is an inode of it): with the inode, a pipe's identity on the
    host, known without touching the writer's fd."""
    if not _PIPEFS_DEV:
        r, w = os.pipe()
        try:
            _PIPEFS_DEV.append(os.fstat(r).st_dev)
        finally:
            os.close(r)
            os.close(w)
    return _PIPEFS_DEV[0]


class Hooks(namedtuple('Hooks', ['verify', 'scan', 'engine', 'hostname', 'clock', 'sleep', 'sample_interval'])):
    """What a drain asks the world, replaceable in tests: VERIFY(proc, record,
    confirm_interval=...) -> (ok, reason) re-checks every hard signal; SCAN is
    ``_stuck_exec.scan``; ENGINE(container_id) -> (verified, reason) asks the
    engine after the last round; HOSTNAME goes into the evidence header."""


def hooks(**given):
    """Hooks with the real world where GIVEN names none."""
    h = Hooks(verify=_stuck_exec.verify, scan=_stuck_exec.scan, engine=_drain_verify.no_engine,
              hostname=None, clock=time.time, sleep=time.sleep, sample_interval=0.02)
    h = h._replace(**dict((k, v) for k, v in given.items() if v is not None))
    return h._replace(hostname=h.hostname or socket.gethostname())


class Drainer(namedtuple('Drainer', ['options', 'open_evidence_dir', 'open_lock_dir', 'hooks'])):
    """One run's fixed parts, handed to each drain: the option object
    (``_options.DrainRun``), the opened evidence directory
    (``_evidence.EvidenceDir``), the opened lock directory
    (``_pipe_lock.LockDir``) and the hooks."""


def drain(proc, record, drainer, round_no=1, min_age_seconds=None):
    """Drain the pipe of one stuck exec RECORD with DRAINER.  MIN_AGE_SECONDS
    defaults to the drain option (rounds after the first pass 0).

    Returns ('drained', entry) or ('skipped', entry)."""
    if drainer.open_lock_dir is None:
        raise DrainError('drain needs an open lock directory')
    opts, hk = drainer.options, drainer.hooks
    if min_age_seconds is None:
        min_age_seconds = opts.drain.min_age_seconds

    info, skipped = preflight(proc, record, min_age_seconds, hk.clock)
    if skipped:
        return 'skipped', skipped
    lock = drainer.open_lock_dir.lock(pipefs_device(), info['inode'], info['pid'], info['start_time'])
    try:
        acquired = lock.acquire()
    except OSError as e:
        # a lock directory that became read-only or full: repair without the lock
        if e.errno not in _evidence.CONDITION_ERRNOS:
            raise
        lock = _pipe_lock.UnheldLock('%s: %s' % (lock.path, e.strerror or e))
        acquired = lock.acquire()
    if not acquired:
        return _skip(info, SKIP_LOCKED, 'another run is draining pipe:[%d]' % info['inode'])
    try:
        # the done marker only says a drain once ended; a writer blocked on the
        # pipe again is the same deadlock back (the cause persists), not done
        blocked_again = False
        if lock.is_done():
            if writer_state(proc, info['pid'], info['start_time'], info['inode']) != BLOCKED:
                return _skip(info, SKIP_DONE, 'see %s' % lock.done_path)
            blocked_again = True
        try:
            ok, why = hk.verify(proc, record, confirm_interval=opts.proc.confirm_interval)
        except VERIFY_ERRORS as e:
            return _skip(info, SKIP_MALFORMED, '%s: %s' % (type(e).__name__, e))
        if not ok:
            return _skip(info, SKIP_STALE, why)
        if not proc.same_process(info['pid'], info['start_time']):
            return _skip(info, SKIP_STALE, 'writer pid %d exited or was reused' % info['pid'])
        try:
            f = proc.open_fd(info['pid'], info['fd'], info['inode'])
        except _procfs.ProcessGone as e:
            return _skip(info, SKIP_STALE, str(e))
        try:
            kind, entry = _drain_open(proc, record, info, f, lock=lock, drainer=drainer, round_no=round_no)
            if blocked_again and kind == 'drained':
                entry['recurring'] = True
                entry['blocked_again'] = True
            return kind, entry
        finally:
            os.close(f)
    finally:
        lock.release()


def _drain_open(proc, record, info, f, lock, drainer, round_no):
    opts, hk = drainer.options, drainer.hooks
    timeout, fallback, sample_interval = opts.drain.timeout, opts.drain.fallback, hk.sample_interval
    t0 = hk.clock()
    mono0 = time.monotonic()
    name = _evidence.evidence_name(info['container_id'], info['pid'], info['start_time'], t0)
    # never raises: a workload is repaired even when its evidence cannot be written
    header = _evidence.header(record, info, hk.hostname, t0, proc=proc)
    evidence_file = _evidence.Evidence(drainer.open_evidence_dir, name, header, opts.evidence.max_evidence_bytes)
    killed = False
    kill_note = ''
    errors = []
    outcome = 'error'
    try:
        # deadlines on the monotonic clock: a wall-clock step must not cut a
        # drain short or stretch it past its timeout
        outcome, states = drain_pipe(proc, f, info['inode'], info['watch'], evidence=evidence_file,
                                     deadline=mono0 + timeout, clock=time.monotonic, sample_interval=sample_interval)
        if outcome == 'timeout' and fallback == 'kill':
            killed, kill_note = kill_if_still_stuck(proc, f, info)
            if killed:
                kill_note = '%s after %ss' % (kill_note, timeout)
            # what is left stays evidence, and must be read or runc exec blocks on it
            outcome, states = drain_pipe(proc, f, info['inode'], info['watch'], evidence=evidence_file,
                                         deadline=time.monotonic() + KILL_GRACE_SECONDS, clock=time.monotonic,
                                         sample_interval=sample_interval)
            if killed:
                outcome = 'killed, ' + outcome
    except RECORD_ERRORS as e:
        # what was read so far is still counted, hashed and reported
        errors.append('drain of pipe:[%d] failed: %s: %s' % (info['inode'], type(e).__name__, e))
    finally:
        evidence_file.close(kill_note)
    seconds = round(time.monotonic() - mono0, 3)
    # a few bytes may be queued again (runc exec's error line): that is for the
    # shim, which reads it once runc exec returns
    left = pipe_left(f)
    after = [writer_state(proc, pid, st, info['inode']) for pid, st in info['watch']]
    unblocked = not outcome.endswith(('timeout', 'error')) and BLOCKED not in after
    lock_error = getattr(lock, 'error', None)
    if lock_error:
        lock_error = 'drained without the lock: %s' % lock_error
    if unblocked:
        try:
            lock.mark_done('%s\n' % (evidence_file.path or '-'))
        except OSError as e:
            errors.append('writing %s failed: %s' % (lock.done_path, e.strerror or e))
        verified, verify_reason = hk.engine(info['container_id'])
    else:
        verified, verify_reason = False, 'writer still blocked on pipe:[%d] (%s)' % (
            info['inode'], ', '.join('%d %s' % (w[0], s) for w, s in zip(info['watch'], after)))
    return 'drained', {
        'container_id': info['container_id'],
        'pid': info['pid'],
        'start_time': info['start_time'],
        'writer': info['role'],
        'pipe_inode': info['inode'],
        'bytes': evidence_file.total,
        'sha256': evidence_file.sha.hexdigest(),
        'evidence_path': evidence_file.path,
        'evidence_truncated': evidence_file.elided > 0,
        'evidence_elided_bytes': evidence_file.elided,
        'evidence_error': evidence_file.error,
        'evidence_kept_bytes': evidence_file.kept,
        'evidence_kept_ranges': evidence_file.kept_ranges,
        'evidence_kept_sha256': evidence_file.kept_sha.hexdigest(),
        'evidence_lost_bytes': evidence_file.lost,
        # what the file could not keep, carried here instead (head and tail)
        'evidence_inline': evidence_file.inline_result(),
        'lock_error': lock_error,
        'error': '; '.join(errors) or None,
        'queued_after': left,
        'stop': outcome,
        'killed': killed,
        'kill_note': kill_note,
        'unblocked': unblocked,
        'verified': verified,
        'verify_reason': verify_reason,
        'seconds': seconds,
        'round': round_no,
        'cause': record.get('cause'),
        'pod': record.get('pod'),
        'recurring': False,
    }


# ---- a whole run -----------------------------------------------------------
def preview(proc, record, options, hks):
    """check_mode: what would be drained, read nothing (tee(2) peek only).
    OPTIONS is a ``_options.DrainRun``, HKS the Hooks."""
    info, skipped = preflight(proc, record, options.drain.min_age_seconds, hks.clock)
    if skipped:
        return 'skipped', skipped
    try:
        ok, why = hks.verify(proc, record, confirm_interval=options.proc.confirm_interval)
    except VERIFY_ERRORS as e:
        return _skip(info, SKIP_MALFORMED, '%s: %s' % (type(e).__name__, e))
    if not ok:
        return _skip(info, SKIP_STALE, why)
    peek_bytes = options.proc.peek_bytes
    queued = capacity = None
    peek = record.get('peek') or ''
    try:
        f = proc.open_fd(info['pid'], info['fd'], info['inode'])
        try:
            queued, capacity = _procfs.pipe_queued(f), _procfs.pipe_capacity(f)
            if peek_bytes:
                peek = _procfs.tee_peek(f, peek_bytes).decode('utf-8', 'replace')
        finally:
            os.close(f)
    except _procfs.ProcessGone as e:
        return _skip(info, SKIP_STALE, str(e))
    except _procfs.ProcError:
        pass
    return 'would_drain', {
        'container_id': info['container_id'],
        'pid': info['pid'],
        'start_time': info['start_time'],
        'writer': info['role'],
        'pipe_inode': info['inode'],
        'queued': queued,
        'capacity': capacity,
        'peek': peek,
        'age_seconds': round(_age(proc, info, record, hks.clock), 1),
        'cause': record.get('cause'),
        'pod': record.get('pod'),
    }


def run(proc, options, stuck_execs=None, container_ids=None, check_mode=False, engine=None, hks=None):
    """Drain every stuck exec among the targets: STUCK_EXECS (records), or a
    fresh scan of CONTAINER_IDS, or of the whole host.  OPTIONS is the
    ``_options.DrainRun`` (``_options.drain_run``), ENGINE(container_id) ->
    (verified, reason) the engine check after the last round, HKS the Hooks
    (``hooks()``).  After a round, look at the drained containers again:
    dockerd (before moby 24) starts the next queued exec as soon as the pipe
    is empty, and it deadlocks again while the cause persists.  Such rounds
    skip min_age_seconds (the cause is known).  A record that fails is
    skipped with reason ``error``; the others go on."""
    hks = hks or hooks()
    if options.drain.fallback == 'kill':
        # os.kill and pidfds take pids of this process's namespace, the
        # records carry pids read through proc_root
        same_ns, why = _procfs.own_pid_namespace(proc)
        if not same_ns:
            raise DrainError(
                'fallback=kill refused: %s. A kill would reach another process or none; run with the '
                "host's pid namespace (hostPID) and proc_root=/proc, or use fallback=none" % why)

    def rescan(ids):
        return hks.scan(proc, _stuck_exec.ScanOptions(container_ids=ids, confirm_interval=options.proc.confirm_interval,
                                                      peek_bytes=options.proc.peek_bytes, min_age_seconds=0))['stuck_execs']

    result = {'changed': False, 'drained': [], 'skipped_execs': [], 'would_drain': [], 'recurring': [], 'rounds': 0,
              'errors': [], 'retention': {'evidence_removed': 0, 'evidence_removed_bytes': 0, 'locks_removed': 0},
              'evidence_dir_error': None, 'lock_dir_error': None}
    if stuck_execs is not None:
        for rec in stuck_execs:
            try:
                _records.check_record(rec)
            except _records.RecordError as e:
                raise DrainError(str(e))
        records = list(stuck_execs)
    else:
        records = rescan(list(container_ids) if container_ids else None)

    if check_mode:
        for rec in records:
            try:
                kind, entry = preview(proc, rec, options, hks)
            except RECORD_ERRORS as e:
                kind, entry = _skip(rec, SKIP_ERROR, '%s: %s' % (type(e).__name__, e))
            result['would_drain' if kind == 'would_drain' else 'skipped_execs'].append(entry)
        result['changed'] = bool(result['would_drain'])
        return result

    # A full disk or a read-only filesystem must not leave a workload
    # blocked: the drain goes on without evidence files (bytes in the result)
    # or without locks (see _pipe_lock.NoLockDir), and says so.  A path or an
    # owner that is not safe is refused as before.
    ev = options.evidence
    try:
        open_evidence_dir = _evidence.EvidenceDir(ev.evidence_dir)
    except _evidence.EvidenceError as e:
        if e.errno not in _evidence.CONDITION_ERRNOS:
            raise DrainError(str(e))
        open_evidence_dir = _evidence.NoEvidenceDir(ev.evidence_dir, str(e))
        result['evidence_dir_error'] = str(e)
        result['errors'].append('%s: evidence kept in the result only' % e)
    try:
        try:
            open_lock_dir = _pipe_lock.LockDir(ev.lock_dir)
        except _pipe_lock.LockError as e:
            if e.errno not in _evidence.CONDITION_ERRNOS:
                raise DrainError(str(e))
            open_lock_dir = _pipe_lock.NoLockDir(ev.lock_dir, str(e))
            result['lock_dir_error'] = str(e)
            result['errors'].append('%s: drained without the per-pipe lock' % e)
        try:
            # each drain's own engine answer comes after the last round
            drainer = Drainer(options, open_evidence_dir, open_lock_dir, hks._replace(engine=_drain_verify.not_yet))
            # first make room for this run's evidence, then bound what it added
            _retain(result, drainer, proc, keep=())
            _rounds(proc, records, result, drainer, rescan=rescan)
            _retain(result, drainer, proc,
                    keep=set(os.path.basename(e['evidence_path']) for e in result['drained'] if e['evidence_path']))
        finally:
            open_lock_dir.close()
    finally:
        open_evidence_dir.close()
    _drain_verify.verify_containers(result, engine or _drain_verify.no_engine)
    result['changed'] = bool(result['drained'])
    return result


def _retain(result, drainer, proc, keep):
    ev = drainer.options.evidence
    if drainer.open_evidence_dir.fd is None:
        return
    try:
        removed = _evidence.apply_retention(drainer.open_evidence_dir, keep=keep, count=ev.evidence_retention_count,
                                            max_bytes=ev.evidence_retention_bytes, days=ev.evidence_retention_days)
        result['retention']['evidence_removed'] += removed['removed']
        result['retention']['evidence_removed_bytes'] += removed['removed_bytes']
        locks = drainer.open_lock_dir
        result['retention']['locks_removed'] += locks.prune(proc) if locks.fd is not None else 0
    except OSError as e:
        result['errors'].append('retention: %s' % (e.strerror or e))


def _rounds(proc, records, result, drainer, rescan):
    round_no = 1
    min_age = drainer.options.drain.min_age_seconds
    max_rounds = drainer.options.drain.max_rounds
    while records:
        result['rounds'] = round_no
        repaired = []
        for rec in records:
            try:
                kind, entry = drain(proc, rec, drainer, round_no=round_no, min_age_seconds=min_age)
            except RECORD_ERRORS as e:
                kind, entry = _skip(rec, SKIP_ERROR, '%s: %s' % (type(e).__name__, e))
            result['drained' if kind == 'drained' else 'skipped_execs'].append(entry)
            if kind == 'drained' and entry['unblocked'] and entry['container_id'] not in repaired:
                repaired.append(entry['container_id'])
        if not repaired:
            break
        drainer.hooks.sleep(drainer.options.proc.confirm_interval)
        try:
            again = [r for r in rescan(repaired) if isinstance(r, dict) and r.get('container_id') in repaired]
        except RECORD_ERRORS as e:
            result['errors'].append('looking at %s again after round %d failed: %s: %s' % (
                ', '.join(c[:12] for c in repaired), round_no, type(e).__name__, e))
            break
        if not again:
            break
        if round_no >= max_rounds:
            for cid in repaired:
                still = [r for r in again if r.get('container_id') == cid]
                if not still:
                    continue
                result['recurring'].append({
                    'container_id': cid,
                    'rounds': round_no,
                    'stuck_pids': [(r.get('writer') or {}).get('pid') for r in still],
                    'hint': RECURRING_HINT,
                })
                for entry in result['drained']:
                    if entry['container_id'] == cid:
                        entry['recurring'] = True
            break
        round_no += 1
        min_age = 0
        records = again
    # a writer found blocked again after an earlier drain (this run or an
    # earlier one): the deadlock came back, whatever that drain reported
    listed = set(r['container_id'] for r in result['recurring'])
    for entry in result['drained']:
        if entry.get('blocked_again') and entry['container_id'] not in listed:
            listed.add(entry['container_id'])
            result['recurring'].append({
                'container_id': entry['container_id'],
                'rounds': entry['round'],
                'stuck_pids': [entry['pid']],
                'hint': RECURRING_HINT,
            })
