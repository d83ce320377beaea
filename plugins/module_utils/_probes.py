# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kubernetes probe rules and the exec -> tcpSocket/httpGet/grpc conversion
(private module_utils).

Every exec probe is one ``runc exec`` per period on the node, and ``runc exec``
is where the shim pipe deadlock lives.  This file decides which exec probes
are really network checks, builds the replacement handler, validates the result
against the API server's own probe rules and expresses the change as a guarded
JSON patch (``test`` the container name and the exact exec command, ``remove``
exec, ``add`` the new handler).  A merge patch cannot do this: it would leave
both handlers and the API server rejects a probe with two.

Controller-side logic, but target-compatible: Python 3.6+ and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import datetime
import fnmatch
import json
import math
import os
import re
import shlex
import shutil
import tempfile

try:
    import yaml
    HAS_YAML = True
    YAML_IMPORT_ERROR = None
except ImportError as e:  # PyYAML comes with ansible-core; guard anyway
    HAS_YAML = False
    YAML_IMPORT_ERROR = e

ANNOTATION = 'hangdoctor.runtime/original-exec-probes'
PROBE_FIELDS = (('liveness', 'livenessProbe'), ('readiness', 'readinessProbe'), ('startup', 'startupProbe'))
HANDLERS = ('exec', 'httpGet', 'tcpSocket', 'grpc')
ACTIONS = ('infer', 'tcp', 'http', 'grpc', 'keep')
TIMING_FIELDS = ('initialDelaySeconds', 'timeoutSeconds', 'periodSeconds', 'successThreshold', 'failureThreshold')

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

LOOPBACK_NAMES = ('localhost', 'localhost.localdomain', 'ip6-localhost', '::1', '[::1]')
SHELLS = ('sh', 'bash', 'ash', 'dash', 'busybox')
PUNCTUATION = '();<>|&'
WORDCHARS = ''.join(chr(c) for c in range(33, 127) if chr(c) not in PUNCTUATION + '\'"\\')
IANA_SVC_NAME = re.compile(r'^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$')
HTTP_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
DEV_TCP = re.compile(r'^\s*(?:exec\s+)?(?:(?:echo|true|:|cat)\s*)?(?:\d*<>|\d*>|\d*<)\s*/dev/tcp/([^/\s]+)/([0-9]+)\s*$')
DB_DEFAULT_PORTS = {'pg_isready': 5432, 'redis-cli': 6379, 'mysqladmin': 3306}


class ProbeError(Exception):
    """Bad input (a rule, a definition) that the module reports with fail_json."""


class Refused(Exception):
    """An exec command that is not safely a network check; the message says why."""


class Lossy(Refused):
    """A check that only becomes a port check by losing what it verified."""

    def __init__(self, msg, port):
        super(Lossy, self).__init__(msg)
        self.port = port


# ---- command analysis --------------------------------------------------------

def _basename(word):
    return word.rsplit('/', 1)[-1]


def unwrap_shell(command):
    """Return (argv, script, shell): a ``sh -c SCRIPT`` probe is only accepted
    when SCRIPT is one plain command (no pipes, lists, redirections,
    variables or command substitution), because anything else would be
    dropped silently by the conversion."""
    if not isinstance(command, list) or not command or not all(isinstance(w, str) for w in command):
        raise Refused('exec.command is not a list of strings')
    shell = _basename(command[0])
    if shell == 'busybox' and len(command) > 1 and command[1] in ('sh', 'ash'):
        command = command[1:]
        shell = command[0]
    if shell not in SHELLS:
        return list(command), None, None
    if len(command) != 3 or not re.match(r'^-[a-z]*c$', command[1]):
        raise Refused('shell invocation other than "%s -c SCRIPT"' % shell)
    script = command[2]
    m = DEV_TCP.match(script)
    if m:
        return None, script, shell
    script = script.strip()
    if '$' in script or '`' in script:
        raise Refused('the script uses variables or command substitution')
    if '\n' in script:
        raise Refused('the script has more than one line')
    try:
        lexer = shlex.shlex(script, posix=True, punctuation_chars=PUNCTUATION)
        # whitespace_split only honours punctuation from Python 3.8 on: list
        # the word characters instead, so 3.6 splits the same way
        lexer.wordchars = WORDCHARS
        lexer.commenters = ''
        argv = list(lexer)
    except ValueError as e:
        raise Refused('the script cannot be split into words: %s' % e)
    # unquoted operators come back as tokens made only of punctuation
    operators = [w for w in argv if w and not w.strip('();<>|&')]
    if '&&' in operators or '||' in operators:
        raise Refused('the script is a command list (&&, ||)')
    if '|' in operators:
        raise Refused('the script is a pipeline')
    if operators:
        raise Refused('the script uses shell operators (%s)' % operators[0])
    if argv and argv[0] == 'exec':
        argv = argv[1:]
    if not argv:
        raise Refused('empty script')
    return argv, script, shell


