"""The real llama-server and LiteLLM proxy for tests/real: where they are, waiting for their
background build, and starting them as processes on 127.0.0.1.

`make test` starts the llama-server build (scripts/build-llama-server.sh) and the LiteLLM install
(scripts/litellm-venv.sh) in the background (scripts/background.sh) before lint and the fast tests.
A test that needs one waits here, bounded, for the job to finish; a job that failed, or never
started, FAILS the test with its log and the command that builds it. Nothing is ever skipped.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest
import requests

from tests.local import as_caller, as_root
from tests.tool_versions import require

ROOT = Path(__file__).resolve().parent.parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gpu-platform"
JOBS = CACHE / "jobs"
# A cold llama-server build on a busy 2-core machine takes many minutes; the wait is bounded.
TOOL_WAIT_S = float(os.environ.get("GPU_PLATFORM_TOOL_WAIT_S", "2700"))


def _script_path(script: str, what: str = "--path") -> Path:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / script), what], capture_output=True, text=True, timeout=30, check=True
    )
    return Path(out.stdout.strip())


def _wait_for_job(name: str, ready: Path, make_target: str) -> None:
    fix = f"`make {make_target}` (log of the background run: {JOBS / f'{name}.log'})"
    deadline = time.monotonic() + TOOL_WAIT_S
    while not ready.exists():
        rc_file, pid_file = JOBS / f"{name}.rc", JOBS / f"{name}.pid"
        if rc_file.exists() and rc_file.read_text().strip() != "0":
            log = (JOBS / f"{name}.log").read_text(errors="replace")[-3000:]
            pytest.fail(
                f"{name}: the background build failed (exit {rc_file.read_text().strip()}); fix and run {fix}:\n{log}"
            )
        running = False
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().strip()), 0)
                running = True
            except (ProcessLookupError, ValueError):
                running = False
        if not running and not ready.exists():
            if rc_file.exists():  # finished with 0 but left nothing: a broken script
                pytest.fail(f"{name}: the build finished but {ready} is missing; run {fix}")
            pytest.fail(f"{name}: {ready} is missing and no build is running; run {fix}")
        if time.monotonic() > deadline:
            pytest.fail(f"{name}: still building after {TOOL_WAIT_S:g}s; see {fix}")
        time.sleep(5)


def llama_server_binary() -> Path:
    binary = _script_path("build-llama-server.sh")
    _wait_for_job("llama-server", binary, "llama-server")
    return binary


def litellm_python() -> Path:
    python = _script_path("litellm-venv.sh")
    _wait_for_job("litellm", _script_path("litellm-venv.sh", "--stamp"), "litellm")
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_only_root(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    scratch: Path,
    config_dir: Path,
    config_at: str = "/mnt",
    keep: Sequence[Path] = (),
) -> list[str]:
    """`argv` with `env` as a container with `readOnlyRootFilesystem` runs it: in a private mount
    namespace whose root is read-only, `scratch` the one writable /tmp (the emptyDir) and `config_dir`
    read-only at `config_at` (the ConfigMap). `keep` are folders the program itself lives in (the
    image's files): one under /tmp (a cache dir there) stays visible, read-only, at its path inside
    the new /tmp.

    The namespace needs root: as root it runs directly, otherwise through sudo, and the program then
    drops back to this user (setpriv). sudo resets the environment, so `env` travels in a file (not on
    the command line, where `ps` shows it) that is opened before /tmp is replaced and read from fd 3.
    unshare, mount and setpriv are util-linux's; tests/tool_versions.py says which releases do the job."""
    require("unshare")
    require("mount")
    if os.geteuid() != 0:
        require("setpriv")
    for name, value in env.items():
        if "\n" in value or "=" in name:
            raise ValueError(f"read_only_root: {name} cannot travel in the env file (a newline or '=')")
    env_file = scratch.parent / f"{scratch.name}.env"
    env_file.touch(mode=0o600)
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    under_tmp = [str(p.resolve()) for p in keep if p.resolve().is_relative_to("/tmp")]
    script = (
        'set -e; envf=$1; cfg=$2; scratch=$3; at=$4; n=$5; shift 5; exec 3<"$envf"; '
        'mount --bind "$cfg" "$at"; mount -o remount,bind,ro "$at"; '
        'while [ "$n" -gt 0 ]; do inner="$scratch${1#/tmp}"; mkdir -p "$inner"; mount --bind "$1" "$inner"; '
        'mount -o remount,bind,ro "$inner"; shift; n=$((n - 1)); done; '
        'mount --rbind "$scratch" /tmp; mount -o remount,bind,ro /; cd /; exec "$@"'
    )
    # `cd /`: the caller's working directory may be under the /tmp that was just replaced (a CI clone
    # in /tmp); LiteLLM's workers are spawned with multiprocessing, which chdirs to the parent's cwd by
    # path and dies when it is gone. The pod's own working directory is read-only as well.
    # After the mounts, as the user again: an empty environment, then `env`'s lines exported.
    load = 'while IFS= read -r line <&3; do export "$line"; done; exec 3<&-; exec "$@"'
    return [
        *as_root("the router's read-only root (a mount namespace)"),
        *("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"),
        *(str(env_file), str(config_dir), str(scratch), config_at, str(len(under_tmp)), *under_tmp),
        *as_caller(),
        *("env", "-i", "sh", "-c", load, "sh", *argv),
    ]


class Process:
    """A server process with its output in a log file; `stop()` ends it and its children."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], log: Path) -> None:
        self.argv = list(argv)
        self.log = log
        self._fh = log.open("ab")
        self.proc = subprocess.Popen(
            self.argv, env=dict(env), stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True
        )

    def output(self) -> str:
        self._fh.flush()
        return self.log.read_text(errors="replace")

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        self._fh.close()

    def wait_http(self, url: str, timeout: float, ok: Callable[[requests.Response], bool]) -> requests.Response:
        """Poll `url` until `ok(response)`; fail with the process's output if it exits or time runs out."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if not self.running():
                pytest.fail(f"{self.argv[0]} exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            try:
                response = requests.get(url, timeout=5)
                if ok(response):
                    return response
                last = f"HTTP {response.status_code} {response.text[:200]}"
            except requests.RequestException as exc:
                last = type(exc).__name__
            time.sleep(0.2)
        pytest.fail(f"{url} not ready after {timeout:g}s ({last}):\n{self.output()[-3000:]}")
