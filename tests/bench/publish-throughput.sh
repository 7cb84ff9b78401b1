#!/usr/bin/env bash
# Publish throughput (figure 1): `drover publish` of a generated manifest tree against the
# same tree through `tar czf - -C SRC . | sha256sum` (GNU tar + gzip -6, one core), in the
# same run. Runs alternate baseline and publish, so both see the same load and a warm page
# cache; each is timed with /usr/bin/time (wall, and user+system CPU of all its processes).
# The two do not use the machine alike: drover publish compresses bundles on every core,
# while the baseline's gzip uses one (tar and sha256sum add a little), so a wall ratio
# below 1 can hide more CPU spent; the CPU ratio is printed next to it.
# Usage: tests/bench/publish-throughput.sh [MIB] [BUNDLES]   (default: 200 MiB in 8 bundles)
#        RUNS=5 tests/bench/publish-throughput.sh            (default: 3 runs of each)
set -euo pipefail
cd "$(dirname "$0")/../.."
MIB="${1:-200}"
BUNDLES="${2:-8}"
RUNS="${RUNS:-3}"
cargo build --release -q -p drover
BIN=$PWD/target/release
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
need=$((MIB * 3 + 100))
free=$(df -Pm "$W" | awk 'NR == 2 {print $4}')
[ "$free" -ge "$need" ] || { echo "needs $need MiB free in $W, has $free" >&2; exit 1; }

python3 tests/bench/gen-tree.py "$W/src" "$MIB" "$BUNDLES"
"$BIN/drover" keygen --out "$W/keys" >/dev/null
tar cf - -C "$W/src" . >/dev/null   # warm the page cache for both
echo "tree: $(du -sm "$W/src" | cut -f1) MiB in $(find "$W/src" -name '*.yaml' | wc -l) files, $BUNDLES bundles; $(nproc) cores"

timed() {   # timed NAME CMD...: appends "wall cpu" (seconds) to NAME.times
  local name=$1
  shift
  /usr/bin/time -f "%e %U %S" -o "$W/t" "$@" >/dev/null
  awk '{printf "%s %.2f\n", $1, $2 + $3}' "$W/t" >> "$name.times"
}
for run in $(seq "$RUNS"); do
  timed "$W/base" sh -c "tar czf - -C '$W/src' . | sha256sum"
  rm -rf "$W/store"
  timed "$W/publish" "$BIN/drover" publish "$W/src" --store "$W/store" --key "$W/keys/drover.key"
  echo "run $run: tar czf | sha256sum $(tail -1 "$W/base.times" | cut -d' ' -f1) s, drover publish $(tail -1 "$W/publish.times" | cut -d' ' -f1) s"
done
tarball=$(tar czf - -C "$W/src" . | wc -c)
blobs=$(cat "$W"/store/blobs/sha256/* | wc -c)
best() { sort -n "$1.times" | head -1; }
read -r bw bc < <(best "$W/base")
read -r pw pc < <(best "$W/publish")
awk -v bw="$bw" -v bc="$bc" -v pw="$pw" -v pc="$pc" -v mib="$MIB" -v tb="$tarball" -v bl="$blobs" 'BEGIN {
  printf "baseline  tar czf | sha256sum: %6.2f s wall, %6.2f s CPU, %5.1f MiB/s, output %.1f MiB\n", bw, bc, mib / bw, tb / 1048576
  printf "measured  drover publish:       %6.2f s wall, %6.2f s CPU, %5.1f MiB/s, blobs  %.1f MiB\n", pw, pc, mib / pw, bl / 1048576
  printf "ratio publish / baseline (best of each): wall %.2f (target <= 1.1), CPU %.2f\n", pw / bw, (bc > 0 ? pc / bc : 0)
}'
per_run() {   # per_run FIELD LABEL: publish / baseline of each run, for wall (1) or CPU (2)
  paste -d' ' "$W/base.times" "$W/publish.times" | awk -v f="$1" '{print $(f + 2) / ($f > 0 ? $f : 0.01)}' | sort -n \
    | awk -v what="$2" '{r[NR] = $1} END {printf "%s ratio per run (publish / the baseline run just before it): median %.2f, min %.2f, max %.2f\n", what, r[int((NR + 1) / 2)], r[1], r[NR]}'
}
per_run 1 wall
per_run 2 CPU