def _is_loopback(host):
    h = host.strip('[]').lower()
    if h in LOOPBACK_NAMES or h == '::1':
        return True
    return bool(re.match(r'^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$', h))


def _loopback_literal(host):
    return '::1' if host.strip('[]') == '::1' else '127.0.0.1'


def _port(text, what):
    if not re.match(r'^[0-9]{1,5}$', text or '') or not 0 < int(text) < 65536:
        raise Refused('%s port %r is not a literal port number' % (what, text))
    return int(text)


def _duration(text):
    """Seconds from curl/wget numbers (``5``, ``2.5``) and Go durations (``5s``, ``500ms``)."""
    m = re.match(r'^([0-9]+(?:\.[0-9]+)?)(ms|s|m)?$', text or '')
    if not m:
        raise Refused('timeout %r is not a literal number' % text)
    value = float(m.group(1)) * {'ms': 0.001, 's': 1, 'm': 60, None: 1}[m.group(2)]
    return max(1, int(math.ceil(value)))


def _options(argv, with_arg, without_arg, tool):
    """Split argv into [(option, value)] and positionals, understanding bundled
    short options (``-fsS``, ``-qO-``) and ``--opt=value``; unknown options
    are refused rather than guessed."""
    opts, args, i = [], [], 0
    while i < len(argv):
        word = argv[i]
        i += 1
        if word.startswith('--') and len(word) > 2:
            name, eq, value = word.partition('=')
            if name in with_arg:
                if not eq:
                    if i >= len(argv):
                        raise Refused('%s option %s has no value' % (tool, name))
                    value = argv[i]
                    i += 1
                opts.append((name, value))
            elif name in without_arg and not eq:
                opts.append((name, None))
            else:
                raise Refused('unsupported %s option %s' % (tool, name))
        elif word.startswith('-') and len(word) > 1:
            j = 1
            while j < len(word):
                flag = '-' + word[j]
                j += 1
                if flag in with_arg:
                    value = word[j:]
                    if not value:
                        if i >= len(argv):
                            raise Refused('%s option %s has no value' % (tool, flag))
                        value = argv[i]
                        i += 1
                    opts.append((flag, value))
                    break
                if flag in without_arg:
                    opts.append((flag, None))
                else:
                    raise Refused('unsupported %s option %s' % (tool, flag))
        else:
            args.append(word)
    return opts, args


def _url(url):
    m = re.match(r'^(https?)://([^/?#]+)(/[^#]*)?$', url or '', re.I)
    if not m:
        raise Refused('%r is not a literal http(s) URL' % url)
    scheme, authority, path = m.group(1).upper(), m.group(2), m.group(3) or '/'
    if '@' in authority:
        raise Refused('the URL carries credentials')
    hm = re.match(r'^(\[[0-9a-fA-F:]+\]|[^:]+)(?::([0-9]+))?$', authority)
    if not hm:
        raise Refused('cannot read host and port from %r' % url)
    host, port = hm.group(1), hm.group(2)
    if not _is_loopback(host):
        raise Refused('host %s is not loopback: the probe checks another endpoint' % host)
    port = _port(port, 'URL') if port else (443 if scheme == 'HTTPS' else 80)
    return scheme, port, path, _loopback_literal(host)


