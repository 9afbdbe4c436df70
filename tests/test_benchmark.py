"""benchmarks/llama_bench.py against the fake streaming server on 127.0.0.1 (tests/fakes/llama_server.py)."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import llama_bench as bench
from tests.fakes.llama_server import FakeLlamaServer

ROOT = Path(__file__).resolve().parent.parent
KEY = "test-key"


@pytest.fixture
def fast() -> Iterator[FakeLlamaServer]:
    with FakeLlamaServer(api_key=KEY, token_interval=0.0002) as server:
        yield server


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert bench.percentile(values, 50) == 50 and bench.percentile(values, 95) == 95
    assert math.isnan(bench.percentile([], 50))
    assert bench.percentile([math.nan, 3.0], 50) == 3.0


def test_one_streamed_request_is_timed_and_counted(fast: FakeLlamaServer) -> None:
    r = bench.stream_once(fast.url, KEY, model="local", prompt="hi", max_tokens=100, timeout=10)
    assert r.ok and r.tokens == 100 and r.model == "fake-llama"
    assert 0 < r.ttft <= r.total and r.decode_tps > 0
    (sent,) = fast.requests
    assert sent["body"]["stream"] is True and sent["body"]["max_tokens"] == 100
    assert sent["auth"] == f"Bearer {KEY}"


def test_a_base_url_ending_in_v1_is_accepted(fast: FakeLlamaServer) -> None:
    assert bench.stream_once(fast.url + "/v1", KEY, model="local", prompt="hi", max_tokens=5, timeout=10).ok


def test_the_table_passes_a_fast_local_server(fast: FakeLlamaServer, capsys: pytest.CaptureFixture[str]) -> None:
    rc = bench.main(["--url", fast.url, "--api-key", KEY, "--clients", "4", "--requests", "8", "--strict"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "time to first token" in out and "answer of 100 tokens" in out and "decode tokens/s per request" in out
    assert out.count("PASS") == 4 and "FAIL" not in out
    assert "all targets met" in out
    assert len(fast.requests) == 8


def test_a_slow_server_misses_the_decode_target() -> None:
    # 5 ms per token is 200 tokens/s; a 1000 tokens/s target must fail, and --strict exits 1.
    with FakeLlamaServer(api_key=KEY, token_interval=0.005) as slow:
        results, wall = bench.run(
            slow.url, KEY, model="local", prompt="hi", max_tokens=20, clients=2, requests=2, timeout=10
        )
    args = bench.parse_args(["--url", slow.url, "--tps-target", "1000", "--max-tokens", "20"])
    report = bench.evaluate(results, wall, args)
    rows = {name: ok for name, *_, ok in report.rows}
    assert rows["decode tokens/s per request"] is False
    assert rows["time to first token"] is True and rows["failed requests"] is True
    assert not report.passed
    tps = [r.decode_tps for r in results]
    assert all(100 < t < 260 for t in tps), tps


def test_the_local_share_counts_answers_from_the_cloud(capsys: pytest.CaptureFixture[str]) -> None:
    # Every 4th answer comes from the cloud model: 75% local, under the 90% target.
    with FakeLlamaServer(api_key=KEY, cloud_every=4) as server:
        rc = bench.main(
            ["--url", server.url, "--api-key", KEY, "--requests", "8", "--clients", "2", "--cloud-model", "gpt-4o"]
        )
    out = capsys.readouterr().out
    assert rc == 0  # not --strict
    line = next(x for x in out.splitlines() if x.startswith("served locally"))
    assert "75%" in line and "FAIL" in line


def test_failures_are_counted_and_fail_strict_runs(capsys: pytest.CaptureFixture[str]) -> None:
    with FakeLlamaServer(api_key=KEY, fail_every=2) as server:
        rc = bench.main(["--url", server.url, "--api-key", KEY, "--requests", "4", "--clients", "1", "--strict"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "error: HTTP 503" in out
    line = next(x for x in out.splitlines() if x.startswith("failed requests"))
    assert " 2 " in line and "FAIL" in line


def test_a_wrong_key_is_reported_not_raised(fast: FakeLlamaServer, capsys: pytest.CaptureFixture[str]) -> None:
    rc = bench.main(["--url", fast.url, "--api-key", "wrong", "--requests", "1"])
    out = capsys.readouterr().out
    assert rc == 0 and "HTTP 401" in out and "targets missed" in out


def test_nothing_listening_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    server = FakeLlamaServer()
    url = server.url  # a port that was free a moment ago and is closed now
    server._server.server_close()
    rc = bench.main(["--url", url, "--requests", "1", "--timeout", "2"])
    assert rc == 2
    assert "ConnectionRefusedError" in capsys.readouterr().out


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(SystemExit):
        bench.parse_args(["--url", "127.0.0.1:8080"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--url", "http://127.0.0.1:8080", "--clients", "0"])


def test_runs_as_a_script(fast: FakeLlamaServer) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "llama_bench.py"), "--url", fast.url, "--api-key", KEY,
         "--requests", "2", "--max-tokens", "10", "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "answer of 10 tokens" in proc.stdout and '"tokens": 10' in proc.stdout
