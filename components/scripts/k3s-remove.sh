#!/usr/bin/env bash
# Remove K3s from this host with the uninstall script the K3s installer left behind.
#
#   sudo bash k3s-remove.sh
#
# Runs when Pulumi deletes a node's install step (an agent taken out of the config, or a rollback
# to a phase before K3s). Idempotent: on a host without K3s it says so and succeeds. The
# uninstallers stop the service, remove the binary, /etc/rancher/k3s and /var/lib/rancher/k3s.
set -euo pipefail

BIN_DIR="${BIN_DIR:-/usr/local/bin}"

log() { printf 'k3s-remove: %s\n' "$*"; }
die() {
    printf 'k3s-remove: error: %s\n' "$*" >&2
    exit 1
}

removed=0
# A host is either a server or an agent; both scripts exist only if someone mixed roles by hand.
for kind in k3s k3s-agent; do
    uninstaller="$BIN_DIR/${kind}-uninstall.sh"
    if [[ -x "$uninstaller" ]]; then
        log "running ${uninstaller}"
        rc=0
        "$uninstaller" || rc=$?
        if [[ "$rc" -ne 0 ]]; then
            die "${uninstaller} failed with exit code ${rc}; K3s may be half removed, run it again by hand"
        fi
        removed=1
    fi
done

if [[ "$removed" -eq 0 ]]; then
    log "K3s is not installed (no uninstall script in ${BIN_DIR}); nothing to remove"
else
    log "done: K3s removed"
fi
