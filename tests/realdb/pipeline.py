"""The migration chain as the platform runs it, on this machine.

compose-backup.sh runs with bash on the "Compose host" (the docker shim first on PATH), its
record is verified the way BackupVerification does, and the restore Job's two containers run as
/bin/sh restore-fetch.sh then /bin/sh restore-<store>.sh, with the env datastores.py gives them.
Hooks are wrappers placed before a real tool on PATH that SIGKILL the whole run (its process group)
at a chosen step: a pod or an SSH session dying there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.catalog import versions
from components.config.schema import ComposeHost
from components.migration.backups import ObjectRecord, compose_backup_command, verify_objects
from tests.fakes.s3 import ACCESS_KEY, SECRET_KEY, FakeS3
from tests.realdb.tools import SHIM_BIN, Tools

SCRIPTS = Path(__file__).resolve().parents[2] / "components" / "scripts"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAeR38XS+/Ww7bePnY3qdCgRfdccbLQjbZTZ6zpUxS6P"
KILLED = -9
BUCKET = "compose-backups"


@dataclass
class Run:
    """One test's chain: a Compose dir, a backup dir (the Job's emptyDir), hooks."""

    tools: Tools
    s3: FakeS3
    bucket: str
    root: Path
    services: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.compose_dir = self.root / "compose"
        self.shim_dir = self.root / "shim"
        self.hooks = self.root / "hooks"
        self.backup_dir = self.root / "backup"
        for d in (self.compose_dir, self.shim_dir, self.hooks, self.backup_dir):
            d.mkdir(parents=True, exist_ok=True)
        (self.compose_dir / "compose.yaml").write_text("services: {}\n")
        for name, env in self.services.items():
            (self.shim_dir / f"{name}.env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))

    def _path(self) -> str:
        return self.tools.path(self.hooks, SHIM_BIN)

    def _env(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "TMPDIR")}
        return {**base, "PATH": self._path(), **extra}

    def _run(self, argv: list[str], env: dict[str, str], stdin: str = "", timeout: float = 120) -> Any:
        # A session of its own: a hook's `kill -KILL 0` ends the script and all it started, nothing else.
        return subprocess.run(
            argv, input=stdin, env=env, capture_output=True, text=True, timeout=timeout, check=False,
            start_new_session=True,
        )  # fmt: skip

    # --- hooks ----------------------------------------------------------------------------------

    def hook(self, tool: str, body: str) -> None:
        """Wrap `tool`: `body` runs with $REAL (the real tool) and the tool's arguments."""
        real = shutil.which(tool, path=self.tools.path(SHIM_BIN))
        assert real, f"{tool} is not on PATH"
        path = self.hooks / tool
        path.write_text(f'#!/bin/sh\nREAL="{real}"\n{body}\n')
        path.chmod(0o755)

    def kill_before(self, tool: str, match: str) -> None:
        self.hook(tool, f'case "$*" in *"{match}"*) kill -KILL 0 ;; esac\nexec "$REAL" "$@"')

    def kill_after(self, tool: str, match: str) -> None:
        self.hook(tool, f'"$REAL" "$@"\nrc=$?\ncase "$*" in *"{match}"*) kill -KILL 0 ;; esac\nexit $rc')

    def kill_during(self, tool: str, match: str, until: str, first: str = ":") -> None:
        """Run `first`, start the real tool; once the shell condition `until` holds (at most ~10s), kill the run."""
        self.hook(
            tool,
            # An asynchronous command's stdin is /dev/null unless redirected: curl reads its keys there.
            f'case "$*" in *"{match}"*)\n  {first}\n  "$REAL" "$@" <&0 &\n  i=0\n'
            f"  until {until} || [ $i -ge 500 ]; do sleep 0.02; i=$((i + 1)); done\n"
            '  kill -KILL 0 ;;\nesac\nexec "$REAL" "$@"',
        )

    def clear_hooks(self) -> None:
        for hook in self.hooks.iterdir():
            hook.unlink()

    # --- the chain ------------------------------------------------------------------------------

    def backup(self, service: str, postgres_db: str = "platform", **env: str) -> Any:
        host = ComposeHost(
            address="192.0.2.10", host_key=HOST_KEY, compose_dir=str(self.compose_dir), postgres_database=postgres_db
        )
        cmd = compose_backup_command(service, host, self.s3.location(self.bucket))
        return self._run(
            ["bash", "-c", cmd],
            self._env(DOCKER_SHIM_DIR=str(self.shim_dir), DOCKER_SHIM_AWS_IMAGE=versions.AWS_CLI_IMAGE,
                      TMPDIR=str(self.root), **env),
            stdin=f"{ACCESS_KEY}\n{SECRET_KEY}\n",
        )  # fmt: skip

    def record(self, result: Any, service: str) -> ObjectRecord:
        assert result.returncode == 0, f"compose-backup.sh {service} failed:\n{result.stderr}"
        raw = json.loads(result.stdout.strip().splitlines()[-1])
        record = ObjectRecord.from_dict(raw, service)
        # What BackupVerification does before any restore may start.
        assert verify_objects(self.s3.client(self.bucket), self.s3.location(self.bucket), [record]) == []
        return record

    def fetch(self, record: ObjectRecord) -> Any:
        env = self._env(
            BACKUP_DIR=str(self.backup_dir), BACKUP_BUCKET=self.bucket, BACKUP_OBJECT=record.key,
            BACKUP_SHA256=record.sha256, BACKUP_SIZE=str(record.size), S3_REGION="us-east-1",
            S3_ENDPOINT=self.s3.endpoint, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        )  # fmt: skip
        return self._run(["/bin/sh", str(SCRIPTS / "restore-fetch.sh")], env)

    def restore(self, store: str, **env: str) -> Any:
        full = self._env(BACKUP_DIR=str(self.backup_dir), WAIT_SECONDS="10", POLL_SECONDS="1", **env)
        return self._run(["/bin/sh", str(SCRIPTS / f"restore-{store}.sh")], full)

    def job(self, store: str, record: ObjectRecord, **env: str) -> Any:
        """The restore Job: the init container, then (if it succeeded) the restore container."""
        fetched = self.fetch(record)
        if fetched.returncode != 0:
            return fetched
        return self.restore(store, **env)
