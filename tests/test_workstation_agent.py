"""scripts/workstation-agent.sh, the deploy and drift jobs' ssh-agent step, with the real ssh-agent and
ssh-add (OpenSSH) and a real ED25519 key; only `pulumi stack output` is a stub, which prints the key
as the stack's `adminPrivateKey` output would."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import shellcheck

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "workstation-agent.sh"

# `pulumi stack output [NAME] --stack S [--json|--show-secrets]`, as the CLI answers for a stack whose
# outputs are in $OUTPUTS (JSON, secrets shown as the CLI shows them) and whose key is in $KEY_FILE.
PULUMI_STUB = """#!/bin/sh
echo "pulumi $*" >>"$CALLS"
[ "$1 $2" = "stack output" ] || exit 64
case "$*" in
  *"--fail"*) exit 1 ;;
  "stack output --stack prod --json") cat "$OUTPUTS" ;;
  "stack output adminPrivateKey --stack prod --show-secrets") cat "$KEY_FILE" ;;
  *) echo "unexpected: $*" >&2; exit 65 ;;
esac
"""


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A runner: a `pulumi` stub on PATH, GITHUB_ENV, a fresh admin key; kills any agent a test left."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pulumi").write_text(PULUMI_STUB)
    (bin_dir / "pulumi").chmod(0o755)
    # The real ssh-agent, its answer (the pid of each agent) also noted for the tests.
    real_agent = shutil.which("ssh-agent")
    assert real_agent, "ssh-agent is missing: apt-get install openssh-client"
    (bin_dir / "ssh-agent").write_text(
        f'#!/bin/sh\nout="$({real_agent} "$@")" || exit\necho "$out" >>"$CALLS.agent"\necho "$out"\n'
    )
    (bin_dir / "ssh-agent").chmod(0o755)
    key = tmp_path / "admin"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(key)], check=True, timeout=30)
    (tmp_path / "outputs.json").write_text('{"adminPrivateKey": "[secret]", "phase": "p3-local-brain"}\n')
    (tmp_path / "github_env").write_text("")
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
        "CALLS": str(tmp_path / "calls.log"),
        "OUTPUTS": str(tmp_path / "outputs.json"),
        "KEY_FILE": str(key),
        "GITHUB_ENV": str(tmp_path / "github_env"),
        "GITHUB_ACTIONS": "true",
        "PULUMI_BACKEND_URL": "",
    }
    yield env
    for pid in _agents(env):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def _agents(env: dict[str, str]) -> list[int]:
    """The pid of every ssh-agent the script started."""
    noted = Path(env["CALLS"] + ".agent")
    return [int(n) for n in re.findall(r"SSH_AGENT_PID=(\d+);", noted.read_text())] if noted.exists() else []


def _exported(env: dict[str, str]) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in Path(env["GITHUB_ENV"]).read_text().splitlines() if "=" in line)
    return dict(pairs)


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _alive(pid: int, wait_s: float = 5.0) -> bool:
    """Whether `pid` still runs after up to `wait_s` (a killed agent exits a moment later; one that
    nothing reaps stays a zombie, which counts as gone)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        if state == "Z" or time.monotonic() > deadline:
            return state != "Z"
        time.sleep(0.05)


def test_shellcheck_is_clean_and_nothing_traces_the_key() -> None:
    subprocess.run([shellcheck(), str(SCRIPT)], check=True, timeout=60)
    text = SCRIPT.read_text()
    assert "set -euo pipefail" in text
    assert "set -x" not in text and "xtrace" not in text and "bash -x" not in text


def test_start_loads_the_key_for_later_steps_masks_it_and_stop_ends_the_agent(world: dict[str, str]) -> None:
    started = _run(world, "start", "prod")
    assert started.returncode == 0, started.stderr
    exported = _exported(world)
    assert set(exported) == {"SSH_AUTH_SOCK", "SSH_AGENT_PID"}
    pid = int(exported["SSH_AGENT_PID"])
    assert _alive(pid, wait_s=0)

    # A later step (a fresh process with the exported variables) reaches the key through the agent.
    later = {**world, **exported}
    listed = subprocess.run(["ssh-add", "-l"], env=later, capture_output=True, text=True, timeout=30, check=True)
    public = subprocess.run(
        ["ssh-keygen", "-lf", world["KEY_FILE"] + ".pub"], capture_output=True, text=True, timeout=30, check=True
    )
    fingerprint = public.stdout.split()[1]
    assert fingerprint in listed.stdout and "ED25519" in listed.stdout

    # The key: every line of it masked before anything else, and nowhere else in the output or in
    # GITHUB_ENV (which later steps and the runner's logs of the environment could show).
    body = [line for line in Path(world["KEY_FILE"]).read_text().splitlines() if not line.startswith("-----")]
    masks = [line.removeprefix("::add-mask::") for line in started.stdout.splitlines()]
    assert masks == body
    for line in body:
        assert line not in started.stderr and line not in Path(world["GITHUB_ENV"]).read_text()
    assert fingerprint in started.stderr and "for 3h" in started.stderr
    assert Path(world["CALLS"]).read_text().count("--show-secrets") == 1

    stopped = _run(later, "stop")
    assert stopped.returncode == 0 and f"stopped ssh-agent {pid}" in stopped.stderr
    assert not _alive(pid) and not Path(exported["SSH_AUTH_SOCK"]).exists()
    # Run again (a cancelled job's always() step after a stop): still fine.
    assert _run(later, "stop").returncode == 0


def test_a_stack_without_the_output_yet_gets_no_agent(world: dict[str, str]) -> None:
    Path(world["OUTPUTS"]).write_text('{"phase": "p1-fly-freeze"}\n')
    started = _run(world, "start", "prod")
    assert started.returncode == 0 and "no adminPrivateKey output yet" in started.stderr
    assert _exported(world) == {} and "--show-secrets" not in Path(world["CALLS"]).read_text()
    assert "nothing to stop" in _run(world, "stop").stderr


def test_a_key_ssh_add_refuses_fails_the_step_and_leaves_no_agent(world: dict[str, str]) -> None:
    Path(world["KEY_FILE"]).write_text("not a key\n")
    started = _run(world, "start", "prod")
    assert started.returncode == 1 and "ssh-add refused the adminPrivateKey output of stack prod" in started.stderr
    assert _exported(world) == {}
    (pid,) = _agents(world)
    assert not _alive(pid)  # the agent it started for the key is gone again


@pytest.mark.parametrize(
    ("args", "env", "said"),
    [
        (["start", "--fail"], {}, "cannot read the outputs of stack --fail"),
        (["start", "prod"], {"GITHUB_ENV": ""}, "GITHUB_ENV is not set"),
        (["start", "prod"], {"PATH": "/usr/bin:/bin"}, "pulumi is not on PATH"),
        (["start"], {}, "usage"),
        (["restart"], {}, "usage"),
    ],
)
def test_bad_use_fails_with_what_is_wrong(
    world: dict[str, str], args: list[str], env: dict[str, str], said: str
) -> None:
    result = _run({**world, **env}, *args)
    assert result.returncode == 1 and said in result.stderr
    assert _exported(world) == {}
