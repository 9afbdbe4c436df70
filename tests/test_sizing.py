"""The llama-server sizing (components/config/sizing.py): table-driven rows, refusals, and the config hook."""

from __future__ import annotations

from typing import Any

import pytest

from components.catalog.gguf import MODELS
from components.config.load import parse
from components.config.schema import StackConfig
from components.config.sizing import (
    GIB,
    GpuNode,
    Placement,
    SizingError,
    SizingKeys,
    kv_bytes_per_token,
    place_on_cluster,
    plan_cluster,
    plan_workstation,
    size_server,
    weights_bytes,
)
from components.core.errors import ConfigError
from migrate.harness import read_stack_file, stack_file

M70 = MODELS["llama-3.1-70b-instruct-q4_k_m"]
M8 = MODELS["llama-3.1-8b-instruct-q4_k_m"]
TINY = MODELS["tinyllama-1.1b-chat-q4_k_m"]
KEYS = SizingKeys(model="llama.clusterModel", context="llama.contextSize", parallel="llama.parallel", gpu="hosts")


# model, gpu, context per request, parallel, expected (n_gpu_layers, full offload, ubatch, flash attention)
ROWS: list[tuple[str, Any, str | None, int, int, tuple[int | range, bool, int, str]]] = [
    # 43 GB of weights + 10 GiB of KV for 4 x 8192 tokens fit the H100 with room to spare.
    ("70B Q4 on H100 80GB", M70, "H100-80GB", 8192, 4, (81, True, 1024, "on")),
    # 40 GiB of weights alone exceed the A100-40GB: about three quarters of the layers.
    ("70B Q4 on A100 40GB", M70, "A100-40GB", 8192, 4, (range(50, 66), False, 512, "on")),
    # Under half the layers fit on a 24 GB card.
    ("70B Q4 on RTX 4090 24GB", M70, "RTX4090-24GB", 8192, 2, (range(30, 42), False, 512, "on")),
    ("8B Q4 on RTX 4090 24GB", M8, "RTX4090-24GB", 8192, 2, (33, True, 1024, "on")),
    ("8B Q4 on A10 24GB", M8, "A10-24GB", 8192, 2, (33, True, 1024, "on")),
    ("TinyLlama on CPU only (dev)", TINY, None, 2048, 2, (0, False, 512, "off")),
]


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_sizing_rows(row: tuple[str, Any, str | None, int, int, Any]) -> None:
    _, model, gpu, context, parallel, (ngl, full, ubatch, fa) = row
    s = size_server(model, gpu, context=context, parallel=parallel, keys=KEYS, target="cpu" if gpu is None else "gpu")
    if isinstance(ngl, range):
        assert s.n_gpu_layers in ngl
    else:
        assert s.n_gpu_layers == ngl
    assert s.full_offload is full
    assert s.ubatch == ubatch and s.flash_attn == fa
    assert s.ctx_size == context * parallel and s.parallel == parallel
    assert s.batch >= s.ubatch
    if gpu is not None:
        # Whatever was offloaded fits the GPU with the margin included.
        assert s.gpu_needed_bytes <= s.gpu_budget_bytes
    args = s.args()
    assert args[args.index("--n-gpu-layers") + 1] == str(s.n_gpu_layers)
    assert args[args.index("--ctx-size") + 1] == str(context * parallel)
    assert args[args.index("--flash-attn") + 1] == fa


def test_full_offload_puts_the_output_layer_on_the_gpu_too() -> None:
    s = size_server(M70, "H100-80GB", context=8192, parallel=4, keys=KEYS)
    assert s.n_gpu_layers == M70.n_layers + 1


def test_partial_offload_fills_the_gpu_but_one_more_layer_would_not_fit() -> None:
    s = size_server(M70, "A100-40GB", context=8192, parallel=4, keys=KEYS)
    per_layer = (s.weights_bytes + s.kv_bytes) / M70.n_layers
    assert s.gpu_needed_bytes <= s.gpu_budget_bytes < s.gpu_needed_bytes + per_layer


def test_two_gpus_hold_what_one_cannot() -> None:
    one = size_server(M70, "A100-40GB", context=8192, parallel=4, keys=KEYS)
    two = size_server(M70, "A100-40GB", gpu_count=2, context=8192, parallel=4, keys=KEYS)
    assert not one.full_offload and two.full_offload


def test_a_time_sliced_gpu_only_counts_its_share() -> None:
    alone = size_server(M8, "A10-24GB", context=8192, parallel=2, keys=KEYS)
    shared = size_server(M8, "A10-24GB", context=8192, parallel=2, keys=KEYS, memory_share=4)
    assert alone.full_offload and not shared.full_offload
    assert shared.gpu_budget_bytes == 6 * GIB


# --- the recorded numbers --------------------------------------------------------------------


