# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Go goroutine dumps (private module_utils): a streaming parser and the
fingerprint of the blocking chain they show.

Two layouts are read, also mixed in one stream:

- full dumps (``runtime.Stack(all)``, ``debug=2``; what dockerd writes to
  ``goroutine-stacks-<time>.log`` and containerd logs on SIGUSR1)::

      goroutine 41 [semacquire, 12 minutes]:
      sync.runtime_SemacquireMutex(0xc0001, 0x0, 0x1)
      <TAB>/usr/local/go/src/runtime/sema.go:71 +0x47
      ...

- grouped profiles (``/debug/pprof/goroutine?debug=1``), one record per
  distinct stack with its count::

      717594 @ 0x7fe8bc202980 0x7fe8bc202a40 ...
      # 0x7fe8bc2132ee sync.runtime_SemacquireMutex+0x3e /usr/local/go/src/runtime/sema.go:71

The input is a workload's neighbour's output and may be huge (a dockerd with
700,000 blocked goroutines writes gigabytes): it is read in chunks, a line
longer than MAX_LINE is cut, a goroutine keeps at most MAX_FRAMES frames and
at most MAX_GROUPS distinct stacks are kept (the rest is counted), so memory
does not grow with the dump.

Target-side code: Python 3.6+ syntax and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import HangdoctorError

CHUNK = 1024 * 1024
MAX_LINE = 16 * 1024
MAX_FRAMES = 48
MAX_FUNC = 512
MAX_GROUPS = 5000
MAX_KEY = 4096
MAX_BLOCK = 1024 * 1024
TOP_GROUPS = 40

_FULL_HEAD = re.compile(br'goroutine \d+ \[([^,\]]*)(?:[^\]]*?(\d+) minutes)?[^\]]*\]:')
_IN_GOROUTINE = re.compile(br' in goroutine \d+')

# Frames that mean "waiting for a lock"; the state a full dump gives for it.
LOCK_FRAMES = ('sync.(*Mutex).Lock', 'sync.(*RWMutex).Lock', 'sync.(*RWMutex).RLock',
               'sync.runtime_SemacquireMutex', 'sync.runtime_SemacquireRWMutex', 'sync.runtime_SemacquireRWMutexR',
               'sync.(*Mutex).lockSlow')
LOCK_STATES = ('semacquire', 'sync.Mutex.Lock', 'sync.RWMutex.Lock', 'sync.RWMutex.RLock')
# Frames of the Go runtime above the frame that says what the goroutine waits for.
_SKIP = (b'', b'\t')
RUNTIME_PREFIXES = ('runtime.', 'internal/poll.runtime_', 'sync.runtime_')


class StackParseError(HangdoctorError):
    """The stream is not a goroutine dump at all."""


class _Group(object):
    __slots__ = ('count', 'state', 'minutes', 'body')

    def __init__(self, state, body):
        self.count = 0
        self.state = state
        self.minutes = 0
        self.body = body

    def frames(self):
        """(frames, created by) of the stack, at most MAX_FRAMES frames."""
        frames = []
        created = None
        for f in self.body.split(b'\n'):
            if not f or f.startswith((b'...', b'\t')):
                continue
            if f.startswith(b'created by '):
                created = _func(f[11:])
                continue
            if len(frames) < MAX_FRAMES:
                frames.append(_func(f))
        return frames, created


