#!/usr/bin/env bash
# The demo (`make demo`): a private containerd + dockerd, two containers (shim v2
# and shim v1), a real runc-init stderr-pipe deadlock in each, what it looks like
# from the outside (docker ps answers, docker inspect hangs), and the /proc
# evidence.  Everything is stopped and removed at the end.
set -euo pipefail
HD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export HD_ROOT
source "$HD_ROOT/scripts/bootstrap.sh"

export HANGDOCTOR_HARNESS_DIR=$(mktemp -d /tmp/hd-demo-XXXXXX)
H="$HD_ROOT/tests/integration/harness.sh"
trap '"$H" down >/dev/null 2>&1 || true' EXIT
DOCKER="docker -H unix://$HANGDOCTOR_HARNESS_DIR/docker/d.sock"

hd_log "starting a private containerd + dockerd under $HANGDOCTOR_HARNESS_DIR"
"$H" up
"$H" run web-v2 >/dev/null
"$H" run web-v1 --v1 >/dev/null
$DOCKER ps --format 'table {{.Names}}\t{{.ID}}\t{{.Status}}'

for c in web-v2 web-v1; do
    hd_log "an exec probe in $c: runc init crashes and blocks writing its dump to the shim's pipe"
    "$H" hang "$c"
done

hd_log "docker ps still answers"
time timeout 5 $DOCKER ps --format '{{.Names}}'
hd_log "docker inspect web-v2 hangs (cut off after 5 s)"
rc=0; time timeout 5 $DOCKER inspect -f '{{.State.Status}}' web-v2 || rc=$?
[ $rc -eq 124 ] && echo ">>> docker inspect did not answer within 5 s (exit $rc): the container is hung"

hd_log "the evidence, from /proc alone"
"$H" status

hd_log "releasing the hangs (the harness kills the fault runtime's processes)"
"$H" release
sleep 1
time timeout 5 $DOCKER inspect -f '{{.Name}} {{.State.Status}}' web-v2 web-v1
