# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Written by scripts/gen_option_docs.py from the PROC group of plugins/module_utils/_options.py:
# change the group there and run the script, never this file.

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):

    # Options of the modules that read /proc.
    DOCUMENTATION = r'''
options:
  proc_root:
    description:
      - The procfs to read, for example C(/host/proc) from a privileged pod that mounts the host's C(/proc).
      - Set it once for a play with C(module_defaults) and C(group/hangdoctor.runtime.proc).
    type: path
    default: /proc
  confirm_interval:
    description:
      - Seconds between the two progress samples that confirm a stuck exec (queued bytes and context switches unchanged).
        V(0) skips the second sample.
      - Between 0 and 60.
    type: float
    default: 1.0
  peek_bytes:
    description:
      - How many bytes of the crash dump to copy out of the pipe with C(tee(2)), without consuming them. V(0) turns
        the peek off.
      - Between 0 and 1048576.
    type: int
    default: 4096
'''
