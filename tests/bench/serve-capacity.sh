#!/usr/bin/env bash
# How many agents one box serves: wrk replays an agent's unchanged poll (GET index.json
# with If-None-Match, answered 304) against nginx and against `drover serve`, serving the
# same published store, one after the other in the same run. Requests per second are
# converted into clusters polling every 60 s. wrk and the server share this machine's cores,
# so the figures are a floor for a dedicated server.
# Usage: tests/bench/serve-capacity.sh [SECONDS] [CONNECTIONS]   (default 10 s, 256)
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS="${1:-10}"
CONNS="${2:-256}"
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "needs nginx (apt-get install nginx-light)" >&2; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --release -q -p drover
BIN=target/release
W=$(mktemp -d)
cleanup() { kill "${NGX:-}" "${SRV:-}" 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CORES=$(nproc)

"$BIN/drover" keygen --out "$W/keys" >/dev/null
"$BIN/drover" publish examples --store "$W/www/store" --key "$W/keys/drover.key" >/dev/null

P=$(free_port)
mkdir -p "$W/nginx"
cat > "$W/nginx/nginx.conf" <<CONF
daemon off; master_process on; worker_processes auto; pid $W/nginx/pid; error_log $W/nginx/error.log;
$( [ "$(id -u)" = 0 ] && echo "user root;" )
worker_rlimit_nofile 65536;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $W/nginx/b; proxy_temp_path $W/nginx/p; fastcgi_temp_path $W/nginx/f;
  uwsgi_temp_path $W/nginx/u; scgi_temp_path $W/nginx/s;
  server { listen 127.0.0.1:$P; root $W/www; etag on; } }
CONF
"$NGINX" -c "$W/nginx/nginx.conf" -p "$W/nginx" 2>/dev/null &
NGX=$!
S=$(free_port)
"$BIN/drover" serve "$W/www/store" --listen "127.0.0.1:$S" > "$W/serve.log" &
SRV=$!
until curl -sf "http://127.0.0.1:$P/store/index.json" >/dev/null && curl -sf "http://127.0.0.1:$S/index.json" >/dev/null; do sleep 0.05; done

etag() { curl -sI "$1" | tr -d '\r' | awk -F': ' 'tolower($1)=="etag" {print $2}'; }
run() { # NAME URL
  local tag; tag=$(etag "$2")
  local code; code=$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $tag" "$2")
  [ "$code" = 304 ] || { echo "$1 answered $code to If-None-Match, not 304" >&2; exit 1; }
  wrk -t "$CORES" -c "$CONNS" -d "${SECS}s" -H "If-None-Match: $tag" "$2" > "$W/$1.wrk"
  awk '/Requests\/sec/ {print $2}' "$W/$1.wrk"
}
nginx_rps=$(run nginx "http://127.0.0.1:$P/store/index.json")
drover_rps=$(run drover "http://127.0.0.1:$S/index.json")
awk -v n="$nginx_rps" -v d="$drover_rps" -v c="$CONNS" -v s="$SECS" -v cores="$CORES" 'BEGIN {
  printf "unchanged-poll 304s, wrk -t%d -c%d -d%ds, server and wrk on the same %d cores\n", cores, c, s, cores
  printf "nginx:        %9.0f requests/s = %6.2f million clusters at a 60 s interval\n", n, n * 60 / 1e6
  printf "drover serve: %9.0f requests/s = %6.2f million clusters at a 60 s interval\n", d, d * 60 / 1e6
  printf "nginx / drover serve: %.2f (target <= 2)\n", n / d
}'
