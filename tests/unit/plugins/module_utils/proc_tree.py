"""Fixture /proc trees for the unit tests.

The trees under tests/unit/fixtures/proc are plain files so that git and
collection builds carry them (dangling symlinks are not allowed there):
``PID/fd/N``, ``PID/ns/KIND``, ``PID/cwd``, ``PID/root`` and ``PID/exe`` hold the link text.  ``materialize``
copies a tree and turns those into the symlinks /proc has (``pipe:[INODE]``;
``tree:REL`` points into the copy)."""
import os
import shutil
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "proc"


def materialize(name, dest):
    root = Path(dest) / name
    shutil.copytree(str(FIXTURES / name), str(root))
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).parts
        is_link = (len(rel) == 3 and rel[0].isdigit() and rel[1] in ("fd", "ns")) or \
                  (len(rel) == 2 and rel[0].isdigit() and rel[1] in ("cwd", "root", "exe"))
        if not is_link or not path.is_file():
            continue
        target = path.read_text()
        if target.startswith("tree:"):
            target = str(root / target[5:])
        path.unlink()
        os.symlink(target, str(path))
    return str(root)


def set_field(root, pid, name, text):
    Path(root, str(pid), name).write_text(text)


def probe_from(table):
    """A pipe_probe: TABLE maps pid -> (queued, capacity) or a list of them
    (one per call, the last one repeating)."""
    calls = {}

    def probe(pid, fd, inode):
        value = table[pid]
        if isinstance(value, list):
            n = calls.get(pid, 0)
            calls[pid] = n + 1
            value = value[min(n, len(value) - 1)]
        return value
    return probe
