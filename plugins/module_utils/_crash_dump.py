# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Classify the crash dump a stuck runc init left in its stderr pipe, and find
the kernel's OOM-kill lines for its container (private module_utils).

Target-side code: Python 3.6+ syntax and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os
import re
import stat as stat_mod
import time

KINDS = ('pthread_create_eagain', 'out_of_memory', 'go_runtime_abort', 'unknown')

_EAGAIN_RE = re.compile(r'pthread_create failed: (Resource temporarily unavailable|EAGAIN)')
_OOM_RE = re.compile(r'fatal error: out of memory|runtime: out of memory|cannot allocate memory', re.I)
_ABORT_RE = re.compile(r'^(fatal error: .*|panic: .*|SIG[A-Z]+: .*|runtime(/cgo)?: .*)$', re.M)
_EXEC_FAILED_RE = re.compile(r'^exec failed: .*$', re.M)

HINTS = {
    'pthread_create_eagain': (
        "runc init could not start a thread inside the container's cgroups: the memory cgroup is at "
        "its limit or the pids limit is reached. Raise the container's memory/pids limit or find what "
        "fills it; every further exec probe will hang the same way until then."),
    'out_of_memory': (
        "runc init ran out of memory inside the container's memory cgroup. Raise the memory limit or "
        "reduce the container's usage before draining, or the next exec deadlocks again."),
    'go_runtime_abort': (
        "runc init aborted in the Go runtime for another reason; the dump's first lines say why. "
        "Keep the dump (drain it to an evidence file) for the runtime's maintainers."),
    'unknown': (
        "The pipe holds output that is not a recognised Go crash dump; read it (drain to an evidence "
        "file) before deciding."),
}

# A kernel OOM report about a memory cgroup names the container in its
# memcg path ("task_memcg=/kubepods/.../<id>", "Memory cgroup stats for .../<id>").
_OOM_LINE_RE = re.compile(r'oom|out of memory|Killed process', re.I)


def classify(text, oom_kills=None):
    """{'kind', 'summary', 'hint', 'oom_kills'} for the head of a crash dump."""
    text = text or ''
    summary = ''
    m = _EAGAIN_RE.search(text)
    if m:
        kind = 'pthread_create_eagain'
        summary = _line_at(text, m.start())
    else:
        m = _OOM_RE.search(text)
        if m:
            kind = 'out_of_memory'
            summary = _line_at(text, m.start())
        else:
            m = _ABORT_RE.search(text)
            if m:
                kind = 'go_runtime_abort'
                summary = m.group(0)
            else:
                kind = 'unknown'
                for line in text.splitlines():
                    if line.strip():
                        summary = line.strip()
                        break
    failed = _EXEC_FAILED_RE.search(text)
    if failed and kind == 'unknown':
        summary = failed.group(0)
    hint = HINTS[kind]
    oom_kills = list(oom_kills or [])
    if oom_kills:
        hint += ' The kernel log has %d OOM line(s) for this container.' % len(oom_kills)
    return {'kind': kind, 'summary': summary[:300], 'hint': hint, 'oom_kills': oom_kills}


def _line_at(text, pos):
    start = text.rfind('\n', 0, pos) + 1
    end = text.find('\n', pos)
    return text[start:end if end >= 0 else len(text)].strip()


def read_kernel_log(path='/dev/kmsg', max_records=20000, max_seconds=0.5):
    """Messages of the kernel ring buffer, oldest first, read non-blocking and
    bounded in records and time.  A plain file (a saved log) is read as lines.
    Returns [] when the log cannot be read (no privilege, no /dev/kmsg)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0))
    except (IOError, OSError):
        return []
    out = []
    deadline = time.monotonic() + max_seconds
    try:
        if not _is_char_device(fd):
            data = b''
            while len(data) < 16 * 1024 * 1024:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                data += chunk
            return [_kmsg_message(line) for line in data.decode('utf-8', 'replace').splitlines()][-max_records:]
        while len(out) < max_records and time.monotonic() < deadline:
            try:
                rec = os.read(fd, 8192)
            except (IOError, OSError) as e:
                if e.errno == errno.EPIPE:
                    continue  # a record was overwritten while we read: skip it
                break  # EAGAIN: read to the end of the ring buffer
            if not rec:
                break
            out.append(_kmsg_message(rec.decode('utf-8', 'replace').split('\n', 1)[0]))
    finally:
        os.close(fd)
    return out


def _is_char_device(fd):
    return stat_mod.S_ISCHR(os.fstat(fd).st_mode)


def _kmsg_message(line):
    """``6,1234,5678,-;text`` (/dev/kmsg) -> ``text``; other lines unchanged."""
    head, sep, rest = line.partition(';')
    if sep and head.count(',') >= 2 and head.split(',', 1)[0].isdigit():
        return rest
    return line


def oom_kills_for(lines, container_id, limit=20):
    """Kernel lines of OOM events in CONTAINER_ID's memory cgroup: lines that
    name the container and talk about OOM, plus the kill line right after."""
    if not container_id:
        return []
    out = []
    follow = False
    for line in lines:
        if container_id in line and _OOM_LINE_RE.search(line):
            out.append(line)
            follow = True
        elif follow and (line.startswith('Memory cgroup out of memory') or line.startswith('Killed process')):
            out.append(line)
        else:
            follow = False
        if len(out) >= limit:
            break
    return out
