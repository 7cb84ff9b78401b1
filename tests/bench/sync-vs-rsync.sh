#!/usr/bin/env bash
# Updating a mirror after one bundle changed: `drover sync A B --key drover.pub` (verifies
# the index signature and the new blob, writes blobs first and the index last, fsyncs)
# against `rsync -a A/ C/` of the same change (no verification, no ordering, no fsync), and
# against the two-step rsync that keeps the order (blobs first, then the index pair).
#
# A store of 100 bundles (YAML of 2–100 KB each) is published into A and copied to B
# (drover) and C, D (rsync) first. Then, RUNS times: one bundle changes, A is re-published,
# and each mirror is brought up to date, timed (wall clock, in alternating order). Prints
# each run, the medians, and the ratio drover / rsync. The first full copy into empty
# mirrors is timed too (one run). Wall time is what
# an operator waits for; CPU time (user + system, from bash's `time`) is printed too,
# because local rsync spends most of its wall time idle (its processes poll each other
# and wait for one another to exit).
# Usage: tests/bench/sync-vs-rsync.sh [RUNS]   (default 7; needs rsync: apt-get install rsync)
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS="${1:-7}"
command -v rsync >/dev/null || { echo "needs rsync (apt-get install rsync)" >&2; exit 1; }
cargo build --release -q -p drover
DROVER=$PWD/target/release/drover
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

# Runs a command; prints "WALL_MS CPU_MS" (bash's time keyword: real, user + system).
timed() {
  local out
  out=$( { TIMEFORMAT='%3R %3U %3S'; time "$@" >/dev/null 2>&1; } 2>&1 )
  awk '{printf "%.1f %.1f\n", $1 * 1000, ($2 + $3) * 1000}' <<< "$out"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

"$DROVER" keygen --out "$W/keys" >/dev/null
for i in $(seq -w 1 100); do
  dir="$W/src/bundles/b$i"
  mkdir -p "$dir"
  # 2 KB .. ~100 KB of YAML per bundle; base64 of random bytes so gzip cannot make it vanish.
  bytes=$(( 2000 + (10#$i * 9973) % 98000 ))
  {
    printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b%s\ndata:\n  payload: |\n' "$i"
    head -c $((bytes * 3 / 4)) /dev/urandom | base64 -w 76 | sed 's/^/    /'
  } > "$dir/configmap.yaml"
done
"$DROVER" publish "$W/src" --store "$W/A" --key "$W/keys/drover.key" >/dev/null
first_drover=$(timed "$DROVER" sync "$W/A" "$W/B" --key "$W/keys/drover.pub")
first_rsync=$(timed rsync -a "$W/A/" "$W/C/")
rsync -a "$W/A/" "$W/D/"
blobs=$(find "$W/A/blobs/sha256" -type f | wc -l)
size=$(du -sk "$W/A" | cut -f1)
fs=$(df -T "$W" | awk 'NR==2 {print $2}')
echo "store: 100 bundles, $blobs blobs, ${size} KiB, on $fs"
echo "first copy into an empty mirror (wall / CPU ms): drover sync ${first_drover/ / / }, rsync -a ${first_rsync/ / / }"
echo "$RUNS runs of: change 1 bundle, publish, update each mirror"
printf '%4s %22s %22s %22s\n' run "drover sync" "rsync -a" "rsync ordered (2 steps)"
printf '%4s %22s %22s %22s\n' "" "wall / CPU ms" "wall / CPU ms" "wall / CPU ms"

: > "$W/drover.times"; : > "$W/rsync.times"; : > "$W/ordered.times"
sync_drover() { "$DROVER" sync "$W/A" "$W/B" --key "$W/keys/drover.pub"; }
sync_rsync() { rsync -a "$W/A/" "$W/C/"; }
sync_ordered() { rsync -a --exclude 'index.json*' "$W/A/" "$W/D/" && rsync -a "$W/A/index.json" "$W/A/index.json.minisig" "$W/D/"; }
for run in $(seq 1 "$RUNS"); do
  n=$(printf '%03d' $(( (run * 37) % 100 + 1 )))
  printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: change\ndata:\n  run: "%s"\n' "$run" \
    > "$W/src/bundles/b$n/change.yaml"
  "$DROVER" publish "$W/src" --store "$W/A" --key "$W/keys/drover.key" >/dev/null
  if [ $((run % 2)) -eq 1 ]; then
    d=$(timed sync_drover); r=$(timed sync_rsync); o=$(timed sync_ordered)
  else
    o=$(timed sync_ordered); r=$(timed sync_rsync); d=$(timed sync_drover)
  fi
  echo "$d" >> "$W/drover.times"; echo "$r" >> "$W/rsync.times"; echo "$o" >> "$W/ordered.times"
  printf '%4d %22s %22s %22s\n' "$run" "${d/ / / }" "${r/ / / }" "${o/ / / }"
done
diff -r "$W/A" "$W/B" >/dev/null || { echo "B differs from A" >&2; exit 1; }
diff -r "$W/A" "$W/C" >/dev/null || { echo "C differs from A" >&2; exit 1; }
diff -r "$W/A" "$W/D" >/dev/null || { echo "D differs from A" >&2; exit 1; }
"$DROVER" verify "$W/B" --key "$W/keys/drover.pub" >/dev/null

col() { cut -d' ' -f"$1" < "$W/$2.times" | median; }
total() { cut -d' ' -f"$1" < "$W/$2.times" | awk '{t += $1} END {printf "%.1f", t}'; }
# CPU ratios use the totals over all runs: one rsync run often needs under the 1 ms that
# bash's time resolves, and a median of 0 would make any ratio meaningless. A total still
# under 1 ms is reported as such, never as a ratio of 0.
awk -v dw="$(col 1 drover)" -v dc="$(col 2 drover)" -v rw="$(col 1 rsync)" -v rc="$(col 2 rsync)" \
    -v ow="$(col 1 ordered)" -v oc="$(col 2 ordered)" \
    -v tdc="$(total 2 drover)" -v trc="$(total 2 rsync)" -v toc="$(total 2 ordered)" 'BEGIN {
  printf "median wall: drover sync %.1f ms, rsync -a %.1f ms, rsync ordered %.1f ms\n", dw, rw, ow
  printf "median CPU:  drover sync %.1f ms, rsync -a %.1f ms, rsync ordered %.1f ms\n", dc, rc, oc
  cr = (trc >= 1 ? sprintf("%.2f", tdc / trc) : "n/a (rsync CPU under 1 ms in total)")
  co = (toc >= 1 ? sprintf("%.2f", tdc / toc) : "n/a (rsync CPU under 1 ms in total)")
  printf "drover / rsync -a: wall %.2f, CPU %s; drover / rsync ordered: wall %.2f, CPU %s (target <= 1)\n", \
    dw / rw, cr, dw / ow, co
}'
