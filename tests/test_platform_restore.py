"""The restore scripts of the data stores, run for real in a sandbox with stub binaries.

The restores themselves (real Postgres and Redis, moto's S3, kills at every step) are in
tests/test_data_migration_postgres.py and tests/test_data_migration_redis.py; what stays here is
what needs no server: input checks, refusals, bounded waits and the Qdrant path (no Qdrant here).

Each test gives a script a PATH that holds only stubs (curl, psql, pg_restore, redis-cli, ...,
written below) and a few real tools, runs it with /bin/sh like the Jobs do, and asserts on its
exit code, its messages and what the stubs saw. Waits are bounded (WAIT_SECONDS=1,
POLL_SECONDS=0) and no test touches the network.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "components" / "scripts"
SYS_TOOLS = (
    "sh", "cat", "wc", "tr", "cut", "sha256sum", "rm", "mkdir", "sed", "grep", "awk", "tar",
    "basename", "sleep", "xargs", "touch", "ls",
)  # fmt: skip
ACCESS_KEY = "AKIAEXAMPLEKEY000001"
SECRET_KEY = "offline-test-secret-not-real"


class Sandbox:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.state = root / "state"
        self.backup = root / "backup"
        for d in (self.bin, self.state, self.backup):
            d.mkdir()
        for tool in SYS_TOOLS:
            real = shutil.which(tool)
            assert real, f"{tool} is needed to run the restore script tests"
            (self.bin / tool).symlink_to(real)
        self.log = root / "calls.log"
        self.log.touch()

    def stub(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text(f'#!/bin/sh\nSTATE="{self.state}"\nLOG="{self.log}"\n{body}')
        path.chmod(0o755)

    def run(self, script: str, **env: str) -> subprocess.CompletedProcess[str]:
        full = {
            "PATH": str(self.bin),
            "BACKUP_DIR": str(self.backup),
            "WAIT_SECONDS": "1",
            "POLL_SECONDS": "0",
            **env,
        }
        return subprocess.run(
            ["/bin/sh", str(SCRIPTS / script)], env=full, capture_output=True, text=True, timeout=30, check=False
        )

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines()

    def verified(self, content: bytes) -> str:
        """Place `content` as the fetched, verified object; return its SHA-256."""
        sha = hashlib.sha256(content).hexdigest()
        (self.backup / "object").write_bytes(content)
        (self.backup / "object.sha256").write_text(sha + "\n")
        return sha


@pytest.fixture
def box(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path)


# --- restore-fetch.sh --------------------------------------------------------------------------

# curl: log its argv and its stdin (the config with the keys), then write $STATE/served to -o.
CURL_S3 = r"""
printf 'curl %s\n' "$*" >>"$LOG"
cat >"$STATE/curl-stdin"
[ -f "$STATE/fail" ] && exit 22
out=""
while [ "$#" -gt 0 ]; do
    [ "$1" = --output ] && out="$2"
    shift
