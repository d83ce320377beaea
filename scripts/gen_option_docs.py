#!/usr/bin/env python3
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write the doc fragment of every option group (plugins/doc_fragments/<group>.py)
from plugins/module_utils/_options.py, the one place the options are defined.

    python3 scripts/gen_option_docs.py          # write the fragments
    python3 scripts/gen_option_docs.py --check  # exit 1 when a fragment differs

tests/unit/test_option_groups.py runs the check.
"""
import argparse
import os
import re
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'utils'))

from colltree import collections_path  # noqa: E402

sys.path.insert(0, collections_path())

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _options  # noqa: E402

HEADER = '''# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Written by scripts/gen_option_docs.py from the %s group of plugins/module_utils/_options.py:
# change the group there and run the script, never this file.

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
'''


class _Dumper(yaml.SafeDumper):
    """Block style with indented sequences, as the modules' own YAML."""

    def increase_indent(self, flow=False, indentless=False):
        return super(_Dumper, self).increase_indent(flow, False)


def _rename_refs(text, names):
    for old, new in names.items():
        text = re.sub(r'O\(%s(?=[=)])' % re.escape(old), 'O(%s' % new, text)
    return text


def option_docs(group, names=None):
    """{module's option name: its documentation} of GROUP."""
    names = names or {}
    out = {}
    for opt, public in group.public(names):
        desc = [_rename_refs(line, names) for line in opt.doc]
        if opt.bounds is not None:
            text = _options.bounds_text(opt.bounds)
            desc.append('%s%s.' % (text[0].upper(), text[1:]))
        doc = {'description': desc, 'type': opt.spec['type']}
        if 'elements' in opt.spec:
            doc['elements'] = opt.spec['elements']
        for key in ('choices', 'aliases'):
            if key in opt.spec:
                doc[key] = list(opt.spec[key])
        if 'default' in opt.spec and opt.spec['default'] is not None:
            doc['default'] = opt.spec['default']
        out[public] = doc
    return out


def _yaml(options):
    return yaml.dump({'options': options}, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     width=110, allow_unicode=True)


def render(group):
    text = HEADER % group.name.upper()
    text += "\n    # %s\n    DOCUMENTATION = r'''\n%s'''\n" % (group.doc, _yaml(option_docs(group)))
    for variant, names in sorted(_options.FRAGMENT_VARIANTS.get(group.name, {}).items()):
        text += ("\n    # The same options as %s names them (extends_documentation_fragment "
                 "hangdoctor.runtime.%s.%s).\n    %s = r'''\n%s'''\n"
                 % (variant, group.name, variant, variant.upper(), _yaml(option_docs(group, names))))
    return text


def fragment_path(group):
    return os.path.join(ROOT, 'plugins', 'doc_fragments', '%s.py' % group.name)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--check', action='store_true', help='only compare, exit 1 when a fragment differs')
    args = ap.parse_args(argv)
    stale = []
    for group in _options.GROUPS:
        path = fragment_path(group)
        text = render(group)
        old = open(path).read() if os.path.exists(path) else None
        if old == text:
            continue
        stale.append(path)
        if not args.check:
            with open(path, 'w') as f:
                f.write(text)
    for path in stale:
        print('%s %s' % ('differs:' if args.check else 'wrote', os.path.relpath(path, ROOT)))
    return 1 if args.check and stale else 0


if __name__ == '__main__':
    sys.exit(main())
