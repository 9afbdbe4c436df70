#!/bin/sh
# Fetch one backup object from the bucket and prove it is the object that was verified when it
# was written: the same size and the same SHA-256. Runs as the init container of a restore Job;
# the restore container starts only if this exits 0, and reads the object from $BACKUP_DIR/object.
#
#   env BACKUP_BUCKET=... BACKUP_OBJECT=... BACKUP_SHA256=... BACKUP_SIZE=... S3_REGION=us-east-1 \
#       [S3_ENDPOINT=https://<account>.r2.cloudflarestorage.com] \
#       AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... sh restore-fetch.sh
#
# curl signs the request itself (--aws-sigv4), so the image needs no AWS CLI. The keys reach curl
# on stdin (`--config -`), never on its command line where `ps` would show them.
# POSIX sh: the Job runs it with busybox ash (curl image).
set -eu

BACKUP_DIR="${BACKUP_DIR:-/backup}"

log() { printf 'restore-fetch: %s\n' "$*"; }
die() {
    printf 'restore-fetch: error: %s\n' "$*" >&2
    exit 1
}

: "${BACKUP_BUCKET:?BACKUP_BUCKET is not set}"
: "${BACKUP_OBJECT:?BACKUP_OBJECT is not set}"
: "${BACKUP_SHA256:?BACKUP_SHA256 is not set}"
: "${BACKUP_SIZE:?BACKUP_SIZE is not set}"
: "${S3_REGION:?S3_REGION is not set}"
: "${AWS_ACCESS_KEY_ID:?AWS_ACCESS_KEY_ID is not set}"
: "${AWS_SECRET_ACCESS_KEY:?AWS_SECRET_ACCESS_KEY is not set}"

# The key goes into the URL as it is, so only characters that need no encoding are accepted.
case "$BACKUP_OBJECT" in
    /* | *[!A-Za-z0-9._/=-]* | *..*)
        die "backup key '$BACKUP_OBJECT' must be a relative path of letters, digits and ._/=-"
        ;;
esac
case "$BACKUP_SHA256" in
    *[!0-9a-f]*) die "BACKUP_SHA256 '$BACKUP_SHA256' is not a lowercase hex SHA-256" ;;
esac
[ "${#BACKUP_SHA256}" -eq 64 ] || die "BACKUP_SHA256 '$BACKUP_SHA256' is not 64 hex digits"
case "$BACKUP_SIZE" in
    *[!0-9]*) die "BACKUP_SIZE '$BACKUP_SIZE' is not a byte count" ;;
esac

if [ -n "${S3_ENDPOINT:-}" ]; then
    url="${S3_ENDPOINT%/}/${BACKUP_BUCKET}/${BACKUP_OBJECT}" # path style: R2, MinIO, GCS interop
else
    url="https://${BACKUP_BUCKET}.s3.${S3_REGION}.amazonaws.com/${BACKUP_OBJECT}"
fi

object="$BACKUP_DIR/object"
rm -f "$object" "$object.sha256"
log "fetching s3://$BACKUP_BUCKET/$BACKUP_OBJECT ($BACKUP_SIZE bytes)"
printf 'user = "%s:%s"\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" |
    curl --config - --fail --silent --show-error --retry 5 --retry-connrefused --connect-timeout 20 \
        --aws-sigv4 "aws:amz:${S3_REGION}:s3" --output "$object" "$url" ||
    die "download of $url failed"

size=$(wc -c <"$object" | tr -d ' ')
[ "$size" = "$BACKUP_SIZE" ] || die "size mismatch: got $size bytes, the verified backup has $BACKUP_SIZE"
sum=$(sha256sum "$object" | cut -d ' ' -f 1)
[ "$sum" = "$BACKUP_SHA256" ] || die "SHA-256 mismatch: got $sum, the verified backup has $BACKUP_SHA256"

# The restore container reads this, not the env, so it restores exactly what was checked here.
printf '%s\n' "$BACKUP_SHA256" >"$object.sha256"
log "verified $BACKUP_SIZE bytes, sha256 $BACKUP_SHA256"
