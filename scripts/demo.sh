#!/usr/bin/env bash
# The demo (`make demo`): a private containerd + dockerd, two containers (shim v2
# and shim v1), a real runc-init stderr-pipe deadlock in each, what it looks like
# from the outside (docker ps answers, docker inspect hangs), and the /proc
# evidence; then, before anything hangs, which node will deadlock on the next
# crash dump and where (node_risk).  Everything is stopped and removed at the end.
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

hd_log "the collection: detect (changes nothing)"
TREE=$(hd_layout)
trap '"$H" down >/dev/null 2>&1 || true; rm -rf "$TREE"' EXIT
export ANSIBLE_COLLECTIONS_PATH="$TREE" ANSIBLE_LOCALHOST_WARNING=0 ANSIBLE_INVENTORY_UNPARSED_WARNING=0
D=$HANGDOCTOR_HARNESS_DIR
# Only this demo's containers: other stuck execs on this machine are not ours.
IDS=$($DOCKER ps -q --no-trunc | python3 -c 'import json,sys; print(json.dumps({"hangdoctor_container_ids": sys.stdin.read().split()}))')
COMMON=(-i localhost, -c local -e "ansible_python_interpreter=$HD_PY"
        -e "hangdoctor_docker_host=unix://$D/docker/d.sock" -e "$IDS"
        -e "hangdoctor_report_dir=$D/report" -e "hangdoctor_metrics_dir=$D/metrics"
        -e "hangdoctor_evidence_dir=$D/evidence" -e hangdoctor_inspect_timeout=2
        # the demo's stuck execs are seconds old; on a real node keep the 60 s default
        -e hangdoctor_drain_min_age_seconds=0)
ansible-playbook "${COMMON[@]}" hangdoctor.runtime.detect

hd_log "remediate, dry run first (--check): what would be drained"
ansible-playbook "${COMMON[@]}" hangdoctor.runtime.remediate --check

hd_log "remediate: drain the pipes, keep the evidence, verify"
ansible-playbook "${COMMON[@]}" hangdoctor.runtime.remediate

hd_log "after: docker inspect answers again"
time timeout 5 $DOCKER inspect -f '{{.Name}} {{.State.Status}}' web-v2 web-v1

