#!/usr/bin/env bash
# drover in one command: build, make a signing key, publish examples/ as a signed store,
# serve it on 127.0.0.1, and run the agent once for two simulated clusters, each into its
# own k3s-style manifests directory. Everything lands in ./demo (re-created each run).
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
"$bin/drover" publish examples --store "$demo/store" --key "$demo/keys/drover.key" --channel stable --expires-in 30d
"$bin/drover" verify "$demo/store" --key "$demo/keys/drover.pub"
find "$demo/store" -type f | sed "s|$demo/||" | sort

echo "==> drover serve: the store over HTTP (production: nginx, S3, a CDN — same files)"
"$bin/drover" serve "$demo/store" --listen 127.0.0.1:0 > "$demo/serve.log" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
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

echo
echo "Done. On a real k3s server the agent writes into /var/lib/rancher/k3s/server/manifests"
echo "and k3s applies the files. Everything above is in $demo; see docs/quickstart.md."
