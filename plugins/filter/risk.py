# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side fleet view of node_risk: how many nodes are at risk of the
pipe deadlock, by reason, from every host's ``hangdoctor_node_risk`` fact."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

REASONS = ('pipe_capacity', 'container_headroom', 'advisory')


def risk_report(hostvars, hosts=None):
    """{'hosts_checked', 'hosts_at_risk', 'by_reason': {reason: [hosts]}, 'hosts': {host: fact}}
    over HOSTVARS (or a dict host -> fact); HOSTS limits it to the play's hosts."""
    facts = {}
    names = hosts if hosts is not None else list(hostvars.keys()) if hasattr(hostvars, 'keys') else []
    for h in names:
        try:
            fact = hostvars[h]['hangdoctor_node_risk']
        except Exception:  # pylint: disable=broad-except
            # no such fact (risk not checked), a host not reached yet (serial), or a plain dict of facts
            fact = None
        if fact is None and isinstance(hostvars, dict) and isinstance(hostvars.get(h), dict) \
                and 'at_risk' in hostvars[h]:
            fact = hostvars[h]
        if isinstance(fact, dict):
            facts[h] = fact
    by_reason = dict((r, sorted(h for h, f in facts.items() if r in (f.get('at_risk') or []))) for r in REASONS)
    return {'hosts_checked': len(facts), 'hosts_at_risk': sum(1 for f in facts.values() if f.get('at_risk')),
            'by_reason': by_reason, 'hosts': facts}


def risk_lines(report):
    """'N nodes at risk' by reason, then one line per node at risk."""
    r = report or {}
    by = r.get('by_reason') or {}
    lines = ['%d of %d node(s) at risk of the pipe deadlock%s' % (
        r.get('hosts_at_risk', 0), r.get('hosts_checked', 0),
        (': ' + ', '.join('%s %d' % (k, len(by[k])) for k in REASONS if by.get(k))) if r.get('hosts_at_risk') else '')]
    for h in sorted(r.get('hosts') or {}):
        f = r['hosts'][h]
        if f.get('at_risk'):
            lines.append('%s: %s' % (h, '; '.join('%s (%s)' % (k, ', '.join((f.get('reasons') or {}).get(k) or [])[:200])
                                                  for k in f['at_risk'])))
    return lines


class FilterModule(object):
    def filters(self):
        return {'risk_report': risk_report, 'risk_lines': risk_lines}