@pytest.mark.parametrize("model", list(MODELS.values()), ids=list(MODELS))
def test_weights_estimate_matches_the_published_file_size(model: Any) -> None:
    # params x bits-per-weight from llama.cpp's quantize table lands within 2% of the real file.
    assert weights_bytes(model) == pytest.approx(model.file_gb * 1e9, rel=0.02)


def test_kv_cache_bytes_per_token() -> None:
    # 2 (K and V) x layers x KV heads x head dim x 2 bytes (f16)
    assert kv_bytes_per_token(M70) == 2 * 80 * 8 * 128 * 2 == 320 * 1024
    assert kv_bytes_per_token(M8) == 128 * 1024
    assert kv_bytes_per_token(TINY) == 2 * 22 * 4 * 64 * 2


# --- refusals ----------------------------------------------------------------------------------


def test_more_context_than_the_model_was_trained_for_is_refused() -> None:
    with pytest.raises(SizingError, match=r"llama\.contextSize: 4096 tokens per request exceeds .* \(2048\)"):
        size_server(TINY, "A10-24GB", context=4096, parallel=1, keys=KEYS)


def test_a_gpu_target_without_a_gpu_is_refused() -> None:
    with pytest.raises(SizingError, match=r"hosts: no GPU for a GPU target"):
        size_server(M8, None, context=4096, parallel=1, keys=KEYS, target="gpu")


def test_context_that_fits_with_no_layer_offloaded_is_refused() -> None:
    # 16 slots x 128k tokens is 256 GiB of KV cache, 8 GiB for each layer: not one layer with its
    # cache fits a quarter of a time-sliced A10.
    with pytest.raises(SizingError, match=r"not even one layer .* lower llama\.contextSize or llama\.parallel"):
        size_server(M8, "A10-24GB", context=131072, parallel=16, keys=KEYS, memory_share=4)


def test_partial_offload_is_refused_when_full_offload_is_required() -> None:
    with pytest.raises(SizingError, match=r"llama\.clusterModel: .* needs .* for full offload; A100-40GB x 1"):
        size_server(M70, "A100-40GB", context=8192, parallel=4, keys=KEYS, require_full_offload=True)


# --- placement on the cluster -----------------------------------------------------------------


def test_placement_prefers_the_gpu_that_holds_the_whole_model() -> None:
    nodes = (
        GpuNode("server-1", "A10-24GB", 1),
        GpuNode("gpu-agent-gcp", "A100-40GB", 1),
        GpuNode("gpu-agent-2", "H100-80GB", 1),
        GpuNode("gpu-agent-1", "H100-80GB", 1),
    )
    p = place_on_cluster(M70, nodes, context=8192, parallel=4, keys=KEYS)
    assert p.nodes == ("gpu-agent-1", "gpu-agent-2")
    assert p.sizing.gpu == "H100-80GB" and p.sizing.full_offload


def test_placement_among_full_fits_takes_the_fastest_memory() -> None:
    nodes = (GpuNode("a", "A10-24GB", 1), GpuNode("b", "RTX4090-24GB", 1))
    p = place_on_cluster(M8, nodes, context=4096, parallel=2, keys=KEYS)
    assert p.nodes == ("b",)  # 1008 GB/s beats 600 GB/s: decoding is bandwidth-bound


def test_placement_refuses_when_no_gpu_can_hold_the_model() -> None:
    nodes = (GpuNode("server-1", "A10-24GB", 1),)
    with pytest.raises(SizingError, match=r"fits no K3s GPU node \(A10-24GB\)"):
        place_on_cluster(M70, nodes, context=8192, parallel=4, keys=KEYS, require_full_offload=True)


# --- the stacks, at config time ---------------------------------------------------------------


def _raw(stack: str) -> dict[str, Any]:
    return read_stack_file(stack_file(stack))


def _cluster(cfg: StackConfig) -> Placement:
    return plan_cluster(cfg.llama, cfg.k3s_nodes, cfg.gpu_time_slicing_replicas)


def test_prod_runs_the_70b_with_full_offload_on_the_h100_agents() -> None:
    p = _cluster(parse(_raw("prod")))
    assert p.nodes == ("gpu-agent-1", "gpu-agent-2")
    assert p.sizing.model == "llama-3.1-70b-instruct-q4_k_m" and p.sizing.gpu == "H100-80GB"
    assert p.sizing.full_offload and p.sizing.n_gpu_layers == 81


def test_dev_runs_tinyllama_on_its_a10_share_and_8b_on_the_workstation() -> None:
    cfg = parse(_raw("dev"))
    p = _cluster(cfg)
    assert p.nodes == ("dev-gpu-1",) and p.sizing.model == "tinyllama-1.1b-chat-q4_k_m"
    assert p.sizing.gpu_budget_bytes == 24 * GIB // cfg.gpu_time_slicing_replicas
    w = plan_workstation(cfg.llama, cfg.workstation)
    assert w is not None and w.gpu == "RTX4090-24GB" and w.full_offload


