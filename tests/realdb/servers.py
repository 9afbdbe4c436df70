"""Postgres and Redis servers started from the real binaries, on 127.0.0.1 ephemeral ports."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.local import stop
from tests.realdb.resp import Resp
from tests.realdb.tools import Tools

# initdb and postgres refuse root: as root the servers run as nobody; any other user (a GitHub runner's)
# runs them as itself.
UNPRIVILEGED = "nobody"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(what: str, server: Any, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Until `server` is ready; a server that exits or never answers is stopped and its log shown."""
    deadline = time.monotonic() + timeout
    while not server._ready():
        problem = f"exited with {proc.returncode}" if proc.poll() is not None else ""
        if not problem and time.monotonic() > deadline:
            problem = f"was not ready within {timeout}s"
        if problem:
            log = server.log.read_text(errors="replace")[-2000:]
            server.stop()
            raise AssertionError(f"{what} {problem}:\n{log}")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    stop(proc, timeout=30)


class _Server:
    """Started on entering a `with`, stopped (and its files removed) on leaving it."""

    def start(self) -> Any:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


class Postgres(_Server):
    """One cluster: local (socket) connections trusted, TCP with a password, like the postgres image."""

    def __init__(self, tools: Tools, password: str = "pg-test-password") -> None:
        self.tools = tools
        self.password = password
        self.root = Path(tempfile.mkdtemp(prefix="gp-pgdata-"))
        self.data = self.root / "data"
        self.socket_dir = self.root  # short path: unix socket names are limited to 107 bytes
        self.log = self.root / "server.log"
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._user: dict[str, Any] = {}
        if os.geteuid() == 0:
            entry = pwd.getpwnam(UNPRIVILEGED)
            self._user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.root.chmod(0o755)

    def bin(self, name: str) -> str:
        return str(self.tools.pg_bin / name)

    def start(self) -> Postgres:
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._user:
            os.chown(pwfile, self._user["user"], self._user["group"])
        subprocess.run(
            [self.bin("initdb"), "-D", str(self.data), "-U", "postgres", "--pwfile", str(pwfile), "-E", "UTF8",
             "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "--no-instructions"],
            check=True, capture_output=True, timeout=120, **self._user,
        )  # fmt: skip
        pwfile.unlink()
        self.port = free_port()
        with self.log.open("wb") as log:
            self._proc = subprocess.Popen(
                [self.bin("postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.socket_dir),
                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "max_connections=40"],
                stdout=log, stderr=subprocess.STDOUT, **self._user,
            )  # fmt: skip
        _wait("postgres", self, self._proc)
        return self

    def _ready(self) -> bool:
        ready = [self.bin("pg_isready"), "-q", "-h", str(self.socket_dir), "-p", str(self.port), "-d", "postgres"]
        return subprocess.run(ready, check=False).returncode == 0

    def stop(self) -> None:
        _stop(self._proc)
        shutil.rmtree(self.root, ignore_errors=True)

    def env(self) -> dict[str, str]:
        """libpq's variables for a local superuser session over the socket."""
        return {"PGHOST": str(self.socket_dir), "PGPORT": str(self.port), "PGUSER": "postgres"}

    def psql(self, db: str, sql: str, *, check: bool = True) -> str:
        """Run SQL; the unaligned, tuples-only output."""
        result = subprocess.run(
            [self.bin("psql"), "--no-psqlrc", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db],
            input=sql, capture_output=True, text=True, env={**os.environ, **self.env()}, timeout=300, check=False,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"psql {db} failed: {result.stderr}\n{sql[:500]}")
        return result.stdout

    def databases(self) -> set[str]:
        return set(self.psql("postgres", "select datname from pg_database where not datistemplate").split())


class Redis(_Server):
    """redis-server on 127.0.0.1 with its data in a temp dir."""

    def __init__(self, tools: Tools, password: str | None = None, **config: str) -> None:
        self.tools = tools
        self.password = password
        self.root = Path(tempfile.mkdtemp(prefix="gp-redis-"))
        self.log = self.root / "server.log"
        self.port = 0
        self.config = config
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Redis:
        self.port = free_port()
        lines = [f"port {self.port}", "bind 127.0.0.1", f"dir {self.root}", 'save ""', "appendonly no",
                 f"logfile {self.log}"]  # fmt: skip
        if self.password:
            quoted = self.password.replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'requirepass "{quoted}"')
        lines += [f"{k.replace('_', '-')} {v}" for k, v in self.config.items()]
        self._proc = subprocess.Popen(
            [str(self.tools.redis_bin / "redis-server"), "-"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL
        )
        assert self._proc.stdin is not None
        self._proc.stdin.write("\n".join(lines).encode() + b"\n")
        self._proc.stdin.close()
        self.log.touch()
        _wait("redis-server", self, self._proc)
        return self

    def _ready(self) -> bool:
        try:
            with Resp(self.port, self.password) as r:
                return bool(r.call("PING") == b"PONG")
        except OSError:
            return False

    def client(self) -> Any:
        return Resp(self.port, self.password)

    def stop(self) -> None:
        _stop(self._proc)
        shutil.rmtree(self.root, ignore_errors=True)
