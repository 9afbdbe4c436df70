"""The series the dashboards and alerts read, named and labelled as each exporter emits them at its
pinned version. Nothing here is remembered: each name cites where it was read, and
tests/real/test_observability.py evaluates every query against the real servers' scraped series.

- dcgm-exporter 4.5.3-4.8.2 (components/catalog/versions.py): the fields of its default counter list
  (etc/default-counters.csv, the chart's exporter-metrics-config-map), each a series named after the
  field. Labels from internal/pkg/rendermetrics/render_metrics.go (gpu, UUID, pci_bus_id, device,
  modelName, Hostname) and internal/pkg/transformation/kubernetes.go (pod, namespace, container of
  the pod using the GPU; kept by the ServiceMonitor's honorLabels, components/platform/charts.py).
- llama-server (llama.cpp 0c1e57098, tools/server/server-task.cpp, `--metrics`): `llamacpp:` counters
  and gauges without labels of their own; the server is told apart by the ServiceMonitor's target
  labels (namespace, service, pod): the cluster's is `service="llama"`, the workstation's (scraped
  through a Service without a selector and its Endpoints) `service="llama-workstation"` with no
  `pod`, as the Prometheus Operator's `endpoints` role labels a target that is not a pod (operator
  v0.91.0, the chart's: pkg/prometheus/promcfg.go sets `pod` from a Pod target reference only, and
  `job` and `service` from the Service's name).
- LiteLLM v1.104.8 (litellm/integrations/prometheus.py, the `prometheus` callback): per model group.
- Traefik v3.6 (K3s's bundled Traefik): per load-balanced backend service, as the cutover gate reads them.
- the scheduled backups (components/scripts/backup-report.sh): pushed to the Pushgateway once a
  backup is verified, grouped by {job, source}; the Pushgateway adds push_time_seconds per group
  (its README at v1.11.3, "the Unix timestamp of the last successful push") and exports the groups
  with instance="", so the scrape's honorLabels keeps the pushed job and source and no instance.
- kube-state-metrics (kube-prometheus-stack 86.3.2's subchart): the Job series the chart's own
  KubeJobFailed / KubeJobNotCompleted rules read (templates/prometheus/rules-1.14/kubernetes-apps.yaml).
"""

from __future__ import annotations

from typing import Final

from components.platform import pushgateway

# --- dcgm-exporter --------------------------------------------------------------------------------
DCGM_GPU_UTIL: Final = "DCGM_FI_DEV_GPU_UTIL"  # gauge, %
DCGM_FB_USED: Final = "DCGM_FI_DEV_FB_USED"  # gauge, MiB
DCGM_FB_FREE: Final = "DCGM_FI_DEV_FB_FREE"  # gauge, MiB
DCGM_POWER: Final = "DCGM_FI_DEV_POWER_USAGE"  # gauge, W
DCGM_TEMP: Final = "DCGM_FI_DEV_GPU_TEMP"  # gauge, degrees C
DCGM_XID: Final = "DCGM_FI_DEV_XID_ERRORS"  # gauge: the value of the last XID error, 0 for none
# Labels on every GPU series (render_metrics.go gpuMetricsFormat), and those of the pod using the GPU.
DCGM_GPU_LABELS: Final = ("gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname")
DCGM_POD_LABELS: Final = ("pod", "namespace", "container")

# --- llama-server ---------------------------------------------------------------------------------
LLAMA_TOKENS_PREDICTED: Final = "llamacpp:tokens_predicted_total"  # counter: tokens generated
LLAMA_TOKENS_PREDICTED_SECONDS: Final = "llamacpp:tokens_predicted_seconds_total"  # counter: time generating
LLAMA_PROMPT_TOKENS: Final = "llamacpp:prompt_tokens_total"  # counter: prompt tokens processed
LLAMA_PROMPT_SECONDS: Final = "llamacpp:prompt_seconds_total"  # counter: time processing prompts
LLAMA_REQUESTS_PROCESSING: Final = "llamacpp:requests_processing"  # gauge
LLAMA_REQUESTS_DEFERRED: Final = "llamacpp:requests_deferred"  # gauge
LLAMA_BUSY_SLOTS: Final = "llamacpp:n_busy_slots_per_decode"  # gauge: busy slots per llama_decode call

