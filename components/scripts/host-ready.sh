#!/usr/bin/env bash
# First SSH step on a new GPU host: wait until first boot is over and the GPUs are visible.
#
#   EXPECTED_GPUS=1 bash -s < host-ready.sh
#
# Run by components/gpu_host.py over a connection that pins the host key, so its success also
# proves the host presents the key Pulumi generated. Waits are bounded (WAIT_SECONDS); the GCP
# images install the NVIDIA driver during first boot, which takes minutes.
set -euo pipefail

EXPECTED_GPUS="${EXPECTED_GPUS:-1}"
WAIT_SECONDS="${WAIT_SECONDS:-900}" # for cloud-init
GPU_POLLS="${GPU_POLLS:-90}"        # looks at nvidia-smi, POLL_SECONDS apart
POLL_SECONDS="${POLL_SECONDS:-10}"

log() { printf 'host-ready: %s\n' "$*"; }
die() {
    printf 'host-ready: error: %s\n' "$*" >&2
    exit 1
}

[[ "$EXPECTED_GPUS" =~ ^[1-9][0-9]*$ ]] || die "EXPECTED_GPUS must be a positive number (got '${EXPECTED_GPUS}')"

if command -v cloud-init >/dev/null 2>&1; then
    # Exit status 2 means "done, with recoverable errors"; only 1 is a failed first boot.
    rc=0
    timeout "$WAIT_SECONDS" cloud-init status --wait >/dev/null || rc=$?
    case "$rc" in
        0 | 2) log "cloud-init finished" ;;
        124) die "cloud-init still running after ${WAIT_SECONDS}s" ;;
        *) die "cloud-init failed (status $rc); see /var/log/cloud-init-output.log" ;;
    esac
fi

count=0
for ((poll = 1; poll <= GPU_POLLS; poll++)); do
    count=0
    if command -v nvidia-smi >/dev/null 2>&1; then
        count="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | grep -c . || true)"
    fi
    if ((count >= EXPECTED_GPUS)); then
        log "${count} GPU(s) visible"
        exit 0
    fi
    if ((poll < GPU_POLLS)); then
        sleep "$POLL_SECONDS"
    fi
done
die "expected ${EXPECTED_GPUS} GPU(s), nvidia-smi shows ${count} after ${GPU_POLLS} looks"
