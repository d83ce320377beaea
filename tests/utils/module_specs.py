"""What a module declares and what it documents, read without running it."""
import ast
import importlib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("*.py") if not p.name.startswith("_"))


class _Captured(Exception):
    pass


def module_kwargs(name):
    """The keyword arguments main() of module NAME hands AnsibleModule."""
    mod = importlib.import_module("ansible_collections.hangdoctor.runtime.plugins.modules.%s" % name)
    seen = {}

    def capture(**kw):
        seen.update(kw)
        raise _Captured()
    original = mod.AnsibleModule
    mod.AnsibleModule = capture
    try:
        mod.main()
    except _Captured:
        pass
    finally:
        mod.AnsibleModule = original
    return seen


def argument_spec(name):
    return module_kwargs(name)["argument_spec"]


def _string(path, attr):
    tree = ast.parse(Path(path).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == attr for t in node.targets):
            return node.value.value if hasattr(node.value, "value") else node.value.s
    raise KeyError("%s has no %s" % (path, attr))


def fragment(ref):
    """The YAML of doc fragment REF (hangdoctor.runtime.NAME[.VARIANT])."""
    parts = ref.split(".")
    assert parts[:2] == ["hangdoctor", "runtime"], ref
    attr = parts[3].upper() if len(parts) > 3 else "DOCUMENTATION"
    return yaml.safe_load(_string(ROOT / "plugins" / "doc_fragments" / ("%s.py" % parts[2]), attr)) or {}


def documented_options(name):
    """{option: doc} of module NAME with its doc fragments merged in."""
    doc = yaml.safe_load(_string(ROOT / "plugins" / "modules" / ("%s.py" % name), "DOCUMENTATION"))
    options = {}
    for ref in doc.get("extends_documentation_fragment") or []:
        options.update(fragment(ref).get("options") or {})
    options.update(doc.get("options") or {})
    return options
