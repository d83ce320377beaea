"""The execution environment builds up to the container build, offline.

From the collection's built tarball: ``ansible-builder introspect`` reads the
collection-level dependencies (meta/execution-environment.yml, paths relative
to the collection root); ``ansible-builder create`` turns
extras/awx/ee/execution-environment.yml (paths relative to itself) into a build
context; then every step of the generated Containerfile is checked: each COPY
source exists in the context, each RUN names a command that exists, and the
steps that install and check collections are run here as the build would run
them (``--offline``: no Galaxy), against a private collections directory.
``ansible-builder build`` itself needs the base image registry: not run here."""
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ENV_BASE = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
ENV_BASE["PATH"] = "%s:%s" % (BIN, os.environ.get("PATH", ""))
# The builder's own steps and the shell commands ansible-builder 3 generates.
KNOWN_COMMANDS = {"ansible-galaxy", "ansible-doc", "mkdir", "chmod", "chgrp", "rm", "grep", "$PYCMD", "$PKGMGR"}
# The shell's own words in the builder's python_interpreter step ("$PKGMGR install
# $PYPKG -y ; if [ -z $PKGMGR_PRESERVE_CACHE ]; then $PKGMGR clean all; fi").
SHELL_WORDS = {"if", "then", "else", "fi"}


def sh(cmd, cwd=None, env=None, timeout=120):
    e = dict(ENV_BASE)
    e.update(env or {})
    return subprocess.run(cmd, cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout,
                          shell=isinstance(cmd, str), check=False)


