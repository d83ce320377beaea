# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options that several modules share (private module_utils), defined once.

Each group is documented once in a doc fragment of the same name
(``hangdoctor.runtime.engine``, ``hangdoctor.runtime.proc``) and listed as an
action group in meta/runtime.yml, so ``module_defaults:
group/hangdoctor.runtime.<group>`` sets it for every module that takes it.

Numbers are checked here too: AnsibleModule accepts ``nan`` and ``inf`` as
floats, and ``nan < 0`` is false, so a NaN would pass a plain sign check and
silently turn a guard off; ``inf`` overflows ``settimeout``.

Target-side code: Python 3.6+ syntax and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import math
import os

from ansible.module_utils.basic import env_fallback

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _defaults
from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import HangdoctorError

DEFAULT_DOCKER_HOST = _defaults.DEFAULT_DOCKER_HOST
DEFAULT_CONTAINERD_ADDRESS = _defaults.DEFAULT_CONTAINERD_ADDRESS
DEFAULT_CONTAINERD_NAMESPACE = _defaults.DEFAULT_CONTAINERD_NAMESPACE

# Options of modules that ask a container engine (doc fragment hangdoctor.runtime.engine).
# The task's docker_host wins, then $DOCKER_HOST of the target, then the default.
ENGINE_ARGS = dict(
    docker_host=dict(type='str', default=DEFAULT_DOCKER_HOST, fallback=(env_fallback, ['DOCKER_HOST'])),
    inspect_timeout=dict(type='float', default=5.0),
)

# Options of modules that also ask containerd's pod shims (doc fragment
# hangdoctor.runtime.containerd): a containerd-CRI node has no dockerd.
CONTAINERD_ARGS = dict(
    containerd_address=dict(type='str', default=DEFAULT_CONTAINERD_ADDRESS,
                            fallback=(env_fallback, ['CONTAINERD_ADDRESS'])),
    containerd_namespace=dict(type='str', default=DEFAULT_CONTAINERD_NAMESPACE,
                              fallback=(env_fallback, ['CONTAINERD_NAMESPACE'])),
)

# Options of modules that read /proc (doc fragment hangdoctor.runtime.proc).
PROC_ARGS = dict(
    proc_root=dict(type='path', default='/proc'),
    confirm_interval=dict(type='float', default=1.0),
    peek_bytes=dict(type='int', default=4096),
)


def argument_spec(*groups, **extra):
    """An argument_spec made of shared GROUPS (ENGINE_ARGS, PROC_ARGS) and a
    module's own options; fresh dicts, so no module changes another's spec."""
    spec = {}
    for group in groups:
        for name, opts in group.items():
            spec[name] = dict(opts)
    spec.update(extra)
    return spec


DAY = 86400.0

# name: (lowest, highest, lowest allowed itself).  Upper bounds keep a typo
# (a timeout in milliseconds, an age in minutes * 60 * 60) from turning a
# bounded call into one that never returns.
BOUNDS = {
    'inspect_timeout': (0.0, 600.0, False),
    'timeout': (0.0, 3600.0, False),
    'total_timeout': (0.0, 3600.0, False),
    'drain_timeout': (0.0, 3600.0, False),
    'cmdline_timeout': (0.0, 60.0, False),
    'confirm_interval': (0.0, 60.0, True),
    'min_age_seconds': (0.0, 30 * DAY, True),
    'drain_min_age_seconds': (0.0, 30 * DAY, True),
    'peek_bytes': (0, 1024 * 1024, True),
    'max_evidence_bytes': (0, 1024 * 1024 * 1024, True),
    'max_rounds': (1, 100, True),
    'max_drains': (0, 1000, True),
    'concurrency': (1, 256, True),
    'inspect_concurrency': (1, 256, True),
    # 0 lifts a retention bound
    'evidence_retention_count': (0, 10 ** 7, True),
    'evidence_retention_bytes': (0, 2 ** 50, True),
    'evidence_retention_days': (0, 100 * 365, True),
}


class OptionError(HangdoctorError):
    """An option value the module must refuse; the text names the option."""


def _describe(lo, hi, lo_ok):
    if lo_ok:
        return 'between %s and %s' % (_fmt(lo), _fmt(hi))
    return 'greater than %s and at most %s' % (_fmt(lo), _fmt(hi))


def _fmt(v):
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def check_number(name, value, bounds=None):
    """Raise OptionError unless VALUE is a finite number within the bounds of NAME."""
    if value is None:
        return
    lo, hi, lo_ok = (bounds or BOUNDS)[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OptionError('%s must be a number, got %r' % (name, value))
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        raise OptionError('%s must be a finite number, got %s' % (name, value))
    if value < lo or (value == lo and not lo_ok) or value > hi:
        raise OptionError('%s must be %s, got %s' % (name, _describe(lo, hi, lo_ok), _fmt(value)))


def check_numbers(params, bounds=None):
    """Check every option of PARAMS that has bounds; raise on the first bad one."""
    table = bounds or BOUNDS
    for name in sorted(params):
        if name in table:
            check_number(name, params[name], table)


def container_ids(values):
    """Normalise container ids or id prefixes (hex); raise on anything else."""
    ids = [str(c).strip().lower() for c in (values or []) if c is not None and str(c).strip()]
    bad = [c for c in ids if not all(ch in '0123456789abcdef' for ch in c)]
    if bad:
        raise OptionError('container_ids must be hex container ids or prefixes: %s' % ', '.join(bad))
    return ids


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


def check_containerd_namespace(namespace):
    if not namespace or '/' in namespace:
        raise OptionError('containerd_namespace must be a containerd namespace such as k8s.io, got %r' % (namespace,))
