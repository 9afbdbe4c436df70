#!/bin/sh
# Tell Prometheus that one store's scheduled backup was written, read back and restore-verified:
# the last container of a backup Job, reached only when every step before it exited 0.
#
#   env PUSHGATEWAY_URL=http://pushgateway.monitoring.svc.cluster.local:9091 BACKUP_SOURCE=postgres \
#       [BACKUP_DIR=/backup] sh backup-report.sh
#
# It reads what the earlier steps wrote into $BACKUP_DIR:
#   started   the unix second the dump began: the data is as of then, so it is the age that matters
#   verified  "<size in bytes> <sha256>" of the object read back from the bucket and restored
# and replaces the source's group on the Pushgateway (PUT: a batch job's outcome, the case the
# Pushgateway exists for) with three gauges, labelled by the grouping key {job, source}:
#   gpu_platform_backup_verified_timestamp_seconds  when the newest verified backup's data was taken
#   gpu_platform_backup_verified_size_bytes         its size
#   gpu_platform_backup_duration_seconds            dump to verified, in seconds
# A failed step never reaches this script: the age keeps growing and the Job's failure shows in
# kube-state-metrics (components/observability/alerts.py reads both).
# POSIX sh: the Job runs it with busybox ash (curl image).
set -eu

BACKUP_DIR="${BACKUP_DIR:-/backup}"
JOB="gpu-platform-backup"

log() { printf 'backup-report: %s\n' "$*"; }
die() {
    printf 'backup-report: error: %s\n' "$*" >&2
    exit 1
}

: "${PUSHGATEWAY_URL:?PUSHGATEWAY_URL is not set}"
: "${BACKUP_SOURCE:?BACKUP_SOURCE is not set}"
# The source goes into the URL path and a label value as it is.
case "$BACKUP_SOURCE" in
    *[!a-z0-9-]* | -*) die "BACKUP_SOURCE '$BACKUP_SOURCE' must be lower-case letters, digits and -" ;;
esac

[ -r "$BACKUP_DIR/started" ] || die "$BACKUP_DIR/started is missing: the dump step did not finish"
[ -r "$BACKUP_DIR/verified" ] || die "$BACKUP_DIR/verified is missing: the backup was not verified"
started=$(cat "$BACKUP_DIR/started")
read -r size sha256 <"$BACKUP_DIR/verified" || die "$BACKUP_DIR/verified is empty"
case "$started" in '' | *[!0-9]*) die "$BACKUP_DIR/started '$started' is not a unix time" ;; esac
case "$size" in '' | *[!0-9]*) die "$BACKUP_DIR/verified: size '$size' is not a byte count" ;; esac
case "$sha256" in *[!0-9a-f]*) die "$BACKUP_DIR/verified: '$sha256' is not a lowercase hex SHA-256" ;; esac
[ "${#sha256}" -eq 64 ] || die "$BACKUP_DIR/verified: '$sha256' is not 64 hex digits"
now=$(date +%s)
[ "$started" -le "$now" ] || die "$BACKUP_DIR/started $started is in the future (now $now)"

url="${PUSHGATEWAY_URL%/}/metrics/job/${JOB}/source/${BACKUP_SOURCE}"
# The exposition format needs a newline after the last sample.
printf '%s\n' \
    "# TYPE gpu_platform_backup_verified_timestamp_seconds gauge" \
    "gpu_platform_backup_verified_timestamp_seconds $started" \
    "# TYPE gpu_platform_backup_verified_size_bytes gauge" \
    "gpu_platform_backup_verified_size_bytes $size" \
    "# TYPE gpu_platform_backup_duration_seconds gauge" \
    "gpu_platform_backup_duration_seconds $((now - started))" |
    curl --fail --silent --show-error --retry 5 --retry-connrefused --connect-timeout 10 --max-time 60 \
        --request PUT --data-binary @- "$url" ||
    die "push to $url failed"
log "$BACKUP_SOURCE: verified backup of $size bytes (sha256 $sha256), data as of $started, reported to $url"
