# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Liveness endpoint of the in-cluster DaemonSets (docs/in-cluster.md).

The DaemonSet's loop touches a heartbeat file after every run (finished,
failed or killed by its per-run timeout).  This answers ``GET /healthz``
with 200 while that file is at most ``--max-age`` seconds old and 503
otherwise (missing, stale, in the future), so the kubelet's httpGet liveness
probe restarts a container whose loop stopped going round.

Why not an exec probe: an exec probe into this pod goes through the same
shim -> runc exec -> runc init path that deadlocks on a sick node; it would
add a stuck exec of our own exactly where we repair them.  The kubelet's
httpGet probe opens a TCP connection to the pod and never enters it.

Stdlib only (Python 3.6+): it runs in the DaemonSets' image next to the loop.
"""

from __future__ import absolute_import, division, print_function

import argparse
import math
import os
import sys
import time

try:
    from http.server import BaseHTTPRequestHandler, HTTPServer
except ImportError:  # pragma: no cover - Python 2 is not supported
    sys.exit('hangdoctor_health.py needs Python 3')


def heartbeat_age(path, now=None):
    """Seconds since PATH was modified, or None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (time.time() if now is None else now) - st.st_mtime


def verdict(path, max_age, now=None):
    """(healthy, one line saying why)."""
    age = heartbeat_age(path, now)
    if age is None:
        return False, 'no heartbeat file %s' % path
    if age < -5:
        return False, 'heartbeat %s is %.0f s in the future' % (path, -age)
    if age > max_age:
        return False, 'heartbeat %s is %.0f s old (limit %.0f s): the loop is not going round' % (path, age, max_age)
    return True, 'heartbeat %.0f s old (limit %.0f s)' % (max(age, 0.0), max_age)


def positive_seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError('not a number: %r' % text)
    # nan and inf would make every heartbeat fresh
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError('must be a finite number of seconds > 0, got %r' % text)
    return value


def port_number(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError('not a port number: %r' % text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError('port must be 1-65535, got %d' % value)
    return value


def make_handler(path, max_age):
    class Handler(BaseHTTPRequestHandler):
        # a client that connects and sends nothing must not keep the probe's
        # next request waiting (single-threaded server)
        timeout = 5

        def do_GET(self):
            if self.path.split('?', 1)[0] != '/healthz':
                code, text = 404, 'not found: ask /healthz'
            else:
                healthy, text = verdict(path, max_age)
                code = 200 if healthy else 503
            data = (text + '\n').encode('utf-8')
            self.send_response(code)
            self.send_header('Content-Type', 'text/plain; charset=utf-8')
            self.send_header('Content-Length', str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            # the kubelet asks every period: keep the pod's log for the runs
            pass

    return Handler


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', 1)[0])
    parser.add_argument('--heartbeat', required=True, help='the file the loop touches after every run')
    parser.add_argument('--max-age', required=True, type=positive_seconds,
                        help='seconds after which the heartbeat is stale (interval + run timeout + margin)')
    parser.add_argument('--port', type=port_number, default=8742)
    parser.add_argument('--address', default='0.0.0.0', help='the pod network: the kubelet probes the pod IP')
    args = parser.parse_args(argv)
    server = HTTPServer((args.address, args.port), make_handler(args.heartbeat, args.max_age))
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
