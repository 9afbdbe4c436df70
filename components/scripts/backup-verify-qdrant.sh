#!/bin/sh
# The third step of a scheduled Qdrant backup (components/platform/scheduled_backups.py): unpack
# the full-storage snapshot read back from the bucket and check that it holds, as a readable tar
# archive, every collection Qdrant listed before the snapshot; only then is the backup "verified".
#
#   env [BACKUP_DIR=/backup] [SCRATCH_DIR=/scratch] sh backup-verify-qdrant.sh
#
# Weaker than the Postgres and Redis checks, and said so in the README: Qdrant recovers a full
# snapshot only at start-up, and this step runs in the curl image, so nothing loads the
# collections' points here. What it proves: the object is the snapshot read back, its
# config.json maps every listed collection to a file in the archive, and each such file is itself
# a readable tar archive (Qdrant's collection snapshot format). Writes $BACKUP_DIR/verified
# ("<size> <sha256>") for scripts/backup-report.sh.
# POSIX sh: the Job runs it with busybox ash (curl image).
set -eu

BACKUP_DIR="${BACKUP_DIR:-/backup}"
SCRATCH_DIR="${SCRATCH_DIR:-/scratch}"

log() { printf 'backup-verify-qdrant: %s\n' "$*"; }
die() {
    printf 'backup-verify-qdrant: error: %s\n' "$*" >&2
    exit 1
}

readback="$BACKUP_DIR/readback"
[ -s "$BACKUP_DIR/uploaded" ] || die "$BACKUP_DIR/uploaded is missing: the upload step did not verify the read-back"
read -r key size sha256 <"$BACKUP_DIR/uploaded"
[ "$(sha256sum "$readback" | cut -d ' ' -f 1)" = "$sha256" ] || die "$readback is not the object read back as $key"
[ -f "$BACKUP_DIR/collections" ] || die "$BACKUP_DIR/collections is missing: the dump step did not list the collections"
rm -f "$BACKUP_DIR/verified"

dir="$SCRATCH_DIR/snapshot"
rm -rf "$dir"
mkdir -p "$dir"
tar -xf "$readback" -C "$dir" || die "$key is not a readable tar archive"
[ -f "$dir/config.json" ] || die "$key has no config.json: not a Qdrant full-storage snapshot"

checked=0
while read -r collection; do
    [ -n "$collection" ] || continue
    case "$collection" in
        *[!A-Za-z0-9_-]* | -*) die "'$collection' is not a collection name this script accepts" ;;
    esac
    # serde's pretty printing puts one `"collection": "file"` per line of collections_mapping.
    file=$(sed -n "s/^[[:space:]]*\"$collection\"[[:space:]]*:[[:space:]]*\"\\([^\"]*\\)\".*/\\1/p" "$dir/config.json" | head -n 1)
    case "$file" in
        '' | */* | .*) die "$key: config.json maps no snapshot file to collection $collection" ;;
    esac
    [ -f "$dir/$file" ] || die "$key: config.json maps $collection to $file, which is not in the archive"
    tar -tf "$dir/$file" >/dev/null 2>&1 || die "$key: the snapshot of $collection ($file) is not a readable tar archive"
    checked=$((checked + 1))
done <"$BACKUP_DIR/collections"
rm -rf "$dir"

printf '%s %s\n' "$size" "$sha256" >"$BACKUP_DIR/verified"
log "verified $key: $checked collection snapshot(s) present and readable, $size bytes, sha256 $sha256"
