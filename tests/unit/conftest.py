"""Make ``ansible_collections.hangdoctor.runtime`` importable for the unit tests."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "utils"))

from colltree import collections_path  # noqa: E402

sys.path.insert(0, collections_path())
