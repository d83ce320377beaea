#!/usr/bin/env bash
# The real-runtime harness for people: up | run NAME [--v1] | hang NAME [--v1] [--size N]
# | status | release | env | down.  State lives in $HANGDOCTOR_HARNESS_DIR
# (default /tmp/hangdoctor-harness).  Run as root.
# The containerd-CRI node (no dockerd): cri up | pod NAME | hang NAME | status | release | env | down.
here="$(dirname "$(readlink -f "$0")")"
if [ "${1:-}" = cri ]; then
    shift
    exec python3 "$here/harness/cri/harness.py" "$@"
fi
exec python3 "$here/harness/hdharness.py" "$@"
