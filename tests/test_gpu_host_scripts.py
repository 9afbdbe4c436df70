"""The GPU host scripts: shellcheck, then real runs in a sandbox whose PATH holds stub binaries.

`gcp-pin-host-key.sh` gets a stub `curl` that serves metadata attributes from files and a stub
`systemctl` that records calls; `host-ready.sh` gets stub `cloud-init` and `nvidia-smi`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import shellcheck

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "components" / "scripts"
PIN = SCRIPTS / "gcp-pin-host-key.sh"
READY = SCRIPTS / "host-ready.sh"
TOOLS = (
    "bash",
    "env",
    "cat",
    "rm",
    "mkdir",
    "mktemp",
    "install",
    "chmod",
    "grep",
    "awk",
    "dirname",
    "sleep",
    "timeout",
)

PUB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHpznK6WZj+Zq+AumfFTaItVwHWiG5Wf/Zw3bQ32YOak"
PRIV = "-----BEGIN OPENSSH PRIVATE KEY-----\nZmFrZQ==\n-----END OPENSSH PRIVATE KEY-----\n"


def test_shellcheck_passes() -> None:
    out = subprocess.run(
        [shellcheck(), "--severity=style", str(PIN), str(READY)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout


class Sandbox:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir()
        self.calls = root / "calls.log"
        self.calls.touch()
        for tool in TOOLS:
            real = shutil.which(tool)
            assert real, f"{tool} is needed to run the script tests"
            (self.bin / tool).symlink_to(real)

    def stub(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text(f'#!/bin/bash\necho "{name} $*" >> "{self.calls}"\n{body}\n')
        path.chmod(0o755)

    def run(self, script: Path, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "bash"), str(script)],
            check=False,
            env={"PATH": str(self.bin), **env},
            capture_output=True,
            text=True,
            timeout=30,
        )

    def logged(self, prefix: str) -> list[str]:
        return [line for line in self.calls.read_text().splitlines() if line.startswith(prefix)]


@pytest.fixture
def box(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path)


# --- gcp-pin-host-key.sh -----------------------------------------------------------------------


def _gcp(box: Sandbox, pub: str = PUB, priv: str = PRIV) -> dict[str, str]:
    meta = box.root / "metadata"
    meta.mkdir(exist_ok=True)
    (meta / "pinned-ssh-host-key-pub").write_text(pub + "\n")
    (meta / "pinned-ssh-host-key").write_text(priv)
    ssh = box.root / "etc-ssh"
    ssh.mkdir(exist_ok=True)
    # The stub serves $METADATA_URL/<attr> from files; a missing file is curl's exit 22.
    box.stub("curl", 'f="${!#}"; f="${f##*/}"; [[ -f "' + str(meta) + '/$f" ]] || exit 22; cat "' + str(meta) + '/$f"')
    box.stub("systemctl", "exit 0")
    return {"SSH_DIR": str(ssh), "GUEST_CFG": str(box.root / "instance_configs.cfg"), "METADATA_URL": "http://md/x"}


def test_pin_installs_the_key_removes_others_and_restarts_sshd(box: Sandbox) -> None:
    env = _gcp(box)
    ssh = Path(env["SSH_DIR"])
    (ssh / "ssh_host_ed25519_key.pub").write_text(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGuestAgentMadeThisKeyXXXXXXXXXXXXXXXXXXXXXXX\n"
    )
    (ssh / "ssh_host_rsa_key").write_text("rsa")
    (ssh / "ssh_host_ecdsa_key.pub").write_text("ecdsa")
    out = box.run(PIN, **env)
    assert out.returncode == 0, out.stderr
    assert (ssh / "ssh_host_ed25519_key").read_text() == PRIV
    assert oct((ssh / "ssh_host_ed25519_key").stat().st_mode & 0o777) == "0o600"
    assert (ssh / "ssh_host_ed25519_key.pub").read_text() == PUB + "\n"
    assert not (ssh / "ssh_host_rsa_key").exists() and not (ssh / "ssh_host_ecdsa_key.pub").exists()
    assert "set_host_keys = false" in Path(env["GUEST_CFG"]).read_text()
    assert box.logged("systemctl") == ["systemctl restart ssh.service"]
    assert "ZmFrZQ" not in out.stdout + out.stderr  # never prints the private key
    # Every metadata read asked the metadata server the way GCP requires.
    assert all("Metadata-Flavor: Google" in call for call in box.logged("curl"))


def test_pin_is_a_no_op_when_the_key_is_already_pinned(box: Sandbox) -> None:
    env = _gcp(box)
    assert box.run(PIN, **env).returncode == 0
    box.calls.write_text("")
    out = box.run(PIN, **env)
    assert out.returncode == 0 and "already pinned" in out.stdout
    assert box.logged("systemctl") == []
    assert Path(env["GUEST_CFG"]).read_text().count("set_host_keys") == 1


@pytest.mark.parametrize(
    ("pub", "priv", "message"),
    [
        ("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ", PRIV, "not an ssh-ed25519 public key"),
        (PUB, "-----BEGIN RSA PRIVATE KEY-----\nx\n", "not an OpenSSH private key"),
    ],
)
def test_pin_refuses_bad_metadata(box: Sandbox, pub: str, priv: str, message: str) -> None:
    env = _gcp(box, pub=pub, priv=priv)
    out = box.run(PIN, **env)
    assert out.returncode == 1 and message in out.stderr
    assert not (Path(env["SSH_DIR"]) / "ssh_host_ed25519_key").exists()
    assert box.logged("systemctl") == []


def test_pin_fails_clearly_without_metadata(box: Sandbox) -> None:
    env = _gcp(box)
    (box.root / "metadata" / "pinned-ssh-host-key-pub").unlink()
    out = box.run(PIN, **env)
    assert out.returncode == 1 and "pinned-ssh-host-key-pub is missing" in out.stderr


# --- host-ready.sh -----------------------------------------------------------------------------


def _ready(box: Sandbox, gpus: int, cloud_init_rc: int | None = 0) -> None:
    lines = "".join(f"echo 'NVIDIA A10 {i}'; " for i in range(gpus)) or ":"
    box.stub("nvidia-smi", lines)
    if cloud_init_rc is not None:
        box.stub("cloud-init", f"exit {cloud_init_rc}")


@pytest.mark.parametrize("cloud_init_rc", [0, 2, None])
def test_ready_when_first_boot_is_done_and_gpus_are_visible(box: Sandbox, cloud_init_rc: int | None) -> None:
    _ready(box, gpus=2, cloud_init_rc=cloud_init_rc)
    out = box.run(READY, EXPECTED_GPUS="2", POLL_SECONDS="0")
    assert out.returncode == 0, out.stderr
    assert "2 GPU(s) visible" in out.stdout


def test_ready_fails_when_cloud_init_failed(box: Sandbox) -> None:
    _ready(box, gpus=1, cloud_init_rc=1)
    out = box.run(READY, EXPECTED_GPUS="1")
    assert out.returncode == 1 and "cloud-init failed (status 1)" in out.stderr


def test_ready_gives_up_after_a_bounded_wait_for_gpus(box: Sandbox) -> None:
    _ready(box, gpus=1)
    out = box.run(READY, EXPECTED_GPUS="2", GPU_POLLS="3", POLL_SECONDS="0")
    assert out.returncode == 1
    assert "expected 2 GPU(s), nvidia-smi shows 1 after 3 looks" in out.stderr
    assert len(box.logged("nvidia-smi")) == 3


def test_ready_refuses_a_bad_gpu_count(box: Sandbox) -> None:
    _ready(box, gpus=1)
    out = box.run(READY, EXPECTED_GPUS="zero")
    assert out.returncode == 1 and "EXPECTED_GPUS must be a positive number" in out.stderr
