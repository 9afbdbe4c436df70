"""The local brain in the real program's recorded plans (components/stack.py wiring)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from migrate.harness import RecordedPlan

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
