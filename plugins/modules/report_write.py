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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hangdoctor.runtime.plugins.module_utils._errors import reported
from ansible_collections.hangdoctor.runtime.plugins.module_utils._files import WriteError, parse_mode
from ansible_collections.hangdoctor.runtime.plugins.module_utils._report_files import (
    ARGUMENT_SPEC,
    MUTUALLY_EXCLUSIVE,
    REQUIRED_ONE_OF,
    REQUIRED_TOGETHER,
    FilesError,
    write_files,
)


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=MUTUALLY_EXCLUSIVE,
        required_one_of=REQUIRED_ONE_OF,
        required_together=REQUIRED_TOGETHER,
        supports_check_mode=True,
    )
    with reported(module):
        try:
            mode = parse_mode(module.params['mode'])
        except WriteError as e:
            module.fail_json(msg=str(e))
        try:
            result = write_files(module.params, mode, module.check_mode, module._diff)
        except FilesError as e:
            module.fail_json(msg=str(e), **e.result)
        except WriteError as e:
            module.fail_json(msg=str(e), path=module.params['path'])
    module.exit_json(**result)


if __name__ == '__main__':
    main()