def _header(value, headers):
    name, colon, val = value.partition(':')
    name, val = name.strip(), val.strip()
    if not colon or not name:
        raise Refused('header %r is not "Name: value"' % value)
    if name.lower() in ('authorization', 'proxy-authorization', 'cookie') or 'token' in name.lower() or 'api-key' in name.lower():
        raise Refused('the %s header is a credential: it is never copied into a probe spec' % name)
    headers.append({'name': name, 'value': val})


CURL_ARG = ('-o', '--output', '-m', '--max-time', '--connect-timeout', '-H', '--header', '-w', '--write-out',
            '-X', '--request', '-d', '--data', '--data-raw', '--data-binary', '--data-urlencode', '-F', '--form',
            '-u', '--user', '--unix-socket', '--abstract-unix-socket', '-x', '--proxy', '-E', '--cert', '--cacert',
            '--resolve', '--retry', '-A', '--user-agent', '-b', '--cookie', '--oauth2-bearer')
CURL_FLAG = ('-f', '--fail', '-s', '--silent', '-S', '--show-error', '-k', '--insecure', '-L', '--location',
             '-q', '-v', '--verbose', '-I', '--head', '--fail-with-body', '-4', '-6', '-g', '--globoff', '--no-progress-meter')
WGET_ARG = ('-O', '--output-document', '-T', '--timeout', '--header', '-U', '--user-agent', '--post-data', '--post-file',
            '--body-data', '--method', '--user', '--password', '--http-user', '--http-password', '-t', '--tries',
            '-Y', '--proxy', '-o', '--output-file')
WGET_FLAG = ('-q', '--quiet', '--spider', '--no-check-certificate', '-S', '--server-response', '-4', '-6', '-nv',
             '--no-verbose', '-s')


def _infer_curl(argv):
    opts, args = _options(argv[1:], CURL_ARG, CURL_FLAG, 'curl')
    handler, headers, timeout, warnings = {}, [], None, []
    insecure = fail = False
    for name, value in opts:
        if name in ('-X', '--request'):
            if value.upper() != 'GET':
                raise Refused('curl -X %s: httpGet only sends GET' % value)
        elif name in ('-d', '--data', '--data-raw', '--data-binary', '--data-urlencode', '-F', '--form'):
            raise Refused('curl sends a request body (%s): httpGet only sends GET' % name)
        elif name in ('-u', '--user', '-b', '--cookie', '--oauth2-bearer', '-E', '--cert'):
            raise Refused('curl %s passes credentials: they are never copied into a probe spec' % name)
        elif name in ('--unix-socket', '--abstract-unix-socket'):
            raise Refused('curl talks to a unix socket: the kubelet can only reach TCP ports')
        elif name in ('-x', '--proxy', '--resolve', '--cacert'):
            raise Refused('curl %s changes where or how it connects' % name)
        elif name in ('-H', '--header'):
            _header(value, headers)
        elif name in ('-m', '--max-time', '--connect-timeout'):
            timeout = max(timeout or 0, _duration(value))
        elif name in ('-k', '--insecure'):
            insecure = True
        elif name in ('-f', '--fail', '--fail-with-body'):
            fail = True
        elif name in ('-o', '--output') and value != '/dev/null':
            raise Refused('curl writes the response to %s' % value)
    if len(args) != 1:
        raise Refused('curl needs exactly one literal URL, found %d' % len(args))
    scheme, port, path, host = _url(args[0])
    if insecure and scheme != 'HTTPS':
        raise Refused('curl -k on a plain http URL')
    if not fail:
        warnings.append('curl without --fail passed on any HTTP status; httpGet fails on status >= 400')
    handler = {'host': host, 'path': path, 'port': port}
    if scheme == 'HTTPS':
        handler['scheme'] = 'HTTPS'
    if headers:
        handler['httpHeaders'] = headers
    return 'httpGet', handler, timeout, warnings


