# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What an exec probe command checks (private module_utils).

Reads an exec probe's command the way the kubelet, the shell and the tool
would (``$(VAR)`` expansion from the container's env, ``sh -c`` wrappers and
their preambles, curl/wget/nc/grpc_health_probe options, database pings) and
infers the tcpSocket, httpGet or grpc handler that checks the same thing from
the kubelet, or raises Refused with the reason it does not and its kind.

Target-compatible: Python 3.6+ and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import math
import re
import shlex

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _netaddr
from ansible_collections.hangdoctor.runtime.plugins.module_utils._probe_errors import Lossy, Refused, Stricter

SHELLS = ('sh', 'bash', 'ash', 'dash', 'zsh', 'busybox')
PUNCTUATION = '();<>|&'
WORDCHARS = ''.join(chr(c) for c in range(33, 127) if chr(c) not in PUNCTUATION + '\'"\\')
DEV_TCP = re.compile(r'^\s*(?:exec\s+)?(?:(?:echo|true|:|cat)\s*)?(?:\d*<>|\d*>|\d*<)\s*(?:/dev/null\s*(?:\d*>|\d*<>)\s*)?'
                     r'/dev/(tcp|udp)/([^/\s]+)/([0-9]+)\s*$')
DB_DEFAULT_PORTS = {'pg_isready': 5432, 'redis-cli': 6379, 'valkey-cli': 6379, 'mysqladmin': 3306, 'mariadb-admin': 3306}
GRPC_TOOLS = ('grpc_health_probe', 'grpc-health-probe')
FILE_TOOLS = ('cat', 'test', '[', 'ls', 'stat', 'find', 'head', 'tail', 'grep')
PROCESS_TOOLS = ('pgrep', 'pidof', 'ps', 'kill', 'jps', 'supervisorctl')
NEVER_FAIL_TOOLS = ('true', ':', 'echo', 'printf')
DNS_TOOLS = ('dig', 'nslookup', 'host', 'drill')
# Refusals that say more than "a variable is not literal": they win over it.
STRONG_KINDS = ('credential', 'udp', 'tls', 'unix-socket', 'remote-host', 'script', 'app-check', 'file-check',
                'process-check', 'never-fails', 'lossy', 'stricter')

# Header names and query parameters that carry a secret.  A probe spec is
# readable by everyone who can read the workload, unlike a Secret.
CREDENTIAL_NAME = (r'authorization|proxy-authorization|cookie|[a-z0-9_-]*api[-_]?key|[a-z0-9_-]*token|'
                   r'[a-z0-9_-]*secret|[a-z0-9_-]*passw(?:or)?d|[a-z0-9_-]*passcode|x-auth[a-z0-9_-]*|[a-z0-9_-]*session')
CREDENTIAL_HEADER = re.compile(r'(?i)(?:^|[\s"\'=])(%s)\s*:' % CREDENTIAL_NAME)
CREDENTIAL_QUERY = re.compile(r'(?i)[?&](%s|key|auth|sig|signature|pass|pwd|code)=' % CREDENTIAL_NAME)
URL_USERINFO = re.compile(r'(?i)\b[a-z][a-z0-9+.-]*://[^/\s@"\']*@')
CREDENTIAL_ENV = re.compile(r'(?i)(passw|pwd|passcode|token|secret|auth|api_?key|credential)')
SCRIPT_VAR = re.compile(r'\$\{?([A-Za-z_][A-Za-z0-9_]*)')
USER_PASSWORD = re.compile(r'(?:^|\s)(?:-u|--user)[\s=]+[\'"]?[^\s:\'"]+:')


def _basename(word):
    return word.rsplit('/', 1)[-1]


# ---- the container's env and the kubelet's $(VAR) expansion -------------------

def literal_env(env):
    """{name: value} of the env entries with a literal value, expanded the
    way the kubelet expands them (earlier entries only); entries from
    secrets, config maps or fields are left out."""
    out = {}
    for e in env or []:
        if not isinstance(e, dict) or not isinstance(e.get('name'), str):
            continue
        value = e.get('value')
        if e.get('valueFrom') is not None or not isinstance(value, str):
            out.pop(e['name'], None)
            continue
        expanded, unresolved = kubelet_expand(value, out)
        if unresolved:
            out.pop(e['name'], None)
        else:
            out[e['name']] = expanded
    return out


