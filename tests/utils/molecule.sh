#!/usr/bin/env bash
# Every molecule scenario under extensions/molecule/ (default driver, localhost).
set -uo pipefail
shopt -s nullglob
scenarios=(extensions/molecule/*/molecule.yml)
if [ ${#scenarios[@]} -eq 0 ]; then
    echo "molecule: no scenarios yet"
    exit 0
fi
rc=0
cd extensions
for s in "${scenarios[@]}"; do
    name=$(basename "$(dirname "$s")")
    echo "--- molecule test -s $name"
    molecule test -s "$name" || rc=1
done
exit $rc
