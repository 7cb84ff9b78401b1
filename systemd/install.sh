#!/bin/sh
# Installs drover-agent in systemd host mode (systemd/README.md, docs/install.md
# "systemd host mode"): the static binary, the trusted key, the agent config, the unit,
# its dedicated user (sysusers.d) and its directory setup (tmpfiles.d); then, on the live
# system, makes the user, reloads systemd and starts the agent.
#
#   sudo sh systemd/install.sh --binary drover-agent --key drover.pub --config config.yaml
#
# --root DIR installs into DIR instead of / (an image being built, a test): the files and
# the user are written there, and nothing is started. Running it again upgrades: every file
# is replaced (the running binary keeps its old inode) and the agent restarted.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
root=/
binary="" key="" config=""
usage() {
    echo "usage: install.sh --binary FILE --key FILE --config FILE [--root DIR]" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="${2:?}" ;;
        --key) key="${2:?}" ;;
        --config) config="${2:?}" ;;
        --root) root="${2:?}" ;;
        *) usage ;;
    esac
    shift 2 || usage
done
[ -n "$binary" ] && [ -n "$key" ] && [ -n "$config" ] || usage
r="${root%/}"

install -D -m 0755 "$binary" "$r/usr/local/bin/drover-agent"
# Readable by the agent's user: public keys and a config without secrets. The directory
# stays root's, so the agent cannot change what it trusts.
install -d -m 0755 "$r/etc/drover"
install -m 0644 "$key" "$r/etc/drover/drover.pub"
install -m 0644 "$config" "$r/etc/drover/config.yaml"
install -D -m 0644 "$here/drover-agent.service" "$r/etc/systemd/system/drover-agent.service"
install -D -m 0644 "$here/drover-agent.sysusers" "$r/etc/sysusers.d/drover-agent.conf"
install -D -m 0644 "$here/drover-agent.tmpfiles" "$r/etc/tmpfiles.d/drover-agent.conf"

if [ "$root" = / ]; then
    systemd-sysusers /etc/sysusers.d/drover-agent.conf
    systemctl daemon-reload
    systemctl enable drover-agent.service
    # The unit's ExecStartPre applies the tmpfiles.d directory setup at every start.
    systemctl restart drover-agent.service
else
    mkdir -p "$r/etc"
    systemd-sysusers --root="$r" "$r/etc/sysusers.d/drover-agent.conf"
fi