def kubelet_expand(text, env):
    """Expand ``$(VAR)`` like the kubelet does in command and args: ``$$`` is
    a literal ``$``, a name the env does not define stays as written.
    Returns (text, set of names left unexpanded)."""
    out, unresolved, i = [], set(), 0
    while i < len(text):
        c = text[i]
        if c == '$' and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == '$':
                out.append('$')
                i += 2
                continue
            if nxt == '(':
                end = text.find(')', i + 2)
                if end != -1:
                    name = text[i + 2:end]
                    if re.match(r'^[A-Za-z_][A-Za-z0-9_.-]*$', name):
                        if name in env:
                            out.append(env[name])
                        else:
                            out.append(text[i:end + 1])
                            unresolved.add(name)
                        i = end + 1
                        continue
        out.append(c)
        i += 1
    return ''.join(out), unresolved


# ---- credentials, wherever they appear -------------------------------------------

def scan_credentials(words):
    """Refuse (kind credential) when any word carries a secret: a credential
    header, a token in a URL query, user info in a URL."""
    for word in words:
        m = CREDENTIAL_HEADER.search(word)
        if m and ':' in word:
            raise Refused('the %s header is a credential: a credential is never copied into a probe spec' % m.group(1),
                          'credential')
        m = CREDENTIAL_QUERY.search(word)
        if m:
            raise Refused('the URL query parameter %s is a credential: a credential is never copied into a probe spec'
                          % m.group(1), 'credential')
        if URL_USERINFO.search(word):
            raise Refused('the URL carries credentials (user info): a credential is never copied into a probe spec',
                          'credential')


# ---- the shell ----------------------------------------------------------------------

def _shell_options(words, shell):
    """Split ``sh [-eux] [-o opt] -c SCRIPT [NAME ARGS...]``: returns
    (script, positional words) or raises Refused."""
    command_mode = False
    i = 0
    while i < len(words) and words[i][:1] in ('-', '+') and len(words[i]) > 1 and words[i] != '--':
        word = words[i]
        i += 1
        if word in ('-o', '+o'):
            if i >= len(words) or words[i] not in ('errexit', 'pipefail', 'nounset', 'xtrace'):
                raise Refused('%s %s %s changes how the shell runs' % (shell, word, words[i] if i < len(words) else ''),
                              'shell')
            i += 1
            continue
        for flag in word[1:]:
            if flag == 'c':
                command_mode = True
            elif flag not in 'eux':
                raise Refused('%s option -%s changes how the shell runs' % (shell, flag), 'shell')
    if i < len(words) and words[i] == '--':
        i += 1
    if i >= len(words):
        raise Refused('%s without a script' % shell, 'shell')
    if not command_mode:
        raise Refused('%s runs the script file %s, which the module cannot read' % (shell, words[i]), 'script')
    return words[i], words[i + 1:]


PREAMBLE = re.compile(r'^(?:set(?:\s+(?:-[eux]+|-[eux]*o\s+(?:errexit|pipefail|nounset|xtrace)))+\s*(?:;|\n|$)\s*)+')
# ``CHECK || exit 1`` fails exactly when CHECK fails
FAIL_TAIL = re.compile(r'\s*\|\|\s*exit(?:\s+[1-9][0-9]*)?\s*;?\s*$')


def strip_preamble(script):
    """Drop what does not change the check: a shebang, comment and blank
    lines, ``set -e``/``set -o pipefail`` statements, line continuations."""
    lines = script.replace('\\\n', ' ').split('\n')
    kept = [ln for ln in lines if ln.strip() and not ln.strip().startswith('#')]
    script = '\n'.join(kept).strip()
    return FAIL_TAIL.sub('', PREAMBLE.sub('', script)).strip()


SHELL_VAR = re.compile(r'\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*)|([0-9@*#?$!-]))')
SAFE_VALUE = re.compile(r'^[A-Za-z0-9._:/@%+=,-]*$')