def _infer_wget(argv):
    opts, args = _options(argv[1:], WGET_ARG, WGET_FLAG, 'wget')
    headers, timeout = [], None
    for name, value in opts:
        if name in ('--post-data', '--post-file', '--body-data'):
            raise Refused('wget sends a request body: httpGet only sends GET')
        if name == '--method' and value.upper() != 'GET':
            raise Refused('wget --method %s: httpGet only sends GET' % value)
        if name in ('--user', '--password', '--http-user', '--http-password'):
            raise Refused('wget %s passes credentials: they are never copied into a probe spec' % name)
        if name in ('-Y', '--proxy'):
            raise Refused('wget %s changes where it connects' % name)
        if name == '--header':
            _header(value, headers)
        elif name in ('-T', '--timeout'):
            timeout = _duration(value)
        elif name in ('-O', '--output-document', '-o', '--output-file') and value not in ('-', '/dev/null'):
            raise Refused('wget writes to %s' % value)
    if len(args) != 1:
        raise Refused('wget needs exactly one literal URL, found %d' % len(args))
    scheme, port, path, host = _url(args[0])
    handler = {'host': host, 'path': path, 'port': port}
    if scheme == 'HTTPS':
        handler['scheme'] = 'HTTPS'
    if headers:
        handler['httpHeaders'] = headers
    return 'httpGet', handler, timeout, []


def _infer_nc(argv):
    opts, args = _options(argv[1:], ('-w', '-W', '-i'), ('-z', '-v', '-n', '-4', '-6', '-U'), 'nc')
    names = [n for n, dummy in opts]
    if '-U' in names:
        raise Refused('nc -U talks to a unix socket: the kubelet can only reach TCP ports')
    if '-z' not in names:
        raise Refused('nc without -z sends data or waits for input')
    timeout = None
    for name, value in opts:
        if name == '-w':
            timeout = _duration(value)
    if len(args) != 2:
        raise Refused('nc -z needs one host and one literal port')
    if not _is_loopback(args[0]):
        raise Refused('host %s is not loopback: the probe checks another endpoint' % args[0])
    return 'tcpSocket', {'host': _loopback_literal(args[0]), 'port': _port(args[1], 'nc')}, timeout, []


GRPC_TLS = ('-tls', '-tls-ca-cert', '-tls-client-cert', '-tls-client-key', '-tls-no-verify', '-tls-server-name', '-spiffe', '-alts')


def _infer_grpc(argv):
    addr, service, timeout = None, None, None
    i, words = 0, argv[1:]
    while i < len(words):
        word = words[i]
        i += 1
        name, eq, value = word.lstrip('-').partition('=')
        flag = '-' + name
        if not word.startswith('-'):
            raise Refused('unexpected grpc_health_probe argument %r' % word)
        if flag in GRPC_TLS:
            raise Refused('grpc_health_probe %s: kubelet grpc probes cannot use TLS' % flag)
        if flag == '-rpc-header':
            raise Refused('grpc_health_probe -rpc-header may carry credentials')
        if flag in ('-v',):
            continue
        if flag not in ('-addr', '-service', '-connect-timeout', '-rpc-timeout', '-user-agent'):
            raise Refused('unsupported grpc_health_probe option %s' % flag)
        if not eq:
            if i >= len(words):
                raise Refused('grpc_health_probe %s has no value' % flag)
            value = words[i]
            i += 1
        if flag == '-addr':
            addr = value
        elif flag == '-service':
            service = value
        elif flag in ('-connect-timeout', '-rpc-timeout'):
            timeout = max(timeout or 0, _duration(value))
    if not addr:
        raise Refused('grpc_health_probe without -addr')
    host, dummy, port = addr.rpartition(':')
    if host and not _is_loopback(host):
        raise Refused('host %s is not loopback: the probe checks another endpoint' % host)
    handler = {'port': _port(port, 'grpc')}
    if service:
        handler['service'] = service
    return 'grpc', handler, timeout, []


