"""Every dashboard query and every alert expression, evaluated by the real Prometheus against real series.

Prometheus (Debian's 2.42, `make tools-traffic`) scrapes, on 127.0.0.1:
- the real llama-server and LiteLLM proxy that tests/real/test_router.py starts (the prod render),
  after real requests through the router, then with llama-server stopped so that the router falls
  back to the cloud stand-in, and with that failing too so that a fallback fails;
- dcgm-exporter's series, synthesised from its default counter list at the pinned tag
  (the verified upstream files, tests/conftest.py's upstream_root) with the labels its source attaches
  (components/observability/series.py cites the files);
- Traefik's, as the cutover gate's tests emit them (tests/test_traffic_gate.py's FakeTraefik);
- kube-state-metrics' Job series, as kube-prometheus-stack's own rules read them;
- the real Pushgateway (Debian's 1.5.1, tests/real/pushgateway.py) after the real
  components/scripts/backup-report.sh pushed each store's verified backup to it, scraped the way
  its ServiceMonitor scrapes it (honorLabels, components/platform/pushgateway.py).

Each scrape carries the target labels the Prometheus Operator would give it (job = the Service's
name, namespace, service, pod), and honor_labels where our ServiceMonitors set honorLabels. The same
llama-server is scraped a second time as the workstation's (job and service `llama-workstation`, no
pod: a selector-less Service's Endpoints, components/llm/llama.py), so the local-brain dashboard must
show both servers. A panel
passes when its query returns data with the labels its legend names; an alert expression passes
when it evaluates and every series it selects exists. A misspelt metric fails (the checker's test).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from components.catalog.services import STORES
from components.config.phases import RouterLocalShareThresholds, alert_thresholds, load_phases, phase_ids
from components.observability import series
from components.observability.alerts import rule_groups
from components.observability.dashboards import CONCERNS, Panel, Query, Scope, boards, brain_board
from components.platform import pushgateway as pg
from migrate import checks
from tests.conftest import upstream_root
from tests.local import stop
from tests.real.brain import LLAMA_KEY, MASTER_KEY, Brain, ask
from tests.real.pushgateway import pushgateway
from tests.real.test_router import brain_up  # noqa: F401  (the fixture)
from tests.real.tools import free_port
from tests.test_traffic_gate import Backend, FakeTraefik, Route

pytestmark = [pytest.mark.network, pytest.mark.xdist_group("llm-real")]
PROMETHEUS_FIX = "make tools-traffic  (apt-get install prometheus)"
DCGM_COUNTERS = "metrics/dcgm-exporter-4.5.3-4.8.2-default-counters.csv"
# Two GPUs of one node; the first in use by the llama pod (the pod mapping's labels), the second idle.
GPUS = (
    {"gpu": "0", "UUID": "GPU-0a1b2c3d-0000-0000-0000-000000000000", "pci_bus_id": "00000000:07:00.0",
     "device": "nvidia0", "modelName": "NVIDIA H100 80GB HBM3", "Hostname": "gpu-node-1",
     "DCGM_FI_DRIVER_VERSION": "570.133.20", "pod": "llama-6d5f7b9c8-abcde", "namespace": "llm", "container": "llama"},
    {"gpu": "1", "UUID": "GPU-0a1b2c3d-0000-0000-0001-000000000000", "pci_bus_id": "00000000:08:00.0",
     "device": "nvidia1", "modelName": "NVIDIA H100 80GB HBM3", "Hostname": "gpu-node-1",
     "DCGM_FI_DRIVER_VERSION": "570.133.20"},
)  # fmt: skip
# kube-state-metrics' Job series, labelled as the chart's own rules read them: the migration's restore
# Job (no owner: empty owner labels, the rules' owner_kind=~"Pod|") and one Job of a backup CronJob.
KSM_JOBS = {
    "restore-postgres": {"owner_kind": "", "owner_name": ""},
    "backup-postgres-29431440": {"owner_kind": "CronJob", "owner_name": "backup-postgres"},
}
WORKSTATION = series.JOB_LLAMA_WORKSTATION
BACKUP_REPORT = Path(__file__).resolve().parents[2] / "components" / "scripts" / "backup-report.sh"
# A store whose last verified backup is 27 hours old, beside the fresh ones: BackupTooOld's threshold
# on real timestamps.
STALE_SOURCE, STALE_HOURS = "stale-store", 27


def dcgm_exposition() -> str:
    """dcgm-exporter's /metrics for GPUS: one series per field of the default counter list; `label`
    fields become labels (internal/pkg/collector/gpu_collector.go), the rest series of their type."""
    lines = []
    for row in (upstream_root() / DCGM_COUNTERS).read_text().splitlines():
        if not row.strip() or row.startswith("#"):
            continue
        field, kind, help_ = (part.strip() for part in row.split(",", 2))
        if kind == "label":
            continue
        lines += [f"# HELP {field} {help_}", f"# TYPE {field} {kind}"]
        for index, gpu in enumerate(GPUS):
            labels = ",".join(f'{k}="{v}"' for k, v in gpu.items())
            lines.append(f"{field}{{{labels}}} {40 + index}")
    return "\n".join(lines) + "\n"


@dataclass
class Observed:
    url: str  # Prometheus
    times: tuple[float, ...]  # the instants queries are evaluated at: traffic served, then fallbacks
    scope: Scope
    # The p3 checks through this Prometheus: (check, result) with the local server up, then after the fallbacks.
    served_checks: tuple[checks.CheckResult, ...]
    fallback_share: checks.CheckResult
    # What backup-report.sh pushed per source: (the data's unix second, size in bytes).
    backups: dict[str, tuple[int, int]]


def _p3_checks(b: Brain, url: str, *names: str, decode: float = 10) -> tuple[checks.CheckResult, ...]:
    """p3's checks as `migrate status --checks` runs them, with this Prometheus as the cluster's: p3's
    thresholds, but time limits a shared 2-core CPU meets (as tests/real/test_router.py), a decode
    target it meets too (llama-server counted 31.3 tokens/s per request for the tiny model here while
    other tests ran, under p3's 40, though the benchmark's p50 passed 40) and a one-minute share window."""
    (p3,) = [p for p in load_phases() if p.id == "p3-local-brain"]
    bench = p3.exit_criteria.thresholds_for("llama-bench-targets")
    assert bench is not None
    thresholds = {
        "llama-bench-targets": bench.model_copy(
            update={"ttft_p95_seconds": 10.0, "latency_p95_seconds": 30.0, "decode_tokens_per_second": decode}
        ),
        "router-local-share": RouterLocalShareThresholds(min_share=0.9, window_seconds=60, min_requests=5),
    }
    outputs = {
        "platform": {"prometheusUrl": url},
        "llamaCluster": {"url": b.llama_url, "metrics": {"namespace": "llm", "service": "llama"}},
        "llamaClusterApiKey": LLAMA_KEY,
        "router": {"url": b.router_url, "aliases": ["local", "local-private"]},
        "routerMasterKey": MASTER_KEY,
    }
    ctx = checks.CheckContext(outputs=outputs, timeout=120, poll_interval=1, thresholds=thresholds)
    return tuple(checks.run_check(name, ctx) for name in names)


class _Exporters:
    """dcgm-exporter's, Traefik's and kube-state-metrics' expositions on one local port, by path."""

    def __init__(self) -> None:
        self.traefik = FakeTraefik(
            [Route("app.example.test", Backend("platform-dashboard-3000@kubernetescrd"),
                   Backend("platform-legacy-app-443@kubernetescrd", error_every=5))]
        )  # fmt: skip
        dcgm = dcgm_exposition()
        started = time.time() - 600
        ksm = "".join(
            f'kube_job_{name}{{namespace="platform-data",job_name="{job}"}} {value}\n'
            for job in KSM_JOBS
            for name, value in (("status_start_time", started), ("status_active", 0), ("failed", 0))
        ) + "".join(
            f'kube_job_owner{{namespace="platform-data",job_name="{job}",owner_kind="{o["owner_kind"]}",'
            f'owner_name="{o["owner_name"]}",owner_is_controller="{"true" if o["owner_kind"] else ""}"}} 1\n'
            for job, o in KSM_JOBS.items()
        )
        pages = {"/dcgm": lambda: dcgm, "/traefik": self.traefik.metrics, "/ksm": lambda: ksm}

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                body = pages[self.path]().encode() if self.path in pages else b""
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def _scrape(job: str, address: str, path: str, labels: dict[str, str], token: str = "", *, honor: bool = False) -> str:
    auth = f"    authorization: {{credentials: '{token}'}}\n" if token else ""
    static = ", ".join(f"{k}: '{v}'" for k, v in labels.items())
    return (
        f"  - job_name: '{job}'\n    metrics_path: '{path}'\n    honor_labels: {str(honor).lower()}\n{auth}"
        f"    static_configs: [{{targets: ['{address}'], labels: {{{static}}}}}]\n"
    )


