#!/usr/bin/env bash
# drover in one command: build, make a signing key, publish examples/ as a signed store,
# serve it on 127.0.0.1, run the agent once for two simulated clusters, each into its own
# k3s-style manifests directory, then run one agent as a daemon and watch it pick up a
# new publish. Everything lands in ./demo (re-created each run).
set -euo pipefail
cd "$(dirname "$0")/.."
demo="${DROVER_DEMO_DIR:-$PWD/demo}"

echo "==> building drover and drover-agent"
cargo build --bins --locked -q
bin="$PWD/target/debug"

rm -rf "$demo" && mkdir -p "$demo"
echo "==> drover keygen: a minisign key pair (the agents trust drover.pub)"
"$bin/drover" keygen --out "$demo/keys"

echo "==> drover publish examples/: bundles → content-addressed blobs + signed index.json"
cp -r examples "$demo/src"
"$bin/drover" publish "$demo/src" --store "$demo/store" --key "$demo/keys/drover.key" --channel stable --expires-in 30d
"$bin/drover" verify "$demo/store" --key "$demo/keys/drover.pub"
find "$demo/store" -type f | sed "s|$demo/||" | sort

echo "==> drover serve: the store over HTTP (production: nginx, S3, a CDN — same files)"
"$bin/drover" serve "$demo/store" --listen 127.0.0.1:0 > "$demo/serve.log" &
server=$!
daemon=""
trap 'kill $server $daemon 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "serving" "$demo/serve.log" 2>/dev/null && break; sleep 0.05; done
url=$(sed -n 's/.* on \(http:[^ ]*\)$/\1/p' "$demo/serve.log")
echo "serving at $url"

agent() { # NAME LABELS...
  local name=$1; shift
  local labels=()
  for l in "$@"; do labels+=(--label "$l"); done
  echo
  echo "==> cluster $name ($*): what it should get, and why"
  "$bin/drover" targets "$url" --key "$demo/keys/drover.pub" --cluster-name "$name" "${labels[@]}"
  echo "==> drover-agent --once for $name"
  "$bin/drover-agent" --source "$url" --key "$demo/keys/drover.pub" \
    --cluster-name "$name" "${labels[@]}" \
    --sink "dir:$demo/clusters/$name/manifests" --state-dir "$demo/clusters/$name/state" --once
  echo "--- $demo/clusters/$name/manifests:"
  ls -l "$demo/clusters/$name/manifests"
}

agent site-7 env=prod region=eu monitoring=on
echo "--- drover-web.yaml for site-7 (its own variant, \${cluster.*} substituted):"
sed -n '1,40p' "$demo/clusters/site-7/manifests/drover-web.yaml"
agent lab-3 env=lab monitoring=on

# A request to the agent's local listener, with bash alone (no curl needed).
http() { # METHOD PORT PATH
  exec 3<>"/dev/tcp/127.0.0.1/$2"
  printf '%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n' "$1" "$3" >&3
  sed '1,/^\r$/d' <&3
  exec 3<&-
}

echo
echo "==> drover-agent as a daemon for site-7: polls every 60s (±10%), one conditional GET when"
echo "    nothing changed; /metrics, /healthz, /readyz, /status and POST /sync on a local port"
"$bin/drover-agent" --source "$url" --key "$demo/keys/drover.pub" --cluster-name site-7 \
  --label env=prod --label region=eu --label monitoring=on \
  --sink "dir:$demo/clusters/site-7/manifests" --state-dir "$demo/clusters/site-7/state" \
  --listen 127.0.0.1:0 2> "$demo/agent.log" &
daemon=$!
for _ in $(seq 200); do grep -q "listening on" "$demo/agent.log" 2>/dev/null && break; sleep 0.05; done
port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$demo/agent.log")
echo "--- POST /sync (nothing new: the store answers 304, nothing else is fetched):"
http POST "$port" /sync; echo
echo "==> publish a change: monitoring's DaemonSet gets a new image tag → version 2"
sed -i 's/node-exporter:v1.8.2/node-exporter:v1.8.3/' "$demo/src/bundles/monitoring/node-exporter.yaml"
"$bin/drover" publish "$demo/src" --store "$demo/store" --key "$demo/keys/drover.key" --channel stable --expires-in 30d
echo "--- POST /sync (only the changed bundle's blob is downloaded):"
http POST "$port" /sync; echo
grep -n "image:" "$demo/clusters/site-7/manifests/drover-monitoring.yaml"
echo "--- /metrics (excerpt):"
http GET "$port" /metrics | grep -E '^drover_(polls_total[{]|index_version |stale |fetched_bytes_total )'
echo "--- status.json, what the agent reports about this cluster:"
sed -n '1,16p' "$demo/clusters/site-7/state/status.json"

echo
echo "Done. On a real k3s server the agent writes into /var/lib/rancher/k3s/server/manifests"
echo "and k3s applies the files. Everything above is in $demo; see docs/quickstart.md and"
echo "docs/operations.md."
