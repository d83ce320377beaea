#!/usr/bin/env bash
# The one test entry point (`make test`): installs what it needs, lays the
# collection out as ansible_collections/hangdoctor/runtime, and runs every
# phase.  HD_PHASES="unit sanity" runs a subset.  Exits non-zero on any failure.
set -uo pipefail
HD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export HD_ROOT
source "$HD_ROOT/scripts/bootstrap.sh" || exit 2
set +e

PHASES=${HD_PHASES:-"unit compat build sanity integration lint molecule"}
TREE=$(hd_layout)
COLL="$TREE/ansible_collections/hangdoctor/runtime"
export ANSIBLE_COLLECTIONS_PATH="$TREE"
export ANSIBLE_PYTHON_INTERPRETER="$HD_PY"
export HD_COLLECTION_DIR="$COLL"
cleanup() { rm -rf "$TREE"; }
trap cleanup EXIT

declare -A RESULT
failed=0
run_phase() {
    local name=$1; shift
    case " $PHASES " in *" $name "*) ;; *) return 0 ;; esac
    hd_log "phase $name"
    local t0=$SECONDS
    ( cd "$COLL" && "$@" )
    local rc=$?
    RESULT[$name]="rc=$rc $((SECONDS - t0))s"
    [ $rc -eq 0 ] || failed=1
}

# Module and module_utils code runs on target Pythons 3.6 to 3.13: byte-compile
# it with every such interpreter that pyenv has.
compat() {
    local rc=0 found=0
    for v in 3.6 3.7 3.8 3.9 3.10 3.11 3.12 3.13; do
        local py
        py=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin/python"$v" 2>/dev/null | head -n1)
        [ -n "$py" ] || py=$(command -v "python$v" 2>/dev/null)
        [ -n "$py" ] && [ -x "$py" ] || { echo "compat: python$v not found, skipped"; continue; }
        found=$((found + 1))
        if "$py" tests/utils/compile_targets.py plugins/modules plugins/module_utils; then
            echo "compat: python$v ok"
        else
            echo "compat: python$v FAILED"; rc=1
        fi
    done
    [ $found -gt 0 ] || { echo "compat: no target interpreters found"; return 1; }
    return $rc
}

pytest_phase() {
    "$HD_PY" -m pytest -p no:cacheprovider "$@"
    local rc=$?
    [ $rc -eq 5 ] && { echo "no tests collected in $*"; return 1; }
    return $rc
}

# The collection builds into a tarball that installs (without Galaxy).
build() {
    local out
    out=$(mktemp -d)
    ansible-galaxy collection build --output-path "$out" . &&
        ansible-galaxy collection install --force --no-deps -p "$out/installed" "$out"/hangdoctor-runtime-*.tar.gz &&
        test -f "$out/installed/ansible_collections/hangdoctor/runtime/MANIFEST.json"
    local rc=$?
    rm -rf "$out"
    return $rc
}

run_phase unit pytest_phase -q tests/unit
run_phase compat compat
run_phase build build
run_phase sanity ansible-test sanity --local --python 3.11 --color no
run_phase integration pytest_phase -v --timeout 900 tests/integration
run_phase lint bash tests/utils/lint.sh
run_phase molecule bash tests/utils/molecule.sh

hd_log "summary"
for p in $PHASES; do
    echo "  $p: ${RESULT[$p]:-not run}"
done
exit $failed
