#!/usr/bin/env bash
# The real-runtime harness for people: up | run NAME [--v1] | hang NAME [--v1] [--size N]
# | status | release | env | down.  State lives in $HANGDOCTOR_HARNESS_DIR
# (default /tmp/hangdoctor-harness).  Run as root.
exec python3 "$(dirname "$(readlink -f "$0")")/harness/hdharness.py" "$@"
