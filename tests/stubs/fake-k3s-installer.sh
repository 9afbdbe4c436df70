#!/bin/sh
# What curl "downloads" as the K3s installer: records its environment, then does what the real
# one does to a host - installs k3s, an uninstall script, starts the service, and (like K3s at
# start-up) writes the nvidia runtime into containerd's config only if nvidia-container-runtime
# is on PATH.
set -eu
echo "installer INSTALL_K3S_VERSION=${INSTALL_K3S_VERSION:-} INSTALL_K3S_EXEC=${INSTALL_K3S_EXEC:-}" >>"$STUB_LOG"
if [ -e "$STUB_STATE/installer-fail" ]; then
    echo "[ERROR]  Download failed" >&2
    exit 3
fi
printf '%s\n' "$INSTALL_K3S_VERSION" >"$STUB_STATE/k3s-version"
cp "$STUB_ROOT/installable/k3s" "$STUB_BIN/k3s"
if [ "$INSTALL_K3S_EXEC" = server ]; then service=k3s; else service=k3s-agent; fi
cp "$STUB_ROOT/installable/k3s-uninstall.sh" "$STUB_BIN/$service-uninstall.sh"
touch "$STUB_STATE/active-$service"
mkdir -p "$STUB_STATE/nodes"
[ -e "$STUB_STATE/nodes/$NODE_NAME" ] || echo True >"$STUB_STATE/nodes/$NODE_NAME"
mkdir -p "$DATA_DIR/agent/etc/containerd"
{
    echo "version = 3"
    if command -v nvidia-container-runtime >/dev/null 2>&1; then
        echo "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'nvidia'.options]"
        echo "  BinaryName = \"$(command -v nvidia-container-runtime)\""
    fi
} >"$DATA_DIR/agent/etc/containerd/config.toml"
