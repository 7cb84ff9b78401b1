#!/usr/bin/env bash
# API requests of one unchanged kube-sink cycle: BUNDLES bundles of one Namespace and 30
# ConfigMaps each (31 objects), applied by a daemon agent against the in-repo Kubernetes
# API double; after the first cycle the double's request log is emptied, one more cycle is
# triggered with POST /sync, and the requests it made are counted from GET /_double/requests
# (a count, never a time). Run it for this tree's agent and, given a second agent binary,
# for that one too, and print both and the ratio of requests to objects.
#
# Usage: tests/bench/kube-cycle.sh [BASELINE_AGENT] [BUNDLES]   (default 20 bundles)
#   e.g. git worktree add /work/wt/kube-base 4d53177 && (cd /work/wt/kube-base &&
#        cargo build -p drover-agent) && tests/bench/kube-cycle.sh /work/wt/kube-base/target/debug/drover-agent
# Debug builds are fine: requests do not depend on the optimisation level.
set -euo pipefail
cd "$(dirname "$0")/../.."
BASELINE="${1:-}"
BUNDLES="${2:-20}"
OBJECTS_PER_BUNDLE=31
cargo build -q -p drover -p drover-agent -p drover-kube-double
BIN=target/debug
W=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$BIN/drover" keygen --out "$W/keys" >/dev/null
for b in $(seq -w 1 "$BUNDLES"); do
  d="$W/src/bundles/b$b"
  mkdir -p "$d"
  {
    echo "apiVersion: v1"; echo "kind: Namespace"; echo "metadata: {name: b$b}"
    for c in $(seq 1 30); do
      echo "---"; echo "apiVersion: v1"; echo "kind: ConfigMap"
      echo "metadata: {name: cm$c, namespace: b$b}"; echo "data: {key: value-$c}"
    done
  } > "$d/objects.yaml"
done
"$BIN/drover" publish "$W/src" --store "$W/store" --key "$W/keys/drover.key" >/dev/null

# Counts the requests of one unchanged cycle of agent $1 (label $2) on a fresh double.
measure() {
  local agent="$1" label="$2" dir="$W/$2"
  mkdir -p "$dir"
  "$BIN/kube-api-double" --listen 127.0.0.1:0 --auto-ready > "$dir/double.out" 2>/dev/null &
  PIDS+=($!)
  until grep -q "listening on" "$dir/double.out" 2>/dev/null; do sleep 0.05; done
  local api
  api=$(sed -n 's/^listening on //p' "$dir/double.out")
  printf 'apiVersion: v1\nkind: Config\nclusters:\n- name: d\n  cluster: {server: "%s"}\ncontexts:\n- name: d\n  context: {cluster: d, user: u}\ncurrent-context: d\nusers:\n- name: u\n  user: {}\n' "$api" > "$dir/kubeconfig"
  local port
  port=$(free_port)
  "$agent" --source "file://$W/store" --key "$W/keys/drover.pub" --cluster-name site-7 \
    --sink "kube:$dir/kubeconfig" --state-dir "$dir/state" --interval 1h \
    --listen "127.0.0.1:$port" 2>"$dir/agent.log" &
  PIDS+=($!)
  until curl -sf "http://127.0.0.1:$port/status" >/dev/null; do sleep 0.1; done
  curl -sf -X POST "http://127.0.0.1:$port/sync" >/dev/null   # settles anything the first cycle left
  curl -sf -X DELETE "$api/_double/requests" >/dev/null
  curl -sf -X POST "http://127.0.0.1:$port/sync" >/dev/null
  curl -sf "$api/_double/requests" > "$dir/requests.json"
  python3 - "$dir/requests.json" "$label" "$BUNDLES" "$OBJECTS_PER_BUNDLE" <<'PY'
import json, sys
requests = json.load(open(sys.argv[1]))
label, bundles, per = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def discovery(r):
    s = r["path"].strip("/").split("/")
    return s[0] in ("api", "apis") and len(s) <= (2 if s[0] == "api" else 3)
kinds = {}
for r in requests:
    k = "discovery" if discovery(r) else r["method"]
    kinds[k] = kinds.get(k, 0) + 1
objects = bundles * per
total = len(requests)
detail = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
print(f"{label:>9}: {total:5} requests per unchanged cycle for {bundles} bundles x {per} objects "
      f"({total / bundles:.1f} per bundle, {total / objects:.3f} per object; {detail})")
PY
}

echo "unchanged kube-sink cycle, $BUNDLES bundles x $OBJECTS_PER_BUNDLE objects (Namespace + 30 ConfigMaps):"
if [ -n "$BASELINE" ]; then measure "$BASELINE" baseline; fi
measure "$BIN/drover-agent" this-tree
