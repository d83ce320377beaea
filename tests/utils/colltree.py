"""Where ``ansible_collections/hangdoctor/runtime`` is this checkout: the
checkout itself when tests/run-tests.sh laid it out there, otherwise a private
symlink tree under /tmp (for running pytest straight from a clone)."""
import hashlib
import os
import tempfile
from pathlib import Path

COLL = Path(__file__).resolve().parents[2]


def collections_path():
    if COLL.parent.name == "hangdoctor" and COLL.parent.parent.name == "ansible_collections":
        return str(COLL.parents[2])
    # One tree per checkout: two clones (or git worktrees) tested at once must
    # not swap each other's symlink.
    tag = hashlib.sha256(str(COLL).encode()).hexdigest()[:10]
    tree = Path(tempfile.gettempdir()) / ("hd-unit-tree-%d-%s" % (os.getuid(), tag))
    link = tree / "ansible_collections" / "hangdoctor" / "runtime"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink() or os.readlink(link) != str(COLL):
        if link.is_symlink():
            link.unlink()
        link.symlink_to(COLL)
    return str(tree)
