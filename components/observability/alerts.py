"""Alert rules for the failure modes the source plans name, one PrometheusRule group per concern.

Every threshold comes from the phase files (`alert_thresholds`, components/config/phases.py), and
every source has an absent() rule, so that a renamed metric fires an alert instead of silencing
the others. tests/fixtures/promtool/observability.test.yaml (and backups.test.yaml for the
backups' age, which spans days) induces and clears each one.
"""

from __future__ import annotations

from typing import Any

from components.catalog.services import STORES
from components.config.phases import AlertThresholds, range_seconds
from components.observability import series as s
from components.observability.dashboards import Concern, Scope
from components.platform.charts import MONITORING_NAMESPACE


def _rule(alert: str, expr: str, for_: str, severity: str, summary: str) -> dict[str, Any]:
    return {
        "alert": alert,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity},
        "annotations": {"summary": summary},
    }


def _absent(alert: str, selector: str, t: AlertThresholds, what: str) -> dict[str, Any]:
    return _rule(
        alert,
        f"absent({selector})",
        t.settings.absent_for,
        "warning",
        f"No {what} series in Prometheus: the exporter is down, unscraped or its metric was renamed",
    )


def gpu_rules(t: AlertThresholds, expected_gpus: int) -> list[dict[str, Any]]:
    return [
        _rule(
            "GpuMissing",
            f"count({s.DCGM_GPU_UTIL}) < {expected_gpus}",
            "5m",
            "critical",
            f"Fewer GPUs report to dcgm-exporter than the {expected_gpus} the stack's GPU nodes have",
        ),
        _rule(
            "GpuXidError",
            f"max by (Hostname, gpu, UUID) ({s.DCGM_XID}) > 0",
            "0m",
            "critical",
            "GPU {{ $labels.gpu }} on {{ $labels.Hostname }} reported XID error {{ $value }}",
        ),
        _rule(
            "GpuTooHot",
            f"max by (Hostname, gpu) ({s.DCGM_TEMP}) > {t.settings.max_gpu_temperature_celsius:g}",
            t.settings.sustained,
            "warning",
            f"GPU {{{{ $labels.gpu }}}} on {{{{ $labels.Hostname }}}} is above "
            f"{t.settings.max_gpu_temperature_celsius:g} C",
        ),
        _absent("DcgmExporterAbsent", s.DCGM_GPU_UTIL, t, "dcgm-exporter"),
    ]


def brain_rules(t: AlertThresholds, scope: Scope) -> list[dict[str, Any]]:
    m = f'namespace="{scope.llm_namespace}"'
    w = t.settings.rate_window
    decode = s.decode_rate_expr(m, w)
    # The job (the Service's name) of each scraped server: the cluster's, and the workstation's.
    jobs = "|".join(scope.llama_services)
    return [
        _rule(
            "LlamaServerDown",
            f'up{{job=~"{jobs}",{m}}} == 0',
            "5m",
            "critical",
            "llama-server {{ $labels.service }} ({{ $labels.instance }}) does not answer Prometheus's scrape",
        ),
        # Without requests the ratio has no value and the rule stays quiet: it judges served tokens only.
        _rule(
            "LlamaDecodeRateLow",
            f"{decode} < {t.decode_tokens_per_second:g}",
            t.settings.sustained,
            "warning",
            f"Decode speed per request of {{{{ $labels.service }}}} is under the phase's "
            f"{t.decode_tokens_per_second:g} tokens/s target",
        ),
        # One absent() per server, so that one server's series cannot hide the other's disappearance.
        *(
            _absent(
                "LlamaMetricsAbsent",
                f'{s.LLAMA_TOKENS_PREDICTED}{{{m},service="{service}"}}',
                t,
                f"llama-server ({service})",
            )
            for service in scope.llama_services
        ),
    ]


def router_rules(t: AlertThresholds, scope: Scope) -> list[dict[str, Any]]:
    w = t.settings.rate_window
    return [
        _rule(
            "RouterDown",
            f'up{{job="{s.JOB_ROUTER}",namespace="{scope.llm_namespace}"}} == 0',
            "5m",
            "critical",
            "Router pod {{ $labels.pod }} does not answer Prometheus's scrape",
        ),
        _rule(
            "RouterLocalShareLow",
            f"{s.local_share_expr(scope.local_groups, w)} < {t.min_local_share:g}",
            t.settings.sustained,
            "warning",
            f"Under {t.min_local_share:.0%} of the router's requests were served locally",
        ),
        _rule(
            "RouterFallbackFailing",
            f"sum(increase({s.LITELLM_FALLBACK_FAILED}[{w}])) > 0",
            "0m",
            "critical",
            "Requests whose local call failed also failed on the cloud fallback",
        ),
        _absent("RouterMetricsAbsent", s.LITELLM_SUCCESS, t, "LiteLLM router"),
    ]