def _db_port(argv):
    """The port of a database ping, or Refused: these check the server
    protocol (and may authenticate); a tcp probe only checks the listener."""
    tool = _basename(argv[0])
    if tool == 'redis-cli' and 'ping' not in [w.lower() for w in argv[1:]]:
        raise Refused('redis-cli without ping')
    if tool == 'mysqladmin' and 'ping' not in argv[1:]:
        raise Refused('mysqladmin without ping')
    host_flag, port_flag = {'pg_isready': ('-h', '-p'), 'redis-cli': ('-h', '-p'), 'mysqladmin': ('-h', '-P')}[tool]
    port = DB_DEFAULT_PORTS[tool]
    host = None
    words = argv[1:]
    for i, word in enumerate(words):
        if (tool == 'redis-cli' and word in ('-a', '--pass', '--user', '--askpass')) or \
                (tool == 'mysqladmin' and (word.startswith('-p') or word.startswith('--password'))) or \
                word.startswith('--password') or word in ('-W',):
            raise Refused('%s passes a password: it is never copied into a probe spec' % tool)
        if word in ('-s', '--socket') or word.startswith('--socket='):
            raise Refused('%s talks to a unix socket: the kubelet can only reach TCP ports' % tool)
        nxt = words[i + 1] if i + 1 < len(words) else None
        if word == port_flag or word == '--port':
            port = _port(nxt, tool)
        elif word.startswith('--port='):
            port = _port(word.split('=', 1)[1], tool)
        elif word in (host_flag, '--host'):
            host = nxt
        elif word.startswith('--host='):
            host = word.split('=', 1)[1]
    if host is not None and not _is_loopback(host):
        raise Refused('host %s is not loopback: the probe checks another endpoint' % host)
    return port


def infer(command, allow_lossy=False):
    """Infer (handler kind, handler, timeout seconds or None, warnings) from an
    exec command, or raise Refused with the reason."""
    argv, script, shell = unwrap_shell(command)
    if argv is None:
        if _basename(shell) != 'bash':
            raise Refused('/dev/tcp is a bash feature; %s -c fails it whatever the port' % shell)
        m = DEV_TCP.match(script)
        if not _is_loopback(m.group(1)):
            raise Refused('host %s is not loopback: the probe checks another endpoint' % m.group(1))
        return 'tcpSocket', {'host': _loopback_literal(m.group(1)), 'port': _port(m.group(2), '/dev/tcp')}, None, []
    tool = _basename(argv[0])
    if tool == 'curl':
        return _infer_curl(argv)
    if tool == 'wget':
        return _infer_wget(argv)
    if tool in ('nc', 'ncat', 'netcat'):
        return _infer_nc(argv)
    if tool == 'grpc_health_probe':
        return _infer_grpc(argv)
    if tool in DB_DEFAULT_PORTS:
        port = _db_port(argv)
        if not allow_lossy:
            raise Lossy('%s checks the database protocol; a tcpSocket probe only checks that port %d accepts '
                        'connections (allow it with a rule: action tcp, or infer with allow_lossy)' % (tool, port), port)
        return 'tcpSocket', {'port': port}, None, ['%s became a tcpSocket check of port %d: the database protocol is no longer checked' % (tool, port)]
    raise Refused('%s is not a known network check' % tool)


# ---- rules ---------------------------------------------------------------------

RULE_KEYS = ('namespace', 'kind', 'workload', 'container', 'probe', 'command', 'action', 'port', 'path',
             'scheme', 'headers', 'service', 'allow_lossy')


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


def decide(probe_kind, command, ctx, rules):
    """Apply the first matching rule.  Returns (action, kind, handler, timeout,
    warnings) or raises Refused."""
    rule = {'action': 'infer'}
    for r in rules:
        if _match(r, ctx):
            rule = r
            break
    action = rule['action']
    if action == 'keep':
        return 'keep', None, None, None, []
    if action == 'infer':
        kind, handler, timeout, warns = infer(command, allow_lossy=bool(rule.get('allow_lossy')))
        return action, kind, handler, timeout, warns
    # explicit actions: the rule's fields win; what the command says fills gaps
    try:
        dummy, guessed, timeout, warns = infer(command, allow_lossy=True)
    except Refused:
        guessed, timeout, warns = {}, None, []
    port = rule.get('port', guessed.get('port'))
    if port is None:
        raise Refused('rule action %s has no port and none can be read from the command' % action)
    port = _rule_port(port)
    if action == 'tcp':
        return action, 'tcpSocket', {'host': guessed.get('host', '127.0.0.1'), 'port': port}, timeout, []
    if action == 'grpc':
        handler = {'port': port}
        if rule.get('service', guessed.get('service')):
            handler['service'] = rule.get('service', guessed.get('service'))
        return action, 'grpc', handler, timeout, []
    handler = {'host': guessed.get('host', '127.0.0.1'), 'path': rule.get('path', guessed.get('path', '/')), 'port': port}
    scheme = str(rule.get('scheme', guessed.get('scheme', 'HTTP'))).upper()
    if scheme != 'HTTP':
        handler['scheme'] = scheme
    headers = rule.get('headers', guessed.get('httpHeaders'))
    if headers:
        for h in headers:
            _header('%s: %s' % (h['name'], h['value']), [])
        handler['httpHeaders'] = [{'name': h['name'], 'value': str(h['value'])} for h in headers]
    return action, 'httpGet', handler, timeout, [w for w in warns if 'curl without --fail' in w]


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


