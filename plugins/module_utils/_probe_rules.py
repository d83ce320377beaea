# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Conversion rules and the API server's probe rules (private module_utils).

``check_rules`` validates the module's ``rules`` option, ``decide`` applies the
first rule that matches a probe, and ``validate_probe`` reports what the API
server would reject in a probe, so that an invalid probe is never emitted.

Target-compatible: Python 3.6+ and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import fnmatch
import re

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _probe_infer
from ansible_collections.hangdoctor.runtime.plugins.module_utils._probe_errors import ProbeError, Refused

PROBE_FIELDS = (('liveness', 'livenessProbe'), ('readiness', 'readinessProbe'), ('startup', 'startupProbe'))
HANDLERS = ('exec', 'httpGet', 'tcpSocket', 'grpc')
ACTIONS = ('infer', 'tcp', 'http', 'grpc', 'keep')
TIMING_FIELDS = ('initialDelaySeconds', 'timeoutSeconds', 'periodSeconds', 'successThreshold', 'failureThreshold')
IANA_SVC_NAME = re.compile(r'^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$')
HTTP_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


RULE_KEYS = ('namespace', 'kind', 'workload', 'container', 'probe', 'command', 'action', 'port', 'path',
             'scheme', 'headers', 'service', 'allow_lossy', 'allow_stricter', 'allow_undeclared_ports')


def check_rules(rules):
    """Validate and normalise the ``rules`` option; raise ProbeError."""
    out = []
    for n, rule in enumerate(rules or []):
        where = 'rules[%d]' % n
        if not isinstance(rule, dict):
            raise ProbeError('%s is not a dict' % where)
        unknown = sorted(set(rule) - set(RULE_KEYS))
        if unknown:
            raise ProbeError('%s: unknown keys %s (known: %s)' % (where, ', '.join(unknown), ', '.join(RULE_KEYS)))
        r = dict((k, v) for k, v in rule.items() if v is not None)
        r.setdefault('action', 'infer')
        if r['action'] not in ACTIONS:
            raise ProbeError('%s: action %r is not one of %s' % (where, r['action'], ', '.join(ACTIONS)))
        probes = r.get('probe')
        if probes is not None:
            probes = [probes] if isinstance(probes, str) else list(probes)
            bad = [p for p in probes if p not in [k for k, dummy in PROBE_FIELDS]]
            if bad:
                raise ProbeError('%s: probe %s is not liveness, readiness or startup' % (where, ', '.join(map(str, bad))))
            r['probe'] = probes
        if 'command' in r:
            try:
                r['command_re'] = re.compile(r['command'])
            except re.error as e:
                raise ProbeError('%s: command is not a valid regular expression: %s' % (where, e))
        if r['action'] == 'grpc' and 'port' in r and not _int_port(r['port']):
            raise ProbeError('%s: grpc needs a numeric port' % where)
        if 'scheme' in r and str(r['scheme']).upper() not in ('HTTP', 'HTTPS'):
            raise ProbeError('%s: scheme must be HTTP or HTTPS' % where)
        if 'headers' in r:
            if isinstance(r['headers'], dict):
                r['headers'] = [{'name': k, 'value': str(v)} for k, v in r['headers'].items()]
            for h in r['headers']:
                if not isinstance(h, dict) or 'name' not in h or 'value' not in h:
                    raise ProbeError('%s: headers must be a dict or a list of {name, value}' % where)
        out.append(r)
    return out


def _int_port(port):
    return isinstance(port, int) and not isinstance(port, bool) or (isinstance(port, str) and port.isdigit())


def _match(rule, ctx):
    for key in ('namespace', 'kind', 'workload', 'container'):
        if key in rule and not fnmatch.fnmatchcase(ctx[key] or '', str(rule[key])):
            return False
    if 'probe' in rule and ctx['probe'] not in rule['probe']:
        return False
    if 'command_re' in rule and not rule['command_re'].search(ctx['command_text']):
        return False
    return True


def _rule_port(port):
    return int(port) if _int_port(port) else port


