# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guarded JSON patch of a conversion (private module_utils).

RFC 6902 pointers, the annotation that records the original exec probes, and
an applier for file mode, which uses the same patch as cluster mode so that
what is reviewed is what is written.

Target-compatible: Python 3.6+ and stdlib only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import json

from ansible_collections.hangdoctor.runtime.plugins.module_utils._probe_errors import ProbeError

ANNOTATION = 'hangdoctor.runtime/original-exec-probes'


def pointer(*parts):
    return ''.join('/' + str(p).replace('~', '~0').replace('/', '~1') for p in parts)


def _resolve(doc, path):
    parts = [p.replace('~1', '/').replace('~0', '~') for p in path.split('/')[1:]]
    parent = doc
    for p in parts[:-1]:
        parent = parent[int(p)] if isinstance(parent, list) else parent[p]
    return parent, parts[-1]


def apply_patch(doc, patch, in_place=False):
    """Apply an RFC 6902 patch (test/add/remove/replace) to a copy of doc (to
    doc itself with IN_PLACE).  File mode uses the same patch as cluster mode,
    so what is reviewed is what is written.  Raises ProbeError when a test
    fails.  A mapping that keeps its key order and can insert (ruamel.yaml's)
    gets an added key where the key removed just before was, so a new handler
    takes the place of ``exec``."""
    if not in_place:
        doc = copy.deepcopy(doc)
    removed = None
    for op in patch:
        try:
            parent, key = _resolve(doc, op['path'])
            if isinstance(parent, list):
                key = len(parent) if key == '-' else int(key)
            if op['op'] == 'test':
                if parent[key] != op['value']:
                    raise ProbeError('test failed at %s' % op['path'])
            elif op['op'] == 'remove':
                if isinstance(parent, dict):
                    removed = (id(parent), list(parent).index(key))
                del parent[key]
            elif op['op'] == 'add':
                if isinstance(parent, list):
                    parent.insert(key, copy.deepcopy(op['value']))
                elif key not in parent and removed and removed[0] == id(parent) and hasattr(parent, 'insert'):
                    parent.insert(removed[1], key, copy.deepcopy(op['value']))
                else:
                    parent[key] = copy.deepcopy(op['value'])
                removed = None
            elif op['op'] == 'replace':
                parent[key]  # pylint: disable=pointless-statement
                parent[key] = copy.deepcopy(op['value'])
            else:
                raise ProbeError('unsupported patch op %s' % op['op'])
        except (KeyError, IndexError, ValueError, TypeError):
            raise ProbeError('patch path %s does not exist' % op['path'])
    return doc


def annotation_ops(obj, originals):
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
