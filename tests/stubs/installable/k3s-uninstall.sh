#!/usr/bin/env bash
# Stand-in for the uninstall script the K3s installer writes; fails on $STUB_STATE/uninstall-fail.
set -euo pipefail
printf '%s\n' "$(basename "$0")" >>"$STUB_LOG"
[[ ! -e "$STUB_STATE/uninstall-fail" ]] || exit 1
rm -f "$STUB_BIN/k3s" "$0"
