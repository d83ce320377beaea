# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Evidence before conversion, and the exec probe inventory (private module_utils).

An exec probe of ``localhost:8080`` runs inside the container; the httpGet or
tcpSocket probe that replaces it connects from the node to the pod IP.  A
declared ``containerPort`` does not prove the server listens there: a chart
can declare the port and configure a loopback-only listener.  Only the live
node can tell.  This module

- reads the loopback listen addresses a container's own command, args and env
  configure (static: the real cause named in the reason, in every mode);
- maps each converted probe of a running workload to one running pod, its
  node and the inventory host of that node (``listener_targets``), so that the
  role can run ``container_listen_info`` there;
- turns what the node saw into the verdict per probe (``apply_evidence``):
  verified, refused because the port is loopback-only or not bound, or
  ``unverified`` (no running pod, node not in the inventory, the check
  failed), which converts only when allowed;
- lists, per node, the containers that run exec probes, how often and with
  what timeout (``exec_probe_inventory``), for the risk advisor.

Target-compatible: Python 3.6+ and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

from ansible_collections.hangdoctor.runtime.plugins.module_utils._probe_rules import PROBE_FIELDS

# ---- loopback listen addresses the container configures ----------------------

LOOPBACK_ADDR = r'(localhost|127(?:\.[0-9]{1,3}){1,3}|\[::1\]|::1)'
# --web.listen-address=127.0.0.1:9090, -bind 127.0.0.1, --metrics-bind-address=localhost:8080,
# --host=127.0.0.1.  Names that say where to connect (--db-host, --server-address) are client
# settings, not listeners: only listen/bind names and the bare host/address/addr count.
LISTEN_FLAG = re.compile(r'^--?((?:[A-Za-z0-9_.-]*(?:listen|bind)[A-Za-z0-9_.-]*)|host|address|addr|ip)(?:=(.*))?$', re.I)
ADDRESS_VALUE = re.compile(r'^(?:[a-z]+://)?' + LOOPBACK_ADDR + r'(?::([0-9]{1,5}))?/?$', re.I)
LISTEN_ENV = re.compile(r'(?i)^(?:.*(?:listen|bind).*|host|address|addr)$')
# cloud_sql_proxy v1: -instances=PROJECT:REGION:INSTANCE=tcp:PORT listens on 127.0.0.1:PORT
# unless an address is given (tcp:0.0.0.0:PORT)
CLOUDSQL_TCP = re.compile(r'=tcp:([0-9]{1,5})(?:,|$)')
HOST_PORT_IN_COMMAND = re.compile(r'(?:localhost|127(?:\.[0-9]{1,3}){1,3}|\[::1\]|0\.0\.0\.0)[:/]([0-9]{1,5})\b')


def loopback_listen_settings(container):
    """[(port or None, setting text)] of the loopback-only listen addresses
    the container's command, args and literal env configure."""
    out = []
    words = [w for w in list(container.get('command') or []) + list(container.get('args') or []) if isinstance(w, str)]
    for i, word in enumerate(words):
        m = LISTEN_FLAG.match(word)
        if m:
            value = m.group(2)
            shown = word
            if value is None and i + 1 < len(words) and not words[i + 1].startswith('-'):
                value = words[i + 1]
                shown = '%s %s' % (word, value)
            vm = ADDRESS_VALUE.match((value or '').strip())
            if vm:
                out.append((int(vm.group(2)) if vm.group(2) else None, shown))
                continue
        if 'cloud_sql_proxy' in ' '.join(words[:1]) or word.startswith('-instances='):
            for port in CLOUDSQL_TCP.findall(word):
                out.append((int(port), '%s (cloud_sql_proxy listens on 127.0.0.1 unless the address is given)' % word))
    for e in container.get('env') or []:
        if not isinstance(e, dict) or not isinstance(e.get('value'), str) or not isinstance(e.get('name'), str):
            continue
        if LISTEN_ENV.search(e['name']):
            vm = ADDRESS_VALUE.match(e['value'].strip())
            if vm:
                out.append((int(vm.group(2)) if vm.group(2) else None, 'env %s=%s' % (e['name'], e['value'])))
    return out


