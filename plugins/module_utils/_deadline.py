# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Work under one deadline on the monotonic clock (private module_utils).

The engine clients (``_engine_api`` for dockerd, ``_cri`` for containerd's
shims) ask many containers at once and must return by a deadline even when
some calls never come back.  Both use the same two pieces:

- ``DeadlinePool``: daemon worker threads fill a dict of results by key; the
  caller collects it by the deadline (plus a short grace for scheduling), and
  every key that has no result by then gets the caller's "no result" value.
  A stuck call keeps its daemon thread, never the caller.
- ``run_bounded``: a command (``ctr version``, ``runc --version``) in a
  session of its own, killed with its whole process group and reaped when it
  has not finished by its timeout.
- ``connect_unix``: a unix-socket connect under the deadline.  A daemon that
  stopped accepting has a full listen backlog, and a timed connect to it
  fails at once with EAGAIN: that is "not answering" (retried until the
  deadline, then ``DeadlineExceeded``), not "nothing there".

Target-side code: Python 3.6+ syntax and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os
import signal
import socket
import struct
import subprocess
import threading
import time

from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import HangdoctorError

# What thread scheduling may add after the deadline before a result is given up.
GRACE = 0.25
# An engine check returns within its per-request timeout plus this: the time
# to list the containers and start the requests, and to build the result.
OVERALL_SLACK = 0.5
# What a probe says when the overall deadline decided it: not started, cut
# short (after %.1fs), or no result at all.  Callers tell these from real
# answers by these words (DEADLINE_ERRORS: each message's fixed start).
_NOT_PROBED_START = 'not probed: the overall deadline passed first'
_CUT_SHORT_START = 'probe cut short by the overall deadline'
NOT_PROBED = _NOT_PROBED_START + ' (raise concurrency or the deadline)'
CUT_SHORT = _CUT_SHORT_START + ' after %.1fs'
NO_RESULT = 'no result by the overall deadline'
DEADLINE_ERRORS = (_NOT_PROBED_START, _CUT_SHORT_START, NO_RESULT)
# The part of OVERALL_SLACK kept for building the result after the last request ended.
RESULT_MARGIN = 0.05
# sun_path holds 108 bytes with the terminating NUL.
MAX_UNIX_PATH = 107
# How long run_bounded reads what a killed process group left in its pipes.
REAP_SECONDS = 5.0


class DeadlineExceeded(HangdoctorError):
    """The deadline passed before the work finished."""


def remaining(deadline, what):
    """Seconds left until DEADLINE; DeadlineExceeded when none."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded('%s: no answer within the deadline' % what)
    return left


class CommandTimeout(DeadlineExceeded):
    """A command did not finish by its timeout; its process group was killed and the command reaped."""

    def __init__(self, msg, pid=None):
        super(CommandTimeout, self).__init__(msg)
        self.pid = pid


def run_bounded(argv, timeout, merge_stderr=False, **popen):
    """(returncode, stdout, stderr) of ARGV (bytes; stderr None with
    MERGE_STDERR, which sends it to stdout), run with stdin from /dev/null in
    a session of its own, so that everything it starts is in its process
    group.  At TIMEOUT seconds the whole group gets SIGKILL, the command is
    reaped and CommandTimeout raised.  POPEN: ``env``, ``cwd``.  The OSError
    of a command that cannot start is the caller's."""
    p = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
                         close_fds=True, start_new_session=True, **popen)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            p.communicate(timeout=REAP_SECONDS)
        except subprocess.TimeoutExpired:
            # a descendant that left the group still holds the pipes: stop reading them
            for f in (p.stdout, p.stderr):
                if f is not None:
                    f.close()
            p.wait()
        raise CommandTimeout('%s did not finish within %.1f s' % (argv[0], timeout), pid=p.pid)
    return p.returncode, out, err


class BacklogFull(DeadlineExceeded):
    """The listener is there but did not accept a connection by the deadline."""


