"""components/scripts/fetch-model.sh, run for real in a sandbox whose only `curl` is a stub.

The stub writes a prepared body where curl would write the download and logs its arguments; the
real sha256sum checks it. Nothing touches the network.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import shellcheck

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "components" / "scripts" / "fetch-model.sh"
TOOLS = ("sh", "sha256sum", "cut", "grep", "dirname", "mkdir", "rm", "mv", "cat", "printf", "echo", "true")
URL = "https://huggingface.co/org/repo/resolve/0123456789abcdef0123456789abcdef01234567/model.gguf"

CURL_STUB = """#!/bin/sh
# Stub curl: log the arguments, write $FAKE_CURL_BODY to the --output file, exit $FAKE_CURL_EXIT.
echo "curl $*" >> "$FAKE_CURL_LOG"
out=""
while [ "$#" -gt 0 ]; do
  if [ "$1" = "--output" ]; then out=$2; shift; fi
  shift
done
[ "${FAKE_CURL_EXIT:-0}" = 0 ] || exit "$FAKE_CURL_EXIT"
cat "$FAKE_CURL_BODY" > "$out"
"""

SERVER_STUB = """#!/bin/sh
echo "server $*" >> "$FAKE_CURL_LOG"
"""


Proc = subprocess.CompletedProcess[str]


class Sandbox:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir()
        for tool in TOOLS:
            real = shutil.which(tool)
            if real:
                (self.bin / tool).symlink_to(real)
        (self.bin / "curl").write_text(CURL_STUB)
        (self.bin / "curl").chmod(0o755)
        (self.bin / "llama-server").write_text(SERVER_STUB)
        (self.bin / "llama-server").chmod(0o755)
        self.models = root / "models"
        self.log = root / "calls.log"
        self.log.touch()
        self.body = root / "body.gguf"
        self.body.write_bytes(b"GGUF fake weights\n" * 100)

    @property
    def sha(self) -> str:
        return hashlib.sha256(self.body.read_bytes()).hexdigest()

    def run(self, *args: str, sha: str | None = None, curl_exit: int = 0, **env: str) -> Proc:
        environ: dict[str, str] = {
            "PATH": str(self.bin),
            "MODEL_URL": URL,
            "MODEL_SHA256": sha if sha is not None else self.sha,
            "MODEL_PATH": str(self.models / "model.gguf"),
            "FAKE_CURL_BODY": str(self.body),
            "FAKE_CURL_LOG": str(self.log),
            "FAKE_CURL_EXIT": str(curl_exit),
            **env,
        }
        return subprocess.run(
            ["sh", str(SCRIPT), *args], env=environ, capture_output=True, text=True, timeout=20, check=False
        )

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines()


@pytest.fixture
def box(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path)


def test_shellcheck_is_clean() -> None:
    subprocess.run([shellcheck(), "--shell=sh", str(SCRIPT)], check=True, timeout=60)


def test_downloads_verifies_and_keeps_the_file(box: Sandbox) -> None:
    r = box.run()
    assert r.returncode == 0, r.stderr
    assert (box.models / "model.gguf").read_bytes() == box.body.read_bytes()
    assert not (box.models / "model.gguf.partial").exists()
    (call,) = box.calls()
    assert URL in call and "--proto =https" in call and "--proto-redir =https" in call


def test_a_verified_file_is_not_downloaded_again_but_is_checked(box: Sandbox) -> None:
    assert box.run().returncode == 0
    r = box.run()
    assert r.returncode == 0 and "verifying" in r.stdout
    assert len(box.calls()) == 1  # one download in two starts


def test_a_download_with_the_wrong_checksum_fails_and_leaves_nothing(box: Sandbox) -> None:
    r = box.run(sha="0" * 64)
    assert r.returncode == 1
    assert "checksum mismatch" in r.stderr and "refusing to serve it" in r.stderr
    assert not (box.models / "model.gguf").exists()
    assert not (box.models / "model.gguf.partial").exists()


def test_a_corrupted_file_on_the_volume_is_replaced(box: Sandbox) -> None:
    box.models.mkdir()
    (box.models / "model.gguf").write_bytes(b"truncated")
    r = box.run()
    assert r.returncode == 0, r.stderr
    assert "downloading again" in r.stderr
    assert (box.models / "model.gguf").read_bytes() == box.body.read_bytes()


def test_a_failed_download_fails_the_start(box: Sandbox) -> None:
    r = box.run(curl_exit=22)
    assert r.returncode == 3 and "download of" in r.stderr
    assert not (box.models / "model.gguf").exists()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MODEL_URL": "http://example.com/model.gguf"}, "must be https"),
        ({"MODEL_SHA256": "ABC"}, "not 64 lowercase hex"),
    ],
)
def test_bad_input_is_refused_before_any_download(box: Sandbox, env: dict[str, str], message: str) -> None:
    r = box.run(sha=env.get("MODEL_SHA256"), MODEL_URL=env.get("MODEL_URL", URL))
    assert r.returncode == 2 and message in r.stderr
    assert box.calls() == []


def test_with_a_command_after_the_separator_it_verifies_then_execs_it(box: Sandbox) -> None:
    r = box.run("--", "llama-server", "--port", "8080")
    assert r.returncode == 0, r.stderr
    assert box.calls()[-1] == "server --port 8080"


def test_the_command_never_runs_when_the_checksum_fails(box: Sandbox) -> None:
    r = box.run("--", "llama-server", "--port", "8080", sha="f" * 64)
    assert r.returncode == 1
    assert not any(c.startswith("server") for c in box.calls())


def test_a_token_is_sent_only_as_a_header_and_never_printed(box: Sandbox) -> None:
    r = box.run(HF_TOKEN="hf_secret_value")
    assert r.returncode == 0
    assert "hf_secret_value" not in r.stdout + r.stderr
    assert "Authorization: Bearer hf_secret_value" in box.calls()[0]
