#!/bin/sh
# The first step of a scheduled Qdrant backup (components/platform/scheduled_backups.py): a
# full-storage snapshot through Qdrant's API (`POST /snapshots`), the format the migration
# restored from (scripts/compose-backup.sh, scripts/restore-qdrant.sh).
#
#   env QDRANT_URL=http://qdrant.platform-data.svc.cluster.local:6333 QDRANT_API_KEY=... \
#       [BACKUP_DIR=/backup] sh backup-dump-qdrant.sh
#
# Writes $BACKUP_DIR/started (the unix second before the snapshot was asked for),
# $BACKUP_DIR/collections (the collections Qdrant listed just before: the verify step finds each
# in the snapshot) and then $BACKUP_DIR/object. The snapshot's copy in Qdrant's own snapshot dir
# is deleted afterwards. The API key reaches curl on stdin, never its command line.
# POSIX sh: the Job runs it with busybox ash (curl image).
set -eu

BACKUP_DIR="${BACKUP_DIR:-/backup}"

log() { printf 'backup-dump-qdrant: %s\n' "$*"; }
die() {
    printf 'backup-dump-qdrant: error: %s\n' "$*" >&2
    exit 1
}

: "${QDRANT_URL:?QDRANT_URL is not set}"
: "${QDRANT_API_KEY:?QDRANT_API_KEY is not set}"

api() {
    method="$1"
    path="$2"
    shift 2
    printf 'header = "api-key: %s"\n' "$QDRANT_API_KEY" |
        curl --config - --fail --silent --show-error --connect-timeout 20 -X "$method" "${QDRANT_URL%/}$path" "$@"
}

rm -f "$BACKUP_DIR/object" "$BACKUP_DIR/object.part" "$BACKUP_DIR/started" "$BACKUP_DIR/collections"
listing=$(api GET /collections) || die "GET /collections at $QDRANT_URL failed"
# {"result":{"collections":[{"name":"a"},{"name":"b"}]},...}: one name per line.
printf '%s' "$listing" | tr '{' '\n' | tr '}' '\n' | tr ',' '\n' | sed -n 's/^[[:space:]]*"name"[[:space:]]*:[[:space:]]*"\([^"]*\)"[[:space:]]*$/\1/p' >"$BACKUP_DIR/collections.part"
date +%s >"$BACKUP_DIR/started"
log "full-storage snapshot of $QDRANT_URL ($(wc -l <"$BACKUP_DIR/collections.part" | tr -d ' ') collections)"
answer=$(api POST "/snapshots?wait=true") || die "POST /snapshots at $QDRANT_URL failed"
name=$(printf '%s' "$answer" | sed -n 's/.*"name"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
case "$name" in
    '' | *[!A-Za-z0-9_.-]* | .*) die "the answer names no snapshot this script accepts: $answer" ;;
esac
api GET "/snapshots/$name" --output "$BACKUP_DIR/object.part" || die "download of snapshot $name failed"
api DELETE "/snapshots/$name?wait=true" >/dev/null || log "could not delete snapshot $name inside Qdrant (its snapshot dir is an emptyDir)"
tar -tf "$BACKUP_DIR/object.part" >/dev/null || die "snapshot $name is not a readable tar archive"
mv "$BACKUP_DIR/collections.part" "$BACKUP_DIR/collections"
mv "$BACKUP_DIR/object.part" "$BACKUP_DIR/object"
log "dumped $(wc -c <"$BACKUP_DIR/object" | tr -d ' ') bytes"