def loopback_setting_for(container, port):
    """The setting text that makes PORT loopback-only, or None.  A setting
    without a port (``--bind-address=127.0.0.1``) applies to every port."""
    for p, text in loopback_listen_settings(container):
        if p is None or p == port:
            return text
    return None


def ports_in_command(command):
    """Ports a command connects to on the container itself (for reasons only)."""
    text = ' '.join(w for w in command if isinstance(w, str)) if isinstance(command, list) else ''
    return sorted(set(int(p) for p in HOST_PORT_IN_COMMAND.findall(text)))


# ---- pods of a workload ---------------------------------------------------------

def _labels_match(selector, labels):
    if not isinstance(selector, dict):
        return False
    match = selector.get('matchLabels') or {}
    if not match and not selector.get('matchExpressions'):
        return False
    for k, v in match.items():
        if labels.get(k) != v:
            return False
    for expr in selector.get('matchExpressions') or []:
        key, op, values = expr.get('key'), expr.get('operator'), expr.get('values') or []
        if op == 'In' and labels.get(key) not in values:
            return False
        if op == 'NotIn' and labels.get(key) in values:
            return False
        if op == 'Exists' and key not in labels:
            return False
        if op == 'DoesNotExist' and key in labels:
            return False
    return True


def _owned_by(pod, kind, name):
    """Whether POD belongs to the workload KIND/NAME through its controller
    owner reference (Deployment -> ReplicaSet NAME-hash, CronJob -> Job NAME-n)."""
    for ref in (pod.get('metadata') or {}).get('ownerReferences') or []:
        rk, rn = ref.get('kind'), ref.get('name') or ''
        if kind in ('StatefulSet', 'DaemonSet', 'ReplicaSet', 'Job') and rk == kind and rn == name:
            return True
        if kind == 'Deployment' and rk == 'ReplicaSet' and rn.startswith(name + '-'):
            return True
        if kind == 'CronJob' and rk == 'Job' and rn.startswith(name + '-'):
            return True
    return False


def workload_pods(obj, pods):
    """Pods of the workload OBJ: same namespace, its controller chain, and
    (when the workload has one) its selector."""
    meta = obj.get('metadata') or {}
    kind, name, namespace = obj.get('kind'), meta.get('name'), meta.get('namespace') or 'default'
    if kind == 'Pod':
        return [p for p in pods if (p.get('metadata') or {}).get('name') == name
                and ((p.get('metadata') or {}).get('namespace') or 'default') == namespace]
    selector = (obj.get('spec') or {}).get('selector')
    out = []
    for p in pods:
        pm = p.get('metadata') or {}
        if (pm.get('namespace') or 'default') != namespace or not _owned_by(p, kind, name):
            continue
        if selector and kind != 'CronJob' and not _labels_match(selector, pm.get('labels') or {}):
            continue
        out.append(p)
    return out


def _container_status(pod, container):
    for list_name in ('containerStatuses', 'initContainerStatuses'):
        for s in (pod.get('status') or {}).get(list_name) or []:
            if isinstance(s, dict) and s.get('name') == container:
                return s
    return None


def _pod_probe_command(pod, container, field):
    for list_name in ('containers', 'initContainers'):
        for c in (pod.get('spec') or {}).get(list_name) or []:
            if isinstance(c, dict) and c.get('name') == container:
                return ((c.get(field) or {}).get('exec') or {}).get('command')
    return None


def _runtime(container_id):
    scheme, sep, cid = (container_id or '').partition('://')
    return (scheme, cid) if sep and cid else (None, None)


RUNTIMES = ('docker', 'containerd')


def probe_key(report, entry):
    return '%s/%s/%s/%s/%s' % (report['kind'], report['namespace'] or '-', report['name'], entry['container'], entry['probe'])