done
cat "$STATE/served" >"$out"
"""

OBJECT = b"PGDMP fake custom-format dump\n" * 100


def _fetch_env(sha: str, size: int, **extra: str) -> dict[str, str]:
    return {
        "BACKUP_BUCKET": "example-platform-dev-backups",
        "BACKUP_OBJECT": "compose/postgres/20260101T000000Z.dump",
        "BACKUP_SHA256": sha,
        "BACKUP_SIZE": str(size),
        "S3_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        **extra,
    }


def test_fetch_accepts_the_verified_object_and_keeps_keys_off_the_command_line(box: Sandbox) -> None:
    box.stub("curl", CURL_S3)
    (box.state / "served").write_bytes(OBJECT)
    sha = hashlib.sha256(OBJECT).hexdigest()
    result = box.run("restore-fetch.sh", **_fetch_env(sha, len(OBJECT)))
    assert result.returncode == 0, result.stderr
    assert (box.backup / "object").read_bytes() == OBJECT
    assert (box.backup / "object.sha256").read_text().strip() == sha
    (call,) = box.calls()
    assert (
        "https://example-platform-dev-backups.s3.us-east-1.amazonaws.com/compose/postgres/20260101T000000Z.dump" in call
    )
    assert "--aws-sigv4 aws:amz:us-east-1:s3" in call
    assert SECRET_KEY not in call and ACCESS_KEY not in call
    assert (box.state / "curl-stdin").read_text() == f'user = "{ACCESS_KEY}:{SECRET_KEY}"\n'


def test_fetch_uses_path_style_urls_on_an_s3_compatible_endpoint(box: Sandbox) -> None:
    box.stub("curl", CURL_S3)
    (box.state / "served").write_bytes(OBJECT)
    env = _fetch_env(hashlib.sha256(OBJECT).hexdigest(), len(OBJECT), S3_ENDPOINT="https://r2.example.com/")
    assert box.run("restore-fetch.sh", **env).returncode == 0
    assert "https://r2.example.com/example-platform-dev-backups/compose/postgres/" in box.calls()[0]


@pytest.mark.parametrize(
    ("served", "message"),
    [
        (OBJECT[:-1] + b"X", "SHA-256 mismatch"),  # the same size, other bytes
        (OBJECT + b"tail", "size mismatch"),
    ],
)
def test_fetch_refuses_an_object_that_is_not_the_verified_one(box: Sandbox, served: bytes, message: str) -> None:
    box.stub("curl", CURL_S3)
    (box.state / "served").write_bytes(served)
    result = box.run("restore-fetch.sh", **_fetch_env(hashlib.sha256(OBJECT).hexdigest(), len(OBJECT)))
    assert result.returncode == 1
    assert message in result.stderr
    assert not (box.backup / "object.sha256").exists(), "an unverified object must not look verified"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("BACKUP_OBJECT", "../etc/passwd", "must be a relative path"),
        ("BACKUP_OBJECT", "compose/post gres.dump", "must be a relative path"),
        ("BACKUP_SHA256", "F" * 64, "not a lowercase hex SHA-256"),
        ("BACKUP_SHA256", "ab", "not 64 hex digits"),
        ("BACKUP_SIZE", "12kB", "not a byte count"),
        ("AWS_SECRET_ACCESS_KEY", "", "AWS_SECRET_ACCESS_KEY is not set"),
    ],
)
def test_fetch_checks_its_inputs_before_downloading(box: Sandbox, field: str, value: str, message: str) -> None:
    box.stub("curl", CURL_S3)
    (box.state / "served").write_bytes(OBJECT)
    env = _fetch_env(hashlib.sha256(OBJECT).hexdigest(), len(OBJECT))
    env[field] = value
    result = box.run("restore-fetch.sh", **env)
    assert result.returncode != 0
    assert message in result.stderr
    assert box.calls() == []


def test_fetch_reports_a_failed_download(box: Sandbox) -> None:
    box.stub("curl", CURL_S3)
    (box.state / "fail").touch()
    result = box.run("restore-fetch.sh", **_fetch_env("a" * 64, 10))
    assert result.returncode == 1 and "download of https://" in result.stderr


# --- restore-postgres.sh -----------------------------------------------------------------------

# psql: answer the script's queries from files in $STATE, log every statement with its database.
PSQL = r"""
db="" sql=""
while [ "$#" -gt 0 ]; do
    case "$1" in
        --dbname) db="$2"; shift ;;
        -c) sql="$2"; shift ;;
    esac
    shift
done
printf 'psql %s: %s\n' "$db" "$sql" >>"$LOG"
answer() { if [ -f "$STATE/$1" ]; then cat "$STATE/$1"; else printf '%s\n' "$2"; fi; }
case "$sql" in
    *"is not null,"*)
        # The state query: marker table, target exists, retired exists, staging's comment ("-": none).
        e=$(answer db-exists 1) m=$(answer marker f)
        if [ "$e" = 0 ]; then printf '%s|f|f|-\n' "$m"; else printf '%s|t|t|%s\n' "$m" "$e"; fi
        ;;
    *to_regclass*) answer marker f ;;
    "select sha256 from"*) answer marker-sha "" ;;
    *"from pg_database where datname"*) answer db-exists 1 ;;
    *"from pg_tables"*) answer tables 0 ;;
