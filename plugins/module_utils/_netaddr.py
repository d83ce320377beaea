# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which host names and addresses are the container itself (private module_utils).

One answer for the probe conversion (is the exec probe's target the
container?) and for the listener check (is a socket bound to loopback
only?).  A probe target and a listen address differ on one point only:
connecting to the unspecified address (``0.0.0.0``, ``::``) reaches the
local host, so as a *destination* it is the container itself, while as a
*listen* address it is the wildcard that every interface reaches.

Target-compatible: Python 3.6+ and stdlib only (ipaddress is stdlib from 3.3).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ipaddress
import re
import socket

# Names the container's /etc/hosts (kubelet-managed or distribution default)
# maps to loopback.  Compared case-insensitively, a trailing dot removed.
LOOPBACK_NAMES = frozenset((
    'localhost', 'localhost.localdomain', 'ip6-localhost', 'ip6-loopback',
    'localhost4', 'localhost4.localdomain4', 'localhost6', 'localhost6.localdomain6',
))
# curl and the C library also accept the short forms inet_aton reads: 127.1
_SHORT_V4 = re.compile(r'^[0-9]+(\.[0-9]+){0,3}$')


def parse_ip(host):
    """An ipaddress object for a literal address (``[::1]``, ``::1%lo``,
    ``127.1`` included), None for a name."""
    if not isinstance(host, str):
        return None
    text = host.strip()
    if text.startswith('[') and text.endswith(']'):
        text = text[1:-1]
    text = text.split('%', 1)[0]  # an IPv6 zone does not change the address
    try:
        return ipaddress.ip_address(u'%s' % text)
    except ValueError:
        pass
    if _SHORT_V4.match(text):
        try:
            return ipaddress.ip_address(socket.inet_aton(text))
        except (OSError, ValueError):
            return None
    return None


def _unmapped(addr):
    if addr.version == 6 and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def is_loopback_ip(addr):
    """127.0.0.0/8, ::1 and their v4-mapped forms (``::ffff:127.0.0.1``)."""
    return _unmapped(addr).is_loopback


def is_unspecified_ip(addr):
    """0.0.0.0, :: and ::ffff:0.0.0.0."""
    return _unmapped(addr).is_unspecified


def is_loopback(host):
    """True when HOST (a name or a literal address) is loopback: any spelling
    of 127.0.0.0/8 or ::1, or a loopback name of /etc/hosts."""
    if not isinstance(host, str) or not host.strip():
        return False
    if host.strip().rstrip('.').lower() in LOOPBACK_NAMES:
        return True
    addr = parse_ip(host)
    return addr is not None and is_loopback_ip(addr)


def is_self(host):
    """True when connecting to HOST reaches the container itself: loopback,
    or the unspecified address (Linux connects ``0.0.0.0`` to the local host)."""
    if is_loopback(host):
        return True
    addr = parse_ip(host)
    return addr is not None and is_unspecified_ip(addr)


def loopback_literal(host):
    """The address a host-network probe uses for HOST: ``::1`` for the IPv6
    forms of loopback, ``127.0.0.1`` otherwise."""
    addr = parse_ip(host)
    if addr is not None and addr.version == 6 and addr.ipv4_mapped is None:
        return '::1'
    return '127.0.0.1'
