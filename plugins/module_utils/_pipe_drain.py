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

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _drain_verify
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _evidence
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _pipe_lock
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _records
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _stuck_exec


RECURRING_HINT = (
    'the container deadlocked again after its pipe was drained: the cause persists '
    '(usually its memory cgroup at its limit). Raise the memory limit, restart the '
    'container, or move its exec probes off exec (hangdoctor.runtime.exec_probe_convert).')

SKIP_LOCKED = 'locked'
SKIP_DONE = 'already drained'
SKIP_STALE = 'no longer matches'
SKIP_YOUNG = 'younger than min_age_seconds'
SKIP_NO_SHIM = 'pipe reader is not a shim'
SKIP_MALFORMED = 'malformed record'
SKIP_EVIDENCE = 'evidence file not writable'

# A writer is settled after this many consecutive samples, with the pipe empty,
# in which it sleeps somewhere other than write(2) on the pipe.
SETTLE_SAMPLES = 2
# After a SIGKILL, how long to keep reading what the dead writer left and the
# error line runc exec writes next.
KILL_GRACE_SECONDS = 5.0


class DrainError(Exception):
    """Bad input or an unusable evidence or lock directory."""


# What verify() may raise for a record it cannot read.
VERIFY_ERRORS = (DrainError, _records.RecordError, _stuck_exec.DiagnosisError, KeyError, TypeError, ValueError)


# ---- the writer ------------------------------------------------------------
GONE = 'gone'
BLOCKED = 'blocked'
RUNNABLE = 'runnable'
SETTLED = 'settled'


def writer_state(proc, pid, start_time, inode, machine=None):
    """Where a watched writer is now: ``gone`` (exited, zombie or pid reused),
    ``blocked`` (in write(2)/writev(2) on pipe INODE), ``runnable`` (a task
    woken inside write(2) shows as "running" too, so it is not yet settled),
    or ``settled`` (asleep somewhere else)."""
    try:
        st = proc.stat(pid)
        if st['starttime'] != start_time or st['state'] in ('Z', 'X', 'x'):
            return GONE
        if st['state'] == 'R':
            return RUNNABLE
        sc = proc.syscall(pid)
    except _procfs.ProcessGone:
        return GONE
    except _procfs.ProcError:
        sc = None
    if sc is None:
        # /proc/PID/syscall unreadable (ptrace policy): fall back to wchan + fd 2
        try:
            in_write = proc.wchan(pid) in _procfs.PIPE_WRITE_WCHANS
            fd = 2
        except _procfs.ProcError:
            return SETTLED
    elif sc['running']:
        return RUNNABLE
    else:
        in_write = _procfs.write_syscall_name(sc['nr'], machine or proc.machine()) is not None
        fd = sc['args'][0] if sc['args'] else None
    if not in_write or fd is None:
        return SETTLED
    try:
        return BLOCKED if _procfs.pipe_inode_of(proc.fd_link(pid, fd)) == inode else SETTLED
    except _procfs.ProcessGone:
        return GONE
    except _procfs.ProcError:
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


def drain_pipe(proc, f, inode, watch, evidence, deadline, clock=time.monotonic, sample_interval=0.02, machine=None):
    """Read pipe F into EVIDENCE until the writer is no longer blocked on it
    and it is empty, or DEADLINE (``clock()`` time).  WATCH: [(pid,
    start_time)], the stuck writer first, then runc exec (which must not be
    blocked either).

    Returns (outcome, states): outcome ``writer exited``, ``writer settled``
    (not in write on the pipe for SETTLE_SAMPLES consecutive samples while it
    was empty) or ``timeout``.  Both halves of the stop rule matter: bytes a
    dead runc init wrote stay in the pipe until read, and a still-full pipe
    blocks runc exec's own error line next."""
    poller = select.poll()
    poller.register(f, select.POLLIN)
    quiet = 0
    states = []
    while True:
        if clock() >= deadline:
            return 'timeout', states
        if _read_available(f, evidence):
            quiet = 0
        states = [writer_state(proc, pid, st, inode, machine) for pid, st in watch]
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
            quiet += 1
            if quiet >= SETTLE_SAMPLES:
                return 'writer settled', states
        else:
            quiet = 0
        left = deadline - clock()
        if left > 0:
            # PEP 475: poll retries by itself on EINTR
            poller.poll(int(min(sample_interval, left) * 1000) or 1)


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
        if age < min_age_seconds:
            return None, _skip(info, SKIP_YOUNG, 'stuck for %.1fs < %ss' % (age, min_age_seconds))[1]
    return info, None


