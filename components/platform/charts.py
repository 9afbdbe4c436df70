"""Third-party charts on K3s: cert-manager, monitoring, SLO alerts, and K3s's Traefik settings.

Each chart is a `helm.v3.Release` whose (repository, chart, version) comes from
components/catalog/versions.py; tests/test_chart_values.py checks every value path given here against the
pinned chart's own values.yaml, values.schema.json and templates (noted next to each).

- cert-manager (platform.certManager, p2a) with its CRDs (`crds.enabled`, kept on uninstall so
  deleting the release never deletes every Certificate) and a Let's Encrypt ClusterIssuer whose
  directory (staging | production) is stack config. HTTP-01 through K3s's Traefik.
- K3s's Traefik is configured, not installed: a HelmChartConfig `kube-system/traefik` (K3s's
  helm-controller merges it into the chart it ships) redirects HTTP to HTTPS and, with
  monitoring, exposes its metrics to Prometheus. Those metrics feed the SLO alerts.
- monitoring (platform.monitoring, p2a): kube-prometheus-stack, Loki in single-binary mode and
  Grafana Alloy shipping pod logs to Loki.
- GPU telemetry (with monitoring and the device plugin, p2a): NVIDIA's dcgm-exporter on every GPU
  node, on the `nvidia` runtime, scraped through the chart's own ServiceMonitor.
- SLO alerts (platform.sloAlerts, p2c): PrometheusRule objects on the public routes' error rate
  and latency (multi-window burn rates for a 99.9% availability objective) and on the stores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s
import yaml
from pulumi_kubernetes.helm.v3 import Release, RepositoryOptsArgs
from pydantic import InstanceOf, field_validator, model_validator

from components.catalog import versions
from components.cluster.nvidia import GPU_PRESENT_LABEL, RUNTIME_CLASS, gpu_tolerations
from components.core.errors import ConfigError
from components.core.model import Args
from components.handles import ClusterHandle
from components.platform.kube import k8s_opts, labels

CERT_MANAGER_NAMESPACE = "cert-manager"
MONITORING_NAMESPACE = "monitoring"
ACME_DIRECTORIES = {
    "staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
    "production": "https://acme-v02.api.letsencrypt.org/directory",
}
GRAFANA_ADMIN_SECRET = "grafana-admin"
LOKI_URL = f"http://loki.{MONITORING_NAMESPACE}.svc.cluster.local:3100"
# kube-prometheus-stack's Prometheus: `<fullname>-prometheus`, port 9090 (templates/prometheus/service.yaml,
# values prometheus.service.port); fullname is the release name, which _release sets to the chart's.
PROMETHEUS_URL = f"http://kube-prometheus-stack-prometheus.{MONITORING_NAMESPACE}.svc.cluster.local:9090"
# The ConfigMap annotation whose value names a dashboard's Grafana folder (components/observability/shipping.py).
DASHBOARD_FOLDER_ANNOTATION = "grafana_folder"
SLO_AVAILABILITY = 0.999  # the public routes' availability objective
# Traefik's request-duration histogram buckets (seconds), a string as the chart's metrics.prometheus.buckets.
LATENCY_BUCKETS = "0.1,0.25,0.5,1,2,5,10"


def cluster_issuer_name(acme_server: str) -> str:
    return f"letsencrypt-{acme_server}"


# --- chart values (pure; tests read them through the recorded Release inputs) ------------------


def cert_manager_values(monitoring: bool) -> dict[str, Any]:
    # cert-manager values.yaml v1.21: crds.enabled / crds.keep (since v1.15),
    # prometheus.servicemonitor.enabled.
    return {
        "crds": {"enabled": True, "keep": True},
        "prometheus": {"enabled": True, "servicemonitor": {"enabled": monitoring}},
    }


def kube_prometheus_stack_values(environment: str) -> dict[str, Any]:
    # kube-prometheus-stack values.yaml 86.x: prometheus.prometheusSpec.*SelectorNilUsesHelmValues,
    # grafana.admin.existingSecret/userKey/passwordKey, grafana.additionalDataSources, kube*.enabled.
    return {
        "prometheus": {
            "prometheusSpec": {
                "retention": "30d" if environment == "prod" else "7d",
                # Pick up our PrometheusRules and Traefik's ServiceMonitor, not only the chart's own.
                "ruleSelectorNilUsesHelmValues": False,
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "podMonitorSelectorNilUsesHelmValues": False,
            }
        },
        "grafana": {
            "admin": {"existingSecret": GRAFANA_ADMIN_SECRET, "userKey": "admin-user", "passwordKey": "admin-password"},
            "additionalDataSources": [{"name": "Loki", "type": "loki", "access": "proxy", "url": LOKI_URL}],
            # The dashboard sidecar is on and watches every namespace in the chart's defaults; folders
            # from an annotation need both the annotation's name and the file-structure provider
            # (grafana chart 12.4.8 values.yaml sidecar.dashboards.folderAnnotation).
            "sidecar": {
                "dashboards": {
                    "folderAnnotation": DASHBOARD_FOLDER_ANNOTATION,
                    "provider": {"foldersFromFilesStructure": True},
                }
            },
        },
        # K3s runs the controller manager, scheduler and proxy inside one process with no metrics
        # endpoints where the chart looks for them, and etcd's metrics are off by default: scraping
        # them only produces TargetDown alerts.
        "kubeControllerManager": {"enabled": False},
        "kubeScheduler": {"enabled": False},
        "kubeProxy": {"enabled": False},
        "kubeEtcd": {"enabled": False},
    }


def loki_values(environment: str) -> dict[str, Any]:
    # grafana-community loki values.yaml 6.56: deploymentMode, loki.auth_enabled,
    # loki.commonConfig.replication_factor, loki.storage.type, singleBinary.replicas,
    # {backend,read,write}.replicas, chunksCache/resultsCache/gateway/lokiCanary.enabled,
    # test.enabled; loki.schemaConfig, loki.limits_config and loki.compactor are sections of Loki's
    # own config file, which the chart renders as given.
    return {
        "deploymentMode": "SingleBinary",
        "loki": {
            "auth_enabled": False,
            "commonConfig": {"replication_factor": 1},
            "storage": {"type": "filesystem"},
            "schemaConfig": {
                "configs": [
                    {
                        "from": "2026-01-01",
                        "store": "tsdb",
                        "object_store": "filesystem",
                        "schema": "v13",
                        "index": {"prefix": "index_", "period": "24h"},
                    }
                ]
            },
            "limits_config": {"retention_period": "744h" if environment == "prod" else "168h"},
            # retention_period is enforced by the compactor only, and only with retention_enabled;
            # without it Loki keeps every log forever and the volume fills. Retention needs a store
            # for delete requests: the same filesystem the chunks live on.
            "compactor": {"retention_enabled": True, "delete_request_store": "filesystem"},
        },
        "singleBinary": {"replicas": 1},
        "backend": {"replicas": 0},
        "read": {"replicas": 0},
        "write": {"replicas": 0},
        "chunksCache": {"enabled": False},
        "resultsCache": {"enabled": False},
        "gateway": {"enabled": False},
        "lokiCanary": {"enabled": False},
        "test": {"enabled": False},
    }


ALLOY_CONFIG = f"""\
discovery.kubernetes "pods" {{
  role = "pod"
}}

