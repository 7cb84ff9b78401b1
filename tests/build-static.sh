#!/usr/bin/env bash
# Builds drover-agent as one fully static Linux executable (no glibc, no NSS, no dynamic
# loader needed on the target), for k3os, minimal edge OSes and the agent image.
#
#   bash tests/build-static.sh [TARGET]    # prints the path of the binary on stdout
#
# TARGET is x86_64-unknown-linux-gnu (the default), aarch64-unknown-linux-gnu (arm64:
# Raspberry Pi 4/5, Jetson, most industrial ARM boxes) or armv7-unknown-linux-gnueabihf
# (32-bit ARM with hardware floating point: Raspberry Pi 2/3 on a 32-bit OS). The two ARM
# targets are cross-compiled with Debian's cross toolchains (gcc-aarch64-linux-gnu +
# libc6-dev-arm64-cross, gcc-arm-linux-gnueabihf + libc6-dev-armhf-cross) and need
# `rustup target add TARGET`; Debian's qemu-user-static runs the results (tests/run.sh
# installs all of it). The linker and C compiler (ring's C/assembly) are set here, per
# build, rather than in a committed .cargo/config.toml: the ordinary `cargo build` of the
# workspace never cross-compiles, and this script is the one place that says how a
# shipped binary is made.
#
# DROVER_STATIC_PROFILE picks the cargo profile: `release` (default: what ships, what
# docs/performance.md measures) or `static-test` (tests/run.sh: the same static linking
# and code, without LTO and with parallel codegen, so CI builds it in a fraction of the time).
# CARGO_TARGET_DIR is honoured (the printed path is under it), so a release build for
# measuring can run beside the tests' build without waiting on its lock.
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
target="${1:-x86_64-unknown-linux-gnu}"
profile="${DROVER_STATIC_PROFILE:-release}"

# The cross C toolchain of TARGET: its gcc (linker and C compiler) and Debian packages.
case "$target" in
    x86_64-unknown-linux-gnu) cross="" ;;
    aarch64-unknown-linux-gnu) cross=aarch64-linux-gnu packages="gcc-aarch64-linux-gnu libc6-dev-arm64-cross" ;;
    armv7-unknown-linux-gnueabihf) cross=arm-linux-gnueabihf packages="gcc-arm-linux-gnueabihf libc6-dev-armhf-cross" ;;
    *)
        echo "build-static.sh: unsupported target $target (x86_64-unknown-linux-gnu, aarch64-unknown-linux-gnu or armv7-unknown-linux-gnueabihf)" >&2
        exit 2
        ;;
esac
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    echo "build-static.sh: the Rust target $target is not installed: rustup target add $target (bash tests/run.sh does)" >&2
    exit 1
fi
if [ -n "$cross" ]; then
    if ! command -v "$cross-gcc" >/dev/null || [ ! -f "/usr/$cross/lib/libc.a" ]; then
        echo "build-static.sh: the $target cross toolchain is missing: apt-get install $packages (bash tests/run.sh installs it)" >&2
        exit 1
    fi
    # CARGO_TARGET_<TRIPLE>_LINKER and CC_<triple>, for this target only.
    triple_env="$(echo "$target" | tr 'a-z-' 'A-Z_')"
    export "CARGO_TARGET_${triple_env}_LINKER=$cross-gcc"
    export "CC_${target//-/_}=$cross-gcc" "AR_${target//-/_}=$cross-ar"
fi

RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\"" \
    cargo build --profile "$profile" --locked -p drover-agent --bin drover-agent --target "$target" >&2
target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
bin="$target_dir/$target/$profile/drover-agent"
# The release profile strips symbols already (strip = true); check it is really static.
if ! file "$bin" | grep -Eq 'statically linked|static-pie linked'; then
    echo "build-static.sh: $bin is not statically linked: $(file "$bin")" >&2
    exit 1
fi
echo "$bin"
