#!/usr/bin/env bash
# Dump one data service of the legacy Docker Compose host and upload the dump to the backup bucket.
#
# usage: compose-backup.sh --service qdrant|redis|postgres --compose-dir DIR --bucket B --region R
#          [--endpoint URL] [--prefix compose] --image AWS_CLI_IMAGE [--qdrant-url URL]
#          [--redis-service S] [--postgres-service S] [--postgres-user U] [--postgres-db D]
# stdin:  two lines, the bucket's access key id and secret access key (never on a command line).
# stdout: one JSON line {"service", "key", "size", "sha256"}: the record the verification checks.
# stderr: what it did, step by step.
#
# The source is only read: Qdrant's full-storage snapshot API, Redis BGSAVE, pg_dump -Fc. Each run
# writes a new key, time-stamped and carrying 48 random bits of its own, so running it twice (even
# within one second, as a retry does, and with the same PID, as in a fresh PID namespace) leaves two
# complete dumps and never overwrites a verified one.
set -euo pipefail

log() { printf 'compose-backup: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

service="" compose_dir="" bucket="" region="" endpoint="" prefix="compose" image=""
qdrant_url="http://127.0.0.1:6333" redis_service="redis" postgres_service="postgres"
postgres_user="postgres" postgres_db="platform"
bgsave_timeout="${BGSAVE_TIMEOUT:-300}"
while [ "$#" -gt 0 ]; do
  [ "$#" -ge 2 ] || die "flag $1 needs a value"
  case "$1" in
    --service) service="$2" ;;
    --compose-dir) compose_dir="$2" ;;
    --bucket) bucket="$2" ;;
    --region) region="$2" ;;
    --endpoint) endpoint="$2" ;;
    --prefix) prefix="$2" ;;
    --image) image="$2" ;;
    --qdrant-url) qdrant_url="$2" ;;
    --redis-service) redis_service="$2" ;;
    --postgres-service) postgres_service="$2" ;;
    --postgres-user) postgres_user="$2" ;;
    --postgres-db) postgres_db="$2" ;;
    *) die "unknown flag $1" ;;
  esac
  shift 2
done
case "$service" in qdrant | redis | postgres) ;; *) die "--service must be qdrant, redis or postgres (got '$service')" ;; esac
[ -n "$compose_dir" ] || die "--compose-dir is required"
[ -n "$bucket" ] || die "--bucket is required"
[ -n "$region" ] || die "--region is required"
[ -n "$image" ] || die "--image is required"

IFS= read -r AWS_ACCESS_KEY_ID || die "stdin: expected the access key id on the first line"
IFS= read -r AWS_SECRET_ACCESS_KEY || die "stdin: expected the secret access key on the second line"
[ -n "$AWS_ACCESS_KEY_ID" ] && [ -n "$AWS_SECRET_ACCESS_KEY" ] || die "stdin: empty access key"
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
export AWS_DEFAULT_REGION="$region"

cd "$compose_dir" || die "compose directory $compose_dir does not exist"
workdir="$(mktemp -d "${TMPDIR:-/var/tmp}/compose-backup.XXXXXX")"
trap 'rm -rf "$workdir"' EXIT
dump="$workdir/dump"
stamp="$(date -u +%Y%m%dT%H%M%SZ)-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"

compose() { docker compose "$@"; }

dump_qdrant() {
  log "qdrant: creating a full-storage snapshot at $qdrant_url"
  local answer name
  answer="$(curl -fsS -X POST "$qdrant_url/snapshots?wait=true")" || die "qdrant: snapshot request failed"
  name="$(printf '%s' "$answer" | sed -n 's/.*"name"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')"
  [ -n "$name" ] || die "qdrant: the answer names no snapshot: $answer"
  curl -fsS -o "$dump" "$qdrant_url/snapshots/$name" || die "qdrant: download of snapshot $name failed"
  # The snapshot also sits in Qdrant's own storage; remove that copy so the host disk does not fill.
  curl -fsS -X DELETE "$qdrant_url/snapshots/$name?wait=true" >/dev/null || log "qdrant: could not delete snapshot $name on the host (harmless)"
  tar -tf "$dump" >/dev/null || die "qdrant: snapshot $name is not a readable tar archive"
}

redis_cli() { compose exec -T "$redis_service" redis-cli "$@" | tr -d '\r'; }
persistence() { redis_cli INFO persistence | sed -n "s/^$1://p"; }

