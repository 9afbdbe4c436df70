#!/bin/sh
# The second step of a scheduled backup (components/platform/scheduled_backups.py): upload the
# dump to a key of its own, then read it BACK from the bucket and compare it with what was
# dumped, size and SHA-256: "verified" means what the migration's verification means.
#
#   env BACKUP_SOURCE=postgres BACKUP_EXT=dump BACKUP_BUCKET=... S3_REGION=us-east-1 \
#       [S3_ENDPOINT=https://<account>.r2.cloudflarestorage.com] [BACKUP_PREFIX=k3s] \
#       AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... [BACKUP_DIR=/backup] sh backup-upload.sh
#
# The key is <prefix>/<source>/<UTC stamp>-<48 random bits>.<ext>, the scheme of
# scripts/compose-backup.sh: a retried Job (a new pod, a new stamp and new random bits) writes a
# new key and never overwrites an earlier backup; a key that exists already is refused. Reads
# $BACKUP_DIR/object; writes $BACKUP_DIR/readback (the object as the bucket returned it, which
# the verify step restores) and $BACKUP_DIR/uploaded ("<key> <size> <sha256>").
# curl signs the requests itself (--aws-sigv4, as scripts/restore-fetch.sh does); the keys reach
# it on stdin (`--config -`), never its command line.
# POSIX sh: the Job runs it with busybox ash (curl image).
set -eu

BACKUP_DIR="${BACKUP_DIR:-/backup}"
BACKUP_PREFIX="${BACKUP_PREFIX:-k3s}"

log() { printf 'backup-upload: %s\n' "$*"; }
die() {
    printf 'backup-upload: error: %s\n' "$*" >&2
    exit 1
}

: "${BACKUP_SOURCE:?BACKUP_SOURCE is not set}"
: "${BACKUP_EXT:?BACKUP_EXT is not set}"
: "${BACKUP_BUCKET:?BACKUP_BUCKET is not set}"
: "${S3_REGION:?S3_REGION is not set}"
: "${AWS_ACCESS_KEY_ID:?AWS_ACCESS_KEY_ID is not set}"
: "${AWS_SECRET_ACCESS_KEY:?AWS_SECRET_ACCESS_KEY is not set}"
# They go into the key, and so the URL, as they are.
for part in "$BACKUP_PREFIX" "$BACKUP_SOURCE" "$BACKUP_EXT"; do
    case "$part" in
        '' | *[!a-z0-9-]* | -*) die "'$part' (BACKUP_PREFIX, BACKUP_SOURCE, BACKUP_EXT) must be lower-case letters, digits and -" ;;
    esac
done

object="$BACKUP_DIR/object"
[ -s "$object" ] || die "$object is missing or empty: the dump step did not finish"
size=$(wc -c <"$object" | tr -d ' ')
sha256=$(sha256sum "$object" | cut -d ' ' -f 1)

stamp="$(date -u +%Y%m%dT%H%M%SZ)-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
key="$BACKUP_PREFIX/$BACKUP_SOURCE/$stamp.$BACKUP_EXT"
if [ -n "${S3_ENDPOINT:-}" ]; then
    url="${S3_ENDPOINT%/}/${BACKUP_BUCKET}/${key}" # path style: R2, MinIO, GCS interop
else
    url="https://${BACKUP_BUCKET}.s3.${S3_REGION}.amazonaws.com/${key}"
fi

s3() {
    printf 'user = "%s:%s"\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" |
        curl --config - --fail --silent --show-error --retry 5 --retry-connrefused --connect-timeout 20 \
            --aws-sigv4 "aws:amz:${S3_REGION}:s3" "$@" "$url"
}

# 404 is the only answer that lets the upload go ahead; curl without --fail prints the status.
status=$(printf 'user = "%s:%s"\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" |
    curl --config - --silent --show-error --connect-timeout 20 --aws-sigv4 "aws:amz:${S3_REGION}:s3" \
        --head --output /dev/null --write-out '%{http_code}' "$url") || die "HEAD $url failed"
[ "$status" = 404 ] || die "s3://$BACKUP_BUCKET/$key answered $status to HEAD, not 404: refusing to overwrite it"

log "uploading $size bytes (sha256 $sha256) to s3://$BACKUP_BUCKET/$key"
s3 --upload-file "$object" --header "x-amz-meta-sha256: $sha256" --output /dev/null ||
    die "upload to $url failed"

readback="$BACKUP_DIR/readback"
rm -f "$readback"
s3 --output "$readback" || die "read-back of $url failed"
got_size=$(wc -c <"$readback" | tr -d ' ')
got_sha256=$(sha256sum "$readback" | cut -d ' ' -f 1)
[ "$got_size" = "$size" ] ||
    die "s3://$BACKUP_BUCKET/$key read back $got_size bytes, $size were uploaded: not verified"
[ "$got_sha256" = "$sha256" ] ||
    die "s3://$BACKUP_BUCKET/$key read back sha256 $got_sha256, $sha256 was uploaded: not verified"
# The dump's own copy is no longer needed: the verify step restores what the bucket returned.
rm -f "$object"
printf '%s %s %s\n' "$key" "$size" "$sha256" >"$BACKUP_DIR/uploaded"
log "read back s3://$BACKUP_BUCKET/$key: $size bytes, sha256 $sha256"