def _expand_shell(script, env, positional):
    """Substitute ``$VAR``/``${VAR}`` the shell would take from the container
    env, and ``$0``.. from the words after the script, when the value is
    literal and needs no quoting.  Returns (script, unresolved names)."""
    unresolved = set()

    def repl(m):
        name = m.group(1) or m.group(2)
        special = m.group(3)
        if special is not None:
            if special.isdigit() and int(special) < len(positional) and SAFE_VALUE.match(positional[int(special)]):
                return positional[int(special)]
            unresolved.add('$' + special)
            return m.group(0)
        if name in env and SAFE_VALUE.match(env[name]):
            return env[name]
        unresolved.add(name)
        return m.group(0)
    return SHELL_VAR.sub(repl, script), unresolved


def never_fails(script):
    """The reason a shell line can never fail, or None."""
    s = script.strip()
    if re.match(r'^"?\$0"?$', s):
        return 'its only command is $0, the shell itself, which reads no input and exits 0'
    if re.match(r'^(?:true|:|exit(?:\s+0)?)\s*;?$', s):
        return 'its only command is "%s", which exits 0' % s.rstrip(';').strip()
    m = re.search(r'(\|\||;)\s*(true|:|exit\s+0)\s*$', s)
    if m:
        return 'it ends with "%s %s", so it exits 0 whatever the check said' % (m.group(1), m.group(2))
    return None


def unwrap_shell(command, env=None):
    """Return (argv, script, shell, unresolved): a ``sh -c SCRIPT`` probe is
    only accepted when SCRIPT, after its preamble, is one plain command (no
    pipes, lists, redirections or command substitution), because anything
    else would be dropped silently by the conversion."""
    if not isinstance(command, list) or not command or not all(isinstance(w, str) for w in command):
        raise Refused('exec.command is not a list of strings', 'invalid')
    shell = _basename(command[0])
    if shell == 'busybox' and len(command) > 1 and command[1] in ('sh', 'ash'):
        command = command[1:]
        shell = command[0]
    if shell == 'env' and len(command) > 1 and _basename(command[1]) in SHELLS:
        command = command[1:]
        shell = _basename(command[0])
    if shell not in SHELLS:
        return list(command), None, None, set()
    script, positional = _shell_options(command[1:], shell)
    positional = [shell] if not positional else positional
    script = strip_preamble(script)
    if not script:
        raise Refused('the script is empty: the probe can never fail', 'never-fails')
    reason = never_fails(script)
    if reason and not (positional and re.match(r'^"?\$0"?$', script) and positional[0] != shell):
        raise Refused('this probe can never fail: %s' % reason, 'never-fails')
    # a credential anywhere in the script is the reason, whatever else it does
    for name in SCRIPT_VAR.findall(script):
        if CREDENTIAL_ENV.search(name):
            raise Refused('the script uses %s, a credential by its name: a credential is never copied into a probe spec'
                          % name, 'credential')
    if USER_PASSWORD.search(script):
        raise Refused('the script passes user:password (-u/--user): a credential is never copied into a probe spec',
                      'credential')
    script, unresolved = _expand_shell(script, env or {}, positional)
    m = DEV_TCP.match(script)
    if m:
        return None, script, shell, unresolved
    if '$(' in script or '`' in script:
        raise Refused('the script uses command substitution, which the conversion would drop', 'shell')
    if '\n' in script:
        raise Refused('the script has more than one command', 'shell')
    try:
        lexer = shlex.shlex(script, posix=True, punctuation_chars=PUNCTUATION)
        # whitespace_split only honours punctuation from Python 3.8 on: list
        # the word characters instead, so 3.6 splits the same way
        lexer.wordchars = WORDCHARS
        lexer.commenters = ''
        argv = list(lexer)
    except ValueError as e:
        raise Refused('the script cannot be split into words: %s' % e, 'shell')
    # unquoted operators come back as tokens made only of punctuation
    operators = [w for w in argv if w and not w.strip('();<>|&')]
    if '&&' in operators or '||' in operators:
        raise Refused('the script is a command list (&&, ||)', 'shell')
    if '|' in operators:
        raise Refused('the script is a pipeline', 'shell')
    if operators:
        raise Refused('the script uses shell operators (%s)' % operators[0], 'shell')
    if argv and argv[0] == 'exec':
        argv = argv[1:]
    if not argv:
        raise Refused('the script is empty: the probe can never fail', 'never-fails')
    return argv, script, shell, unresolved


# ---- values --------------------------------------------------------------------------

def _port(text, what):
    if not re.match(r'^[0-9]{1,5}$', text or '') or not 0 < int(text) < 65536:
        raise Refused('%s port %r is not a literal port number' % (what, text), 'unsupported')
    return int(text)


