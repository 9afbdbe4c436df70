#!/bin/sh
# Restore the Compose host's Qdrant into the in-cluster server, once.
#
# The object ($BACKUP_DIR/object, checked by restore-fetch.sh) is a full-storage snapshot
# (`POST /snapshots`, scripts/compose-backup.sh): a tar archive of one snapshot per collection
# and a config.json that maps each collection to its file and each alias to its collection.
# Qdrant recovers a full snapshot only at start-up from a local path, so this uploads the
# collections one by one over the API (with their SHA-256, which Qdrant checks too) and then
# creates the aliases. Never destructive, and safe to run again: a collection or an alias that
# already exists is left as it is.
#
#   env QDRANT_URL=http://qdrant.platform-data.svc.cluster.local:6333 QDRANT_API_KEY=... \
#       sh restore-qdrant.sh
# POSIX sh: the Job runs it with busybox ash (curl image).
set -eu

BACKUP_DIR="${BACKUP_DIR:-/backup}"
WAIT_SECONDS="${WAIT_SECONDS:-600}"
POLL_SECONDS="${POLL_SECONDS:-5}"

log() { printf 'restore-qdrant: %s\n' "$*"; }
die() {
    printf 'restore-qdrant: error: %s\n' "$*" >&2
    exit 1
}

: "${QDRANT_URL:?QDRANT_URL is not set}"
: "${QDRANT_API_KEY:?QDRANT_API_KEY is not set}"

[ -s "$BACKUP_DIR/object.sha256" ] || die "$BACKUP_DIR/object.sha256 is missing; restore-fetch.sh did not verify the object"
expected=$(cat "$BACKUP_DIR/object.sha256")

# The API key reaches curl on stdin, never on its command line.
api() {
    method="$1"
    path="$2"
    shift 2
    printf 'header = "api-key: %s"\n' "$QDRANT_API_KEY" |
        curl --config - --fail --silent --show-error -X "$method" "${QDRANT_URL%/}$path" "$@"
}

# pairs SECTION: the "key value" lines of one map in config.json (serde's pretty printing puts
# one `"key": "value"` per line).
pairs() {
    awk -v want="\"$1\":" '
        index($0, want) { inside = ($0 !~ /\}/); next }
        inside && /^[[:space:]]*\}/ { inside = 0; next }
        inside && match($0, /"[^"]*"[[:space:]]*:[[:space:]]*"[^"]*"/) {
            pair = substr($0, RSTART, RLENGTH)
            gsub(/"/, "", pair)
            sub(/[[:space:]]*:[[:space:]]*/, " ", pair)
            print pair
        }' "$dir/config.json"
}

valid_name() {
    case "$1" in
        '' | *[!A-Za-z0-9_.-]* | .*) return 1 ;;
    esac
}

waited=0
until api GET /readyz >/dev/null 2>&1; do
    [ "$waited" -lt "$WAIT_SECONDS" ] || die "Qdrant at $QDRANT_URL was not ready within ${WAIT_SECONDS}s"
    sleep "$POLL_SECONDS"
    waited=$((waited + POLL_SECONDS))
done

dir="$BACKUP_DIR/snapshot"
rm -rf "$dir"
mkdir -p "$dir"
tar -xf "$BACKUP_DIR/object" -C "$dir" || die "the backup is not a readable tar archive"
[ -f "$dir/config.json" ] || die "the archive has no config.json: not a Qdrant full-storage snapshot"

pairs collections_mapping >"$BACKUP_DIR/collections"
pairs collections_aliases >"$BACKUP_DIR/aliases"

restored=0
kept=0
while read -r collection file; do
    valid_name "$collection" || die "'$collection' is not a collection name this script accepts"
    valid_name "$file" || die "'$file' is not a snapshot file name this script accepts"
    [ -f "$dir/$file" ] || die "config.json maps $collection to $file, which is not in the archive"
    case "$(api GET "/collections/$collection/exists")" in
        *'"exists":true'*)
            log "collection $collection exists; leaving it as it is"
            kept=$((kept + 1))
            continue
            ;;
    esac
    sum=$(sha256sum "$dir/$file" | cut -d ' ' -f 1)
    log "uploading collection $collection"
    api POST "/collections/$collection/snapshots/upload?priority=snapshot&wait=true&checksum=$sum" \
        -F "snapshot=@$dir/$file" >/dev/null || die "upload of collection $collection failed"
    case "$(api GET "/collections/$collection/exists")" in
        *'"exists":true'*) restored=$((restored + 1)) ;;
        *) die "collection $collection is missing after its upload" ;;
    esac
done <"$BACKUP_DIR/collections"

existing=$(api GET /aliases)
while read -r alias collection; do
    valid_name "$alias" || die "'$alias' is not an alias name this script accepts"
    case "$existing" in
        *"\"alias_name\":\"$alias\""*)
            log "alias $alias exists; leaving it as it is"
            continue
            ;;
    esac
    api POST /collections/aliases -H 'Content-Type: application/json' \
        --data "{\"actions\":[{\"create_alias\":{\"collection_name\":\"$collection\",\"alias_name\":\"$alias\"}}]}" \
        >/dev/null || die "could not create alias $alias -> $collection"
    log "alias $alias -> $collection"
done <"$BACKUP_DIR/aliases"

log "restored $restored collection(s), kept $kept, from sha256 $expected"
