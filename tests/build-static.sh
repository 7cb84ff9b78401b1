#!/usr/bin/env bash
# Builds drover-agent as one fully static x86_64 Linux executable (no glibc, no NSS, no
# dynamic loader needed on the target), for k3os, minimal edge OSes and the agent image.
#
#   bash tests/build-static.sh            # prints the path of the binary on stdout
#
# DROVER_STATIC_PROFILE picks the cargo profile: `release` (default: what ships, what
# docs/performance.md measures) or `static-test` (tests/run.sh: the same static linking
# and code, without LTO and with parallel codegen, so CI builds it in a fraction of the time).
#
# Static glibc comes from `-C target-feature=+crt-static`. The explicit --target makes
# cargo apply RUSTFLAGS to the target only, so proc-macros (loaded by rustc) stay dynamic.
# Name resolution uses reqwest's pure-Rust resolver (hickory-dns feature of the agent), so
# the binary never calls glibc's getaddrinfo/NSS, which a static glibc cannot load.
# getrandom looks up glibc's getrandom() with dlsym, which finds nothing in a static binary,
# and then falls back to reading /dev/urandom (absent in an empty chroot or a bare initrd);
# the getrandom_backend cfg makes it call getrandom(2) directly (glibc >= 2.25, Linux >= 3.17).
# See docs/install.md ("The static binary").
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
profile="${DROVER_STATIC_PROFILE:-release}"
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\"" \
    cargo build --profile "$profile" --locked -p drover-agent --bin drover-agent --target "$target" >&2
bin="$PWD/target/$target/$profile/drover-agent"
# The release profile strips symbols already (strip = true); check it is really static.
if ! file "$bin" | grep -Eq 'statically linked|static-pie linked'; then
    echo "build-static.sh: $bin is not statically linked: $(file "$bin")" >&2
    exit 1
fi
echo "$bin"
