"""benchmarks/llama_bench.py against the fake streaming server on 127.0.0.1 (tests/fakes/llama_server.py)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import llama_bench as bench
from benchmarks.data_migration import Figures, report
from components.llm.router import CLOUD_GROUP, RouterSettings, render_config
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


@pytest.fixture
def router_config(tmp_path: Path) -> Path:
    """The router config the program renders (components/llm/router.py), as the ConfigMap holds it."""
    settings = RouterSettings(
        local_url="http://llama.llm.svc.cluster.local:8080",
        local_model="llama-3.1-70b-instruct-q4_k_m",
        local_aliases=("local", "local-private"),
        fallback_aliases=("local",),
        cloud_model="openai/gpt-4o-mini",
        local_timeout_seconds=30,
    )
    path = tmp_path / "config.yaml"
    path.write_text(render_config(settings))
    return path


def test_local_and_fallback_groups_come_from_the_router_config(router_config: Path) -> None:
    local, fallback = bench.router_groups(bench.load_router_config(router_config))
    assert local == {"local", "local-private"} and fallback == {CLOUD_GROUP}


def test_the_local_share_counts_what_the_router_says(router_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Every 4th answer comes from the fallback group: 75% local, under the 90% target.
    with FakeLlamaServer(api_key=KEY, router=True, cloud_every=4) as server:
        rc = bench.main(
            ["--url", server.url, "--api-key", KEY, "--requests", "8", "--clients", "2",
             "--router-config", str(router_config)]
        )  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0  # not --strict
    line = next(x for x in out.splitlines() if x.startswith("served locally"))
    assert "75%" in line and "FAIL" in line


def test_every_answer_a_fallback_is_0_percent_local(router_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The request names a local alias; only the router's header says where it was served.
    with FakeLlamaServer(api_key=KEY, router=True, cloud_every=1) as server:
        rc = bench.main(
            ["--url", server.url, "--api-key", KEY, "--requests", "4", "--model", "local",
             "--router-config", str(router_config), "--strict"]
        )  # fmt: skip
        assert {r["body"]["model"] for r in server.requests} == {"local"}
    out = capsys.readouterr().out
    assert rc == 1
    line = next(x for x in out.splitlines() if x.startswith("served locally"))
    assert " 0% " in line and "FAIL" in line


def test_an_answer_without_the_router_header_is_not_local(
    fast: FakeLlamaServer, router_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # llama-server itself (or anything but the LiteLLM proxy) names no group: nothing is counted local.
    rc = bench.main(["--url", fast.url, "--api-key", KEY, "--requests", "2", "--router-config", str(router_config)])
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("served locally"))
    assert rc == 0 and " 0% " in line


def test_a_router_config_without_groups_is_refused(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("general_settings: {}\n")
    with pytest.raises(SystemExit):
        bench.parse_args(["--url", "http://127.0.0.1:1", "--router-config", str(tmp_path / "c.yaml")])
    with pytest.raises(SystemExit):
        bench.parse_args(["--url", "http://127.0.0.1:1", "--router-config", str(tmp_path / "missing.yaml")])


def test_the_router_overhead_is_measured_against_the_direct_server(capsys: pytest.CaptureFixture[str]) -> None:
    # The "router" answers 20 ms later than the server behind it: the report shows ~20 ms added.
    with (
        FakeLlamaServer(api_key=KEY, token_interval=0.0002) as direct,
        FakeLlamaServer(api_key="router-key", router=True, token_interval=0.0002, first_token_delay=0.02) as router,
    ):
        rc = bench.main(
            ["--url", router.url, "--api-key", "router-key", "--direct-url", direct.url, "--direct-api-key", KEY,
             "--requests", "4", "--clients", "2", "--max-tokens", "10", "--overhead-target-ms", "5"]
        )  # fmt: skip
        assert len(direct.requests) == 8 and len(router.requests) == 12
    out = capsys.readouterr().out
    assert rc == 0
    line = next(x for x in out.splitlines() if x.startswith("router adds per request"))
    added_p50 = float(line.split()[4])
    assert 15 <= added_p50 <= 60 and "FAIL" in line  # over the 5 ms target given
    assert any(x.startswith("router/direct tokens/s") for x in out.splitlines())


def test_the_router_cpu_per_chunk_is_read_from_its_process_tree(capsys: pytest.CaptureFixture[str]) -> None:
    # The fake router runs in this process: its CPU over the router's parallel run, per chunk streamed.
    with (
        FakeLlamaServer(api_key=KEY, token_interval=0.0002) as direct,
        FakeLlamaServer(api_key="router-key", router=True, token_interval=0.0002) as router,
    ):
        rc = bench.main(
            ["--url", router.url, "--api-key", "router-key", "--direct-url", direct.url, "--direct-api-key", KEY,
             "--requests", "4", "--clients", "2", "--max-tokens", "10", "--router-pid", str(os.getpid())]
        )  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    line = next(x for x in out.splitlines() if x.startswith("router CPU: "))
    assert line.endswith(
        f"over 40 chunks at {line.split(' at ')[1].split()[0]} tokens/s, pid {os.getpid()} and its children)"
    )
    # CPU time comes in clock ticks (10 ms), too coarse for 40 chunks; test_process_tree_cpu_...
    # checks the reading itself.
    assert float(line.split()[2]) >= 0


def test_process_tree_cpu_counts_the_children() -> None:
    before = bench.process_tree_cpu(os.getpid())
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\ntime.sleep(30)",
        ]
    )
    try:
        deadline = time.monotonic() + 20
        while bench.process_tree_cpu(os.getpid()) - before < 0.25 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert bench.process_tree_cpu(os.getpid()) - before >= 0.25
    finally:
        child.kill()
        child.wait()
    with pytest.raises(ProcessLookupError, match="no such process"):
        bench.process_tree_cpu(2**22 + 1)


def test_router_pid_needs_the_direct_run() -> None:
    with pytest.raises(SystemExit):
        bench.parse_args(["--url", "http://127.0.0.1:1", "--router-pid", str(os.getpid())])


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


def test_the_data_window_report_gives_floor_fixed_cost_and_ratio_per_size() -> None:
    small = Figures("442800", 7.0, floor=1.2, raw=1.0, chain=2.4, steps=[("compose-backup.sh", 1.4)])
    large = Figures("4428000", 70.1, floor=20.0, raw=19.0, chain=21.0, steps=[("restore-postgres.sh", 9.5)])
    lines = report([small, large])
    assert lines[0].split() == ["rows", "dump", "MB", "floor", "s", "raw", "s", "chain", "s", "fixed", "s", "chain/raw"]
    assert lines[1].split() == ["442800", "7.0", "1.20", "1.00", "2.40", "1.20", "2.40x"]
    assert lines[2].split()[-2:] == ["1.00", "1.11x"]
    assert lines[3] == "fastest chain at 442800 rows: compose-backup.sh 1.40s"
