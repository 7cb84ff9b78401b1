#!/usr/bin/env bash
# Cost of an unchanged poll: the agent runs as a daemon against real nginx serving a
# published store; we trigger N cycles through POST /sync and measure, per cycle:
#   - requests and bytes on the wire (nginx access log: request + response, headers included)
#   - agent CPU time (sum of /proc/PID/task/*/schedstat, nanosecond resolution)
# with, in the same run, two baselines: the agent answering N GET /healthz (the cost of
# the trigger itself, subtracted), and nginx's own CPU per 304 it serves.
# Also prints the agent's idle RSS. Usage: tests/bench/poll-cost.sh [N]   (default 2000)
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${1:-2000}"
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "needs nginx (apt-get install nginx-light)" >&2; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --release -q -p drover -p drover-agent
BIN=target/release
W=$(mktemp -d)
cleanup() { kill "$AGENT" "$NGX" 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s+=$1} END {print s}'; }

"$BIN/drover" keygen --out "$W/keys" >/dev/null
cp -r examples "$W/src"
"$BIN/drover" publish "$W/src" --store "$W/www/store" --key "$W/keys/drover.key" >/dev/null
P=$(free_port)
mkdir -p "$W/nginx"
cat > "$W/nginx/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1; pid $W/nginx/pid; error_log $W/nginx/error.log;
$( [ "$(id -u)" = 0 ] && echo "user root;" )
events { worker_connections 1024; }
http { log_format wire '\$status \$request_length \$bytes_sent'; access_log $W/nginx/access.log wire;
  client_body_temp_path $W/nginx/b; proxy_temp_path $W/nginx/p; fastcgi_temp_path $W/nginx/f;
  uwsgi_temp_path $W/nginx/u; scgi_temp_path $W/nginx/s;
  server { listen 127.0.0.1:$P; root $W/www; etag on; } }
CONF
"$NGINX" -c "$W/nginx/nginx.conf" -p "$W/nginx" 2>/dev/null &
NGX=$!
L=$(free_port)
until curl -sf "http://127.0.0.1:$P/store/index.json" >/dev/null; do sleep 0.05; done
"$BIN/drover-agent" --source "http://127.0.0.1:$P/store/" --key "$W/keys/drover.pub" \
  --cluster-name site-7 --label env=prod --label region=eu --label monitoring=on \
  --sink "dir:$W/manifests" --state-dir "$W/state" --interval 1h --listen "127.0.0.1:$L" 2>"$W/agent.log" &
AGENT=$!
until curl -sf "http://127.0.0.1:$L/status" >/dev/null; do sleep 0.05; done
curl -sf -X POST "http://127.0.0.1:$L/sync" >/dev/null   # warm: connection pool, first 304

# Baseline: the trigger's own cost (HTTP request to the agent's listener).
a0=$(cpu_ns "$AGENT")
for _ in $(seq "$N"); do curl -sf "http://127.0.0.1:$L/healthz" >/dev/null; done
a1=$(cpu_ns "$AGENT")
# Measured: N unchanged polls.
: > "$W/nginx/access.log.mark"; lines0=$(wc -l < "$W/nginx/access.log")
n0=$(cpu_ns "$NGX")
b0=$(cpu_ns "$AGENT")
for _ in $(seq "$N"); do curl -sf -X POST "http://127.0.0.1:$L/sync" | grep -q '"result":"unchanged"'; done
b1=$(cpu_ns "$AGENT")
n1=$(cpu_ns "$NGX")
tail -n +"$((lines0 + 1))" "$W/nginx/access.log" > "$W/polls.log"
requests=$(wc -l < "$W/polls.log")
not_modified=$(awk '$1 == 304' "$W/polls.log" | wc -l)
wire=$(awk '{s += $2 + $3} END {printf "%.0f", s / NR}' "$W/polls.log")
rss=$(awk '/VmRSS/ {print $2}' /proc/"$AGENT"/status)
awk -v n="$N" -v req="$requests" -v nm="$not_modified" -v wire="$wire" -v rss="$rss" \
    -v trig=$((a1 - a0)) -v poll=$((b1 - b0)) -v ngx=$((n1 - n0)) 'BEGIN {
  per_trig = trig / n / 1000; per_poll = poll / n / 1000; ngx_per = ngx / n / 1000
  printf "unchanged polls:            %d\n", n
  printf "requests to nginx:          %d (%.2f per poll, %d answered 304)\n", req, req / n, nm
  printf "bytes on the wire per poll: %d (HTTP request + response, headers included)\n", wire
  printf "agent CPU per sync:         %.1f us (cycle + the POST /sync that triggered it)\n", per_poll
  printf "agent CPU per GET /healthz: %.1f us (baseline: cost of the trigger alone)\n", per_trig
  printf "agent CPU per poll, net:    %.1f us (target <= 1000 us)\n", per_poll - per_trig
  printf "nginx CPU per 304 served:   %.1f us (ratio agent/nginx: %.1f)\n", ngx_per, (per_poll - per_trig) / ngx_per
  printf "agent RSS after the run:    %.1f MiB\n", rss / 1024
}'