esac
"""
PG_RESTORE = r"""
printf 'pg_restore %s\n' "$*" >>"$LOG"
[ -f "$STATE/restore-fails" ] && exit 1
case "$*" in *--list*) exit 0 ;; esac
echo 42 >"$STATE/tables"
"""
PG_ENV = {"PGHOST": "postgres.platform-data.svc.cluster.local", "PGPASSWORD": "pw", "PGDATABASE": "platform"}


@pytest.fixture
def pg(box: Sandbox) -> Sandbox:
    box.stub("psql", PSQL)
    box.stub("pg_isready", 'echo pg_isready >>"$LOG"')
    box.stub("pg_restore", PG_RESTORE)
    return box


@pytest.mark.parametrize(("marker_sha", "message"), [("same", "nothing to do"), ("b" * 64, "live since")])
def test_postgres_never_restores_over_a_restored_server(pg: Sandbox, marker_sha: str, message: str) -> None:
    sha = pg.verified(OBJECT)
    (pg.state / "marker").write_text("t\n")
    (pg.state / "marker-sha").write_text((sha if marker_sha == "same" else marker_sha) + "\n")
    result = pg.run("restore-postgres.sh", **PG_ENV)
    assert result.returncode == 0, result.stderr
    assert message in result.stdout
    assert not [c for c in pg.calls() if c.startswith("pg_restore") or "insert" in c or "create" in c]


def test_postgres_refuses_data_it_did_not_restore(pg: Sandbox) -> None:
    pg.verified(OBJECT)
    (pg.state / "tables").write_text("3\n")
    result = pg.run("restore-postgres.sh", **PG_ENV)
    assert result.returncode == 1
    assert "refusing to restore: database platform holds 3 table(s)" in result.stderr
    assert not [c for c in pg.calls() if c.startswith("pg_restore")]


def test_postgres_needs_the_verified_object(pg: Sandbox) -> None:
    result = pg.run("restore-postgres.sh", **PG_ENV)
    assert result.returncode == 1 and "restore-fetch.sh did not verify the object" in result.stderr
    assert pg.calls() == []


def test_postgres_waits_a_bounded_time_for_the_server(pg: Sandbox) -> None:
    pg.stub("pg_isready", "exit 2")
    pg.verified(OBJECT)
    result = pg.run("restore-postgres.sh", **{**PG_ENV, "POLL_SECONDS": "1"})
    assert result.returncode == 1 and "did not accept connections within 1s" in result.stderr


# --- restore-redis.sh --------------------------------------------------------------------------

# redis-cli: a live server (port 6379) and the throwaway one (6380), each a directory of keys.
REDIS_CLI = r"""
port=6379 db=0
while [ "$#" -gt 0 ]; do
    case "$1" in
        -p) port="$2"; shift ;;
        -n) db="$2"; shift ;;
        -h | --no-auth-warning) [ "$1" = -h ] && shift ;;
        *) break ;;
    esac
    shift
done
dir="$STATE/redis-$port/db$db"
mkdir -p "$dir"
printf 'redis-cli %s %s\n' "$port" "$*" >>"$LOG"
case "$1" in
    PING) echo PONG ;;
    GET) if [ -f "$dir/$2" ]; then cat "$dir/$2"; fi ;;  # a missing key: empty answer, exit 0
    SET) printf '%s\n' "$3" >"$dir/$2"; echo OK ;;
    DEL) rm -f "$dir/$2"; echo 1 ;;
    DBSIZE) ls "$dir" | wc -l | tr -d ' ' ;;
    INFO)
        for d in "$STATE/redis-$port"/db*; do
            n=$(ls "$d" | wc -l | tr -d ' ')
            [ "$n" -gt 0 ] && echo "db${d##*/db}:keys=$n,expires=0,avg_ttl=0"
        done
        ;;
    --scan) ls "$dir" ;;
    MIGRATE)
        # MIGRATE host port "" db timeout COPY REPLACE AUTH password KEYS key...
        dest="$5"
        [ "$7 $8 $9 ${11}" = "COPY REPLACE AUTH KEYS" ] || { echo "ERR syntax error"; exit 0; }
        printf '%s\n' "${10}" >"$STATE/migrate-auth"
        shift 11
        live="$STATE/redis-6379/db$dest"
        mkdir -p "$live"
        for key in "$@"; do cat "$dir/$key" >"$live/$key"; done
        echo OK
        ;;
    SHUTDOWN) ;;
