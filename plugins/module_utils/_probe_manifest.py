# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rewriting manifest files (private module_utils).

The file mode of the conversion: walk a file or a directory of multi-document
YAML manifests, convert every object with the same rules and the same JSON
patch as cluster mode, and write back only the documents that changed.

Target-compatible: Python 3.6+; PyYAML (a dependency of ansible-core).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import os
import re
import shutil
import tempfile

try:
    import yaml
    HAS_YAML = True
    YAML_IMPORT_ERROR = None
except ImportError as e:  # PyYAML comes with ansible-core; guard anyway
    HAS_YAML = False
    YAML_IMPORT_ERROR = e

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _probe_patch
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _probe_rules
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _probes
from ansible_collections.hangdoctor.runtime.plugins.module_utils._probe_errors import ProbeError

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


def convert_files(path, rules, min_timeout_seconds=None, check_mode=False, backup_dir=None, allow_undeclared_ports=False):
    """Convert the probes of every manifest under path.  Returns
    (reports, changed files, diffs, backups)."""
    if not HAS_YAML:
        raise ProbeError('PyYAML is required for path')
    rules = _probe_rules.check_rules(rules)
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
            report = _probes.convert_object(doc, rules, 'files', min_timeout_seconds, allow_undeclared_ports)
            if report is None:
                continue
            report['file'] = f
            report['document'] = i
            if report['patch']:
                new_docs[i] = _probe_patch.apply_patch(doc, report['patch'])
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