def drain(proc, record, evidence_dir, max_evidence_bytes=0, timeout=30.0, fallback='none',
          min_age_seconds=0, confirm_interval=1.0, verify=None, engine=None, hostname=None,
          clock=time.time, sample_interval=0.02, round_no=1):
    """Drain the pipe of one stuck exec RECORD.  EVIDENCE_DIR must come from
    ``_evidence.prepare_evidence_dir`` (with its ``.locks``).  VERIFY(proc, record, confirm_interval=…) ->
    (ok, reason) re-checks every hard signal (default ``_stuck_exec.verify``);
    ENGINE(container_id) -> (verified, reason), default: no check.

    Returns ('drained', entry) or ('skipped', entry)."""
    if fallback not in ('none', 'kill'):
        raise DrainError("fallback must be 'none' or 'kill', got %r" % (fallback,))
    verify = verify or _stuck_exec.verify
    engine = engine or _drain_verify.no_engine
    hostname = hostname or socket.gethostname()

    info, skipped = preflight(proc, record, min_age_seconds, clock)
    if skipped:
        return 'skipped', skipped
    lock = _pipe_lock.PipeLock(evidence_dir, info['inode'], info['pid'], info['start_time'])
    if not lock.acquire():
        return _skip(info, SKIP_LOCKED, 'another run is draining pipe:[%d]' % info['inode'])
    try:
        if lock.is_done():
            return _skip(info, SKIP_DONE, 'see %s' % lock.done_path)
        try:
            ok, why = verify(proc, record, confirm_interval=confirm_interval)
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
            return _drain_open(proc, record, info, f, lock, evidence_dir, max_evidence_bytes,
                               timeout, fallback, engine, hostname, clock, sample_interval, round_no)
        finally:
            os.close(f)
    finally:
        lock.release()


def _drain_open(proc, record, info, f, lock, evidence_dir, max_evidence_bytes, timeout, fallback,
                engine, hostname, clock, sample_interval, round_no):
    t0 = clock()
    mono0 = time.monotonic()
    path = os.path.join(evidence_dir, _evidence.evidence_name(info['container_id'], info['pid'], info['start_time'], t0))
    try:
        evidence = _evidence.Evidence(path, _evidence.header(record, info, hostname, t0, proc), max_evidence_bytes)
    except (IOError, OSError) as e:
        # nothing read yet: better no drain than a drain without evidence
        return _skip(info, SKIP_EVIDENCE, '%s: %s' % (path, e.strerror or e))
    killed = False
    kill_note = ''
    try:
        # deadlines on the monotonic clock: a wall-clock step must not cut a
        # drain short or stretch it past its timeout
        outcome, states = drain_pipe(proc, f, info['inode'], info['watch'], evidence,
                                     mono0 + timeout, time.monotonic, sample_interval)
        if outcome == 'timeout' and fallback == 'kill':
            # identity re-checked right before the kill: never a reused pid
            if proc.same_process(info['pid'], info['start_time']):
                try:
                    os.kill(info['pid'], signal.SIGKILL)
                    killed = True
                    kill_note = 'writer pid %d killed after %ss' % (info['pid'], timeout)
                except OSError as e:
                    if e.errno != errno.ESRCH:
                        raise
            # what is left stays evidence, and must be read or runc exec blocks on it
            outcome, states = drain_pipe(proc, f, info['inode'], info['watch'], evidence,
                                         time.monotonic() + KILL_GRACE_SECONDS, time.monotonic, sample_interval)
            if killed:
                outcome = 'killed, ' + outcome
    finally:
        evidence.close(kill_note)
    seconds = round(time.monotonic() - mono0, 3)
    # a few bytes may be queued again (runc exec's error line): that is for the
    # shim, which reads it once runc exec returns
    left = pipe_left(f)
    after = [writer_state(proc, pid, st, info['inode']) for pid, st in info['watch']]
    unblocked = not outcome.endswith('timeout') and BLOCKED not in after
    if unblocked:
        lock.mark_done('%s\n' % evidence.path)
        verified, verify_reason = engine(info['container_id'])
    else:
        verified, verify_reason = False, 'writer still blocked on pipe:[%d] (%s)' % (
            info['inode'], ', '.join('%d %s' % (w[0], s) for w, s in zip(info['watch'], after)))
    return 'drained', {
        'container_id': info['container_id'],
        'pid': info['pid'],
        'start_time': info['start_time'],
        'writer': info['role'],
        'pipe_inode': info['inode'],
        'bytes': evidence.total,
        'sha256': evidence.sha.hexdigest(),
        'evidence_path': evidence.path,
        'evidence_truncated': evidence.elided > 0,
        'evidence_elided_bytes': evidence.elided,
        'evidence_error': evidence.error,
        'queued_after': left,
        'stop': outcome,
        'killed': killed,
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
def preview(proc, record, min_age_seconds, confirm_interval, peek_bytes, verify, clock=time.time):
    """check_mode: what would be drained, read nothing (tee(2) peek only)."""
    info, skipped = preflight(proc, record, min_age_seconds, clock)
    if skipped:
        return 'skipped', skipped
    try:
        ok, why = verify(proc, record, confirm_interval=confirm_interval)
    except VERIFY_ERRORS as e:
        return _skip(info, SKIP_MALFORMED, '%s: %s' % (type(e).__name__, e))
    if not ok:
        return _skip(info, SKIP_STALE, why)
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
        'age_seconds': round(_age(proc, info, record, clock), 1),
        'cause': record.get('cause'),
        'pod': record.get('pod'),
    }


