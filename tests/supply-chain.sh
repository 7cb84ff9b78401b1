#!/usr/bin/env bash
# Supply-chain checks for the drover workspace (docs/supply-chain.md): no OpenSSL anywhere,
# the size of the agent's dependency tree, that the fuzz crate still compiles, and cargo-deny (deny.toml) for licenses, banned
# crates, duplicate versions, sources and security advisories (RustSec: an offline snapshot
# given by DROVER_ADVISORY_DB or found at ../shared/advisory-db, else fetched from github.com). Not part of tests/run.sh: it needs cargo-deny
# (`cargo install --locked cargo-deny`) and, for advisories, network access beyond crates.io.
#
# Exit status: 0 when every check that ran passed; 1 when one failed or cargo-deny is
# missing. Advisories that could not be checked are reported loudly but fail the run only
# with DROVER_REQUIRE_ADVISORIES=1 (set it where github.com is reachable, e.g. release CI).
set -uo pipefail
cd "$(dirname "$0")/.."

failed=0
fail() { echo "FAIL: $*" >&2; failed=1; }

echo "== TLS stack: rustls only"
for crate in openssl-sys openssl native-tls; do
  # `cargo tree -i` fails when the crate is not in Cargo.lock at all, and prints nothing
  # when it is locked but unused: both mean "absent".
  if out=$(cargo tree --locked --workspace -e normal,build -i "$crate" 2>/dev/null) && [ -n "$out" ]; then
    fail "$crate is in the dependency tree:"
    echo "$out" >&2
  else
    echo "ok: no $crate in the workspace"
  fi
done

echo "== Dependency tree size (normal dependencies, each crate once, the crate itself included)"
count() { cargo tree --locked -e normal --prefix none "$@" | sed 's/ (\*)$//' | sort -u | wc -l; }
echo "drover-agent: $(count -p drover-agent) crates"
echo "drover (publisher): $(count -p drover) crates"
echo "whole workspace (normal, build and dev): $(cargo tree --locked --workspace -e normal,build,dev --prefix none | sed 's/ (\*)$//' | sort -u | wc -l) crates"

echo "== Fuzz crate builds (agent/fuzz is outside the workspace, so nothing else compiles it)"
# RUSTC_BOOTSTRAP=1: libfuzzer-sys wants nightly flags; a check needs no cargo-fuzz.
if RUSTC_BOOTSTRAP=1 cargo check --locked --manifest-path agent/fuzz/Cargo.toml --quiet; then
  echo "ok: agent/fuzz checks"
else
  fail "cargo check --manifest-path agent/fuzz/Cargo.toml"
fi

echo "== cargo-deny"
if ! cargo deny --version >/dev/null 2>&1; then
  fail "cargo-deny is not installed: cargo install --locked cargo-deny"
  exit 1
fi
cargo deny --locked check --hide-inclusion-graph licenses bans sources || fail "cargo deny check licenses bans sources"

echo "== Advisories (RustSec)"
# cargo-deny keeps the database in deny.toml's db-path (target/advisory-dbs), in a directory
# named after the database URL. An offline snapshot (DROVER_ADVISORY_DB, default
# ../shared/advisory-db when it exists: a copy of github.com/rustsec/advisory-db with a
# SNAPSHOT.md saying when it was taken) is put there as a one-commit git repository, which
# is what cargo-deny reads; otherwise the database is fetched from github.com.
db_dir=target/advisory-dbs/advisory-db-3157b0e258782691   # cargo-deny's name for the default URL
snapshot="${DROVER_ADVISORY_DB:-}"
[ -z "$snapshot" ] && [ -d ../shared/advisory-db ] && snapshot=../shared/advisory-db
if [ -n "$snapshot" ]; then
  taken=$(grep -o 'commit [0-9a-f]* ([0-9-]*)' "$snapshot/SNAPSHOT.md" 2>/dev/null | head -1)
  echo "using the offline snapshot $snapshot (${taken:-date unknown: no SNAPSHOT.md})"
  rm -rf "$db_dir" && mkdir -p "$(dirname "$db_dir")" && cp -r "$snapshot" "$db_dir"
  git -C "$db_dir" init -q && git -C "$db_dir" add -A \
    && git -C "$db_dir" -c user.name=drover -c user.email=drover@localhost commit -qm snapshot
  # --offline keeps cargo-deny from fetching the database; cargo metadata then needs every
  # platform's crates already downloaded.
  cargo fetch --locked --quiet
  if cargo deny --offline --locked check --hide-inclusion-graph advisories; then
    echo "ok: no known advisories apply as of the snapshot ${taken:-(date unknown)}; newer ones are not checked"
  else
    fail "cargo deny check advisories (snapshot ${taken:-date unknown})"
  fi
elif fetch=$(timeout 120 cargo deny fetch db 2>&1); then
  cargo deny --locked check --hide-inclusion-graph advisories || fail "cargo deny check advisories"
else
  echo "!! ADVISORIES NOT CHECKED: the RustSec advisory database could not be fetched:" >&2
  echo "$fetch" | tail -2 | sed 's/^/!!   /' >&2
  echo "!! (it lives on github.com, which this network does not reach). Give an offline copy" >&2
  echo "!! with DROVER_ADVISORY_DB=DIR, or run this script where github.com is reachable." >&2
  [ "${DROVER_REQUIRE_ADVISORIES:-0}" = 1 ] && fail "advisories required (DROVER_REQUIRE_ADVISORIES=1) but not checked"
fi

if [ "$failed" -ne 0 ]; then
  echo "supply-chain: FAILED" >&2
  exit 1
fi
echo "supply-chain: ok"