hd_log "the evidence (0600): every byte runc init wrote"
ls -l "$D/evidence/"
for f in "$D"/evidence/*.log; do head -c 700 "$f"; echo; echo "[...]"; done

hd_log "the report"
cat "$D/report/"*remediate*.md
hd_log "the metrics (Prometheus textfile)"
cat "$D/metrics/"*.prom

# ---- before it hangs: the node risk advisor ---------------------------------
hd_log "before it hangs: which node will deadlock on the next crash dump, and where"
$DOCKER run -d --name tight --network none --pids-limit 2 hangdoctor/busybox:latest sh -c 'sleep 100000 & wait' >/dev/null
# A rootless engine's shim: a real containerd-shim-runc-v2 serving as uid 65534 (nobody), no capabilities.
SHIMDIR=$(mktemp -d /tmp/hd-demo-shim-XXXXXX); chmod 755 "$SHIMDIR"; mkdir "$SHIMDIR/b"; chown 65534:65534 "$SHIMDIR/b"
mkfifo "$SHIMDIR/b/log"; chmod 666 "$SHIMDIR/b/log"; exec 7<>"$SHIMDIR/b/log"
python3 -c 'import os, socket, sys
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1] + "/shim.sock"); s.listen(8); os.dup2(s.fileno(), 3); os.set_inheritable(3, True)
os.chdir(sys.argv[1] + "/b")
os.execvp("setpriv", ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "containerd-shim-runc-v2",
          "-namespace", "demo", "-id", "rootless", "-address", sys.argv[1] + "/c.sock", "-publish-binary", "/bin/true"])' \
    "$SHIMDIR" </dev/null >/dev/null 2>&1 &
SHIM=$!
SOFT=$(cat /proc/sys/fs/pipe-user-pages-soft)
trap 'echo "$SOFT" > /proc/sys/fs/pipe-user-pages-soft; kill $SHIM 2>/dev/null; rm -rf "$SHIMDIR"; "$H" down >/dev/null 2>&1 || true; CH down >/dev/null 2>&1 || true; rm -rf "$TREE"' EXIT
sleep 1
hd_log "fs.pipe-user-pages-soft lowered to 1 page (was $SOFT): a user past it gets short pipes"
echo 1 > /proc/sys/fs/pipe-user-pages-soft
RISK=(-i localhost, -c local -e "ansible_python_interpreter=$HD_PY" -e "hangdoctor_metrics_dir=$D/metrics" -e hangdoctor_become=false)
ansible-playbook "${RISK[@]}" hangdoctor.runtime.risk
hd_log "the risk metrics"
cat "$D/metrics/hangdoctor_risk.prom"
hd_log "the opt-in mitigation, dry run with diff (a sysctl file under the demo directory)"
ansible localhost -c local -i localhost, -e "ansible_python_interpreter=$HD_PY" -m hangdoctor.runtime.node_risk \
    -a "risk_checks=pipe mitigate=true metrics_dir= sysctl_file=$D/sysctl.d/90-hangdoctor-pipe.conf" --check --diff \
    | grep -E '^[-+]|CHANGED|SUCCESS' || true
echo "$SOFT" > /proc/sys/fs/pipe-user-pages-soft
kill $SHIM 2>/dev/null || true
$DOCKER rm -f tight >/dev/null

# ---- the same failure on a containerd-CRI Kubernetes node (no dockerd) --------
CRI=$(mktemp -d /tmp/hd-demo-cri-XXXXXX)
CH() { "$H" cri --root "$CRI" "$@"; }
trap '"$H" down >/dev/null 2>&1 || true; CH down >/dev/null 2>&1 || true; rm -rf "$TREE" "$SHIMDIR"' EXIT
hd_log "a containerd-CRI node: containerd with its CRI plugin (no dockerd), a pod of two containers served by one shim"
CH up
CH hang web-0 --hold 600 | tail -n 1
eval "$(CH env | grep CONTAINERD_ADDRESS)"
ST=$(CH status)
grep -v '^{' <<<"$ST"
APP=$(awk '$2 == "app" {print $3; exit}' <<<"$ST")
APP_ID=$(ctr --address "$CONTAINERD_ADDRESS" -n k8s.io containers ls -q | grep "^$APP")
hd_log "kubelet's exec probe (CRI ExecSync) is stuck; ctr task ls answers, ctr task ps of the container hangs"
time timeout 5 ctr --address "$CONTAINERD_ADDRESS" -n k8s.io task ls >/dev/null && echo ">>> task ls answers"
rc=0; time timeout 5 ctr --address "$CONTAINERD_ADDRESS" -n k8s.io task ps "$APP_ID" >/dev/null || rc=$?
[ $rc -eq 124 ] && echo ">>> ctr task ps did not answer within 5 s (exit $rc): the pod shim is stuck"

CRI_COMMON=(-i localhost, -c local -e "ansible_python_interpreter=$HD_PY"
            -e "hangdoctor_containerd_address=$CONTAINERD_ADDRESS" -e "{\"hangdoctor_container_ids\": [\"$APP_ID\"]}"
            -e "hangdoctor_report_dir=$CRI/report" -e "hangdoctor_metrics_dir="
            -e "hangdoctor_evidence_dir=$CRI/evidence" -e hangdoctor_inspect_timeout=2
            -e hangdoctor_drain_min_age_seconds=0)
hd_log "detect on the CRI node names the pod"
ansible-playbook "${CRI_COMMON[@]}" hangdoctor.runtime.detect
hd_log "remediate on the CRI node: drain, keep the evidence, verify through the pod shim"
ansible-playbook "${CRI_COMMON[@]}" hangdoctor.runtime.remediate
hd_log "after: ctr task ps answers again"
time timeout 5 ctr --address "$CONTAINERD_ADDRESS" -n k8s.io task ps "$APP_ID"
ls -l "$CRI/evidence/"


# ---- the triage: three containers hung by three different causes -------------
bash "$HD_ROOT/scripts/demo_triage.sh"