@pytest.mark.parametrize(
    ("stack", "llama", "message"),
    [
        ("dev", {"clusterContextSize": 4096}, r"gpu-platform:llama\.clusterContextSize: 4096 tokens per request"),
        (
            "prod",
            {"clusterModel": "llama-3.1-70b-instruct-q4_k_m", "parallel": 32, "contextSize": 131072},
            r"gpu-platform:llama\.clusterModel: .* fits no K3s GPU node",
        ),
        ("prod", {"workstationModel": "llama-3.1-70b-instruct-q4_k_m"}, r"gpu-platform:llama\.workstationModel: "),
    ],
)
def test_bad_combinations_are_refused_when_the_config_is_parsed(
    stack: str, llama: dict[str, Any], message: str
) -> None:
    raw = _raw(stack)
    raw["llama"] = {**raw["llama"], **llama}
    with pytest.raises(ConfigError, match=message):
        parse(raw)


def test_a_workstation_without_a_gpu_is_refused_at_config_time() -> None:
    raw = _raw("dev")
    raw["hosts"] = [{k: v for k, v in h.items() if k != "gpu"} for h in raw["hosts"]]
    with pytest.raises(ConfigError, match=r"gpu-platform:hosts\[workstation\]\.gpu: no GPU for a GPU target"):
        parse(raw)


def test_partial_offload_is_accepted_when_the_stack_says_so() -> None:
    raw = _raw("prod")
    raw["llama"] = {**raw["llama"], "workstationModel": "llama-3.1-70b-instruct-q4_k_m", "requireFullOffload": False}
    cfg = parse(raw)
    w = plan_workstation(cfg.llama, cfg.workstation)
    assert w is not None and not w.full_offload and 0 < w.n_gpu_layers < 80


# --- host memory --------------------------------------------------------------------------------


def test_the_cpu_side_layers_count_with_their_kv_cache() -> None:
    s = size_server(M70, "RTX4090-24GB", context=8192, parallel=2, keys=KEYS)
    cpu_layers = s.n_layers - s.n_gpu_layers
    cpu_share = (s.weights_bytes + s.kv_bytes) * cpu_layers / s.n_layers
    assert s.host_needed_bytes == int(cpu_share) + 4 * GIB
    full = size_server(M70, "H100-80GB", context=8192, parallel=4, keys=KEYS)
    assert full.host_needed_bytes == 4 * GIB  # everything on the GPU: the process overhead only
    cpu = size_server(TINY, None, context=2048, parallel=2, keys=KEYS, target="cpu")
    assert cpu.host_needed_bytes > cpu.weights_bytes + cpu.kv_bytes


@pytest.mark.parametrize(
    ("model", "gpu", "host_gib", "fits"),
    [
        # 70B Q4 half on a 4090: ~24 GiB of weights and KV stay in RAM, plus 4 GiB.
        (M70, "RTX4090-24GB", 64, True),
        (M70, "RTX4090-24GB", 16, False),
        # 70B Q4 on the CPU alone: 40 GiB of weights will not go into 32 GiB, whatever the GPU.
        (M70, None, 32, False),
        (TINY, None, 8, True),
    ],
)
def test_host_memory_bounds_what_stays_on_the_cpu(model: Any, gpu: str | None, host_gib: int, fits: bool) -> None:
    keys = SizingKeys(model="m", context="c", parallel="p", gpu="g", host_memory="hosts[workstation].memoryGib")
    target = "cpu" if gpu is None else "gpu"
    if fits:
        s = size_server(model, gpu, context=2048, parallel=2, keys=keys, target=target, host_memory_gib=host_gib)
        assert s.host_needed_bytes <= host_gib * GIB
        return
    with pytest.raises(SizingError, match=rf"host memory .*hosts\[workstation\]\.memoryGib has {host_gib} GiB"):
        size_server(model, gpu, context=2048, parallel=2, keys=keys, target=target, host_memory_gib=host_gib)


def test_a_workstation_without_enough_memory_is_refused_when_the_config_is_parsed() -> None:
    raw = read_stack_file(stack_file("prod"))
    # The 70B on the 4090 workstation: half its layers on the CPU, which 16 GiB cannot hold.
    raw["llama"] = {**raw["llama"], "workstationModel": "llama-3.1-70b-instruct-q4_k_m", "requireFullOffload": False}
    hosts = [dict(h) for h in raw["hosts"]]
    for h in hosts:
        if h["role"] == "workstation":
            h["memoryGib"] = 16
    raw["hosts"] = hosts
    with pytest.raises(ConfigError, match=r"gpu-platform:hosts\[workstation\]\.memoryGib has 16 GiB"):
        parse(raw)
