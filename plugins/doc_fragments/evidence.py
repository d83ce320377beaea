# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Written by scripts/gen_option_docs.py from the EVIDENCE group of plugins/module_utils/_options.py:
# change the group there and run the script, never this file.

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):

    # Where the drain keeps what it reads, and its host-wide locks.
    DOCUMENTATION = r'''
options:
  evidence_dir:
    description:
      - Absolute path of the directory that receives one evidence file per drained pipe, named C(<container12>-<pid>-<starttime>-<utc
        stamp>.log).
      - Created with mode 0700; evidence files are created 0600. Refused with a clear message when it is owned by
        another user or writable by group or others, when a directory on its path is owned by another user or writable
        by others (a sticky one such as C(/tmp) is fine), or when it is a symlink owned by another user. Every component
        is opened without following symlinks, and files are created relative to the opened directory.
      - Bounded by O(evidence_retention_count), O(evidence_retention_bytes) and O(evidence_retention_days).
    type: path
    default: /var/log/hangdoctor
  lock_dir:
    description:
      - Absolute path of the host-wide directory of the per-pipe lock files (C(pipe-<dev>-<inode>.lock)) and the
        done markers, shared by every run on the host whatever its O(evidence_dir).
      - Same ownership and symlink rules as O(evidence_dir). A lock file nobody holds is removed after an hour,
        a done marker once its writer is gone.
    type: path
    default: /run/hangdoctor
  evidence_retention_count:
    description:
      - After draining, keep at most this many evidence files in O(evidence_dir), removing the oldest first. V(0)
        lifts this bound. Files written by this run, and files modified in the last hour (a concurrent run may still
        be writing them), are never removed.
      - Only files named as the drain names them are counted or removed.
      - Between 0 and 10000000.
    type: int
    default: 1000
  evidence_retention_bytes:
    description:
      - Keep at most this many bytes of evidence files in O(evidence_dir), removing the oldest first. V(0) lifts
        this bound.
      - Between 0 and 1125899906842624.
    type: int
    default: 1073741824
  evidence_retention_days:
    description:
      - Remove evidence files older than this many days. V(0) lifts this bound.
      - Between 0 and 36500.
    type: int
    default: 30
  max_evidence_bytes:
    description:
      - Keep at most this many bytes of pipe content per evidence file, the first half and the last half, with the
        number of elided bytes in between. V(0) keeps everything.
      - The byte count and SHA-256 of a drain always cover everything that was read.
      - Between 0 and 1073741824.
    type: int
    default: 16777216
'''
