# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Conversion of Kubernetes objects' exec probes (private module_utils).

Every exec probe is one ``runc exec`` per period on the node, and ``runc exec``
is where the shim pipe deadlock lives.  For each object this finds the exec
probes, asks the rules and the inference (_probe_rules, _probe_infer) what
replaces them, checks the result against the API server's probe rules and
expresses the change as a guarded JSON patch (_probe_patch): ``test`` the
container name and the exact exec command, ``remove`` exec, ``add`` the new
handler.  A merge patch cannot do this: it would leave both handlers and the
API server rejects a probe with two.  It also warns when a deploy tool owns
the object and will put the exec probe back.

Target-compatible: Python 3.6+ and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import shlex
from collections import namedtuple

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _probe_evidence
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _probe_patch
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _probe_rules
from ansible_collections.hangdoctor.runtime.plugins.module_utils._probe_errors import ProbeError, Refused
from ansible_collections.hangdoctor.runtime.plugins.module_utils._probe_rules import PROBE_FIELDS

# kind -> path of the pod spec inside the object
POD_SPEC_PATHS = {
    'Deployment': ('spec', 'template', 'spec'),
    'StatefulSet': ('spec', 'template', 'spec'),
    'DaemonSet': ('spec', 'template', 'spec'),
    'ReplicaSet': ('spec', 'template', 'spec'),
    'Job': ('spec', 'template', 'spec'),
    'CronJob': ('spec', 'jobTemplate', 'spec', 'template', 'spec'),
    'Pod': ('spec',),
}
# A Pod's probes and a Job's template cannot be changed through the API.
IMMUTABLE_KINDS = ('Pod', 'Job')

# Deploy tools that re-apply the exec probe from their own source.
OWNER_ANNOTATIONS = (
    ('meta.helm.sh/release-name', 'Helm release %s'),
    ('argocd.argoproj.io/tracking-id', 'Argo CD application (tracking id %s)'),
)
FLUX_PREFIX = 'kustomize.toolkit.fluxcd.io/'
# Field managers that are a person at a terminal, not a tool that re-applies.
MANUAL_MANAGERS = ('kubectl-edit', 'kubectl-patch', 'kubectl-set', 'hangdoctor')


def _owns_probe(fields, spec_path, container, field):
    node = fields
    for part in spec_path:
        node = node.get('f:' + part) if isinstance(node, dict) else None
        if node is None:
            return False
    for list_name in ('containers', 'initContainers'):
        lst = node.get('f:' + list_name) if isinstance(node, dict) else None
        if isinstance(lst, dict):
            entry = lst.get('k:' + json.dumps({'name': container}, separators=(',', ':')))
            if isinstance(entry, dict) and ('f:' + field) in entry:
                return True
    return False


def ownership_warnings(obj, spec_path, touched):
    """Deploy tools that will put the exec probe back at their next sync."""
    meta = obj.get('metadata') or {}
    annotations = meta.get('annotations') or {}
    labels = meta.get('labels') or {}
    out = []
    for key, text in OWNER_ANNOTATIONS:
        if annotations.get(key):
            out.append('managed by %s: the exec probe comes back at the next upgrade or sync; convert it at the source' % (text % annotations[key]))
    if labels.get('app.kubernetes.io/managed-by') == 'Helm' and not annotations.get('meta.helm.sh/release-name'):
        out.append('labelled app.kubernetes.io/managed-by=Helm: convert it in the chart values')
    elif labels.get('heritage') in ('Helm', 'Tiller') and not annotations.get('meta.helm.sh/release-name'):
        # charts written before the app.kubernetes.io labels (Helm 2 wrote Tiller)
        out.append('labelled heritage=%s: rendered by a Helm chart, the exec probe comes back at the next upgrade; '
                   'convert it in the chart values' % labels['heritage'])
    flux = sorted(k for k in list(annotations) + list(labels) if k.startswith(FLUX_PREFIX))
    if flux:
        out.append('managed by Flux (%s): convert it in the Git source' % flux[0])
    managers = set()
    for entry in meta.get('managedFields') or []:
        if not isinstance(entry, dict) or entry.get('manager') in MANUAL_MANAGERS:
            continue
        for container, field in touched:
            if _owns_probe(entry.get('fieldsV1') or {}, spec_path, container, field):
                managers.add('%s (%s)' % (entry.get('manager'), entry.get('operation', '?')))
    if managers:
        out.append('field manager %s owns the probe and will put the exec probe back when it applies again' % ', '.join(sorted(managers)))
    return out


