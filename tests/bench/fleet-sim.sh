#!/usr/bin/env bash
# Fleet simulation: N agents (the agent library's source, verify and select code with a
# null sink, jittered timers) in one process against real nginx. After every agent applied
# version 1, a publish changes one bundle; the simulator reports how long each agent took
# to apply it (p50/p99/max, over the agents that deployed the changed bundle's new blob;
# agents outside the wave or not targeted are counted apart, as are index reads refused
# mid-publish) and what the agents received, and this script adds what nginx
# sent after the change (its access log). Each size runs twice: the change going to every
# cluster, and the same change as a 10 % rollout wave.
# Usage: tests/bench/fleet-sim.sh [INTERVAL_SECONDS] [N...]   (default 10, 1000 10000)
set -euo pipefail
cd "$(dirname "$0")/../.."
INTERVAL="${1:-10}"; shift || true
if [ "$#" -gt 0 ]; then SIZES=("$@"); else SIZES=(1000 10000); fi
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "needs nginx (apt-get install nginx-light)" >&2; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
ulimit -n 65536 2>/dev/null || true
cargo build --release -q -p drover -p drover-fleet-sim
BIN=$PWD/target/release
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run() { # N WAVE(0|10)
  local n=$1 wave=$2 W; W=$(mktemp -d)
  "$BIN/drover" keygen --out "$W/keys" >/dev/null
  cp -r examples "$W/src"
  "$BIN/drover" publish "$W/src" --store "$W/www/store" --key "$W/keys/drover.key" >/dev/null
  local P; P=$(free_port)
  mkdir -p "$W/nginx"
  cat > "$W/nginx/nginx.conf" <<CONF
daemon off; master_process on; worker_processes auto; pid $W/nginx/pid; error_log $W/nginx/error.log;
$( [ "$(id -u)" = 0 ] && echo "user root;" )
worker_rlimit_nofile 65536;
events { worker_connections 16384; }
http { log_format wire '\$status \$request_length \$bytes_sent'; access_log $W/nginx/access.log wire;
  client_body_temp_path $W/nginx/b; proxy_temp_path $W/nginx/p; fastcgi_temp_path $W/nginx/f;
  uwsgi_temp_path $W/nginx/u; scgi_temp_path $W/nginx/s;
  server { listen 127.0.0.1:$P; root $W/www; etag on; } }
CONF
  "$NGINX" -c "$W/nginx/nginx.conf" -p "$W/nginx" 2>/dev/null &
  local ngx=$!
  until curl -sf "http://127.0.0.1:$P/store/index.json" >/dev/null; do sleep 0.05; done
  local change="sed -i 's/node-exporter:v1.8.2/node-exporter:v1.8.3/' $W/src/bundles/monitoring/node-exporter.yaml"
  if [ "$wave" != 0 ]; then
    change="$change && printf 'rollout:\n  percent: $wave\n' >> $W/src/bundles/monitoring/bundle.yaml"
  fi
  change="$change && $BIN/drover publish $W/src --store $W/www/store --key $W/keys/drover.key >/dev/null && wc -l < $W/nginx/access.log > $W/mark"
  local out
  out=$("$BIN/fleet-sim" --store "http://127.0.0.1:$P/store/" --key "$W/keys/drover.pub" \
        --clusters "$n" --interval "$INTERVAL" --change-cmd "$change")
  local mark; mark=$(cat "$W/mark")
  local served; served=$(tail -n +"$((mark + 1))" "$W/nginx/access.log" | awk '{r++; b += $2 + $3; if ($1 == 304) nm++} END {printf "%d %d %d", r, b, nm}')
  kill "$ngx"; wait "$ngx" 2>/dev/null || true
  read -r req bytes nm <<< "$served"
  echo "$out" | python3 -c '
import json, sys
s = json.loads(sys.stdin.read()); n, wave, req, byt, nm = sys.argv[1:6]
c = s["convergenceSeconds"]; a = s["afterChange"]
label = "all clusters" if wave == "0" else wave + "% rollout wave"
print("N={:>6}  {:<16} applied the change {}/{} (outside the wave: {} with no previous blob, {} kept the previous blob; not targeted {}; at the new version {})  p50 {:.1f}s  p99 {:.1f}s  max {:.1f}s  | nginx after change: {} requests ({} x 304), {:.2f} MiB incl. headers  | blob downloads {}  index reads refused mid-publish {}  errors {}".format(
    int(n), label, s["converged"], n, s["outsideWave"], s["keptPreviousBlob"], s["notTargeted"], s["atNewVersion"], c["p50"], c["p99"], c["max"], int(req), int(nm), int(byt) / 1048576, a["blobDownloads"], a["refusedIndexReads"], s["errors"]))
' "$n" "$wave" "$req" "$bytes" "$nm"
  rm -rf "$W"
}

echo "interval ${INTERVAL}s ±10%, agents and nginx on the same $(nproc) cores"
for n in "${SIZES[@]}"; do
  run "$n" 0
  run "$n" 10
done