class DumpParser(object):
    """Feed bytes with :meth:`feed` (any chunking), then :meth:`result`.

    Full dumps are read a block (one goroutine) at a time; its file:line
    lines are its key.  Memory is bounded by MAX_BLOCK + MAX_GROUPS *
    5 * MAX_KEY whatever the size of the dump."""

    def __init__(self, max_groups=MAX_GROUPS):
        self.max_groups = max_groups
        self.groups = {}
        self.total = 0
        self.dropped = 0  # goroutines counted but not grouped (past max_groups)
        self.bytes = 0
        self.long_lines = 0
        self.formats = set()
        self.header_total = None
        self._rest = b''
        self._skip_line = False
        # the grouped (debug=1) record being read
        self._count = 0
        self._frames = None

    # ---- input -----------------------------------------------------------
    def feed(self, data):
        self.bytes += len(data)
        if self._skip_line:
            # the tail of a line already cut at MAX_LINE
            i = data.find(b'\n')
            if i < 0:
                return
            data = data[i + 1:]
            self._skip_line = False
        if self._rest:
            data = self._rest + data
            self._rest = b''
        cut = data.rfind(b'\n\n')
        if cut < 0 and len(data) > MAX_BLOCK:
            # no blank line in a long stretch: take it up to its last newline
            cut = data.rfind(b'\n')
            if cut < 0:
                self.long_lines += 1
                self._skip_line = True
                self._blocks(data[:MAX_LINE])
                return
        if cut < 0:
            self._rest = data
            return
        self._rest = data[cut + 1:]
        self._blocks(data[:cut])

    def close(self):
        if self._rest:
            self._blocks(self._rest)
            self._rest = b''
        self._end()

    def _blocks(self, text):
        groups = self.groups
        for block in text.split(b'\n\n'):
            if block[:1] == b'\n':
                block = block.lstrip(b'\n')
            if not block:
                continue
            if block.startswith(b'goroutine ') and not block.startswith(b'goroutine profile:'):
                lines = block.split(b'\n', 2 * MAX_FRAMES + 1)
                m = _FULL_HEAD.match(lines[0])
                if m is not None:
                    if self._frames is not None:
                        self._end()
                    # A frame is two lines: the function with its arguments
                    # (pointers that differ between goroutines), then its
                    # file:line +pc, which does not.  The file lines are the
                    # stack's key; one sample of the functions is kept.
                    key = b'\n'.join(lines[2:2 * MAX_FRAMES + 1:2])
                    if b' in goroutine ' in key:
                        key = _IN_GOROUTINE.sub(b'', key)
                    key = (m.group(1), key[:MAX_KEY])
                    g = groups.get(key)
                    if g is None:
                        if len(groups) >= self.max_groups:
                            self.dropped += 1
                            self.total += 1
                            continue
                        g = groups[key] = _Group(m.group(1), b'\n'.join(lines[1:2 * MAX_FRAMES + 1])[:MAX_KEY * 4])
                        self.formats.add('full')
                    g.count += 1
                    self.total += 1
                    if m.group(2):
                        minutes = int(m.group(2))
                        if minutes > g.minutes:
                            g.minutes = minutes
                    continue
            self._lines(block.split(b'\n'))
            self._end()

    def _lines(self, lines):
        """The slow path: grouped (debug=1) records and anything else."""
        frames = self._frames
        for line in lines:
            if len(line) > MAX_LINE:
                line = line[:MAX_LINE]
                self.long_lines += 1
            c = line[:1]
            if not line or c == b'\t':
                continue
            if c == b'#':
                if frames is not None and len(frames) < MAX_FRAMES:
                    parts = line.split(None, 3)
                    if len(parts) >= 3:
                        f = parts[2]
                        i = f.rfind(b'+0x')
                        frames.append((f[:i] if i > 0 else f)[:MAX_FUNC])
                continue
            if line.startswith(b'goroutine profile: total '):
                self._end()
                frames = None
                try:
                    self.header_total = int(line[25:].strip())
                except ValueError:
                    pass
                continue
            if c.isdigit():
                head, sep, dummy = line.partition(b' @ ')
                if sep and head.isdigit():
                    self._end()
                    self.formats.add('grouped')
                    self._count = int(head)
                    frames = self._frames = []
                    continue
            if frames is not None:
                # any other line ends the record (a log line between dumps)
                self._end()
                frames = None
        self._frames = frames

    def _end(self):
        frames = self._frames
        self._frames = None
        if frames is None or not self._count:
            return
        count, self._count = self._count, 0
        self.total += count
        key = (None, b'\n'.join(frames))
        g = self.groups.get(key)
        if g is None:
            if len(self.groups) >= self.max_groups:
                self.dropped += count
                return
            g = self.groups[key] = _Group(None, key[1])
        g.count += count

    # ---- output ----------------------------------------------------------
    def result(self, top=TOP_GROUPS):
        """{'format', 'goroutines', 'groups' (the TOP largest), 'fingerprints', ...}"""
        self.close()
        groups = sorted(self.groups.values(), key=lambda g: (-g.count, g.body))
        described = [describe(g) for g in groups]
        fmt = 'mixed' if len(self.formats) > 1 else (next(iter(self.formats)) if self.formats else 'none')
        return {
            'format': fmt,
            'goroutines': self.total,
            'header_total': self.header_total,
            'distinct_stacks': len(self.groups),
            'ungrouped': self.dropped,
            'bytes': self.bytes,
            'long_lines': self.long_lines,
            'groups': described[:top],
            'fingerprints': fingerprints(described),
        }


