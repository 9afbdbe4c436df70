"""components/scripts/ssh-identity.sh (run for real, HOME in a temp dir) and how the workstation
server's Docker provider uses the file it writes."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest

from components.llama import IDENTITY_SCRIPT, identity_file
from tests.conftest import shellcheck
from tests.fakes.llama_recording import brain

ROOT = Path(__file__).resolve().parent.parent
KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nbm90LWEtcmVhbC1rZXk=\n-----END OPENSSH PRIVATE KEY-----\n"


def _run(
    home: Path, *args: str, stdin: str = "", identity: str = ".ssh/pulumi-p/s-ws"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(ROOT / IDENTITY_SCRIPT), *args],
        input=stdin,
        env={"HOME": str(home), "IDENTITY_FILE": identity, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def test_shellcheck_is_clean() -> None:
    subprocess.run([shellcheck(), "--shell=sh", str(ROOT / IDENTITY_SCRIPT)], check=True, timeout=60)


def test_writes_the_key_for_the_owner_only_and_removes_it(tmp_path: Path) -> None:
    r = _run(tmp_path, "write", stdin=KEY)
    assert r.returncode == 0, r.stderr
    key = tmp_path / ".ssh" / "pulumi-p" / "s-ws"
    assert key.read_text() == KEY
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert "PRIVATE KEY" not in r.stdout + r.stderr  # the key is never echoed
    r = _run(tmp_path, "remove")
    assert r.returncode == 0 and not key.exists()


def test_refuses_what_is_not_a_key_and_leaves_no_file(tmp_path: Path) -> None:
    r = _run(tmp_path, "write", stdin="hello\n")
    assert r.returncode == 2 and "not a private key" in r.stderr
    assert not list((tmp_path / ".ssh" / "pulumi-p").iterdir())


@pytest.mark.parametrize("identity", ["/etc/passwd", "../outside", ".ssh/../../x"])
def test_refuses_paths_outside_the_home_directory(tmp_path: Path, identity: str) -> None:
    r = _run(tmp_path, "write", stdin=KEY, identity=identity)
    assert r.returncode == 2 and "relative to $HOME" in r.stderr


def test_the_provider_logs_in_with_that_file_only() -> None:
    plan = brain("prod")
    identity = identity_file("gpu-platform", "prod", "workstation")
    cmd = plan.named("llama-workstation-ssh-identity")
    assert cmd.type == "command:local:Command"
    assert cmd.inputs["create"] == f"sh {IDENTITY_SCRIPT} write"
    assert cmd.inputs["delete"] == f"sh {IDENTITY_SCRIPT} remove"
    assert cmd.inputs["environment"] == {"IDENTITY_FILE": identity}
    assert "stdin" in cmd.secret_inputs  # the key travels on standard input, as a secret
    assert cmd.inputs["triggers"][0] == identity
    provider = plan.named("llama-workstation-docker")
    opts = provider.inputs["sshOpts"]
    opts = json.loads(opts) if isinstance(opts, str) else opts
    assert f"IdentityFile=~/{identity}" in opts and "IdentitiesOnly=yes" in opts
    assert cmd.urn in provider.dependencies
