# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Written by scripts/gen_option_docs.py from the ENGINE_CHECK group of plugins/module_utils/_options.py:
# change the group there and run the script, never this file.

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):

    # Which container engines a node check asks.
    DOCUMENTATION = r'''
options:
  check_engine:
    description:
      - Ask the container engines which containers no longer answer (Docker's inspect; containerd's pod shims, the
        calls a stuck exec blocks). An engine that is not on the node is skipped and said so.
    type: bool
    default: true
  engines:
    description:
      - Which engines to ask. V(auto) asks every engine present on the node; a list of V(docker) and V(containerd)
        asks those.
    type: list
    elements: str
    default:
      - auto
  engine_required:
    description:
      - Fail when no container engine on the node answers. By default an unreachable or absent engine is a fact
        in the result.
    type: bool
    default: false
  inspect_concurrency:
    description:
      - 'How many inspect requests are in flight at once (Docker; at most half the open-files limit). A request
        in flight costs a socket, no thread: the default lets every container of a large node start its timeout
        at once, so that a hung one is found in one timeout wherever it is in the list. containerd shims are asked
        at most 64 at a time.'
      - Between 1 and 8192.
    type: int
    default: 1024
'''
