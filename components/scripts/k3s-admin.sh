#!/usr/bin/env bash
# Cluster-level steps run on the first K3s server, with the server's own admin credentials.
#
#   sudo bash k3s-admin.sh kubeconfig          print the admin kubeconfig (stdout carries only it)
#   sudo bash k3s-admin.sh runtimeclass NAME   check that K3s created RuntimeClass NAME
#   sudo bash k3s-admin.sh node-ready NODE [VERSION]
#                                              wait until NODE is Ready (and runs K3s VERSION)
#   sudo bash k3s-admin.sh node-remove NODE    drain NODE, delete it and its node password
#
# Every wait is bounded by WAIT_SECONDS and fails with a message naming what is missing.
# Messages go to stderr so that `kubeconfig` output is exactly the file.
set -euo pipefail

CONFIG_DIR="${CONFIG_DIR:-/etc/rancher/k3s}"
WAIT_SECONDS="${WAIT_SECONDS:-300}"
POLL_SECONDS="${POLL_SECONDS:-5}"
DRAIN_TIMEOUT="${DRAIN_TIMEOUT:-300s}"

log() { printf 'k3s-admin: %s\n' "$*" >&2; }
die() {
    printf 'k3s-admin: error: %s\n' "$*" >&2
    exit 1
}
usage() { die "usage: k3s-admin.sh kubeconfig | runtimeclass NAME | node-ready NODE [VERSION] | node-remove NODE"; }

deadline=$((SECONDS + WAIT_SECONDS))
wait_or_die() {
    if ((SECONDS >= deadline)); then
        die "$1"
    fi
    sleep "$POLL_SECONDS"
}

kubeconfig() {
    local file="$CONFIG_DIR/k3s.yaml"
    until [[ -s "$file" ]] && grep -q 'server: https://' "$file"; do
        wait_or_die "no admin kubeconfig at ${file} after ${WAIT_SECONDS}s; is this host a K3s server and is 'k3s' running?"
    done
    cat "$file"
    log "kubeconfig read from ${file}"
}

runtimeclass() {
    local name="$1" handler=""
    # K3s ships RuntimeClasses for the runtimes it knows (nvidia among them) as a packaged manifest;
    # we check for it rather than create a second copy that K3s would fight over.
    until handler="$(k3s kubectl get runtimeclass "$name" -o 'jsonpath={.handler}' 2>/dev/null)" && [[ -n "$handler" ]]; do
        wait_or_die "RuntimeClass ${name} does not exist after ${WAIT_SECONDS}s; K3s creates it from /var/lib/rancher/k3s/server/manifests/runtimes.yaml, check that file and the deploy controller in 'journalctl -u k3s'"
    done
    log "RuntimeClass ${name} exists (handler ${handler})"
}

node_status() {
    k3s kubectl get node "$1" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true
}

node_version() {
    k3s kubectl get node "$1" -o 'jsonpath={.status.nodeInfo.kubeletVersion}' 2>/dev/null || true
}

node_ready() {
    local node="$1" version="${2:-}"
    until [[ "$(node_status "$node")" == True ]]; do
        wait_or_die "node ${node} is not Ready after ${WAIT_SECONDS}s; check 'k3s kubectl describe node ${node}' and the k3s or k3s-agent service on that host"
    done
    if [[ -n "$version" ]]; then
        # After an upgrade the node must report the new release before the next step goes on.
        local running=""
        until running="$(node_version "$node")" && [[ "$running" == "$version" ]]; do
            wait_or_die "node ${node} runs ${running:-an unknown version}, not ${version}, after ${WAIT_SECONDS}s; check the K3s install step on that host"
        done
    fi
    log "node ${node} is Ready${version:+ on ${version}}"
}

forget_password() {
    # K3s records each node's password under the node's name and refuses a later node of that
    # name with another password: without this, a host relaunched under the same name (a
    # replaced or preempted instance) could never join again.
    k3s kubectl -n kube-system delete secret "$1.node-password.k3s" --ignore-not-found
}

node_remove() {
    local node="$1"
    if ! k3s kubectl get node "$node" -o name >/dev/null 2>&1; then
        forget_password "$node"
        log "node ${node} is not in the cluster; nothing to remove"
        return 0
    fi
    log "draining node ${node}"
    if ! k3s kubectl drain "$node" --ignore-daemonsets --delete-emptydir-data --timeout="$DRAIN_TIMEOUT"; then
        die "could not drain node ${node} within ${DRAIN_TIMEOUT} (a PodDisruptionBudget or a pod without a controller?); resolve it and run the removal again"
    fi
    k3s kubectl delete node "$node"
    forget_password "$node"
    log "node ${node} and its node password deleted from the cluster"
}

case "${1:-}" in
    kubeconfig)
        [[ $# -eq 1 ]] || usage
        kubeconfig
        ;;
    runtimeclass)
        [[ $# -eq 2 ]] || usage
        runtimeclass "$2"
        ;;
    node-ready)
        [[ $# -eq 2 || $# -eq 3 ]] || usage
        node_ready "$2" "${3:-}"
        ;;
    node-remove)
        [[ $# -eq 2 ]] || usage
        node_remove "$2"
        ;;
    *) usage ;;
esac
