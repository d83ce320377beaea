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
import io
import os
import re
import shutil

try:
    import yaml
    HAS_YAML = True
    YAML_IMPORT_ERROR = None
except ImportError as e:  # PyYAML comes with ansible-core; guard anyway
    HAS_YAML = False
    YAML_IMPORT_ERROR = e

try:
    # Optional, controller side: a round-trip editor for documents the line
    # edit cannot handle.  Without it those documents are re-dumped by PyYAML.
    from ruamel.yaml import YAML as RuamelYAML
    HAS_RUAMEL = True
except ImportError:
    HAS_RUAMEL = False

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _files
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _probe_patch
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _probe_rules
from ansible_collections.hangdoctor.runtime.plugins.module_utils import _probes
from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import HangdoctorError
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


# ---- line-level edit: change only the lines of the converted probes -----------

class _NoLineEdit(HangdoctorError):
    """The change cannot be made line by line; rewrite the document instead."""


def _lookup(node, key):
    if not isinstance(node, yaml.MappingNode):
        raise _NoLineEdit('not a mapping')
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return k, v
    return None, None


def _walk(node, parts):
    for part in parts:
        if isinstance(node, yaml.SequenceNode):
            node = node.value[int(part)]
        else:
            dummy, node = _lookup(node, part)
            if node is None:
                raise _NoLineEdit('path not found')
    return node


def _block_span(lines, key_node):
    """(first line, end line) of a block-style ``key: value`` entry: the key's
    line and every more-indented or blank/comment line after it, trailing
    blank and comment lines given back."""
    first, col = key_node.start_mark.line, key_node.start_mark.column
    if lines[first][:col].strip():
        raise _NoLineEdit('key not first on its line')
    end = first + 1
    while end < len(lines):
        stripped = lines[end].strip()
        indent = len(lines[end]) - len(lines[end].lstrip(' '))
        if stripped and not stripped.startswith('#') and indent <= col:
            break
        end += 1
    while end > first + 1 and (not lines[end - 1].strip() or lines[end - 1].strip().startswith('#')):
        end -= 1
    return first, end, col


def _render(mapping, col):
    text = _dump(mapping)
    return [' ' * col + line + '\n' for line in text.splitlines()]


def _line_edit(segment, report):
    """The segment with only the converted probes' lines (and the annotation
    line) changed, from the report's patch.  Raises _NoLineEdit."""
    lines = segment.splitlines(True)
    if lines and not lines[-1].endswith('\n'):
        lines[-1] += '\n'
    try:
        root = yaml.compose(segment)
    except yaml.YAMLError:
        raise _NoLineEdit('cannot compose')
    edits = []  # (first, end, new lines); applied bottom-up
    ops = report['patch']
    i = 0
    while i < len(ops):
        op = ops[i]
        parts = [x.replace('~1', '/').replace('~0', '~') for x in op['path'].split('/')[1:]]
        if op['op'] == 'test':
            i += 1
            continue
        if op['op'] == 'remove' and parts[-1] == 'exec' and i + 1 < len(ops) and ops[i + 1]['op'] == 'add':
            probe = _walk(root, parts[:-1])
            if not isinstance(probe, yaml.MappingNode) or probe.flow_style:
                raise _NoLineEdit('flow-style probe')
            key, dummy = _lookup(probe, 'exec')
            first, end, col = _block_span(lines, key)
            add = ops[i + 1]
            new = _render({add['path'].rsplit('/', 1)[1]: add['value']}, col)
            i += 2
            if i < len(ops) and ops[i]['op'] == 'add' and ops[i]['path'].endswith('/timeoutSeconds') \
                    and ops[i]['path'].rsplit('/', 1)[0] == add['path'].rsplit('/', 1)[0]:
                new += _render({'timeoutSeconds': ops[i]['value']}, col)
                i += 1
            edits.append((first, end, new))
            continue
        if op['op'] == 'add' and parts == ['metadata', 'annotations']:
            dummy, meta = _lookup(root, 'metadata')
            if meta is None or not isinstance(meta, yaml.MappingNode) or meta.flow_style or not meta.value:
                raise _NoLineEdit('metadata is not a block mapping')
            col = meta.value[0][0].start_mark.column
            at = meta.value[0][0].start_mark.line
            if lines[at][:col].strip():
                raise _NoLineEdit('metadata key not first on its line')
            edits.append((at, at, _render({'annotations': op['value']}, col)))
            i += 1
            continue
        if op['op'] == 'add' and parts[:2] == ['metadata', 'annotations'] and len(parts) == 3:
            dummy, annotations = _lookup(_walk(root, ['metadata']), 'annotations')
            if not isinstance(annotations, yaml.MappingNode) or annotations.flow_style or not annotations.value:
                raise _NoLineEdit('annotations are not a block mapping')
            key, dummy = _lookup(annotations, parts[2])
            new = None
            if key is not None:
                first, end, col = _block_span(lines, key)
            else:
                last_key = annotations.value[-1][0]
                dummy, end, col = _block_span(lines, last_key)
                first = end
            new = _render({parts[2]: op['value']}, col)
            edits.append((first, end, new))
            i += 1
            continue
        raise _NoLineEdit('operation %s %s' % (op['op'], op['path']))
    edits.sort(key=lambda e: (e[0], e[1]))
    for a, b in zip(edits, edits[1:]):
        if a[1] > b[0]:
            raise _NoLineEdit('overlapping edits')
    for first, end, new in reversed(edits):
        lines[first:end] = new
    return ''.join(lines)