discovery.relabel "pods" {{
  targets = discovery.kubernetes.pods.targets
  rule {{
    source_labels = ["__meta_kubernetes_namespace"]
    target_label  = "namespace"
  }}
  rule {{
    source_labels = ["__meta_kubernetes_pod_name"]
    target_label  = "pod"
  }}
  rule {{
    source_labels = ["__meta_kubernetes_pod_container_name"]
    target_label  = "container"
  }}
  rule {{
    source_labels = ["__meta_kubernetes_pod_label_app_kubernetes_io_name"]
    target_label  = "app"
  }}
}}

loki.source.kubernetes "pods" {{
  targets    = discovery.relabel.pods.output
  forward_to = [loki.write.default.receiver]
}}

loki.write "default" {{
  endpoint {{
    url = "{LOKI_URL}/loki/api/v1/push"
  }}
}}
"""


def alloy_values() -> dict[str, Any]:
    # alloy values.yaml 1.5: alloy.configMap.content, controller.type, controller.replicas.
    # loki.source.kubernetes tails logs through the API server, so one Deployment replica serves
    # the whole cluster and no hostPath mount of /var/log is needed.
    return {
        "alloy": {"configMap": {"content": ALLOY_CONFIG}},
        "controller": {"type": "deployment", "replicas": 1},
    }


def dcgm_exporter_values() -> dict[str, Any]:
    """dcgm-exporter chart 4.8.2 values.yaml: image.repository/tag, runtimeClassName, nodeSelector,
    tolerations, serviceMonitor.enabled/honorLabels."""
    repository, tag = versions.DCGM_EXPORTER_IMAGE.rsplit(":", 1)
    return {
        "image": {"repository": repository, "tag": tag},
        # NVML comes from the host driver through the NVIDIA container runtime; without the runtime
        # class the pod sees no GPU and exports nothing.
        "runtimeClassName": RUNTIME_CLASS,
        # Only GPU nodes (K3sCluster labels them); the chart's default would put it on every node.
        "nodeSelector": {GPU_PRESENT_LABEL: "true"},
        "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}, *gpu_tolerations()],
        # The exporter labels each GPU with the pod, namespace and container using it
        # (internal/pkg/transformation/kubernetes.go at 4.5.3-4.8.2). Without honorLabels the
        # operator's own target labels of the same names win and the GPU's user is lost to
        # exported_pod/exported_namespace, so per-pod panels would show the exporter's own pod.
        "serviceMonitor": {"enabled": True, "honorLabels": True},
    }


def traefik_values(monitoring: bool) -> dict[str, Any]:
    # traefik chart 39 (the one K3s v1.35 bundles): ports.web.http.redirections.entryPoint (since
    # v39; the schema rejects the older ports.web.redirections), logs.access.enabled,
    # metrics.prometheus.service.enabled / serviceMonitor.enabled / buckets.
    redirect = {"entryPoint": {"to": "websecure", "scheme": "https", "permanent": True}}
    values: dict[str, Any] = {
        "ports": {"web": {"http": {"redirections": redirect}}},
        "logs": {"access": {"enabled": True}},
    }
    if monitoring:
        values["metrics"] = {
            "prometheus": {
                "service": {"enabled": True},
                # Traefik labels each backend `service`, and so does the Prometheus Operator each
                # target (the metrics Service's name); without honorLabels Traefik's becomes
                # exported_service and every query on service=~"platform-..." (the SLO rules, the
                # routes-slo check, the cutover dashboard) finds nothing. Found by
                # tests/real/test_observability.py, which scrapes as the operator does.
                "serviceMonitor": {"enabled": True, "honorLabels": True},
                # Traefik's default buckets (0.1,0.3,1.2,5) put the 2 s target inside one wide bucket,
                # where histogram_quantile can only interpolate; a boundary at 2 makes "p95 < 2 s" exact.
                "buckets": LATENCY_BUCKETS,
            }
        }
    return values


def slo_rules(platform_namespace: str, data_namespace: str) -> list[dict[str, Any]]:
    """Multi-window, multi-burn-rate alerts for the public routes, and the stores' health."""
    return [
        {
            "name": "platform-slo",
            "rules": [*_route_rules(platform_namespace), *_workload_rules(platform_namespace, data_namespace)],
        }
    ]


