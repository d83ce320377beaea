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
msg:
  description: One line that says what was done.
  returned: always
  type: str
  sample: wrote /var/tmp/hangdoctor-reports/hangdoctor-detect.md (1342 bytes)
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

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.hangdoctor.runtime.plugins.module_utils._files import (
    WriteError,
    parse_mode,
    same_file,
    write_atomic,
)


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
        mode = parse_mode(module.params['mode'])
        if os.path.isdir(path):
            raise WriteError('%s is a directory' % path)
        if not same_file(path, data, mode):
            result['changed'] = True
            if not module.check_mode:
                write_atomic(path, data, mode, module.params['create_dir'])
    except WriteError as e:
        module.fail_json(msg=str(e), **result)
    result['msg'] = '%s %s (%d bytes)' % (
        ('would write' if module.check_mode else 'wrote') if result['changed'] else 'unchanged', path, len(data))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