# ---- JSON patch --------------------------------------------------------------

def pointer(*parts):
    return ''.join('/' + str(p).replace('~', '~0').replace('/', '~1') for p in parts)


def _resolve(doc, path):
    parts = [p.replace('~1', '/').replace('~0', '~') for p in path.split('/')[1:]]
    parent = doc
    for p in parts[:-1]:
        parent = parent[int(p)] if isinstance(parent, list) else parent[p]
    return parent, parts[-1]


def apply_patch(doc, patch):
    """Apply an RFC 6902 patch (test/add/remove/replace) to a copy of doc.
    File mode uses the same patch as cluster mode, so what is reviewed is what
    is written.  Raises ProbeError when a test fails."""
    doc = copy.deepcopy(doc)
    for op in patch:
        try:
            parent, key = _resolve(doc, op['path'])
            if isinstance(parent, list):
                key = len(parent) if key == '-' else int(key)
            if op['op'] == 'test':
                if parent[key] != op['value']:
                    raise ProbeError('test failed at %s' % op['path'])
            elif op['op'] == 'remove':
                del parent[key]
            elif op['op'] == 'add':
                if isinstance(parent, list):
                    parent.insert(key, copy.deepcopy(op['value']))
                else:
                    parent[key] = copy.deepcopy(op['value'])
            elif op['op'] == 'replace':
                parent[key]  # pylint: disable=pointless-statement
                parent[key] = copy.deepcopy(op['value'])
            else:
                raise ProbeError('unsupported patch op %s' % op['op'])
        except (KeyError, IndexError, ValueError, TypeError):
            raise ProbeError('patch path %s does not exist' % op['path'])
    return doc


# ---- ownership -------------------------------------------------------------------

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


def convert_object(obj, rules, mode='definitions', min_timeout_seconds=None):
    """Return a report for one object:
    {kind, namespace, name, patch, converted, skipped, kept, warnings}."""
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
                entry['reason'] = immutable
                report['skipped'].append(entry)
                continue
            before = validate_probe(probe, probe_kind, container)
            if before:
                entry['reason'] = 'the current probe is already invalid: %s' % '; '.join(before)
                report['skipped'].append(entry)
                continue
            ctx = {'namespace': namespace, 'kind': kind, 'workload': name, 'container': cname,
                   'probe': probe_kind, 'command_text': ' '.join(shlex.quote(w) for w in command) if isinstance(command, list) else ''}
            try:
                action, hkind, handler, cmd_timeout, warns = decide(probe_kind, command, ctx, rules)
            except Refused as e:
                entry['reason'] = str(e)
                report['skipped'].append(entry)
                continue
            if action == 'keep':
                entry['reason'] = 'kept by rule'
                report['kept'].append(entry)
                continue
            handler = dict(handler)
            # The kubelet connects to host (default: the pod IP) from the node.
            # Only with hostNetwork is the node's loopback the pod's loopback.
            host = handler.pop('host', None)
            if pod_spec.get('hostNetwork') and hkind != 'grpc':
                handler = dict([('host', host or '127.0.0.1')] + list(handler.items()))
            elif pod_spec.get('hostNetwork'):
                warns = list(warns) + ['grpc probes connect to the node IP with hostNetwork: a server bound to loopback only fails them']
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
            errors = validate_probe(new, probe_kind, container)
            if errors:
                entry['reason'] = 'the converted probe would be invalid: %s' % '; '.join(errors)
                report['skipped'].append(entry)
                continue
            base = spec_path + (list_name, index)
            report['patch'].extend([
                {'op': 'test', 'path': pointer(*(base + ('name',))), 'value': cname},
                {'op': 'test', 'path': pointer(*(base + (field, 'exec', 'command'))), 'value': command},
                {'op': 'remove', 'path': pointer(*(base + (field, 'exec')))},
                {'op': 'add', 'path': pointer(*(base + (field, hkind))), 'value': handler},
            ])
            if added_timeout:
                report['patch'].append({'op': 'add', 'path': pointer(*(base + (field, 'timeoutSeconds'))), 'value': added_timeout})
            entry.update({'action': action, 'handler': {hkind: handler}, 'warnings': warns})
            if added_timeout:
                entry['timeoutSeconds'] = added_timeout
            report['converted'].append(entry)
            originals['%s/%s' % (cname, probe_kind)] = probe
            touched.append((cname, field))
            for w in warns:
                report['warnings'].append('%s %s probe: %s' % (cname, probe_kind, w))
    if originals:
        report['patch'].extend(_annotation_ops(obj, originals))
        report['warnings'] = ownership_warnings(obj, spec_path, touched) + report['warnings']
    return report


