#!/usr/bin/env bash
# The end of the demo (`make demo`): one node, three containers hung by three
# different causes, and node_doctor naming each cause with its evidence and the
# safe action.  Uses the harness of $HANGDOCTOR_HARNESS_DIR when it is up (as
# scripts/demo.sh leaves it), else starts and stops its own.
set -euo pipefail
HD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export HD_ROOT
source "$HD_ROOT/scripts/bootstrap.sh"
H="$HD_ROOT/tests/integration/harness.sh"
OWN=0
if [ -z "${HANGDOCTOR_HARNESS_DIR:-}" ] || [ ! -S "$HANGDOCTOR_HARNESS_DIR/docker/d.sock" ]; then
    export HANGDOCTOR_HARNESS_DIR=$(mktemp -d /tmp/hd-triage-XXXXXX)
    OWN=1
    "$H" up
fi
D=$HANGDOCTOR_HARNESS_DIR
DOCKER="docker -H unix://$D/docker/d.sock"
TREE=$(hd_layout)
cleanup() {
    "$H" release >/dev/null 2>&1 || true
    [ $OWN -eq 1 ] && { "$H" down >/dev/null 2>&1 || true; }
    rm -rf "$TREE"
}
trap cleanup EXIT

hd_log "triage: three containers on one node, three different causes of the same symptom"
"$H" run frozen-app >/dev/null
"$H" run quiet-app >/dev/null
echo ">>> frozen-app: its cgroup frozen behind the engine's back ($("$H" freeze frozen-app))"
echo ">>> quiet-app: its shim stopped (SIGSTOP pid $("$H" stop-shim quiet-app))"
echo ">>> stuck-app: an exec probe deadlocked on its stderr pipe"
"$H" hang stuck-app | tail -n 1
IDS=$($DOCKER ps -q --no-trunc --filter name=frozen-app --filter name=quiet-app --filter name=stuck-app | tr '\n' ' ')

hd_log "node_doctor (detect: changes nothing) names each cause, with its wait chain and evidence"
ARGS=$(python3 - "$D" $IDS <<'PY'
import json, sys
d, ids = sys.argv[1], sys.argv[2:]
print(json.dumps({"docker_host": "unix://%s/docker/d.sock" % d, "container_ids": ids, "inspect_timeout": 2,
                  "metrics_dir": "%s/metrics" % d, "confirm_interval": 0.3}))
PY
)
mkdir -p "$D/metrics"
ANSIBLE_COLLECTIONS_PATH="$TREE" ANSIBLE_LOCALHOST_WARNING=0 ANSIBLE_LOAD_CALLBACK_PLUGINS=1 ANSIBLE_STDOUT_CALLBACK=json \
    ansible localhost -c local -e "ansible_python_interpreter=$HD_PY" -m hangdoctor.runtime.node_doctor -a "$ARGS" \
    > "$D/triage.json"
python3 - "$D/triage.json" <<'PY'
import json, sys
out = json.load(open(sys.argv[1]))
res = out["plays"][0]["tasks"][0]["hosts"]["localhost"]
print(res["msg"])
for row in res["ansible_facts"]["hangdoctor"]["containers"]:
    diag = row.get("diagnosis") or {}
    print("\n%-12s %s  hung=%s" % (row.get("name"), row["container_id"][:12], row.get("hung")))
    print("  causes: %s" % ", ".join(diag.get("causes") or []))
    for link in diag.get("chain") or []:
        fd = link.get("blocking_fd") or {}
        peers = ",".join("%s(%s)" % (p.get("comm"), p.get("pid")) for p in fd.get("peers") or [])
        print("    %-9s %-7s %-16s state %s wchan %-18s %s%s" % (
            link["role"], link["pid"], link["comm"], link["state"], link.get("wchan") or "-", link.get("syscall") or "-",
            " fd %s %s -> %s" % (fd.get("fd"), fd.get("kind"), peers or "-") if fd else ""))
    print("  action: %s" % diag.get("action"))
PY
hd_log "the metrics name the causes"
grep '^hangdoctor_container_cause' "$D/metrics/hangdoctor.prom"
hd_log "undo: resume the shim, thaw the cgroup, end the stuck exec"
"$H" release