# ---- conversion of one object -------------------------------------------------

def _containers(pod_spec):
    """(list name, index, container) of every container that may carry probes.
    Init containers only do when they are sidecars (restartPolicy Always)."""
    for i, c in enumerate(pod_spec.get('containers') or []):
        if isinstance(c, dict):
            yield 'containers', i, c
    for i, c in enumerate(pod_spec.get('initContainers') or []):
        if isinstance(c, dict) and c.get('restartPolicy') == 'Always':
            yield 'initContainers', i, c


def object_id(obj):
    meta = obj.get('metadata') or {}
    return obj.get('kind'), meta.get('namespace'), meta.get('name')


LISTEN_CAVEAT = ('the kubelet connects to the pod IP, not to loopback: the new probe passes only if port %s '
                 'listens on the pod IP or on all addresses (check it on the node with '
                 'hangdoctor.runtime.container_listen_info or exec_probe_swap_check_listeners)')


def _declared(container, port):
    """Whether PORT (a number or a name) is in the container's ports."""
    for p in container.get('ports') or []:
        if not isinstance(p, dict):
            continue
        if isinstance(port, int) and p.get('containerPort') == port and str(p.get('protocol', 'TCP')).upper() == 'TCP':
            return True
        if isinstance(port, str) and p.get('name') == port:
            return True
    return False


def _skip(report, entry, reason, kind):
    entry['reason'] = reason
    entry['reason_kind'] = kind
    report['skipped'].append(entry)


# Refusals a loopback listen address the container configures explains better.
LOOPBACK_EXPLAINS = ('shell', 'variable', 'unsupported', 'loopback-only', 'stricter')
STATIC_ONLY = 'static rules only: the listener was not checked on a node'


def _loopback_reason(container, port, why):
    setting = _probe_evidence.loopback_setting_for(container, port)
    if setting is None:
        return None
    return ('the container configures a loopback-only listener (%s): port %s answers only inside the pod, so the exec '
            'probe passes and any probe from the node to the pod IP would fail%s' % (setting, port, ('; also: ' + why) if why else ''))


class Allow(namedtuple('Allow', ['undeclared_ports', 'lossy', 'stricter'])):
    """What a conversion may do beyond the safe default (the module's
    allow_undeclared_ports, allow_lossy and allow_stricter)."""


Allow.__new__.__defaults__ = (False, False, False)


