"""Every llama-server command line the program renders (dev and prod; cluster and workstation),
started for real: the server built from the llama.cpp source the image is built from, the model a
tiny GGUF fetched and verified by components/scripts/fetch-model.sh. What tests/real/serving.py
remaps to run here is listed there; every other flag is passed as rendered, so a flag llama-server
rejects fails the test that starts it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.fakes.llama_recording import brain
from tests.real import serving
from tests.real.tools import Process, llama_server_binary

pytestmark = [pytest.mark.network, pytest.mark.xdist_group("llm-real")]
KEY = "test-llama-key-0123456789"
# The metrics the ServiceMonitor scrapes that dashboards and alerts read: throughput, queue, load.
METRICS = ("llamacpp:prompt_tokens_total", "llamacpp:tokens_predicted_total", "llamacpp:requests_processing")
SERVERS = [("dev", "cluster"), ("dev", "workstation"), ("prod", "cluster"), ("prod", "workstation")]


@pytest.fixture(scope="module")
def binary() -> Path:
    return llama_server_binary()


@pytest.fixture(scope="module")
def model_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[serving.ModelHost]:
    host = serving.ModelHost(tmp_path_factory.mktemp("model-host"))
    yield host
    host.stop()


def rendered(stack: str, target: str) -> serving.Rendered:
    plan = brain(stack)
    return serving.cluster_server(plan, stack) if target == "cluster" else serving.workstation_server(plan, stack)


def _metrics(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


@pytest.mark.parametrize(("stack", "target"), SERVERS, ids=[f"{s}-{t}" for s, t in SERVERS])
def test_the_rendered_server_serves_the_verified_model(
    stack: str, target: str, binary: Path, model_host: serving.ModelHost, tmp_path: Path
) -> None:
    spec = rendered(stack, target)
    proc, url = serving.start_llama(spec, binary=binary, tmp=tmp_path, host=model_host, key=KEY)
    try:
        # The probes the Deployment declares (startup, readiness, liveness: GET /health on `http`),
        # or the workstation container's Docker healthcheck command, exactly as rendered.
        proc.wait_http(f"{url}/health", 60, lambda r: r.status_code == 200 and r.json() == {"status": "ok"})
        if target == "cluster":
            assert spec.probe_paths == ["/health"] * 3
            for path in spec.probe_paths:
                assert requests.get(url + path, timeout=5).status_code == 200
        else:
            check = spec.remapped(
                binary=binary, models=tmp_path, host=model_host, key=KEY, port=int(url.rsplit(":", 1)[1])
            ).healthcheck
            assert check[0] == "curl"
            assert subprocess.run(check, capture_output=True, timeout=20, check=False).returncode == 0
        # fetch-model.sh downloaded and verified the model before the server started.
        assert "verified" in proc.output()
        assert serving.sha256_of(tmp_path / "models" / model_host.file_name) == model_host.sha256

        # The keyed endpoints stay keyed: the API, /v1/models and the /metrics the ServiceMonitor
        # scrapes with the bearer token from the llama-api-key Secret.
        for path in ("/v1/models", "/metrics"):
            assert requests.get(url + path, timeout=5).status_code == 401
            assert requests.get(url + path, headers={"Authorization": "Bearer wrong"}, timeout=5).status_code == 401
        auth = {"Authorization": f"Bearer {KEY}"}
        models = requests.get(f"{url}/v1/models", headers=auth, timeout=5).json()
        assert [m["id"] for m in models["data"]] == [spec.served_name]
        # --no-slots: the prompts being processed are not on show, even with the key.
        assert requests.get(f"{url}/slots", headers=auth, timeout=5).status_code != 200

        answer = requests.post(
            f"{url}/v1/chat/completions",
            headers=auth,
            json={"model": spec.served_name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["usage"]["completion_tokens"] == 8

        scraped = requests.get(f"{url}/metrics", headers=auth, timeout=5)
        assert scraped.status_code == 200 and scraped.headers["Content-Type"].startswith("text/plain")
        values = _metrics(scraped.text)
        assert set(METRICS) <= set(values), sorted(values)
        assert values["llamacpp:tokens_predicted_total"] >= 8
    finally:
        proc.stop()


def test_a_flag_llama_server_rejects_fails_the_start(
    binary: Path, model_host: serving.ModelHost, tmp_path: Path
) -> None:
    # The harness above would catch a rendered flag the server does not know: it exits at once.
    spec = rendered("prod", "cluster")
    spec.argv.append("--no-such-flag")
    proc, _ = serving.start_llama(spec, binary=binary, tmp=tmp_path, host=model_host, key=KEY)
    try:
        assert proc.proc.wait(timeout=30) != 0
        assert "--no-such-flag" in proc.output()
    finally:
        proc.stop()


def test_a_model_that_does_not_verify_is_never_served(
    binary: Path, model_host: serving.ModelHost, tmp_path: Path
) -> None:
    spec = rendered("dev", "workstation")
    port_run = spec.remapped(binary=binary, models=tmp_path, host=model_host, key=KEY, port=1)
    port_run.env["MODEL_SHA256"] = "0" * 64
    proc = Process(port_run.argv, port_run.env, tmp_path / "bad.log")
    try:
        assert proc.proc.wait(timeout=60) == 1
        assert "checksum mismatch" in proc.output()
        assert not (tmp_path / model_host.file_name).exists()
    finally:
        proc.stop()