def _numeric_port(handler, container):
    spec = list(handler.values())[0] if isinstance(handler, dict) and handler else {}
    port = spec.get('port')
    if isinstance(port, int) and not isinstance(port, bool):
        return port
    for p in container.get('ports') or []:
        if isinstance(p, dict) and p.get('name') == port and isinstance(p.get('containerPort'), int):
            return p['containerPort']
    return None


def listener_targets(reports, objects, pods, node_hosts):
    """(targets, unverified) for the converted probes of REPORTS.

    targets: one per pod container to check, ``{id, host, node, namespace,
    pod, container, runtime, container_id, ports, probes}``: the role runs
    container_listen_info on ``host`` for ``container_id``.
    unverified: ``{probe key: reason}`` for probes no running pod on an
    inventory node can prove.  NODE_HOSTS maps node names to inventory hosts.
    """
    by_id = {}
    for obj in objects:
        if isinstance(obj, dict):
            meta = obj.get('metadata') or {}
            by_id[(obj.get('kind'), meta.get('namespace'), meta.get('name'))] = obj
    targets, unverified = {}, {}
    for report in reports:
        obj = by_id.get((report['kind'], report['namespace'], report['name']))
        for entry in report['converted']:
            key = probe_key(report, entry)
            field = dict(PROBE_FIELDS)[entry['probe']]
            spec_container = _spec_container(obj, entry['container']) if obj else {}
            port = _numeric_port(entry['handler'], spec_container)
            if port is None:
                unverified[key] = 'the probe\'s port is a name that no container port resolves'
                continue
            candidates = workload_pods(obj, pods) if obj else []
            running = []
            for p in candidates:
                status = _container_status(p, entry['container']) or {}
                if (p.get('status') or {}).get('phase') != 'Running' or not (status.get('state') or {}).get('running'):
                    continue
                if _pod_probe_command(p, entry['container'], field) != entry['command']:
                    continue  # a pod of another revision: its probe is not this one
                running.append((p, status))
            if not running:
                unverified[key] = ('no running pod of %s %s/%s runs this probe in container %s, so no node can show its '
                                   'listener' % (report['kind'], report['namespace'] or '-', report['name'], entry['container']))
                continue
            chosen, outside, unsupported = None, [], []
            for p, status in sorted(running, key=lambda ps: (ps[0].get('metadata') or {}).get('name') or ''):
                node = (p.get('spec') or {}).get('nodeName')
                runtime, cid = _runtime(status.get('containerID'))
                if runtime not in RUNTIMES:
                    unsupported.append('%s (%s)' % ((p.get('metadata') or {}).get('name'), runtime or 'no container id'))
                    continue
                host = node_hosts.get(node)
                if not host:
                    outside.append(node or '?')
                    continue
                chosen = (p, node, host, runtime, cid)
                break
            if chosen is None:
                parts = []
                if outside:
                    parts.append('its running pods are on nodes not in the inventory (%s)' % ', '.join(sorted(set(outside))))
                if unsupported:
                    parts.append('runtime not supported: %s' % ', '.join(unsupported))
                unverified[key] = '; '.join(parts)
                continue
            p, node, host, runtime, cid = chosen
            pm = p.get('metadata') or {}
            tid = '%s/%s/%s' % (pm.get('namespace') or 'default', pm.get('name'), entry['container'])
            t = targets.setdefault(tid, {'id': tid, 'host': host, 'node': node, 'namespace': pm.get('namespace') or 'default',
                                         'pod': pm.get('name'), 'container': entry['container'], 'runtime': runtime,
                                         'container_id': cid, 'ports': [], 'probes': []})
            if port not in t['ports']:
                t['ports'].append(port)
            spec = list(entry['handler'].values())[0]
            # host network: the probe keeps host 127.0.0.1, so a loopback listener answers it
            t['probes'].append({'key': key, 'port': port, 'loopback_ok': bool(spec.get('host'))})
    return sorted(targets.values(), key=lambda t: t['id']), unverified


