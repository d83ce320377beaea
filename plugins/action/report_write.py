# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of hangdoctor.runtime.report_write.

The run report is written on the controller (``delegate_to: localhost``):
there the files are written in the controller's own process, by the same
code the module runs, instead of starting the module (a Python start and
the module's transfer, the largest fixed cost of a healthy fleet run).
Anywhere else (another report host, a remote node, become) the module runs
as before."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.hangdoctor.runtime.plugins.module_utils._files import WriteError, parse_mode
from ansible_collections.hangdoctor.runtime.plugins.module_utils._report_files import (
    ARGUMENT_SPEC,
    MUTUALLY_EXCLUSIVE,
    REQUIRED_ONE_OF,
    REQUIRED_TOGETHER,
    FilesError,
    write_files,
)


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _supports_check_mode = True

    def _here(self):
        """True when the module would run in this process's place: the local
        connection, without become (then it runs as this user, here)."""
        return getattr(self._connection, 'transport', None) == 'local' and not self._play_context.become

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        if not self._here():
            result.update(self._execute_module(module_name='hangdoctor.runtime.report_write',
                                               module_args=self._task.args, task_vars=task_vars))
            return result
        try:
            dummy, params = self.validate_argument_spec(
                argument_spec=ARGUMENT_SPEC, mutually_exclusive=MUTUALLY_EXCLUSIVE,
                required_one_of=REQUIRED_ONE_OF, required_together=REQUIRED_TOGETHER)
        except AnsibleActionFail as e:
            result.update(failed=True, msg=str(e))
            return result
        try:
            mode = parse_mode(params['mode'])
            result.update(write_files(params, mode, bool(self._task.check_mode), bool(self._task.diff)))
        except FilesError as e:
            result.update(e.result, failed=True, msg=str(e))
        except WriteError as e:
            result.update(failed=True, msg=str(e), path=params.get('path'))
        return result