esac
"""


@pytest.fixture
def redis(box: Sandbox) -> Sandbox:
    box.stub("redis-cli", REDIS_CLI)
    box.stub("redis-check-rdb", 'echo "redis-check-rdb $*" >>"$LOG"')
    # The throwaway server "loads" the RDB: two keys in db 0, one in db 3.
    box.stub(
        "redis-server",
        'cat >"$STATE/temp.conf"; echo redis-server >>"$LOG"\n'
        'mkdir -p "$STATE/redis-6380/db0" "$STATE/redis-6380/db3"\n'
        'echo a >"$STATE/redis-6380/db0/session:1"; echo b >"$STATE/redis-6380/db0/queue:jobs"\n'
        'echo c >"$STATE/redis-6380/db3/cache:x"\n',
    )
    return box


REDIS_ENV = {"REDIS_HOST": "redis.platform-data.svc.cluster.local", "REDIS_PASSWORD": "pw-not-real"}


@pytest.mark.parametrize(("done", "message"), [("same", "nothing to do"), ("c" * 64, "live since")])
def test_redis_never_restores_over_a_restored_server(redis: Sandbox, done: str, message: str) -> None:
    sha = redis.verified(b"REDIS0011fake")
    marker = redis.state / "redis-6379" / "db0"
    marker.mkdir(parents=True)
    (marker / "gpu-platform:restore:sha256").write_text((sha if done == "same" else done) + "\n")
    result = redis.run("restore-redis.sh", **REDIS_ENV)
    assert result.returncode == 0 and message in result.stdout
    assert "redis-server" not in redis.calls()


def test_redis_refuses_keys_it_did_not_write(redis: Sandbox) -> None:
    redis.verified(b"REDIS0011fake")
    live = redis.state / "redis-6379" / "db0"
    live.mkdir(parents=True)
    (live / "someone:else").write_text("x\n")
    result = redis.run("restore-redis.sh", **REDIS_ENV)
    assert result.returncode == 1 and "holds keys that no restore wrote" in result.stderr
    assert "redis-server" not in redis.calls()


# --- restore-qdrant.sh -------------------------------------------------------------------------

# curl against a fake Qdrant: collections are files in $STATE/collections, aliases in $STATE/aliases.
# It answers the endpoints of Qdrant's published API reference (api.qdrant.tech, snapshots and
# aliases): POST /collections/{name}/snapshots/upload (multipart `snapshot`, `priority`, `checksum`,
# `wait`), GET /collections/{name}/exists, GET /aliases, POST /collections/aliases, with the
# `api-key` header. No Qdrant server installs here, so this path is not proven against a real one.
CURL_QDRANT = r"""
printf 'curl %s\n' "$*" >>"$LOG"
cat >"$STATE/curl-stdin"
method=GET url=""
while [ "$#" -gt 0 ]; do
    case "$1" in
        -X) method="$2"; shift ;;
        http*) url="$1" ;;
    esac
    shift
done
path="/${url#*://*/}"
mkdir -p "$STATE/collections" "$STATE/aliases"
case "$method $path" in
    "GET /readyz") echo "all shards are ready" ;;
    "GET /collections/"*/exists)
        c="${path#/collections/}"; c="${c%/exists}"
        if [ -f "$STATE/collections/$c" ]; then echo '{"result":{"exists":true},"status":"ok"}'
        else echo '{"result":{"exists":false},"status":"ok"}'; fi ;;
    "POST /collections/"*/snapshots/upload*)
        c="${path#/collections/}"; c="${c%%/*}"; touch "$STATE/collections/$c"; echo '{"result":true}' ;;
    "GET /aliases")
        printf '{"result":{"aliases":['; ls "$STATE/aliases" | sed 's/.*/{"alias_name":"&"}/' | tr '\n' ','
        printf ']}}\n' ;;
    "POST /collections/aliases") touch "$STATE/aliases/new"; echo '{"result":true}' ;;
    *) exit 22 ;;