def _route_rules(platform_namespace: str) -> list[dict[str, Any]]:
    """The public routes' error budget burn (fast and slow), their p95 latency, and their metrics' absence."""
    budget = round(1 - SLO_AVAILABILITY, 6)
    # Every backend of the public routes in the platform namespace, K3s and legacy alike: what users
    # see, whichever backend answered. Traefik v3 records `traefik_service_*` per load-balanced
    # backend only, never for the weighted TraefikService (`<ns>-<host>-split`) above them, so each
    # request is counted once (components/platform/traffic.py, traefik_service()).
    svc = f'service=~"{platform_namespace}-.+@kubernetescrd"'

    def error_ratio(window: str) -> str:
        return (
            f'sum(rate(traefik_service_requests_total{{{svc},code=~"5.."}}[{window}]))'
            f" / sum(rate(traefik_service_requests_total{{{svc}}}[{window}]))"
        )

    def burn(long: str, short: str, factor: float) -> str:
        return f"({error_ratio(long)}) > {factor} * {budget} and ({error_ratio(short)}) > {factor} * {budget}"

    return [
        {
            "alert": "PlatformErrorBudgetFastBurn",
            "expr": burn("1h", "5m", 14.4),
            "for": "2m",
            "labels": {"severity": "critical"},
            "annotations": {"summary": "Public routes burn the 30-day error budget in under 2 days"},
        },
        {
            "alert": "PlatformErrorBudgetSlowBurn",
            "expr": burn("6h", "30m", 6),
            "for": "15m",
            "labels": {"severity": "warning"},
            "annotations": {"summary": "Public routes burn the 30-day error budget in under 5 days"},
        },
        {
            "alert": "PlatformLatencyHigh",
            "expr": (
                "histogram_quantile(0.95, sum by (le, service) "
                f"(rate(traefik_service_request_duration_seconds_bucket{{{svc}}}[5m]))) > 2"
            ),
            "for": "10m",
            "labels": {"severity": "warning"},
            "annotations": {"summary": "p95 latency of {{ $labels.service }} is above 2 s"},
        },
        {
            # The burn-rate and latency alerts compare ratios of Traefik's series; with no
            # series at all (metrics off, ServiceMonitor not scraped, renamed services) they
            # are silently never true. This one says so.
            "alert": "PlatformSloMetricsAbsent",
            "expr": (
                f"absent(traefik_service_requests_total{{{svc}}})"
                f" or absent(traefik_service_request_duration_seconds_bucket{{{svc}}})"
            ),
            "for": "15m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "No Traefik metrics of the public routes: the SLO alerts cannot fire",
            },
        },
    ]


