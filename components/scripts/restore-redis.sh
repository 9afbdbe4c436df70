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
#     may continue (COPY REPLACE makes a second copy of a key harmless); any other data in the
#     live server makes it refuse. The last step RENAMEs it to the first key: one atomic command,
#     so a run killed at any point leaves either the in-progress mark or the finished record.
#   - the throwaway server is this script's child, never a daemon: it is stopped on every exit
#     path, and a port already in use is refused rather than mistaken for a started server.
# Key names travel quoted (redis-cli --no-raw --scan writes "a\nb", "\xc3\xa9") and go back in as
# commands on redis-cli's stdin, so any byte survives and neither the names nor the password are
# on a command line.
#
#   env REDIS_HOST=redis.platform-data.svc.cluster.local REDIS_PASSWORD=... sh restore-redis.sh
# POSIX sh: the Job runs it with the redis image's dash.
set -eu

BACKUP_DIR="${BACKUP_DIR:-/backup}"
REDIS_PORT="${REDIS_PORT:-6379}"
TEMP_PORT="${TEMP_PORT:-6380}"
WAIT_SECONDS="${WAIT_SECONDS:-600}"
POLL_SECONDS="${POLL_SECONDS:-5}"
BATCH="${BATCH:-200}"
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

temp_pid=""
stop_temp() {
    [ -n "$temp_pid" ] || return 0
    kill "$temp_pid" 2>/dev/null || true
    wait "$temp_pid" 2>/dev/null || true
    temp_pid=""
}
trap stop_temp EXIT
trap 'exit 143' TERM INT HUP

live() { redis-cli --no-auth-warning -h "$REDIS_HOST" -p "$REDIS_PORT" "$@"; }
temp() { redis-cli --no-auth-warning -h 127.0.0.1 -p "$TEMP_PORT" "$@"; }
# wait_for NAME CLIENT: until the server answers PING; POLL_SECONDS=0 polls without sleeping, at
# most 1000 times.
wait_for() {
    waited=0 tries=0
    until [ "$("$2" PING 2>/dev/null)" = PONG ]; do
        if [ "$1" = throwaway ] && ! kill -0 "$temp_pid" 2>/dev/null; then
            temp_pid=""
            die "the throwaway redis-server exited: $(tail -n 3 "$BACKUP_DIR/temp-redis.log" 2>/dev/null)"
        fi
        [ "$waited" -lt "$WAIT_SECONDS" ] && [ "$tries" -lt 1000 ] ||
            die "the $1 Redis did not answer PING within ${WAIT_SECONDS}s"
        sleep "$POLL_SECONDS"
        waited=$((waited + POLL_SECONDS)) tries=$((tries + 1))
    done
}
keys_in() { "$@" INFO keyspace | sed -n 's/^db\([0-9][0-9]*\):keys=\([0-9][0-9]*\).*/\1 \2/p'; }

wait_for live live
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

redis-check-rdb "$BACKUP_DIR/object" >/dev/null || die "the backup is not a valid RDB file"
# Whatever answers on the port now is not the server this run is about to start.
case "$(temp PING 2>&1 || true)" in
    *"Connection refused"*) ;;
    *) die "127.0.0.1:$TEMP_PORT is already in use; refusing to copy keys from a server this run did not start" ;;
esac
live SET "$PROGRESS_KEY" "$expected" >/dev/null || die "could not mark the restore as in progress"

# The password, quoted the way redis-server reads its config and redis-cli its stdin.
MIGRATE_AUTH=$(printf '%s' "$REDIS_PASSWORD" | sed 's/[\\"]/\\&/g; s/^/"/; s/$/"/')
export MIGRATE_AUTH
rm -f "$BACKUP_DIR/temp-redis.log"
redis-server - >/dev/null 2>&1 <<EOF &
port $TEMP_PORT
bind 127.0.0.1
dir $BACKUP_DIR
dbfilename object
save ""
appendonly no
daemonize no
logfile $BACKUP_DIR/temp-redis.log
requirepass $MIGRATE_AUTH
EOF
temp_pid=$!
wait_for throwaway temp
answering=$(temp INFO server | tr -d '\r' | sed -n 's/^process_id://p')
[ "$answering" = "$temp_pid" ] ||
    die "127.0.0.1:$TEMP_PORT is answered by process $answering, not by the redis-server this run started ($temp_pid)"

log "copying keys from the backup (sha256 $expected)"
keys_in temp >"$BACKUP_DIR/keyspace" || die "could not read the backup's keyspace"
while read -r db count; do
    # shellcheck disable=SC2016 # awk's own $0, not the shell's
    errors=$(temp -n "$db" --no-raw --scan |
        awk -v host="$REDIS_HOST" -v port="$REDIS_PORT" -v db="$db" -v batch="$BATCH" '
            function flush() {
                if (n) print "MIGRATE " host " " port " \"\" " db " 60000 COPY REPLACE AUTH " ENVIRON["MIGRATE_AUTH"] " KEYS" keys
                keys = ""; n = 0
            }
            { keys = keys " " $0; n++ }
            n >= batch { flush() }
            END { flush() }' |
        temp -n "$db" | grep -v -e '^OK$' -e '^NOKEY$' || true)
    [ -z "$errors" ] || die "MIGRATE failed for db $db: $errors"
    copied=$(live -n "$db" DBSIZE) || die "could not count the keys of db $db"
    # db 0 also holds the in-progress marker.
    [ "$db" != 0 ] || copied=$((copied - 1))
    [ "$copied" -ge "$count" ] || die "db $db: the backup has $count keys, the live server $copied"
    log "db $db: $count keys"
done <"$BACKUP_DIR/keyspace"
stop_temp

[ "$(live RENAME "$PROGRESS_KEY" "$DONE_KEY")" = OK ] || die "could not record the restore in $DONE_KEY"
log "restored from sha256 $expected"