def _start_prometheus(config: str, tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail(f"prometheus is not installed; run: {PROMETHEUS_FIX}")
    (tmp / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n" + config
    )
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 30
    while time.monotonic() < end and proc.poll() is None:
        try:
            if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return proc, url
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    stop(proc)
    pytest.fail(f"prometheus did not start: {proc.stderr.read().decode()[-500:] if proc.stderr else ''}")


def query(url: str, promql: str, at: float | None = None) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"query": promql}
    if at is not None:
        params["time"] = at
    body = requests.get(f"{url}/api/v1/query", params=params, timeout=10).json()
    assert body.get("status") == "success", f"{promql}: {body.get('error')}"
    return list(body["data"]["result"])


def _wait(url: str, promql: str, what: str, seconds: float = 60) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if query(url, promql):
            return
        time.sleep(0.5)
    pytest.fail(f"Prometheus never saw {what} ({promql}) in {seconds:g}s")


def report_backups(url: str, tmp: Path) -> dict[str, tuple[int, int]]:
    """Run the backup Jobs' last step, components/scripts/backup-report.sh, for every store (and the
    stale one) against the Pushgateway at `url`, as the pod runs it: what it pushed, by source."""
    pushed, now = {}, int(time.time())
    for index, source in enumerate((*STORES, STALE_SOURCE)):
        started = now - (STALE_HOURS * 3600 if source == STALE_SOURCE else 600 + index)
        size = 1_000_000 * (index + 1)
        folder = tmp / f"backup-{source}"
        folder.mkdir()
        (folder / "started").write_text(f"{started}\n")
        (folder / "verified").write_text(f"{size} {'ab' * 32}\n")
        env = {"PATH": os.environ["PATH"], "PUSHGATEWAY_URL": url, "BACKUP_SOURCE": source, "BACKUP_DIR": str(folder)}
        done = subprocess.run(
            ["sh", str(BACKUP_REPORT)], check=False, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"backup-report.sh {source}: {done.stderr}"
        pushed[source] = (started, size)
    return pushed


@pytest.fixture(scope="module")
def observed(brain_up: Brain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:  # noqa: F811
    b, tmp = brain_up, tmp_path_factory.mktemp("observability")
    exporters = _Exporters()
    local = f"127.0.0.1:{exporters.port}"
    gateway = contextlib.ExitStack()
    push_url = gateway.enter_context(pushgateway(tmp))
    backups = report_backups(push_url, tmp)
    (gateway_endpoint,) = pg.monitor_spec()["endpoints"]
    llama, router = b.llama_url.split("//")[1], b.router_url.split("//")[1]
    config = "".join([
        _scrape("llama", llama, "/metrics", {"namespace": "llm", "service": "llama", "pod": "llama-0"}, LLAMA_KEY),
        _scrape(WORKSTATION, llama, "/metrics", {"namespace": "llm", "service": WORKSTATION, "endpoint": "http"},
                LLAMA_KEY),
        _scrape("router", router, "/metrics", {"namespace": "llm", "service": "router", "pod": "router-0"}, MASTER_KEY),
        _scrape("dcgm-exporter", local, "/dcgm", {"service": "dcgm-exporter"}, honor=True),
        # The operator's target labels; Traefik's own `service` wins (honorLabels, components/platform/charts.py).
        _scrape("traefik", local, "/traefik", {"namespace": "kube-system", "service": "traefik-metrics"}, honor=True),
        _scrape("kube-state-metrics", local, "/ksm", {"service": "kube-state-metrics"}, honor=True),
        # As the Pushgateway's ServiceMonitor has it scraped: its endpoint's path and honorLabels, the
        # operator's target labels (job = the Service's name); the pushed job and source win.
        _scrape(pg.SERVICE, push_url.split("//")[1], gateway_endpoint["path"],
                {"namespace": "monitoring", "service": pg.SERVICE, "pod": "pushgateway-0",
                 "endpoint": gateway_endpoint["port"], "container": pg.SERVICE},
                honor=gateway_endpoint["honorLabels"]),
    ])  # fmt: skip
    proc, url = _start_prometheus(config, tmp)
    try:
        # Every scrape above, counted from the config (a hand-written count went stale when two
        # changes each added a target, and passed only while the targets came up one by one).
        targets = config.count("- job_name:")
        _wait(url, f"count(up == 1) == {targets}", "every target up")
        _wait(url, f"count(gpu_platform_backup_verified_size_bytes) == {len(backups)}", "every pushed backup")
        for _ in range(40):
            exporters.traefik.serve("app.example.test")
        for stream in (False, True, False, True, False, True):
            assert ask(b.router_url, "local", stream=stream)[0].status_code == 200
        _wait(url, "llamacpp:tokens_predicted_total > 0", "llama-server's tokens")
        _wait(url, 'litellm_deployment_success_responses_total{model_group="local"} > 0', "the router's answers")
        time.sleep(3)
        served_checks = (
            *_p3_checks(b, url, "router-local-share", "llama-bench-targets"),
            *_p3_checks(b, url, "llama-bench-targets", decode=100_000),
        )
        served = time.time()
        # The local model gone: a fallback alias goes to the cloud, then with the cloud failing too, fails.
        fallback = next(iter(next(iter(b.config["router_settings"]["fallbacks"]))))
        b.llama.stop()
        ask(b.router_url, fallback, stream=False)
        _wait(url, "litellm_deployment_successful_fallbacks_total > 0", "a fallback")
        # LiteLLM creates a labelled counter at its first increment, which increase() cannot see (no
        # sample before it): only the answers after the cloud group's first count in a window.
        for _ in range(3):
            ask(b.router_url, fallback, stream=False)
        _wait(
            url,
            'increase(litellm_deployment_success_responses_total{model_group="cloud-fallback"}[1m]) > 0',
            "cloud answers",
        )
        # The cloud answering 503 (stopping it is not enough: LiteLLM's pooled connection still reaches it).
        b.cloud.fail_every = 1
        ask(b.router_url, fallback, stream=False)
        _wait(url, "litellm_deployment_failed_fallbacks_total > 0", "a failed fallback")
        time.sleep(2)
        (fallback_share,) = _p3_checks(b, url, "router-local-share")
        local_groups = tuple(m["model_name"] for m in b.config["model_list"] if m["model_name"] != "cloud-fallback")
        scope = Scope(local_groups=local_groups, llama_services=(series.JOB_LLAMA, WORKSTATION))
        yield Observed(url, (served, time.time()), scope, served_checks, fallback_share, backups)
    finally:
        stop(proc)
        exporters.close()
        gateway.close()


# --- the checker ----------------------------------------------------------------------------------

_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_SELECTOR = re.compile(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?")
_NOT_METRICS = {"by", "without", "on", "ignoring", "bool", "and", "or", "unless", "offset", "vector", "time", "inf"}


def selectors(promql: str) -> list[str]:
    """The vector selectors of a PromQL expression (`name{matchers}`), functions and keywords left out."""

    # Blank what could look like a name (strings, ranges, grouping label lists) keeping every
    # offset, so that a selector's matchers are read back from the original text at the same place.
    def blank(m: re.Match[str]) -> str:
        return " " * len(m.group(0))

    text = re.sub(r'"(?:[^"\\]|\\.)*"', lambda m: '"' + "_" * (len(m.group(0)) - 2) + '"', promql)
    text = _GROUPING.sub(blank, re.sub(r"\[[^\]]*\]", blank, text))
    found = []
    for match in _SELECTOR.finditer(text):
        name = match.group(1)
        following = text[match.end() :].lstrip()[:1]
        if name in _NOT_METRICS or (not match.group(2) and following == "(") or name[0] == "_":
            continue
        found.append(promql[match.start() : match.end()].replace(" ", ""))
    return sorted(set(found))


def missing_series(url: str, promql: str, times: tuple[float, ...]) -> list[str]:
    return [sel for sel in selectors(promql) if not any(query(url, f"count({sel})", at) for at in times)]


def panel_problems(url: str, panel: Panel, times: tuple[float, ...]) -> list[str]:
    problems = []
    for q in panel.queries:
        labels = re.findall(r"\{\{(\w+)\}\}", q.legend)
        answers = [query(url, q.expr, at) for at in times]
        if not any(answers):
            problems.append(f"{panel.title}: no data for {q.expr} (missing: {missing_series(url, q.expr, times)})")
        elif not any(all(r["metric"].get(label) for label in labels for r in rs) for rs in answers if rs):
            problems.append(f"{panel.title}: {q.expr} answers without the labels {labels} its legend shows")
    return problems


def _last_phase() -> tuple[Any, str]:
    return alert_thresholds(phase_ids()[-1]), phase_ids()[-1]


def test_every_dashboard_panel_returns_data(observed: Observed) -> None:
    t, _ = _last_phase()
    problems = [
        p for board in boards(CONCERNS, t, observed.scope) for panel in board.panels
        for p in panel_problems(observed.url, panel, observed.times)
    ]  # fmt: skip
    assert not problems, "\n".join(problems)


def test_every_alert_expression_evaluates_on_series_that_exist(observed: Observed) -> None:
    t, _ = _last_phase()
    problems = []
    for concern in CONCERNS:
        for group in rule_groups(concern, t, observed.scope, 2):
            for rule in group["rules"]:
                for at in observed.times:
                    query(observed.url, rule["expr"], at)  # asserts that Prometheus evaluates it
                expr = (
                    rule["expr"].removeprefix("absent(").removesuffix(")")
                    if rule["expr"].startswith("absent(")
                    else rule["expr"]
                )
                if missing := missing_series(observed.url, expr, observed.times):
                    problems.append(f"{rule['alert']}: no series for {missing}")
    assert not problems, "\n".join(problems)


def test_the_absent_alerts_are_quiet_while_every_source_reports(observed: Observed) -> None:
    t, _ = _last_phase()
    loud = [
        r["alert"] for c in CONCERNS for g in rule_groups(c, t, observed.scope, 2) for r in g["rules"]
        if "absent(" in r["expr"] and query(observed.url, r["expr"], observed.times[0])
    ]  # fmt: skip
    assert not loud


def test_a_misspelt_metric_fails_the_check(observed: Observed) -> None:
    wrong = Panel("GPU", "percent", (Query("avg by (Hostname, gpu) (DCGM_FI_DEV_GPU_UTILL)", "{{Hostname}}"),))
    assert panel_problems(observed.url, wrong, observed.times) == [
        "GPU: no data for avg by (Hostname, gpu) (DCGM_FI_DEV_GPU_UTILL) (missing: ['DCGM_FI_DEV_GPU_UTILL'])"
    ]
    # A real name with a label no exporter attaches fails on the legend's labels.
    unlabelled = Panel("GPU", "percent", (Query("avg by (gpu_name) (DCGM_FI_DEV_GPU_UTIL)", "{{gpu_name}}"),))
    assert "without the labels ['gpu_name']" in panel_problems(observed.url, unlabelled, observed.times)[0]
    assert missing_series(
        observed.url, 'sum(rate(litellm_deployment_success_responsez_total{model_group="local"}[5m]))', observed.times
    )


def test_the_p3_checks_read_the_same_series_through_prometheus(observed: Observed) -> None:
    share, bench, unreachable = observed.served_checks
    assert share.ok and "(Prometheus)" in share.detail, share.line
    # increase() extrapolates to the window's edges: 7 requests (the fixture's first, then 6) may read as
    # 8, and as 9 when a loaded machine spaces the 1 s scrapes unevenly (seen in a full `make test`).
    assert re.match(r"100% of [789] request\(s\) in the last 60s \(Prometheus\)", share.detail), share.line
    assert bench.ok and "Prometheus " in bench.detail and "tokens/s per request over 5m (target 10)" in bench.detail, (
        bench.line
    )
    assert not unreachable.ok and "Prometheus " in unreachable.detail and "(target 100000)" in unreachable.detail
    # After a fallback to the cloud and a failed one, the same window shows the share under 90%.
    assert not observed.fallback_share.ok and "target is at least 90%" in observed.fallback_share.detail


def _servers(url: str, panel: Panel, at: float) -> list[set[str]]:
    """The llama Services each of the panel's queries answers for at `at`."""
    return [{r["metric"].get("service", "") for r in query(url, q.expr, at)} for q in panel.queries]


def test_every_brain_panel_shows_the_cluster_and_the_workstation_server(observed: Observed) -> None:
    served = observed.times[0]  # the local server up, after real requests
    board = brain_board(_last_phase()[0], observed.scope)
    shown = {panel.title: _servers(observed.url, panel, served) for panel in board.panels}
    both = {series.JOB_LLAMA, WORKSTATION}
    assert shown == {panel.title: [both] * len(panel.queries) for panel in board.panels}


def test_a_misspelt_metric_or_server_fails_the_workstations_panel(observed: Observed) -> None:
    served = (observed.times[0],)

    def busy(selector: str, by: str = "service") -> Panel:
        return Panel("Busy", "short", (Query(f"max by ({by}) ({selector})", "{{" + by + "}}"),))

    misspelt = f'llamacpp:n_busy_slot_per_decode{{service="{WORKSTATION}"}}'
    assert panel_problems(observed.url, busy(misspelt), served) == [
        f"Busy: no data for max by (service) ({misspelt}) (missing: [{misspelt!r}])"
    ]
    # The right metric under a service no scrape gives fails the same way.
    nowhere = busy('llamacpp:n_busy_slots_per_decode{service="llama-ws"}')
    assert panel_problems(observed.url, nowhere, served)[0].startswith("Busy: no data")
    # A pod legend: the workstation's series have no pod (Endpoints without a pod behind them).
    by_pod = busy(f'llamacpp:n_busy_slots_per_decode{{service="{WORKSTATION}"}}', by="pod")
    assert "without the labels ['pod']" in panel_problems(observed.url, by_pod, served)[0]


# --- data safety: the scheduled backups as the Pushgateway's scrape keeps them ---------------------


def test_the_backup_series_carry_the_pushed_job_and_source_and_no_instance(observed: Observed) -> None:
    found = query(observed.url, 'gpu_platform_backup_verified_timestamp_seconds{job="gpu-platform-backup"}')
    by_source = {r["metric"]["source"]: r for r in found}
    assert sorted(by_source) == sorted(observed.backups)
    for source, (started, _) in observed.backups.items():
        labels = by_source[source]["metric"]
        # honorLabels: the push's job, not the target's; the Pushgateway's instance="" leaves none.
        assert labels["job"] == "gpu-platform-backup" and "instance" not in labels, labels
        assert labels["namespace"] == "monitoring" and labels["service"] == "pushgateway", labels
        assert float(by_source[source]["value"][1]) == started
    # The Pushgateway's own series keep the scrape's job: what PushgatewayDown reads.
    assert query(observed.url, 'up{job="pushgateway",namespace="monitoring"} == 1')


def test_the_age_panel_and_backup_too_old_read_the_pushed_data_time(observed: Observed) -> None:
    t, _ = _last_phase()
    (board,) = boards(("data",), t, observed.scope)
    age = {r["metric"]["source"]: float(r["value"][1]) for r in query(observed.url, board.panels[0].queries[0].expr)}
    size = {r["metric"]["source"]: float(r["value"][1]) for r in query(observed.url, board.panels[1].queries[0].expr)}
    now = time.time()
    for source, (started, pushed_size) in observed.backups.items():
        assert abs(age[source] - (now - started)) < 120, (source, age[source])
        assert size[source] == pushed_size
    # Only the store whose backup is 27 h old is over the phase's 26 h.
    (too_old,) = [
        r for g in rule_groups("data", t, observed.scope) for r in g["rules"]
        if r["alert"] == "BackupTooOld" and not r["expr"].startswith("absent(")
    ]  # fmt: skip
    assert [r["metric"]["source"] for r in query(observed.url, too_old["expr"])] == [STALE_SOURCE]


def test_a_misspelt_backup_metric_fails_the_check(observed: Observed) -> None:
    wrong = Panel(
        "Age",
        "s",
        (
            Query(
                'time() - max by (source) (gpu_platform_backup_verified_timestamp{job="gpu-platform-backup"})',
                "{{source}}",
            ),
        ),
    )
    assert panel_problems(observed.url, wrong, observed.times)
    assert missing_series(observed.url, 'push_time_second{job="gpu-platform-backup"}', observed.times)