def _func(line):
    """The function of a frame line: ``pkg.(*T).M(0xc0, ...)`` -> ``pkg.(*T).M``."""
    line = line.strip()
    if line.endswith(b')'):
        i = line.rfind(b'(')
        if i > 0:
            line = line[:i]
    # "created by X in goroutine N" (Go >= 1.21)
    i = line.find(b' in goroutine ')
    if i > 0:
        line = line[:i]
    return line[:MAX_FUNC]


def parse_stream(fobj, limit=None, chunk=CHUNK):
    """Parse a binary file object (at most LIMIT bytes); the :meth:`DumpParser.result`."""
    p = DumpParser()
    left = limit
    while left is None or left > 0:
        data = fobj.read(chunk if left is None else min(chunk, left))
        if not data:
            break
        if left is not None:
            left -= len(data)
        p.feed(data)
    return p.result()


def parse_bytes(data):
    p = DumpParser()
    p.feed(data)
    return p.result()


# ---- what a goroutine waits for, and for whom ------------------------------
def _text(frames):
    return [f.decode('utf-8', 'replace') if isinstance(f, bytes) else f for f in frames]


def waits_for_lock(state, frames):
    top = frames[:8]
    if any(f in LOCK_FRAMES for f in top):
        return True
    # a WaitGroup or a Cond waits in semacquire too, and is no lock
    return state in LOCK_STATES and not any(f.startswith(('sync.(*WaitGroup)', 'sync.(*Cond)')) for f in top)


def wait_of(state, frames):
    """One word for what the goroutine waits on: its state in a full dump, or
    what the top frames show in a grouped one."""
    if waits_for_lock(state, frames):
        return 'lock'
    if any(f.startswith('sync.(*WaitGroup)') for f in frames[:8]):
        return 'waitgroup'
    for f in frames[:10]:
        if 'ttrpc.(*Client).' in f or 'ttrpc.(*Client)' in f:
            return 'ttrpc call'
        if 'grpc.invoke' in f or 'grpc.(*ClientConn).Invoke' in f or 'waitOnHeader' in f:
            return 'grpc call'
        if ('os.(*Process).Wait' in f or 'os.(*Process).wait' in f or 'syscall.Wait4' in f or
                'reaper.(*Monitor).Wait' in f):
            return 'child process'
    return state or 'unknown'


_DAEMON = re.compile(r'daemon\.\(\*Daemon\)\.([A-Za-z0-9_]+)$')
_CTD_TASKS = re.compile(r'services/tasks\.\(\*(?:local|service)\)\.([A-Za-z0-9_]+)$')
_SHIM_SERVICE = re.compile(r'(?:runtime/v2/runc/(?:task|v2|v1)|runtime/v1/shim|linux/shim|containerd-shim[^ ]*)'
                           r'\.\(\*[sS]ervice\)\.([A-Za-z0-9_]+)$')
_LIBCTD = re.compile(r'libcontainerd(?:/remote)?\.\(\*client\)\.([A-Za-z0-9_]+)$')
_SHIM_CLIENT = re.compile(r'\(\*(?:shimClient|taskClient|ttrpctaskClient|shimTask)\)\.([A-Za-z0-9_]+)$')
_GO_RUNC = re.compile(r'go-runc\.\(\*Runc\)\.([A-Za-z0-9_]+)$')


def handler_of(frames):
    """(component, operation) of the outermost API handler frame, e.g.
    ('dockerd', 'ContainerInspect'), or (None, None)."""
    found = (None, None)
    for f in frames:
        for comp, rx in (('dockerd', _DAEMON), ('containerd', _CTD_TASKS), ('shim', _SHIM_SERVICE)):
            m = rx.search(f)
            if m:
                found = (comp, m.group(1))
                break
    return found


