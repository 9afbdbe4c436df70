#!/usr/bin/env bash
# GCP startup-script: install the SSH host key Pulumi generated for this VM, at every boot.
#
# The key pair arrives in the instance metadata (attributes pinned-ssh-host-key and
# pinned-ssh-host-key-pub, set by components/gpu_host.py). The Google guest agent makes fresh host
# keys on an instance's first boot; this script runs after it, puts the pinned key back, stops
# the agent from doing that again, and restarts sshd only when something changed. It never
# prints the private key.
#
# Paths and the metadata endpoint can be redirected for tests.
set -euo pipefail

SSH_DIR="${SSH_DIR:-/etc/ssh}"
GUEST_CFG="${GUEST_CFG:-/etc/default/instance_configs.cfg}"
METADATA_URL="${METADATA_URL:-http://metadata.google.internal/computeMetadata/v1/instance/attributes}"

log() { printf 'pin-host-key: %s\n' "$*"; }
die() {
    printf 'pin-host-key: error: %s\n' "$*" >&2
    exit 1
}
fetch() { curl -fsS --retry 5 --retry-delay 2 -H 'Metadata-Flavor: Google' "${METADATA_URL}/$1"; }

want_pub="$(fetch pinned-ssh-host-key-pub)" || die "metadata attribute pinned-ssh-host-key-pub is missing"
want_pub="$(printf '%s\n' "$want_pub" | awk 'NR == 1 { print $1 " " $2 }')"
case "$want_pub" in
    "ssh-ed25519 "?*) ;;
    *) die "pinned-ssh-host-key-pub is not an ssh-ed25519 public key" ;;
esac

# The agent must not replace host keys on later boots either (google-guest-agent InstanceSetup).
if ! grep -qs '^set_host_keys *= *false' "$GUEST_CFG"; then
    mkdir -p "$(dirname "$GUEST_CFG")"
    printf '[InstanceSetup]\nset_host_keys = false\n' >>"$GUEST_CFG"
    log "disabled host key regeneration in $GUEST_CFG"
fi

have_pub=""
if [[ -s "${SSH_DIR}/ssh_host_ed25519_key.pub" ]]; then
    have_pub="$(awk 'NR == 1 { print $1 " " $2 }' "${SSH_DIR}/ssh_host_ed25519_key.pub")"
fi
if [[ "$have_pub" == "$want_pub" && -s "${SSH_DIR}/ssh_host_ed25519_key" ]]; then
    log "host key already pinned"
    exit 0
fi

umask 077
tmp="$(mktemp "${SSH_DIR}/.pinned-key.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
fetch pinned-ssh-host-key >"$tmp" || die "metadata attribute pinned-ssh-host-key is missing"
grep -q -- '-----BEGIN OPENSSH PRIVATE KEY-----' "$tmp" || die "pinned-ssh-host-key is not an OpenSSH private key"

install -m 600 "$tmp" "${SSH_DIR}/ssh_host_ed25519_key"
printf '%s\n' "$want_pub" >"${SSH_DIR}/ssh_host_ed25519_key.pub"
chmod 644 "${SSH_DIR}/ssh_host_ed25519_key.pub"
# Other key types would be offered to clients that cannot verify them against the pin.
rm -f "${SSH_DIR}"/ssh_host_rsa_key* "${SSH_DIR}"/ssh_host_ecdsa_key* "${SSH_DIR}"/ssh_host_dsa_key*
log "installed the pinned host key"

systemctl restart ssh.service 2>/dev/null || systemctl restart sshd.service
log "restarted sshd"
