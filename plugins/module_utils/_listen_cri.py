# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The init pid of a containerd (CRI) container, for container_listen_info
(private module_utils).

A containerd node has no Engine API to inspect.  The v2 task bundle of each
container holds ``init.pid`` (the container's first process, whose network
namespace is the pod's); the bundles are found from the running shims
(_cri.list_tasks).  Nothing is asked of the shim: a shim stuck on the runc
exec deadlock would not answer, and the bundle's file does not need it.

Target-compatible: Python 3.6+ and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _cri
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _procfs
from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import HangdoctorError

MAX_PID_BYTES = 32
PID_READ_TIMEOUT = 1.0


class CriListenError(HangdoctorError):
    """A CRI container id that is unknown, ambiguous, or has no running init."""


def _read_pid(path):
    """The pid in a bundle's ``init.pid``, through the one bounded reader for
    files a workload can touch (regular file, no symlink, size and time
    bounds); None when absent or refused."""
    try:
        raw = _procfs.read_regular_file(path, MAX_PID_BYTES, PID_READ_TIMEOUT)
    except (_procfs.ProcessGone, _procfs.Refused):
        return None
    except _procfs.ProcError as e:
        raise CriListenError(str(e))
    text = raw.decode('ascii', 'replace').strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def container_pid(container_id, address, namespace, proc_root='/proc', tasks=None):
    """(pid, identity dict) of the CRI container CONTAINER_ID (a full id or a
    unique prefix) in containerd at ADDRESS and NAMESPACE."""
    tasks = _cri.list_tasks(address, namespace, proc_root) if tasks is None else tasks
    matches = [t for t in tasks if t['id'] == container_id] or [t for t in tasks if t['id'].startswith(container_id)]
    if not matches:
        raise CriListenError('no containerd task %s in namespace %s at %s' % (container_id, namespace, address))
    if len(matches) > 1:
        raise CriListenError('container id prefix %s is ambiguous (%d tasks)' % (container_id, len(matches)))
    task = matches[0]
    pid = _read_pid(os.path.join(task['bundle'], 'init.pid'))
    if not pid or not os.path.isdir(os.path.join(proc_root, str(pid))):
        raise CriListenError('containerd task %s has no running init process' % task['id'])
    ident = {'container_id': task['id'], 'name': task.get('container_name'), 'pod_namespace': task.get('pod_namespace'),
             'pod_name': task.get('pod_name'), 'pod_container': task.get('container_name')}
    return pid, ident
