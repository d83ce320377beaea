"""One source of truth for options and rules.

The option groups of plugins/module_utils/_options.py are the only place a
shared option is defined: the doc fragments are generated from them, every
module documents exactly what it declares, the action groups and the roles
agree with them.  An ast walk over module_utils keeps the wiring narrow (no
function over 8 parameters, no call with more than 4 positional arguments)
and every exception under one base."""
import ast
import subprocess
import sys

import pytest
import yaml

from module_specs import MODULES, ROOT, argument_spec, documented_options

from ansible_collections.hangdoctor.runtime.plugins.module_utils import _options

MODULE_UTILS = ROOT / "plugins" / "module_utils"
MAX_PARAMS = 8
MAX_POSITIONAL = 4


def _sources():
    return sorted(MODULE_UTILS.glob("*.py"))


# ---- the ast walk --------------------------------------------------------------
def test_no_function_takes_more_than_8_parameters():
    wide = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.Lambda)):
                a = node.args
                params = [x.arg for x in a.args + a.kwonlyargs]
                params += [x.arg for x in (a.vararg, a.kwarg) if x is not None]
                if params and params[0] in ("self", "cls"):
                    params = params[1:]
                if len(params) > MAX_PARAMS:
                    wide.append("%s:%d %s (%d)" % (path.name, node.lineno, getattr(node, "name", "lambda"), len(params)))
    assert not wide, wide


def test_no_call_passes_more_than_4_positional_arguments():
    wide = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                positional = [x for x in node.args if not isinstance(x, ast.Starred)]
                if len(positional) > MAX_POSITIONAL:
                    wide.append("%s:%d %s (%d)" % (path.name, node.lineno, ast.unparse(node.func), len(positional)))
    assert not wide, wide


BUILTIN_EXCEPTIONS = set(n for n in dir(__builtins__ if isinstance(__builtins__, dict) else __builtins__)
                         if n.endswith(("Error", "Exception", "Exit", "Interrupt")) or n == "StopIteration")
BUILTIN_EXCEPTIONS |= set(n for n, v in vars(__import__("builtins")).items()
                          if isinstance(v, type) and issubclass(v, BaseException))


def test_every_exception_class_derives_from_hangdoctor_error():
    classes = {}
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = [b.id if isinstance(b, ast.Name) else b.attr if isinstance(b, ast.Attribute) else None
                         for b in node.bases]
                classes["%s.%s" % (path.stem, node.name)] = (node.name, bases)
    by_name = {}
    for key, (name, bases) in classes.items():
        by_name.setdefault(name, []).append(bases)

    def reaches(name, target, seen=()):
        if name == target:
            return True
        if name in seen:
            return False
        return any(reaches(b, target, seen + (name,)) for bases in by_name.get(name, []) for b in bases if b)

    exceptions = [key for key, (name, bases) in classes.items()
                  if any(reaches(b, b2) for b in bases if b for b2 in BUILTIN_EXCEPTIONS)]
    assert len(exceptions) > 10
    outside = [key for key in exceptions if classes[key][0] != "HangdoctorError"
               and not reaches(classes[key][0], "HangdoctorError")]
    assert not outside, outside


# ---- modules, fragments, action groups -------------------------------------------
def test_doc_fragments_are_generated_from_the_groups():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_option_docs.py"), "--check"],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, "run scripts/gen_option_docs.py: %s%s" % (r.stdout, r.stderr)


def _norm(value):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    return value


@pytest.mark.parametrize("module", MODULES)
def test_every_module_documents_exactly_what_it_declares(module):
    spec = argument_spec(module)
    docs = documented_options(module)
    assert sorted(docs) == sorted(spec), (module, set(docs) ^ set(spec))
    for name, opts in spec.items():
        doc = docs[name]
        for key, missing in (("type", "str"), ("default", None), ("choices", None), ("elements", None)):
            assert _norm(doc.get(key, missing)) == _norm(opts.get(key, missing)), (module, name, key)
        assert sorted(doc.get("aliases") or []) == sorted(opts.get("aliases") or []), (module, name)


def _group_members(group):
    """The modules that take every option of GROUP under the group's own names."""
    members = []
    for module in MODULES:
        spec = argument_spec(module)
        mine = group.argument_spec()
        if all(name in spec and spec[name].get("type") == o.get("type") and spec[name].get("default") == o.get("default")
               for name, o in mine.items()):
            members.append(module)
    return members


def test_action_groups_are_the_modules_of_each_group():
    runtime = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())
    expected = dict((g.name, _group_members(g)) for g in _options.GROUPS if g.action_group)
    assert dict((k, sorted(v)) for k, v in runtime["action_groups"].items()) == expected


def test_node_doctor_and_runc_pipe_drain_build_the_same_drain_options():
    """The same user values reach the drain the same way from both modules."""
    values = {"min_age_seconds": 7.0, "timeout": 9.0, "fallback": "kill", "max_rounds": 2, "evidence_dir": "/e",
              "lock_dir": "/l", "evidence_retention_count": 3, "evidence_retention_bytes": 4,
              "evidence_retention_days": 5, "max_evidence_bytes": 6, "confirm_interval": 0.5, "peek_bytes": 8,
              "proc_root": "/proc"}
    drain_module = _options.drain_run(values)
    node = dict(values)
    node["drain_min_age_seconds"], node["drain_timeout"] = node.pop("min_age_seconds"), node.pop("timeout")
    node["min_age_seconds"] = 0  # the scan's threshold in node_doctor
    from ansible_collections.hangdoctor.runtime.plugins.module_utils import _node_doctor
    assert _node_doctor.options(node).drain_run == drain_module
    assert _node_doctor.options(node).scan.min_age_seconds == 0


