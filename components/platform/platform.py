"""The platform on K3s: what a phase switches on, wired in one component.

`Platform` reads `phase.state.platform` and `phase.state.traffic` and builds, in order:
  certManager        cert-manager + Let's Encrypt ClusterIssuer, Traefik  (p2a)
  monitoring         kube-prometheus-stack, Loki, Alloy                   (p2a)
  retainStorage      the Retain StorageClass, namespace `platform-data`,
                     the stores' credentials and StatefulSets at 0 replicas (p2a)
  servicesStateful   the stores run (1 replica each)                      (p2b)
  restoreFromBackup  one restore Job per store from the verified backups  (p2b)
  servicesStateless  namespace `platform`, its Secrets, the services      (p2b)
  traffic.k3sWeight  the weighted public routes (10, 50, 100)             (p2b, p2b1, p2b2)
  autoscaling        HPAs for the stateless CPU services                  (p2c)
  sloAlerts          PrometheusRules                                      (p2c)
Each part lives in its own module (charts, services, datastores, traffic); this one holds the
namespaces and the generated credentials they share.

Every object uses the cluster's provider and `deleted_with` the cluster resource. Nothing with
data is deleted or replaced by a phase change in prod: see components/platform/datastores.py.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
from pydantic import InstanceOf, model_validator

from components.catalog.services import APP_SECRET, STORE_SECRET, STORES, Store, app_secret_keys, validate_table
from components.config.phases import PlatformState
from components.config.schema import StackConfig
from components.core.errors import ConfigError
from components.core.model import Args
from components.handles import BackupHandle, ClusterHandle
from components.platform.charts import PROMETHEUS_URL, PlatformCharts, PlatformChartsArgs
from components.platform.datastores import (
    POSTGRES_DATABASE,
    RESTORE_SELECTOR,
    DataStores,
    DataStoresArgs,
    RestoreSource,
    storage_class,
    store_host,
)
from components.platform.kube import k8s_opts, labels
from components.platform.services import PlatformServices, PlatformServicesArgs
from components.platform.traffic import TrafficSplit, TrafficSplitArgs

NAMESPACE = "platform"
DATA_NAMESPACE = "platform-data"
MONITORING_NAMESPACE = "monitoring"

# Stack config key of each app secret, for the error that names a missing one.
_APP_SECRET_CONFIG = {
    "lambda-api-key": "lambdaApiKey",
    "github-token": "githubToken",
    "hubspot-access-token": "hubspotAccessToken",
    "llm-api-key": "cloudLlmApiKey",
}


class PlatformSecrets(Args):
    """The stack's secrets the platform hands to its services and restore Jobs (all Outputs)."""

    lambda_api_key: str | pulumi.Output[str] | None = None
    github_token: str | pulumi.Output[str] | None = None
    hubspot_access_token: str | pulumi.Output[str] | None = None
    llm_api_key: str | pulumi.Output[str] | None = None
    backup_access_key_id: str | pulumi.Output[str] | None = None
    backup_secret_access_key: str | pulumi.Output[str] | None = None

    def app_secrets(self) -> dict[str, str | pulumi.Output[str] | None]:
        return {
            "lambda-api-key": self.lambda_api_key,
            "github-token": self.github_token,
            "hubspot-access-token": self.hubspot_access_token,
            "llm-api-key": self.llm_api_key,
        }


class PlatformArgs(Args):
    config: StackConfig
    state: PlatformState
    k3s_weight: int
    cluster: InstanceOf[ClusterHandle]
    secrets: PlatformSecrets
    backups: InstanceOf[BackupHandle] | None = None
    gpu_telemetry: bool = False  # the phase runs NVIDIA's device plugin: dcgm-exporter joins monitoring

    @model_validator(mode="after")
    def _complete(self) -> PlatformArgs:
        s = self.state
        problems: list[str] = []
        if self.k3s_weight and not (s.services_stateless and s.cert_manager):
            problems.append("traffic.k3sWeight > 0 needs platform.servicesStateless and platform.certManager")
        if s.services_stateless:
            validate_table()  # a broken services table fails here, before any resource exists
            available = self.secrets.app_secrets()
            for key, required in sorted(app_secret_keys().items()):
                if key not in _APP_SECRET_CONFIG:
                    problems.append(f"services table reads app secret {key!r} that no stack config key provides")
                elif required and available.get(key) is None:
                    problems.append(
                        f"gpu-platform:{_APP_SECRET_CONFIG[key]}: required once platform.servicesStateless is on; "
                        "set it with `pulumi config set --secret`"
                    )
        if s.restore_from_backup:
            if self.backups is None:
                problems.append("platform.restoreFromBackup needs the backups (backups.composeData)")
            else:
                missing = [store for store in STORES if store not in self.backups.verified]
                if missing:
                    problems.append(
                        f"platform.restoreFromBackup: no verified backup of {missing} from the Compose host; "
                        "backups.composeData must verify qdrant, redis and postgres first"
                    )
        # The restore Jobs read the bucket and, from servicesStateful on, the scheduled backups write it.
        if (s.restore_from_backup or s.services_stateful) and (
            self.secrets.backup_access_key_id is None or self.secrets.backup_secret_access_key is None
        ):
            problems.append(
                "gpu-platform:backupAccessKeyId and gpu-platform:backupSecretAccessKey: required once "
                "platform.restoreFromBackup or platform.servicesStateful is on (the restore Jobs in K3s read "
                "the bucket with them, the scheduled backups write it)"
            )
        if problems:
            raise ConfigError("; ".join(problems))
        return self