dump_redis() {
  local deadline reply status dir file
  deadline=$((SECONDS + bgsave_timeout))
  # A save that is already running (Redis's own `save` schedule, an AOF rewrite, or a backup
  # killed midway) began before this backup was asked for: let it end, then take our own.
  while :; do
    reply="$(redis_cli BGSAVE 2>&1 || true)"
    case "$reply" in
      "Background saving started") break ;;
      *"already in progress"* | *"Another child process is active"*) ;;
      *) die "redis: BGSAVE failed: $reply" ;;
    esac
    [ "$SECONDS" -lt "$deadline" ] || die "redis: another save kept Redis busy for ${bgsave_timeout}s"
    sleep 0.2
  done
  log "redis: BGSAVE started"
  # BGSAVE forks before it answers, so rdb_bgsave_in_progress stays 1 until this save has ended
  # (LASTSAVE has 1s resolution: a save ending in the second the last one did looks like none).
  while [ "$(persistence rdb_bgsave_in_progress)" != 0 ]; do
    [ "$SECONDS" -lt "$deadline" ] || die "redis: BGSAVE did not finish within ${bgsave_timeout}s"
    sleep 0.2
  done
  status="$(persistence rdb_last_bgsave_status)"
  [ "$status" = "ok" ] || die "redis: BGSAVE failed (rdb_last_bgsave_status:$status)"
  dir="$(redis_cli CONFIG GET dir | sed -n 2p)"
  file="$(redis_cli CONFIG GET dbfilename | sed -n 2p)"
  compose exec -T "$redis_service" cat "$dir/$file" >"$dump"
  [ "$(head -c 5 "$dump")" = "REDIS" ] || die "redis: $dir/$file does not start with the RDB magic"
}

endpoint_args=()
if [ -n "$endpoint" ]; then endpoint_args=(--endpoint-url "$endpoint"); fi
case "$service" in qdrant) ext=snapshot ;; redis) ext=rdb ;; postgres) ext=dump ;; esac
key="$prefix/$service/$stamp.$ext"

# upload SOURCE [FLAGS...]: /backup/dump (the dump in $workdir) or - (stdin) to s3://$bucket/$key.
upload() {
  local source="$1"
  shift
  docker run --rm -i -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_DEFAULT_REGION \
    -v "$workdir:/backup:ro" "$image" \
    s3 cp "$source" "s3://$bucket/$key" --only-show-errors "$@" "${endpoint_args[@]}"
}

dump_postgres() {
  local estimate size_args=()
  # The dump goes to the bucket while pg_dump writes it (the migration window is dump + restore,
  # not dump + upload + restore); tee keeps the copy that is listed and hashed below. A stream
  # needs its size bound up front past 50 GB: the database's size is one (the dump is compressed).
  estimate="$(compose exec -T "$postgres_service" psql -X -At -U "$postgres_user" -d "$postgres_db" \
    -c "select pg_database_size(current_database())" | tr -d '\r')" || estimate=""
  case "$estimate" in
    '' | *[!0-9]*) log "postgres: could not read the database's size; streams over 50 GB will fail" ;;
    *) size_args=(--expected-size "$estimate") ;;
  esac
  log "postgres: pg_dump -Fc $postgres_db as $postgres_user, streamed to s3://$bucket/$key"
  # A failed dump may leave a partial object under this run's key: no record names it, so nothing
  # restores it, and the bucket's lifecycle expires it.
  compose exec -T "$postgres_service" pg_dump -Fc -U "$postgres_user" "$postgres_db" | tee "$dump" |
    upload - "${size_args[@]}" || die "postgres: pg_dump or its upload failed"
  # The archive's table of contents must read back before the dump counts.
  compose exec -T "$postgres_service" pg_restore --list <"$dump" >/dev/null || die "postgres: pg_restore cannot read the dump"
}

"dump_$service"
size="$(stat -c %s "$dump")"
sha="$(sha256sum "$dump" | cut -d' ' -f1)"
[ "$size" -gt 0 ] || die "$service: the dump is empty"
if [ "$service" != postgres ]; then
  log "$service: uploading $size bytes (sha256 $sha) to s3://$bucket/$key"
  upload /backup/dump --metadata "sha256=$sha" </dev/null
fi
log "$service: done ($size bytes, sha256 $sha)"
printf '{"service":"%s","key":"%s","size":%s,"sha256":"%s"}\n' "$service" "$key" "$size" "$sha"