def _annotation_ops(obj, originals):
    meta = obj.get('metadata') or {}
    annotations = meta.get('annotations')
    record = {}
    current = (annotations or {}).get(ANNOTATION)
    if current:
        try:
            record = json.loads(current)
        except ValueError:
            record = {}
        if not isinstance(record, dict):
            record = {}
    # a second run keeps the first original: that is the probe to restore
    for key, probe in originals.items():
        record.setdefault(key, probe)
    value = json.dumps(record, sort_keys=True, separators=(',', ':'))
    if annotations is None:
        return [{'op': 'add', 'path': '/metadata/annotations', 'value': {ANNOTATION: value}}]
    ops = []
    if current is not None:
        ops.append({'op': 'test', 'path': pointer('metadata', 'annotations', ANNOTATION), 'value': current})
    ops.append({'op': 'add', 'path': pointer('metadata', 'annotations', ANNOTATION), 'value': value})
    return ops


def convert(objects, rules, mode='definitions', min_timeout_seconds=None):
    """Reports for every object of a supported kind, in input order."""
    rules = check_rules(rules)
    out = []
    for obj in objects:
        if not isinstance(obj, dict):
            raise ProbeError('a definition is not an object: %r' % (obj,))
        report = convert_object(obj, rules, mode, min_timeout_seconds)
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
                       'command': e['command'], 'handler': e.get('handler'), 'reason': e.get('reason')}
                if 'file' in r:
                    row['file'] = r['file']
                rows.append(row)
    return rows


# ---- file mode -----------------------------------------------------------------

MARKER = re.compile(r'^---(\s|$)')


