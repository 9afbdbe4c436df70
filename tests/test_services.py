"""Pure tests of the platform's tables and argument checks: no Pulumi runtime, no plan."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, cast

import pytest

from components.catalog.services import SERVICES, ServiceSpec, app_secret_keys, hpa_ceiling, service, validate_table
from components.config.load import parse
from components.config.phases import resolve
from components.core.errors import ConfigError
from components.handles import BackupHandle, ClusterHandle, VerifiedBackup
from components.platform import charts
from components.platform.datastores import DataStoresArgs, RestoreSource
from components.platform.platform import PlatformArgs, PlatformSecrets
from components.platform.services import nginx_config
from components.platform.traffic import PublicRoute, TrafficSplitArgs, public_routes, weights
from migrate.harness import read_stack_file, stack_file

CLUSTER = ClusterHandle(
    provider=None,
    cluster=cast(Any, None),
    kubeconfig=cast(Any, None),
    api_address=cast(Any, None),
    gpu_nodes=(),
)


def _row(**changes: Any) -> ServiceSpec:
    return dataclasses.replace(service("github"), **changes)


# --- the services table ------------------------------------------------------------------------


def test_the_table_is_consistent() -> None:
    validate_table(SERVICES)
    assert {s.name for s in SERVICES} == {
        "dashboard", "research", "context", "github", "business", "lambda", "hubspot", "agents", "jobs", "nginx",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (_row(replicas={"dev": 2, "prod": 2}), "prod must run more replicas than dev"),
        (_row(gpus=1, max_replicas=4), "GPU services are not autoscaled"),
        (_row(image="docker.io/library/redis"), "must be pinned by tag"),  # third-party: a full reference
        (_row(image="docker.io/library/redis:latest"), "must be pinned by tag"),
        (_row(image="MCP_GitHub"), "is not a repository name"),  # the organisation's: a name
        (_row(max_replicas=1), "below prod replicas"),
        (_row(health_path="health"), "must start with /"),
        (_row(replicas={"prod": 2}), "replicas needs dev and prod"),
    ],
)
def test_a_broken_row_is_refused_with_its_name(row: ServiceSpec, message: str) -> None:
    table = tuple(row if s.name == "github" else s for s in SERVICES)
    with pytest.raises(ConfigError, match=message) as err:
        validate_table(table)
    assert "github" in str(err.value)


def test_two_rows_may_not_share_a_name_or_a_public_host() -> None:
    with pytest.raises(ConfigError, match="duplicate service names"):
        validate_table((*SERVICES, service("github")))
    with pytest.raises(ConfigError, match="claim one public host"):
        validate_table((*SERVICES, _row(name="other", public_host="app")))


def test_nginx_routes_every_mcp_service_and_nothing_else() -> None:
    conf = nginx_config(SERVICES, "platform")
    for s in SERVICES:
        route = f"proxy_pass http://{s.name}.platform.svc.cluster.local:{s.port}/;"
        assert (route in conf) == s.behind_nginx, s.name
    assert {s.name for s in SERVICES if s.behind_nginx} == {
        "research", "context", "github", "business", "lambda", "hubspot", "agents",
    }  # fmt: skip
    assert "location = /healthz" in conf and "proxy_buffering off;" in conf
    assert "location = / { default_type text/plain; return 200" in conf  # the public-routes-200 check
    assert conf.count("{") == conf.count("}")


def test_autoscaling_ceilings() -> None:
    dashboard, research = service("dashboard"), service("research")
    assert hpa_ceiling(dashboard, "prod") == dashboard.max_replicas
    assert hpa_ceiling(dashboard, "dev") == dashboard.replicas["prod"]
    assert hpa_ceiling(research, "prod") == 0


def test_app_secrets_the_services_read() -> None:
    assert app_secret_keys() == {
        "github-token": True,
        "hubspot-access-token": True,
        "lambda-api-key": True,
        "llm-api-key": False,  # the router and research work without the cloud model
    }


def test_public_hosts_come_from_the_table() -> None:
    assert public_routes() == (PublicRoute("app", "dashboard", 3000), PublicRoute("api", "nginx", 8080))


# --- weights and routes ------------------------------------------------------------------------


@pytest.mark.parametrize(("k3s", "expected"), [(0, (0, 100)), (10, (10, 90)), (50, (50, 50)), (100, (100, 0))])
def test_weights_always_add_up_to_100(k3s: int, expected: tuple[int, int]) -> None:
    assert weights(k3s) == expected


def test_a_weight_outside_0_100_is_refused() -> None:
    with pytest.raises(ConfigError, match=re.escape("traffic.k3sWeight: 101")):
        weights(101)


def test_traffic_split_args_check_weight_and_address() -> None:
    base = {"cluster": CLUSTER, "namespace": "platform", "domain": "example.com", "cluster_issuer": "le"}
    TrafficSplitArgs(**base, k3s_weight=10, legacy_address="192.0.2.10")
    TrafficSplitArgs(**base, k3s_weight=100, legacy_address="2001:db8::10")
    with pytest.raises(ConfigError, match="only for 1-100"):
        TrafficSplitArgs(**base, k3s_weight=0, legacy_address="192.0.2.10")
    with pytest.raises(ConfigError, match=re.escape("composeHost.address: 'compose.example.com' is not an IP")):
        TrafficSplitArgs(**base, k3s_weight=10, legacy_address="compose.example.com")


# --- platform arguments ------------------------------------------------------------------------

SECRETS = PlatformSecrets(
    lambda_api_key="l",
    github_token="g",
    hubspot_access_token="h",
    backup_access_key_id="a",
    backup_secret_access_key="s",
)
VERIFIED = {
    s: VerifiedBackup(
        name=s,
        key=cast(Any, "k"),
        sha256=cast(Any, "0" * 64),
        size=cast(Any, 1),
        resource=cast(Any, None),
        objects=cast(Any, [{"key": "k", "sha256": "0" * 64, "size": 1}]),
    )
    for s in ("qdrant", "redis", "postgres")
}


def _args(phase: str = "p2b-services", **changes: Any) -> PlatformArgs:
    cfg = parse(read_stack_file(stack_file("dev")))
    state = resolve(phase).state

    fields: dict[str, Any] = {
        "config": cfg,
        "state": state.platform,
        "k3s_weight": state.traffic.k3s_weight,
        "cluster": CLUSTER,
        "secrets": SECRETS,
        "backups": BackupHandle(bucket=cast(Any, "b"), endpoint=None, region="us-east-1", verified=dict(VERIFIED)),
    }
    fields.update(changes)
    return PlatformArgs(**fields)


def test_platform_args_of_the_services_phase_are_complete() -> None:
    _args()


@pytest.mark.parametrize(
    ("secrets", "key"),
    [
        (SECRETS.model_copy(update={"github_token": None}), "gpu-platform:githubToken"),
        (SECRETS.model_copy(update={"hubspot_access_token": None}), "gpu-platform:hubspotAccessToken"),
        (SECRETS.model_copy(update={"lambda_api_key": None}), "gpu-platform:lambdaApiKey"),
        (SECRETS.model_copy(update={"backup_secret_access_key": None}), "gpu-platform:backupSecretAccessKey"),
    ],
)
def test_a_missing_secret_is_named(secrets: PlatformSecrets, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        _args(secrets=secrets)


def test_running_stores_need_the_bucket_keys_even_without_a_restore() -> None:
    """The scheduled backups write the bucket from platform.servicesStateful on, restore or not."""
    state = resolve("p2b-services").state.platform.model_copy(update={"restore_from_backup": False})
    assert state.services_stateful
    no_key = SECRETS.model_copy(update={"backup_access_key_id": None})
    with pytest.raises(ConfigError, match=r"backupAccessKeyId .* platform\.servicesStateful is on"):
        _args(state=state, secrets=no_key, backups=None)
    _args(state=state, backups=None)


def test_the_same_secrets_are_not_needed_before_the_services() -> None:
    _args("p2a-k3s", secrets=PlatformSecrets(), backups=None)


def test_restore_needs_the_backups() -> None:
    with pytest.raises(ConfigError, match="restoreFromBackup needs the backups"):
        _args(backups=None)


def test_restore_needs_a_verified_backup_of_every_store() -> None:
    partial = {k: v for k, v in VERIFIED.items() if k != "redis"}

    # Refused by the platform's args, before any resource exists...
    with pytest.raises(ConfigError, match=r"no verified backup of \['redis'\]"):
        _args(backups=BackupHandle(bucket=cast(Any, "b"), endpoint=None, region="us-east-1", verified=partial))
    # ...and by the restore's own args.
    with pytest.raises(ConfigError, match=r"no verified backup of \['redis'\]"):
        RestoreSource(bucket="b", endpoint=None, region="r", verified=partial, access_key_id="a", secret_access_key="s")


def test_restore_needs_running_stores() -> None:
    source = RestoreSource(
        bucket="b", endpoint=None, region="r", verified=VERIFIED, access_key_id="a", secret_access_key="s"
    )
    passwords = {"postgres": "p", "redis": "r", "qdrant": "q"}
    base = {"cluster": CLUSTER, "namespace": "d", "clients_namespace": "c", "environment": "dev", "protect": False}
    DataStoresArgs(**base, passwords=passwords, running=True, restore=source)
    with pytest.raises(ConfigError, match=re.escape("needs platform.servicesStateful")):
        DataStoresArgs(**base, passwords=passwords, running=False, restore=source)
    with pytest.raises(ConfigError, match=r"no password for \['qdrant'\]"):
        DataStoresArgs(**base, passwords={"postgres": "p", "redis": "r"}, running=True)


# --- chart values ------------------------------------------------------------------------------


def test_traefik_exposes_metrics_only_with_monitoring() -> None:
    assert "metrics" not in charts.traefik_values(False)
    with_monitoring = charts.traefik_values(True)["metrics"]["prometheus"]
    assert with_monitoring["serviceMonitor"]["enabled"] is True and with_monitoring["service"]["enabled"] is True
    # A bucket boundary at the 2 s latency target: the p95 the gate and the alert read is exact there.
    assert "2" in with_monitoring["buckets"].split(",")


def test_slo_rules_measure_what_users_see() -> None:
    (group,) = charts.slo_rules("platform", "platform-data")
    fast = next(r for r in group["rules"] if r["alert"] == "PlatformErrorBudgetFastBurn")
    # Every backend of the platform's routes (Traefik has no series for the weighted split itself),
    # a 99.9% objective, a 14.4x burn over 1h and 5m.
    assert 'service=~"platform-.+@kubernetescrd"' in fast["expr"]
    assert "14.4 * 0.001" in fast["expr"] and "[1h]" in fast["expr"] and "[5m]" in fast["expr"]
    down = next(r for r in group["rules"] if r["alert"] == "PlatformDataStoreDown")
    assert 'namespace="platform-data"' in down["expr"]


def test_alloy_ships_to_the_loki_the_chart_installs() -> None:
    content = charts.alloy_values()["alloy"]["configMap"]["content"]
    assert f'url = "{charts.LOKI_URL}/loki/api/v1/push"' in content
    assert charts.loki_values("dev")["gateway"]["enabled"] is False  # so Loki's own Service is the URL


def test_chart_args_refuse_alerts_without_monitoring() -> None:
    base = {
        "cluster": CLUSTER,
        "environment": "dev",
        "cert_manager": True,
        "acme_email": "ops@example.com",
        "acme_server": "staging",
        "platform_namespace": "platform",
        "data_namespace": "platform-data",
    }
    with pytest.raises(ConfigError, match=re.escape("sloAlerts needs platform.monitoring")):
        charts.PlatformChartsArgs(**base, monitoring=False, slo_alerts=True)
    with pytest.raises(ConfigError, match="acmeServer: 'prod'"):
        charts.PlatformChartsArgs(**{**base, "acme_server": "prod"}, monitoring=False, slo_alerts=False)
