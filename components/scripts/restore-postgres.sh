#!/bin/sh
# Restore the Compose host's Postgres database into the in-cluster server, once.
#
# The object ($BACKUP_DIR/object, checked by restore-fetch.sh) is `pg_dump -Fc` of one database
# (scripts/compose-backup.sh). pg_restore loads it, with parallel jobs, into a staging database
# that nothing else uses; then ONE transaction renames the staging database to the target's name
# and writes the marker. The data is live if and only if the marker says so: a pod killed at any
# point leaves either no restore at all (a staging database the next run drops and rebuilds) or a
# complete one with its marker. Never destructive:
#   - the table public.gpu_platform_restore (database postgres) records the SHA-256 restored. The
#     same SHA-256: nothing to do. Another one: this server was restored before and has been live
#     since, so a newer backup of the Compose host must not overwrite it; it says so and exits 0.
#   - no marker row, but the target database holds tables: that data did not come from a restore;
#     refuse. The empty target the image created (POSTGRES_DB) is renamed aside by the swap and
#     dropped after it only if it is still empty.
# Objects are owned by the restoring superuser (--no-owner/--no-acl): the cluster has no other
# roles, and the services connect as that user (DATABASE_URL).
#
#   env PGHOST=postgres.platform-data.svc.cluster.local PGPASSWORD=... PGDATABASE=platform \
#       [RESTORE_JOBS=2] sh restore-postgres.sh
# POSIX sh: the Job runs it with the postgres image's dash.
set -eu

BACKUP_DIR="${BACKUP_DIR:-/backup}"
WAIT_SECONDS="${WAIT_SECONDS:-600}"
POLL_SECONDS="${POLL_SECONDS:-5}"
RESTORE_JOBS="${RESTORE_JOBS:-2}"
STAGING_NOTE="gpu-platform restore staging"

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
# The derived names below must stay within Postgres's 63-byte identifiers.
[ "${#target}" -le 40 ] || die "database name '$target' is longer than 40 characters"
case "$RESTORE_JOBS" in
    '' | *[!0-9]* | 0) die "RESTORE_JOBS '$RESTORE_JOBS' is not a positive number" ;;
esac
staging="${target}__restoring"
retired="${target}__before_restore"

[ -s "$BACKUP_DIR/object.sha256" ] || die "$BACKUP_DIR/object.sha256 is missing; restore-fetch.sh did not verify the object"
expected=$(cat "$BACKUP_DIR/object.sha256")
case "$expected" in
    *[!0-9a-f]*) die "$BACKUP_DIR/object.sha256 does not hold a lowercase hex SHA-256" ;;
esac

# q DATABASE SQL: one value per line, nothing else.
q() { psql --no-psqlrc --tuples-only --no-align --quiet -v ON_ERROR_STOP=1 --dbname "$1" -c "$2"; }
exists() { [ "$(q postgres "select count(*) from pg_database where datname = '$1'")" != 0 ]; }
tables_in() { q "$1" "select count(*) from pg_tables where schemaname not in ('pg_catalog', 'information_schema')"; }
# Drop the database the swap renamed aside, but only while it is still empty.
drop_retired() {
    exists "$retired" || return 0
    n=$(tables_in "$retired")
    if [ "$n" = 0 ]; then
        q postgres "drop database $retired with (force)" >/dev/null
    else
        log "kept database $retired: $n table(s) were created in it while the restore ran"
    fi
}

waited=0
until pg_isready --quiet --dbname postgres; do
    [ "$waited" -lt "$WAIT_SECONDS" ] || die "Postgres at $PGHOST did not accept connections within ${WAIT_SECONDS}s"
    sleep "$POLL_SECONDS"
    waited=$((waited + POLL_SECONDS))
done

# Everything the decisions below read from the server, in one session (each psql start is a
# connection and a process: a dozen of them were most of this script's fixed cost). Fields:
# marker table present (t/f), target exists, retired exists, the staging database's comment
# ("-" when it does not exist; last, as a comment may hold the separator).
state=$(q postgres "select to_regclass('public.gpu_platform_restore') is not null,
        exists (select from pg_database where datname = '$target'),
        exists (select from pg_database where datname = '$retired'),
        coalesce((select coalesce(shobj_description(oid, 'pg_database'), '') from pg_database where datname = '$staging'), '-')")
IFS='|' read -r has_marker target_exists retired_exists staging_note <<STATE
$state
STATE
previous=""
if [ "$has_marker" = t ]; then
    previous=$(q postgres "select sha256 from public.gpu_platform_restore order by restored_at desc limit 1")
fi
if [ -n "$previous" ]; then
    if [ "$previous" = "$expected" ]; then
        drop_retired
        log "already restored from $expected; nothing to do"
    else
        log "restored from $previous earlier and live since; not restoring $expected over it"
    fi
    exit 0
fi

if [ "$target_exists" = t ]; then
    tables=$(tables_in "$target")
    [ "$tables" = 0 ] || die "refusing to restore: database $target holds $tables table(s) that no restore wrote"
fi
if [ "$staging_note" != - ]; then
    case "$staging_note" in
        "$STAGING_NOTE"*) ;;
        *) die "database $staging exists and is not a staging database of this script; remove or rename it" ;;
    esac
    log "dropping $staging, left by an interrupted restore"
    q postgres "drop database $staging with (force)" >/dev/null
fi

if [ "$retired_exists" = t ]; then
    drop_retired
    ! exists "$retired" || die "database $retired holds tables; move them away before restoring into $target"
fi

pg_restore --list "$BACKUP_DIR/object" >/dev/null || die "the backup is not a pg_dump archive pg_restore can read"
# Two statements, one session: CREATE DATABASE cannot run inside a transaction, and psql runs each
# -c on its own.
psql --no-psqlrc --quiet -v ON_ERROR_STOP=1 --dbname postgres -c "create database $staging" \
    -c "comment on database $staging is '$STAGING_NOTE of sha256 $expected'" >/dev/null
log "restoring into $staging with $RESTORE_JOBS job(s) (sha256 $expected)"
pg_restore --jobs "$RESTORE_JOBS" --exit-on-error --no-owner --no-acl --dbname "$staging" "$BACKUP_DIR/object" ||
    die "pg_restore failed; $staging is not live and the next run starts over"

# The swap: the restored data goes live and the marker is written in one transaction. Renaming
# needs the databases free of sessions; clients of the empty target are asked to reconnect.
marker_table="create table if not exists public.gpu_platform_restore (sha256 text primary key, restored_at timestamptz not null default now());"
attempt=1
while :; do
    # The marker table (on the first attempt) and the end of the other sessions, in one session.
    q postgres "$marker_table select count(pg_terminate_backend(pid)) from pg_stat_activity where datname in ('$target', '$staging') and pid <> pg_backend_pid()" >/dev/null
    marker_table=""
    rename_target=""
    if exists "$target"; then rename_target="alter database $target rename to $retired;"; fi
    if q postgres "begin;
        $rename_target
        alter database $staging rename to $target;
        comment on database $target is null;
        insert into public.gpu_platform_restore (sha256) values ('$expected');
        commit;" >/dev/null; then
        break
    fi
    [ "$attempt" -lt 5 ] || die "could not swap $staging in as $target; $staging stays and the next run starts over"
    attempt=$((attempt + 1))
    sleep 1
done
drop_retired
log "restored $(tables_in "$target") table(s) into $target from sha256 $expected"