def _ruamel_edit(segment, patch):
    """The segment rewritten by ruamel.yaml in round-trip mode: comments,
    quotes and key order of the document are kept; indentation follows the
    document's sequences."""
    rt = RuamelYAML(typ='rt')
    rt.preserve_quotes = True
    rt.width = 1 << 16
    # ``key:\n- item`` (sequences flush with their key) or ``key:\n  - item``
    flush = re.search(r'^(\s*)[^\s#-][^\n]*:\s*\n\1- ', segment, re.M)
    if flush:
        rt.indent(mapping=2, sequence=2, offset=0)
    else:
        rt.indent(mapping=2, sequence=4, offset=2)
    doc = rt.load(segment)
    _probe_patch.apply_patch(doc, patch, in_place=True)
    out = io.StringIO()
    rt.dump(doc, out)
    return out.getvalue()


def _rewrite(segment, report, doc_after):
    """The new text of a changed document, the least intrusive way that
    reads back as exactly the patched document.  Returns (text, method)."""
    try:
        text = _line_edit(segment, report)
        if yaml.safe_load(text) == doc_after:
            return text, 'line'
    except (_NoLineEdit, yaml.YAMLError, IndexError, ValueError):
        pass
    if HAS_RUAMEL:
        try:
            head = ''
            body = segment
            if MARKER.match(segment):
                head, body = segment.split('\n', 1)[0] + '\n', segment.split('\n', 1)[1] if '\n' in segment else ''
            text = head + _ruamel_edit(body, report['patch'])
            if yaml.safe_load(text) == doc_after:
                return text, 'ruamel'
        except Exception:  # pylint: disable=broad-except
            # any failure of the optional editor falls back to the PyYAML path
            pass
    return _redump(segment, doc_after), 'pyyaml'


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
    """Replace a manifest keeping its mode and owner.  The temporary file is
    a dot-file: the kubelet skips hidden files in a static-pod directory."""
    try:
        mode = os.stat(path).st_mode & 0o7777
        _files.write_atomic(path, text.encode('utf-8'), mode, create_dir=False, keep_owner=True)
    except (OSError, _files.WriteError) as e:
        raise ProbeError('cannot rewrite %s: %s' % (path, e))


def convert_files(path, rules, min_timeout_seconds=None, check_mode=False, backup_dir=None, allow=None, objects=None):
    """Convert the probes of every manifest under path, with what ALLOW
    (``_probes.Allow``) allows.  Returns (reports, changed files, diffs,
    backups); the documents read, as they were, are appended to OBJECTS when
    it is a list."""
    allow = allow or _probes.Allow()
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
        new_docs, touched, by_doc = list(docs), set(), {}
        for i, doc in enumerate(docs):
            if not isinstance(doc, dict):
                continue
            if objects is not None:
                objects.append(doc)
            report = _probes.convert_object(doc, rules, 'files', min_timeout_seconds,
                                            allow_undeclared_ports=allow.undeclared_ports, allow_lossy=allow.lossy,
                                            allow_stricter=allow.stricter)
            if report is None:
                continue
            report['file'] = f
            report['document'] = i
            if report['patch']:
                new_docs[i] = _probe_patch.apply_patch(doc, report['patch'])
                touched.add(i)
                by_doc[i] = report
            reports.append(report)
        if not touched:
            continue
        if pairs is None:
            new_text = '---\n'.join(_dump(d) for d in new_docs if d is not None)
        else:
            parts = []
            for i, (seg, dummy) in enumerate(pairs):
                if i in touched:
                    seg, by_doc[i]['edit'] = _rewrite(seg, by_doc[i], new_docs[i])
                parts.append(seg)
            new_text = ''.join(parts)
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
