"""The operators' dashboards as data (`Board`s of `Panel`s), rendered to Grafana's dashboard JSON with
grafana-foundation-sdk, Grafana Labs' typed builders (pinned in requirements.txt).

Every query uses the series of components/observability/series.py only; a fixed `[5m]` range
instead of Grafana's `$__rate_interval` keeps each query one that Prometheus itself can evaluate,
which is how tests/real/test_observability.py proves that each panel returns data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as dashboard_models

from components.catalog.services import STORES
from components.config.phases import AlertThresholds, PhaseState, range_seconds
from components.observability import series as s

Concern = Literal["gpus", "brain", "router", "cutover", "data"]
CONCERNS: tuple[Concern, ...] = ("gpus", "brain", "router", "cutover", "data")
# kube-prometheus-stack 86.3.2 values.yaml grafana.sidecar.datasources.uid: the Prometheus data source.
DATASOURCE_UID = "prometheus"
FOLDER = "gpu-platform"  # the Grafana folder every dashboard lands in
RATE = "5m"


def concerns_for(state: PhaseState) -> tuple[Concern, ...]:
    """What a phase runs, so what it can show: nothing without monitoring."""
    if not state.platform.monitoring:
        return ()
    on: dict[Concern, bool] = {
        "gpus": state.k3s.device_plugin,
        "brain": state.llama.cluster,
        "router": state.llama.router,
        "cutover": state.traffic.k3s_weight > 0,
        # The stores run: their scheduled backups report to the Pushgateway, their restore Jobs ran.
        "data": state.platform.services_stateful,
    }
    return tuple(c for c in CONCERNS if on[c])


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    queries: tuple[Query, ...]
    # A target drawn as a line: green on the good side of it, red on the other.
    threshold: float | None = None
    good_above: bool = True


@dataclass(frozen=True)
class Board:
    concern: Concern
    uid: str
    title: str
    purpose: str  # what an operator watches it for (README, runbooks)
    healthy: str  # what a healthy picture looks like, with the phase's targets (runbooks)
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Scope:
    """Where the platform's parts run, for the label matchers."""

    llm_namespace: str = "llm"  # the llama server's and router's (components/llm/llama.py K3sTarget.namespace)
    platform_namespace: str = "platform"
    data_namespace: str = "platform-data"
    local_groups: tuple[str, ...] = ("local",)
    # The llama servers Prometheus scrapes, by their Service (`job` and `service` labels): the
    # cluster's, and the workstation's where the cluster reaches it (components/stack.py).
    llama_services: tuple[str, ...] = (s.JOB_LLAMA,)


def _sum_rate(metric: str, by: str, matchers: str = "") -> str:
    return f"sum by ({by}) (rate({metric}{{{matchers}}}[{RATE}]))"


def gpu_board() -> Board:
    node = "Hostname, gpu, modelName"
    pod = 'pod!=""'
    return Board(
        "gpus",
        "gpu-platform-gpus",
        "GPUs",
        "each GPU's load, memory, power, heat and XID errors, per node and per pod using it",
        "every GPU of every GPU node has a line; the last XID error is 0 everywhere; temperatures stay "
        "below the alert's limit; the pods using GPUs are the llama server's",
        (
            Panel(
                "Utilisation per GPU",
                "percent",
                (Query(f"avg by ({node}) ({s.DCGM_GPU_UTIL})", "{{Hostname}} gpu {{gpu}}"),),
            ),
            Panel(
                "Utilisation per pod",
                "percent",
                (Query(f"avg by (namespace, pod) ({s.DCGM_GPU_UTIL}{{{pod}}})", "{{namespace}}/{{pod}}"),),
            ),
            Panel(
                "Memory used", "decmbytes", (Query(f"sum by ({node}) ({s.DCGM_FB_USED})", "{{Hostname}} gpu {{gpu}}"),)
            ),
            Panel(
                "Memory free", "decmbytes", (Query(f"sum by ({node}) ({s.DCGM_FB_FREE})", "{{Hostname}} gpu {{gpu}}"),)
            ),
            Panel(
                "Memory used per pod",
                "decmbytes",
                (Query(f"sum by (namespace, pod) ({s.DCGM_FB_USED}{{{pod}}})", "{{namespace}}/{{pod}}"),),
            ),
            Panel("Power", "watt", (Query(f"sum by ({node}) ({s.DCGM_POWER})", "{{Hostname}} gpu {{gpu}}"),)),
            Panel("Temperature", "celsius", (Query(f"max by ({node}) ({s.DCGM_TEMP})", "{{Hostname}} gpu {{gpu}}"),)),
            Panel(
                "Last XID error (0: none)",
                "none",
                (Query(f"max by ({node}) ({s.DCGM_XID})", "{{Hostname}} gpu {{gpu}}"),),
                threshold=1,
                good_above=False,
            ),
        ),
    )


