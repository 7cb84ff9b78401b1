#!/usr/bin/env bash
# Agent verify + extract (figure 2): one bundle of MIB MiB of generated manifests, published
# with `drover publish` and applied by `drover-agent --once` from a file:// store into an
# empty manifests directory (copy the blob into the cache while hashing it, check size and
# sha256, then read the tarball, substitute, check and write every object). Baseline, same
# run, same blob: `sha256sum BLOB && tar xzf BLOB` into an empty directory. Also prints the
# agent's peak RSS (/usr/bin/time "Maximum resident set size"), which must not grow with
# the bundle.
# Usage: tests/bench/extract-throughput.sh [MIB...]   (default: 100 1024)
#        RUNS=3 tests/bench/extract-throughput.sh     (runs per size; default 3, 1 above 512 MiB)
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -gt 0 ] || set -- 100 1024
cargo build --release -q -p drover -p drover-agent
BIN=$PWD/target/release
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
"$BIN/drover" keygen --out "$W/keys" >/dev/null

for mib in "$@"; do
  # Tree (deleted once published), blob, cached copy, agent output, baseline output.
  need=$((mib * 3 + mib / 2 + 100))
  free=$(df -Pm "$W" | awk 'NR == 2 {print $4}')
  [ "$free" -ge "$need" ] || { echo "$mib MiB: needs $need MiB free in $W, has $free" >&2; exit 1; }
  runs="${RUNS:-$([ "$mib" -gt 512 ] && echo 1 || echo 3)}"
  python3 tests/bench/gen-tree.py "$W/src" "$mib" 1
  printf 'namespace: bench\n' > "$W/src/bundles/b00/bundle.yaml"
  "$BIN/drover" publish "$W/src" --store "$W/store" --key "$W/keys/drover.key" >/dev/null
  rm -rf "$W/src"
  blob=$(ls "$W"/store/blobs/sha256/*)
  echo "bundle: $mib MiB of YAML, blob $(( $(stat -c %s "$blob") / 1048576 )) MiB"
  : > "$W/base.times"; : > "$W/agent.times"
  for run in $(seq "$runs"); do
    rm -rf "$W/x"; mkdir "$W/x"
    /usr/bin/time -f "%e %U %S" -o "$W/t" sh -c "sha256sum '$blob' >/dev/null && tar xzf '$blob' -C '$W/x'"
    cat "$W/t" >> "$W/base.times"
    rm -rf "$W/x" "$W/m" "$W/s"
    /usr/bin/time -f "%e %U %S %M" -o "$W/t" "$BIN/drover-agent" --source "file://$W/store" \
      --key "$W/keys/drover.pub" --cluster-name bench-1 --sink "dir:$W/m" --state-dir "$W/s" --once > "$W/agent.out"
    cat "$W/t" >> "$W/agent.times"
    echo "run $run: sha256sum + tar xzf $(tail -1 "$W/base.times" | cut -d' ' -f1) s; agent: $(tail -1 "$W/agent.times" | cut -d' ' -f1) s, $(grep -o '[0-9]* objects' "$W/agent.out")"
  done
  out=$(stat -c %s "$W/m/drover-b00.yaml")
  read -r bw bc < <(sort -n "$W/base.times" | head -1 | awk '{print $1, $2 + $3}')
  read -r aw ac < <(sort -n "$W/agent.times" | head -1 | awk '{print $1, $2 + $3}')
  rss=$(awk '{print $4}' "$W/agent.times" | sort -n | tail -1)
  awk -v mib="$mib" -v bw="$bw" -v bc="$bc" -v aw="$aw" -v ac="$ac" -v rss="$rss" -v out="$out" 'BEGIN {
    printf "%5d MiB  baseline sha256sum + tar xzf: %7.2f s wall, %7.2f s CPU, %6.1f MiB/s\n", mib, bw, bc, mib / bw
    printf "%5d MiB  drover-agent --once:          %7.2f s wall, %7.2f s CPU, %6.1f MiB/s, wrote %.1f MiB\n", mib, aw, ac, mib / aw, out / 1048576
    printf "%5d MiB  ratio agent / baseline (best of each, wall): %.1f; agent peak RSS %.1f MiB (target <= 32 MiB)\n", mib, aw / bw, rss / 1024
  }'
  rm -rf "$W/store" "$W/m" "$W/s" "$W/x"
done
