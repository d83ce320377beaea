# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of hangdoctor.runtime.node_doctor.

It runs the module exactly as Ansible's ``normal`` action does.  What it
adds is on the controller, before the module runs: the roles hand every
option to node_doctor as ``"{{ hangdoctor_<option> }}"`` (25 and more of
them), and ansible-core 2.19 compiles a Jinja template for each one, anew in
every host's worker process.  On a healthy fleet that was the larger part of
what a detect run cost beyond an ``ansible ping``.  An argument that is
exactly one variable reference whose value needs no templating (a boolean,
a number, a string without template markers, a list of those: every role
default) is taken as that value.  Anything else (a filter, an expression, a
value that is itself a template, an undefined or untrusted variable) goes
through Ansible's own templating, unchanged.  Ansible before 2.19 has no such
hook and templates every argument as before."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

from ansible.plugins.action.normal import ActionModule as NormalAction

# "{{ name }}" and nothing else: the shape of the roles' generated arguments
_ONE_VARIABLE = re.compile(r'\A\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}\Z')
_PLAIN_SCALARS = (bool, int, float)
# what can start a Jinja template, comment or statement (conservative: any brace)
_TEMPLATE_MARK = '{'


def _plain(value):
    """VALUE as an argument when it needs no templating at all, else None
    (then, and for None itself, Ansible's templating decides)."""
    if isinstance(value, _PLAIN_SCALARS):
        return value
    if isinstance(value, str):
        return None if _TEMPLATE_MARK in value else value
    if isinstance(value, list):
        items = [_plain(v) for v in value]
        if any(i is None for i in items):
            return None
        return items
    return None


class ActionModule(NormalAction):

    @classmethod
    def finalize_task_arg(cls, name, value, templar, context):
        if isinstance(value, str):
            m = _ONE_VARIABLE.match(value)
            if m is not None:
                variables = templar.available_variables
                ref = m.group(1)
                if ref in variables:
                    plain = _plain(variables[ref])
                    if plain is not None:
                        return plain
        return super(ActionModule, cls).finalize_task_arg(name, value, templar, context)
