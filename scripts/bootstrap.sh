#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh machine (as root):
# Debian's container runtime and a pinned Python virtualenv.  Sourced by
# tests/run-tests.sh and scripts/demo.sh; exports HD_VENV and HD_PY.
set -euo pipefail
HD_ROOT=${HD_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}

hd_log() { printf '\n==> %s\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
    echo "hangdoctor: the tests and the demo start dockerd and containerd: run them as root" >&2
    exit 2
fi

HD_DEBS=(docker.io containerd runc busybox-static gcc libc6-dev git make tar prometheus prometheus-node-exporter)
missing=()
for p in "${HD_DEBS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    hd_log "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's docker.io may start a system dockerd where an init system exists; the
# harness runs its own daemons on private sockets and never touches that one.

HD_PYTHON=${HD_PYTHON:-python3}
req_hash=$(sha256sum "$HD_ROOT/tests/requirements.txt" | cut -c1-12)
HD_VENV=${HD_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/hangdoctor/venv-$req_hash}
if [ ! -x "$HD_VENV/bin/ansible-playbook" ] || [ ! -f "$HD_VENV/.complete" ]; then
    hd_log "creating the virtualenv $HD_VENV"
    rm -rf "$HD_VENV"
    "$HD_PYTHON" -m venv "$HD_VENV"
    "$HD_VENV/bin/pip" install -q --disable-pip-version-check -r "$HD_ROOT/tests/requirements.txt" 2>&1 \
        | grep -v "^WARNING: Location" || true
    "$HD_VENV/bin/python" -c "import ansible, psutil, pytest, molecule" 
    touch "$HD_VENV/.complete"
fi
HD_PY="$HD_VENV/bin/python"
export HD_VENV HD_PY
export PATH="$HD_VENV/bin:$PATH"

# ansible-test bootstraps pip in its sanity virtualenvs with a downloaded
# get-pip script; none is reachable here, so put the offline stand-in where
# it looks first.
pip_ver=$(sed -n "s/^ *pip='\([0-9.]*\)',*$/\1/p" \
    "$HD_VENV"/lib/python3*/site-packages/ansible_test/_internal/python_requirements.py | head -n1)
if [ -n "$pip_ver" ]; then
    mkdir -p "$HOME/.ansible/test/cache"
    cp "$HD_ROOT/tests/utils/get_pip_standin.py" "$HOME/.ansible/test/cache/get_pip_${pip_ver//./_}.py"
fi

# Lay the collection out where Ansible and ansible-test look for it:
# <tree>/ansible_collections/hangdoctor/runtime, as a git checkout.
hd_layout() {
    local tree
    tree=$(mktemp -d /tmp/hd-coll-XXXXXX)
    local dest="$tree/ansible_collections/hangdoctor/runtime"
    mkdir -p "$dest"
    (cd "$HD_ROOT" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) | tar -C "$dest" -xf -
    (cd "$dest" && git init -q && git add -A && git -c user.name=t -c user.email=t@t commit -qm layout)
    echo "$tree"
}

# A second controller with ansible-core 2.16, the last release that manages
# Python 3.6 targets (CentOS 7-era fleets), for the compatibility run.
compat_hash=$(sha256sum "$HD_ROOT/tests/requirements-compat.txt" | cut -c1-12)
HD_VENV_COMPAT=${HD_VENV_COMPAT:-${XDG_CACHE_HOME:-$HOME/.cache}/hangdoctor/venv216-$compat_hash}
if [ ! -f "$HD_VENV_COMPAT/.complete" ]; then
    hd_log "creating the ansible-core 2.16 virtualenv $HD_VENV_COMPAT"
    rm -rf "$HD_VENV_COMPAT"
    "$HD_PYTHON" -m venv "$HD_VENV_COMPAT"
    "$HD_VENV_COMPAT/bin/pip" install -q --disable-pip-version-check -r "$HD_ROOT/tests/requirements-compat.txt" 2>&1 \
        | grep -v "^WARNING: Location" || true
    "$HD_VENV_COMPAT/bin/ansible" --version >/dev/null
    touch "$HD_VENV_COMPAT/.complete"
fi
HD_PY36=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.6.*/bin/python3.6 2>/dev/null | head -n1 || true)
export HD_VENV_COMPAT HD_PY36
