# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where the container engines listen by default (private module_utils): one
home for the option defaults and the clients.  Constants only, no imports, so
the standalone clients (_cri, the node-problem-detector plugin) load without
Ansible on a bare Python 3.6 target."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DEFAULT_DOCKER_HOST = 'unix:///var/run/docker.sock'
DEFAULT_CONTAINERD_ADDRESS = '/run/containerd/containerd.sock'
DEFAULT_CONTAINERD_NAMESPACE = 'k8s.io'
