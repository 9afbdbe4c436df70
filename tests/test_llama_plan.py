"""The local brain in the real program's recorded plans (components/stack.py wiring)."""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Callable

import pytest
import yaml

from components.catalog import versions
from components.config import load as config
from components.config.phases import alert_thresholds, phase_ids, resolve
from components.config.schema import LlamaConfig
from components.core.errors import ConfigError
from components.llm.llama import WORKSTATION_SERVICE, unscraped_warning
from components.observability import series
from components.observability.alerts import rule_groups
from components.observability.dashboards import Scope
from migrate import harness
from migrate.harness import RecordedPlan
from migrate.manifests import manifest
from migrate.policy_runner import POLICY_DIR, evaluate, read_policy_config
from tests.conftest import ROOT, upstream_root
from tests.test_manifests import problems

Plan = Callable[[str, str], RecordedPlan]
P3 = "p3-local-brain"


def _names(plan: RecordedPlan) -> set[str]:
    return {r.name for r in plan.resources}


def test_prod_p3_serves_the_70b_fully_offloaded_on_the_h100_agents(plan: Plan) -> None:
    p = plan("prod", P3)
    out = p.outputs["llamaCluster"]
    assert out["model"] == "llama-3.1-70b-instruct-q4_k_m" and out["gpu"] == "H100-80GB"
    assert out["fullOffload"] is True and out["nGpuLayers"] == 81
    assert out["nodes"] == ["gpu-agent-1", "gpu-agent-2"]
    (server,) = p.named("llama-cluster-deployment").inputs["spec"]["template"]["spec"]["containers"]
    args = server["args"]
    assert args[args.index("--n-gpu-layers") + 1] == "81"
    assert server["startupProbe"]["httpGet"]["path"] == "/health"
    assert server["readinessProbe"]["httpGet"]["path"] == "/health"
    assert server["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "llama-api-key", "key": "api-key"}
    assert "stringData" in p.named("llama-cluster-api-key-secret").secret_inputs


def test_prod_p3_model_volume_is_retained_protected_and_goes_with_the_cluster(plan: Plan) -> None:
    p = plan("prod", P3)
    pvc = p.named("llama-cluster-models")
    assert pvc.protect and pvc.retain_on_delete
    assert pvc.inputs["spec"]["storageClassName"] == "platform-retain"
    storage_class = next(r for r in p.resources if r.type == "kubernetes:storage.k8s.io/v1:StorageClass")
    assert storage_class.urn in pvc.dependencies  # the class exists before the claim
    assert pvc.deleted_with and pvc.provider
    ns = p.named("llama-cluster-namespace")
    assert ns.protect and ns.retain_on_delete  # deleting it would delete the claim


def test_prod_p3_scrapes_metrics_after_the_monitoring_stack(plan: Plan) -> None:
    p = plan("prod", P3)
    monitor = p.named("llama-cluster-monitor")
    kps = next(r for r in p.resources if r.name.endswith("kube-prometheus-stack"))
    assert kps.urn in monitor.dependencies  # the ServiceMonitor CRD comes with it


def test_dev_p3_runs_the_workstation_container_and_tinyllama_in_the_cluster(plan: Plan) -> None:
    p = plan("dev", P3)
    assert p.outputs["llamaWorkstation"]["model"] == "llama-3.1-8b-instruct-q4_k_m"
    assert p.outputs["llamaWorkstation"]["fullOffload"] is True
    c = p.named("llama-workstation-container")
    assert c.type == "docker:index/container:Container"
    assert c.inputs["entrypoints"][:2] == ["/bin/sh", "/scripts/fetch-model.sh"]
    provider = p.named("llama-workstation-docker")
    assert provider.inputs["host"] == "ssh://platform@198.51.100.20:22"
    assert c.provider == provider.urn
    assert p.outputs["llamaCluster"]["model"] == "tinyllama-1.1b-chat-q4_k_m"
    assert {"llamaWorkstationApiKey", "llamaClusterApiKey", "routerMasterKey"} <= set(p.secret_stack_outputs)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_model_volume_exists_from_p2a_so_a_rollback_from_p3_keeps_it(plan: Plan, stack: str) -> None:
    p2a, p2c, p3 = plan(stack, "p2a-k3s"), plan(stack, "p2c-optimize"), plan(stack, P3)
    for p in (p2a, p2c):
        assert {"llama-cluster-models", "llama-cluster-namespace"} <= _names(p)
        assert "llama-cluster-deployment" not in _names(p) and "llm-router-deployment" not in _names(p)
    # Same URN in every phase: going p3 -> p2c is an update that keeps the claim.
    assert p2c.named("llama-cluster-models").urn == p3.named("llama-cluster-models").urn
    assert p2c.named("llama-cluster-models").inputs == p3.named("llama-cluster-models").inputs


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_workstation_volume_exists_with_its_host_so_a_rollback_from_p3_keeps_it(plan: Plan, stack: str) -> None:
    p2a, p2c, p3 = plan(stack, "p2a-k3s"), plan(stack, "p2c-optimize"), plan(stack, P3)
    for p in (p2a, p2c):
        names = _names(p)
        assert {"llama-workstation-models", "llama-workstation-docker"} <= names
        assert not names & {"llama-workstation-container", "llama-workstation-image", "llama-workstation-api-key"}
        assert "llamaWorkstation" not in p.outputs
    before, after = p2c.named("llama-workstation-models"), p3.named("llama-workstation-models")
    assert before.urn == after.urn and before.inputs == after.inputs
    assert before.retain_on_delete and before.protect == (stack == "prod")
    # The container mounts the very volume that was there before it.
    mounts = p3.named("llama-workstation-container").inputs["volumes"]
    assert [m["volumeName"] for m in mounts] == ["llama-models"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_nothing_of_the_local_brain_exists_before_the_cluster(plan: Plan, stack: str) -> None:
    names = _names(plan(stack, "p0-baseline"))
    assert not {n for n in names if n.startswith(("llama-", "llm-router"))}


def test_the_router_falls_back_only_where_config_allows(plan: Plan) -> None:
    p = plan("prod", P3)
    assert p.outputs["router"]["cloudFallbackAliases"] == ["local"]
    assert p.outputs["router"]["aliases"] == ["local", "local-private"]


# --- the workstation's llama-server, scraped by the cluster's Prometheus ------------------------------

WORKSTATION_SCRAPE = {
    "llama-workstation-metrics-key": "kubernetes:core/v1:Secret",
    "llama-workstation-metrics-service": "kubernetes:core/v1:Service",
    "llama-workstation-metrics-endpoints": "kubernetes:core/v1:Endpoints",
    "llama-workstation-monitor": "kubernetes:monitoring.coreos.com/v1:ServiceMonitor",
}
LAN = "192.0.2.50"  # a documentation address standing for the workstation's LAN address


@functools.lru_cache(maxsize=16)
def _listening(stack: str, phase: str, listen: str, *, preview: bool = False) -> RecordedPlan:
    """The real program with `llama.workstationListen` set to `listen`."""
    llama = harness.read_stack_file(harness.stack_file(stack))["llama"]
    return harness.record(
        stack, phase=phase, overrides={"llama": {**llama, "workstationListen": listen}}, preview=preview
    )


def _scrape_objects(p: RecordedPlan) -> dict[str, str]:
    return {r.name: r.type for r in p.resources if r.name in WORKSTATION_SCRAPE}


def _warned(p: RecordedPlan) -> list[str]:
    return [w for w in p.warnings if "llama.workstationListen" in w]


def test_on_a_lan_address_the_clusters_prometheus_scrapes_the_workstation_with_its_key() -> None:
    p = _listening("dev", P3, LAN)
    assert _scrape_objects(p) == WORKSTATION_SCRAPE and not _warned(p)
    objs = {name: manifest(p.named(name)) for name in WORKSTATION_SCRAPE}
    service, endpoints = objs["llama-workstation-metrics-service"], objs["llama-workstation-metrics-endpoints"]
    monitor, secret = objs["llama-workstation-monitor"], objs["llama-workstation-metrics-key"]
    # A Service without a selector and its Endpoints, of the same name (the chart leaves
    # serviceDiscoveryRole empty, so the operator reads Endpoints): the workstation's published port.
    assert "selector" not in service["spec"] and endpoints["metadata"]["name"] == service["metadata"]["name"]
    assert service["metadata"]["name"] == series.JOB_LLAMA_WORKSTATION == WORKSTATION_SERVICE
    (subset,) = endpoints["subsets"]
    assert subset["addresses"] == [{"ip": LAN}] and subset["ports"] == [
        {"name": "http", "port": 8080, "protocol": "TCP"}
    ]
    assert {m["metadata"]["namespace"] for m in objs.values()} == {"llm"}
    # The monitor selects the workstation's Service and not the cluster's, and the cluster's monitor
    # does not select the workstation's (it would scrape it again under the cluster's name).
    cluster_monitor = manifest(p.named("llama-cluster-monitor"))
    selects = lambda m, s: m["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()  # noqa: E731
    assert selects(monitor, service) and not selects(cluster_monitor, service)
    assert not selects(monitor, manifest(p.named("llama-cluster-service")))
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    # With the workstation server's own key (the container's LLAMA_API_KEY), kept secret.
    creds = endpoint["authorization"]["credentials"]
    assert creds == {"name": secret["metadata"]["name"], "key": "api-key"}
    assert "stringData" in p.named("llama-workstation-metrics-key").secret_inputs
    key = p.named("llama-workstation-api-key")
    assert key.urn in p.named("llama-workstation-metrics-key").dependencies
    # After the llm namespace and the monitoring stack (the ServiceMonitor CRD); gone with the cluster.
    kps = next(r for r in p.resources if r.name.endswith("kube-prometheus-stack"))
    ns = p.named("llama-cluster-namespace")
    for name in WORKSTATION_SCRAPE:
        r = p.named(name)
        assert ns.urn in r.dependencies and r.deleted_with and r.parent == p.named("llama-workstation").urn, name
    assert kps.urn in p.named("llama-workstation-monitor").dependencies
    assert p.outputs["llamaWorkstation"]["metrics"] == {"namespace": "llm", "service": "llama-workstation"}
    # Each object passes the strict schema its kind has (kubernetes-validate; the pinned upstream CRD).
    assert {name: problems(obj) for name, obj in objs.items()} == {name: [] for name in objs}


def test_the_workstations_alerts_ship_where_it_is_scraped() -> None:
    rules = manifest(_listening("dev", P3, LAN).named("observability-rules-brain"))["spec"]["groups"]
    scope = Scope(local_groups=("local", "local-private"), llama_services=("llama", "llama-workstation"))
    assert rules == rule_groups("brain", alert_thresholds(P3), scope)


def test_listening_on_every_interface_scrapes_the_hosts_own_address() -> None:
    endpoints = manifest(_listening("dev", P3, "0.0.0.0").named("llama-workstation-metrics-endpoints"))
    assert endpoints["subsets"][0]["addresses"] == [{"ip": "198.51.100.20"}]  # the workstation's `address`


@pytest.mark.parametrize("phase", phase_ids())
def test_the_scrape_target_exists_exactly_where_the_container_and_monitoring_do(phase: str) -> None:
    p = _listening("dev", phase, LAN)
    state = resolve(phase).state
    assert bool(_scrape_objects(p)) == (state.llama.workstation and state.platform.monitoring), phase


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_on_loopback_nothing_is_scraped_and_the_plan_says_why_once(plan: Plan, stack: str) -> None:
    for phase in phase_ids():
        p, state = plan(stack, phase), resolve(phase).state
        assert not _scrape_objects(p), phase
        assert "metrics" not in p.outputs.get("llamaWorkstation", {}), phase
        expected = 1 if state.llama.workstation and state.platform.monitoring else 0
        assert len(_warned(p)) == expected, phase
    (line,) = _warned(plan(stack, P3))
    assert line.startswith("gpu-platform:llama.workstationListen is 127.0.0.1 (loopback)") and "\n" not in line
    assert "firewall admit the K3s nodes on port 8080" in line


def test_the_first_preview_shows_the_scrape_target_too() -> None:
    p = _listening("prod", P3, LAN, preview=True)
    assert _scrape_objects(p) == WORKSTATION_SCRAPE
    assert manifest(p.named("llama-workstation-metrics-endpoints"))["subsets"][0]["addresses"] == [{"ip": LAN}]


def test_migrate_plan_prints_the_loopback_warning_on_one_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "migrate", "plan", "--stack", "dev", "--phase", P3],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stderr.splitlines() if "llama.workstationListen" in line]
    assert lines == [f"warning: {unscraped_warning(LlamaConfig())}"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_policy_pack_passes_the_plan_that_scrapes_the_workstation(stack: str) -> None:
    p = _listening(stack, P3, LAN)
    assert _scrape_objects(p) == WORKSTATION_SCRAPE
    config = read_policy_config(POLICY_DIR / f"config.{stack}.json")
    assert [f"[{v.policy}] {v.urn}" for v in evaluate(p, config) if v.level == "mandatory"] == []


@pytest.mark.parametrize("listen", ["169.254.10.20", "fe80::1", "224.0.0.1"])
def test_a_listen_address_no_endpoints_can_hold_is_refused_before_any_resource(listen: str) -> None:
    raw = harness.read_stack_file(harness.stack_file("dev"))
    raw["llama"] = {**raw["llama"], "workstationListen": listen}
    with pytest.raises(ConfigError) as info:
        config.parse(raw)
    assert "gpu-platform:llama.workstationListen" in str(info.value) and listen in str(info.value)


def test_the_pinned_chart_discovers_servicemonitor_targets_through_endpoints(plan: Plan) -> None:
    # Why Endpoints and not an EndpointSlice or a ScrapeConfig (components/llm/llama.py).
    chart = upstream_root() / "charts" / f"kube-prometheus-stack-{versions.KUBE_PROMETHEUS_STACK_CHART[2]}"
    spec = yaml.safe_load((chart / "values.yaml").read_text())["prometheus"]["prometheusSpec"]
    # Empty: the operator's `endpoints` role, which reads v1 Endpoints, not EndpointSlices.
    assert spec["serviceDiscoveryRole"] == ""
    assert "serviceDiscoveryRole" in (chart / "templates" / "prometheus" / "prometheus.yaml").read_text()
    release = next(
        r
        for r in plan("prod", P3).resources
        if r.type == "kubernetes:helm.sh/v3:Release" and r.inputs["chart"] == "kube-prometheus-stack"
    )
    assert "serviceDiscoveryRole" not in release.inputs["values"]["prometheus"]["prometheusSpec"]
    # ScrapeConfigs: selected by the release label only, and no pinned CRD to validate one against.
    assert spec["scrapeConfigSelectorNilUsesHelmValues"] is True
    assert not (upstream_root() / "crds" / "monitoring.coreos.com" / "ScrapeConfig.yaml").exists()
