# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Exceptions of the exec probe conversion (private module_utils).

ProbeError is bad input the module reports with fail_json; Refused is an exec
command that is not safely a network check, and its message says why.

Target-compatible: Python 3.6+ and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import HangdoctorError


class ProbeError(HangdoctorError):
    """Bad input (a rule, a definition) that the module reports with fail_json."""


# Why a probe is not converted, as one word a report can group by.
REASON_KINDS = (
    'credential',      # a password, token or key would be copied into the spec
    'udp',             # the kubelet only probes TCP
    'tls',             # client certificates, or TLS the kubelet's probe cannot speak
    'unix-socket',     # the kubelet only reaches TCP ports
    'loopback-only',   # the port is not declared: it may listen on loopback only
    'remote-host',     # the command checks another endpoint, not the container
    'script',          # a script file the module cannot read
    'app-check',       # an application-level check with no network equivalent
    'file-check',      # a file in the container, not an endpoint
    'process-check',   # a process in the container, not an endpoint
    'never-fails',     # the command cannot fail, so the probe checks nothing
    'lossy',           # a database ping: only a rule may turn it into a port check
    'stricter',        # curl without --fail: an httpGet probe would fail where the exec probe passed
    'not-listening',   # cluster mode: nothing listens on the port in the running pod
    'unverified',      # cluster mode: no running pod on an inventory node to check the listener of
    'variable',        # a variable the container env does not set to a literal
    'shell',           # shell syntax the conversion would drop (pipes, lists, ...)
    'unsupported',     # an option or form of a known tool that is not understood
    'invalid',         # the probe or its conversion breaks the API's probe rules
    'immutable',       # the object cannot be changed through the API
)


class Refused(HangdoctorError):
    """An exec command that is not safely a network check; the message says
    why and ``kind`` (one of REASON_KINDS) says it in one word."""

    def __init__(self, msg, kind='unsupported'):
        super(Refused, self).__init__(msg)
        self.kind = kind


class Lossy(Refused):
    """A check that only becomes a port check by losing what it verified."""

    def __init__(self, msg, port):
        super(Lossy, self).__init__(msg, 'lossy')
        self.port = port


class Stricter(Refused):
    """An HTTP check whose exit status ignored the HTTP status (curl without
    --fail): httpGet, which fails on status >= 400, would be stricter, and a
    tcpSocket check only checks the listener.  Carries both alternatives."""

    def __init__(self, msg, handler, port, timeout, warnings):
        super(Stricter, self).__init__(msg, 'stricter')
        self.handler = handler
        self.port = port
        self.timeout = timeout
        self.warnings = warnings