def cutover_rules(t: AlertThresholds, scope: Scope) -> list[dict[str, Any]]:
    svc = f'service=~"{scope.platform_namespace}-.+@kubernetescrd"'
    w = t.settings.rate_window
    errors = (
        f'sum by (service) (rate({s.TRAEFIK_REQUESTS}{{{svc},code=~"5.."}}[{w}])) / '
        f"sum by (service) (rate({s.TRAEFIK_REQUESTS}{{{svc}}}[{w}]))"
    )
    p95 = f"histogram_quantile(0.95, sum by (le, service) (rate({s.TRAEFIK_DURATION_BUCKET}{{{svc}}}[{w}])))"
    return [
        _rule(
            "RouteErrorsHigh",
            f"{errors} > {t.routes.max_error_ratio:g}",
            t.settings.sustained,
            "warning",
            f"{{{{ $labels.service }}}} answers 5xx to more than {t.routes.max_error_ratio:.1%} of requests",
        ),
        _rule(
            "RouteLatencyHigh",
            f"{p95} > {t.routes.max_p95_seconds:g}",
            t.settings.sustained,
            "warning",
            f"p95 latency of {{{{ $labels.service }}}} is above {t.routes.max_p95_seconds:g}s",
        ),
        _absent("TraefikMetricsAbsent", f"{s.TRAEFIK_REQUESTS}{{{svc}}}", t, "Traefik route"),
    ]


def data_rules(t: AlertThresholds, scope: Scope) -> list[dict[str, Any]]:
    m = f'namespace="{scope.data_namespace}"'
    max_age = t.settings.max_backup_age
    backup = f'{s.BACKUP_VERIFIED_AT}{{job="{s.JOB_BACKUP}"}}'
    gateway = f'up{{job="{s.JOB_PUSHGATEWAY}",namespace="{MONITORING_NAMESPACE}"}}'
    too_old = f"No verified backup of {{{{ $labels.source }}}} newer than {max_age} (alerts.maxBackupAge)"
    by_cron = f'{s.KSM_JOB_OWNER}{{{m},owner_kind="CronJob"}}'
    owned = f"{s.KSM_JOB_START}{{{m}}} * on (namespace, job_name) group_left (owner_name) {by_cron}"
    newest = f"{owned} == on (namespace, owner_name) group_left () max by (namespace, owner_name) ({owned})"
    return [
        _rule("BackupTooOld", f"{s.backup_age_expr()} > {range_seconds(max_age)}", "0m", "critical", too_old),
        # A store that never reported has no age to compare: its absence, held for the same
        # maxBackupAge from when the rule (created with the CronJobs) first saw it, is the same alert.
        *(
            _rule(
                "BackupTooOld",
                f'absent({s.BACKUP_VERIFIED_AT}{{job="{s.JOB_BACKUP}",source="{store}"}})',
                max_age,
                "critical",
                too_old,
            )
            for store in STORES
        ),
        # The migration's restore Jobs: a failure stays until a person has looked (the Job is kept).
        _rule(
            "RestoreVerificationFailed",
            f"max by (job_name) ({s.KSM_JOB_FAILED}{{{m}}} > 0 unless on (namespace, job_name) {by_cron})",
            "0m",
            "critical",
            f"Restore Job {{{{ $labels.job_name }}}} in {scope.data_namespace} failed: its backup did not "
            "verify or did not load",
        ),
        # A scheduled backup's newest Job only: the CronJob keeps its failed Jobs for reading, and an
        # old failure must not keep firing once a later backup has verified.
        _rule(
            "BackupJobFailed",
            f"max by (owner_name, job_name) (({newest}) and on (namespace, job_name) ({s.KSM_JOB_FAILED}{{{m}}} > 0))",
            "0m",
            "warning",
            "The latest scheduled backup of {{ $labels.owner_name }} ({{ $labels.job_name }}) failed; the "
            f"last verified one still stands, and BackupTooOld fires if none verifies within {max_age}",
        ),
        _absent("RestoreJobMetricsAbsent", f"{s.KSM_JOB_START}{{{m}}}", t, "restore Job (kube-state-metrics)"),
        _rule(
            "PushgatewayDown",
            f"{gateway} == 0",
            "5m",
            "warning",
            "The Pushgateway {{ $labels.pod }} does not answer Prometheus's scrape: backups cannot report",
        ),
        # Quiet on a new cluster until the first backup pushes (no group yet), then loud if the groups
        # exist without the series the age is read from (renamed); and whenever the Pushgateway is
        # not scraped at all.
        _rule(
            "BackupMetricsAbsent",
            f'(absent({backup}) and on() count({s.PUSH_TIME}{{job="{s.JOB_BACKUP}"}})) or absent({gateway})',
            t.settings.absent_for,
            "warning",
            "No scheduled backup series in Prometheus: the Pushgateway is unscraped or the backups push "
            "under other metric names",
        ),
    ]


def rule_groups(concern: Concern, t: AlertThresholds, scope: Scope, expected_gpus: int = 1) -> list[dict[str, Any]]:
    """The PrometheusRule `spec.groups` of one concern."""
    rules = {
        "gpus": lambda: gpu_rules(t, expected_gpus),
        "brain": lambda: brain_rules(t, scope),
        "router": lambda: router_rules(t, scope),
        "cutover": lambda: cutover_rules(t, scope),
        "data": lambda: data_rules(t, scope),
    }[concern]()
    return [{"name": f"gpu-platform-{concern}", "rules": rules}]