class Platform(pulumi.ComponentResource):
    """The platform parts the phase switches on. `outputs` is what the stack exports.

    `foundations` is what workloads outside the platform (the llama server) wait for: the Retain
    StorageClass and the monitoring chart that brings the ServiceMonitor CRD. Depending on the
    whole component instead would make them wait for every service and restore Job as well.
    """

    outputs: dict[str, Any]
    foundations: list[pulumi.Resource]
    # What a backup of the stores waits for: the StatefulSets and the restore Jobs (empty before p2a).
    data_stores: list[pulumi.Resource]

    def __init__(self, name: str, args: PlatformArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gpu-platform:platform:Platform", name, None, opts)
        state = args.state
        self.outputs = {}
        self.foundations = []

        charts = self._charts(name, args) if state.cert_manager or state.monitoring else None
        passwords = self._passwords(name, args) if state.retain_storage or state.services_stateless else {}
        stores = self._data_stores(name, args, passwords) if state.retain_storage else None
        self.data_stores = [*stores.stateful_sets.values(), *stores.restore_jobs.values()] if stores else []

        if state.services_stateless:
            namespace = k8s.core.v1.Namespace(
                f"{name}-namespace",
                metadata={"name": NAMESPACE, "labels": _restricted(NAMESPACE)},
                opts=k8s_opts(self, args.cluster),
            )
            before_services = [namespace, *self._credentials(name, args, passwords, namespace)]
            if stores is not None and state.services_stateful:
                # The services start on restored data: an app that starts first would create its
                # schema or queues in the empty stores, and the restore would then refuse.
                before_services += [*stores.stateful_sets.values(), *stores.restore_jobs.values()]
            services = self._services(name, args, before_services)
            if args.k3s_weight > 0:
                assert charts is not None and charts.cluster_issuer is not None  # certManager is on
                self._traffic(name, args, charts.cluster_issuer, [namespace, *services.services.values()])

        self.register_outputs(self.outputs)

    def _charts(self, name: str, args: PlatformArgs) -> PlatformCharts:
        """cert-manager and monitoring, with Grafana's admin password generated here."""
        cfg, state = args.config, args.state
        grafana_password = None
        if state.monitoring:
            grafana_password = random.RandomPassword(
                f"{name}-grafana-admin-password", length=32, special=False, opts=pulumi.ResourceOptions(parent=self)
            ).result
        charts = PlatformCharts(
            f"{name}-charts",
            PlatformChartsArgs(
                cluster=args.cluster,
                environment=cfg.environment,
                cert_manager=state.cert_manager,
                monitoring=state.monitoring,
                slo_alerts=state.slo_alerts,
                acme_email=cfg.acme_email,
                acme_server=cfg.acme_server,
                platform_namespace=NAMESPACE,
                data_namespace=DATA_NAMESPACE,
                grafana_admin_password=grafana_password,
                gpu_telemetry=args.gpu_telemetry and state.monitoring,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.outputs["clusterIssuer"] = charts.cluster_issuer
        if charts.monitoring is not None:
            self.foundations.append(charts.monitoring)
            self.outputs["prometheusUrl"] = PROMETHEUS_URL  # the cutover gate's metrics (routes-slo)
        return charts

    def _passwords(self, name: str, args: PlatformArgs) -> dict[Store, pulumi.Output[str]]:
        # The stores' passwords, generated once, from the phase that first needs them. In prod
        # they are protected with the data: a Postgres data directory keeps the superuser password
        # it was initialised with, so a new password for retained data would lock everyone out.
        return {
            store: random.RandomPassword(
                f"{name}-{store}-password",
                length=40,
                special=False,  # they go into URLs and config files unescaped
                opts=pulumi.ResourceOptions(parent=self, protect=args.config.is_prod),
            ).result
            for store in STORES
        }

    def _data_stores(self, name: str, args: PlatformArgs, passwords: dict[Store, pulumi.Output[str]]) -> DataStores:
        """The Retain StorageClass, the data namespace and the stores (restored when the phase says so)."""
        cfg, state, cluster = args.config, args.state, args.cluster
        self.foundations.append(storage_class(name, self, cluster))
        data_namespace = k8s.core.v1.Namespace(
            f"{name}-data-namespace",
            metadata={"name": DATA_NAMESPACE, "labels": _restricted(DATA_NAMESPACE)},
            # Deleting a namespace deletes every volume claim in it. prod: Pulumi refuses
            # (protect), and a deliberate unprotect still leaves it in the cluster.
            opts=k8s_opts(self, cluster, protect=cfg.is_prod, retain_on_delete=cfg.is_prod),
        )
        stores = DataStores(
            f"{name}-datastores",
            DataStoresArgs(
                cluster=cluster,
                namespace=DATA_NAMESPACE,
                clients_namespace=NAMESPACE,
                environment=cfg.environment,
                protect=cfg.is_prod,
                passwords=passwords,
                running=state.services_stateful,
                restore=_restore_source(args) if state.restore_from_backup else None,
                depends_on=[data_namespace],
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.outputs["dataNamespace"] = DATA_NAMESPACE
        if stores.restore_jobs:
            self.outputs["restoreJobs"] = {"namespace": DATA_NAMESPACE, "selector": RESTORE_SELECTOR}
        return stores

    def _credentials(
        self,
        name: str,
        args: PlatformArgs,
        passwords: dict[Store, pulumi.Output[str]],
        namespace: pulumi.Resource,
    ) -> list[pulumi.Resource]:
        """The services' Secrets: the stores' URLs and keys, and the app secrets from stack config."""
        cluster = args.cluster
        pg, rd = store_host("postgres", DATA_NAMESPACE), store_host("redis", DATA_NAMESPACE)
        store_secret = k8s.core.v1.Secret(
            f"{name}-store-credentials",
            metadata={"name": STORE_SECRET, "namespace": NAMESPACE, "labels": labels("platform", "credentials")},
            type="Opaque",
            string_data={
                "postgres-url": pulumi.Output.concat(
                    "postgresql://postgres:", passwords["postgres"], f"@{pg}:5432/{POSTGRES_DATABASE}"
                ),
                "redis-url": pulumi.Output.concat("redis://:", passwords["redis"], f"@{rd}:6379/0"),
                "qdrant-api-key": passwords["qdrant"],
            },
            opts=k8s_opts(self, cluster, depends_on=[namespace]),
        )
        app_values = {k: v for k, v in args.secrets.app_secrets().items() if v is not None}
        app_secret = k8s.core.v1.Secret(
            f"{name}-app-secrets",
            metadata={"name": APP_SECRET, "namespace": NAMESPACE, "labels": labels("platform", "credentials")},
            type="Opaque",
            string_data={k: pulumi.Output.secret(v) for k, v in sorted(app_values.items())},
            opts=k8s_opts(self, cluster, depends_on=[namespace]),
        )
        return [store_secret, app_secret]

    def _services(self, name: str, args: PlatformArgs, before: list[pulumi.Resource]) -> PlatformServices:
        """The services of the catalog's table, started after everything in `before`."""
        cfg, state = args.config, args.state
        services = PlatformServices(
            f"{name}-services",
            PlatformServicesArgs(
                cluster=args.cluster,
                namespace=NAMESPACE,
                environment=cfg.environment,
                autoscaling=state.autoscaling,
                data_namespace=DATA_NAMESPACE,
                monitoring_namespace=MONITORING_NAMESPACE if state.monitoring else None,
                secrets=before,
                images=cfg.service_images,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        if cfg.service_images.is_placeholder:
            # Only dev gets here (config.check_service_images refuses it in prod).
            pulumi.log.warn(
                f"gpu-platform:serviceImages.registry is the placeholder {cfg.service_images.registry!r}: the "
                "platform's pods will not pull their images until it names your registry",
                resource=services,
            )
        self.outputs["namespace"] = NAMESPACE
        return services

    def _traffic(self, name: str, args: PlatformArgs, cluster_issuer: str, depends_on: list[pulumi.Resource]) -> None:
        """The weighted public routes, K3s and the Compose host side by side."""
        cfg = args.config
        traffic = TrafficSplit(
            f"{name}-traffic",
            TrafficSplitArgs(
                cluster=args.cluster,
                namespace=NAMESPACE,
                domain=cfg.domain,
                k3s_weight=args.k3s_weight,
                legacy_address=cfg.compose_host.address,
                cluster_issuer=cluster_issuer,
                depends_on=depends_on,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.outputs["publicHostnames"] = traffic.hostnames
        self.outputs["routeBackends"] = traffic.backends
        self.outputs["k3sWeight"] = args.k3s_weight


def _restore_source(args: PlatformArgs) -> RestoreSource:
    """Where the restore Jobs read the verified backups (PlatformArgs checked that all of it is there)."""
    assert args.backups is not None  # checked in PlatformArgs
    assert args.secrets.backup_access_key_id is not None
    assert args.secrets.backup_secret_access_key is not None
    return RestoreSource(
        bucket=args.backups.bucket,
        endpoint=args.backups.endpoint,
        region=args.backups.region,
        verified=args.backups.verified,
        access_key_id=args.secrets.backup_access_key_id,
        secret_access_key=args.secrets.backup_secret_access_key,
    )


def _restricted(name: str) -> dict[str, str]:
    """Namespace labels: the `restricted` Pod Security Standard, enforced (not only warned)."""
    return {
        **labels(name, "namespace"),
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/audit": "restricted",
        "pod-security.kubernetes.io/warn": "restricted",
    }
