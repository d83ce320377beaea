# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side filters for people who run the individual modules
(runc_exec_info, hung_container_info, runc_pipe_drain) and want what
node_doctor computes on the node: the host summary, its one-line form, the
drain plan, the advice for a cause and the metrics text.  Thin wrappers over
the module_utils that node_doctor itself uses."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _metrics
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _policy
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _summary


def host_summary(exec_info, hung_info=None, host=None, now=None, engine_skipped=None):
    return _summary.host_summary(exec_info, hung_info, host, now, engine_skipped)


def remediation(summary, drain=None, plan=None, guard=None, verify_exec=None, verify_hung=None):
    return _summary.remediation(summary, drain, plan, guard, verify_exec, verify_hung)


def host_line(summary):
    return _summary.host_line(summary)


def drain_plan(exec_info, min_age_seconds=60, max_drains=1, guard=None, allow=True):
    """EXEC_INFO is runc_exec_info's result or its ``stuck_execs`` list."""
    records = exec_info.get('stuck_execs') if isinstance(exec_info, dict) else exec_info
    return _policy.drain_plan(records, min_age_seconds, max_drains, guard, allow)


def advice(cause):
    return _summary.advice_for(cause)


def prometheus_textfile(summary, previous=None, now=None):
    return _metrics.render(summary, previous, now)


class FilterModule(object):
    def filters(self):
        return {
            'host_summary': host_summary,
            'remediation': remediation,
            'host_line': host_line,
            'drain_plan': drain_plan,
            'advice': advice,
            'prometheus_textfile': prometheus_textfile,
        }
