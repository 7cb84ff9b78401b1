#!/usr/bin/env bash
# Benchmark: `drover status` over COUNT agent status reports (default 100,000, five bundles
# each, pretty JSON as drover-agent writes them) in one directory, against a baseline that
# only reads the same files: `find DIR -name '*.json' -exec cat {} + >/dev/null`.
#
# Usage: bash bench/fleet-status.sh [COUNT]
#
# Both commands run once to warm the page cache, then RUNS times each; the best time of
# each is printed with the ratio. Figures go to docs/fleet-status.md ("Performance").
set -euo pipefail
cd "$(dirname "$0")/../.."

count=${1:-100000}
runs=${RUNS:-3}
work=$(mktemp -d "${TMPDIR:-/tmp}/drover-fleet-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
reports=$work/reports

cargo build --release --quiet -p drover --bin drover
drover=$PWD/target/release/drover

echo "generating $count reports in $reports ..."
python3 - "$reports" "$count" <<'PY'
# A fleet mid-rollout: web moves to a new digest in waves, a few clusters fail, some are
# silent or cut off from their mirror, a handful of older agents.
import datetime, hashlib, json, os, random, sys

out, count = sys.argv[1], int(sys.argv[2])
os.makedirs(out)
rnd = random.Random(7)
now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
ts = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")
dg = lambda seed: "sha256:" + hashlib.sha256(seed.encode()).hexdigest()
digests = {
    "base": [dg("base-3")],
    "ingress": [dg("ingress-1")],
    "monitoring": [dg("monitoring-5")],
    "web": [dg("web-41"), dg("web-42")],
    "logging": [dg("logging-2"), dg("logging-1")],
}
for i in range(count):
    name = f"site-{i:06d}"
    silent = rnd.random() < 0.005
    checked = now - datetime.timedelta(seconds=rnd.randint(3600, 86400 * 3) if silent else rnd.randint(0, 600))
    stale = not silent and rnd.random() < 0.003
    since = ts(checked - datetime.timedelta(hours=rnd.randint(1, 48)))
    bundles = []
    for b, ds in digests.items():
        digest = ds[0] if len(ds) == 1 or rnd.random() < 0.7 else ds[1]
        state, message = "Applied", "applied drover-%s.yaml" % b
        r = rnd.random()
        if b == "monitoring" and r < 0.2:
            state, message, digest = "NotTargeted", "no target matches this cluster", None
        elif b == "web" and r < 0.001:
            state, message = "Error", "render: ${cluster.labels.region}: label region is not set on this cluster"
        elif b == "logging" and r < 0.01:
            state, message = "OutsideRollout", "outside the rollout wave (percent 30); keeping the applied digest"
        entry = {"name": b, "state": state, "message": message, "since": since}
        if digest:
            entry["digest"] = digest
        bundles.append(entry)
    report = {
        "apiVersion": "drover.dev/v1",
        "kind": "ClusterStatus",
        "cluster": name,
        "labels": {"env": "prod" if i % 10 else "lab", "region": ["eu", "us", "ap"][i % 3], "site": name},
        "agentVersion": "0.1.0" if i % 20 else "0.0.9",
        "channel": "stable",
        "indexVersion": 12 if rnd.random() < 0.99 else 11,
        "indexSha256": dg("index-12"),
        "origin": "https://mirror-%d.example.net/store/index.json" % (i % 4),
        "checkedAt": ts(checked),
        "lastSuccess": ts(checked - datetime.timedelta(hours=5)) if stale else ts(checked),
        "stale": stale,
        "intervalSeconds": 60,
        "bundles": bundles,
    }
    if stale:
        report["staleSince"] = report["lastSuccess"]
        report["lastError"] = "https://mirror-0.example.net/store/index.json: connection refused"
    with open(os.path.join(out, name + ".json"), "w") as f:
        json.dump(report, f, indent=2)
PY

bytes=$(find "$reports" -name '*.json' -exec cat {} + | wc -c)
echo "$count files, $bytes bytes ($((bytes / count)) bytes per report)"

# Runs "$@" and fails the benchmark unless it exits with EXPECTED (a crash must not pass
# for a fast run). drover status exits 1 when a cluster has an Error or is stale (every
# fleet of a few hundred reports and more here), else 0.
expect_exit() {
  local expected=$1 rc=0
  shift
  "$@" >/dev/null 2>"$work/stderr" || rc=$?
  if [ "$rc" -ne "$expected" ]; then
    echo "fleet-status.sh: $* exited $rc, expected $expected:" >&2
    cat "$work/stderr" >&2
    exit 1
  fi
}

# Best wall-clock time over $runs runs of "$@" (which must exit EXPECTED), in milliseconds.
best_ms() {
  local expected=$1 best=0 start end ms
  shift
  for _ in $(seq "$runs"); do
    start=$(date +%s%N)
    expect_exit "$expected" "$@"
    end=$(date +%s%N)
    ms=$(((end - start) / 1000000))
    if [ "$best" -eq 0 ] || [ "$ms" -lt "$best" ]; then best=$ms; fi
  done
  echo "$best"
}
read_all() { find "$reports" -name '*.json' -exec cat {} + >/dev/null; }

read_all
status_exit=0
if grep -rlqE '"state": "Error"|"stale": true' "$reports"; then status_exit=1; fi
expect_exit "$status_exit" "$drover" status "$reports"
baseline=$(best_ms 0 read_all)
table=$(best_ms "$status_exit" "$drover" status "$reports")
json=$(best_ms "$status_exit" "$drover" status "$reports" -o json)
expect_exit "$status_exit" /usr/bin/time -f %M -o "$work/rss" "$drover" status "$reports"
rss=$(tail -1 "$work/rss")

echo
"$drover" status "$reports" 2>/dev/null | head -12 || true
echo
echo "machine: $(nproc) cores, $(uname -m), $(. /etc/os-release && echo "$PRETTY_NAME")"
echo "baseline  find -exec cat (same bytes):  ${baseline} ms"
echo "drover status (table):                  ${table} ms  ($(awk "BEGIN{printf \"%.2f\", $table/$baseline}") × baseline)"
echo "drover status -o json:                  ${json} ms  ($(awk "BEGIN{printf \"%.2f\", $json/$baseline}") × baseline)"
echo "drover status peak RSS:                 ${rss} KiB"
