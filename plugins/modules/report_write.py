#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) hangdoctor developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: report_write
short_description: Write a report or a Prometheus textfile atomically
version_added: 0.1.0
author: hangdoctor developers (!UNKNOWN)
description:
  - Writes O(content) to O(path) through a temporary file in the same directory that is
    flushed, synced and renamed over O(path), so a reader (the node_exporter textfile collector,
    a person tailing the report directory) sees either the old file or the new one, never a part.
  - The temporary file is named C(.<name>.<random>.tmp), so collectors that read C(*.prom) never
    pick it up, unlike a temporary file that keeps the C(.prom) suffix.
  - Used by the C(hangdoctor.runtime.detect) and C(hangdoctor.runtime.remediate) roles for the
    run report on the controller and the metrics file on each node.
extends_documentation_fragment:
  - hangdoctor.runtime.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
    support: full
options:
  path:
    description:
      - The file to write.
    type: path
    required: true
  content:
    description:
      - The text to write (UTF-8).
    type: str
    required: true
  mode:
    description:
      - Permissions of the written file.
    type: raw
    default: '0644'
  create_dir:
    description:
      - Create the parent directory (mode C(0755)) when it does not exist.
    type: bool
    default: true
'''

EXAMPLES = r'''
---
- name: Publish node metrics for the textfile collector
  hangdoctor.runtime.report_write:
    path: /var/lib/node_exporter/textfile_collector/hangdoctor.prom
    content: "{{ hangdoctor | hangdoctor.runtime.hangdoctor_prometheus }}"

- name: Write the run report on the controller
  hangdoctor.runtime.report_write:
    path: /var/tmp/hangdoctor-reports/report.md
    content: "{{ report | hangdoctor.runtime.hangdoctor_report_markdown }}"
  delegate_to: localhost
'''

RETURN = r'''
path:
  description: The file written.
  returned: always
  type: str
  sample: /var/lib/node_exporter/textfile_collector/hangdoctor.prom
size:
  description: Bytes of O(content) (UTF-8).
  returned: always
  type: int
  sample: 1342
sha256:
  description: SHA-256 of O(content).
  returned: always
  type: str
  sample: 0f343b0931126a20f133d67c2b018a3b1e3b1f1b0c1f2e9a1d7b0c8e2f1a6b3c
'''

import hashlib
import os
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes


class WriteError(Exception):
    pass


def _mode(value):
    if isinstance(value, int):
        return value
    try:
        return int(str(value), 8)
    except ValueError:
        raise WriteError('mode must be octal, e.g. 0644, not %r' % (value,))


def same_file(path, data, mode):
    """True when PATH already holds DATA with MODE (nothing to write)."""
    try:
        st = os.stat(path)
        if stat.S_IMODE(st.st_mode) != mode or st.st_size != len(data):
            return False
        with open(path, 'rb') as f:
            return f.read() == data
    except (IOError, OSError):
        return False


def write_atomic(path, data, mode=0o644, create_dir=True):
    """Write DATA to PATH through a synced temporary file and rename(2)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        if not create_dir:
            raise WriteError('directory %s does not exist' % directory)
        try:
            os.makedirs(directory, 0o755)
        except OSError as e:
            if not os.path.isdir(directory):
                raise WriteError('cannot create %s: %s' % (directory, e))
    try:
        fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), suffix='.tmp', dir=directory)
    except OSError as e:
        raise WriteError('cannot write in %s: %s' % (directory, e))
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except (IOError, OSError) as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise WriteError('cannot write %s: %s' % (path, e))
    # The rename is durable only once the directory entry is on disk.
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            content=dict(type='str', required=True),
            mode=dict(type='raw', default='0644'),
            create_dir=dict(type='bool', default=True),
        ),
        supports_check_mode=True,
    )
    path = module.params['path']
    data = to_bytes(module.params['content'], errors='surrogate_or_strict')
    result = dict(changed=False, path=path, size=len(data), sha256=hashlib.sha256(data).hexdigest())
    try:
        mode = _mode(module.params['mode'])
        if os.path.isdir(path):
            raise WriteError('%s is a directory' % path)
        if not same_file(path, data, mode):
            result['changed'] = True
            if not module.check_mode:
                write_atomic(path, data, mode, module.params['create_dir'])
    except WriteError as e:
        module.fail_json(msg=str(e), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