def run(proc, stuck_execs=None, container_ids=None, evidence_dir='/var/log/hangdoctor',
        min_age_seconds=60, max_evidence_bytes=0, timeout=30.0, fallback='none', max_rounds=3,
        confirm_interval=1.0, peek_bytes=4096, check_mode=False, scan=None, verify=None,
        engine=None, hostname=None, sleep=time.sleep, clock=time.time):
    """Drain every stuck exec among the targets: STUCK_EXECS (records), or a
    fresh scan of CONTAINER_IDS, or of the whole host.  After a round, look at
    the drained containers again: dockerd (before moby 24) starts the next
    queued exec as soon as the pipe is empty, and it deadlocks again while the
    cause persists.  Such rounds skip min_age_seconds (the cause is known)."""
    if max_rounds < 1:
        raise DrainError('max_rounds must be at least 1')
    scan = scan or _stuck_exec.scan
    verify = verify or _stuck_exec.verify

    def rescan(ids):
        return scan(proc, container_ids=ids, confirm_interval=confirm_interval,
                    peek_bytes=peek_bytes, min_age_seconds=0)['stuck_execs']

    result = {'changed': False, 'drained': [], 'skipped_execs': [], 'would_drain': [], 'recurring': [], 'rounds': 0}
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
            kind, entry = preview(proc, rec, min_age_seconds, confirm_interval, peek_bytes, verify, clock)
            result['would_drain' if kind == 'would_drain' else 'skipped_execs'].append(entry)
        result['changed'] = bool(result['would_drain'])
        return result

    try:
        evidence_dir = _evidence.prepare_evidence_dir(evidence_dir)
        _pipe_lock.prepare_lock_dir(evidence_dir)
    except (_evidence.EvidenceError, _pipe_lock.LockError) as e:
        raise DrainError(str(e))
    round_no = 1
    min_age = min_age_seconds
    while records:
        result['rounds'] = round_no
        repaired = []
        for rec in records:
            kind, entry = drain(proc, rec, evidence_dir, max_evidence_bytes, timeout, fallback, min_age,
                                confirm_interval, verify, _drain_verify.not_yet, hostname, clock, round_no=round_no)
            result['drained' if kind == 'drained' else 'skipped_execs'].append(entry)
            if kind == 'drained' and entry['unblocked'] and entry['container_id'] not in repaired:
                repaired.append(entry['container_id'])
        if not repaired:
            break
        sleep(confirm_interval)
        again = [r for r in rescan(repaired) if isinstance(r, dict) and r.get('container_id') in repaired]
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
    _drain_verify.verify_containers(result, engine or _drain_verify.no_engine)
    result['changed'] = bool(result['drained'])
    return result
