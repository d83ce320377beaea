# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Defaults that the option groups (``_options``) and the code behind them
share (private module_utils): where the container engines listen, where the
drain keeps evidence and locks, how much evidence it keeps.  Constants only, no imports, so
the standalone clients (_cri, the node-problem-detector plugin) load without
Ansible on a bare Python 3.6 target."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DEFAULT_DOCKER_HOST = 'unix:///var/run/docker.sock'
DEFAULT_CONTAINERD_ADDRESS = '/run/containerd/containerd.sock'
DEFAULT_CONTAINERD_NAMESPACE = 'k8s.io'
DEFAULT_EVIDENCE_DIR = '/var/log/hangdoctor'
DEFAULT_LOCK_DIR = '/run/hangdoctor'
RETENTION_COUNT = 1000
RETENTION_BYTES = 1024 * 1024 * 1024
RETENTION_DAYS = 30
# Goroutine-stack evidence (stacks-*.log): dumps are large and captures rare.
STACKS_RETENTION_COUNT = 50
STACKS_RETENTION_BYTES = 1024 * 1024 * 1024
STACKS_RETENTION_DAYS = 30
MAX_EVIDENCE_BYTES = 16 * 1024 * 1024