def brain_board(t: AlertThresholds, scope: Scope) -> Board:
    # Per server: each llama Service (the cluster's, the workstation's) serves one model, and only
    # the cluster's series have a `pod` label, so every line is one namespace/service.
    by = "namespace, service"
    m = f'namespace="{scope.llm_namespace}"'
    per_request = s.decode_rate_expr(m, RATE, by)
    prompt = f"{_sum_rate(s.LLAMA_PROMPT_TOKENS, by, m)} / {_sum_rate(s.LLAMA_PROMPT_SECONDS, by, m)}"
    server = "{{namespace}}/{{service}}"
    return Board(
        "brain",
        "gpu-platform-local-brain",
        "Local brain",
        f"each llama-server's (cluster and workstation) decode and prompt speed against the "
        f"{t.decode_tokens_per_second:g} tokens/s target, and its queue: requests processing and deferred, busy slots",
        f"decode tokens/s per request stays above the {t.decode_tokens_per_second:g} tokens/s line while "
        "requests are served; requests deferred stays at 0 or returns to 0 within minutes; each server has its "
        "line (the workstation's only where `llama.workstationListen` is an address the K3s nodes reach)",
        (
            Panel(
                "Decode tokens/s per request",
                "short",
                (Query(per_request, server),),
                threshold=t.decode_tokens_per_second,
            ),
            Panel(
                "Decode tokens/s, all requests",
                "short",
                (Query(_sum_rate(s.LLAMA_TOKENS_PREDICTED, by, m), server),),
            ),
            Panel("Prompt tokens/s per request", "short", (Query(prompt, server),)),
            Panel(
                "Requests processing and deferred",
                "short",
                (
                    Query(f"sum by ({by}) ({s.LLAMA_REQUESTS_PROCESSING}{{{m}}})", "processing " + server),
                    Query(f"sum by ({by}) ({s.LLAMA_REQUESTS_DEFERRED}{{{m}}})", "deferred " + server),
                ),
            ),
            Panel(
                "Busy slots per decode",
                "short",
                (Query(f"max by ({by}) ({s.LLAMA_BUSY_SLOTS}{{{m}}})", server),),
            ),
        ),
    )


def router_board(t: AlertThresholds, scope: Scope) -> Board:
    return Board(
        "router",
        "gpu-platform-router",
        "Router",
        f"requests per model group, the local share against its {t.min_local_share:.0%} target, "
        "fallbacks to the cloud and why, errors, and the latency the router adds",
        f"the local share stays above the {t.min_local_share:.0%} line; fallbacks are rare and none fails; "
        "the router fails no request",
        (
            Panel(
                "Answers per model group",
                "reqps",
                (Query(f"sum by (model_group) (rate({s.LITELLM_SUCCESS}[{RATE}]))", "{{model_group}}"),),
            ),
            Panel(
                "Local share",
                "percentunit",
                (Query(s.local_share_expr(scope.local_groups, RATE), "local"),),
                threshold=t.min_local_share,
            ),
            Panel(
                "Fallbacks",
                "short",
                (
                    Query(
                        f"sum by (requested_model, fallback_model) (increase({s.LITELLM_FALLBACK_OK}[1h]))",
                        "ok {{requested_model}} -> {{fallback_model}}",
                    ),
                    Query(
                        f"sum by (requested_model, fallback_model) (increase({s.LITELLM_FALLBACK_FAILED}[1h]))",
                        "failed {{requested_model}} -> {{fallback_model}}",
                    ),
                ),
            ),
            Panel(
                "Why calls failed (the fallbacks' reasons)",
                "short",
                (
                    Query(
                        f"sum by (model_group, exception_class) (increase({s.LITELLM_FAILURE}[1h]))",
                        "{{model_group}}: {{exception_class}}",
                    ),
                ),
            ),
            Panel(
                "Requests the router failed",
                "reqps",
                (Query(f"sum by (exception_class) (rate({s.LITELLM_PROXY_FAILED}[{RATE}]))", "{{exception_class}}"),),
            ),
            Panel(
                "Latency the router adds, p95",
                "s",
                (
                    Query(
                        f"histogram_quantile(0.95, sum by (le) (rate({s.LITELLM_OVERHEAD}_bucket[{RATE}])))",
                        "p95",
                    ),
                ),
            ),
        ),
    )


def cutover_board(t: AlertThresholds, scope: Scope) -> Board:
    # Both backends of every public route: K3s's platform services and the legacy ExternalName ones,
    # each with its own `service` label (components/platform/traffic.py).
    svc = f'service=~"{scope.platform_namespace}-.+@kubernetescrd"'
    return Board(
        "cutover",
        "gpu-platform-cutover",
        "Cutover",
        f"per public route, K3s beside legacy: requests, 5xx share (limit {t.routes.max_error_ratio:.1%}) "
        f"and p95 latency (limit {t.routes.max_p95_seconds:g}s)",
        "each K3s backend's 5xx share and p95 stay under their lines and close to its legacy twin's; "
        "its share of requests follows the phase's weight",
        (
            Panel(
                "Requests per backend", "reqps", (Query(_sum_rate(s.TRAEFIK_REQUESTS, "service", svc), "{{service}}"),)
            ),
            Panel(
                "5xx share per backend",
                "percentunit",
                (
                    Query(
                        _sum_rate(s.TRAEFIK_REQUESTS, "service", svc + ',code=~"5.."')
                        + " / "
                        + _sum_rate(s.TRAEFIK_REQUESTS, "service", svc),
                        "{{service}}",
                    ),
                ),
                threshold=t.routes.max_error_ratio,
                good_above=False,
            ),
            Panel(
                "p95 latency per backend",
                "s",
                (
                    Query(
                        f"histogram_quantile(0.95, {_sum_rate(s.TRAEFIK_DURATION_BUCKET, 'le, service', svc)})",
                        "{{service}}",
                    ),
                ),
                threshold=t.routes.max_p95_seconds,
                good_above=False,
            ),
        ),
    )


