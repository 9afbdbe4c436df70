"""The router's sizing rule (components/config/router_sizing.py) and the pod it shapes."""

from __future__ import annotations

import math

import pytest

from components.catalog.gguf import MODELS
from components.config import router_sizing as rs
from components.config.sizing import SizingKeys, size_server
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
        ("tinyllama-1.1b-chat-q4_k_m", "GH200-96GB", 16),
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
    fast = rs.size_router(_server("tinyllama-1.1b-chat-q4_k_m", "GH200-96GB", 32), replicas=1)
    assert fast.ceiling_tps > 10 * small.ceiling_tps
    assert fast.workers == rs.MAX_WORKERS
    assert fast.replicas == math.ceil(fast.cores_needed / rs.MAX_WORKERS) > small.replicas


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