# --- LiteLLM --------------------------------------------------------------------------------------
LITELLM_SUCCESS: Final = "litellm_deployment_success_responses_total"  # by model_group
LITELLM_FAILURE: Final = "litellm_deployment_failure_responses_total"  # by model_group, exception_class
LITELLM_PROXY_FAILED: Final = "litellm_proxy_failed_requests_metric_total"  # requests the proxy failed
LITELLM_FALLBACK_OK: Final = "litellm_deployment_successful_fallbacks_total"  # by requested_model, fallback_model
LITELLM_FALLBACK_FAILED: Final = "litellm_deployment_failed_fallbacks_total"
LITELLM_OVERHEAD: Final = "litellm_overhead_latency_metric"  # histogram, seconds the proxy added

# --- Traefik --------------------------------------------------------------------------------------
TRAEFIK_REQUESTS: Final = "traefik_service_requests_total"  # by service, code
TRAEFIK_DURATION_BUCKET: Final = "traefik_service_request_duration_seconds_bucket"

# --- kube-state-metrics ---------------------------------------------------------------------------
KSM_JOB_FAILED: Final = "kube_job_failed"  # by namespace, job_name
KSM_JOB_ACTIVE: Final = "kube_job_status_active"
KSM_JOB_START: Final = "kube_job_status_start_time"  # unix seconds
# by namespace, job_name, owner_kind, owner_name: a CronJob's Jobs carry owner_kind="CronJob" and its
# name (the chart's templates/prometheus/rules-1.14/k8s.rules.pod_owner.yaml reads these labels).
KSM_JOB_OWNER: Final = "kube_job_owner"

# --- the scheduled backups -----------------------------------------------------------------------
# Gauges by source (the store), as components/scripts/backup-report.sh pushes them.
BACKUP_VERIFIED_AT: Final = "gpu_platform_backup_verified_timestamp_seconds"  # unix s the data was taken
BACKUP_VERIFIED_SIZE: Final = "gpu_platform_backup_verified_size_bytes"
BACKUP_DURATION: Final = "gpu_platform_backup_duration_seconds"  # dump to verified
JOB_BACKUP: Final = "gpu-platform-backup"  # the push's job label, kept by the scrape's honorLabels
PUSH_TIME: Final = "push_time_seconds"  # the Pushgateway's, per pushed group: when it was last pushed

# The jobs the Prometheus Operator gives each scrape (the Service's name), for up{} and absent().
JOB_LLAMA: Final = "llama"  # components/llm/llama.py: Service and ServiceMonitor `llama`
JOB_LLAMA_WORKSTATION: Final = "llama-workstation"  # components/llm/llama.py WORKSTATION_SERVICE
JOB_ROUTER: Final = "router"  # components/llm/router.py: Service and ServiceMonitor `router`
JOB_PUSHGATEWAY: Final = pushgateway.SERVICE  # its own series and up{}; the pushed ones keep their job


def local_share_expr(local_groups: tuple[str, ...], window: str) -> str:
    """The share of the router's requests its local model groups answered over `window`: the router
    dashboard's line and the RouterLocalShareLow alert. A request the proxy failed counts against the
    share; LiteLLM creates that counter only at the first failure, hence the `or vector(0)`.
    (migrate/checks.py's router-local-share reads the same increases per model group.)"""
    local = "|".join(local_groups)
    return (
        f'sum(rate({LITELLM_SUCCESS}{{model_group=~"{local}"}}[{window}])) / '
        f"(sum(rate({LITELLM_SUCCESS}[{window}])) + (sum(rate({LITELLM_PROXY_FAILED}[{window}])) or vector(0)))"
    )


def decode_rate_expr(matchers: str, window: str, by: str = "namespace, service") -> str:
    """Decode tokens/s per request, averaged over `window`: tokens generated / time spent generating
    them (llama-server counts both per finished request). The brain dashboard's first panel, the
    LlamaDecodeRateLow alert and the llama-bench-targets check."""
    return (
        f"sum by ({by}) (rate({LLAMA_TOKENS_PREDICTED}{{{matchers}}}[{window}])) / "
        f"sum by ({by}) (rate({LLAMA_TOKENS_PREDICTED_SECONDS}{{{matchers}}}[{window}]))"
    )


def backup_age_expr() -> str:
    """Seconds since the data of each store's newest verified backup was taken: the data-safety
    dashboard's first panel and the BackupTooOld alert."""
    return f'time() - max by (source) ({BACKUP_VERIFIED_AT}{{job="{JOB_BACKUP}"}})'