def _one(title: str, unit: str, expr: str, line_per: str = "source") -> Panel:
    """A panel of one query with a line per value of the label `line_per` (a store, or a Job's `job_name`)."""
    return Panel(title, unit, (Query(expr, f"{{{{{line_per}}}}}"),))


def data_board(t: AlertThresholds, scope: Scope) -> Board:
    m = f'namespace="{scope.data_namespace}"'
    backup = f'job="{s.JOB_BACKUP}"'
    max_age = t.settings.max_backup_age
    return Board(
        "data",
        "gpu-platform-data-safety",
        "Data safety",
        f"the age of each store's newest verified backup against the {max_age} limit (alerts.maxBackupAge), "
        "its size and how long it took, when each store's backup last passed its restore check, and the "
        "backup and restore Jobs that failed",
        f"every store ({', '.join(STORES)}) has a line in the age panel (from its first scheduled backup "
        f"on), a sawtooth under the {max_age} line that drops after each backup; sizes change slowly; every "
        "restore Job ran once and no Job failed",
        (
            Panel(
                "Age of the newest verified backup",
                "s",
                (Query(s.backup_age_expr(), "{{source}}"),),
                threshold=range_seconds(max_age),
                good_above=False,
            ),
            _one(
                "Size of the newest verified backup", "bytes", f"max by (source) ({s.BACKUP_VERIFIED_SIZE}{{{backup}}})"
            ),
            _one("Backup duration, dump to verified", "s", f"max by (source) ({s.BACKUP_DURATION}{{{backup}}})"),
            _one(
                "Since each store's last passed restore check (scheduled backups)",
                "s",
                f"time() - max by (source) ({s.PUSH_TIME}{{{backup}}})",
            ),
            _one(
                "Hours since each restore or backup Job started",
                "h",
                f"(time() - max by (job_name) ({s.KSM_JOB_START}{{{m}}})) / 3600",
                "job_name",
            ),
            _one(
                "Restore and backup Jobs running", "short", f"sum by (job_name) ({s.KSM_JOB_ACTIVE}{{{m}}})", "job_name"
            ),
            Panel(
                "Restore and backup Jobs failed (a backup that did not verify)",
                "short",
                (Query(f"sum by (job_name) ({s.KSM_JOB_FAILED}{{{m}}})", "{{job_name}}"),),
                threshold=1,
                good_above=False,
            ),
        ),
    )


def boards(concerns: tuple[Concern, ...], t: AlertThresholds, scope: Scope) -> tuple[Board, ...]:
    made = {
        "gpus": gpu_board,
        "brain": lambda: brain_board(t, scope),
        "router": lambda: router_board(t, scope),
        "cutover": lambda: cutover_board(t, scope),
        "data": lambda: data_board(t, scope),
    }
    return tuple(made[c]() for c in concerns)


def _thresholds(panel: Panel) -> dashboard_builders.ThresholdsConfig:
    assert panel.threshold is not None
    below, above = ("red", "green") if panel.good_above else ("green", "red")
    return (
        dashboard_builders.ThresholdsConfig()
        .mode(dashboard_models.ThresholdsMode.ABSOLUTE)
        .steps(
            [
                dashboard_models.Threshold(value=None, color=below),
                dashboard_models.Threshold(value=panel.threshold, color=above),
            ]
        )
    )


def _panel(panel: Panel, index: int) -> timeseries.Panel:
    built = (
        timeseries.Panel()
        .title(panel.title)
        .unit(panel.unit)
        .datasource(dashboard_models.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID))
        .grid_pos(dashboard_models.GridPos(h=8, w=12, x=12 * (index % 2), y=8 * (index // 2)))
    )
    for ref, query in zip("ABCDEFGH", panel.queries, strict=False):
        built = built.with_target(prometheus.Dataquery().expr(query.expr).legend_format(query.legend).ref_id(ref))
    if panel.threshold is not None:
        built = built.thresholds(_thresholds(panel)).thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(common_models.GraphTresholdsStyleMode.LINE)
        )
    return built


def dashboard_json(board: Board) -> str:
    """The dashboard as Grafana's JSON model, keys sorted so that an unchanged board is an unchanged ConfigMap."""
    built = (
        dashboard_builders.Dashboard(board.title)
        .uid(board.uid)
        .tags(["gpu-platform", board.concern])
        .refresh("1m")
        .time("now-6h", "now")
    )
    for index, panel in enumerate(board.panels):
        built = built.with_panel(_panel(panel, index))
    return json.dumps(built.build(), cls=JSONEncoder, sort_keys=True, indent=1)