def manifest_files(path):
    """The manifest files under path (a file, or a directory walked in sorted
    order; hidden files are skipped like the kubelet skips them)."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise ProbeError('path %s is neither a file nor a directory' % path)
    out = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
        for f in sorted(files):
            if not f.startswith('.') and f.endswith(('.yaml', '.yml')):
                out.append(os.path.join(root, f))
    return out


def split_documents(text):
    """Split YAML text at document markers, keeping every character, so that
    documents this run does not change are written back byte for byte
    (comments included)."""
    segments, current = [], []
    for line in text.splitlines(True):
        if MARKER.match(line) and current:
            segments.append(''.join(current))
            current = []
        current.append(line)
    if current:
        segments.append(''.join(current))
    return segments


if HAS_YAML:
    class _IndentDumper(yaml.SafeDumper):  # pylint: disable=too-many-ancestors
        """Indents sequences under their key, the way most manifests are written."""

        def increase_indent(self, flow=False, indentless=False):
            return super(_IndentDumper, self).increase_indent(flow, False)


def _dump(doc):
    return yaml.dump(doc, Dumper=_IndentDumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=1 << 16)


def _is_trivia(line):
    stripped = line.strip()
    return not stripped or stripped.startswith('#') or stripped == '...'


def _redump(segment, doc):
    lines = segment.splitlines(True)
    head = ''
    if lines and MARKER.match(lines[0]):
        head = '---\n'
        lines = lines[1:]
    lead = []
    while lines and _is_trivia(lines[0]) and lines[0].strip() != '...':
        lead.append(lines.pop(0))
    tail = []
    while lines and _is_trivia(lines[-1]):
        tail.insert(0, lines.pop())
    tail = [t for t in tail if t.strip() != '...']
    body = _dump(doc)
    return head + ''.join(lead) + body + ''.join(tail)


def _load_segments(text):
    """[(segment text, document or None)] or None when splitting at markers
    does not give the same documents as the YAML parser (then the whole file
    is written back from the parsed documents)."""
    whole = [d for d in yaml.safe_load_all(text) if d is not None]
    try:
        pairs = [(seg, yaml.safe_load(seg)) for seg in split_documents(text)]
    except yaml.YAMLError:
        return None
    if [d for dummy, d in pairs if d is not None] != whole:
        return None
    return pairs


def _under(child, parent):
    child, parent = os.path.realpath(child), os.path.realpath(parent)
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


def _write_atomic(path, text):
    st = os.stat(path)
    # a dot-file: the kubelet skips hidden files in a static-pod directory
    fd, tmp = tempfile.mkstemp(prefix='.hangdoctor-', dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(text)
        os.chmod(tmp, st.st_mode & 0o7777)
        try:
            os.chown(tmp, st.st_uid, st.st_gid)
        except OSError:
            pass
        os.rename(tmp, path)
    except Exception:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def convert_files(path, rules, min_timeout_seconds=None, check_mode=False, backup_dir=None):
    """Convert the probes of every manifest under path.  Returns
    (reports, changed files, diffs, backups)."""
    if not HAS_YAML:
        raise ProbeError('PyYAML is required for path')
    rules = check_rules(rules)
    files = manifest_files(path)
    scan_root = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    if backup_dir:
        for f in files:
            if _under(backup_dir, os.path.dirname(os.path.abspath(f))):
                raise ProbeError('backup_dir %s is inside the manifest directory %s: the kubelet would run a backup '
                                 'of a static-pod manifest; choose a directory outside it' % (backup_dir, os.path.dirname(f)))
    reports, changed, diffs, backups = [], [], [], []
    stamp = datetime.datetime.now().strftime('%Y%m%dT%H%M%S')
    for f in files:
        with open(f) as fh:
            text = fh.read()
        try:
            pairs = _load_segments(text)
            docs = list(yaml.safe_load_all(text)) if pairs is None else [d for dummy, d in pairs]
        except yaml.YAMLError as e:
            raise ProbeError('%s is not valid YAML: %s' % (f, e))
        new_docs, touched = list(docs), set()
        for i, doc in enumerate(docs):
            if not isinstance(doc, dict):
                continue
            report = convert_object(doc, rules, 'files', min_timeout_seconds)
            if report is None:
                continue
            report['file'] = f
            report['document'] = i
            if report['patch']:
                new_docs[i] = apply_patch(doc, report['patch'])
                touched.add(i)
            reports.append(report)
        if not touched:
            continue
        if pairs is None:
            new_text = '---\n'.join(_dump(d) for d in new_docs if d is not None)
        else:
            new_text = ''.join(_redump(seg, new_docs[i]) if i in touched else seg for i, (seg, dummy) in enumerate(pairs))
        changed.append(f)
        diffs.append({'before_header': f, 'after_header': f, 'before': text, 'after': new_text})
        if check_mode:
            continue
        if backup_dir:
            rel = os.path.relpath(os.path.abspath(f), os.path.abspath(scan_root))
            dest = os.path.join(backup_dir, '%s.%s.bak' % (rel, stamp))
            if not os.path.isdir(os.path.dirname(dest)):
                os.makedirs(os.path.dirname(dest))
            shutil.copy2(f, dest)
            backups.append(dest)
        _write_atomic(f, new_text)
    return reports, changed, diffs, backups
