"""The scripts that provide the real llama-server and LiteLLM proxy for tests/real: shellcheck,
their pins against components/catalog/versions.py, and the background-job protocol the tests wait on."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from components.catalog import versions
from tests.conftest import shellcheck
from tests.real import tools

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted((ROOT / "scripts").glob("*.sh"))


def test_the_scripts_are_shellcheck_clean() -> None:
    subprocess.run([shellcheck(), "--severity=style", *map(str, SCRIPTS)], check=True, timeout=60)


def _path(script: str, cache: Path) -> str:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / script), "--path"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return out.stdout.strip()


def test_the_tested_llama_server_is_the_build_the_image_runs(tmp_path: Path) -> None:
    source = versions.LLAMA_CPP_TEST_SOURCE
    assert versions.LLAMA_CPP_SERVER_IMAGE.rsplit(":", 1)[1].split("@")[0] == f"server-cuda12-{source['build']}"
    version = source["sdist"].split("==")[1]
    assert (
        _path("build-llama-server.sh", tmp_path) == f"{tmp_path}/gpu-platform/llama-server/{version}/bin/llama-server"
    )


def test_the_litellm_under_test_is_the_router_image_version(tmp_path: Path) -> None:
    tag = versions.LITELLM_IMAGE.rsplit(":v", 1)[1]
    assert _path("litellm-venv.sh", tmp_path) == f"{tmp_path}/gpu-platform/litellm/{tag}/bin/python"


def _background(cache: Path, name: str, *command: str) -> Path:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    subprocess.run(["bash", str(ROOT / "scripts" / "background.sh"), name, *command], env=env, check=True, timeout=30)
    jobs = cache / "gpu-platform" / "jobs"
    deadline = time.monotonic() + 30
    while not (jobs / f"{name}.rc").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return jobs


def test_a_failed_background_build_fails_the_waiting_test_with_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = _background(tmp_path, "llama-server", "bash", "-c", "echo compiler exploded; exit 3")
    assert (jobs / "llama-server.rc").read_text().strip() == "3"
    monkeypatch.setattr(tools, "JOBS", jobs)
    with pytest.raises(pytest.fail.Exception) as failed:
        tools._wait_for_job("llama-server", tmp_path / "never", "llama-server")
    message = str(failed.value)
    assert "exit 3" in message and "compiler exploded" in message and "`make llama-server`" in message


def test_a_missing_tool_with_no_build_running_fails_with_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tools, "JOBS", tmp_path)
    with pytest.raises(pytest.fail.Exception, match="no build is running; run `make litellm`"):
        tools._wait_for_job("litellm", tmp_path / "never", "litellm")


def test_a_finished_build_is_waited_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ready = tmp_path / "binary"
    jobs = _background(tmp_path, "llama-server", "touch", str(ready))
    monkeypatch.setattr(tools, "JOBS", jobs)
    tools._wait_for_job("llama-server", ready, "llama-server")
    assert ready.exists()
