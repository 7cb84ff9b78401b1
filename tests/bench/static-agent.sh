#!/usr/bin/env bash
# The static agent (tests/build-static.sh): stripped size, and RSS of the daemon idling after
# its first cycle, with the dir sink and with the kube sink (against the in-repo API double,
# as the k3s add-on runs it). These figures size the add-on's requests and limits
# (manifests/base/deployment.yaml). Baseline in the same run: the dynamic release binary.
# Usage: tests/bench/static-agent.sh   (~15 s once built; the static build takes minutes)
set -euo pipefail
cd "$(dirname "$0")/../.."
STATIC=$(bash tests/build-static.sh)
cargo build --release -q -p drover-agent
cargo build -q -p drover -p drover-kube-double --bins   # setup tools only; their speed is not measured
W=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
kib() { awk -v k="$2" '$1==k":" {print $2}' /proc/"$1"/status; }

target/debug/drover keygen --out "$W/keys" >/dev/null
cp -r examples "$W/src"
target/debug/drover publish "$W/src" --store "$W/store" --key "$W/keys/drover.key" >/dev/null
target/debug/drover serve "$W/store" --listen 127.0.0.1:0 > "$W/serve.out" &
PIDS+=($!)
until grep -q http "$W/serve.out" 2>/dev/null; do sleep 0.05; done
URL=$(sed -n 's/.* on //p' "$W/serve.out")
# A fresh API double per kube run, so both binaries do the same work: an empty cluster to
# fill (the second run against a shared double would find everything applied already).
fresh_api() { # NAME: starts a double, writes $W/kubeconfig-NAME
  target/debug/kube-api-double --listen 127.0.0.1:0 --auto-ready > "$W/api-$1.out" 2>/dev/null &
  PIDS+=($!)
  until grep -q http "$W/api-$1.out" 2>/dev/null; do sleep 0.05; done
  local api; api=$(sed -n 's/listening on //p' "$W/api-$1.out")
  printf 'apiVersion: v1\nkind: Config\nclusters:\n- name: d\n  cluster: {server: "%s"}\ncontexts:\n- name: d\n  context: {cluster: d, user: u}\ncurrent-context: d\nusers:\n- name: u\n  user: {}\n' "$api" > "$W/kubeconfig-$1"
}
fresh_api static
fresh_api dynamic

# idle RSS: start the daemon, wait for its first cycle, let it idle 3 s, read VmRSS/VmHWM.
idle() { # BIN SINK NAME
  local port; port=$(free_port)
  "$1" --source "$URL" --key "$W/keys/drover.pub" --cluster-name site-7 --label env=prod --label region=eu \
    --label monitoring=on --sink "$2" --state-dir "$W/state-$3" --listen "127.0.0.1:$port" --log-format json 2>/dev/null &
  local pid=$!; PIDS+=("$pid")
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.05; done
  sleep 3
  printf '%-28s RSS %6s KiB   peak %6s KiB\n' "$3" "$(kib "$pid" VmRSS)" "$(kib "$pid" VmHWM)"
  kill "$pid"
}
printf 'static binary: %s bytes (%s MiB), %s\n' "$(stat -c %s "$STATIC")" \
  "$(awk -v b="$(stat -c %s "$STATIC")" 'BEGIN {printf "%.1f", b/1048576}')" "$(file -b "$STATIC" | cut -d, -f1-4)"
printf 'dynamic binary (baseline): %s bytes\n' "$(stat -c %s target/release/drover-agent)"
idle "$STATIC" "dir:$W/m-static" static-dir-sink
idle target/release/drover-agent "dir:$W/m-dyn" dynamic-dir-sink
idle "$STATIC" "kube:$W/kubeconfig-static" static-kube-sink
idle target/release/drover-agent "kube:$W/kubeconfig-dynamic" dynamic-kube-sink