def _duration(text):
    """Seconds from curl/wget numbers (``5``, ``2.5``) and Go durations (``5s``, ``500ms``)."""
    m = re.match(r'^([0-9]+(?:\.[0-9]+)?)(ms|s|m)?$', text or '')
    if not m:
        raise Refused('timeout %r is not a literal number' % text, 'unsupported')
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


def _self_host(host):
    if '$' in host:
        raise Refused('host %s is a variable' % host, 'variable')
    if not _netaddr.is_self(host):
        raise Refused('host %s is not the container itself: the probe checks another endpoint' % host, 'remote-host')
    return _netaddr.loopback_literal(host)


def _url(url):
    """(scheme, port, path, loopback literal) of a URL; curl and wget both
    take a URL without a scheme as http."""
    if url and '://' not in url and not url.startswith('/'):
        url = 'http://' + url
    m = re.match(r'^([a-zA-Z][a-zA-Z0-9+.-]*)://([^/?#]*)([/?][^#]*)?$', url or '')
    if not m:
        raise Refused('%r is not a literal http(s) URL' % url, 'unsupported')
    scheme, authority, path = m.group(1).upper(), m.group(2), m.group(3) or '/'
    if scheme not in ('HTTP', 'HTTPS'):
        raise Refused('%s:// is not HTTP: the kubelet probes only HTTP(S), TCP and gRPC' % scheme.lower(), 'app-check')
    if path.startswith('?'):
        path = '/' + path
    if '@' in authority:
        raise Refused('the URL carries credentials (user info): a credential is never copied into a probe spec', 'credential')
    hm = re.match(r'^(\[[0-9a-fA-F:.%a-z]+\]|[^:]+)(?::([0-9]+))?$', authority)
    if not hm:
        raise Refused('cannot read host and port from %r' % url, 'unsupported')
    host, port = hm.group(1), hm.group(2)
    literal = _self_host(host)
    port = _port(port, 'URL') if port else (443 if scheme == 'HTTPS' else 80)
    return scheme, port, path, literal


def check_header(value, headers):
    name, colon, val = value.partition(':')
    name, val = name.strip(), val.strip()
    if not colon or not name:
        raise Refused('header %r is not "Name: value"' % value)
    if re.match(r'(?i)^(%s)$' % CREDENTIAL_NAME, name):
        raise Refused('the %s header is a credential: a credential is never copied into a probe spec' % name, 'credential')
    headers.append({'name': name, 'value': val})


# ---- the tools --------------------------------------------------------------------

CURL_ARG = ('-o', '--output', '-m', '--max-time', '--connect-timeout', '-H', '--header', '-w', '--write-out',
            '-X', '--request', '-d', '--data', '--data-raw', '--data-binary', '--data-urlencode', '-F', '--form',
            '-u', '--user', '--unix-socket', '--abstract-unix-socket', '-x', '--proxy', '-E', '--cert', '--key',
            '--cacert', '--capath', '--resolve', '--retry', '--retry-delay', '--retry-max-time', '-A', '--user-agent',
            '-b', '--cookie', '--oauth2-bearer', '--noproxy')
CURL_FLAG = ('-f', '--fail', '-s', '--silent', '-S', '--show-error', '-k', '--insecure', '-L', '--location',
             '-q', '-v', '--verbose', '-I', '--head', '--fail-with-body', '-4', '-6', '-g', '--globoff', '--no-progress-meter',
             '--http1.1', '--http2', '--compressed', '--fail-early')
WGET_ARG = ('-O', '--output-document', '-T', '--timeout', '--header', '-U', '--user-agent', '--post-data', '--post-file',
            '--body-data', '--method', '--user', '--password', '--http-user', '--http-password', '-t', '--tries',
            '-Y', '--proxy', '-o', '--output-file', '--certificate', '--private-key', '--ca-certificate', '-e')
WGET_FLAG = ('-q', '--quiet', '--spider', '--no-check-certificate', '-S', '--server-response', '-4', '-6', '-nv',
             '--no-verbose', '-s', '--no-proxy')


def _http_handler(url, headers):
    scheme, port, path, host = _url(url)
    handler = {'host': host, 'path': path, 'port': port}
    if scheme == 'HTTPS':
        handler['scheme'] = 'HTTPS'
    if headers:
        handler['httpHeaders'] = headers
    return scheme, handler