def convert_object(obj, rules, mode='definitions', min_timeout_seconds=None, allow_undeclared_ports=False,
                   allow_lossy=False, allow_stricter=False, verdicts=None):
    """Return a report for one object:
    {kind, namespace, name, patch, converted, skipped, kept, warnings}.

    VERDICTS ({probe key: (verification, reason, reason kind)}, see
    _probe_evidence.verdicts) is what the nodes showed of the listeners; a
    probe they refuse is skipped.  Without it every converted probe says
    ``verification: unverified`` (static rules only).

    A port the container does not declare is not converted unless allowed:
    offline there is no telling whether it listens on loopback only (a
    sidecar, an agent), and then the converted probe, which connects to the
    pod IP, fails where the exec probe passed."""
    kind, namespace, name = object_id(obj)
    report = {'api_version': obj.get('apiVersion'), 'kind': kind, 'namespace': namespace, 'name': name, 'patch': [],
              'converted': [], 'skipped': [], 'kept': [], 'warnings': []}
    spec_path = POD_SPEC_PATHS.get(kind)
    if spec_path is None:
        return None
    pod_spec = obj
    for part in spec_path:
        pod_spec = pod_spec.get(part) if isinstance(pod_spec, dict) else None
    if not isinstance(pod_spec, dict):
        return report
    immutable = None
    if mode == 'definitions' and kind in IMMUTABLE_KINDS:
        owners = ['%s/%s' % (o.get('kind'), o.get('name')) for o in (obj.get('metadata') or {}).get('ownerReferences') or []]
        immutable = '%s probes cannot be changed in the API; convert %s' % (
            kind, ('its owner ' + ', '.join(owners)) if owners else 'the manifest it came from')
    elif mode == 'definitions' and kind == 'ReplicaSet':
        owners = ['%s/%s' % (o.get('kind'), o.get('name')) for o in (obj.get('metadata') or {}).get('ownerReferences') or []
                  if o.get('kind') == 'Deployment']
        if owners:
            immutable = 'owned by %s: patching the ReplicaSet makes the Deployment roll a new one; convert the Deployment' % owners[0]
    originals = {}
    touched = []
    for list_name, index, container in _containers(pod_spec):
        cname = container.get('name')
        for probe_kind, field in PROBE_FIELDS:
            probe = container.get(field)
            if not isinstance(probe, dict) or probe.get('exec') is None:
                continue
            command = (probe.get('exec') or {}).get('command')
            entry = {'container': cname, 'probe': probe_kind, 'command': command}
            if immutable:
                _skip(report, entry, immutable, 'immutable')
                continue
            before = _probe_rules.validate_probe(probe, probe_kind, container)
            if before:
                _skip(report, entry, 'the current probe is already invalid: %s' % '; '.join(before), 'invalid')
                continue
            ctx = {'namespace': namespace, 'kind': kind, 'workload': name, 'container': cname, 'env': container.get('env'),
                   'probe': probe_kind,
                   'command_text': ' '.join(shlex.quote(w) for w in command)
                   if isinstance(command, list) and all(isinstance(w, str) for w in command) else ''}
            try:
                action, hkind, handler, cmd_timeout, warns, rule = _probe_rules.decide(
                    probe_kind, command, ctx, rules, allow_lossy=allow_lossy, allow_stricter=allow_stricter)
            except Refused as e:
                if e.kind in LOOPBACK_EXPLAINS:
                    for p in _probe_evidence.ports_in_command(command):
                        reason = _loopback_reason(container, p, str(e))
                        if reason:
                            _skip(report, entry, reason, 'loopback-only')
                            break
                    else:
                        _skip(report, entry, str(e), e.kind)
                    continue
                _skip(report, entry, str(e), e.kind)
                if e.kind == 'never-fails':
                    report['warnings'].append('%s %s probe can never fail: %s' % (cname, probe_kind, e))
                continue
            if action == 'keep':
                entry['reason'] = 'kept by rule'
                report['kept'].append(entry)
                continue
            handler = dict(handler)
            port = handler.get('port')
            # with hostNetwork, tcpSocket and httpGet keep 127.0.0.1; grpc has no host and goes to the node IP
            via_pod_ip = not pod_spec.get('hostNetwork') or hkind == 'grpc'
            loopback = _loopback_reason(container, port, None) if via_pod_ip else None
            if loopback and action == 'infer':
                _skip(report, entry, loopback, 'loopback-only')
                continue
            if loopback:
                warns = list(warns) + [loopback]
            if via_pod_ip and not _declared(container, port):
                allowed = rule.get('allow_undeclared_ports', allow_undeclared_ports)
                if action == 'infer' and not allowed:
                    _skip(report, entry, 'port %s is not declared in the container\'s ports: the exec probe connected to '
                          'loopback, where a server listening on 127.0.0.1 only (a sidecar, an agent) passes it, and the '
                          'converted probe connecting to the pod IP would fail; declare the port, check the listener with '
                          'container_listen_info, or allow it with allow_undeclared_ports' % port, 'loopback-only')
                    continue
                warns = list(warns) + ['port %s is not declared in the container\'s ports: make sure it listens on the pod IP, '
                                       'not on loopback only' % port]
            # The kubelet connects to host (default: the pod IP) from the node.
            # Only with hostNetwork is the node's loopback the pod's loopback.
            host = handler.pop('host', None)
            if pod_spec.get('hostNetwork') and hkind != 'grpc':
                handler = dict([('host', host or '127.0.0.1')] + list(handler.items()))
            elif pod_spec.get('hostNetwork'):
                warns = list(warns) + ['grpc probes connect to the node IP with hostNetwork: a server bound to loopback only fails them']
            caveat = LISTEN_CAVEAT % port if via_pod_ip else None
            if caveat:
                warns = list(warns) + [caveat]
            new = dict((k, v) for k, v in probe.items() if k != 'exec')
            new[hkind] = handler
            added_timeout = None
            if probe.get('timeoutSeconds') is None:
                candidates = [t for t in (cmd_timeout, min_timeout_seconds) if t]
                warns = list(warns) + ['timeoutSeconds was unset: the default of 1s now applies '
                                       '(exec probe timeouts were not enforced before Kubernetes 1.20)%s'
                                       % ('; set to %ds' % max(candidates) if candidates else '')]
                if candidates:
                    added_timeout = max(candidates)
                    new['timeoutSeconds'] = added_timeout
            errors = _probe_rules.validate_probe(new, probe_kind, container)
            if errors:
                _skip(report, entry, 'the converted probe would be invalid: %s' % '; '.join(errors), 'invalid')
                continue
            key = '%s/%s/%s/%s/%s' % (kind, namespace or '-', name, cname, probe_kind)
            if verdicts is None:
                verification, evidence = 'unverified', STATIC_ONLY
            else:
                verification, evidence, vkind = verdicts.get(key, ('unverified', 'unverified: no check was planned', 'unverified'))
                if vkind:
                    entry['verification'] = verification
                    _skip(report, entry, evidence, vkind)
                    continue
                if verification != 'verified':
                    warns = list(warns) + ['converted without evidence of the listener (allow_unverified): %s' % evidence]
            base = spec_path + (list_name, index)
            report['patch'].extend([
                {'op': 'test', 'path': _probe_patch.pointer(*(base + ('name',))), 'value': cname},
                {'op': 'test', 'path': _probe_patch.pointer(*(base + (field, 'exec', 'command'))), 'value': command},
                {'op': 'remove', 'path': _probe_patch.pointer(*(base + (field, 'exec')))},
                {'op': 'add', 'path': _probe_patch.pointer(*(base + (field, hkind))), 'value': handler},
            ])
            if added_timeout:
                report['patch'].append({'op': 'add', 'path': _probe_patch.pointer(*(base + (field, 'timeoutSeconds'))), 'value': added_timeout})
            entry.update({'action': action, 'handler': {hkind: handler}, 'warnings': warns, 'caveat': caveat,
                          'verification': verification, 'evidence': evidence})
            if added_timeout:
                entry['timeoutSeconds'] = added_timeout
            report['converted'].append(entry)
            originals['%s/%s' % (cname, probe_kind)] = probe
            touched.append((cname, field))
            for w in warns:
                if w != caveat:
                    report['warnings'].append('%s %s probe: %s' % (cname, probe_kind, w))
    if originals:
        report['patch'].extend(_probe_patch.annotation_ops(obj, originals))
        report['warnings'] = ownership_warnings(obj, spec_path, touched) + report['warnings']
    return report


