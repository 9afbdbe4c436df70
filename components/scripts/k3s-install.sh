#!/usr/bin/env bash
# Install, reconfigure or upgrade K3s on this host: a pinned release, the config read from stdin.
#
#   sudo env INSTALL_K3S_VERSION=v1.35.5+k3s1 ROLE=server NODE_NAME=server-1 GPU_NODE=1 \
#       bash k3s-install.sh < config.yaml
#
# The config arrives on stdin because it holds the cluster token: it never appears on a command
# line (visible in `ps`) and this script never prints it. Idempotent: the same release, the same
# config and a running service change nothing. A changed config restarts the service; a changed
# release re-runs the installer of exactly that release (which restarts the service itself).
#
# Paths can be redirected for tests; the defaults are K3s's own. This script's own variables
# avoid the K3S_ prefix on purpose: the installer copies every K3S_* variable in its environment
# into the service's env file, where K3s would read them as flags.
set -euo pipefail

CONFIG_DIR="${CONFIG_DIR:-/etc/rancher/k3s}"
DATA_DIR="${DATA_DIR:-/var/lib/rancher/k3s}"
WAIT_SECONDS="${WAIT_SECONDS:-600}"
POLL_SECONDS="${POLL_SECONDS:-5}"
GPU_NODE="${GPU_NODE:-0}"
INSTALL_K3S_VERSION="${INSTALL_K3S_VERSION:-}"
ROLE="${ROLE:-}"
NODE_NAME="${NODE_NAME:-}"

log() { printf 'k3s-install: %s\n' "$*"; }
die() {
    printf 'k3s-install: error: %s\n' "$*" >&2
    exit 1
}

# --- inputs ----------------------------------------------------------------------------------
# A channel name ("stable", "latest") would let nodes of one cluster drift apart; only a release.
if [[ ! "$INSTALL_K3S_VERSION" =~ ^v1\.[0-9]+\.[0-9]+\+k3s[0-9]+$ ]]; then
    die "INSTALL_K3S_VERSION must be a pinned K3s release such as v1.35.5+k3s1 (got '${INSTALL_K3S_VERSION}')"
fi
case "$ROLE" in
    server) service=k3s ;;
    agent) service=k3s-agent ;;
    *) die "ROLE must be 'server' or 'agent' (got '${ROLE}')" ;;
esac
case "$GPU_NODE" in
    0 | 1) ;;
    *) die "GPU_NODE must be 0 or 1 (got '${GPU_NODE}')" ;;
esac
if [[ -z "$NODE_NAME" ]]; then
    die "NODE_NAME is required (the node name the config registers)"
fi
# The tagged installer matches the release it installs; get.k3s.io serves whatever is newest.
INSTALLER_URL="${INSTALLER_URL:-https://raw.githubusercontent.com/k3s-io/k3s/${INSTALL_K3S_VERSION}/install.sh}"

workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT

# --- config ----------------------------------------------------------------------------------
desired="$workdir/config.yaml"
cat >"$desired"
if [[ ! -s "$desired" ]]; then
    die "no K3s config on stdin; pipe the rendered config.yaml into this script"
fi
if ! grep -q '^token:' "$desired"; then
    die "the config on stdin has no 'token:' line; refusing to install a node that cannot join"
fi

config="$CONFIG_DIR/config.yaml"
config_changed=0
if [[ -f "$config" ]] && cmp -s "$desired" "$config"; then
    log "config $config unchanged"
else
    mkdir -p "$CONFIG_DIR"
    # 0600: the file holds the cluster token.
    install -m 0600 "$desired" "$config.new"
    mv -f "$config.new" "$config"
    config_changed=1
    log "config $config written"
fi

# --- install or upgrade ------------------------------------------------------------------------
installed=""
if command -v k3s >/dev/null 2>&1; then
    installed="$(k3s --version 2>/dev/null | awk 'NR == 1 { print $3 }')" || installed=""
fi

action="none"
if [[ "$installed" != "$INSTALL_K3S_VERSION" ]]; then
    log "installing K3s ${INSTALL_K3S_VERSION} as ${ROLE} (installed: ${installed:-none})"
    installer="$workdir/install.sh"
    if ! curl -sfL --retry 3 -o "$installer" "$INSTALLER_URL"; then
        die "could not download the K3s installer from ${INSTALLER_URL}"
    fi
    rc=0
    INSTALL_K3S_VERSION="$INSTALL_K3S_VERSION" INSTALL_K3S_EXEC="$ROLE" sh "$installer" || rc=$?
    if [[ "$rc" -ne 0 ]]; then
        die "the K3s ${INSTALL_K3S_VERSION} installer failed with exit code ${rc}; see its output above and 'journalctl -u ${service}'"
    fi
    action="${installed:+upgraded from ${installed}}"
    action="${action:-installed}"
elif [[ "$config_changed" -eq 1 ]] || ! systemctl is-active --quiet "$service"; then
    log "restarting ${service} to apply the config"
    systemctl restart "$service"
    action="restarted"
else
    log "K3s ${INSTALL_K3S_VERSION} is installed and running with this config; nothing to do"
fi

# --- wait until it serves ----------------------------------------------------------------------
deadline=$((SECONDS + WAIT_SECONDS))
until systemctl is-active --quiet "$service"; do
    if ((SECONDS >= deadline)); then
        die "${service} did not become active within ${WAIT_SECONDS}s; see 'journalctl -u ${service}'"
    fi
    sleep "$POLL_SECONDS"
done

if [[ "$ROLE" == server ]]; then
    # The next server (or agent) joins through this one: wait until its own node is Ready.
    ready_query='{.status.conditions[?(@.type=="Ready")].status}'
    until [[ "$(k3s kubectl get node "$NODE_NAME" -o "jsonpath=${ready_query}" 2>/dev/null || true)" == True ]]; do
        if ((SECONDS >= deadline)); then
            die "node ${NODE_NAME} did not become Ready within ${WAIT_SECONDS}s; see 'journalctl -u ${service}'"
        fi
        sleep "$POLL_SECONDS"
    done
fi

if [[ "$GPU_NODE" -eq 1 ]]; then
    # K3s adds the nvidia runtime to containerd only if nvidia-container-runtime existed when it
    # started; without it, pods with runtimeClassName: nvidia fail on this node.
    containerd_config="$DATA_DIR/agent/etc/containerd/config.toml"
    until grep -qs 'nvidia-container-runtime' "$containerd_config"; do
        if ((SECONDS >= deadline)); then
            die "K3s did not configure the nvidia container runtime in ${containerd_config}; install the NVIDIA container toolkit (nvidia-toolkit.sh), then 'systemctl restart ${service}'"
        fi
        sleep "$POLL_SECONDS"
    done
    log "nvidia container runtime configured in containerd"
fi

log "done: K3s ${INSTALL_K3S_VERSION} ${ROLE} ${NODE_NAME} (${action})"