def _infer_curl(argv):
    opts, args = _options(argv[1:], CURL_ARG, CURL_FLAG, 'curl')
    headers, timeout, warnings = [], None, []
    insecure = fail = follow = False
    for name, value in opts:
        if name in ('-u', '--user', '-b', '--cookie', '--oauth2-bearer'):
            raise Refused('curl %s passes a credential: a credential is never copied into a probe spec' % name, 'credential')
        if name in ('-E', '--cert', '--key'):
            raise Refused('curl %s presents a client certificate (mTLS): the kubelet cannot' % name, 'tls')
        if name in ('--unix-socket', '--abstract-unix-socket'):
            raise Refused('curl talks to a unix socket: the kubelet can only reach TCP ports', 'unix-socket')
        if name in ('-X', '--request'):
            if value.upper() not in ('GET', 'HEAD'):
                raise Refused('curl -X %s: httpGet only sends GET' % value, 'app-check')
        elif name in ('-d', '--data', '--data-raw', '--data-binary', '--data-urlencode', '-F', '--form'):
            raise Refused('curl sends a request body (%s): httpGet only sends GET' % name, 'app-check')
        elif name in ('-x', '--proxy', '--resolve'):
            raise Refused('curl %s changes where it connects' % name, 'remote-host')
        elif name in ('-H', '--header'):
            check_header(value, headers)
        elif name in ('-m', '--max-time', '--connect-timeout'):
            timeout = max(timeout or 0, _duration(value))
        elif name in ('-k', '--insecure'):
            insecure = True
        elif name in ('-L', '--location'):
            follow = True
        elif name in ('--cacert', '--capath'):
            warnings.append('curl verified the server certificate with %s; the kubelet does not verify it' % name)
        elif name in ('-f', '--fail', '--fail-with-body'):
            fail = True
        elif name in ('-o', '--output') and value != '/dev/null':
            raise Refused('curl writes the response to %s' % value)
    if len(args) != 1:
        raise Refused('curl needs exactly one literal URL, found %d' % len(args))
    scheme, handler = _http_handler(args[0], headers)
    if insecure and scheme != 'HTTPS':
        # -k only matters for TLS: on http it does nothing, unless -L follows a
        # redirect to an https URL, which this command cannot show
        if follow:
            raise Refused('curl -k -L on a plain http URL: -L may follow a redirect to https, where -k skips the '
                          'certificate check, and where the redirect goes is not in the command', 'tls')
        warnings.append('curl -k had no effect on a plain http URL')
    if not fail:
        port = handler['port']
        raise Stricter(
            'curl without --fail (-f, --fail-with-body) exits 0 on any HTTP status: the exec probe only checked that '
            'something answers HTTP on port %d; an httpGet probe fails on status >= 400 and would be stricter (a 401 '
            'or 404 the exec probe accepted would restart or unready the pod), a tcpSocket probe checks less '
            '(allow httpGet with allow_stricter, tcpSocket with allow_lossy)' % port,
            handler, port, timeout=timeout, warnings=warnings)
    return 'httpGet', handler, timeout, warnings


def _infer_wget(argv):
    opts, args = _options(argv[1:], WGET_ARG, WGET_FLAG, 'wget')
    headers, timeout, warnings = [], None, []
    for name, value in opts:
        if name in ('--user', '--password', '--http-user', '--http-password'):
            raise Refused('wget %s passes a credential: a credential is never copied into a probe spec' % name, 'credential')
        if name in ('--certificate', '--private-key'):
            raise Refused('wget %s presents a client certificate (mTLS): the kubelet cannot' % name, 'tls')
        if name in ('--post-data', '--post-file', '--body-data'):
            raise Refused('wget sends a request body: httpGet only sends GET', 'app-check')
        if name == '--method' and value.upper() not in ('GET', 'HEAD'):
            raise Refused('wget --method %s: httpGet only sends GET' % value, 'app-check')
        if name in ('-Y', '--proxy', '-e'):
            raise Refused('wget %s changes where it connects' % name, 'remote-host')
        if name == '--header':
            check_header(value, headers)
        elif name in ('-T', '--timeout'):
            timeout = _duration(value)
        elif name == '--ca-certificate':
            warnings.append('wget verified the server certificate with --ca-certificate; the kubelet does not verify it')
        elif name in ('-O', '--output-document', '-o', '--output-file') and value not in ('-', '/dev/null'):
            raise Refused('wget writes to %s' % value)
    if len(args) != 1:
        raise Refused('wget needs exactly one literal URL, found %d' % len(args))
    dummy, handler = _http_handler(args[0], headers)
    return 'httpGet', handler, timeout, warnings


