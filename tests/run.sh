#!/usr/bin/env bash
# Runs every drover test: unit tests and the end-to-end tests in tests/, which drive the
# real binaries against real nginx, minisign, curl, docker-registry (the CNCF distribution
# registry), skopeo, htpasswd (apache2-utils), rsync, openssl, file and ca-certificates (the
# static binary and agent image tests), the arm64/armv7 cross toolchains, qemu-user-static
# and the Rust targets (foreign_arch.rs), and systemd-analyze and strace (systemd_unit.rs;
# strace also crash_consistency.rs). Installs those from Debian (and the targets with
# rustup) when they are missing (needs root or sudo). A test whose component is still
# missing fails with a message naming the package; nothing is skipped. Two tests need root:
# disk_full.rs mounts a small tmpfs, network_failures.rs runs the agent in its own network
# namespace.
set -euo pipefail
cd "$(dirname "$0")/.."

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
need=()
have nginx || need+=(nginx-light)
have minisign || need+=(minisign)
have curl || need+=(curl)
have docker-registry || need+=(docker-registry)
have skopeo || need+=(skopeo)
have htpasswd || need+=(apache2-utils)
have rsync || need+=(rsync)
have openssl || need+=(openssl)
have unshare || need+=(util-linux)
have mount || need+=(mount)
have file || need+=(file)
[ -f /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
have aarch64-linux-gnu-gcc || need+=(gcc-aarch64-linux-gnu)
[ -f /usr/aarch64-linux-gnu/lib/libc.a ] || need+=(libc6-dev-arm64-cross)
have arm-linux-gnueabihf-gcc || need+=(gcc-arm-linux-gnueabihf)
[ -f /usr/arm-linux-gnueabihf/lib/libc.a ] || need+=(libc6-dev-armhf-cross)
{ have qemu-aarch64-static && have qemu-arm-static; } || need+=(qemu-user-static)
have systemd-analyze || need+=(systemd)
have strace || need+=(strace)
# kubectl (the kube sink, add-on and authoring tests run stock kubectl v1.32) has no recent
# Debian 12 package; the tests find it on PATH. Say how to get it instead of failing later.
if ! command -v kubectl >/dev/null 2>&1; then
  echo "tests/run.sh: kubectl is not on PATH; the kube tests will fail. Install the official binary:" >&2
  echo "  curl -LO https://dl.k8s.io/release/v1.32.4/bin/linux/amd64/kubectl && sudo install -m 0755 kubectl /usr/local/bin/kubectl" >&2
  echo "  (Debian 12's kubernetes-client package is kubectl 1.20, too old for these tests)" >&2
fi
if [ "${#need[@]}" -gt 0 ]; then
  echo "tests/run.sh: installing ${need[*]} from Debian" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
foreign_targets=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)
for target in "${foreign_targets[@]}"; do
  rustup target list --installed | grep -qx "$target" || rustup target add "$target"
done

# The end-to-end tests run the built binaries; build them first so they are never stale.
cargo build --workspace --bins --locked
# The fully static agents (tests/tests/distribution.rs, k3os_config.rs, systemd_unit.rs for
# x86_64; foreign_arch.rs for arm64 and armv7), built once, with the quick static-test
# profile (the tests call build-static.sh too and must get the same one).
export DROVER_STATIC_PROFILE="${DROVER_STATIC_PROFILE:-static-test}"
bash tests/build-static.sh >/dev/null
for target in "${foreign_targets[@]}"; do
  bash tests/build-static.sh "$target" >/dev/null
done
cargo test --workspace --locked "$@"