def _workload_rules(platform_namespace: str, data_namespace: str) -> list[dict[str, Any]]:
    """A data store not ready, a platform pod that cannot be scheduled."""
    return [
        {
            "alert": "PlatformDataStoreDown",
            "expr": (
                f'kube_statefulset_status_replicas_ready{{namespace="{data_namespace}"}}'
                f' < kube_statefulset_replicas{{namespace="{data_namespace}"}}'
            ),
            "for": "5m",
            "labels": {"severity": "critical"},
            "annotations": {"summary": "Data store {{ $labels.statefulset }} is not ready"},
        },
        {
            "alert": "PlatformPodsPending",
            "expr": f'sum by (pod) (kube_pod_status_phase{{namespace="{platform_namespace}",phase="Pending"}}) > 0',
            "for": "15m",
            "labels": {"severity": "warning"},
            "annotations": {"summary": "{{ $labels.pod }} has been Pending for 15 minutes (GPU capacity?)"},
        },
    ]


# --- the component ------------------------------------------------------------------------------


class PlatformChartsArgs(Args):
    cluster: InstanceOf[ClusterHandle]
    environment: Literal["dev", "prod"]
    cert_manager: bool
    monitoring: bool
    slo_alerts: bool
    acme_email: str
    acme_server: Literal["staging", "production"]
    platform_namespace: str
    data_namespace: str
    grafana_admin_password: str | pulumi.Output[str] | None = None  # secret; required with monitoring
    gpu_telemetry: bool = False  # dcgm-exporter on the GPU nodes: the device plugin's phases, with monitoring
    depends_on: Sequence[InstanceOf[pulumi.Resource]] = ()

    # Before the Literal check: a wrong directory is a ConfigError that names the stack config key.
    @field_validator("acme_server", mode="before")
    @classmethod
    def _acme_server(cls, v: object) -> object:
        if v not in ACME_DIRECTORIES:
            raise ConfigError(f"acmeServer: {v!r}; expected staging or production")
        return v

    @model_validator(mode="after")
    def _switches(self) -> PlatformChartsArgs:
        if self.slo_alerts and not self.monitoring:
            raise ConfigError("platform.sloAlerts needs platform.monitoring (PrometheusRule is its CRD)")
        if self.monitoring and self.grafana_admin_password is None:
            raise ConfigError("PlatformCharts: monitoring needs the Grafana admin password")
        if self.gpu_telemetry and not self.monitoring:
            raise ConfigError("PlatformCharts: GPU telemetry needs monitoring (its ServiceMonitor is a CRD of it)")
        return self


