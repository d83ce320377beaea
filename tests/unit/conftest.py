"""Make ``ansible_collections.hangdoctor.runtime`` importable for the unit tests:
either this checkout already sits at ansible_collections/hangdoctor/runtime
(as tests/run-tests.sh lays it out), or a private symlink tree is made."""
import os
import sys
import tempfile
from pathlib import Path

COLL = Path(__file__).resolve().parents[2]


def _tree():
    if COLL.parent.name == "hangdoctor" and COLL.parent.parent.name == "ansible_collections":
        return COLL.parents[2]
    tree = Path(tempfile.gettempdir()) / ("hd-unit-tree-%d" % os.getuid())
    link = tree / "ansible_collections" / "hangdoctor" / "runtime"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink() or os.readlink(link) != str(COLL):
        if link.is_symlink():
            link.unlink()
        link.symlink_to(COLL)
    return tree


sys.path.insert(0, str(_tree()))
