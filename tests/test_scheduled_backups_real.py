"""The scheduled backups' pod, step by step, on real software: the scripts a backup Job runs, in its order.

dump (backup-dump-<store>.sh) -> upload (backup-upload.sh) -> verify (backup-verify-<store>.sh) ->
report (backup-report.sh), each run with /bin/sh and the env components/platform/scheduled_backups.py
gives it, a step only after the one before exited 0 (init containers), against the real Postgres 18
and redis-server 8.2 (tests/realdb), moto's S3 server and the real Pushgateway. Every tool the scripts
call is wrapped to log its argv, so a key or a password on a command line is caught. Qdrant has no
server here: its steps run against a stand-in that answers the calls of Qdrant's published API the
dump makes, with a full-storage snapshot built to the layout restore-qdrant.sh reads (README).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pwd
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import requests

from components.platform.scheduled_backups import EXTENSION, PREFIX
from tests.fakes.s3 import ACCESS_KEY, SECRET_KEY, FakeS3
from tests.local import port, serve_http
from tests.real.pushgateway import pushgateway
from tests.realdb.data import postgres_sql, redis_load
from tests.realdb.pipeline import BUCKET
from tests.realdb.servers import UNPRIVILEGED, Postgres, Redis, free_port
from tests.realdb.tools import Tools

pytestmark = [pytest.mark.network, pytest.mark.xdist_group("scheduled-backups")]

SCRIPTS = Path(__file__).resolve().parent.parent / "components" / "scripts"
REDIS_PASSWORD = "redis live-password-for-the-test"
QDRANT_API_KEY = "qdrant-api-key-for-the-test"
KEYS = 120
WRAPPED = ("curl", "pg_dump", "pg_restore", "psql", "initdb", "pg_ctl", "redis-cli", "redis-server", "date", "od")
GAUGES = (
    "gpu_platform_backup_verified_timestamp_seconds",
    "gpu_platform_backup_verified_size_bytes",
    "gpu_platform_backup_duration_seconds",
)


@pytest.fixture(scope="module")
def postgres(realdb_tools: Tools) -> Iterator[Postgres]:
    with Postgres(realdb_tools) as pg:
        pg.psql("postgres", "create database platform")
        pg.psql("platform", postgres_sql(40))
        yield pg


@pytest.fixture(scope="module")
def redis(realdb_tools: Tools) -> Iterator[Redis]:
    # A replica's full sync (what redis-cli --rdb asks for) waits repl-diskless-sync-delay (5 s by
    # default) for other replicas to join; the live server keeps its default, the test need not wait.
    with Redis(realdb_tools, password=REDIS_PASSWORD, repl_diskless_sync_delay="0") as server:
        with server.client() as r:
            redis_load(r, KEYS)
        yield server


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with pushgateway(tmp_path_factory.mktemp("pushgateway")) as url:
        yield url


@pytest.fixture
def clean_gateway(gateway: str) -> str:
    # Each test starts with no group pushed (the admin API's wipe is off by default).
    for store in ("postgres", "redis", "qdrant"):
        requests.delete(f"{gateway}/metrics/job/gpu-platform-backup/source/{store}", timeout=10).raise_for_status()
    return gateway


TABLES = (
    "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace "
    "where c.relkind in ('r', 'p') and n.nspname not in ('pg_catalog', 'information_schema')"
)


@pytest.fixture
def redis_info(redis: Redis) -> str:
    with redis.client() as r:
        return str(r.call("INFO", "keyspace").decode())


@dataclass
class Step:
    name: str
    returncode: int
    output: str


class Pod:
    """One Job's pod: its emptyDirs, its steps' env, and the wrappers that log every tool's argv.

    Postgres's steps run as an unprivileged user when the tests run as root (initdb refuses root,
    as the image's postgres user would not be), so the pod's dirs are world-readable under /tmp.
    """

    def __init__(self, tools: Tools, s3: FakeS3, gateway: str, store: str, store_env: dict[str, str]) -> None:
        self.tools, self.s3, self.gateway, self.store, self.store_env = tools, s3, gateway, store, store_env
        self.root = Path(tempfile.mkdtemp(prefix="gp-bk-"))
        self.root.chmod(0o755)
        self.hooks = self.root / "hooks"
        self.argv_log = self.root / "argv.log"
        self.user: dict[str, Any] = {}
        if os.geteuid() == 0 and store == "postgres":
            entry = pwd.getpwnam(UNPRIVILEGED)
            self.user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        self.hooks.mkdir()
        # The scripts as the pod mounts them (the backup-scripts ConfigMap): a copy the unprivileged
        # user can read wherever the clone is (a clone under a 0700 `mktemp -d` is not).
        self.scripts = self.root / "scripts"
        self.scripts.mkdir()
        for script in SCRIPTS.glob("backup-*.sh"):
            shutil.copy(script, self.scripts / script.name)
            (self.scripts / script.name).chmod(0o444)
        self.argv_log.touch()
        self.argv_log.chmod(0o666)
        self.extra: dict[str, str] = {}
        self.new_pod()

    def new_pod(self) -> None:
        """A fresh pod of the same Job (a retry): new emptyDirs, the same hooks."""
        for d in ("backup", "scratch"):
            shutil.rmtree(self.root / d, ignore_errors=True)
            (self.root / d).mkdir()
            if self.user:
                os.chown(self.root / d, self.user["user"], self.user["group"])
        self.backup_dir = self.root / "backup"
        self.wrap()

    def wrap(self, extra: dict[str, str] | None = None) -> None:
        """Every tool logs its argv; `extra[tool]` runs (with $REAL and "$@") before the real one."""
        extra = extra or {}
        for tool in WRAPPED:
            real = shutil.which(tool, path=self.tools.path())
            assert real, f"{tool} is not on PATH"
            body = extra.get(tool, "")
            path = self.hooks / tool
            path.write_text(
                f'#!/bin/sh\nREAL="{real}"\nprintf "%s\\n" "{tool} $*" >>"{self.argv_log}"\n{body}\nexec "$REAL" "$@"\n'
            )
            path.chmod(0o755)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "PATH": self.tools.path(self.hooks),
            "HOME": str(self.root),
            "LANG": "C.UTF-8",
            "BACKUP_DIR": str(self.backup_dir),
            "SCRATCH_DIR": str(self.root / "scratch"),
            **extra,
        }

    def step(self, name: str, script: str, **env: str) -> Step:
        result = subprocess.run(
            ["/bin/sh", str(self.scripts / script)], env=self.env(**env), capture_output=True, text=True,
            timeout=120, check=False, start_new_session=True, **self.user,
        )  # fmt: skip
        return Step(name, result.returncode, result.stdout + result.stderr)

    def upload_env(self) -> dict[str, str]:
        return {
            "BACKUP_SOURCE": self.store, "BACKUP_EXT": EXTENSION[self.store], "BACKUP_PREFIX": PREFIX,  # type: ignore[index]
            "BACKUP_BUCKET": BUCKET, "S3_REGION": "us-east-1", "S3_ENDPOINT": self.s3.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        }  # fmt: skip

    def run(self, *, skip_dump: bool = False) -> list[Step]:
        """The pod's containers in order; it stops at the first that fails, as init containers do."""
        steps = [
            ("dump", f"backup-dump-{self.store}.sh", self.store_env),
            ("upload", "backup-upload.sh", self.upload_env()),
            ("verify", f"backup-verify-{self.store}.sh", {"TEMP_PORT": str(free_port()), **self.extra}),
            ("report", "backup-report.sh", {"PUSHGATEWAY_URL": self.gateway, "BACKUP_SOURCE": self.store}),
        ]
        done: list[Step] = []
        for name, script, env in steps[1:] if skip_dump else steps:
            done.append(self.step(name, script, **env))
            if done[-1].returncode != 0:
                break
        return done

    def argv(self) -> str:
        return self.argv_log.read_text()

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def pg_pod(realdb_tools: Tools, realdb_s3: FakeS3, postgres: Postgres, clean_gateway: str) -> Iterator[Pod]:
    # PGUSER: in the pod, libpq defaults to the image's OS user, postgres; here the test's user differs.
    env = {"PGHOST": "127.0.0.1", "PGPORT": str(postgres.port), "PGDATABASE": "platform", "PGUSER": "postgres",
           "PGPASSWORD": postgres.password}  # fmt: skip
    pod = Pod(realdb_tools, realdb_s3, clean_gateway, "postgres", env)
    yield pod
    pod.close()


