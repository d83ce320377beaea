# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Docker Engine API client with a hard deadline per request (private module_utils).

Why not the docker SDK or ``http.client``: neither can bound a whole request.
A socket timeout applies to one ``recv``; a daemon that accepts and never
answers, or that trickles one byte per second, keeps such a client waiting
forever.  Here every request has a deadline on the monotonic clock, and each
``connect``/``send``/``recv`` gets only what is left of it.  That matters for
the stuck exec: dockerd (before moby 24) holds a container's exec-store lock
while ``runc exec`` waits on ``runc init``, so ``GET /containers/<id>/json``
of that container never returns while ``GET /containers/json`` still does.

Supported ``docker_host`` forms: ``unix:///path``, a bare ``/path``,
``tcp://host:port`` and ``http://host:port`` (plain HTTP).  Not supported:
TLS (``https://``, ``tcp://`` with ``DOCKER_TLS_VERIFY``), ``ssh://``,
``npipe://`` and ``fd://``; forward such a daemon to a local unix socket
(``ssh -L /tmp/d.sock:/var/run/docker.sock host``) and point at that.

Target-side code: Python 3.6+ syntax and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import json
import math
import os
import re
import resource
import selectors
import socket
import threading
import time

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _addresses
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _deadline
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _defaults
from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import HangdoctorError

try:
    from urllib.parse import quote, urlencode
except ImportError:  # pragma: no cover - Python 2 is not a target, kept for sanity's compile test
    from urllib import quote, urlencode

DEFAULT_DOCKER_HOST = _defaults.DEFAULT_DOCKER_HOST
DEFAULT_TIMEOUT = 5.0
MAX_HEADER_BYTES = 64 * 1024
# A list of a few thousand containers is a few MiB; this only stops a runaway peer.
MAX_BODY_BYTES = 64 * 1024 * 1024
USER_AGENT = 'hangdoctor.runtime'
_API_VERSION_RE = re.compile(r'^[0-9]+\.[0-9]+$')

K8S_NAMESPACE_LABEL = 'io.kubernetes.pod.namespace'
K8S_POD_LABEL = 'io.kubernetes.pod.name'
K8S_CONTAINER_LABEL = 'io.kubernetes.container.name'


class EngineError(HangdoctorError):
    """The Engine API did not give a usable answer.  ``status`` is the HTTP
    status when the daemon answered with an error."""

    def __init__(self, msg, status=None):
        super(EngineError, self).__init__(msg)
        self.status = status


class EngineTimeout(EngineError):
    """The request's deadline passed before a whole answer arrived."""


class EngineUnreachable(EngineError):
    """Nothing listens there: no socket file, connection refused, no permission."""


def _remaining(deadline, what):
    left = deadline - time.monotonic()
    if left <= 0:
        raise EngineTimeout('%s: no answer within the deadline' % what)
    return left


def _resolve(host, port, deadline):
    """getaddrinfo has no timeout of its own: run it in a daemon thread."""
    try:
        socket.inet_pton(socket.AF_INET6 if ':' in host else socket.AF_INET, host)
        return [(socket.AF_INET6 if ':' in host else socket.AF_INET, (host, port))]
    except (OSError, ValueError):
        pass
    box = {}

    def run():
        try:
            box['addrs'] = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        except Exception as e:  # handed to the caller below
            box['error'] = e

    t = threading.Thread(target=run, name='resolve-%s' % host)
    t.daemon = True
    t.start()
    t.join(_remaining(deadline, 'resolving %s' % host))
    if t.is_alive():
        raise EngineTimeout('resolving %s: no answer within the deadline' % host)
    if 'error' in box:
        raise EngineUnreachable('resolving %s: %s' % (host, box['error']))
    return [(a[0], a[4]) for a in box['addrs']]


class _Response(object):
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body


class _DeadlineReader(object):
    """Reads a socket under one deadline, whatever pace the peer keeps."""

    def __init__(self, sock, deadline, what, max_bytes):
        self.sock = sock
        self.deadline = deadline
        self.what = what
        self.max_bytes = max_bytes
        self.buf = b''
        self.total = 0
        self.eof = False

    def fill(self):
        if self.eof:
            return False
        self.sock.settimeout(_remaining(self.deadline, self.what))
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise EngineTimeout('%s: no answer within the deadline' % self.what)
        except (OSError, IOError) as e:
            raise EngineError('%s: reading the answer: %s' % (self.what, e))
        if not data:
            self.eof = True
            return False
        self.total += len(data)
        if self.total > self.max_bytes:
            raise EngineError('%s: answer larger than %d bytes' % (self.what, self.max_bytes))
        self.buf += data
        return True

    def readline(self, limit=MAX_HEADER_BYTES):
        while True:
            i = self.buf.find(b'\n')
            if i >= 0:
                line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                return line
            if len(self.buf) > limit:
                raise EngineError('%s: header line longer than %d bytes' % (self.what, limit))
            if not self.fill():
                raise EngineError('%s: connection closed in the middle of the answer' % self.what)

    def read(self, n):
        while len(self.buf) < n:
            if not self.fill():
                raise EngineError('%s: connection closed after %d of %d body bytes' % (self.what, len(self.buf), n))
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_to_eof(self):
        while self.fill():
            pass
        data, self.buf = self.buf, b''
        return data


class EngineClient(object):
    """A Docker Engine API client: one connection per request (``Connection:
    close``), so instances are safe to share between probe threads once the
    API version is settled."""

    def __init__(self, docker_host=DEFAULT_DOCKER_HOST, api_version=None, timeout=DEFAULT_TIMEOUT,
                 max_body_bytes=MAX_BODY_BYTES):
        self.docker_host = docker_host
        try:
            self.address = _addresses.parse_docker_host(docker_host)
        except _addresses.AddressError as e:
            raise EngineError(str(e))
        if api_version in ('auto', ''):
            api_version = None
        if api_version is not None:
            api_version = str(api_version).lstrip('v')
            if not _API_VERSION_RE.match(api_version):
                raise EngineError('api_version %r: expected MAJOR.MINOR such as 1.41, or auto' % api_version)
        self.api_version = api_version
        self.timeout = float(timeout)
        if self.timeout <= 0 or math.isnan(self.timeout):
            raise EngineError('timeout must be greater than 0, got %r' % timeout)
        self.max_body_bytes = max_body_bytes
        self._version_info = None
        self._lock = threading.Lock()

    # ---- transport -------------------------------------------------------
    def _connect(self, deadline, what):
        if self.address[0] == 'unix':
            path = self.address[1]
            try:
                # a full listen backlog (a stopped daemon) is retried until the
                # deadline and is then not answering, not unreachable
                return _deadline.connect_unix(path, deadline, what)
            except _deadline.BacklogFull:
                raise EngineTimeout('%s: connecting to %s: the daemon is not accepting connections '
                                    '(listen backlog full) within the deadline' % (what, path))
            except _deadline.DeadlineExceeded:
                raise EngineTimeout('%s: connecting to %s: no answer within the deadline' % (what, path))
            except (OSError, IOError) as e:
                raise EngineUnreachable('%s: cannot connect to %s: %s' % (what, path, _why(e)))
        dummy, host, port = self.address
        last = None
        for family, sockaddr in _resolve(host, port, deadline):
            s = socket.socket(family, socket.SOCK_STREAM)
            try:
                s.settimeout(_remaining(deadline, what))
                s.connect(sockaddr)
                return s
            except socket.timeout:
                s.close()
                raise EngineTimeout('%s: connecting to %s:%d: no answer within the deadline' % (what, host, port))
            except (OSError, IOError) as e:
                s.close()
                last = e
            except EngineError:
                s.close()
                raise
        raise EngineUnreachable('%s: cannot connect to %s:%d: %s' % (what, host, port, _why(last) if last else 'no address'))

    def request(self, method, path, timeout=None, query=None):
        """One HTTP/1.1 request; returns a response with ``status``,
        ``headers`` (lower-case names) and ``body`` (bytes).  The whole call
        -- connect, send, every read -- ends by ``timeout`` seconds."""
        timeout = self.timeout if timeout is None else float(timeout)
        deadline = time.monotonic() + timeout
        qs = urlencode(sorted((k, v) for k, v in (query or {}).items() if v is not None))
        if qs:
            path = path + '?' + qs
        what = '%s %s' % (method, path)
        host_header = 'localhost' if self.address[0] == 'unix' else '%s:%d' % (self.address[1], self.address[2])
        req = ('%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nAccept: application/json\r\n'
               'Connection: close\r\n\r\n' % (method, path, host_header, USER_AGENT)).encode('ascii')
        sock = self._connect(deadline, what)
        try:
            try:
                # sendall's timeout covers the whole send (Python >= 3.5)
                sock.settimeout(_remaining(deadline, what))
                sock.sendall(req)
            except socket.timeout:
                raise EngineTimeout('%s: sending: no progress within the deadline' % what)
            except (OSError, IOError) as e:
                raise EngineError('%s: sending: %s' % (what, _why(e)))
            return self._read_response(_DeadlineReader(sock, deadline, what, self.max_body_bytes), method, what)
        finally:
            sock.close()

    def _read_response(self, r, method, what):
        while True:
            line = r.readline()
            parts = line.decode('iso-8859-1').rstrip('\r\n').split(' ', 2)
            if len(parts) < 2 or not parts[0].startswith('HTTP/') or not parts[1].isdigit():
                raise EngineError('%s: not an HTTP answer: %r' % (what, line[:80]))
            status = int(parts[1])
            reason = parts[2] if len(parts) > 2 else ''
            headers = {}
            size = 0
            while True:
                h = r.readline()
                size += len(h)
                if size > MAX_HEADER_BYTES:
                    raise EngineError('%s: headers larger than %d bytes' % (what, MAX_HEADER_BYTES))
                h = h.decode('iso-8859-1').rstrip('\r\n')
                if not h:
                    break
                if ':' in h:
                    k, v = h.split(':', 1)
                    headers[k.strip().lower()] = v.strip()
            if 100 <= status < 200:
                continue  # an interim answer; the real one follows
            break
        if method == 'HEAD' or status in (204, 304):
            body = b''
        elif 'chunked' in headers.get('transfer-encoding', '').lower():
            body = self._read_chunked(r, what)
        elif 'content-length' in headers:
            try:
                n = int(headers['content-length'])
            except ValueError:
                raise EngineError('%s: bad Content-Length %r' % (what, headers['content-length']))
            if n < 0:
                raise EngineError('%s: bad Content-Length %d' % (what, n))
            if n > self.max_body_bytes:
                raise EngineError('%s: answer larger than %d bytes (Content-Length %d)' % (what, self.max_body_bytes, n))
            body = r.read(n)
        else:
            body = r.read_to_eof()
        return _Response(status, reason, headers, body)

    def _read_chunked(self, r, what):
        out = []
        total = 0
        while True:
            line = r.readline().split(b';', 1)[0].strip()
            try:
                n = int(line, 16)
            except ValueError:
                raise EngineError('%s: bad chunk size %r' % (what, line[:20]))
            if n == 0:
                # trailers end with an empty line
                while r.readline().strip():
                    pass
                return b''.join(out)
            total += n
            if total > self.max_body_bytes:
                raise EngineError('%s: answer larger than %d bytes' % (what, self.max_body_bytes))
            out.append(r.read(n))
            r.read(2)

    # ---- API -------------------------------------------------------------
    def _versioned(self, path, timeout):
        if self.api_version is None:
            self.version(timeout=timeout)
        return '/v%s%s' % (self.api_version, path)

    def get(self, path, timeout=None, query=None, versioned=True):
        """GET PATH and decode its JSON answer.  PATH is the API path without
        the /vX.Y prefix (added after negotiating once); callers quote ids."""
        if versioned:
            path = self._versioned(path, timeout)
        resp = self.request('GET', path, timeout=timeout, query=query)
        return _decode(resp, 'GET %s' % path)

    def version(self, timeout=None):
        """GET /version (unversioned), once; settles the API version when
        none was given: the daemon's own, so old daemons are spoken to in
        their dialect."""
        with self._lock:
            if self._version_info is None:
                resp = self.request('GET', '/version', timeout=timeout)
                info = _decode(resp, 'GET /version')
                if not isinstance(info, dict):
                    raise EngineError('GET /version: unexpected answer %r' % (info,))
                self._version_info = info
                if self.api_version is None:
                    v = str(info.get('ApiVersion') or '')
                    if not _API_VERSION_RE.match(v):
                        raise EngineError('GET /version: no usable ApiVersion in the answer (%r)' % v)
                    self.api_version = v
            return self._version_info

    def containers(self, all_states=False, timeout=None):
        """GET /containers/json (running ones unless ALL_STATES): keeps
        answering while an exec is stuck."""
        out = self.get('/containers/json', timeout=timeout, query={'all': '1' if all_states else None})
        if not isinstance(out, list):
            raise EngineError('GET /containers/json: expected a list, got %s' % type(out).__name__)
        return out

    def inspect(self, cid, timeout=None):
        """GET /containers/<id>/json: blocks behind a stuck exec in dockerd < 24."""
        return self.get('/containers/%s/json' % quote(str(cid), safe=''), timeout=timeout)


def _why(e):
    if isinstance(e, (OSError, IOError)) and e.errno is not None:
        return '%s (%s)' % (e.strerror or e, errno.errorcode.get(e.errno, e.errno))
    return str(e)


def _decode(resp, what):
    text = resp.body.decode('utf-8', 'replace')
    if not 200 <= resp.status < 300:
        msg = text.strip()
        try:
            msg = json.loads(text).get('message') or msg
        except (ValueError, AttributeError):
            pass
        raise EngineError('%s: HTTP %d %s: %s' % (what, resp.status, resp.reason, msg[:500]), status=resp.status)
    try:
        return json.loads(text)
    except ValueError as e:
        raise EngineError('%s: answer is not JSON: %s' % (what, e))


# ---- probing many containers at once -----------------------------------------
def probe_inspect(client, ids, timeout, concurrency=1024, deadline=None, more=None):
    """Inspect every id in IDS with up to CONCURRENCY requests in flight.

    On a unix socket (every local dockerd) one thread drives all requests
    through the kernel's readiness events (``_InspectLoop``): no thread per
    request, and only the status line of each answer is read (an HTTP
    status proves the container's lock was free), never the inspect JSON.
    Other addresses use worker threads.

    Returns {id: {'responsive': True|False|None, 'latency_ms', 'error'}}:
    True when the daemon answered (even with an error status), False when the
    request used its whole ``timeout`` without an answer (the stuck exec's
    sign), None when it could not be decided (connection failed, or the overall
    DEADLINE cut it short or kept it from starting).  Returns by DEADLINE (a
    monotonic time; default now + timeout + 0.5) even if threads are still
    stuck: they are daemon threads and every one of them is itself bounded.
    """
    ids = list(ids)
    timeout = float(timeout)
    if deadline is None:
        deadline = time.monotonic() + timeout + _deadline.OVERALL_SLACK
    if client.address[0] == 'unix' and (ids or more is not None):
        return _InspectLoop(client, timeout, deadline).run(ids, concurrency, more)
    pool = _deadline.DeadlinePool(deadline)

    def probe(cid):
        left = pool.left()
        if left <= 0:
            return {'responsive': None, 'latency_ms': None,
                    'error': _deadline.NOT_PROBED}
        budget = min(timeout, left)
        t0 = time.monotonic()
        try:
            client.inspect(cid, timeout=budget)
            return {'responsive': True, 'latency_ms': _ms(t0), 'error': None}
        except EngineTimeout as e:
            if budget < timeout:
                return {'responsive': None, 'latency_ms': _ms(t0),
                        'error': (_deadline.CUT_SHORT + ': %s') % (budget, e)}
            return {'responsive': False, 'latency_ms': _ms(t0),
                    'error': 'inspect did not answer within %.1fs' % timeout}
        except EngineUnreachable as e:
            return {'responsive': None, 'latency_ms': _ms(t0), 'error': str(e)}
        except EngineError as e:
            # an HTTP error (404: removed since the list) is still an answer
            answered = True if e.status is not None else None
            return {'responsive': answered, 'latency_ms': _ms(t0), 'error': str(e)}

    def failed(e):  # never lose a result to a surprise
        return {'responsive': None, 'latency_ms': None, 'error': 'probe failed: %r' % (e,)}

    # every probe is bounded by DEADLINE; the pool's grace only covers thread scheduling
    pool.map(ids, lambda cid: pool.call(cid, probe, cid, failed), concurrency, name='inspect-probe')
    return pool.collect(ids, lambda cid: {'responsive': None, 'latency_ms': None,
                                          'error': _deadline.NO_RESULT})


def _ms(t0):
    return int(round((time.monotonic() - t0) * 1000))


def _fd_budget():
    """Requests that may be in flight without running out of descriptors:
    half the soft RLIMIT_NOFILE (a module started over SSH may have 1024)."""
    try:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ValueError, OSError):
        return 512
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return 65536
    return max(8, soft // 2)


class _InspectLoop(object):
    """Inspect requests on non-blocking unix sockets, all driven by one
    thread: each has its own TIMEOUT from its connect, the whole run ends by
    DEADLINE.  A request whose connect finds the listen backlog full is
    retried until its timeout (then it did not answer)."""

    RETRY = 0.02
    MAX_STATUS_BYTES = 8192

    def __init__(self, client, timeout, deadline):
        self.client = client
        self.path = client.address[1]
        self.timeout = timeout
        self.deadline = deadline
        self.sel = selectors.DefaultSelector()
        self.results = {}
        self.active = {}   # socket -> [cid, t0, out bytes, in bytes]
        self.retry = []    # [cid, t0, next try]

    def _request(self, cid):
        path = '/v%s/containers/%s/json' % (self.client.api_version, quote(str(cid), safe=''))
        return ('GET %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: %s\r\nAccept: application/json\r\n'
                'Connection: close\r\n\r\n' % (path, USER_AGENT)).encode('ascii')

    def _start(self, cid, t0):
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        except (OSError, IOError) as e:
            if e.errno in (errno.EMFILE, errno.ENFILE):
                # out of descriptors for now: the next answer frees one
                self.retry.append([cid, t0, time.monotonic() + self.RETRY])
                return
            raise
        s.setblocking(False)
        try:
            _deadline.connect_path(s, self.path)
        except (OSError, IOError) as e:
            s.close()
            if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                # the daemon's listen backlog is full: there, not accepting yet
                self.retry.append([cid, t0, time.monotonic() + self.RETRY])
                return
            self._done(cid, t0, None, 'cannot connect to %s: %s' % (self.path, _why(e)))
            return
        self.active[s] = [cid, t0, self._request(cid), b'']
        self.sel.register(s, selectors.EVENT_WRITE)

    def _done(self, cid, t0, responsive, error):
        self.results[cid] = {'responsive': responsive, 'latency_ms': _ms(t0), 'error': error}

    def _close(self, s):
        self.sel.unregister(s)
        del self.active[s]
        s.close()

    def _on_event(self, s, mask):
        st = self.active[s]
        cid, t0 = st[0], st[1]
        try:
            if mask & selectors.EVENT_WRITE and st[2]:
                n = s.send(st[2])
                st[2] = st[2][n:]
                if not st[2]:
                    self.sel.modify(s, selectors.EVENT_READ)
                return
            data = s.recv(4096)
        except (OSError, IOError) as e:
            if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return
            self._close(s)
            self._done(cid, t0, None, 'inspect: %s' % _why(e))
            return
        st[3] += data
        if b'\n' not in st[3] and data and len(st[3]) < self.MAX_STATUS_BYTES:
            return
        self._close(s)
        line = st[3].split(b'\n', 1)[0].decode('iso-8859-1').rstrip('\r')
        parts = line.split(' ', 2)
        if b'\n' not in st[3] or len(parts) < 2 or not parts[0].startswith('HTTP/') or not parts[1].isdigit():
            why = 'connection closed before an answer' if not st[3] else 'not an HTTP answer: %r' % line[:80]
            self._done(cid, t0, None, 'GET /containers/%s/json: %s' % (cid, why))
            return
        status = int(parts[1])
        # any HTTP status is an answer (404: removed since the list): the lock was free
        self._done(cid, t0, True, None if 200 <= status < 300 else 'GET /containers/%s/json: HTTP %d %s' % (
            cid, status, parts[2] if len(parts) > 2 else ''))

    def _expire(self, now):
        for s, st in list(self.active.items()):
            if now >= min(st[1] + self.timeout, self.deadline):
                self._close(s)
                self._expired(st[0], st[1], now)
        for r in list(self.retry):
            if now >= min(r[1] + self.timeout, self.deadline):
                self.retry.remove(r)
                self._expired(r[0], r[1], now, ' (the listen backlog stayed full)')

    def _expired(self, cid, t0, now, why=''):
        if t0 + self.timeout <= self.deadline:
            self._done(cid, t0, False, 'inspect did not answer within %.1fs%s' % (self.timeout, why))
        else:
            self._done(cid, t0, None, (_deadline.CUT_SHORT + '%s') % (now - t0, why))

    def run(self, ids, concurrency, more=None):
        """Probe IDS; MORE (optional) is polled until it returns a list: ids to
        probe too (those not started yet), as they become known."""
        pending = list(reversed(ids))
        started = set(ids)
        limit = max(1, min(int(concurrency), _fd_budget()))
        try:
            while True:
                if more is not None:
                    late = more()
                    if late is not None:
                        more = None
                        fresh = [cid for cid in late if cid not in started]
                        started.update(fresh)
                        ids = list(ids) + fresh
                        # ids not listed (stopped containers) are not asked any more
                        wanted = set(late)
                        pending = list(reversed(fresh)) + [cid for cid in pending if cid in wanted]
                now = time.monotonic()
                for r in [r for r in self.retry if r[2] <= now]:
                    self.retry.remove(r)
                    self._start(r[0], r[1])
                while pending and len(self.active) + len(self.retry) < limit and now < self.deadline:
                    self._start(pending.pop(), time.monotonic())
                self._expire(time.monotonic())
                if (more is None or time.monotonic() >= self.deadline) and not self.active and not self.retry and (
                        not pending or time.monotonic() >= self.deadline):
                    break
                wake = [self.deadline] + [st[1] + self.timeout for st in self.active.values()] + [
                    r[2] for r in self.retry] + ([time.monotonic() + self.RETRY] if more is not None else [])
                wait = max(0.0, min(wake) - time.monotonic())
                for key, mask in self.sel.select(wait if self.active else min(wait, self.RETRY)):
                    self._on_event(key.fileobj, mask)
        finally:
            for s in list(self.active):
                self._close(s)
            self.sel.close()
        for cid in pending:
            self.results.setdefault(cid, {'responsive': None, 'latency_ms': None, 'error': _deadline.NOT_PROBED})
        missing = {'responsive': None, 'latency_ms': None, 'error': _deadline.NO_RESULT}
        return dict((cid, self.results.get(cid) or dict(missing)) for cid in ids)


def _text(value):
    """VALUE when it is a string, else None: a non-Docker peer may send anything."""
    return value if isinstance(value, str) else None


def container_summary(c):
    """The fields an operator recognises a container by, from a /containers/json
    entry; None when the entry has no string ``Id``.  Every field is checked
    for its type: a peer that is not Docker (or a future one) may send
    ``Id: ["x"]``, ``Names: [1]`` or ``Labels: "x"``."""
    if not isinstance(c, dict) or not _text(c.get('Id')):
        return None
    labels = c.get('Labels')
    if not isinstance(labels, dict):
        labels = {}
    names = c.get('Names')
    names = [n for n in names if isinstance(n, str)] if isinstance(names, list) else []
    return {
        'id': c['Id'],
        'name': names[0].lstrip('/') if names else None,
        'image': _text(c.get('Image')),
        'state': _text(c.get('State')),
        'pod_namespace': _text(labels.get(K8S_NAMESPACE_LABEL)),
        'pod_name': _text(labels.get(K8S_POD_LABEL)),
        'pod_container': _text(labels.get(K8S_CONTAINER_LABEL)),
    }


def _summaries(listed):
    """(container summaries, entries skipped) of a /containers/json answer."""
    containers = []
    seen = set()
    skipped = 0
    for c in listed:
        summary = container_summary(c)
        if summary is None or summary['id'] in seen:
            skipped += 1
            continue
        seen.add(summary['id'])
        containers.append(summary)
    return containers, skipped


_ID_RE = re.compile(r'^[0-9a-f]{64}$')
# more ids than this in the containers folder (a node full of stopped ones):
# not worth inspecting them all, the list is awaited as before
MAX_STATE_IDS = 4096
DEFAULT_DATA_ROOT = '/var/lib/docker'
DEFAULT_DAEMON_JSON = '/etc/docker/daemon.json'


def _peer_pid(path):
    """The pid of the process listening on the unix socket PATH (SO_PEERCRED), or None."""
    return _deadline.listener_pid(path, 1.0, 'dockerd')


def data_root(argv, read):
    """dockerd's data root from its ARGV, else its daemon.json (READ(path) ->
    bytes or None), else the default."""
    config = DEFAULT_DAEMON_JSON
    for i, a in enumerate(argv):
        for name in ('--data-root', '-g', '--graph', '--config-file'):
            value = None
            if a == name and i + 1 < len(argv):
                value = argv[i + 1]
            elif a.startswith(name + '='):
                value = a[len(name) + 1:]
            if value is None:
                continue
            if name == '--config-file':
                config = value
            elif value.startswith('/'):
                return value
    try:
        doc = json.loads((read(config) or b'{}').decode('utf-8', 'replace'))
    except ValueError:
        doc = {}
    root = (doc.get('data-root') or doc.get('graph')) if isinstance(doc, dict) else None
    return root if isinstance(root, str) and root.startswith('/') else DEFAULT_DATA_ROOT


def state_ids(client, proc_root='/proc'):
    """The container ids in the ``containers`` folder of the dockerd behind
    CLIENT's unix socket (its pid from SO_PEERCRED, its data root from its
    argv or daemon.json, seen through its own root): every container it
    knows, running or not, in a few system calls.  Only names that are
    container ids are taken, nothing in the folder is read; [] when anything
    is unknown or there are more than MAX_STATE_IDS."""
    from ansible_collections.hangdoctor.runtime.plugins.module_utils._procfs import (
        Proc,
        ProcError,
        read_regular_file,
    )
    pid = _peer_pid(client.address[1])
    if pid is None:
        return []
    proc = Proc(proc_root)
    try:
        argv = proc.cmdline(pid, 1.0)
    except ProcError:
        return []
    if not argv or os.path.basename(argv[0]) != 'dockerd':
        return []

    def view(path):
        return os.path.join(proc.path(pid, 'root'), path.lstrip('/'))

    def read(path):
        try:
            return read_regular_file(view(path), 1024 * 1024, 1.0)
        except ProcError:
            return None
    try:
        names = os.listdir(view(os.path.join(data_root(argv, read), 'containers')))
    except (IOError, OSError):
        return []
    ids = [n for n in names if _ID_RE.match(n)]
    return ids if len(ids) <= MAX_STATE_IDS else []


def inspect_answers(docker_host, container_id, timeout=DEFAULT_TIMEOUT):
    """Does the engine answer ``GET /containers/<id>/json`` within TIMEOUT
    seconds, all of it (connect, send, answer) under one deadline?

    Returns (True, '') or (True, why) when it gave an HTTP answer (an error
    status such as 404 is still an answer: the container's lock is free),
    (False, why) when it did not answer by the deadline (a full listen
    backlog included), and (None, why) when it cannot tell: nothing listens,
    or the peer closed, reset or spoke something other than HTTP.  One
    unversioned request: no /version round trip first, which would double
    the time a hung engine can take."""
    try:
        client = EngineClient(docker_host, api_version=None, timeout=timeout)
    except EngineError as e:
        return None, str(e)
    path = '/containers/%s/json' % quote(str(container_id), safe='')
    try:
        resp = client.request('GET', path, timeout=timeout)
    except EngineTimeout as e:
        return False, 'inspect of %s did not answer within %ss: %s' % (str(container_id)[:12], timeout, e)
    except EngineUnreachable as e:
        return None, 'docker engine unreachable: %s' % e
    except EngineError as e:
        return None, 'docker engine gave no HTTP answer: %s' % e
    if 200 <= resp.status < 300:
        return True, ''
    msg = resp.body.decode('utf-8', 'replace').strip()
    try:
        found = json.loads(msg).get('message')
        msg = found if isinstance(found, str) else msg
    except (ValueError, AttributeError):
        pass
    return True, 'engine answered HTTP %d %s: %s' % (resp.status, resp.reason, msg[:200])


def _matches(cid, wanted):
    return cid in wanted or any(cid.startswith(w) for w in wanted)


def hung_container_report(docker_host=DEFAULT_DOCKER_HOST, timeout=DEFAULT_TIMEOUT, concurrency=1024,
                          api_version=None, all_states=False, total_timeout=None, proc_root='/proc', wanted=None):
    """Which containers no longer answer inspect: the body of hung_container_info.

    Lists containers once, then inspects all of them concurrently.  The whole
    call returns within TOTAL_TIMEOUT (default ``timeout + 0.5``) seconds of
    starting.  A daemon that does not answer at all is a result
    (``engine.reachable`` false), not an exception.

    dockerd builds the list of a thousand containers in a second on a busy
    node: on a local socket the inspects start meanwhile, for the ids in the
    daemon's own containers folder (:func:`state_ids`), so that a hung
    container's timeout runs from the start, not from the end of the list.
    Only the listed containers are reported.

    WANTED (ids or id prefixes) narrows the report to those containers: only
    they are inspected, and the full ids among them are asked right after the
    version answer, before the list (a container asked for by id gets its
    whole timeout however long the list takes).
    """
    t0 = time.monotonic()
    timeout = float(timeout)
    total = timeout + _deadline.OVERALL_SLACK if total_timeout is None else float(total_timeout)
    deadline = t0 + total
    engine = {'docker_host': docker_host, 'reachable': False, 'version': None, 'api_version': None,
              'list_latency_ms': None, 'error': None}
    report = {'containers': [], 'hung': [], 'unchecked': [], 'engine': engine}
    client = EngineClient(docker_host, api_version=api_version, timeout=timeout)

    def budget():
        return max(0.001, min(timeout, deadline - time.monotonic()))

    try:
        info = client.version(timeout=budget())
        engine['reachable'] = True
        engine['version'] = _text(info.get('Version'))
        engine['api_version'] = client.api_version
    except EngineError as e:
        engine['error'] = str(e)
        report['elapsed_seconds'] = round(time.monotonic() - t0, 3)
        return report
    box = {}
    ready = threading.Event()

    def list_them():
        t1 = time.monotonic()
        try:
            # competing with the inspects on the daemon's CPU: the list may take until the deadline
            box['listed'] = client.containers(all_states=all_states, timeout=max(0.001, deadline - time.monotonic()))
        except EngineError as e:
            box['error'] = e
        box['ms'] = _ms(t1)
        ready.set()

    def find_ids():
        try:
            box['early'] = state_ids(client, proc_root)
        finally:
            if box.get('early'):
                ready.set()

    # the probes start with whichever comes first: the list, or the ids of the
    # daemon's containers folder (a small node's list comes at once)
    th = threading.Thread(target=list_them, name='container-list')
    th.daemon = True
    th.start()
    wanted = set(str(w) for w in wanted or () if w) or None
    by_id = bool(wanted) and all(_ID_RE.match(w) for w in wanted)
    if client.address[0] == 'unix' and not by_id:
        finder = threading.Thread(target=find_ids, name='container-ids')
        finder.daemon = True
        finder.start()
    if by_id:
        early = sorted(wanted)  # known already: asked now, not after the list
    else:
        ready.wait(max(0.0, deadline - time.monotonic()))
        early = box.get('early') if th.is_alive() else None
        if early and wanted:
            early = [cid for cid in early if _matches(cid, wanted)]
    early_probes = None
    if early:
        def more():
            if th.is_alive():
                return None
            return [c['id'] for c in _summaries(box.get('listed') or [])[0]
                    if not wanted or _matches(c['id'], wanted)]

        early_probes = probe_inspect(client, early, timeout, concurrency, deadline=deadline, more=more)
    th.join(max(0.0, deadline - time.monotonic()))
    engine['list_latency_ms'] = box.get('ms')
    if 'listed' not in box:
        engine['error'] = str(box.get('error') or 'GET /containers/json: no answer within the deadline')
        report['elapsed_seconds'] = round(time.monotonic() - t0, 3)
        return report
    listed = box['listed']
    containers, skipped = _summaries(listed)
    if skipped:
        engine['skipped_entries'] = skipped
    if wanted:
        containers = [c for c in containers if _matches(c['id'], wanted)]
    if early_probes is None:
        probes = probe_inspect(client, [c['id'] for c in containers], timeout, concurrency, deadline=deadline)
    else:
        probes = early_probes
    for c in containers:
        c.update(probes.get(c['id']) or {'responsive': None, 'latency_ms': None, 'error': _deadline.NOT_PROBED})
        if c['responsive'] is False:
            report['hung'].append(c['id'])
        elif c['responsive'] is None:
            report['unchecked'].append(c['id'])
    report['containers'] = containers
    report['elapsed_seconds'] = round(time.monotonic() - t0, 3)
    return report