def _infer_nc(argv):
    opts, args = _options(argv[1:], ('-w', '-W', '-i', '-q'), ('-z', '-v', '-n', '-4', '-6', '-U', '-u', '-t'), 'nc')
    names = [n for n, dummy in opts]
    if '-u' in names:
        raise Refused('nc -u checks a UDP port: the kubelet probes only TCP', 'udp')
    if '-U' in names:
        raise Refused('nc -U talks to a unix socket: the kubelet can only reach TCP ports', 'unix-socket')
    if '-z' not in names:
        raise Refused('nc without -z sends data or waits for input: it checks what the server answers', 'app-check')
    timeout = None
    for name, value in opts:
        if name == '-w':
            timeout = _duration(value)
    if len(args) != 2:
        raise Refused('nc -z needs one host and one literal port')
    return 'tcpSocket', {'host': _self_host(args[0]), 'port': _port(args[1], 'nc')}, timeout, []


GRPC_TLS = ('-tls', '-tls-ca-cert', '-tls-client-cert', '-tls-client-key', '-tls-no-verify', '-tls-server-name', '-spiffe',
            '-alts')
GRPC_WITH_VALUE = ('-addr', '-service', '-connect-timeout', '-conn-timeout', '-rpc-timeout', '-user-agent')


def _infer_grpc(argv):
    tool = _basename(argv[0])
    addr, service, timeout = None, None, None
    i, words = 0, argv[1:]
    while i < len(words):
        word = words[i]
        i += 1
        if not word.startswith('-'):
            raise Refused('unexpected %s argument %r' % (tool, word))
        name, eq, value = word.lstrip('-').partition('=')
        flag = '-' + name
        if flag in GRPC_TLS:
            raise Refused('%s %s uses TLS: kubelet grpc probes connect without TLS' % (tool, flag), 'tls')
        if flag == '-rpc-header':
            raise Refused('%s -rpc-header sends request metadata (often a credential): kubelet grpc probes cannot' % tool,
                          'credential')
        if flag in ('-v', '-gzip'):
            continue
        if flag not in GRPC_WITH_VALUE:
            raise Refused('unsupported %s option %s' % (tool, flag))
        if not eq:
            if i >= len(words):
                raise Refused('%s %s has no value' % (tool, flag))
            value = words[i]
            i += 1
        if flag == '-addr':
            addr = value
        elif flag == '-service':
            service = value
        elif flag in ('-connect-timeout', '-conn-timeout', '-rpc-timeout'):
            timeout = max(timeout or 0, _duration(value))
    if not addr:
        raise Refused('%s without -addr' % tool)
    if addr.startswith('unix:') or addr.startswith('/'):
        raise Refused('%s -addr %s is a unix socket: the kubelet can only reach TCP ports' % (tool, addr), 'unix-socket')
    host, dummy, port = addr.rpartition(':')
    if host:
        _self_host(host)
    handler = {'port': _port(port, 'grpc')}
    if service:
        handler['service'] = service
    return 'grpc', handler, timeout, []


