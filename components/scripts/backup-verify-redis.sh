#!/bin/sh
# The third step of a scheduled Redis backup (components/platform/scheduled_backups.py): load the
# RDB read back from the bucket into a throwaway redis-server inside this pod and compare its key
# count with the live server's just before the dump; only then is the backup "verified".
#
#   env [BACKUP_DIR=/backup] [SCRATCH_DIR=/scratch] [TEMP_PORT=6380] \
#       [COUNT_TOLERANCE_PERCENT=0] sh backup-verify-redis.sh
#
# redis-server refuses to start on an RDB it cannot load, so a dump that does not restore fails
# here. The count taken before the dump and the RDB's can differ on a busy server (keys written,
# deleted or expired meanwhile): COUNT_TOLERANCE_PERCENT is how far they may. The throwaway server
# listens on 127.0.0.1 only, saves nothing, and is stopped on every exit path. Writes
# $BACKUP_DIR/verified ("<size> <sha256>") for scripts/backup-report.sh.
# POSIX sh: the Job runs it with the redis image's dash.
set -eu

BACKUP_DIR="${BACKUP_DIR:-/backup}"
SCRATCH_DIR="${SCRATCH_DIR:-/scratch}"
TEMP_PORT="${TEMP_PORT:-6380}"
COUNT_TOLERANCE_PERCENT="${COUNT_TOLERANCE_PERCENT:-0}"
WAIT_SECONDS="${WAIT_SECONDS:-600}"

log() { printf 'backup-verify-redis: %s\n' "$*"; }
die() {
    printf 'backup-verify-redis: error: %s\n' "$*" >&2
    exit 1
}

readback="$BACKUP_DIR/readback"
[ -s "$BACKUP_DIR/uploaded" ] || die "$BACKUP_DIR/uploaded is missing: the upload step did not verify the read-back"
read -r key size sha256 <"$BACKUP_DIR/uploaded"
[ "$(sha256sum "$readback" | cut -d ' ' -f 1)" = "$sha256" ] || die "$readback is not the object read back as $key"
[ -s "$BACKUP_DIR/keys" ] || die "$BACKUP_DIR/keys is missing: the dump step did not record the key count"
want=$(cat "$BACKUP_DIR/keys")
case "$want$COUNT_TOLERANCE_PERCENT" in *[!0-9]*) die "key count '$want' or COUNT_TOLERANCE_PERCENT '$COUNT_TOLERANCE_PERCENT' is not a number" ;; esac
rm -f "$BACKUP_DIR/verified"

mkdir -p "$SCRATCH_DIR/redis"
cp "$readback" "$SCRATCH_DIR/redis/dump.rdb"
temp_pid=""
stop_temp() {
    [ -n "$temp_pid" ] || return 0
    kill "$temp_pid" 2>/dev/null || true
    wait "$temp_pid" 2>/dev/null || true
    temp_pid=""
}
trap stop_temp EXIT
trap 'exit 143' TERM INT HUP

temp() { redis-cli -h 127.0.0.1 -p "$TEMP_PORT" "$@"; }
if temp PING >/dev/null 2>&1; then
    die "something already answers on 127.0.0.1:$TEMP_PORT; it is not this script's throwaway server"
fi
log "loading $key ($size bytes) into a throwaway redis-server"
redis-server --port "$TEMP_PORT" --bind 127.0.0.1 --dir "$SCRATCH_DIR/redis" --dbfilename dump.rdb \
    --save '' --appendonly no --logfile "$SCRATCH_DIR/redis/server.log" &
temp_pid=$!
waited=0
until [ "$(temp PING 2>/dev/null)" = PONG ]; do
    if ! kill -0 "$temp_pid" 2>/dev/null; then
        temp_pid=""
        die "$key does not restore: redis-server exited on it: $(tail -n 3 "$SCRATCH_DIR/redis/server.log" 2>/dev/null)"
    fi
    [ "$waited" -lt $((WAIT_SECONDS * 10)) ] || die "the throwaway redis-server did not answer within ${WAIT_SECONDS}s"
    sleep 0.1
    waited=$((waited + 1))
done
got=$(temp INFO keyspace | tr -d '\r' |
    sed -n 's/^db[0-9][0-9]*:keys=\([0-9][0-9]*\).*/\1/p' | awk '{ n += $1 } END { print n + 0 }')
stop_temp

slack=$((want * COUNT_TOLERANCE_PERCENT / 100))
if [ "$got" -lt $((want - slack)) ] || [ "$got" -gt $((want + slack)) ]; then
    die "$key restores $got keys; the live server had $want before the dump (tolerance $COUNT_TOLERANCE_PERCENT%)"
fi
printf '%s %s\n' "$size" "$sha256" >"$BACKUP_DIR/verified"
log "verified $key: $got keys restored (live: $want), $size bytes, sha256 $sha256"
