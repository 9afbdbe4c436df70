#!/bin/sh
# Restore the Compose host's Postgres database into the in-cluster server, once.
#
# The object ($BACKUP_DIR/object, checked by restore-fetch.sh) is `pg_dump -Fc` of one database
# (scripts/compose-backup.sh). pg_restore applies it in ONE transaction: it lands whole or not at
# all, so a failed run leaves an empty database and can simply run again. Never destructive:
#   - the table public.gpu_platform_restore (database postgres) records the SHA-256 restored. The
#     same SHA-256: nothing to do. Another one: this server was restored before and has been live
#     since, so a newer backup of the Compose host must not overwrite it; it says so and exits 0.
#   - no marker, but the database holds tables: that data did not come from a restore; refuse.
# Objects are owned by the restoring superuser (--no-owner/--no-acl): the cluster has no other
# roles, and the services connect as that user (DATABASE_URL).
#
#   env PGHOST=postgres.platform-data.svc.cluster.local PGPASSWORD=... PGDATABASE=platform \
#       sh restore-postgres.sh
# POSIX sh: the Job runs it with the postgres image's dash.
set -eu

BACKUP_DIR="${BACKUP_DIR:-/backup}"
WAIT_SECONDS="${WAIT_SECONDS:-600}"
POLL_SECONDS="${POLL_SECONDS:-5}"

log() { printf 'restore-postgres: %s\n' "$*"; }
die() {
    printf 'restore-postgres: error: %s\n' "$*" >&2
    exit 1
}

: "${PGHOST:?PGHOST is not set}"
: "${PGPASSWORD:?PGPASSWORD is not set}"
: "${PGDATABASE:?PGDATABASE (the database to restore) is not set}"
PGUSER="${PGUSER:-postgres}"
target="$PGDATABASE"
export PGHOST PGPASSWORD PGUSER
case "$target" in
    '' | *[!a-z0-9_]*) die "database name '$target' must be lowercase letters, digits and _" ;;
esac

[ -s "$BACKUP_DIR/object.sha256" ] || die "$BACKUP_DIR/object.sha256 is missing; restore-fetch.sh did not verify the object"
expected=$(cat "$BACKUP_DIR/object.sha256")

# q DATABASE SQL: one value per line, nothing else.
q() { psql --no-psqlrc --tuples-only --no-align --quiet -v ON_ERROR_STOP=1 --dbname "$1" -c "$2"; }

waited=0
until pg_isready --quiet --dbname postgres; do
    [ "$waited" -lt "$WAIT_SECONDS" ] || die "Postgres at $PGHOST did not accept connections within ${WAIT_SECONDS}s"
    sleep "$POLL_SECONDS"
    waited=$((waited + POLL_SECONDS))
done

if [ "$(q postgres "select to_regclass('public.gpu_platform_restore') is not null")" = t ]; then
    previous=$(q postgres "select sha256 from public.gpu_platform_restore order by restored_at desc limit 1")
    if [ "$previous" = "$expected" ]; then
        log "already restored from $expected; nothing to do"
    else
        log "restored from $previous earlier and live since; not restoring $expected over it"
    fi
    exit 0
fi

if [ "$(q postgres "select count(*) from pg_database where datname = '$target'")" = 0 ]; then
    log "creating database $target"
    q postgres "create database $target"
fi
tables=$(q "$target" "select count(*) from pg_tables where schemaname not in ('pg_catalog', 'information_schema')")
[ "$tables" = 0 ] || die "refusing to restore: database $target holds $tables table(s) that no restore wrote"

pg_restore --list "$BACKUP_DIR/object" >/dev/null || die "the backup is not a pg_dump archive pg_restore can read"
log "restoring database $target (sha256 $expected)"
pg_restore --single-transaction --exit-on-error --no-owner --no-acl --dbname "$target" "$BACKUP_DIR/object" ||
    die "pg_restore failed; nothing was committed"

q postgres "create table public.gpu_platform_restore (sha256 text primary key, restored_at timestamptz not null default now())"
q postgres "insert into public.gpu_platform_restore (sha256) values ('$expected')"
tables=$(q "$target" "select count(*) from pg_tables where schemaname not in ('pg_catalog', 'information_schema')")
log "restored $tables table(s) into $target from sha256 $expected"
