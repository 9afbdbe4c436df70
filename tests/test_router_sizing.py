"""The router's sizing rule (components/config/router_sizing.py) and the pod it shapes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from components.catalog.gguf import MODELS
from components.config import router_sizing as rs
from components.config.sizing import SizingKeys, size_server
from migrate import harness
from tests.conftest import ROOT
from tests.fakes.llama_recording import brain

KEYS = SizingKeys(model="m", context="c", parallel="p", gpu="g")


def _server(model: str, gpu: str | None, parallel: int = 4):  # type: ignore[no-untyped-def]
    return size_server(MODELS[model], gpu, context=2048, parallel=parallel, keys=KEYS, target="gpu" if gpu else "cpu")


def test_the_ceiling_is_parallel_slots_times_bandwidth_over_weight_bytes() -> None:
    server = _server("llama-3.1-70b-instruct-q4_k_m", "H100-80GB")
    # 4 slots x 2000 GB/s / ~43 GB of Q4_K_M weights: about 186 tokens/s in all.
    assert rs.ceiling_tps(server) == pytest.approx(4 * 2000e9 / server.weights_bytes)
    assert 150 < rs.ceiling_tps(server) < 220


def test_the_router_gets_the_cores_the_ceiling_needs_with_headroom() -> None:
    for model, gpu, parallel in (
        ("llama-3.1-70b-instruct-q4_k_m", "H100-80GB", 4),
        ("llama-3.1-8b-instruct-q4_k_m", "H100-80GB", 8),
        ("llama-3.1-8b-instruct-q4_k_m", "GH200-96GB", 4),
        ("llama-3.1-8b-instruct-q4_k_m", None, 2),
    ):
        server = _server(model, gpu, parallel)
        sized = rs.size_router(server, replicas=2)
        needed = rs.ceiling_tps(server) * rs.CPU_PER_CHUNK_S * rs.HEADROOM
        assert sized.cores_needed == pytest.approx(needed)
        # Workers are the pod's CPUs, and all pods together cover what the ceiling needs.
        assert sized.cpu_millicores == sized.workers * 1000
        assert 1 <= sized.workers <= rs.MAX_WORKERS
        assert sized.replicas * sized.workers >= needed
        assert sized.replicas >= 2


def test_a_fast_server_gets_more_router_replicas_not_bigger_pods() -> None:
    small = rs.size_router(_server("llama-3.1-70b-instruct-q4_k_m", "H100-80GB"), replicas=1)
    fast = rs.size_router(_server("llama-3.1-8b-instruct-q4_k_m", "H100-80GB", 8), replicas=1)
    assert fast.ceiling_tps > 10 * small.ceiling_tps
    assert fast.workers == rs.MAX_WORKERS
    assert fast.replicas == math.ceil(fast.cores_needed / rs.MAX_WORKERS) > small.replicas


def test_a_server_faster_than_ten_router_pods_can_follow_gets_ten_and_says_so() -> None:
    # 16 slots of the 8B model on an H100: ~22 router cores, 12 pods of two workers by the rule.
    sized = rs.size_router(_server("llama-3.1-8b-instruct-q4_k_m", "H100-80GB", 16), replicas=2)
    assert sized.capped and sized.replicas == rs.MAX_REPLICAS and sized.workers == rs.MAX_WORKERS
    assert sized.follows_tps < sized.ceiling_tps
    assert f"capped at {rs.MAX_REPLICAS} pods, which follow {sized.follows_tps:.0f} tokens/s" in sized.summary()
    within = rs.size_router(_server("llama-3.1-8b-instruct-q4_k_m", "H100-80GB", 14), replicas=2)
    assert within.replicas == rs.MAX_REPLICAS and not within.capped and "capped" not in within.summary()


def test_dev_with_more_slots_than_its_router_can_follow_plans_with_a_warning(tmp_path: Path) -> None:
    """dev's TinyLlama on the CPU with llama.parallel 7: the bandwidth bound asks for 11 router pods.
    Before, RouterArgs refused 11 with a pydantic traceback after most of the stack was registered."""
    doc = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    doc["config"]["gpu-platform:llama"]["parallel"] = 7
    changed = tmp_path / "Pulumi.dev.yaml"
    changed.write_text(yaml.safe_dump(doc))
    plan = harness.record("dev", phase="p3-local-brain", stack_path=changed)
    deployment = next(r for r in plan.resources if r.name == "llm-router-deployment")
    assert deployment.inputs["spec"]["replicas"] == rs.MAX_REPLICAS
    assert any("llama.parallel: 7 slots" in w and "may cap the server" in w for w in plan.warnings)


def test_the_configured_replicas_are_a_floor() -> None:
    sized = rs.size_router(_server("llama-3.1-70b-instruct-q4_k_m", "H100-80GB"), replicas=5)
    assert sized.replicas == 5 and sized.workers == 1


def test_the_recorded_router_pod_runs_the_sized_workers_with_litellm_production_settings() -> None:
    plan = brain("prod")
    spec = plan.named("llm-router-deployment").inputs["spec"]
    (c,) = spec["template"]["spec"]["containers"]
    workers = int(c["args"][c["args"].index("--num_workers") + 1])
    assert c["resources"]["requests"]["cpu"] == f"{workers * 1000}m"
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["LITELLM_LOG"] == "ERROR"
    sizing = plan.outputs["router"]["sizing"]
    assert sizing.startswith(f"router: {int(spec['replicas'])} x {workers} worker(s)"), sizing