def outbound_of(frames):
    """What a handler waits on outside itself: 'containerd Exec', 'shim Start',
    'runc exec', or None."""
    for f in frames:
        m = _LIBCTD.search(f)
        if m:
            return 'containerd %s' % m.group(1)
        m = _SHIM_CLIENT.search(f)
        if m:
            return 'shim %s' % m.group(1)
        m = _GO_RUNC.search(f)
        if m:
            return 'runc %s' % m.group(1).lower()
    return None


def lock_name(frames):
    """Which lock a waiting goroutine wants, from the first frame below the sync frames."""
    for f in frames:
        if f.startswith(RUNTIME_PREFIXES) or f.startswith('sync.'):
            continue
        if 'exec.(*Store)' in f:
            return 'the exec store lock'
        if 'container.(*State)' in f or 'container.(*Container)' in f or _DAEMON.search(f):
            return 'the container lock'
        return 'a lock in %s' % f.rsplit('/', 1)[-1]
    return 'a lock'


def describe(g):
    frames, created = g.frames()
    frames = _text(frames)
    state = g.state.decode('utf-8', 'replace') if isinstance(g.state, bytes) else g.state
    comp, op = handler_of(frames)
    wait = wait_of(state, frames)
    out = {'count': g.count, 'state': state, 'wait': wait, 'max_minutes': g.minutes,
           'top': frames[:8], 'component': comp, 'handler': op,
           'created_by': created.decode('utf-8', 'replace') if isinstance(created, bytes) else created}
    if wait == 'lock':
        out['lock'] = lock_name(frames)
    else:
        out['outbound'] = outbound_of(frames)
    return out


def fingerprints(groups):
    """Stable strings for the blocking chain the dump shows, largest first:

    - lock waiters under an API handler, grouped by handler and lock, with the
      handlers of the same component that are blocked in a call out of the
      process (the likely holders; a Go dump does not name a mutex's owner):
      ``dockerd: ContainerInspect waits for the container lock held by
      ContainerExecStart -> containerd Exec (717595 goroutines)``
    - handlers blocked in a call out of the process when nobody waits for a
      lock: ``containerd: Start -> shim Start (1 goroutines)``.
    The goroutine counts are kept apart in ``fingerprint_counts``; the text
    before `` (`` is the stable key."""
    waiters = {}
    calls = {}
    for g in groups:
        comp, op = g.get('component'), g.get('handler')
        if not op:
            continue
        if g['wait'] == 'lock':
            key = (comp, op, g.get('lock'))
            waiters[key] = waiters.get(key, 0) + g['count']
        elif g.get('outbound'):
            key = (comp, op, g['outbound'])
            calls[key] = calls.get(key, 0) + g['count']
    out = []
    by_comp = {}
    for (comp, op, outbound), n in calls.items():
        by_comp.setdefault(comp, []).append('%s -> %s' % (op, outbound))
    merged = {}
    for (comp, op, lock), n in waiters.items():
        holders = sorted(set(by_comp.get(comp, [])))
        if holders:
            text = '%s: %s waits for %s held by %s' % (comp, op, _lock_family(lock), ' or '.join(holders))
        else:
            text = '%s: %s waits for %s' % (comp, op, lock)
        merged[text] = merged.get(text, 0) + n
    if not merged:
        for (comp, op, outbound), n in calls.items():
            text = '%s: %s -> %s' % (comp, op, outbound)
            merged[text] = merged.get(text, 0) + n
    for text, n in sorted(merged.items(), key=lambda kv: (-kv[1], kv[0])):
        out.append({'fingerprint': text, 'goroutines': n})
    return out


def _lock_family(lock):
    # The exec store's lock and the container's are both the container's
    # locks from a user's view: one fingerprint per handler, whichever it waits in.
    if lock in ('the exec store lock', 'the container lock'):
        return 'the container lock'
    return lock


def short(fp):
    """The fingerprint text of a fingerprint entry or string."""
    return fp['fingerprint'] if isinstance(fp, dict) else fp
