"""How the workstation server reaches Docker over SSH: through the operator's agent, with nothing
written on the machine that runs Pulumi, so the plan is the same wherever it is recorded; and
components/scripts/ssh-identity.sh, kept to delete the key file earlier versions wrote."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pulumi_docker as docker
import pytest

from migrate.harness import record
from migrate.plan import diff_plans
from tests.conftest import recorded, recorded_preview, shellcheck
from tests.fakes.llama_recording import PROGRAM, brain

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "components" / "scripts" / "ssh-identity.sh"


def _run(home: Path, *args: str, identity: str = ".ssh/pulumi-p/s-ws") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(SCRIPT), *args],
        env={"HOME": str(home), "IDENTITY_FILE": identity, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def test_shellcheck_is_clean() -> None:
    subprocess.run([shellcheck(), "--shell=sh", str(SCRIPT)], check=True, timeout=60)


def test_remove_deletes_the_file_an_earlier_version_wrote(tmp_path: Path) -> None:
    key = tmp_path / ".ssh" / "pulumi-p" / "s-ws"
    key.parent.mkdir(parents=True)
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    r = _run(tmp_path, "remove")
    assert r.returncode == 0, r.stderr
    assert not key.exists()
    assert _run(tmp_path, "remove").returncode == 0  # already gone: still fine


@pytest.mark.parametrize("identity", ["/etc/passwd", "../outside", ".ssh/../../x"])
def test_refuses_paths_outside_the_home_directory(tmp_path: Path, identity: str) -> None:
    r = _run(tmp_path, "remove", identity=identity)
    assert r.returncode == 2 and "relative to $HOME" in r.stderr


def test_writing_a_key_is_no_longer_possible(tmp_path: Path) -> None:
    r = _run(tmp_path, "write")
    assert r.returncode == 2 and "usage" in r.stderr
    assert not (tmp_path / ".ssh").exists()


def test_the_provider_logs_in_through_the_agent_and_nothing_is_written() -> None:
    plan = brain("prod")
    assert not [r for r in plan.resources if r.type.startswith("command:local:")]
    provider = plan.named("llama-workstation-docker")
    opts = provider.inputs["sshOpts"]
    opts = json.loads(opts) if isinstance(opts, str) else opts
    assert not [o for o in opts if o.startswith(("IdentityFile", "IdentitiesOnly"))]
    assert "BatchMode=yes" in opts and "StrictHostKeyChecking=yes" in opts


def test_the_plan_is_the_same_whatever_the_home_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fresh runner's empty home, and an operator's home where an earlier `up` left the old key
    # file and ssh has its usual files: the recorded plans must be identical.
    used = tmp_path / "used" / ".ssh"
    (used / "pulumi-gpu-platform").mkdir(parents=True)
    (used / "pulumi-gpu-platform" / "prod-workstation").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    (used / "known_hosts").write_text("")
    (tmp_path / "fresh").mkdir()
    plans = []
    for home in (tmp_path / "fresh", tmp_path / "used"):
        before = sorted(home.rglob("*"))
        monkeypatch.setenv("HOME", str(home))
        assert Path.home() == home
        plan = record("prod", phase="p3-local-brain", program=PROGRAM)
        plans.append(json.dumps([(r.type, r.name, r.inputs) for r in plan.resources], sort_keys=True, default=str))
        assert sorted(home.rglob("*")) == before  # nothing written into the home directory
    assert plans[0] == plans[1]


def test_dropping_identity_file_updates_the_docker_provider_and_replaces_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 27: prod as an earlier version deployed it (ssh got `IdentityFile` + `IdentitiesOnly`
    for the key file it wrote) against the plan now, in update mode and in a first preview.

    What the engine does with it is the provider's answer: pulumi-docker's DiffConfig is the
    Terraform bridge's, which replaces a provider (and so every resource it manages) only for a
    config property marked `ForcesProviderReplace` (pulumi/pulumi-terraform-bridge#1683), and
    pulumi-docker marks none (its provider/resources.go). So a changed `sshOpts` is an update of the
    provider, and the volume holding the weights, the image and the container stay as they are.
    """
    real = docker.Provider
    old_opts = ["-o", "IdentityFile=~/.ssh/pulumi-gpu-platform/prod-workstation", "-o", "IdentitiesOnly=yes"]

    def as_before(name: str, **kwargs: Any) -> docker.Provider:
        opts = list(kwargs.pop("ssh_opts"))
        at = opts.index("BatchMode=yes") - 1
        return real(name, ssh_opts=[*opts[:at], *old_opts, *opts[at:]], **kwargs)

    for preview in (False, True):
        # The plan now, as the other recorded-plan tests record it once per session.
        now = (recorded_preview if preview else recorded)("prod", "p3-local-brain")
        with monkeypatch.context() as m:
            m.setattr(docker, "Provider", as_before)
            before = record("prod", phase="p3-local-brain", preview=preview)
        provider = before.named("llama-workstation-docker")
        opts = provider.inputs["sshOpts"]
        assert "IdentitiesOnly=yes" in (json.loads(opts) if isinstance(opts, str) else opts)
        managed = [r.name for r in now.resources if r.provider and r.provider.startswith(provider.urn)]
        assert {"llama-workstation-models", "llama-workstation-image", "llama-workstation-container"} <= set(managed)

        changes = diff_plans(before, now).changes
        assert [(c.kind, c.name, c.changed) for c in changes] == [("update", "llama-workstation-docker", ("sshOpts",))]
