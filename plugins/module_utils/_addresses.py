# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where the container engines listen, and whether anything is there
(private module_utils): the ``docker_host`` forms we speak, the containerd
socket path, and the cheap presence test every engine check starts with.

A node that has no dockerd (or no containerd) learns so from one stat here,
without loading that engine's client.  Stdlib only, no Ansible: the
standalone clients load it on a bare Python 3.6 target.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os
import stat

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _defaults
from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import HangdoctorError


class AddressError(HangdoctorError, ValueError):
    """An engine address we cannot use (no scheme, a relative path, TLS, ...)."""


def parse_docker_host(docker_host):
    """('unix', path) or ('tcp', host, port); AddressError for a form we do not speak."""
    if not docker_host or not isinstance(docker_host, str):
        raise AddressError('docker_host must be a non-empty string such as %s' % _defaults.DEFAULT_DOCKER_HOST)
    h = docker_host.strip()
    if h.startswith('/'):
        return ('unix', h)
    if '://' not in h:
        raise AddressError('docker_host %r has no scheme: use unix:///path/to/docker.sock or tcp://host:port' % docker_host)
    scheme, rest = h.split('://', 1)
    scheme = scheme.lower()
    if scheme == 'unix':
        if not rest.startswith('/'):
            raise AddressError('docker_host %r: a unix socket needs an absolute path (unix:///var/run/docker.sock)' % docker_host)
        return ('unix', rest)
    if scheme in ('tcp', 'http'):
        hostport = rest.split('/', 1)[0]
        if hostport.startswith('['):
            end = hostport.find(']')
            if end < 0:
                raise AddressError('docker_host %r: unbalanced [ in IPv6 address' % docker_host)
            host, tail = hostport[1:end], hostport[end + 1:]
            port_text = tail[1:] if tail.startswith(':') else ''
        elif ':' in hostport:
            host, port_text = hostport.rsplit(':', 1)
        else:
            host, port_text = hostport, ''
        if not host:
            raise AddressError('docker_host %r has no host' % docker_host)
        if not port_text:
            port_text = '2375'
        try:
            port = int(port_text)
        except ValueError:
            port = -1
        if not 0 < port < 65536:
            raise AddressError('docker_host %r: bad port %r' % (docker_host, port_text))
        return ('tcp', host, port)
    if scheme in ('https', 'ssh', 'npipe', 'fd'):
        raise AddressError(
            'docker_host %r: %s:// is not supported (no TLS, ssh, named pipes or socket activation); '
            'use a unix socket or plain tcp://, e.g. forward the daemon with '
            'ssh -L /tmp/docker.sock:/var/run/docker.sock HOST and use unix:///tmp/docker.sock' % (docker_host, scheme))
    raise AddressError('docker_host %r: unknown scheme %r' % (docker_host, scheme))


def containerd_socket_path(address):
    """The filesystem path of a containerd ADDRESS (``unix://`` optional)."""
    address = address or _defaults.DEFAULT_CONTAINERD_ADDRESS
    if address.startswith('unix://'):
        address = address[len('unix://'):]
    return address


def socket_missing(path):
    """None when PATH is a socket, else why not (with the errno name)."""
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            return None
        return '%s is not a socket' % path
    except (IOError, OSError) as e:
        return 'no socket at %s: %s (%s)' % (path, os.strerror(e.errno) if e.errno else e,
                                             errno.errorcode.get(e.errno, e.errno))