def _db_port(argv):
    """(port, note) of a database ping, or Refused: these check the server
    protocol (and may authenticate); a tcp probe only checks the listener."""
    tool = _basename(argv[0])
    words = argv[1:]
    lower = [w.lower() for w in words]
    if tool in ('redis-cli', 'valkey-cli') and 'ping' not in lower:
        raise Refused('%s without ping runs a command, not a ping' % tool, 'app-check')
    if tool in ('mysqladmin', 'mariadb-admin') and 'ping' not in lower:
        raise Refused('%s %s checks more than the server being up' % (tool, ' '.join(w for w in words if not w.startswith('-'))[:40]),
                      'app-check')
    if tool == 'pg_isready':
        host_flags, port_flags, socket_flags, password_flags = ('-h', '--host'), ('-p', '--port'), (), ()
    elif tool in ('redis-cli', 'valkey-cli'):
        host_flags, port_flags, socket_flags, password_flags = ('-h',), ('-p',), ('-s',), ('-a', '--pass', '--askpass', '--user')
    else:
        # mysqladmin: -s is --silent, -S the socket; -p the password, -P the port
        host_flags, port_flags, socket_flags, password_flags = ('-h', '--host'), ('-P', '--port'), ('-S', '--socket'), ()
    port, host = DB_DEFAULT_PORTS[tool], None
    for i, word in enumerate(words):
        flag, eq, inline = word.partition('=') if word.startswith('--') else (word, '', '')
        nxt = inline if eq else (words[i + 1] if i + 1 < len(words) else None)
        if flag in password_flags or flag.startswith('--password') or \
                (tool in ('mysqladmin', 'mariadb-admin') and word.startswith('-p')):
            raise Refused('%s passes a password: a credential is never copied into a probe spec' % tool, 'credential')
        if tool == 'pg_isready' and flag in ('-d', '--dbname') and nxt and re.search(r'(?i)password=', nxt):
            raise Refused('pg_isready passes a password in its connection string: a credential is never copied into a probe spec',
                          'credential')
        if flag in ('--tls', '--ssl', '--ssl-ca', '--ssl-cert', '--ssl-key'):
            raise Refused('%s %s checks over TLS' % (tool, flag), 'tls')
        if flag in socket_flags:
            raise Refused('%s %s talks to a unix socket: the kubelet can only reach TCP ports' % (tool, flag), 'unix-socket')
        if flag in port_flags:
            port = _port(nxt, tool)
        elif word.startswith('-P') and tool in ('mysqladmin', 'mariadb-admin') and len(word) > 2:
            port = _port(word[2:], tool)
        elif flag in host_flags:
            host = nxt
        elif word.startswith('-h') and len(word) > 2 and not word.startswith('--'):
            host = word[2:]
    note = ''
    if tool == 'pg_isready' and host and host.startswith('/'):
        raise Refused('pg_isready -h %s is a unix socket directory: the kubelet can only reach TCP ports' % host, 'unix-socket')
    if host is not None:
        _self_host(host)
    if tool == 'pg_isready' and host is None:
        note = ' (without -h it checked the unix socket)'
    if tool in ('mysqladmin', 'mariadb-admin') and host in (None, 'localhost'):
        note = ' (with host localhost it checked the unix socket)'
    return port, note


def _classify(tool, argv):
    """The refusal of a command that is not a known network check."""
    if tool in NEVER_FAIL_TOOLS:
        raise Refused('this probe can never fail: %s always exits 0' % tool, 'never-fails')
    if tool in FILE_TOOLS:
        raise Refused('%s checks a file in the container, not a network endpoint' % tool, 'file-check')
    if tool in PROCESS_TOOLS:
        raise Refused('%s checks a process in the container, not a network endpoint' % tool, 'process-check')
    if tool in DNS_TOOLS:
        raise Refused('%s asks a DNS server, over UDP: the kubelet probes only TCP' % tool, 'udp')
    if re.search(r'\.(sh|bash|py|pl|rb|js)$', tool) or (argv[0].startswith(('/', './')) and '.' in tool):
        raise Refused('%s is a script file the module cannot read: what it checks is unknown' % argv[0], 'script')
    raise Refused('%s is an application-level check: no tcpSocket, httpGet or grpc probe checks the same thing' % tool,
                  'app-check')