def ok(r):
    assert r.returncode == 0, (r.args, r.stdout[-3000:], r.stderr[-3000:])
    return r


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The collection tarball, installed with --no-deps as an EE installs it."""
    tmp = tmp_path_factory.mktemp("ee")
    ok(sh(["ansible-galaxy", "collection", "build", "--output-path", str(tmp), str(ROOT)]))
    (tarball,) = tmp.glob("hangdoctor-runtime-*.tar.gz")
    ok(sh(["ansible-galaxy", "collection", "install", "--no-deps", "-p", str(tmp / "inst"), str(tarball)]))
    return tmp, tarball


def containerfile_steps(path):
    """(instruction, argument) pairs, continuation lines joined."""
    steps, buf = [], ""
    for line in Path(path).read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        buf += line.rstrip("\\") + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            instr, dummy, arg = buf.strip().partition(" ")
            steps.append((instr.upper(), arg.strip()))
            buf = ""
    return steps


def run_commands(arg):
    """The commands of one RUN line (split on && ; |)."""
    return [shlex.split(part) for part in re.split(r"&&|\|\||;|\|", arg) if part.strip()]


def check_run_line(arg, context):
    """Every command of a RUN line exists: a builder script in the context, a
    known tool; ansible-galaxy sub-commands parse (see the negative test)."""
    problems = []
    for words in run_commands(arg):
        while words and (re.match(r"^[A-Z_]+=", words[0]) or words[0] in SHELL_WORDS):  # VAR=value prefix, if/then
            words = words[1:]
        if not words or words[0] == "[":  # a test ([ -z … ]) or a bare fi
            continue
        cmd = words[0]
        if cmd.startswith("/output/scripts/"):
            if not (context / "_build" / "scripts" / cmd.rsplit("/", 1)[1]).is_file():
                problems.append("missing builder script %s" % cmd)
        elif cmd not in KNOWN_COMMANDS:
            problems.append("unknown command %r in %r" % (cmd, arg))
        if cmd == "$PYCMD" and len(words) > 1 and words[1].startswith("/output/scripts/"):
            if not (context / "_build" / "scripts" / words[1].rsplit("/", 1)[1]).is_file():
                problems.append("missing builder script %s" % words[1])
        if cmd == "ansible-galaxy":
            argv = [w for w in words[1:] if not w.startswith("$")]
            if argv[:1] == ["collection"] and argv[1:2] == ["list"] and \
                    len([w for w in argv[2:] if not w.startswith("-") and "." in w]) > 1:
                problems.append("`ansible-galaxy collection list` takes one collection: %r" % arg)
    return problems


def test_introspect_reads_the_collection_dependencies(built, tmp_path):
    tmp = built[0]
    meta = yaml.safe_load((tmp / "inst/ansible_collections/hangdoctor/runtime/meta/execution-environment.yml").read_text())
    for kind in ("python", "system"):
        assert (tmp / "inst/ansible_collections/hangdoctor/runtime" / meta["dependencies"][kind]).is_file(), kind
    r = ok(sh(["ansible-builder", "introspect", str(tmp / "inst"), "--write-pip", str(tmp_path / "pip.txt"),
               "--write-bindep", str(tmp_path / "bindep.txt")]))
    assert "FileNotFoundError" not in r.stdout + r.stderr
    pip = (tmp_path / "pip.txt").read_text()
    assert re.search(r"^kubernetes>=24\.2\.0\s+# from collection hangdoctor\.runtime", pip, re.M), pip
    from packaging.requirements import Requirement
    for line in pip.splitlines():
        if line.strip() and not line.startswith("#"):
            Requirement(line.split("#")[0].strip())  # raises on a line pip would refuse
    from bindep.depends import Depends
    bindep = (tmp_path / "bindep.txt").read_text()
    assert "python3-devel [platform:rpm compile]" in bindep
    Depends(bindep)  # raises on a line bindep would refuse


def test_create_gives_a_context_whose_every_step_is_valid(built, tmp_path):
    tarball = built[1]
    definition = tmp_path / "ee"
    shutil.copytree(ROOT / "extras/awx/ee", definition)
    shutil.copy(tarball, definition)  # as docs/awx.md says: build the tarball next to the definition
    ctx = tmp_path / "context"
    r = ok(sh(["ansible-builder", "create", "-f", str(definition / "execution-environment.yml"), "-c", str(ctx),
               "--output-filename", "Containerfile"]))
    assert "No matches" not in r.stdout + r.stderr and "does not exist" not in r.stdout + r.stderr
    steps = containerfile_steps(ctx / "Containerfile")
    problems = []
    for instr, arg in steps:
        if instr == "COPY" and not arg.startswith("--from"):
            src = shlex.split(arg)[0]
            if not (ctx / src).exists():
                problems.append("COPY source %s is not in the context" % src)
        if instr == "RUN":
            problems += check_run_line(arg, ctx)
        if instr == "ARG" and arg.startswith("ANSIBLE_INSTALL_REFS="):
            from packaging.requirements import Requirement
            for ref in shlex.split(arg.partition("=")[2])[0].split():
                Requirement(ref)
    assert not problems, problems

    # The galaxy stage, run here: WORKDIR /build holds _build; Galaxy is
    # unreachable, so --offline (kubernetes.core then comes from PyPI's ansible).
    build = tmp_path / "build"
    shutil.copytree(ctx / "_build", build)
    share = tmp_path / "usr-share-ansible"
    galaxy_runs = [arg for instr, arg in steps if instr == "RUN" and "ansible-galaxy" in arg and "-r requirements.yml" in arg]
    assert len(galaxy_runs) == 2, galaxy_runs  # roles, then collections
    for arg in galaxy_runs:
        cmd = arg.replace("/usr/share/ansible", str(share)).replace("$ANSIBLE_GALAXY_CLI_COLLECTION_OPTS", "--offline")
        cmd = cmd.replace("$ANSIBLE_GALAXY_CLI_ROLE_OPTS", "")
        ok(sh(cmd, cwd=build))
    installed = share / "collections/ansible_collections/hangdoctor/runtime"
    assert (installed / "MANIFEST.json").is_file() and (installed / "plugins/modules/node_doctor.py").is_file()

    # The builder stage's introspection, with the context's own script.
    ok(sh([sys.executable, str(ctx / "_build/scripts/introspect.py"), "introspect", str(share / "collections"),
           "--write-pip", str(tmp_path / "req.txt"), "--write-bindep", str(tmp_path / "bindep.txt")]))
    assert "kubernetes" in (tmp_path / "req.txt").read_text()

    # The final stage's checks (append_final), against that collections path.
    final = [arg for instr, arg in steps
             if instr == "RUN" and ("hangdoctor.runtime" in arg or "kubernetes.core" in arg)]
    assert len(final) == 2, final
    for arg in final:
        ok(sh(arg, cwd=tmp_path, env={"ANSIBLE_COLLECTIONS_PATH": str(share / "collections")}))
    # ... and they can fail: without the collection the check stops the build.
    empty = tmp_path / "empty"
    (empty / "ansible_collections").mkdir(parents=True)
    r = sh(final[0], cwd=tmp_path, env={"ANSIBLE_COLLECTIONS_PATH": str(empty)})
    assert r.returncode != 0, r.stdout


def test_the_requirements_file_names_the_tarball_that_galaxy_yml_builds():
    version = yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"]
    reqs = yaml.safe_load((ROOT / "extras/awx/ee/requirements.yml").read_text())["collections"]
    files = [c["name"] for c in reqs if c.get("type") == "file"]
    assert files == ["collections/hangdoctor-runtime-%s.tar.gz" % version]


def test_the_step_checker_rejects_what_the_old_definition_had(tmp_path):
    (tmp_path / "_build/scripts").mkdir(parents=True)
    assert check_run_line("ansible-galaxy collection list hangdoctor.runtime kubernetes.core", tmp_path)
    assert check_run_line("/output/scripts/no_such_script", tmp_path)
    assert check_run_line("ansbile-galaxy collection list", tmp_path)
    assert not check_run_line("ansible-galaxy collection verify --offline hangdoctor.runtime", tmp_path)
    # and ansible-galaxy itself refuses the old line
    r = sh(["ansible-galaxy", "collection", "list", "hangdoctor.runtime", "kubernetes.core"])
    assert r.returncode != 0 and "unrecognized arguments" in r.stderr


def containerfile_args(path):
    return dict(arg.partition("=")[::2] for instr, arg in containerfile_steps(path) if instr == "ARG" and "=" in arg)


def test_the_build_installs_ansible_core_for_a_python_it_supports(tmp_path):
    """awx-ee (CentOS Stream 9) has python3 3.9; ansible-core 2.16 and later
    need 3.10 or later, so the builder must install ansible-core, the runner
    and the collection's Python dependencies for a newer interpreter that the
    same definition installs (python_interpreter), not for ``python3``."""
    definition = tmp_path / "ee"
    shutil.copytree(ROOT / "extras/awx/ee", definition)
    (definition / "hangdoctor-runtime-0.0.0.tar.gz").write_bytes(b"")
    ctx = tmp_path / "context"
    ok(sh(["ansible-builder", "create", "-f", str(definition / "execution-environment.yml"), "-c", str(ctx),
           "--output-filename", "Containerfile"]))
    args = dict((k, v.strip('"')) for k, v in containerfile_args(ctx / "Containerfile").items())
    base = args["EE_BASE_IMAGE"]
    assert base.startswith("quay.io/ansible/awx-ee") and not base.endswith(":latest"), base
    m = re.match(r"^/usr/bin/python(\d+)\.(\d+)$", args["PYCMD"])
    assert m, "the build would use awx-ee's python3 (3.9): %s" % args["PYCMD"]
    assert (int(m.group(1)), int(m.group(2))) >= (3, 10), args["PYCMD"]
    assert args["PYPKG"] == "python%s.%s" % m.groups()  # the same definition installs it
    from packaging.requirements import Requirement
    refs = [Requirement(r) for r in args["ANSIBLE_INSTALL_REFS"].split()]
    core = [r for r in refs if r.name == "ansible-core"]
    assert core and all(v.startswith("2.1") or v.startswith("2.2") for v in
                        [s.version for s in core[0].specifier if s.operator == ">="]), refs
    # requires_ansible of the collection is what the EE installs
    runtime = yaml.safe_load((ROOT / "meta/runtime.yml").read_text())["requires_ansible"]
    assert runtime.replace(">=", "").startswith(str(core[0].specifier).replace(">=", "").rstrip(".0")), (runtime, core)
