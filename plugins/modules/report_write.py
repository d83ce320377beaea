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
  - The directory of each file must belong to root or to the user the module runs as, and no other user
    may write in it (unless its sticky bit is set), and it must not be a symlink; whoever could write there
    could replace a report (an "all clear") or race the temporary file. The module fails with a message
    that names the directory and why. The temporary file is created exclusively, without following a
    symlink, and its mode is set on its descriptor.
extends_documentation_fragment:
  - hangdoctor.runtime.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - With C(--diff) the result holds the file's text before and after (as Ansible shows it), per file
        with O(files). A file larger than 256 KiB is shown as its size only.
  platform:
    platforms: posix
    support: full
options:
  path:
    description:
      - The file to write.
      - Required unless O(files) is given; mutually exclusive with it.
    type: path
  content:
    description:
      - The text to write (UTF-8).
      - Required with O(path).
    type: str
  files:
    description:
      - Several files to write in one module execution (one Python start on the host instead of one per
        file).
      - O(mode) and O(create_dir) apply to each. Each file is written atomically on its own; they are
        written in the order given, and the first that fails stops the rest.
    type: list
    elements: dict
    version_added: 0.2.0
    suboptions:
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
notes:
  - A directory that another (non-root) user owns or may write in is refused, also when it already exists
    (for example C(/var/tmp/hangdoctor-reports) created in advance by another user); remove it or choose
    another directory.
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
    content: "{{ report | hangdoctor.runtime.report_markdown }}"
  delegate_to: localhost

- name: Write the JSON and the Markdown report in one module execution
  hangdoctor.runtime.report_write:
    files:
      - path: /var/tmp/hangdoctor-reports/report.json
        content: "{{ report | to_nice_json }}"
      - path: /var/tmp/hangdoctor-reports/report.md
        content: "{{ report | hangdoctor.runtime.report_markdown }}"
    mode: "0640"
  delegate_to: localhost
'''

RETURN = r'''
msg:
  description: One line that says what was done.
  returned: always
  type: str
  sample: wrote /var/tmp/hangdoctor-reports/hangdoctor-detect.md (1342 bytes)
path:
  description: The file written (with O(path)).
  returned: when O(path) is given
  type: str
  sample: /var/lib/node_exporter/textfile_collector/hangdoctor.prom
size:
  description: Bytes of O(content) (UTF-8).
  returned: when O(path) is given
  type: int
  sample: 1342
sha256:
  description: SHA-256 of O(content).
  returned: when O(path) is given
  type: str
  sample: 0f343b0931126a20f133d67c2b018a3b1e3b1f1b0c1f2e9a1d7b0c8e2f1a6b3c
files:
  description: One entry per file of O(files), in their order, with the keys of the single-file result.
  returned: when O(files) is given
  type: list
  elements: dict
  contains:
    path:
      description: The file.
      type: str
      sample: /var/tmp/hangdoctor-reports/report.json
    changed:
      description: Whether it was (or in check mode would be) written.
      type: bool
      sample: true
    size:
      description: Bytes of its content (UTF-8).
      type: int
      sample: 2210
    sha256:
      description: SHA-256 of its content.
      type: str
      sample: 5e1a0b3c9d2f4e6a8b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a
diff:
  description:
    - With C(--diff), the text before and after, with the path as header; a list of one such entry per
      changed file with O(files).
  returned: in diff mode, when a file changed (or would change)
  type: raw
  sample:
    before: "hangdoctor_stuck_execs 1\n"
    after: "hangdoctor_stuck_execs 0\n"
    before_header: /var/lib/node_exporter/textfile_collector/hangdoctor.prom
    after_header: /var/lib/node_exporter/textfile_collector/hangdoctor.prom
'''

import hashlib
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import reported
from ansible_collections.hangdoctor.runtime.plugins.module_utils._files import (
    WriteError,
    check_dir,
    parse_mode,
    read_small,
    same_file,
    write_atomic,
)

MAX_DIFF_BYTES = 256 * 1024


def _diff(path, data):
    """Ansible's before/after of PATH (never follows a symlink, reads at most MAX_DIFF_BYTES)."""
    try:
        st = os.lstat(path)
        size = st.st_size
    except OSError:
        size = None
    if size is not None and size > MAX_DIFF_BYTES:
        before = '(%d bytes, not shown)\n' % size
    else:
        before = read_small(path, MAX_DIFF_BYTES) if size is not None else ''
    after = ('(%d bytes, not shown)\n' % len(data) if len(data) > MAX_DIFF_BYTES
             else data.decode('utf-8', 'replace'))
    return dict(before=before, after=after, before_header=path, after_header=path)


def _write(module, path, content, mode):
    """The single-file result for PATH; WriteError when it cannot be written."""
    data = to_bytes(content, errors='surrogate_or_strict')
    result = dict(changed=False, path=path, size=len(data), sha256=hashlib.sha256(data).hexdigest())
    if os.path.isdir(path):
        raise WriteError('%s is a directory' % path)
    directory = os.path.dirname(os.path.abspath(path))
    if module.check_mode and os.path.lexists(directory):
        # check mode says now what the real run would refuse
        why = check_dir(directory)
        if why:
            raise WriteError('refusing to write %s: %s' % (path, why))
    if not same_file(path, data, mode):
        result['changed'] = True
        if module._diff:
            result['diff'] = _diff(path, data)
        if not module.check_mode:
            write_atomic(path, data, mode, module.params['create_dir'], safe_dir=True)
    return result


def _verb(module, changed):
    return ('would write' if module.check_mode else 'wrote') if changed else 'unchanged'


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path'),
            content=dict(type='str'),
            files=dict(type='list', elements='dict', options=dict(
                path=dict(type='path', required=True),
                content=dict(type='str', required=True),
            )),
            mode=dict(type='raw', default='0644'),
            create_dir=dict(type='bool', default=True),
        ),
        mutually_exclusive=[('files', 'path'), ('files', 'content')],
        required_one_of=[('files', 'path')],
        required_together=[('path', 'content')],
        supports_check_mode=True,
    )
    with reported(module):
        try:
            mode = parse_mode(module.params['mode'])
        except WriteError as e:
            module.fail_json(msg=str(e))
        if module.params['files'] is None:
            path = module.params['path']
            try:
                result = _write(module, path, module.params['content'], mode)
            except WriteError as e:
                module.fail_json(msg=str(e), path=path)
            result['msg'] = '%s %s (%d bytes)' % (_verb(module, result['changed']), path, result['size'])
            module.exit_json(**result)
        if not module.params['files']:
            module.fail_json(msg='files must name at least one file')
        written = []
        for entry in module.params['files']:
            try:
                written.append(_write(module, entry['path'], entry['content'], mode))
            except WriteError as e:
                module.fail_json(msg='%s (%d of the files before it done)' % (e, len(written)), files=written,
                                 changed=any(f['changed'] for f in written))
        diffs = [f.pop('diff') for f in written if 'diff' in f]
        changed = [f for f in written if f['changed']]
        paths = ', '.join(f['path'] for f in written)
        if changed:
            msg = '%s %d of %d files (%s)' % (_verb(module, True), len(changed), len(written), paths)
        else:
            msg = 'unchanged %d files (%s)' % (len(written), paths)
        if diffs:
            module.exit_json(changed=bool(changed), files=written, msg=msg, diff=diffs)
    module.exit_json(changed=bool(changed), files=written, msg=msg)


if __name__ == '__main__':
    main()
