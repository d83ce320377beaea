# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one exception base of the collection (private module_utils).

Every error that module_utils raises on purpose (bad input, an unusable
directory, an engine that cannot be asked) derives from
:class:`HangdoctorError`; a module's ``main()`` turns it into a one-line
``msg``.  Anything else that escapes is a bug and is reported as one, with
its traceback.

Standard library only, no Ansible import: the standalone clients (``_cri``,
the node-problem-detector plugin) load it on a bare Python 3.6 target.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import traceback


class HangdoctorError(Exception):
    """Base of every error module_utils raises on purpose."""


BUG_HINT = 'a bug in hangdoctor.runtime (please report it with the traceback in "exception")'


def one_line(error):
    """The error's text on one line (a module's ``msg``)."""
    text = ' '.join(str(error).split())
    return text or type(error).__name__


@contextlib.contextmanager
def reported(module):
    """Run a module's work: a HangdoctorError fails the task with its one-line
    text, anything else fails it as a bug with the traceback.  ``fail_json``
    and ``exit_json`` end the process with SystemExit, which passes."""
    try:
        yield
    except HangdoctorError as e:
        module.fail_json(msg=one_line(e))
    except Exception as e:  # anything else is a bug: say so, keep the traceback
        module.fail_json(msg='%s: %s: %s' % (BUG_HINT, type(e).__name__, one_line(e)),
                         exception=traceback.format_exc())
