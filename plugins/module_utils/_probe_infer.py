# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What an exec probe command checks (private module_utils).

Reads an exec probe's command the way its shell and tool would (``sh -c``
wrappers, curl/wget/nc/grpc_health_probe options, database pings) and infers
the tcpSocket, httpGet or grpc handler that checks the same thing from the
kubelet, or raises Refused with the reason it does not.

Target-compatible: Python 3.6+ and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import math
import re
import shlex

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _netaddr
from ansible_collections.hangdoctor.runtime.plugins.module_utils._probe_errors import Lossy, Refused

SHELLS = ('sh', 'bash', 'ash', 'dash', 'busybox')
PUNCTUATION = '();<>|&'
WORDCHARS = ''.join(chr(c) for c in range(33, 127) if chr(c) not in PUNCTUATION + '\'"\\')
DEV_TCP = re.compile(r'^\s*(?:exec\s+)?(?:(?:echo|true|:|cat)\s*)?(?:\d*<>|\d*>|\d*<)\s*/dev/tcp/([^/\s]+)/([0-9]+)\s*$')
DB_DEFAULT_PORTS = {'pg_isready': 5432, 'redis-cli': 6379, 'mysqladmin': 3306}

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
    if not _netaddr.is_loopback(host):
        raise Refused('host %s is not loopback: the probe checks another endpoint' % host)
    port = _port(port, 'URL') if port else (443 if scheme == 'HTTPS' else 80)
    return scheme, port, path, _netaddr.loopback_literal(host)


def check_header(value, headers):
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
            check_header(value, headers)
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
            check_header(value, headers)
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
    if not _netaddr.is_loopback(args[0]):
        raise Refused('host %s is not loopback: the probe checks another endpoint' % args[0])
    return 'tcpSocket', {'host': _netaddr.loopback_literal(args[0]), 'port': _port(args[1], 'nc')}, timeout, []


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
    if host and not _netaddr.is_loopback(host):
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
    if host is not None and not _netaddr.is_loopback(host):
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
        if not _netaddr.is_loopback(m.group(1)):
            raise Refused('host %s is not loopback: the probe checks another endpoint' % m.group(1))
        return 'tcpSocket', {'host': _netaddr.loopback_literal(m.group(1)), 'port': _port(m.group(2), '/dev/tcp')}, None, []
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