esac
"""


def _full_snapshot(collections: dict[str, bytes], aliases: dict[str, str], missing: str | None = None) -> bytes:
    """A tar shaped like Qdrant's full-storage snapshot: one file per collection and config.json."""
    mapping = {name: f"{name}-1234-2026-01-01-00-00-00.snapshot" for name in collections}
    config = json.dumps({"collections_mapping": mapping, "collections_aliases": aliases}, indent=2).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in collections.items():
            if name == missing:
                continue
            info = tarfile.TarInfo(mapping[name])
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("config.json")
        info.size = len(config)
        tar.addfile(info, io.BytesIO(config))
    return out.getvalue()


QDRANT_ENV = {"QDRANT_URL": "http://qdrant.platform-data.svc.cluster.local:6333", "QDRANT_API_KEY": "qk-not-real"}


def test_qdrant_uploads_each_collection_with_its_checksum_then_the_aliases(box: Sandbox) -> None:
    box.stub("curl", CURL_QDRANT)
    box.verified(_full_snapshot({"docs": b"d" * 50, "memory": b"m" * 70}, {"current": "docs"}))
    result = box.run("restore-qdrant.sh", **QDRANT_ENV)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (box.state / "collections").iterdir()) == ["docs", "memory"]
    uploads = [c for c in box.calls() if "/snapshots/upload" in c]
    assert len(uploads) == 2
    assert f"checksum={hashlib.sha256(b'd' * 50).hexdigest()}" in next(u for u in uploads if "/docs/" in u)
    assert any("create_alias" in c and '"alias_name":"current"' in c for c in box.calls())
    assert all("qk-not-real" not in c for c in box.calls())
    assert "restored 2 collection(s), kept 0" in result.stdout


def test_qdrant_leaves_existing_collections_alone(box: Sandbox) -> None:
    box.stub("curl", CURL_QDRANT)
    (box.state / "collections").mkdir()
    (box.state / "collections" / "docs").touch()
    box.verified(_full_snapshot({"docs": b"d", "memory": b"m"}, {}))
    result = box.run("restore-qdrant.sh", **QDRANT_ENV)
    assert result.returncode == 0, result.stderr
    uploads = [c for c in box.calls() if "/snapshots/upload" in c]
    assert len(uploads) == 1 and "/collections/memory/" in uploads[0]
    assert "restored 1 collection(s), kept 1" in result.stdout


def test_qdrant_refuses_an_archive_that_does_not_match_its_config(box: Sandbox) -> None:
    box.stub("curl", CURL_QDRANT)
    box.verified(_full_snapshot({"docs": b"d", "memory": b"m"}, {}, missing="memory"))
    result = box.run("restore-qdrant.sh", **QDRANT_ENV)
    assert result.returncode == 1 and "maps memory to memory-1234" in result.stderr


def test_qdrant_refuses_something_that_is_not_a_full_snapshot(box: Sandbox) -> None:
    box.stub("curl", CURL_QDRANT)
    box.verified(b"not a tar archive at all" * 40)
    result = box.run("restore-qdrant.sh", **QDRANT_ENV)
    assert result.returncode == 1 and "not a readable tar archive" in result.stderr
    assert not [c for c in box.calls() if "upload" in c]


def test_scripts_are_posix_sh_without_bashisms() -> None:
    # The Jobs run them with dash (postgres, redis images) and busybox ash (curl image).
    checkbashisms = shutil.which("checkbashisms")
    scripts = sorted(SCRIPTS.glob("restore-*.sh"))
    assert len(scripts) == 4
    for script in scripts:
        assert script.read_text().startswith("#!/bin/sh\n"), script.name
        if checkbashisms:
            result = subprocess.run([checkbashisms, str(script)], capture_output=True, text=True, check=False)
            assert result.returncode == 0, result.stderr
        dash = shutil.which("dash")
        if dash:
            assert subprocess.run([dash, "-n", str(script)], check=False).returncode == 0, script.name
