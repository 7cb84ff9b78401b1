#!/usr/bin/env bash
# Runs the drover agent's fuzz targets (docs/fuzzing.md), one after another, each for a
# bounded time in one process. Not part of CI: it needs cargo-fuzz (`cargo install
# cargo-fuzz`) and nightly compiler flags, which RUSTC_BOOTSTRAP=1 unlocks on stable.
#
#   agent/fuzz/run.sh [SECONDS [TARGET...]]     default: 180 seconds, every target
#
# Seeds are read from corpus/<target>/ (committed: hand-made seeds plus a bounded copy of
# an earlier minimised corpus); what libFuzzer finds goes to corpus-work/<target>/ (not
# committed; kept between runs and minimised in place with `cargo fuzz cmin` at the end).
# Nothing here writes to corpus/: refreshing it is a manual step (docs/fuzzing.md). A crash or timeout leaves its input in artifacts/<target>/ and makes
# the script exit non-zero: turn it into a regression test next to the code, then fix.
# FUZZ_SANITIZER=none builds without AddressSanitizer (faster; our crates forbid unsafe,
# but libyaml's Rust translation and zlib-rs below them do use it).
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-180}
shift || true
all=(index minisign tarball yaml selector)
targets=("${@:-${all[@]}}")
sanitizer=${FUZZ_SANITIZER:-address}
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "run.sh: cargo-fuzz is not installed: cargo install cargo-fuzz" >&2
  exit 1
fi

cargo fuzz build -O -s "$sanitizer"
crashed=()
for target in "${targets[@]}"; do
  mkdir -p "corpus-work/$target"
  log="corpus-work/$target.log"
  echo "== $target: ${seconds}s (log: agent/fuzz/$log)"
  # The first corpus directory receives new inputs; the committed seeds stay untouched.
  if ! cargo fuzz run -O -s "$sanitizer" "$target" "corpus-work/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    crashed+=("$target")
    grep -E "ERROR|panicked|Test unit written" "$log" >&2 || tail -20 "$log" >&2
  fi
  grep -E "^#[0-9]+[[:space:]]+DONE" "$log" | tail -1 || true
  grep -E "stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)" "$log" || true
  cargo fuzz cmin -O -s "$sanitizer" "$target" "corpus-work/$target" >/dev/null 2>&1 || true
done

if [ "${#crashed[@]}" -gt 0 ]; then
  echo "run.sh: crashes in ${crashed[*]}: inputs are in agent/fuzz/artifacts/" >&2
  exit 1
fi
echo "run.sh: no crash in ${targets[*]} (${seconds}s each)"
