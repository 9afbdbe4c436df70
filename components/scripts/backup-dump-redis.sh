#!/bin/sh
# The first step of a scheduled Redis backup (components/platform/scheduled_backups.py): an RDB of
# the live server taken over the replication protocol (`redis-cli --rdb`), so nothing is written
# on the server's own volume and its save schedule is left alone. The same format the migration
# restored from (scripts/compose-backup.sh).
#
#   env REDIS_HOST=redis.platform-data.svc.cluster.local REDIS_PASSWORD=... \
#       [REDIS_PORT=6379] [BACKUP_DIR=/backup] sh backup-dump-redis.sh
#
# Writes $BACKUP_DIR/started (the unix second before the dump began), $BACKUP_DIR/keys (the
# server's key count, all databases, just before the dump: the verify step compares the
# restored RDB with it) and then $BACKUP_DIR/object. The password reaches redis-cli through
# REDISCLI_AUTH, never its command line.
# POSIX sh: the Job runs it with the redis image's dash.
set -eu

BACKUP_DIR="${BACKUP_DIR:-/backup}"
REDIS_PORT="${REDIS_PORT:-6379}"

log() { printf 'backup-dump-redis: %s\n' "$*"; }
die() {
    printf 'backup-dump-redis: error: %s\n' "$*" >&2
    exit 1
}

: "${REDIS_HOST:?REDIS_HOST is not set}"
: "${REDIS_PASSWORD:?REDIS_PASSWORD is not set}"
REDISCLI_AUTH="$REDIS_PASSWORD"
export REDISCLI_AUTH

live() { redis-cli --no-auth-warning -h "$REDIS_HOST" -p "$REDIS_PORT" "$@"; }

rm -f "$BACKUP_DIR/object" "$BACKUP_DIR/object.part" "$BACKUP_DIR/started" "$BACKUP_DIR/keys"
keyspace=$(live INFO keyspace) || die "INFO keyspace at $REDIS_HOST:$REDIS_PORT failed"
keys=$(printf '%s\n' "$keyspace" | tr -d '\r' |
    sed -n 's/^db[0-9][0-9]*:keys=\([0-9][0-9]*\).*/\1/p' | awk '{ n += $1 } END { print n + 0 }')
date +%s >"$BACKUP_DIR/started"
log "RDB of $REDIS_HOST:$REDIS_PORT ($keys keys)"
live --rdb "$BACKUP_DIR/object.part" >/dev/null || die "redis-cli --rdb from $REDIS_HOST:$REDIS_PORT failed"
[ "$(head -c 5 "$BACKUP_DIR/object.part")" = "REDIS" ] || die "the dump does not start with the RDB magic"
printf '%s\n' "$keys" >"$BACKUP_DIR/keys"
mv "$BACKUP_DIR/object.part" "$BACKUP_DIR/object"
log "dumped $(wc -c <"$BACKUP_DIR/object" | tr -d ' ') bytes"
