# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Written by scripts/gen_option_docs.py from the STACKS group of plugins/module_utils/_options.py:
# change the group there and run the script, never this file.

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):

    # Goroutine stacks of the Go daemons on a hung container's chain.
    DOCUMENTATION = r'''
options:
  capture_stacks:
    description:
      - 'For a hung container, send SIGUSR1 to the Go daemons on its chain (dockerd, containerd, the shim) and keep
        the goroutine dumps they write as evidence (mode 0600, with their SHA-256), parsed and fingerprinted (for
        example C(dockerd: ContainerInspect waits for the container lock held by ContainerExecStart -> containerd
        Exec)).'
      - 'A process is signalled only when C(/proc/PID/status) C(SigCgt) shows that it catches SIGUSR1 (a Go program
        without a handler exits on it, and a dead shim takes its container with it) and when it is proven to be
        one of those daemons: comm and executable name, a root-owned executable, root, the host''s pid and mount
        namespaces, and the same start time right before the signal.'
      - Off by default. A healthy node is never signalled.
    type: bool
    default: false
  stacks_min_interval:
    description:
      - At most one capture per node in this many seconds (a stamp file in O(lock_dir)). V(0) lifts the limit.
      - Between 0 and 2592000.
    type: float
    default: 900
  stacks_timeout:
    description:
      - Seconds to wait for the daemons to write their dumps after the signal.
      - Greater than 0 and at most 120.
    type: float
    default: 5.0
  stacks_max_bytes:
    description:
      - Keep at most this many bytes of one dump in its evidence file (head and tail). V(0) keeps everything. The
        SHA-256, the byte count and the parse always cover the whole dump.
      - Between 0 and 1099511627776.
    type: int
    default: 67108864
  stacks_cmdline_timeout:
    description:
      - Deadline in seconds for reading dockerd's argv (its C(--exec-root)).
      - Greater than 0 and at most 60.
    type: float
    default: 1.0
  stacks_retention_count:
    description:
      - After a capture, keep at most this many goroutine-stack evidence files in O(evidence_dir), removing the
        oldest first. V(0) lifts this bound. Files written by this capture, and files modified in the last hour,
        are never removed.
      - Only regular files named as the capture names them (C(stacks-<kind>-<pid>-<starttime>-<file|log>-<utc stamp>.log))
        are counted or removed; the drain's evidence files have their own bounds (O(evidence_retention_count)).
      - Between 0 and 1000000.
    type: int
    default: 50
  stacks_retention_bytes:
    description:
      - Keep at most this many bytes of goroutine-stack evidence files in O(evidence_dir), removing the oldest first.
        V(0) lifts this bound.
      - Between 0 and 1125899906842624.
    type: int
    default: 1073741824
  stacks_retention_days:
    description:
      - Remove goroutine-stack evidence files older than this many days (after a capture). V(0) lifts this bound.
      - Between 0 and 36500.
    type: int
    default: 30
'''