def _infer_argv(argv, script, shell, allow_lossy, allow_stricter=False):
    if argv is None:
        m = DEV_TCP.match(script)
        if m.group(1) == 'udp':
            raise Refused('/dev/udp checks nothing the kubelet can probe: it probes only TCP', 'udp')
        if _basename(shell) != 'bash':
            raise Refused('/dev/tcp is a bash feature; %s -c fails it whatever the port' % shell, 'never-fails')
        return 'tcpSocket', {'host': _self_host(m.group(2)), 'port': _port(m.group(3), '/dev/tcp')}, None, []
    assignments = []
    while argv and re.match(r'^[A-Za-z_][A-Za-z0-9_]*=', argv[0]):
        assignments.append(argv.pop(0))
    for a in assignments:
        if CREDENTIAL_ENV.search(a.split('=', 1)[0]):
            raise Refused('the command gets %s: a credential is never copied into a probe spec' % a.split('=', 1)[0], 'credential')
    if assignments:
        raise Refused('the command runs with %s set, which a probe spec cannot express' % assignments[0].split('=', 1)[0], 'shell')
    if not argv:
        raise Refused('the script is empty: the probe can never fail', 'never-fails')
    tool = _basename(argv[0])
    if tool == 'timeout' and len(argv) > 2:
        # ``timeout N cmd``: the probe's timeoutSeconds does the same
        cmd_timeout = None
        try:
            cmd_timeout = _duration(argv[1])
        except Refused:
            pass
        if cmd_timeout is not None:
            kind, handler, timeout, warns = _infer_argv(argv[2:], script, shell, allow_lossy, allow_stricter=allow_stricter)
            return kind, handler, max(timeout or 0, cmd_timeout), warns
    if tool == 'curl':
        try:
            return _infer_curl(argv)
        except Stricter as e:
            if allow_stricter:
                return 'httpGet', e.handler, e.timeout, e.warnings + [
                    'curl without --fail accepted any HTTP status; the httpGet probe fails on status >= 400 '
                    '(allowed by allow_stricter)']
            if allow_lossy:
                host = e.handler.get('host')
                handler = {'host': host, 'port': e.port} if host else {'port': e.port}
                return 'tcpSocket', handler, e.timeout, e.warnings + [
                    'curl without --fail became a tcpSocket check of port %d: that something answers HTTP is no '
                    'longer checked (allowed by allow_lossy)' % e.port]
            raise
    if tool == 'wget':
        return _infer_wget(argv)
    if tool in ('nc', 'ncat', 'netcat'):
        return _infer_nc(argv)
    if tool in GRPC_TOOLS:
        return _infer_grpc(argv)
    if tool in DB_DEFAULT_PORTS:
        port, note = _db_port(argv)
        if not allow_lossy:
            raise Lossy('%s checks the database protocol%s; a tcpSocket probe only checks that port %d accepts '
                        'connections (allow it with a rule: action tcp, or infer with allow_lossy)' % (tool, note, port), port)
        return 'tcpSocket', {'port': port}, None, [
            '%s became a tcpSocket check of port %d: the database protocol is no longer checked%s' % (tool, port, note)]
    _classify(tool, argv)


def infer(command, allow_lossy=False, env=None, allow_stricter=False):
    """Infer (handler kind, handler, timeout seconds or None, warnings) from an
    exec command, or raise Refused with the reason and its kind.  ENV is the
    container's ``env`` list: ``$(VAR)`` and the shell's ``$VAR`` are read
    from its literal values."""
    if not isinstance(command, list) or not command or not all(isinstance(w, str) for w in command):
        raise Refused('exec.command is not a list of strings', 'invalid')
    literal = literal_env(env)
    words, unresolved = [], set()
    for w in command:
        expanded, names = kubelet_expand(w, literal)
        words.append(expanded)
        unresolved |= names
    scan_credentials(words)
    argv, script, shell, shell_unresolved = unwrap_shell(words, literal)
    unresolved |= shell_unresolved
    for name in sorted(unresolved):
        if CREDENTIAL_ENV.search(name):
            raise Refused('the command uses %s, a credential by its name: a credential is never copied into a probe spec'
                          % name, 'credential')
    try:
        result = _infer_argv(argv, script, shell, allow_lossy, allow_stricter=allow_stricter)
    except Refused as e:
        if unresolved and e.kind not in STRONG_KINDS:
            raise _variable_refusal(unresolved, env)
        raise
    if unresolved:
        raise _variable_refusal(unresolved, env)
    return result


def _variable_refusal(names, env):
    declared = dict((e.get('name'), e) for e in env or [] if isinstance(e, dict))
    parts = []
    for name in sorted(names):
        e = declared.get(name.lstrip('$'))
        if name.startswith('$'):
            parts.append('%s (a shell parameter)' % name)
        elif e is None:
            parts.append('%s (not in the container env; it may come from envFrom or the image)' % name)
        else:
            parts.append('%s (set from %s, not a literal)' % (name, ', '.join(sorted(e.get('valueFrom') or {})) or 'another variable'))
    return Refused('the command uses variables the conversion cannot resolve: %s' % '; '.join(parts), 'variable')
