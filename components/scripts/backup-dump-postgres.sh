#!/bin/sh
# The first step of a scheduled Postgres backup (components/platform/scheduled_backups.py): a
# `pg_dump -Fc` of the platform database, the same format the migration restored from
# (scripts/compose-backup.sh), so one restore procedure serves both.
#
#   env PGHOST=postgres.platform-data.svc.cluster.local PGDATABASE=platform PGUSER=postgres \
#       PGPASSWORD=... [BACKUP_DIR=/backup] sh backup-dump-postgres.sh
#
# Writes $BACKUP_DIR/started (the unix second before the dump began: the data is at least that
# new) and then $BACKUP_DIR/object, only once pg_dump has exited 0. The password reaches pg_dump
# through libpq's PGPASSWORD, never its command line.
# POSIX sh: the Job runs it with the postgres image's dash.
set -eu

BACKUP_DIR="${BACKUP_DIR:-/backup}"

log() { printf 'backup-dump-postgres: %s\n' "$*"; }
die() {
    printf 'backup-dump-postgres: error: %s\n' "$*" >&2
    exit 1
}

: "${PGHOST:?PGHOST is not set}"
: "${PGDATABASE:?PGDATABASE is not set}"
: "${PGPASSWORD:?PGPASSWORD is not set}"

rm -f "$BACKUP_DIR/object" "$BACKUP_DIR/object.part" "$BACKUP_DIR/started"
date +%s >"$BACKUP_DIR/started"
log "pg_dump -Fc $PGDATABASE at $PGHOST"
pg_dump -Fc --no-password --file "$BACKUP_DIR/object.part" || die "pg_dump of $PGDATABASE at $PGHOST failed"
# A dump whose table of contents cannot be read is no backup; the verify step restores it fully.
pg_restore --list "$BACKUP_DIR/object.part" >/dev/null || die "pg_restore cannot read the dump's table of contents"
mv "$BACKUP_DIR/object.part" "$BACKUP_DIR/object"
log "dumped $(wc -c <"$BACKUP_DIR/object" | tr -d ' ') bytes"
