# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side filters of the eviction guard: which hosts wait for it,
and its verdict per host from kubernetes.core.k8s_info results.  The verdict
itself is decided in module_utils/_policy.py."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _policy


def _host_vars(hostvars, host):
    try:
        return hostvars[host]
    except Exception:  # pylint: disable=broad-except
        # hostvars raises for hosts of later serial batches
        return None


def _host_facts(hostvars, hosts):
    """(host, its hostvars, its ``hangdoctor`` fact or None) for each of HOSTS
    whose hostvars can be read (a host of a later serial batch cannot)."""
    for host in hosts or []:
        hv = _host_vars(hostvars, host)
        if hv is None:
            continue
        yield host, hv, hv.get('hangdoctor') if hasattr(hv, 'get') else None


def guard_targets(hostvars, hosts):
    """[{host, node}] for the HOSTS whose node check asked for the eviction
    guard (``hangdoctor.guard_needed``), or that have no node check at all
    (``--tags guard`` alone shows every host's verdict).  The node's name is
    ``hangdoctor_kube_node_name`` when set, else the name the kubelet uses
    (found on the node), else the inventory name."""
    out = []
    for host, hv, fact in _host_facts(hostvars, hosts):
        if isinstance(fact, dict) and not fact.get('guard_needed'):
            continue
        node = hv.get('hangdoctor_kube_node_name') if hasattr(hv, 'get') else None
        if not node and isinstance(fact, dict):
            node = (fact.get('kubernetes') or {}).get('node_name')
        out.append({'host': host, 'node': str(node or host)})
    return out


def drain_targets(hostvars, hosts):
    """The HOSTS that go through the remediate playbook's rollout batches:
    those whose node check found stuck execs, and those without a node check
    (``--tags guard`` alone still shows their verdicts).  A host whose check
    found nothing to drain is done."""
    out = []
    for host, dummy, fact in _host_facts(hostvars, hosts):
        if isinstance(fact, dict) and not fact.get('stuck_execs'):
            continue
        out.append(host)
    return out


def _result_for(results, host):
    for r in results or []:
        if isinstance(r, dict) and (r.get('item') or {}).get('host') == host:
            return r
    return None


def kube_guard_verdicts(targets, nodes=None, pods=None, allow_pending_deletions=False, fail_closed=True,
                        error=None, now=None):
    """{host: verdict} for the guard TARGETS, from the looped k8s_info results
    NODES and PODS (``register`` of a loop over the targets).  ``error`` gives
    every target the same failed verdict (the guard could not run)."""
    out = {}
    for t in targets or []:
        node_r = _result_for(nodes, t['host'])
        pods_r = _result_for(pods, t['host'])
        err = error
        if err is None and (node_r is None or pods_r is None):
            err = 'no Kubernetes API answer for node %s' % t['node']
        out[t['host']] = _policy.kube_guard(node_r, pods_r, t['node'], allow_pending_deletions, fail_closed,
                                            now=now, error=err)
    return out


def cordon_targets(verdicts, targets):
    """The nodes to cordon before their drain: the guard ran, allows the
    drain, and the node is schedulable now (a node someone else cordoned is
    left as it is, and is never uncordoned by us)."""
    nodes = []
    for t in targets or []:
        v = (verdicts or {}).get(t['host']) or {}
        if v.get('ran') and not v.get('blocked') and v.get('unschedulable') is False:
            nodes.append({'host': t['host'], 'node': t['node']})
    return nodes


def mark_cordoned(verdicts, cordon_results):
    """VERDICTS with ``cordoned: true`` for the hosts whose cordon
    (the registered k8s_drain loop over P(cordon_targets)) succeeded."""
    done = set()
    for r in cordon_results or []:
        if isinstance(r, dict) and not r.get('failed') and isinstance(r.get('item'), dict):
            done.add(r['item'].get('host'))
    out = {}
    for host, v in (verdicts or {}).items():
        out[host] = dict(v, cordoned=host in done)
    return out


def uncordon_targets(hostvars, verdicts):
    """The nodes we cordoned whose drain is verified (the host fact's
    ``verify.ok``); the others stay cordoned, and the report says so."""
    out = []
    for host, v in sorted((verdicts or {}).items()):
        if not v.get('cordoned'):
            continue
        hv = _host_vars(hostvars, host)
        fact = hv.get('hangdoctor') if hv is not None and hasattr(hv, 'get') else None
        verify = (fact or {}).get('verify') if isinstance(fact, dict) else None
        if isinstance(verify, dict) and verify.get('ok'):
            out.append({'host': host, 'node': v.get('node')})
    return out


def kube_guard(node_result, pods_result, node_name=None, allow_pending_deletions=False,
               fail_closed=True, now=None, error=None):
    """The verdict for one node from two kubernetes.core.k8s_info results."""
    return _policy.kube_guard(node_result, pods_result, node_name, allow_pending_deletions, fail_closed, now, error)


def module_available(name):
    """Whether the controller can resolve the module NAME.  A task naming a
    module that is not installed is a parse error that no rescue catches, so
    the guard asks first (kubernetes.core is optional)."""
    try:
        from ansible.plugins.loader import module_loader
        ctx = module_loader.find_plugin_with_context(str(name))
        return bool(ctx.resolved)
    except Exception:  # pylint: disable=broad-except
        return False


class FilterModule(object):
    def filters(self):
        return {
            'guard_targets': guard_targets,
            'drain_targets': drain_targets,
            'kube_guard': kube_guard,
            'kube_guard_verdicts': kube_guard_verdicts,
            'cordon_targets': cordon_targets,
            'mark_cordoned': mark_cordoned,
            'uncordon_targets': uncordon_targets,
            'module_available': module_available,
        }
