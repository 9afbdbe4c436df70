#!/bin/sh
# The third step of a scheduled Postgres backup (components/platform/scheduled_backups.py):
# restore the object read back from the bucket into a scratch server inside this pod and check
# that every table its archive lists was restored; only then is the backup "verified".
#
#   env [BACKUP_DIR=/backup] [SCRATCH_DIR=/scratch] sh backup-verify-postgres.sh
#
# The scratch server is initdb'd in $SCRATCH_DIR (an emptyDir), listens on a unix socket there
# and on no TCP port, trusts only its own socket, and is stopped on every exit path.
# pg_restore --exit-on-error fails on the first error, so a dump that does not restore fails
# here. Writes $BACKUP_DIR/verified ("<size> <sha256>") for scripts/backup-report.sh.
# POSIX sh: the Job runs it with the postgres image's dash.
set -eu

BACKUP_DIR="${BACKUP_DIR:-/backup}"
SCRATCH_DIR="${SCRATCH_DIR:-/scratch}"

log() { printf 'backup-verify-postgres: %s\n' "$*"; }
die() {
    printf 'backup-verify-postgres: error: %s\n' "$*" >&2
    exit 1
}

readback="$BACKUP_DIR/readback"
[ -s "$BACKUP_DIR/uploaded" ] || die "$BACKUP_DIR/uploaded is missing: the upload step did not verify the read-back"
read -r key size sha256 <"$BACKUP_DIR/uploaded"
[ "$(sha256sum "$readback" | cut -d ' ' -f 1)" = "$sha256" ] || die "$readback is not the object read back as $key"
rm -f "$BACKUP_DIR/verified"

data="$SCRATCH_DIR/pgdata"
socket="$SCRATCH_DIR/socket"
rm -rf "$data" "$socket"
mkdir -p "$socket"
started=""
stop_scratch() {
    [ -n "$started" ] || return 0
    pg_ctl -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
    started=""
}
trap stop_scratch EXIT
trap 'exit 143' TERM INT HUP

initdb -D "$data" -U postgres -E UTF8 --locale=C --auth=trust --no-sync --no-instructions >"$SCRATCH_DIR/initdb.log" 2>&1 ||
    die "initdb of the scratch server failed: $(tail -n 3 "$SCRATCH_DIR/initdb.log")"
started=yes
pg_ctl -D "$data" -l "$SCRATCH_DIR/postgres.log" -w -t 120 \
    -o "-c listen_addresses= -k $socket -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >/dev/null ||
    die "the scratch server did not start: $(tail -n 3 "$SCRATCH_DIR/postgres.log")"
scratch_psql() { psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$socket" -U postgres "$@"; }

scratch_psql -d postgres -c "create database verify" || die "could not create the scratch database"
log "restoring $key ($size bytes) into a scratch server"
pg_restore --exit-on-error --no-owner --no-acl -h "$socket" -U postgres -d verify "$readback" ||
    die "$key does not restore: pg_restore failed (see above)"

# Every TABLE entry of the archive's table of contents (not its TABLE DATA entries) must exist
# in the restored database.
listed=$(pg_restore --list "$readback" | grep '^[0-9][0-9]*; [0-9][0-9]* [0-9][0-9]* TABLE ' |
    grep -vc '^[0-9][0-9]*; [0-9][0-9]* [0-9][0-9]* TABLE DATA ' || true)
restored=$(scratch_psql -d verify -c "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.relkind in ('r', 'p') and n.nspname not in ('pg_catalog', 'information_schema')
    and n.nspname not like 'pg\_toast%'") || die "could not count the restored tables"
[ "$restored" = "$listed" ] || die "$key lists $listed tables, $restored were restored"
rows=$(scratch_psql -d verify -c "select coalesce(sum(n_live_tup), 0) from pg_stat_user_tables") || rows="?"
stop_scratch

printf '%s %s\n' "$size" "$sha256" >"$BACKUP_DIR/verified"
log "verified $key: $restored tables restored (about $rows rows), $size bytes, sha256 $sha256"
