#!/usr/bin/env bash
# Agent binary size and cold start to first apply (figure 7): the time from exec to exit of
# `drover-agent --once` applying the three example bundles from a file:// store into an
# empty manifests directory, with an empty state directory (so it copies and verifies every
# blob, renders and writes every bundle), N runs. Baselines from the same run, on the same
# files: `cat` of the index, signature and blobs the agent reads (one exec), and `tar xzf`
# of each blob (one exec per blob). Every command is started and timed by one Python loop
# (fork + exec + wait, perf_counter), so all carry the same launch overhead. The page cache
# is warm: "cold" means a new process with no state, as after a reboot of the agent's pod.
# Usage: tests/bench/cold-start.sh [N]   (default 50)
#        AGENT=/path/to/drover-agent tests/bench/cold-start.sh   (measure another build)
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${1:-50}"
cargo build --release -q -p drover -p drover-agent
BIN=$PWD/target/release
AGENT="${AGENT:-$BIN/drover-agent}"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
"$BIN/drover" keygen --out "$W/keys" >/dev/null
"$BIN/drover" publish examples --store "$W/store" --key "$W/keys/drover.key" >/dev/null
size=$(stat -c %s "$AGENT")
echo "$AGENT: $size bytes ($(awk -v s="$size" 'BEGIN {printf "%.2f", s / 1048576}') MiB), dynamic libraries: $(ldd "$AGENT" | awk '{print $1}' | tr '\n' ' ')"

python3 - "$N" "$AGENT" "$W" <<'PY'
import os, shutil, statistics, subprocess, sys, time
n, agent, w = int(sys.argv[1]), sys.argv[2], sys.argv[3]
store = os.path.join(w, "store")
m, s, x = (os.path.join(w, d) for d in ("m", "s", "x"))

def run(argv):
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t

def agent_once():
    for d in (m, s):
        shutil.rmtree(d, ignore_errors=True)
    return run([agent, "--source", "file://" + store, "--key", os.path.join(w, "keys/drover.pub"),
                "--cluster-name", "site-7", "--label", "env=prod", "--label", "region=eu",
                "--label", "monitoring=on", "--sink", "dir:" + m, "--state-dir", s, "--once"])

def untar():
    shutil.rmtree(x, ignore_errors=True)
    os.mkdir(x)
    return sum(run(["tar", "xzf", b, "-C", x]) for b in blobs)

agent_once()                    # warm-up; tells which blobs site-7 gets (3 of the 4)
blobs = sorted(os.path.join(store, "blobs/sha256", b) for b in os.listdir(os.path.join(s, "blobs")))
files = [os.path.join(store, "index.json"), os.path.join(store, "index.json.minisig")] + blobs
cases = {"cat index, signature and blobs": lambda: run(["cat"] + files),
         "tar xzf each blob (%d execs)" % len(blobs): untar,
         "drover-agent --once (3 bundles)": agent_once}
times = {k: [] for k in cases}
for _ in range(n):              # interleaved, so all see the same load
    for k, f in cases.items():
        times[k].append(f())
assert sorted(os.listdir(m)) == ["drover-base.yaml", "drover-monitoring.yaml", "drover-web.yaml"], os.listdir(m)
med = {k: statistics.median(v) * 1000 for k, v in times.items()}
print("%d runs each, %d blobs, %d bytes read" % (n, len(blobs), sum(os.path.getsize(f) for f in files)))
for k, v in times.items():
    print("  %-34s median %6.2f ms, min %6.2f ms, max %6.2f ms" % (k, med[k], min(v) * 1000, max(v) * 1000))
a = med["drover-agent --once (3 bundles)"]
for k in list(cases)[:2]:
    print("  ratio agent / %-34s %.1f" % (k + ":", a / med[k]))
PY