@pytest.mark.parametrize("group", _options.GROUPS, ids=[g.name for g in _options.GROUPS])
def test_group_checks_name_the_option_as_the_module_does(group):
    names = _options.FRAGMENT_VARIANTS.get(group.name, {}).get("node_doctor", {})
    for o, public in group.public(names):
        if o.bounds is None:
            continue
        with pytest.raises(_options.OptionError) as e:
            group.values({public: float("nan")}, names)
        assert str(e.value).startswith(public + " must be")


# ---- roles ------------------------------------------------------------------------
ROLES_ON_NODE_DOCTOR = ("detect", "remediate")


def _tasks(items):
    for task in items or []:
        yield task
        for key in ("block", "rescue", "always"):
            yield from _tasks(task.get(key))


def _node_doctor_vars(role):
    """{node_doctor option: role variables} as the role's tasks (and their module_defaults) hand them over."""
    out = {}
    for path in (ROOT / "roles" / role / "tasks").glob("*.yml"):
        for task in _tasks(yaml.safe_load(path.read_text())):
            for args in (task.get("hangdoctor.runtime.node_doctor"),
                         (task.get("module_defaults") or {}).get("hangdoctor.runtime.node_doctor")):
                for opt, value in (args or {}).items() if isinstance(args, dict) else ():
                    inner = value.strip("{} \n") if isinstance(value, str) and value.startswith("{{") else ""
                    if inner.startswith("hangdoctor_"):
                        out.setdefault(opt, set()).add(inner.split("|")[0].strip())
    return out


@pytest.mark.parametrize("role", ROLES_ON_NODE_DOCTOR)
def test_role_options_have_the_module_option_type_and_default(role):
    spec = argument_spec("node_doctor")
    defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())
    arg_opts = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())[
        "argument_specs"]["main"]["options"]
    mapping = _node_doctor_vars(role)
    assert len(mapping) >= 15, mapping
    for opt, variables in mapping.items():
        for var in variables:
            assert var in arg_opts, (role, var)
            if opt == "mode":
                continue
            want = spec[opt]
            assert _norm(defaults.get(var)) == _norm(want.get("default")), (role, var, defaults.get(var), want.get("default"))
            assert _norm(arg_opts[var].get("default")) == _norm(want.get("default")), (role, var)
            if want["type"] != "raw":
                assert arg_opts[var]["type"] == want["type"], (role, var, arg_opts[var]["type"], want["type"])
            for key in ("choices", "elements"):
                assert arg_opts[var].get(key) == want.get(key), (role, var, key)


# Each documented role option fed a bad value: Ansible's role validation (the
# validator the roles' "Check the role options" task runs) refuses a wrong type
# or choice; a string the validator cannot judge reaches node_doctor, whose
# option groups refuse it.  Some strings have no bad value.
FREE_TEXT = {
    "hangdoctor_report_host": "an inventory host name, checked by delegate_to",
    "hangdoctor_kube_node_name": "a Kubernetes node name as the API knows it",
    "hangdoctor_kubeconfig": "a file on the controller, read by kubernetes.core",
    "hangdoctor_kube_context": "a kubeconfig context name",
    "hangdoctor_report_dir": "auto, empty, or a directory on the report host",
}
BAD_BY_TYPE = {"int": "many", "float": "soon", "bool": "maybe", "list": {"a": 1}, "dict": "a string"}
BAD_FOR_NODE_DOCTOR = {
    "docker_host": "ftp://node1:21", "containerd_address": "relative.sock", "containerd_namespace": "a/b",
    "metrics_dir": "relative/dir", "metrics_file": "../escape.prom", "evidence_dir": "relative/evidence",
    "lock_dir": "relative/locks", "require_guard": "sometimes", "proc_root": "/etc",
}


def _role_options():
    out = []
    for role in ("detect", "remediate", "report"):
        spec = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
        for name, opts in spec["argument_specs"]["main"]["options"].items():
            out.append((role, name, opts))
    return out


@pytest.mark.parametrize("role,name,opts", _role_options(), ids=["%s:%s" % (r, n) for r, n, o in _role_options()])
def test_every_role_option_refuses_a_bad_value(role, name, opts, capsys):
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    if name in FREE_TEXT:
        assert opts["type"] == "str"
        return
    spec = {name: opts}
    if opts.get("choices"):
        bad = "bogus"
    elif opts["type"] in BAD_BY_TYPE:
        bad = BAD_BY_TYPE[opts["type"]]
    else:
        bad = None
    if bad is not None:
        errors = ArgumentSpecValidator(spec).validate({name: bad}, validate_role_argument_spec=True).error_messages
        assert errors and name in errors[0], (name, errors)
        return
    # a string: node_doctor's option is the check
    options = dict((opt, var) for r in ROLES_ON_NODE_DOCTOR for opt, variables in _node_doctor_vars(r).items()
                   for var in variables)
    by_var = dict((var, opt) for opt, var in options.items())
    if name == "hangdoctor_kube_guard":
        opt = "require_guard"
    else:
        assert name in by_var, "%s: no bad value and no node_doctor option checks it" % name
        opt = by_var[name]
    from ansible_collections.hangdoctor.runtime.plugins.modules import node_doctor
    sys.path.insert(0, str(ROOT / "tests" / "unit" / "plugins" / "modules"))
    from module_runner import run_main
    result = run_main(node_doctor, {opt: BAD_FOR_NODE_DOCTOR[opt], "kernel_log": False, "metrics_dir": ""}
                      if opt != "metrics_dir" else {opt: BAD_FOR_NODE_DOCTOR[opt]}, capsys)
    assert result.get("failed") and (opt in result["msg"] or "not a procfs" in result["msg"]), (name, result)