def _release(
    name: str,
    chart: tuple[str, str, str],
    namespace: str,
    values: dict[str, Any],
    opts: pulumi.ResourceOptions,
) -> pulumi.Resource:
    repo, chart_name, version = chart
    return Release(
        name,
        name=chart_name,  # the Helm release name; fixed, so no random suffix
        chart=chart_name,
        version=version,
        repository_opts=RepositoryOptsArgs(repo=repo),
        namespace=namespace,
        values=values,
        cleanup_on_fail=True,
        max_history=5,
        timeout=900,
        opts=opts,
    )


class PlatformCharts(pulumi.ComponentResource):
    """cert-manager + ClusterIssuer, Traefik's settings, monitoring and SLO alerts, as switched on."""

    cluster_issuer: str | None
    cert_manager: pulumi.Resource | None
    monitoring: pulumi.Resource | None

    def __init__(self, name: str, args: PlatformChartsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gpu-platform:charts:PlatformCharts", name, None, opts)
        self.cluster_issuer = None
        self.cert_manager = None
        self.monitoring = None
        deps = list(args.depends_on)

        if args.monitoring:
            self.monitoring = self._monitoring(name, args, deps)
        after_monitoring = [self.monitoring] if self.monitoring else []
        if args.cert_manager:
            self.cert_manager = self._cert_manager(name, args, deps, after_monitoring)
            self.cluster_issuer = self._cluster_issuer(name, args, self.cert_manager)
            k8s.apiextensions.CustomResource(
                f"{name}-traefik-config",
                api_version="helm.cattle.io/v1",
                kind="HelmChartConfig",
                metadata={"name": "traefik", "namespace": "kube-system", "labels": labels("traefik", "ingress")},
                spec={"valuesContent": yaml.safe_dump(traefik_values(args.monitoring), sort_keys=True)},
                opts=k8s_opts(self, args.cluster, depends_on=[*deps, *after_monitoring]),
            )
        if args.slo_alerts:
            assert self.monitoring is not None  # checked in PlatformChartsArgs
            k8s.apiextensions.CustomResource(
                f"{name}-slo-rules",
                api_version="monitoring.coreos.com/v1",
                kind="PrometheusRule",
                metadata={
                    "name": "platform-slo",
                    "namespace": MONITORING_NAMESPACE,
                    "labels": labels("platform-slo", "alerts"),
                },
                spec={"groups": slo_rules(args.platform_namespace, args.data_namespace)},
                opts=k8s_opts(self, args.cluster, depends_on=[self.monitoring]),
            )

        self.register_outputs({"clusterIssuer": self.cluster_issuer})

    def _namespace(
        self, resource_name: str, args: PlatformChartsArgs, namespace: str, enforce: str, deps: list[pulumi.Resource]
    ) -> pulumi.Resource:
        """A chart's namespace, with the Pod Security Standard `enforce` level its pods need."""
        return k8s.core.v1.Namespace(
            resource_name,
            metadata={
                "name": namespace,
                "labels": {**labels(namespace, "namespace"), "pod-security.kubernetes.io/enforce": enforce},
            },
            opts=k8s_opts(self, args.cluster, depends_on=deps),
        )

    def _monitoring(self, name: str, args: PlatformChartsArgs, deps: list[pulumi.Resource]) -> pulumi.Resource:
        """kube-prometheus-stack (returned: its CRDs are what others wait for), Loki and Alloy."""
        assert args.grafana_admin_password is not None  # checked in PlatformChartsArgs
        grafana_password: pulumi.Output[str] = pulumi.Output.secret(args.grafana_admin_password)
        # node-exporter needs the host's PID and network namespaces: privileged, and only here.
        ns = self._namespace(f"{name}-monitoring-ns", args, MONITORING_NAMESPACE, "privileged", deps)
        admin = k8s.core.v1.Secret(
            f"{name}-grafana-admin",
            metadata={
                "name": GRAFANA_ADMIN_SECRET,
                "namespace": MONITORING_NAMESPACE,
                "labels": labels("grafana", "credentials"),
            },
            type="Opaque",
            string_data={
                "admin-user": "admin",
                "admin-password": grafana_password,
            },
            opts=k8s_opts(self, args.cluster, depends_on=[ns]),
        )
        monitoring = _release(
            f"{name}-kube-prometheus-stack",
            versions.KUBE_PROMETHEUS_STACK_CHART,
            MONITORING_NAMESPACE,
            kube_prometheus_stack_values(args.environment),
            k8s_opts(self, args.cluster, depends_on=[ns, admin]),
        )
        loki = _release(
            f"{name}-loki",
            versions.LOKI_CHART,
            MONITORING_NAMESPACE,
            loki_values(args.environment),
            # Loki's chart adds ServiceMonitors when the CRD exists.
            k8s_opts(self, args.cluster, depends_on=[ns, monitoring]),
        )
        _release(
            f"{name}-alloy",
            versions.ALLOY_CHART,
            MONITORING_NAMESPACE,
            alloy_values(),
            k8s_opts(self, args.cluster, depends_on=[ns, loki]),
        )
        if args.gpu_telemetry:
            _release(
                f"{name}-dcgm-exporter",
                versions.DCGM_EXPORTER_CHART,
                MONITORING_NAMESPACE,
                dcgm_exporter_values(),
                # Its ServiceMonitor needs the CRD kube-prometheus-stack brings.
                k8s_opts(self, args.cluster, depends_on=[ns, monitoring]),
            )
        return monitoring

    def _cert_manager(
        self,
        name: str,
        args: PlatformChartsArgs,
        deps: list[pulumi.Resource],
        after_monitoring: list[pulumi.Resource],
    ) -> pulumi.Resource:
        """cert-manager's namespace and release."""
        ns = self._namespace(f"{name}-cert-manager-ns", args, CERT_MANAGER_NAMESPACE, "restricted", deps)
        return _release(
            f"{name}-cert-manager",
            versions.CERT_MANAGER_CHART,
            CERT_MANAGER_NAMESPACE,
            cert_manager_values(args.monitoring),
            # Its ServiceMonitor needs the CRD kube-prometheus-stack brings.
            k8s_opts(self, args.cluster, depends_on=[ns, *after_monitoring]),
        )

    def _cluster_issuer(self, name: str, args: PlatformChartsArgs, cert_manager: pulumi.Resource) -> str:
        """The Let's Encrypt ClusterIssuer (HTTP-01 through Traefik); returns its name."""
        issuer = cluster_issuer_name(args.acme_server)
        k8s.apiextensions.CustomResource(
            f"{name}-cluster-issuer",
            api_version="cert-manager.io/v1",
            kind="ClusterIssuer",
            metadata={"name": issuer, "labels": labels("letsencrypt", "tls")},
            spec={
                "acme": {
                    "email": args.acme_email,
                    "server": ACME_DIRECTORIES[args.acme_server],
                    # One account key per directory: staging and production are separate CAs.
                    "privateKeySecretRef": {"name": f"{issuer}-account-key"},
                    "solvers": [{"http01": {"ingress": {"ingressClassName": "traefik"}}}],
                }
            },
            opts=k8s_opts(self, args.cluster, depends_on=[cert_manager]),
        )
        return issuer
