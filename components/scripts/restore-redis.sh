#!/bin/sh
# Restore the Compose host's Redis into the in-cluster server, once.
#
# The object ($BACKUP_DIR/object, checked by restore-fetch.sh) is the Compose host's RDB file
# (scripts/compose-backup.sh: BGSAVE, then the file itself).
# A throwaway redis-server inside this pod loads it on 127.0.0.1, and MIGRATE ... COPY REPLACE
# copies every key (with its TTL) into the live server; the live server keeps its own AOF.
# Never destructive, and safe to run again:
#   - key gpu-platform:restore:sha256 records what was restored: the same SHA-256, nothing to do;
#     another one, the server has been live since its restore and is left alone (exit 0).
#   - key gpu-platform:restore:in-progress marks an interrupted run of this same backup, which
#     may continue; any other data in the live server makes it refuse.
#
#   env REDIS_HOST=redis.platform-data.svc.cluster.local REDIS_PASSWORD=... sh restore-redis.sh
# POSIX sh: the Job runs it with the redis image's dash.
set -eu

BACKUP_DIR="${BACKUP_DIR:-/backup}"
REDIS_PORT="${REDIS_PORT:-6379}"
TEMP_PORT="${TEMP_PORT:-6380}"
WAIT_SECONDS="${WAIT_SECONDS:-600}"
POLL_SECONDS="${POLL_SECONDS:-5}"
DONE_KEY="gpu-platform:restore:sha256"
PROGRESS_KEY="gpu-platform:restore:in-progress"

log() { printf 'restore-redis: %s\n' "$*"; }
die() {
    printf 'restore-redis: error: %s\n' "$*" >&2
    exit 1
}

: "${REDIS_HOST:?REDIS_HOST is not set}"
: "${REDIS_PASSWORD:?REDIS_PASSWORD is not set}"
# redis-cli reads the password from here, so it is never an argument.
REDISCLI_AUTH="$REDIS_PASSWORD"
export REDISCLI_AUTH

[ -s "$BACKUP_DIR/object.sha256" ] || die "$BACKUP_DIR/object.sha256 is missing; restore-fetch.sh did not verify the object"
expected=$(cat "$BACKUP_DIR/object.sha256")

live() { redis-cli --no-auth-warning -h "$REDIS_HOST" -p "$REDIS_PORT" "$@"; }
temp() { redis-cli --no-auth-warning -h 127.0.0.1 -p "$TEMP_PORT" "$@"; }
wait_for() {
    waited=0
    until [ "$("$@" PING 2>/dev/null)" = PONG ]; do
        [ "$waited" -lt "$WAIT_SECONDS" ] || die "$1 Redis did not answer PING within ${WAIT_SECONDS}s"
        sleep "$POLL_SECONDS"
        waited=$((waited + POLL_SECONDS))
    done
}
keys_in() { "$@" INFO keyspace | sed -n 's/^db\([0-9][0-9]*\):keys=\([0-9][0-9]*\).*/\1 \2/p'; }

wait_for live
done_sha=$(live GET "$DONE_KEY") || die "could not read $DONE_KEY from the live server"
if [ -n "$done_sha" ]; then
    if [ "$done_sha" = "$expected" ]; then
        log "already restored from $expected; nothing to do"
    else
        log "restored from $done_sha earlier and live since; not restoring $expected over it"
    fi
    exit 0
fi
keyspace=$(keys_in live) || die "could not read the live server's keyspace"
progress=$(live GET "$PROGRESS_KEY") || die "could not read $PROGRESS_KEY from the live server"
if [ -n "$keyspace" ] && [ "$progress" != "$expected" ]; then
    die "refusing to restore: the live server holds keys that no restore wrote"
fi
live SET "$PROGRESS_KEY" "$expected" >/dev/null || die "could not mark the restore as in progress"

redis-check-rdb "$BACKUP_DIR/object" >/dev/null || die "the backup is not a valid RDB file"
printf 'port %s\nbind 127.0.0.1\ndir %s\ndbfilename object\nsave ""\nappendonly no\ndaemonize yes\nlogfile %s\nrequirepass %s\n' \
    "$TEMP_PORT" "$BACKUP_DIR" "$BACKUP_DIR/temp-redis.log" "$REDIS_PASSWORD" | redis-server - ||
    die "could not start the throwaway redis-server"
wait_for temp

log "copying keys from the backup (sha256 $expected)"
keys_in temp >"$BACKUP_DIR/keyspace" || die "could not read the backup's keyspace"
while read -r db count; do
    # Key names travel one per line (xargs -d '\n'); the values never leave Redis. MIGRATE's AUTH
    # argument is visible to `ps` inside this pod only.
    # shellcheck disable=SC2016 # the inner sh expands $1.. and $REDISCLI_AUTH, not this one
    errors=$(temp -n "$db" --scan |
        xargs -r -d '\n' -n 200 sh -c \
            'port=$1 db=$2 host=$3 live_port=$4; shift 4
             exec redis-cli --no-auth-warning -h 127.0.0.1 -p "$port" -n "$db" \
                 MIGRATE "$host" "$live_port" "" "$db" 60000 COPY REPLACE AUTH "$REDISCLI_AUTH" KEYS "$@"' \
            migrate "$TEMP_PORT" "$db" "$REDIS_HOST" "$REDIS_PORT" |
        grep -v -e '^OK$' -e '^NOKEY$' || true)
    [ -z "$errors" ] || die "MIGRATE failed for db $db: $errors"
    copied=$(live -n "$db" DBSIZE) || die "could not count the keys of db $db"
    # db 0 also holds the in-progress marker.
    [ "$db" != 0 ] || copied=$((copied - 1))
    [ "$copied" -ge "$count" ] || die "db $db: the backup has $count keys, the live server $copied"
    log "db $db: $count keys"
done <"$BACKUP_DIR/keyspace"
temp SHUTDOWN NOSAVE >/dev/null 2>&1 || true

live SET "$DONE_KEY" "$expected" >/dev/null || die "could not record the restore"
live DEL "$PROGRESS_KEY" >/dev/null || die "could not clear $PROGRESS_KEY"
log "restored from sha256 $expected"
