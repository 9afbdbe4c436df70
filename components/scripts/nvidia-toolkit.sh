#!/usr/bin/env bash
# Make this host ready for GPU containers: check the NVIDIA driver, install the NVIDIA container
# toolkit only if it is missing. Runs BEFORE K3s starts on the host, because K3s adds the `nvidia`
# containerd runtime only when it finds nvidia-container-runtime at start-up.
#
#   sudo env GPU_EXPECTED=1 NVIDIA_TOOLKIT_VERSION=1.19.1-1 bash nvidia-toolkit.sh
#
# GPU_EXPECTED=1: the host has a GPU by configuration; a missing or broken driver is an error
#                 (Lambda and GCP GPU images ship the driver; this script never installs one).
# GPU_EXPECTED=0: a CPU host; without a driver there is nothing to do.
# Idempotent: with the toolkit present it changes nothing.
set -euo pipefail

GPU_EXPECTED="${GPU_EXPECTED:-1}"
NVIDIA_TOOLKIT_VERSION="${NVIDIA_TOOLKIT_VERSION:-}"
NVIDIA_REPO_URL="${NVIDIA_REPO_URL:-https://nvidia.github.io/libnvidia-container}"
APT_KEYRING_DIR="${APT_KEYRING_DIR:-/usr/share/keyrings}"
APT_SOURCES_DIR="${APT_SOURCES_DIR:-/etc/apt/sources.list.d}"

log() { printf 'nvidia-toolkit: %s\n' "$*"; }
die() {
    printf 'nvidia-toolkit: error: %s\n' "$*" >&2
    exit 1
}

case "$GPU_EXPECTED" in
    0 | 1) ;;
    *) die "GPU_EXPECTED must be 0 or 1 (got '${GPU_EXPECTED}')" ;;
esac

# --- driver --------------------------------------------------------------------------------------
if ! command -v nvidia-smi >/dev/null 2>&1; then
    if [[ "$GPU_EXPECTED" -eq 1 ]]; then
        die "no NVIDIA driver on this GPU node: nvidia-smi is not installed. Use an image that ships the driver (Lambda Stack, GCP deep-learning images) or install it, then run this again"
    fi
    log "no NVIDIA driver and none expected (CPU node); skipping the container toolkit"
    exit 0
fi
gpus=""
if ! gpus="$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1)"; then
    if [[ "$GPU_EXPECTED" -eq 1 ]]; then
        die "nvidia-smi failed on this GPU node, the driver is not loaded or does not match the kernel: ${gpus}"
    fi
    log "nvidia-smi failed and no GPU is expected (CPU node); skipping the container toolkit"
    exit 0
fi
log "driver OK: ${gpus//$'\n'/; }"

# --- container toolkit ----------------------------------------------------------------------------
if command -v nvidia-container-runtime >/dev/null 2>&1; then
    log "NVIDIA container toolkit already installed ($(command -v nvidia-container-runtime)); nothing to do"
    exit 0
fi

if [[ ! "$NVIDIA_TOOLKIT_VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+-[0-9]+$ ]]; then
    die "NVIDIA_TOOLKIT_VERSION must be a pinned apt version such as 1.19.1-1 (got '${NVIDIA_TOOLKIT_VERSION}')"
fi

log "installing the NVIDIA container toolkit ${NVIDIA_TOOLKIT_VERSION}"
workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT

keyring="$APT_KEYRING_DIR/nvidia-container-toolkit-keyring.gpg"
if ! curl -fsSL --retry 3 -o "$workdir/gpgkey" "$NVIDIA_REPO_URL/gpgkey"; then
    die "could not download the NVIDIA repository key from ${NVIDIA_REPO_URL}/gpgkey"
fi
mkdir -p "$APT_KEYRING_DIR" "$APT_SOURCES_DIR"
gpg --batch --yes --dearmor -o "$keyring" "$workdir/gpgkey"
# apt itself expands $(ARCH) in a sources line; the shell must not.
# shellcheck disable=SC2016
printf 'deb [signed-by=%s] %s/stable/deb/$(ARCH) /\n' "$keyring" "$NVIDIA_REPO_URL" \
    >"$APT_SOURCES_DIR/nvidia-container-toolkit.list"

export DEBIAN_FRONTEND=noninteractive
if ! apt-get update -q; then
    die "apt-get update failed after adding the NVIDIA repository"
fi
# Every package of the toolkit at the same version: apt would otherwise take the newest
# libnvidia-container for the pinned nvidia-container-toolkit.
if ! apt-get install -y -q \
    "nvidia-container-toolkit=${NVIDIA_TOOLKIT_VERSION}" \
    "nvidia-container-toolkit-base=${NVIDIA_TOOLKIT_VERSION}" \
    "libnvidia-container-tools=${NVIDIA_TOOLKIT_VERSION}" \
    "libnvidia-container1=${NVIDIA_TOOLKIT_VERSION}"; then
    die "apt-get could not install the NVIDIA container toolkit ${NVIDIA_TOOLKIT_VERSION}"
fi
if ! command -v nvidia-container-runtime >/dev/null 2>&1; then
    die "the NVIDIA container toolkit was installed but nvidia-container-runtime is not on PATH"
fi
log "installed nvidia-container-runtime at $(command -v nvidia-container-runtime)"

# Only when K3s already runs here (a repaired host): restart it so it picks up the runtime.
for service in k3s k3s-agent; do
    if systemctl is-active --quiet "$service"; then
        log "restarting ${service} so K3s configures the nvidia runtime"
        systemctl restart "$service"
    fi
done
log "done"
