"""The manifest fixture tree, shared by the unit and end-to-end tests of
exec_probe_swap."""
import shutil
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[3] / "unit" / "fixtures" / "manifests"


def copy_manifests(dest):
    """The fixture tree with multi-document files under their real names
    (stored as *.yaml.txt because ansible-test's yamllint rejects them)."""
    shutil.copytree(str(FIXTURES), str(dest))
    for p in Path(dest).rglob("*.yaml.txt"):
        p.rename(p.with_suffix(""))
    return Path(dest)