def connect_unix(path, deadline, what='connect'):
    """A connected AF_UNIX stream socket to PATH (a filesystem path, or an
    abstract name starting with NUL), by DEADLINE.

    Raises DeadlineExceeded when connect itself waits past the deadline,
    BacklogFull when the listener refused every try with EAGAIN (its listen
    backlog is full: it is there and does not accept), and the OSError of the
    connect otherwise (ENOENT, ECONNREFUSED, EACCES: nothing answers there).
    A filesystem path longer than sun_path (a socket reached through
    ``/proc/PID/root/...``) is connected through an O_PATH descriptor."""
    backlog_full = False
    while True:
        if backlog_full and deadline - time.monotonic() <= 0:
            raise BacklogFull('%s: %s is not accepting connections (listen backlog full) within the deadline'
                              % (what, path.replace('\0', '@')))
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(remaining(deadline, what))
            _connect_path(s, path)
            return s
        except socket.timeout:
            s.close()
            raise DeadlineExceeded('%s: connecting to %s: no answer within the deadline' % (what, path.replace('\0', '@')))
        except (OSError, IOError) as e:
            s.close()
            if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise
        except Exception:
            s.close()
            raise
        backlog_full = True
        time.sleep(max(0.0, min(0.05, deadline - time.monotonic())))


def connect_path(sock, path):
    """connect(2) SOCK to PATH, a path longer than sun_path included (see
    connect_unix); on a non-blocking socket a full backlog raises EAGAIN."""
    _connect_path(sock, path)


def _connect_path(sock, path):
    if path.startswith('\0') or len(path.encode('utf-8', 'surrogateescape')) <= MAX_UNIX_PATH:
        sock.connect(path)
        return
    # connect(2) follows /proc/self/fd/N to the socket file held by the O_PATH descriptor
    fd = os.open(path, getattr(os, 'O_PATH', 0o10000000) | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0))
    try:
        sock.connect('/proc/self/fd/%d' % fd)
    finally:
        os.close(fd)


class DeadlinePool(object):
    """Results by key, filled by daemon threads, collected by DEADLINE.

    ``map(items, func, concurrency)`` runs FUNC(item) for every item on up to
    CONCURRENCY worker threads; FUNC stores what it found with ``put`` (or
    runs ``call``), possibly from threads of its own.  ``collect(keys,
    missing)`` returns {key: result} once every key has a result or at the
    deadline plus GRACE, whichever is first; a key without a result gets
    MISSING(key)."""

    def __init__(self, deadline, grace=GRACE):
        self.deadline = deadline
        self.grace = grace
        self._results = {}
        self._cond = threading.Condition()

    def left(self):
        return self.deadline - time.monotonic()

    def put(self, key, value):
        with self._cond:
            self._results[key] = value
            self._cond.notify_all()

    def call(self, key, func, arg, on_error):
        """put(KEY, FUNC(ARG)); an exception becomes ON_ERROR(exception): a
        surprise in one call never loses the result of that key."""
        try:
            value = func(arg)
        except Exception as e:
            value = on_error(e)
        self.put(key, value)

    def start(self, target, args=(), name='deadline-worker'):
        th = threading.Thread(target=target, args=args, name=name)
        th.daemon = True
        th.start()
        return th

    def map(self, items, func, concurrency, name='deadline-worker'):
        pending = list(reversed(list(items)))
        lock = threading.Lock()

        def worker():
            while True:
                with lock:
                    if not pending:
                        return
                    item = pending.pop()
                try:
                    func(item)
                except Exception:  # FUNC reports through put/call; a bug must not stop the other items
                    pass

        for i in range(max(1, min(int(concurrency), len(pending)))):
            self.start(worker, name='%s-%d' % (name, i))

    def collect(self, keys, missing):
        keys = list(keys)
        wanted = set(keys)
        wait_until = self.deadline + self.grace
        with self._cond:
            while not wanted <= set(self._results):
                left = wait_until - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            found = dict(self._results)
        return dict((k, found[k] if k in found else missing(k)) for k in keys)


def peer_pid(sock):
    """The pid (in our pid namespace) of the process at the other end of the
    connected unix socket SOCK, from SO_PEERCRED; None when the kernel does
    not say (a peer in a pid namespace we cannot see)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, getattr(socket, 'SO_PEERCRED', 17), struct.calcsize('3i'))
        pid = struct.unpack('3i', raw)[0]
    except (IOError, OSError, struct.error):
        return None
    return pid if pid > 0 else None


def listener_pid(path, timeout, what='connect'):
    """The pid of the process listening on the unix socket PATH, asked by
    connecting within TIMEOUT seconds; None when no connection was made or
    the kernel does not say."""
    try:
        s = connect_unix(path, time.monotonic() + float(timeout), what)
    except (IOError, OSError, DeadlineExceeded):
        return None
    try:
        return peer_pid(s)
    finally:
        s.close()