def convert(objects, rules, mode='definitions', min_timeout_seconds=None, allow_undeclared_ports=False,
            allow_lossy=False, allow_stricter=False, verdicts=None):
    """Reports for every object of a supported kind, in input order."""
    rules = _probe_rules.check_rules(rules)
    out = []
    for obj in objects:
        if not isinstance(obj, dict):
            raise ProbeError('a definition is not an object: %r' % (obj,))
        report = convert_object(obj, rules, mode, min_timeout_seconds, allow_undeclared_ports=allow_undeclared_ports,
                                allow_lossy=allow_lossy, allow_stricter=allow_stricter, verdicts=verdicts)
        if report is not None:
            out.append(report)
    return out


def flat_report(reports):
    """One row per exec probe: what happened to it and why."""
    rows = []
    for r in reports:
        for result in ('converted', 'skipped', 'kept'):
            for e in r[result]:
                row = {'kind': r['kind'], 'namespace': r['namespace'], 'name': r['name'],
                       'container': e['container'], 'probe': e['probe'], 'result': result,
                       'command': e['command'], 'handler': e.get('handler'), 'reason': e.get('reason'),
                       'reason_kind': e.get('reason_kind'), 'caveat': e.get('caveat'),
                       'verification': e.get('verification'), 'evidence': e.get('evidence')}
                if 'file' in r:
                    row['file'] = r['file']
                rows.append(row)
    return rows