def _spec_container(obj, name):
    from ansible_collections.hangdoctor.runtime.plugins.module_utils._probes import POD_SPEC_PATHS
    spec = obj
    for part in POD_SPEC_PATHS.get(obj.get('kind'), ()):
        spec = spec.get(part) if isinstance(spec, dict) else None
    for list_name in ('containers', 'initContainers'):
        for c in (spec or {}).get(list_name) or []:
            if isinstance(c, dict) and c.get('name') == name:
                return c
    return {}


def read_evidence(results):
    """{target id: (ports dict or None, error or None, target)} from the
    registered results of the role's container_listen_info loop (each with
    its ``item``), or from rows ``{target, ports, error}``."""
    out = {}
    for r in results or []:
        if not isinstance(r, dict):
            continue
        target = r.get('item') if isinstance(r.get('item'), dict) else r.get('target')
        if not isinstance(target, dict) or not target.get('id'):
            continue
        if r.get('unreachable'):
            out[target['id']] = (None, 'host %s is unreachable: %s' % (target.get('host'), r.get('msg') or ''), target)
            continue
        if r.get('skipped'):
            out[target['id']] = (None, 'the check was skipped', target)
            continue
        if r.get('failed'):
            out[target['id']] = (None, 'container_listen_info failed on %s: %s' % (target.get('host'), r.get('msg') or ''), target)
            continue
        ports, error = r.get('ports'), r.get('error')
        containers = r.get('containers')
        if isinstance(containers, list):
            mine = [c for c in containers if isinstance(c, dict)]
            if not mine:
                error = 'no such container on %s' % target.get('host')
            else:
                ports, error = mine[0].get('ports'), mine[0].get('error')
        out[target['id']] = (ports if isinstance(ports, dict) else None, error, target)
    return out


def verdicts(reports, targets, unverified, evidence, allow_unverified=False):
    """{probe key: (verification, reason, reason kind)} for every converted
    probe of REPORTS, from what the nodes saw (EVIDENCE, see read_evidence).

    The port bound to loopback only, or not bound at all: ``refused``
    (``loopback-only`` / ``not-listening``).  Reachable: ``verified``.  No
    evidence: ``unverified``, refused (kind ``unverified``) unless
    ALLOW_UNVERIFIED, then converted with a warning."""
    by_key = {}
    for t in targets:
        for pr in t['probes']:
            by_key[pr['key']] = (t, pr['port'], pr.get('loopback_ok', False))
    out = {}
    for report in reports:
        for entry in report['converted']:
            key = probe_key(report, entry)
            verdict, reason, kind = _verdict(key, by_key, unverified, evidence)
            if verdict == 'unverified' and allow_unverified:
                kind = None
            elif verdict == 'unverified':
                reason += '; convert it with allow_unverified, or check the listener on the node'

            out[key] = (verdict, reason, kind)
    return out


def _verdict(key, by_key, unverified, evidence):
    if key not in by_key:
        why = unverified.get(key, 'no running pod was checked')
        return 'unverified', 'unverified: %s' % why, 'unverified'
    target, port, loopback_ok = by_key[key]
    ports, error, dummy = evidence.get(target['id'], (None, 'the listener of pod %s was not checked' % target['pod'], None))
    where = 'pod %s on node %s (inventory host %s)' % (target['pod'], target['node'], target['host'])
    if error or ports is None:
        return 'unverified', 'unverified: %s: %s' % (where, error or 'no answer'), 'unverified'
    row = ports.get(str(port)) or {}
    reachable = row.get('reachable_from_node')
    addresses = ', '.join(row.get('addresses') or [])
    if reachable is True or (reachable is False and loopback_ok):
        return 'verified', 'verified: %s listens on port %d on %s%s' % (
            where, port, addresses, ' (host network: the probe connects to 127.0.0.1)' if loopback_ok else ''), None
    if reachable is False:
        return 'refused', ('%s listens on port %d only on %s (loopback): the exec probe passed there, the converted probe '
                           'connects from the node to the pod IP and would fail' % (where, port, addresses)), 'loopback-only'
    return 'refused', ('nothing listens on port %d in %s: the converted probe would fail; the exec probe checks something '
                       'the listener table does not show' % (port, where)), 'not-listening'


