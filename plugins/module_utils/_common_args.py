# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks of a module's own options and of the host it runs on (private
module_utils).  Options that several modules share live in option groups
(``_options``), with their bounds and checks.

Target-side code: Python 3.6+ syntax and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _options

OptionError = _options.OptionError

# Bounds of options that one module owns (shared ones are in their group).
# name: (lowest, highest, lowest allowed itself).  Upper bounds keep a typo
# (a timeout in milliseconds) from turning a bounded call into one that never
# returns.
BOUNDS = {
    'total_timeout': (0.0, 3600.0, False),
    'max_drains': (0, 1000, True),
    'concurrency': (1, 8192, True),
    'inspect_concurrency': (1, 8192, True),
}


def check_numbers(params, bounds=None):
    """Check every option of PARAMS that has bounds; raise on the first bad one."""
    table = bounds or BOUNDS
    for name in sorted(params):
        if name in table:
            _options.check_number(name, params[name], table[name])


def require_root(what):
    """Unprivileged, every other process's fd/ is unreadable: a scan would find
    nothing and wrongly report that nothing is stuck."""
    if os.geteuid() != 0:
        raise OptionError('%s must run as root: it reads the fds of the shim, runc exec and runc init processes' % what)


def require_fd_access(proc_root, what):
    """Root in a container without CAP_SYS_PTRACE (or with a procfs mounted
    hidepid) cannot read other processes' fd links: a scan would find nothing
    and wrongly say that nothing is stuck.  PID 1 of the procfs is always
    someone else's process: if its fds cannot be listed, refuse."""
    path = os.path.join(proc_root, '1', 'fd')
    try:
        os.listdir(path)
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM):
            raise OptionError('%s cannot read %s (%s): it needs CAP_SYS_PTRACE (in a pod: securityContext '
                              'capabilities add SYS_PTRACE) to see which process holds which pipe' % (what, path, e.strerror))