def decide(probe_kind, command, ctx, rules, allow_lossy=False, allow_stricter=False):
    """Apply the first matching rule.  Returns (action, kind, handler, timeout,
    warnings, the rule) or raises Refused.  ``ctx['env']`` is the container's
    env, from which the command's variables are read.  ALLOW_LOSSY and
    ALLOW_STRICTER are the defaults a rule's own keys override."""
    rule = {'action': 'infer'}
    for r in rules:
        if _match(r, ctx):
            rule = r
            break
    action = rule['action']
    if action == 'keep':
        return 'keep', None, None, None, [], rule
    env = ctx.get('env')
    if action == 'infer':
        kind, handler, timeout, warns = _probe_infer.infer(
            command, allow_lossy=bool(rule.get('allow_lossy', allow_lossy)), env=env,
            allow_stricter=bool(rule.get('allow_stricter', allow_stricter)))
        return action, kind, handler, timeout, warns, rule
    # explicit actions: the rule's fields win; what the command says fills gaps
    try:
        dummy, guessed, timeout, warns = _probe_infer.infer(command, allow_lossy=True, env=env, allow_stricter=True)
    except Refused:
        guessed, timeout, warns = {}, None, []
    port = rule.get('port', guessed.get('port'))
    if port is None:
        raise Refused('rule action %s has no port and none can be read from the command' % action)
    port = _rule_port(port)
    if action == 'tcp':
        return action, 'tcpSocket', {'host': guessed.get('host', '127.0.0.1'), 'port': port}, timeout, [], rule
    if action == 'grpc':
        handler = {'port': port}
        if rule.get('service', guessed.get('service')):
            handler['service'] = rule.get('service', guessed.get('service'))
        return action, 'grpc', handler, timeout, [], rule
    handler = {'host': guessed.get('host', '127.0.0.1'), 'path': rule.get('path', guessed.get('path', '/')), 'port': port}
    scheme = str(rule.get('scheme', guessed.get('scheme', 'HTTP'))).upper()
    if scheme != 'HTTP':
        handler['scheme'] = scheme
    headers = rule.get('headers', guessed.get('httpHeaders'))
    if headers:
        for h in headers:
            _probe_infer.check_header('%s: %s' % (h['name'], h['value']), [])
        handler['httpHeaders'] = [{'name': h['name'], 'value': str(h['value'])} for h in headers]
    return action, 'httpGet', handler, timeout, [w for w in warns if 'curl without --fail' in w], rule


# ---- validation (the API server's probe rules) ---------------------------------

def validate_probe(probe, probe_kind, container):
    """Errors the API server would report for this probe, as a list of strings."""
    errors = []
    if not isinstance(probe, dict):
        return ['probe is not an object']
    handlers = [h for h in HANDLERS if probe.get(h) is not None]
    if len(handlers) != 1:
        errors.append('must have exactly one handler, has %s' % (', '.join(handlers) or 'none'))
    for f in TIMING_FIELDS:
        v = probe.get(f)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            errors.append('%s must be a non-negative integer' % f)
    if probe_kind in ('liveness', 'startup') and probe.get('successThreshold') not in (None, 1):
        errors.append('successThreshold must be 1 for %s probes' % probe_kind)
    tgps = probe.get('terminationGracePeriodSeconds')
    if tgps is not None:
        if probe_kind == 'readiness':
            errors.append('terminationGracePeriodSeconds is not allowed on readiness probes')
        elif not isinstance(tgps, int) or tgps <= 0:
            errors.append('terminationGracePeriodSeconds must be a positive integer')
    ports = [p.get('name') for p in (container.get('ports') or []) if isinstance(p, dict) and p.get('name')]
    for h in ('httpGet', 'tcpSocket', 'grpc'):
        spec = probe.get(h)
        if spec is None:
            continue
        if not isinstance(spec, dict):
            errors.append('%s must be an object' % h)
            continue
        port = spec.get('port')
        if isinstance(port, bool) or port is None:
            errors.append('%s.port is required' % h)
        elif isinstance(port, int):
            if not 0 < port < 65536:
                errors.append('%s.port %d is not between 1 and 65535' % (h, port))
        elif h == 'grpc':
            errors.append('grpc.port must be a number, not %r' % (port,))
        elif not IANA_SVC_NAME.match(str(port)):
            errors.append('%s.port %r is not a valid port name (IANA_SVC_NAME)' % (h, port))
        elif port not in ports:
            errors.append('%s.port %r is not a named port of container %s' % (h, port, container.get('name')))
        if h == 'httpGet':
            if spec.get('path') is not None and not str(spec['path']).startswith('/'):
                errors.append('httpGet.path must start with /')
            if spec.get('scheme', 'HTTP') not in ('HTTP', 'HTTPS'):
                errors.append('httpGet.scheme must be HTTP or HTTPS')
            for hdr in spec.get('httpHeaders') or []:
                if not isinstance(hdr, dict) or not HTTP_TOKEN.match(str(hdr.get('name', ''))):
                    errors.append('httpGet.httpHeaders name %r is not a valid HTTP header name' % (hdr,))
    ex = probe.get('exec')
    if ex is not None and not (isinstance(ex, dict) and isinstance(ex.get('command'), list)):
        errors.append('exec.command must be a list')
    return errors
