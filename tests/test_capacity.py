"""Whether every phase's pods fit the stack's K3s nodes by their requests (migrate/capacity.py).

Dev runs everything on one node: llama-server, the router sized for TinyLlama's ceiling (4 pods x 2
workers, components/config/router_sizing.py), the platform's services and data stores.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import yaml

from components.catalog.gpus import LAMBDA_INSTANCE_TYPES
from components.cluster import k3s
from components.config.load import parse
from components.config.schema import StackConfig
from components.core.errors import ConfigError
from migrate import capacity, cli, harness, policy_runner
from migrate.capacity import GI, MI, Request
from migrate.harness import RecordedPlan
from tests.conftest import STACKS, recorded, upstream_root
from tests.test_k3s import PROD, render

PHASES = ("p2a-k3s", "p2b-services", "p2c-optimize", "p3-local-brain", "p4-decommission")


def config(stack: str) -> StackConfig:
    return parse(harness.read_stack_file(harness.stack_file(stack)))


def with_spec(plan: RecordedPlan, name: str, **spec: Any) -> RecordedPlan:
    """`plan` with the `spec` of resource `name` changed (replicas, a container's requests)."""
    resources = tuple(
        dataclasses.replace(r, inputs={**r.inputs, "spec": {**r.inputs["spec"], **spec}}) if r.name == name else r
        for r in plan.resources
    )
    return dataclasses.replace(plan, resources=resources)


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("stack", STACKS)
def test_every_phase_fits_its_nodes(stack: str, phase: str) -> None:
    plan = recorded(stack, phase)
    assert capacity.check(plan, config(stack)) == [], capacity.summary(plan, config(stack))


def test_dev_schedules_the_router_at_tinyllamas_ceiling_on_its_one_node() -> None:
    plan = recorded("dev", "p3-local-brain")
    router = next(p for p in capacity.pods(plan) if p.resource == "llm-router-deployment")
    assert (router.count, router.each.cpu_m) == (4, 2000)  # 4 pods x 2 workers, one core each
    (node,) = capacity.nodes(config("dev"), "p3-local-brain")
    # gpu_1x_a10: 30 vCPUs, 226 GiB less the kubelet's 100Mi eviction threshold; the A10 in 4 time slices.
    assert node.allocatable == Request(cpu_m=30_000, memory=226 * GI - 100 * MI, gpus=4)
    wanted = capacity._demand(capacity.pods(plan), [node], [node])
    assert router.each.times(4).cpu_m < wanted.cpu_m <= node.allocatable.cpu_m


def test_a_phase_that_does_not_fit_fails_with_the_resource_and_the_figures() -> None:
    plan = with_spec(recorded("dev", "p3-local-brain"), "llm-router-deployment", replicas=12)
    (problem,) = capacity.check(plan, config("dev"))
    assert problem.startswith("dev p3-local-brain: CPU: the pods request 33.92 CPU, ")
    assert "on all nodes (dev-gpu-1), which allocate 30 CPU, 225.9 GiB, 4 GPU" in problem
    assert "largest: llm-router-deployment 12 x 2 CPU, 0.5 GiB, 0 GPU" in problem


def test_a_pod_larger_than_every_node_it_may_use_is_named() -> None:
    plan = recorded("prod", "p3-local-brain")
    llama = plan.named("llama-cluster-deployment")
    template = llama.inputs["spec"]["template"]
    container = {**template["spec"]["containers"][0]}
    container["resources"] = {"requests": {"cpu": "32", "memory": "4Gi", "nvidia.com/gpu": "1"}}
    spec = {**template["spec"], "containers": [container, *template["spec"]["containers"][1:]]}
    problems = capacity.check(
        with_spec(plan, "llama-cluster-deployment", template={**template, "spec": spec}), config("prod")
    )
    assert any(
        p.startswith("prod p3-local-brain: one pod of llama-cluster-deployment requests 32 CPU, 4.0 GiB, 1 GPU")
        and "gpu-agent-gcp 12 CPU" in p
        for p in problems
    ), problems


def test_pods_that_avoid_the_gpu_taint_must_fit_the_untainted_nodes() -> None:
    # prod: three untainted servers (30 vCPUs each), three tainted GPU agents. 90 one-core router
    # pods fit the six nodes together but not the three they may use.
    plan = recorded("prod", "p3-local-brain")
    problems = capacity.check(with_spec(plan, "llm-router-deployment", replicas=90), config("prod"))
    assert len(problems) == 1, problems
    assert "on the nodes without the GPU taint (server-1, server-2, server-3), which allocate 90 CPU" in problems[0]


def test_gpu_requests_must_fit_the_advertised_gpus() -> None:
    # dev's one A10, time-sliced into 4 from p2c on: a fifth llama-server pod has no GPU left.
    plan = with_spec(recorded("dev", "p3-local-brain"), "llama-cluster-deployment", replicas=5)
    problems = capacity.check(plan, config("dev"))
    assert any("GPUs: the pods request" in p and "4 GPU" in p for p in problems), problems


def test_requests_are_read_as_kubernetes_quantities() -> None:
    assert [capacity.cpu_millicores(v) for v in ("500m", "2", 1.0, "2000m", 0.25)] == [500, 2000, 1000, 2000, 250]
    assert [capacity.memory_bytes(v) for v in ("512Mi", "1Gi", "1G", "64Mi", 1024)] == [
        512 * MI,
        GI,
        10**9,
        64 * MI,
        1024,
    ]
    with pytest.raises(ConfigError, match="'4 GB'"):
        capacity.memory_bytes("4 GB")
    # An init container counts only where it is larger than the containers together (llama's fetch).
    spec = {
        "containers": [{"resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}, {"resources": {}}],
        "initContainers": [{"resources": {"requests": {"cpu": "3", "memory": "256Mi"}}}],
    }
    assert capacity._pod_request(spec) == Request(cpu_m=3000, memory=GI)


def test_a_node_size_no_source_states_is_refused_not_guessed() -> None:
    cfg = config("dev")
    host = cfg.k3s_nodes[0]
    assert host.lambda_ is not None
    candidate = host.lambda_.candidates[0].model_copy(update={"instance_type": "gpu_1x_a100"})
    odd = host.model_copy(update={"lambda_": host.lambda_.model_copy(update={"candidates": (candidate,)})})
    with pytest.raises(ConfigError, match="host dev-gpu-1: the vCPUs and RAM of gpu_1x_a100 are not in"):
        capacity.node_size(odd)


def test_the_chart_daemons_request_what_the_pinned_charts_say() -> None:
    """CHART_DAEMONS against the charts' values.yaml at the pinned versions."""
    root = upstream_root() / "charts"
    alloy = yaml.safe_load((root / "alloy-1.5.1" / "values.yaml").read_text())
    dcgm = yaml.safe_load((root / "dcgm-exporter-4.8.2" / "values.yaml").read_text())
    for chart, requests in (
        ("alloy", alloy["configReloader"]["resources"]["requests"]),
        ("dcgm-exporter", dcgm["resources"]["requests"]),
    ):
        each, _ = capacity.CHART_DAEMONS[chart]
        assert each == Request(capacity.cpu_millicores(requests["cpu"]), capacity.memory_bytes(requests["memory"]))
    # Alloy's own container requests nothing by default, so only the reloader counts.
    assert not (alloy["alloy"].get("resources") or {}).get("requests")


def test_no_node_reserves_more_than_the_kubelets_eviction_threshold() -> None:
    """The allocatable rule assumes K3s's kubelet runs with no kube-reserved or system-reserved."""
    for plan in k3s.plan_nodes(PROD):
        rendered = render(plan.name)
        assert not any("kubelet" in key or "reserved" in key for key in rendered), rendered


def test_migrate_check_fails_a_phase_whose_pods_do_not_fit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same check runs in `migrate check` (so in `make check`, `forward`'s offline check and a
    pull request's run), beside the policy pack. Dev's node as if it had 16 vCPUs: p3 does not fit."""
    a10 = LAMBDA_INSTANCE_TYPES["gpu_1x_a10"]
    monkeypatch.setitem(LAMBDA_INSTANCE_TYPES, "gpu_1x_a10", a10.model_copy(update={"vcpus": 16}))
    assert cli.main(["check", "--stack", "dev", "--phase", "p2c-optimize", "--phase", "p3-local-brain"]) == 1
    out = capsys.readouterr().out
    assert "p2c-optimize       clean" in out
    assert "[mandatory] pods-fit-nodes: 1 resource(s)" in out
    assert "(stack): dev p3-local-brain: CPU: the pods request 17.92 CPU" in out
    assert "which allocate 16 CPU, 225.9 GiB, 4 GPU; largest: llm-router-deployment 4 x 2 CPU" in out


def test_a_node_of_unknown_size_is_reported_as_not_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    a10 = LAMBDA_INSTANCE_TYPES["gpu_1x_a10"]
    monkeypatch.setitem(LAMBDA_INSTANCE_TYPES, "gpu_1x_a10", a10.model_copy(update={"vcpus": None}))
    (note,) = policy_runner.capacity_violations(recorded("dev", "p3-local-brain"), None)
    assert (note.policy, note.level) == ("pods-fit-nodes", "advisory")
    assert note.message.startswith("not checked: host dev-gpu-1: the vCPUs and RAM of gpu_1x_a10 are not in")
    # A preview is not checked at all: its replica counts may be unknown.
    assert (
        policy_runner.capacity_violations(dataclasses.replace(recorded("dev", "p3-local-brain"), preview=True), None)
        == []
    )
