# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Written by scripts/gen_option_docs.py from the RISK group of plugins/module_utils/_options.py:
# change the group there and run the script, never this file.

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):

    # Options of the node risk advisor.
    DOCUMENTATION = r'''
options:
  risk_checks:
    description:
      - What to check. V(pipe) probes the capacity of the next pipe each engine's shim will create; V(headroom)
        reads every container's pids and memory cgroup; V(versions) runs the runtime's binaries for their versions
        (cached) and matches the advisory table.
    type: list
    elements: str
    default:
      - pipe
      - headroom
      - versions
  pipe_probe_timeout:
    description:
      - Seconds the short-lived child that creates a pipe with an engine's credentials may take.
      - Greater than 0 and at most 60.
    type: float
    default: 2.0
  pids_min_headroom:
    description:
      - 'A container whose pids cgroup has fewer free pids than this is at risk: a new C(runc init) needs a few
        threads inside the container''s cgroups, and its Go runtime aborts when it cannot create them.'
      - Between 0 and 100000.
    type: int
    default: 8
  memory_min_headroom_ratio:
    description:
      - A container whose memory usage leaves less than this fraction of its limit free is at risk.
      - Between 0 and 1.
    type: float
    default: 0.05
  exec_probe_containers:
    description:
      - 'Containers known to run exec probes (for example from the exec_probe_swap inventory): container ids or
        prefixes, container names, C(namespace/pod) or C(namespace/pod/container). Containers with a C(runc exec)
        running now count as such too. They are listed first.'
    type: list
    elements: str
    default: []
  version_timeout:
    description:
      - Seconds one version command (C(runc --version), ...) may take before it is killed.
      - Greater than 0 and at most 60.
    type: float
    default: 3.0
  version_cache:
    description:
      - File (mode 0600) that keeps each binary's version output, keyed on its device, inode, size and mtime, so
        later runs run nothing until a binary changes. Empty turns the cache off.
    type: str
    default: /var/cache/hangdoctor/versions.json
  risk_state_file:
    description:
      - File (mode 0600) that keeps each container's memory cgroup event counters (C(memory.events) C(max), C(oom),
        C(oom_kill); v1 C(memory.failcnt) and C(oom_kill)) from the previous run, so that their growth since then
        is reported and a container whose counters grow is at risk. Empty turns it off (then only counters above
        0 are reported).
    type: str
    default: /var/cache/hangdoctor/risk-state.json
  risk_metrics_file:
    description:
      - File name of the risk metrics in O(metrics_dir) (separate from the stuck-exec metrics file).
    type: str
    default: hangdoctor_risk.prom
  mitigate:
    description:
      - Raise C(fs.pipe-user-pages-soft) to O(pipe_user_pages_soft) when an engine's pipe capacity has collapsed,
        and persist it in O(sysctl_file) (the previous file kept as a backup). Never lowers the value, and leaves
        C(0) (no limit) alone. Supports check mode and diff.
    type: bool
    default: false
  pipe_user_pages_soft:
    description:
      - 'The soft limit O(mitigate=true) sets: pages of pipe buffers a user may hold before its new pipes are cut
        to one or two pages. The default, 65536 pages (256 MiB with 4 KiB pages), is four times the kernel''s default;
        pipe buffers count towards the memory of the cgroup that filled them.'
      - Between 16384 and 2147483647.
    type: int
    default: 65536
  sysctl_file:
    description:
      - Where O(mitigate=true) persists the raised limit (read by C(systemd-sysctl) / C(sysctl --system) at boot).
    type: path
    default: /etc/sysctl.d/90-hangdoctor-pipe.conf
'''
