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


class ProbeError(Exception):
    """Bad input (a rule, a definition) that the module reports with fail_json."""


class Refused(Exception):
    """An exec command that is not safely a network check; the message says why."""


class Lossy(Refused):
    """A check that only becomes a port check by losing what it verified."""

    def __init__(self, msg, port):
        super(Lossy, self).__init__(msg)
        self.port = port

