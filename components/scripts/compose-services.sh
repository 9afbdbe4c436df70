#!/usr/bin/env bash
# Stop or start every service of the legacy Docker Compose project, keeping containers and volumes.
#
# usage: compose-services.sh stop|start COMPOSE_DIR
#
# p4-decommission runs `stop`; rolling that phase back runs `start`. Both are idempotent: stopping
# stopped services (or starting running ones) changes nothing. Never `down`, never `-v`: the
# volumes are the source the backups were taken from and stay until someone deletes them by hand.
set -euo pipefail

log() { printf 'compose-services: %s\n' "$*" >&2; }

[ "$#" -eq 2 ] || { log "usage: compose-services.sh stop|start COMPOSE_DIR"; exit 2; }
action="$1"
compose_dir="$2"
case "$action" in stop | start) ;; *) log "unknown action '$action' (stop or start)"; exit 2 ;; esac
cd "$compose_dir" || { log "compose directory $compose_dir does not exist"; exit 1; }

log "docker compose $action in $compose_dir"
docker compose "$action"
log "services now:"
docker compose ps --all --format '{{.Service}} {{.State}}' >&2
log "done"