@pytest.fixture
def redis_pod(realdb_tools: Tools, realdb_s3: FakeS3, redis: Redis, clean_gateway: str) -> Iterator[Pod]:
    env = {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(redis.port), "REDIS_PASSWORD": REDIS_PASSWORD}
    pod = Pod(realdb_tools, realdb_s3, clean_gateway, "redis", env)
    yield pod
    pod.close()


def _failed(steps: list[Step]) -> str:
    return "\n".join(f"--- {s.name} exited {s.returncode}\n{s.output}" for s in steps)


def _pushed(gateway: str, store: str) -> dict[str, float]:
    """The gauges the Pushgateway exposes for {job="gpu-platform-backup", source=store}."""
    text = requests.get(f"{gateway}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for name in GAUGES:
        pattern = rf'^{name}{{[^}}]*job="gpu-platform-backup"[^}}]*source="{store}"[^}}]*}} (\S+)$'
        match = re.search(pattern, text, re.MULTILINE)
        if match:
            out[name] = float(match.group(1))
    return out


def _objects(s3: FakeS3, store: str) -> dict[str, bytes]:
    client = s3.client(BUCKET)
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/{store}/").get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed}


def _secrets_not_in_argv(pod: Pod, *secrets: str) -> None:
    argv = pod.argv()
    assert argv, "the wrappers logged nothing: the scripts did not run the wrapped tools"
    for secret in (ACCESS_KEY, SECRET_KEY, *secrets):
        assert secret not in argv, f"a secret reached a command line:\n{argv}"


@pytest.mark.parametrize("store", ["postgres", "redis"])
def test_a_good_run_pushes_the_verified_size_and_data_time(store: str, request: pytest.FixtureRequest) -> None:
    pod: Pod = request.getfixturevalue(f"{'pg' if store == 'postgres' else 'redis'}_pod")
    before = set(_objects(pod.s3, store))
    t0 = int(time.time())
    steps = pod.run()
    t1 = time.time()
    assert [s.returncode for s in steps] == [0, 0, 0, 0], _failed(steps)

    new = {k: v for k, v in _objects(pod.s3, store).items() if k not in before}
    assert len(new) == 1, new.keys()
    ((key, body),) = new.items()
    assert re.fullmatch(rf"{PREFIX}/{store}/\d{{8}}T\d{{6}}Z-[0-9a-f]{{12}}\.{EXTENSION[store]}", key)  # type: ignore[index]
    sha = hashlib.sha256(body).hexdigest()
    assert (pod.backup_dir / "verified").read_text().split() == [str(len(body)), sha]
    started = int((pod.backup_dir / "started").read_text())
    assert t0 <= started <= t1

    pushed = _pushed(pod.gateway, store)
    assert pushed["gpu_platform_backup_verified_size_bytes"] == len(body)
    assert pushed["gpu_platform_backup_verified_timestamp_seconds"] == started
    assert 0 <= pushed["gpu_platform_backup_duration_seconds"] <= t1 - started + 1
    if store == "postgres":
        # The scratch restore holds every table of the live database, not merely some.
        live = request.getfixturevalue("postgres").psql("platform", TABLES).strip()
        assert f": {live} tables restored" in steps[2].output, steps[2].output
    else:
        live = str(sum(int(v) for v in re.findall(r"keys=(\d+)", request.getfixturevalue("redis_info"))))
        assert f": {live} keys restored (live: {live})" in steps[2].output, steps[2].output
    secrets = (pod.store_env.get("PGPASSWORD", ""), pod.store_env.get("REDIS_PASSWORD", ""))
    _secrets_not_in_argv(pod, *[s for s in secrets if s])


def test_an_object_altered_in_the_bucket_fails_upload_and_nothing_is_reported(redis_pod: Pod) -> None:
    altered = redis_pod.root / "altered"
    altered.write_bytes(b"REDIS0012 not the dump that was uploaded")
    altered.chmod(0o644)
    # Between the upload and the read-back, someone writes other bytes under the same key.
    redis_pod.wrap(
        {
            "curl": (
                'case "$*" in *"/readback "*)\n'
                '  for a in "$@"; do url="$a"; done\n'
                '  printf \'user = "x:y"\\n\' | "$REAL" --config - -sSf --aws-sigv4 aws:amz:us-east-1:s3 '
                f'--upload-file "{altered}" -o /dev/null "$url" ;;\nesac'
            )
        }
    )
    steps = redis_pod.run()
    assert [s.name for s in steps] == ["dump", "upload"], _failed(steps)
    assert steps[1].returncode != 0
    assert "not verified" in steps[1].output and "read back" in steps[1].output, steps[1].output
    assert not (redis_pod.backup_dir / "uploaded").exists()
    assert not (redis_pod.backup_dir / "verified").exists()
    assert _pushed(redis_pod.gateway, "redis") == {}


@pytest.mark.parametrize("store", ["postgres", "redis"])
def test_a_dump_that_does_not_restore_fails_verify_and_nothing_is_reported(
    store: str, request: pytest.FixtureRequest
) -> None:
    pod: Pod = request.getfixturevalue(f"{'pg' if store == 'postgres' else 'redis'}_pod")
    # The dump step's checks pass (RDB magic, a readable table of contents), but the data is broken:
    # 200 bytes near the end are zeroed, as a torn write or a bad disk would leave them.
    first = "pg_dump" if store == "postgres" else "redis-cli"
    corrupt = (
        'case "$*" in *--file*|*--rdb*) "$REAL" "$@" || exit $?\n'
        '  size=$(wc -c <"$BACKUP_DIR/object.part")\n'
        '  dd if=/dev/zero of="$BACKUP_DIR/object.part" bs=1 seek=$((size - 300)) count=200 conv=notrunc 2>/dev/null\n'
        "  exit 0 ;;\nesac"
    )
    pod.wrap({first: corrupt})
    steps = pod.run()
    assert [s.name for s in steps] == ["dump", "upload", "verify"], _failed(steps)
    assert [s.returncode for s in steps[:2]] == [0, 0], _failed(steps)
    assert steps[2].returncode != 0
    assert "does not restore" in steps[2].output, steps[2].output
    assert not (pod.backup_dir / "verified").exists()
    assert _pushed(pod.gateway, store) == {}


def test_a_dump_with_fewer_keys_than_the_live_server_fails_verify(redis_pod: Pod) -> None:
    steps = redis_pod.run()
    assert [s.returncode for s in steps] == [0, 0, 0, 0], _failed(steps)
    counted = int((redis_pod.backup_dir / "keys").read_text())
    assert counted >= KEYS
    # As if the live server had twice the keys just before the dump: the RDB is missing half.
    (redis_pod.backup_dir / "keys").write_text(f"{counted * 2}\n")
    again = redis_pod.step("verify", "backup-verify-redis.sh", TEMP_PORT=str(free_port()))
    assert again.returncode != 0
    assert f"restores {counted} keys; the live server had {counted * 2}" in again.output, again.output
    assert not (redis_pod.backup_dir / "verified").exists()


def test_a_retried_run_never_overwrites_an_earlier_key(redis_pod: Pod) -> None:
    first = redis_pod.run()
    assert [s.returncode for s in first] == [0, 0, 0, 0], _failed(first)
    key1 = (redis_pod.backup_dir / "uploaded").read_text().split()[0]
    body1 = _objects(redis_pod.s3, "redis")[key1]

    # The Job's retry: a new pod, within the same second; a new key, the first object intact.
    redis_pod.new_pod()
    second = redis_pod.run()
    assert [s.returncode for s in second] == [0, 0, 0, 0], _failed(second)
    key2 = (redis_pod.backup_dir / "uploaded").read_text().split()[0]
    assert key2 != key1
    assert _objects(redis_pod.s3, "redis")[key1] == body1

    # Even the same second and the same random bits: the existing key is refused, not written over.
    stamp, bits = key1.rsplit("/", 1)[1].split(".")[0].split("-")
    redis_pod.new_pod()
    redis_pod.wrap(
        {
            "date": f'case "$*" in *%Y%m%dT*) echo {stamp}; exit 0 ;; esac',
            "od": f"echo ' {' '.join(bits[i : i + 2] for i in range(0, 12, 2))}'; exit 0",
        }
    )
    third = redis_pod.run()
    assert [s.name for s in third] == ["dump", "upload"], _failed(third)
    assert "refusing to overwrite" in third[1].output, third[1].output
    assert _objects(redis_pod.s3, "redis")[key1] == body1


# --- Qdrant: the verify step on a snapshot laid out as Qdrant writes it ------------------------


def _tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _full_snapshot(collections: list[str]) -> bytes:
    mapping = {c: f"{c}-1-2026-12-06-02-17-00.snapshot" for c in collections}
    config = {"collections_mapping": mapping, "collections_aliases": {}}
    files = {"config.json": json.dumps(config, indent=2).encode()}
    files |= {f: _tar({"segments/x": c.encode()}) for c, f in mapping.items()}
    return _tar(files)


@pytest.fixture
def qdrant_pod(realdb_tools: Tools, realdb_s3: FakeS3, clean_gateway: str) -> Iterator[Pod]:
    pod = Pod(realdb_tools, realdb_s3, clean_gateway, "qdrant", {})
    yield pod
    pod.close()


class _FakeQdrant(BaseHTTPRequestHandler):
    """Qdrant's published API, the calls backup-dump-qdrant.sh makes: GET /collections, POST
    /snapshots?wait=true, GET and DELETE /snapshots/{name}; every call must carry the api-key header."""

    snapshot = b""
    collections: tuple[str, ...] = ()
    deleted: list[str] = []

    def _answer(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _authorised(self) -> bool:
        if self.headers.get("api-key") == QDRANT_API_KEY:
            return True
        self._answer(403, b'{"status":{"error":"Invalid api-key"}}')
        return False

    def do_GET(self) -> None:
        if not self._authorised():
            return
        if self.path == "/collections":
            names = ",".join(f'{{"name":"{c}"}}' for c in self.collections)
            self._answer(200, f'{{"result":{{"collections":[{names}]}},"status":"ok","time":0.0}}'.encode())
        elif self.path == "/snapshots/full-snapshot-2026-12-06-02-17-00.snapshot":
            self._answer(200, self.snapshot, "application/octet-stream")
        else:
            self._answer(404, b"{}")

    def do_POST(self) -> None:
        if self._authorised() and self.path == "/snapshots?wait=true":
            result = '{"name":"full-snapshot-2026-12-06-02-17-00.snapshot","creation_time":null,"size":1}'
            self._answer(200, f'{{"result":{result},"status":"ok","time":0.1}}'.encode())

    def do_DELETE(self) -> None:
        if self._authorised():
            type(self).deleted.append(self.path)
            self._answer(200, b'{"result":true,"status":"ok","time":0.0}')

    def log_message(self, *_: object) -> None:
        pass


def test_qdrant_a_snapshot_with_every_listed_collection_is_verified_and_reported(qdrant_pod: Pod) -> None:
    _FakeQdrant.snapshot = _full_snapshot(["docs", "memories"])
    _FakeQdrant.collections = ("docs", "memories")
    _FakeQdrant.deleted = []
    with serve_http(_FakeQdrant) as server:
        qdrant_pod.store_env = {"QDRANT_URL": f"http://127.0.0.1:{port(server)}", "QDRANT_API_KEY": QDRANT_API_KEY}
        steps = qdrant_pod.run()
    assert [s.returncode for s in steps] == [0, 0, 0, 0], _failed(steps)
    assert (qdrant_pod.backup_dir / "collections").read_text() == "docs\nmemories\n"
    assert "2 collection snapshot(s)" in steps[2].output
    # The snapshot's copy inside Qdrant is removed once it is downloaded.
    assert _FakeQdrant.deleted == ["/snapshots/full-snapshot-2026-12-06-02-17-00.snapshot?wait=true"]
    pushed = _pushed(qdrant_pod.gateway, "qdrant")
    assert pushed["gpu_platform_backup_verified_size_bytes"] == len(_FakeQdrant.snapshot)
    _secrets_not_in_argv(qdrant_pod, QDRANT_API_KEY)


def test_qdrant_a_snapshot_missing_a_listed_collection_fails_verify(qdrant_pod: Pod) -> None:
    (qdrant_pod.backup_dir / "object").write_bytes(_full_snapshot(["docs"]))
    (qdrant_pod.backup_dir / "collections").write_text("docs\nmemories\n")
    (qdrant_pod.backup_dir / "started").write_text(f"{int(time.time())}\n")
    steps = qdrant_pod.run(skip_dump=True)
    assert [s.name for s in steps] == ["upload", "verify"]
    assert steps[1].returncode != 0
    assert "maps no snapshot file to collection memories" in steps[1].output, steps[1].output
    assert _pushed(qdrant_pod.gateway, "qdrant") == {}
