# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Option groups, the one source of truth for options several modules or
roles share (private module_utils).

A group names its options once: the Ansible spec (type, default, choices),
the bounds of a number, a check of the value, and the description.  From it
come the modules' ``argument_spec``, the immutable option object (a
namedtuple) that ``main()`` hands to the logic, the doc fragment of the same
name (``plugins/doc_fragments/<group>.py``, written by
``scripts/gen_option_docs.py``), the action groups of meta/runtime.yml
(``module_defaults: group/hangdoctor.runtime.<group>``) and the roles'
``hangdoctor_*`` defaults and argument specs; tests/unit/test_option_groups.py
fails when any of these differs from the group.

A module may expose a group option under another name (node_doctor's
``drain_timeout`` is the drain group's ``timeout``): ``names`` maps the
group's name to the module's, and the object's field keeps the group's name.

Numbers are checked here too: AnsibleModule accepts ``nan`` and ``inf`` as
floats, and ``nan < 0`` is false, so a NaN would pass a plain sign check and
silently turn a guard off; ``inf`` overflows ``settimeout``.

Target-side code: Python 3.6+ syntax and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import math
import os
from collections import namedtuple

try:
    from ansible.module_utils.basic import env_fallback
except ImportError:  # a standalone client loads the groups without Ansible; fallbacks are Ansible's
    env_fallback = None

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _defaults
from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import HangdoctorError

DAY = 86400.0


class OptionError(HangdoctorError):
    """An option value the module must refuse; the text names the option."""


class Option(namedtuple('Option', ['name', 'spec', 'bounds', 'check', 'doc'])):
    """One option: NAME, its Ansible SPEC (type, default, choices, ...), the
    BOUNDS of a number ``(lowest, highest, lowest allowed itself)``, a CHECK
    ``(public name, value) -> value`` that raises OptionError, and its DOC
    (description lines, Ansible markup)."""


def option(name, doc, bounds=None, check=None, **spec):
    return Option(name, spec, bounds, check, doc=tuple(doc))


def _fmt(v):
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def bounds_text(bounds):
    lo, hi, lo_ok = bounds
    if lo_ok:
        return 'between %s and %s' % (_fmt(lo), _fmt(hi))
    return 'greater than %s and at most %s' % (_fmt(lo), _fmt(hi))


def check_number(name, value, bounds):
    """Raise OptionError unless VALUE is a finite number within BOUNDS."""
    if value is None:
        return
    lo, hi, lo_ok = bounds
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OptionError('%s must be a number, got %r' % (name, value))
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        raise OptionError('%s must be a finite number, got %s' % (name, value))
    if value < lo or (value == lo and not lo_ok) or value > hi:
        raise OptionError('%s must be %s, got %s' % (name, bounds_text(bounds), _fmt(value)))


class Group(object):
    """Options that belong together; ``values()`` makes the option object."""

    def __init__(self, name, options, action_group=False, doc=''):
        self.name = name
        self.options = tuple(options)
        self.action_group = action_group
        self.doc = doc
        self.type = namedtuple('%sOptions' % name.title().replace('_', ''), [o.name for o in self.options])

    def __iter__(self):
        return iter(self.options)

    def public(self, names=None):
        """[(option, the module's name for it)]"""
        names = names or {}
        return [(o, names.get(o.name, o.name)) for o in self.options]

    def argument_spec(self, names=None):
        spec = {}
        for o, public in self.public(names):
            spec[public] = dict(o.spec)
            if 'fallback' in spec[public] and env_fallback is not None:
                spec[public]['fallback'] = (env_fallback, spec[public]['fallback'])
            elif 'fallback' in spec[public]:
                del spec[public]['fallback']
        return spec

    def values(self, params=None, names=None):
        """The option object from PARAMS (a module's params, or any mapping
        of the module's names; what it lacks takes the group's default),
        every value checked."""
        params = params or {}
        out = []
        for o, public in self.public(names):
            value = params.get(public, o.spec.get('default'))
            if o.bounds is not None:
                check_number(public, value, o.bounds)
            if o.check is not None:
                value = o.check(public, value)
            out.append(value)
        return self.type(*out)

    def make(self, **values):
        """The option object from keyword VALUES by the group's names (library callers, tests)."""
        unknown = sorted(set(values) - set(o.name for o in self.options))
        if unknown:
            raise OptionError('%s options have no %s' % (self.name, ', '.join(unknown)))
        return self.values(values)


# ---- checks of single values ----------------------------------------------
def hex_ids(name, values):
    """Normalise container ids or id prefixes (hex); raise on anything else."""
    if values is None:
        return None
    ids = [str(c).strip().lower() for c in values if c is not None and str(c).strip()]
    bad = [c for c in ids if not all(ch in '0123456789abcdef' for ch in c)]
    if bad:
        raise OptionError('%s must be hex container ids or prefixes: %s' % (name, ', '.join(bad)))
    return ids


def docker_address(name, value):
    """A docker_host the Engine client speaks (_addresses' rule); empty (an
    empty DOCKER_HOST) means the default, as for the docker CLI."""
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _addresses
    if value == '':
        return _defaults.DEFAULT_DOCKER_HOST
    _addresses.parse_docker_host(value)
    return value


def containerd_address(name, value):
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _addresses
    if not value or not isinstance(value, str) or not _addresses.containerd_socket_path(value).startswith('/'):
        raise OptionError('%s %r: use an absolute socket path (unix:// optional)' % (name, value))
    return value


def containerd_namespace(name, namespace):
    if not namespace or '/' in namespace:
        raise OptionError('%s must be a containerd namespace such as k8s.io, got %r' % (name, namespace))
    return namespace


def one_of(*allowed):
    def check(name, value):
        if value not in allowed:
            raise OptionError('%s must be one of %s, got %r' % (name, ', '.join(allowed), value))
        return value
    return check


def engine_names(name, value):
    """'auto' (every engine present) or the list of engine names (_engines' rule)."""
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _engines
    try:
        _engines.parse_engines(value)
    except _engines.EnginesError as e:
        raise OptionError(str(e))
    return 'auto' if value in (None, 'auto', ['auto']) else value


def metrics_dir(name, value):
    if value not in ('', 'auto') and not os.path.isabs(value):
        raise OptionError('%s must be an absolute path, auto or empty, got %r' % (name, value))
    return value


def file_name(name, value):
    if not value or '/' in value or value in ('.', '..'):
        raise OptionError('%s must be a file name, not a path: %r' % (name, value))
    return value


def absolute_path(name, value):
    if not value or not os.path.isabs(value):
        raise OptionError('%s must be an absolute path, got %r' % (name, value))
    return value


# ---- the groups --------------------------------------------------------------
ENGINE = Group('engine', [
    # The task's docker_host wins, then $DOCKER_HOST of the target, then the default.
    option('docker_host', type='str', default=_defaults.DEFAULT_DOCKER_HOST, fallback=['DOCKER_HOST'],
           check=docker_address, doc=[
        'Where the Docker daemon listens, as C(unix:///path/to/docker.sock), a bare absolute socket path, or '
        'C(tcp://host:port) / C(http://host:port) without TLS.',
        'When the task does not set it, the E(DOCKER_HOST) environment variable of the target is used if set.',
        'Set it once for a play with C(module_defaults) and C(group/hangdoctor.runtime.engine).']),
    option('inspect_timeout', type='float', default=5.0, bounds=(0.0, 600.0, False), doc=[
        'Seconds one Engine API request (a container\'s inspect, the version check, the list) may take in total, '
        'not per read. An inspect that gets no whole answer in that time marks the container as hung.']),
], action_group=True, doc='Options of the modules that ask a container engine.')

CONTAINERD = Group('containerd', [
    option('containerd_address', type='str', default=_defaults.DEFAULT_CONTAINERD_ADDRESS,
           fallback=['CONTAINERD_ADDRESS'], check=containerd_address, doc=[
               'containerd\'s gRPC socket, as a path or C(unix:///path). Only the shims of this containerd are asked.',
               'When the task does not set it, the E(CONTAINERD_ADDRESS) environment variable of the target is used '
               'if set.',
               'Set it once for a play with C(module_defaults) and C(group/hangdoctor.runtime.containerd).']),
    option('containerd_namespace', type='str', default=_defaults.DEFAULT_CONTAINERD_NAMESPACE,
           fallback=['CONTAINERD_NAMESPACE'], check=containerd_namespace, doc=[
               'containerd namespace of the containers. Kubernetes (CRI) uses V(k8s.io).',
               'When the task does not set it, the E(CONTAINERD_NAMESPACE) environment variable of the target is '
               'used if set.']),
], action_group=True, doc='Options of the modules that also ask containerd\'s pod shims.')

PROC = Group('proc', [
    option('proc_root', type='path', default='/proc', doc=[
        'The procfs to read, for example C(/host/proc) from a privileged pod that mounts the host\'s C(/proc).',
        'Set it once for a play with C(module_defaults) and C(group/hangdoctor.runtime.proc).']),
    option('confirm_interval', type='float', default=1.0, bounds=(0.0, 60.0, True), doc=[
        'Seconds between the two progress samples that confirm a stuck exec (queued bytes and context '
        'switches unchanged). V(0) skips the second sample.']),
    option('peek_bytes', type='int', default=4096, bounds=(0, 1024 * 1024, True), doc=[
        'How many bytes of the crash dump to copy out of the pipe with C(tee(2)), without consuming them. '
        'V(0) turns the peek off.']),
], action_group=True, doc='Options of the modules that read /proc.')

SCAN = Group('scan', [
    option('container_ids', type='list', elements='str', default=[], check=hex_ids, doc=[
        'Report only stuck execs in these containers (full 64-hex ids or unique prefixes).',
        'The container is taken from the C(runc exec) argv (its last argument), never from shim v2\'s '
        'C(-id), which is the pod sandbox under Kubernetes CRI.',
        'Empty means every container.']),
    option('min_age_seconds', type='float', default=0, bounds=(0.0, 30 * DAY, True), doc=[
        'A stuck exec whose blocked writer is younger than this is returned in RV(suspects) instead of '
        'RV(stuck_execs).']),
    option('kernel_log', type='bool', default=True, doc=[
        'Read the kernel log (C(/dev/kmsg), non-blocking and bounded) for OOM-kill lines that name each '
        'stuck exec\'s container.']),
    option('cmdline_timeout', type='float', default=1.0, bounds=(0.0, 60.0, False), doc=[
        'Deadline in seconds for reading the argv of one shim, C(runc exec) or dockerd.']),
    option('scan_method', type='str', choices=['auto', 'full'], default='auto', check=one_of('auto', 'full'), doc=[
        'How the scan finds stuck execs.',
        'V(auto) first asks the containerd shims found from the runtime state folders (each running containerd, '
        'found by its socket, names its C(state) folder; shim v1 bundles hold C(shim.pid), shim v2 bundles '
        'C(init.pid)) and measures the pipes they read: when every live shim is proven and none holds a full '
        'pipe, or bytes that do not move, the node has no stuck exec and no other process is read. Otherwise '
        '(a full pipe, a shim whose state folder is unknown, no containerd found) it falls back to the full scan.',
        'V(full) always reads every process (the reference; RV(scan_method) says which one ran).',
        'Processes that only look like a stuck exec but whose pipe no shim reads are reported in '
        'RV(suspects) by the full scan only.']),
], doc='Options of the modules that diagnose stuck execs.')

DRAIN = Group('drain', [
    option('min_age_seconds', type='float', default=60, bounds=(0.0, 30 * DAY, True), doc=[
        'Skip stuck execs whose writer started less than this many seconds ago (an exec that is merely slow).',
        'Rounds after the first one (the same container deadlocking again) do not apply it.']),
    option('timeout', type='float', default=30, bounds=(0.0, 3600.0, False), doc=[
        'Seconds one drain may take before it gives up (or, with O(fallback=kill), kills the writer).']),
    option('fallback', type='str', choices=['none', 'kill'], default='none', check=one_of('none', 'kill'), doc=[
        'What to do with a writer still blocked at O(timeout).',
        'V(none) leaves it and reports C(unblocked=false).',
        'V(kill) re-checks its identity, sends it SIGKILL and reads what is left in the pipe (kept as evidence), '
        'because killing alone does not repair the hang (C(runc exec) then blocks writing its own error line). '
        'It kills only a writer still proven stuck at that moment (with reading paused, blocked in write(2) on the '
        'same pipe, without progress), through a pidfd where the kernel has one; else it says why in C(kill_note).',
        'V(kill) is refused when O(proc_root) is not a procfs of the module\'s own pid namespace (for example the '
        'host\'s C(/proc) mounted in a pod without hostPID), where its pids would name other processes.']),
    option('max_rounds', type='int', default=3, bounds=(1, 100, True), doc=[
        'How many rounds of drains a container may get in one run: after each round the drained containers are '
        'diagnosed again, and one whose deadlock came back at once (the cause persists) is drained again.']),
], doc='How the drain reads a stuck pipe.')

EVIDENCE = Group('evidence', [
    option('evidence_dir', type='path', default=_defaults.DEFAULT_EVIDENCE_DIR, check=absolute_path, doc=[
        'Absolute path of the directory that receives one evidence file per drained pipe, named '
        'C(<container12>-<pid>-<starttime>-<utc stamp>.log).',
        'Created with mode 0700; evidence files are created 0600. Refused with a clear message when it is owned '
        'by another user or writable by group or others, when a directory on its path is owned by another user or '
        'writable by others (a sticky one such as C(/tmp) is fine), or when it is a symlink owned by another user. '
        'Every component is opened without following symlinks, and files are created relative to the opened '
        'directory.',
        'Bounded by O(evidence_retention_count), O(evidence_retention_bytes) and O(evidence_retention_days).']),
    option('lock_dir', type='path', default=_defaults.DEFAULT_LOCK_DIR, check=absolute_path, doc=[
        'Absolute path of the host-wide directory of the per-pipe lock files (C(pipe-<dev>-<inode>.lock)) and the '
        'done markers, shared by every run on the host whatever its O(evidence_dir).',
        'Same ownership and symlink rules as O(evidence_dir). A lock file nobody holds is removed after an hour, '
        'a done marker once its writer is gone.']),
    option('evidence_retention_count', type='int', default=_defaults.RETENTION_COUNT, bounds=(0, 10 ** 7, True), doc=[
        'After draining, keep at most this many evidence files in O(evidence_dir), removing the oldest first. '
        'V(0) lifts this bound. Files written by this run, and files modified in the last hour (a concurrent run '
        'may still be writing them), are never removed.',
        'Only files named as the drain names them are counted or removed.']),
    option('evidence_retention_bytes', type='int', default=_defaults.RETENTION_BYTES, bounds=(0, 2 ** 50, True), doc=[
        'Keep at most this many bytes of evidence files in O(evidence_dir), removing the oldest first. '
        'V(0) lifts this bound.']),
    option('evidence_retention_days', type='int', default=_defaults.RETENTION_DAYS, bounds=(0, 100 * 365, True), doc=[
        'Remove evidence files older than this many days. V(0) lifts this bound.']),
    option('max_evidence_bytes', type='int', default=_defaults.MAX_EVIDENCE_BYTES, bounds=(0, 1024 * 1024 * 1024, True), doc=[
        'Keep at most this many bytes of pipe content per evidence file, the first half and the last half, '
        'with the number of elided bytes in between. V(0) keeps everything.',
        'The byte count and SHA-256 of a drain always cover everything that was read.']),
], action_group=True, doc='Where the drain keeps what it reads, and its host-wide locks.')

METRICS = Group('metrics', [
    option('metrics_dir', type='str', default='auto', check=metrics_dir, doc=[
        'The node_exporter textfile-collector directory to write O(metrics_file) in. V(auto) uses the first '
        'existing one of C(/var/lib/node_exporter/textfile_collector), C(/var/lib/prometheus/node-exporter), '
        'C(/var/lib/node-exporter/textfile-collector), and writes nothing when none exists. An empty string '
        'turns metrics off. A directory given by path is created (mode 0755) when it does not exist.',
        'V(auto) writes only in a directory that root (or the user the module runs as) owns, that is not a '
        'symlink, and that no other user may write in; otherwise C(metrics) of RV(ansible_facts.hangdoctor) says '
        'why nothing was written. A directory given by path is trusted as given.',
        'The metrics file is written through a temporary file created exclusively without following a '
        'symlink, its mode set on its descriptor, and renamed in place.']),
    option('metrics_file', type='str', default='hangdoctor.prom', check=file_name, doc=[
        'File name of the metrics in O(metrics_dir).']),
], doc='The node\'s Prometheus textfile metrics.')

ENGINE_CHECK = Group('engine_check', [
    option('check_engine', type='bool', default=True, doc=[
        'Ask the container engines which containers no longer answer (Docker\'s inspect; containerd\'s pod '
        'shims, the calls a stuck exec blocks). An engine that is not on the node is skipped and said so.']),
    option('engines', type='list', elements='str', default=['auto'], check=engine_names, doc=[
        'Which engines to ask. V(auto) asks every engine present on the node; a list of V(docker) and '
        'V(containerd) asks those.']),
    option('engine_required', type='bool', default=False, doc=[
        'Fail when no container engine on the node answers. By default an unreachable or absent engine is '
        'a fact in the result.']),
    option('inspect_concurrency', type='int', default=1024, bounds=(1, 8192, True), doc=[
        'How many inspect requests are in flight at once (Docker; at most half the open-files limit). A request in '
        'flight costs a socket, no thread: the default lets every container of a large node start its timeout at '
        'once, so that a hung one is found in one timeout wherever it is in the list. containerd shims are asked '
        'at most 64 at a time.']),
], doc='Which container engines a node check asks.')

GUARD = Group('guard', [
    option('drain', type='bool', default=True, doc=[
        'With O(mode=remediate), whether drains may happen at all. V(false) reports every stuck exec as skipped.']),
    option('max_drains', type='int', default=5, bounds=(0, 1000, True), doc=[
        'At most this many stuck execs are drained on the node in one run (oldest first).']),
    option('require_guard', type='str', choices=['auto', 'always', 'never'], default='auto',
           check=one_of('auto', 'always', 'never'), doc=[
               'When drains must wait for the eviction guard\'s verdict in O(guard). V(auto) on Kubernetes nodes '
               '(a C(kubelet), C(k3s-agent), C(k3s-server) or C(kubelite) process runs in the host\'s mount namespace, '
               'or a kubelet\'s files such as C(/var/lib/kubelet) are on the host; a node that cannot be told is one), '
               'V(always), or V(never).']),
    option('guard', type='dict', doc=[
        'The eviction guard\'s verdict (the C(hangdoctor.runtime.kube_guard) filter\'s output). A verdict with '
        'C(blocked=true) drains nothing and gives its reason for every stuck exec.']),
], doc='Which stuck execs a node check may drain.')

GROUPS = (ENGINE, CONTAINERD, PROC, SCAN, DRAIN, EVIDENCE, METRICS, ENGINE_CHECK, GUARD)

# node_doctor scans and drains in one run: its min_age_seconds is the scan's,
# so the drain's threshold and timeout carry a drain_ prefix there.
NODE_DOCTOR_DRAIN_NAMES = {'min_age_seconds': 'drain_min_age_seconds', 'timeout': 'drain_timeout'}

# Doc fragments of a group under other names: hangdoctor.runtime.<group>.<variant>.
FRAGMENT_VARIANTS = {'drain': {'node_doctor': NODE_DOCTOR_DRAIN_NAMES}}

# What a drain needs, built the same way by every module that drains.
DrainRun = namedtuple('DrainRun', ['drain', 'evidence', 'proc'])


def drain_run(params=None, names=None):
    """The drain's option object from a module's PARAMS (or any mapping of its
    option names; what it lacks takes the group's default).  NAMES maps the
    drain group's names to the module's (see NODE_DOCTOR_DRAIN_NAMES)."""
    return DrainRun(DRAIN.values(params, names), EVIDENCE.values(params), PROC.values(params))


def argument_spec(*groups, **own):
    """A module's argument_spec: its GROUPS (a group, or (group, names)) and its OWN options."""
    spec = {}
    for g in groups:
        group, names = g if isinstance(g, tuple) else (g, None)
        for name, opts in group.argument_spec(names).items():
            if name in spec:
                raise ValueError('option %s is in two groups' % name)
            spec[name] = opts
    for name in own:
        if name in spec:
            raise ValueError('option %s is in a group already' % name)
    spec.update(own)
    return spec


# ---- goroutine stacks of the daemons on a hung container's chain -------------
STACKS = Group('stacks', [
    option('capture_stacks', type='bool', default=False, doc=[
        'For a hung container, send SIGUSR1 to the Go daemons on its chain (dockerd, containerd, the shim) and '
        'keep the goroutine dumps they write as evidence (mode 0600, with their SHA-256), parsed and fingerprinted '
        '(for example C(dockerd: ContainerInspect waits for the container lock held by ContainerExecStart -> '
        'containerd Exec)).',
        'A process is signalled only when C(/proc/PID/status) C(SigCgt) shows that it catches SIGUSR1 (a Go '
        'program without a handler exits on it, and a dead shim takes its container with it) and when it is '
        'proven to be one of those daemons: comm and executable name, a root-owned executable, root, the host\'s '
        'pid and mount namespaces, and the same start time right before the signal.',
        'Off by default. A healthy node is never signalled.']),
    option('stacks_min_interval', type='float', default=900, bounds=(0.0, 30 * DAY, True), doc=[
        'At most one capture per node in this many seconds (a stamp file in O(lock_dir)). V(0) lifts the limit.']),
    option('stacks_timeout', type='float', default=5.0, bounds=(0.0, 120.0, False), doc=[
        'Seconds to wait for the daemons to write their dumps after the signal.']),
    option('stacks_max_bytes', type='int', default=64 * 1024 * 1024, bounds=(0, 2 ** 40, True), doc=[
        'Keep at most this many bytes of one dump in its evidence file (head and tail). V(0) keeps everything. '
        'The SHA-256, the byte count and the parse always cover the whole dump.']),
    option('stacks_cmdline_timeout', type='float', default=1.0, bounds=(0.0, 60.0, False), doc=[
        'Deadline in seconds for reading dockerd\'s argv (its C(--exec-root)).']),
    option('stacks_retention_count', type='int', default=_defaults.STACKS_RETENTION_COUNT, bounds=(0, 10 ** 6, True),
           doc=['After a capture, keep at most this many goroutine-stack evidence files in O(evidence_dir), removing '
                'the oldest first. V(0) lifts this bound. Files written by this capture, and files modified in the '
                'last hour, are never removed.',
                'Only regular files named as the capture names them (C(stacks-<kind>-<pid>-<starttime>-<file|log>-'
                '<utc stamp>.log)) are counted or removed; the drain\'s evidence files have their own bounds '
                '(O(evidence_retention_count)).']),
    option('stacks_retention_bytes', type='int', default=_defaults.STACKS_RETENTION_BYTES, bounds=(0, 2 ** 50, True),
           doc=['Keep at most this many bytes of goroutine-stack evidence files in O(evidence_dir), removing the '
                'oldest first. V(0) lifts this bound.']),
    option('stacks_retention_days', type='int', default=_defaults.STACKS_RETENTION_DAYS, bounds=(0, 100 * 365, True),
           doc=['Remove goroutine-stack evidence files older than this many days (after a capture). V(0) lifts '
                'this bound.']),
], doc='Goroutine stacks of the Go daemons on a hung container\'s chain.')

GROUPS = GROUPS + (STACKS,)


# ---- triage: the cause of a hung container, and its safe actions (issue 24) ----
TRIAGE = Group('triage', [
    option('triage', type='bool', default=True, doc=[
        'Name the cause of every container that does not answer, has a stuck exec, or has a process in an '
        'unusual state (D, a stopped shim, a runc init that was never started), with its wait chain and evidence '
        '(C(diagnosis) of each container). A node without such a container costs nothing extra.']),
    option('stale_exec_min_age_seconds', type='float', default=300, bounds=(0.0, 30 * DAY, True), doc=[
        'An exec process older than this counts as stale for C(exec_pileup).']),
    option('pileup_min_count', type='int', default=3, bounds=(1, 100000, True), doc=[
        'At least this many stale exec processes in one container make C(exec_pileup).']),
    option('shim_probe_timeout', type='float', default=2.0, bounds=(0.0, 60.0, True), doc=[
        'Seconds the shim of a diagnosed container (only those: never on a healthy node) has to answer one '
        'read-only call to its own task API (C(Connect) for a v2 shim, C(ShimInfo) for a v1 shim, over the ttrpc '
        'socket the shim listens on). A running shim without a runc child (no runtime call in flight, which '
        'would explain its silence) that does not answer in time is C(shim_unresponsive) (deadlocked), with the '
        'socket, the call, the time waited and its threads\' states as evidence.',
        'One call per shim and run. V(0) turns the probe off (a stopped shim is still named from its state).']),
], doc='Naming the cause of a hung container and its safe actions.')

TRIAGE_ACTIONS = Group('triage_actions', [
    option('thaw', type='bool', default=False, doc=[
        'With O(mode=remediate), thaw a container found in C(frozen_cgroup) (write C(THAWED) to its '
        'C(freezer.state), or C(0) to C(cgroup.freeze)). Only when the engine answered for the container and does not report it paused; '
        'never in check mode.']),
    option('reap_stale_execs', type='bool', default=False, doc=[
        'With O(mode=remediate), kill (SIGKILL) the stale exec processes of a container found in '
        'C(exec_pileup): children of its shim in its cgroup other than its init, older than O(stale_exec_min_age_seconds). Never the shim, the engine, '
        'a runc process or the container\'s own processes; identity re-checked right before; never in check '
        'mode.']),
], doc='The safe actions a node check may take on a diagnosed container (off by default).')

GROUPS = GROUPS + (TRIAGE, TRIAGE_ACTIONS)


# ---- node risk (node_risk) -----------------------------------------------------
def cache_path(name, value):
    if value not in ('', None) and not os.path.isabs(value):
        raise OptionError('%s must be an absolute path or empty, got %r' % (name, value))
    return value or ''


def risk_checks(name, value):
    allowed = ('pipe', 'headroom', 'versions')
    bad = [v for v in value or [] if v not in allowed]
    if bad:
        raise OptionError('%s must be a list of %s, got %s' % (name, ', '.join(allowed), ', '.join(map(str, bad))))
    return list(value or [])


RISK = Group('risk', [
    option('risk_checks', type='list', elements='str', default=['pipe', 'headroom', 'versions'], check=risk_checks, doc=[
        'What to check. V(pipe) probes the capacity of the next pipe each engine\'s shim will create; '
        'V(headroom) reads every container\'s pids and memory cgroup; V(versions) runs the runtime\'s binaries '
        'for their versions (cached) and matches the advisory table.']),
    option('pipe_probe_timeout', type='float', default=2.0, bounds=(0.0, 60.0, False), doc=[
        'Seconds the short-lived child that creates a pipe with an engine\'s credentials may take.']),
    option('pids_min_headroom', type='int', default=8, bounds=(0, 100000, True), doc=[
        'A container whose pids cgroup has fewer free pids than this is at risk: a new C(runc init) needs a '
        'few threads inside the container\'s cgroups, and its Go runtime aborts when it cannot create them.']),
    option('memory_min_headroom_ratio', type='float', default=0.05, bounds=(0.0, 1.0, True), doc=[
        'A container whose memory usage leaves less than this fraction of its limit free is at risk.']),
    option('exec_probe_containers', type='list', elements='str', default=[], doc=[
        'Containers known to run exec probes (for example from the exec_probe_swap inventory): container ids '
        'or prefixes, container names, C(namespace/pod) or C(namespace/pod/container). Containers with a '
        'C(runc exec) running now count as such too. They are listed first.']),
    option('version_timeout', type='float', default=3.0, bounds=(0.0, 60.0, False), doc=[
        'Seconds one version command (C(runc --version), ...) may take before it is killed.']),
    option('version_cache', type='str', default='/var/cache/hangdoctor/versions.json', check=cache_path, doc=[
        'File (mode 0600) that keeps each binary\'s version output, keyed on its device, inode, size and mtime, '
        'so later runs run nothing until a binary changes. Empty turns the cache off.']),
    option('risk_state_file', type='str', default='/var/cache/hangdoctor/risk-state.json', check=cache_path, doc=[
        'File (mode 0600) that keeps each container\'s memory cgroup event counters (C(memory.events) C(max), '
        'C(oom), C(oom_kill); v1 C(memory.failcnt) and C(oom_kill)) from the previous run, so that their growth '
        'since then is reported and a container whose counters grow is at risk. Empty turns it off (then only '
        'counters above 0 are reported).']),
    option('risk_metrics_file', type='str', default='hangdoctor_risk.prom', check=file_name, doc=[
        'File name of the risk metrics in O(metrics_dir) (separate from the stuck-exec metrics file).']),
    option('mitigate', type='bool', default=False, doc=[
        'Raise C(fs.pipe-user-pages-soft) to O(pipe_user_pages_soft) when an engine\'s pipe capacity has '
        'collapsed, and persist it in O(sysctl_file) (the previous file kept as a backup). Never lowers the '
        'value, and leaves C(0) (no limit) alone. Supports check mode and diff.']),
    option('pipe_user_pages_soft', type='int', default=65536, bounds=(16384, 2 ** 31 - 1, True), doc=[
        'The soft limit O(mitigate=true) sets: pages of pipe buffers a user may hold before its new pipes are cut '
        'to one or two pages. The default, 65536 pages (256 MiB with 4 KiB pages), is four times the kernel\'s '
        'default; pipe buffers count towards the memory of the cgroup that filled them.']),
    option('sysctl_file', type='path', default='/etc/sysctl.d/90-hangdoctor-pipe.conf', check=absolute_path, doc=[
        'Where O(mitigate=true) persists the raised limit (read by C(systemd-sysctl) / C(sysctl --system) at boot).']),
], doc='Options of the node risk advisor.')

GROUPS = GROUPS + (RISK,)