# ---- the exec probe inventory ---------------------------------------------------

# the API's defaults for unset probe fields
DEFAULT_PERIOD, DEFAULT_TIMEOUT, DEFAULT_FAILURE = 10, 1, 3


def _exec_probes(container):
    out = []
    for probe_kind, field in PROBE_FIELDS:
        probe = container.get(field)
        if isinstance(probe, dict) and isinstance(probe.get('exec'), dict):
            period = probe.get('periodSeconds') or DEFAULT_PERIOD
            out.append({'probe': probe_kind, 'command': probe['exec'].get('command'),
                        'period_seconds': period, 'timeout_seconds': probe.get('timeoutSeconds') or DEFAULT_TIMEOUT,
                        'failure_threshold': probe.get('failureThreshold') or DEFAULT_FAILURE,
                        'execs_per_minute': round(60.0 / period, 2)})
    return out


def _containers_with_exec(spec):
    for list_name in ('containers', 'initContainers'):
        for c in (spec or {}).get(list_name) or []:
            if not isinstance(c, dict):
                continue
            if list_name == 'initContainers' and c.get('restartPolicy') != 'Always':
                continue
            probes = _exec_probes(c)
            if probes:
                yield c.get('name'), probes


def exec_probe_inventory(pods=None, objects=None, node=None):
    """Per node, the containers that run exec probes: from PODS (cluster
    mode, each pod's ``spec.nodeName``) or, without pods, from the workload
    OBJECTS (manifests), all under NODE (null when unknown).

    Returns [{node, source, containers: [{namespace, pod, kind, name,
    container, probes: [{probe, command, period_seconds, timeout_seconds,
    failure_threshold, execs_per_minute}]}], exec_probes, execs_per_minute}],
    busiest node first."""
    from ansible_collections.hangdoctor.runtime.plugins.module_utils._probes import POD_SPEC_PATHS
    nodes = {}
    if pods is not None:
        for p in pods:
            if not isinstance(p, dict):
                continue
            pm = p.get('metadata') or {}
            owner = [r for r in pm.get('ownerReferences') or [] if isinstance(r, dict) and r.get('controller')]
            for cname, probes in _containers_with_exec(p.get('spec')):
                n = nodes.setdefault((p.get('spec') or {}).get('nodeName'), {'source': 'api', 'containers': []})
                n['containers'].append({'namespace': pm.get('namespace'), 'pod': pm.get('name'),
                                        'kind': owner[0].get('kind') if owner else 'Pod',
                                        'name': owner[0].get('name') if owner else pm.get('name'),
                                        'container': cname, 'probes': probes})
    else:
        for obj in objects or []:
            if not isinstance(obj, dict) or obj.get('kind') not in POD_SPEC_PATHS:
                continue
            spec = obj
            for part in POD_SPEC_PATHS[obj['kind']]:
                spec = spec.get(part) if isinstance(spec, dict) else None
            meta = obj.get('metadata') or {}
            for cname, probes in _containers_with_exec(spec):
                n = nodes.setdefault(node, {'source': 'manifests', 'containers': []})
                n['containers'].append({'namespace': meta.get('namespace'), 'pod': meta.get('name') if obj['kind'] == 'Pod' else None,
                                        'kind': obj['kind'], 'name': meta.get('name'), 'container': cname, 'probes': probes})
    out = []
    for name, n in nodes.items():
        probes = [pr for c in n['containers'] for pr in c['probes']]
        out.append({'node': name, 'source': n['source'], 'containers': n['containers'], 'exec_probes': len(probes),
                    'execs_per_minute': round(sum(pr['execs_per_minute'] for pr in probes), 2)})
    return sorted(out, key=lambda x: (-x['execs_per_minute'], x['node'] or ''))
