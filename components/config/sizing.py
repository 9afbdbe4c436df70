"""How to run a GGUF model on a given GPU: the llama-server arguments, chosen before any resource.

`size_server` is pure: a model from components/catalog/gguf.py, a GPU from components/catalog/gpus.py, the
context wanted per request and the number of parallel slots in; `-ngl`, `-c`, `--parallel`, `-b`,
`-ub`, `-fa` and the memory arithmetic behind them out. A combination that cannot run raises
`SizingError` (a `ConfigError`) naming the config keys at fault, so `pulumi preview` stops with a
message instead of a pod that crash-loops on out-of-memory an hour later.

The numbers, and where they come from:

- Bits per weight per quantisation: llama.cpp `tools/quantize/README.md`, the table measured on
  Llama-3.1-8B (Q4_K_M 4.8944, Q4_K_S 4.6672, Q5_K_M 5.7036, Q6_K 6.5633, Q8_0 8.5008,
  F16 16.0005). Q4_0 is not in that table; its block layout (32 four-bit weights plus one fp16
  scale = 18 bytes per 32 weights) makes it exactly 4.5. Weights bytes = parameters × bpw / 8;
  for the catalog models this lands within 2% of the published file sizes (a test checks it).
- KV cache bytes per token = 2 (K and V) × layers × KV heads × head dim × bytes per element, with
  llama.cpp's default f16 cache (`--cache-type-k/v f16`, 2 bytes). Llama-3.1-70B: 320 KiB/token;
  8B: 128 KiB/token; TinyLlama: 22 KiB/token. llama-server's `-c` is the total over all slots,
  so `-c` = context per request × `--parallel`.
- Compute buffer (estimate): ubatch × (vocab + 8 × hidden) × 4 bytes. The logits of one ubatch
  (ubatch × vocab f32) dominate it; for Llama-3-8B at `-ub 512` that is the ~260 MB llama.cpp
  logs as "CUDA0 compute buffer size".
- Per-GPU fixed cost: 512 MiB for the CUDA context and cuBLAS workspace.
- Safety margin: the larger of 1 GiB per GPU (llama.cpp's own `--fit-target` default, 1024 MiB per
  device) and 5% of the GPU memory.
- Host memory: the layers left on the CPU keep their weights and their slice of the KV cache in
  RAM (llama.cpp puts a layer's KV cache where the layer runs), plus 4 GiB for the process, its
  CPU buffers and the page cache the model file is read through. When the host's memory is
  known (`hosts[].memoryGib`), a sizing that needs more is refused.

Flash attention (`-fa on`) on every GPU target: every GPU in the catalog is Ampere or newer, where
llama.cpp's CUDA FA kernels run, and FA keeps the attention scratch out of the compute buffer.
On CPU it stays off: it saves little there and the CPU path is the dev fallback.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from components.catalog.gguf import GgufModel, resolve
from components.catalog.gpus import GPUS
from components.config.schema import HostConfig, LlamaConfig
from components.core.errors import ConfigError
from components.core.model import Frozen

GIB: Final = 1024**3
MIB: Final = 1024**2

BITS_PER_WEIGHT: Final[dict[str, float]] = {
    "Q4_0": 4.5,
    "Q4_K_S": 4.6672,
    "Q4_K_M": 4.8944,
    "Q5_K_M": 5.7036,
    "Q6_K": 6.5633,
    "Q8_0": 8.5008,
    "F16": 16.0005,
}
KV_BYTES_PER_ELEMENT: Final = 2  # f16 cache, llama.cpp's default
CUDA_OVERHEAD_BYTES: Final = 512 * MIB
MIN_MARGIN_BYTES: Final = GIB
MARGIN_FRACTION: Final = 0.05
DEFAULT_BATCH: Final = 2048  # llama-server's default logical batch
DEFAULT_UBATCH: Final = 512  # llama-server's default physical batch
LARGE_UBATCH: Final = 1024  # faster prompt processing when memory is plentiful
HOST_OVERHEAD_BYTES: Final = 4 * GIB


class SizingError(ConfigError):
    """The model, context and GPU named in config cannot run together."""


@dataclass(frozen=True)
class SizingKeys:
    """The config keys a refusal names, so the message points at what to change."""

    model: str
    context: str
    parallel: str
    gpu: str
    host_memory: str = ""  # the key that states the host's RAM, when config has one


class ServerSizing(Frozen):
    model: str
    gpu: str  # catalog GPU model, or "cpu"
    gpu_count: int
    n_layers: int
    n_gpu_layers: int  # 0 on CPU; n_layers + 1 (the output layer too) when everything fits
    full_offload: bool
    context_per_slot: int
    ctx_size: int  # llama-server -c: the total over all slots
    parallel: int
    batch: int
    ubatch: int
    flash_attn: Literal["on", "off"]
    weights_bytes: int
    kv_bytes: int
    compute_bytes: int
    gpu_budget_bytes: int  # usable GPU memory (after the time-slicing share), 0 on CPU
    gpu_needed_bytes: int  # what the chosen offload puts on the GPU, overheads and margin included

    @property
    def host_needed_bytes(self) -> int:
        """What stays in host RAM: the CPU-side layers with their KV cache, plus the overhead
        (and on the CPU, the compute buffer, which otherwise sits on the GPU)."""
        cpu_layers = max(0, self.n_layers - self.n_gpu_layers)
        on_cpu = int((self.weights_bytes + self.kv_bytes) * cpu_layers / self.n_layers)
        compute = self.compute_bytes if self.gpu == "cpu" else 0
        return on_cpu + compute + HOST_OVERHEAD_BYTES

    def args(self) -> list[str]:
        """The llama-server flags this sizing stands for (model path, host, port etc. come elsewhere)."""
        return [
            "--n-gpu-layers",
            str(self.n_gpu_layers),
            "--ctx-size",
            str(self.ctx_size),
            "--parallel",
            str(self.parallel),
            "--batch-size",
            str(self.batch),
            "--ubatch-size",
            str(self.ubatch),
            "--flash-attn",
            self.flash_attn,
        ]

    def summary(self) -> str:
        offload = "full" if self.full_offload else f"{self.n_gpu_layers}/{self.n_layers} layers"
        where = "CPU" if self.gpu == "cpu" else f"{self.gpu_count}x {self.gpu}"
        return (
            f"{self.model} on {where}: offload {offload}, ctx {self.ctx_size} "
            f"({self.parallel} x {self.context_per_slot}), GPU {_gib(self.gpu_needed_bytes)} of "
            f"{_gib(self.gpu_budget_bytes)}"
        )


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


def weights_bytes(model: GgufModel) -> int:
    return int(model.params_b * 1e9 * BITS_PER_WEIGHT[model.quant] / 8)


def kv_bytes_per_token(model: GgufModel) -> int:
    return 2 * model.n_layers * model.n_kv_heads * model.head_dim * KV_BYTES_PER_ELEMENT


def compute_bytes(model: GgufModel, ubatch: int) -> int:
    return ubatch * (model.vocab + 8 * model.hidden) * 4


def _margin(memory_bytes: int, count: int) -> int:
    return max(MIN_MARGIN_BYTES * count, int(memory_bytes * MARGIN_FRACTION))


def _check_context(model: GgufModel, context: int, parallel: int, keys: SizingKeys) -> None:
    if context < 1 or parallel < 1:
        raise SizingError(f"{keys.context} and {keys.parallel} must be positive (got {context}, {parallel})")
    if context > model.n_ctx_train:
        raise SizingError(
            f"{keys.context}: {context} tokens per request exceeds what {model.name} was trained for "
            f"({model.n_ctx_train}); beyond that the model degrades, so it is refused"
        )


def size_server(
    model: GgufModel,
    gpu_model: str | None,
    *,
    context: int,
    parallel: int,
    keys: SizingKeys,
    gpu_count: int = 1,
    memory_share: int = 1,
    target: Literal["gpu", "cpu"] = "gpu",
    require_full_offload: bool = False,
    host_memory_gib: int | None = None,
) -> ServerSizing:
    """Choose llama-server arguments for `model` on `gpu_count` x `gpu_model` (None: no GPU).

    `memory_share` > 1 means the GPU is time-sliced between that many pods with no memory
    isolation, so this server may count on only its share of the memory. `host_memory_gib`, when
    known, bounds what the layers left on the CPU may use.
    """
    sizing = _size(
        model,
        gpu_model,
        context=context,
        parallel=parallel,
        keys=keys,
        gpu_count=gpu_count,
        memory_share=memory_share,
        target=target,
        require_full_offload=require_full_offload,
    )
    if host_memory_gib is not None and sizing.host_needed_bytes > host_memory_gib * GIB:
        where = (
            "on the CPU" if sizing.gpu == "cpu" else f"with {sizing.n_gpu_layers}/{sizing.n_layers} layers on the GPU"
        )
        raise SizingError(
            f"{keys.model}: {model.name} {where} needs {_gib(sizing.host_needed_bytes)} of host memory "
            f"(weights and KV cache of the CPU-side layers, plus {_gib(HOST_OVERHEAD_BYTES)}); "
            f"{keys.host_memory or 'the host'} has {host_memory_gib} GiB. Lower {keys.context} or "
            f"{keys.parallel}, pick a smaller model, or a host with more memory or a bigger GPU"
        )
    return sizing


def _size(
    model: GgufModel,
    gpu_model: str | None,
    *,
    context: int,
    parallel: int,
    keys: SizingKeys,
    gpu_count: int,
    memory_share: int,
    target: Literal["gpu", "cpu"],
    require_full_offload: bool,
) -> ServerSizing:
    _check_context(model, context, parallel, keys)
    need = _Need(model, context, parallel)
    if target == "cpu" or gpu_model is None:
        if target == "gpu":
            raise SizingError(
                f"{keys.gpu}: no GPU for a GPU target; {model.name} needs a GPU here "
                "(give the host a GPU, or pick a node that has one)"
            )
        return _on_cpu(need)

    total, fixed = _gpu_memory(gpu_model, gpu_count, memory_share, keys)
    # Everything on the GPU: all layers, the whole KV cache, the compute buffer.
    full_need = need.weights + need.kv + compute_bytes(model, DEFAULT_UBATCH) + fixed
    if full_need <= total:
        return _full_offload(need, gpu_model, gpu_count, total=total, fixed=fixed)

    short = f"{model.name} needs {_gib(full_need)} on the GPU for full offload; {gpu_model} x {gpu_count}"
    if memory_share > 1:
        short += f" shared {memory_share} ways"
    short += f" leaves {_gib(total)}"
    if require_full_offload:
        raise SizingError(
            f"{keys.model}: {short}. Partial offload runs at CPU speed and misses the latency targets; "
            f"pick a smaller model or quantisation, lower {keys.context} or {keys.parallel}, or a bigger GPU"
        )
    return _partial_offload(need, gpu_model, gpu_count, total=total, fixed=fixed, short=short, keys=keys)


@dataclass(frozen=True)
class _Need:
    """What serving `model` with `parallel` slots of `context` tokens holds, wherever it runs."""

    model: GgufModel
    context: int  # per slot
    parallel: int

    @property
    def ctx_size(self) -> int:
        return self.context * self.parallel

    @property
    def weights(self) -> int:
        return weights_bytes(self.model)

    @property
    def kv(self) -> int:
        return kv_bytes_per_token(self.model) * self.ctx_size


def _on_cpu(need: _Need) -> ServerSizing:
    batch = min(DEFAULT_UBATCH, need.ctx_size)
    return ServerSizing(
        model=need.model.name,
        gpu="cpu",
        gpu_count=0,
        n_layers=need.model.n_layers,
        n_gpu_layers=0,
        full_offload=False,
        context_per_slot=need.context,
        ctx_size=need.ctx_size,
        parallel=need.parallel,
        batch=batch,
        ubatch=batch,
        flash_attn="off",
        weights_bytes=need.weights,
        kv_bytes=need.kv,
        compute_bytes=compute_bytes(need.model, batch),
        gpu_budget_bytes=0,
        gpu_needed_bytes=0,
    )


def _gpu_memory(gpu_model: str, gpu_count: int, memory_share: int, keys: SizingKeys) -> tuple[int, int]:
    """(the GPU memory this server may count on, the part of it overheads and margin take)."""
    info = GPUS.get(gpu_model)
    if info is None or info.memory_gib <= 0 or gpu_count < 1:
        raise SizingError(f"{keys.gpu}: no GPU memory known for {gpu_model!r} x {gpu_count}")
    if memory_share < 1:
        raise SizingError(f"{keys.gpu}: memory share must be at least 1 (got {memory_share})")
    total = info.memory_gib * GIB * gpu_count // memory_share
    fixed = CUDA_OVERHEAD_BYTES * gpu_count + _margin(total, gpu_count)
    return total, fixed


def _full_offload(need: _Need, gpu_model: str, gpu_count: int, *, total: int, fixed: int) -> ServerSizing:
    model = need.model
    ubatch = DEFAULT_UBATCH
    if need.weights + need.kv + compute_bytes(model, LARGE_UBATCH) + fixed + compute_bytes(model, ubatch) <= total:
        ubatch = LARGE_UBATCH  # room to spare twice over: bigger prompt-processing steps
    needed = need.weights + need.kv + compute_bytes(model, ubatch) + fixed
    return _on_gpu(
        need, gpu_model, gpu_count, n_gpu_layers=model.n_layers + 1, ubatch=ubatch, total=total, needed=needed
    )


def _partial_offload(
    need: _Need, gpu_model: str, gpu_count: int, *, total: int, fixed: int, short: str, keys: SizingKeys
) -> ServerSizing:
    """The layers that fit, each with its weights and its slice of the KV cache."""
    model = need.model
    ubatch = DEFAULT_UBATCH
    per_layer = (need.weights + need.kv) / model.n_layers
    available = total - fixed - compute_bytes(model, ubatch)
    ngl = max(0, math.floor(available / per_layer)) if available > 0 else 0
    ngl = min(ngl, model.n_layers - 1)
    if ngl == 0:
        raise SizingError(
            f"{keys.model}: {short}, not even one layer with its KV cache fits; lower {keys.context} "
            f"or {keys.parallel}, or pick a smaller model"
        )
    needed = int(ngl * per_layer) + compute_bytes(model, ubatch) + fixed
    return _on_gpu(need, gpu_model, gpu_count, n_gpu_layers=ngl, ubatch=ubatch, total=total, needed=needed)


def _on_gpu(
    need: _Need, gpu_model: str, gpu_count: int, *, n_gpu_layers: int, ubatch: int, total: int, needed: int
) -> ServerSizing:
    return ServerSizing(
        model=need.model.name,
        gpu=gpu_model,
        gpu_count=gpu_count,
        n_layers=need.model.n_layers,
        n_gpu_layers=n_gpu_layers,
        full_offload=n_gpu_layers > need.model.n_layers,
        context_per_slot=need.context,
        ctx_size=need.ctx_size,
        parallel=need.parallel,
        batch=max(ubatch, min(DEFAULT_BATCH, need.ctx_size)),
        ubatch=ubatch,
        flash_attn="on",
        weights_bytes=need.weights,
        kv_bytes=need.kv,
        compute_bytes=compute_bytes(need.model, ubatch),
        gpu_budget_bytes=total,
        gpu_needed_bytes=needed,
    )


@dataclass(frozen=True)
class GpuNode:
    """A K3s node that could host the cluster llama server."""

    name: str
    gpu_model: str
    gpu_count: int


@dataclass(frozen=True)
class Placement:
    # Every node with the chosen GPU: where the first pod may land. The model volume is node-local
    # (K3s local-path), so once bound it keeps the server on that node.
    nodes: tuple[str, ...]
    sizing: ServerSizing


def place_on_cluster(
    model: GgufModel,
    nodes: tuple[GpuNode, ...],
    *,
    context: int,
    parallel: int,
    keys: SizingKeys,
    memory_share: int = 1,
    require_full_offload: bool = False,
) -> Placement:
    """Pick the GPU kind the cluster server runs on, and size it for that GPU.

    Prefers a GPU kind where the model fits entirely; among those, the one with the most memory
    bandwidth (decoding is bandwidth-bound, so tokens/s follow it). When none fits entirely and
    partial offload is allowed, the kind that offloads the most layers.
    """
    if not nodes:
        raise SizingError(f"{keys.gpu}: no K3s node has a GPU; the cluster llama server needs one")
    _check_context(model, context, parallel, keys)
    kinds: dict[tuple[str, int], list[str]] = {}
    for node in nodes:
        kinds.setdefault((node.gpu_model, node.gpu_count), []).append(node.name)
    options: list[tuple[ServerSizing, tuple[str, ...]]] = []
    errors: list[str] = []
    for (gpu_model, count), names in sorted(kinds.items()):
        try:
            sizing = size_server(
                model,
                gpu_model,
                gpu_count=count,
                context=context,
                parallel=parallel,
                keys=keys,
                memory_share=memory_share,
                require_full_offload=require_full_offload,
            )
        except SizingError as exc:
            errors.append(str(exc))
            continue
        options.append((sizing, tuple(sorted(names))))
    if not options:
        raise SizingError(
            f"{keys.model}: {model.name} fits no K3s GPU node ({', '.join(sorted({n.gpu_model for n in nodes}))}):\n"
            + "\n".join(errors)
        )

    def rank(option: tuple[ServerSizing, tuple[str, ...]]) -> tuple[bool, int, int]:
        sizing = option[0]
        return (sizing.full_offload, sizing.n_gpu_layers, GPUS[sizing.gpu].bandwidth_gbps * sizing.gpu_count)

    best, chosen = max(options, key=rank)
    return Placement(nodes=chosen, sizing=best)


# --- the two servers of a stack -----------------------------------------------------------------

_NS = "gpu-platform:"


def plan_cluster(llama: LlamaConfig, k3s_nodes: Sequence[HostConfig], memory_share: int) -> Placement:
    """Where the cluster llama server runs and with which arguments, among `k3s_nodes`.

    A time-sliced GPU (`gpuTimeSlicingReplicas` > 1, passed as `memory_share`) has no memory
    isolation, so the server may count on only its share of the memory.
    """
    model = resolve(llama.cluster_model, llama.model_sha256, key=f"{_NS}llama.clusterModel")
    nodes = tuple(
        GpuNode(name=h.name, gpu_model=spec.model, gpu_count=spec.count)
        for h in k3s_nodes
        if (spec := h.gpu_spec) is not None
    )
    context_key = "llama.clusterContextSize" if llama.cluster_context_size else "llama.contextSize"
    return place_on_cluster(
        model,
        nodes,
        context=llama.cluster_context,
        parallel=llama.parallel,
        keys=SizingKeys(
            model=f"{_NS}llama.clusterModel",
            context=f"{_NS}{context_key}",
            parallel=f"{_NS}llama.parallel",
            gpu=f"{_NS}hosts",
        ),
        memory_share=memory_share,
        require_full_offload=llama.require_full_offload,
    )


def plan_workstation(llama: LlamaConfig, host: HostConfig | None) -> ServerSizing | None:
    """The workstation server's arguments; None when the stack has no workstation."""
    if host is None:
        return None
    model = resolve(llama.workstation_model, llama.model_sha256, key=f"{_NS}llama.workstationModel")
    spec = host.gpu_spec
    context_key = "llama.workstationContextSize" if llama.workstation_context_size else "llama.contextSize"
    return size_server(
        model,
        spec.model if spec else None,
        gpu_count=spec.count if spec else 1,
        context=llama.workstation_context,
        parallel=llama.parallel,
        keys=SizingKeys(
            model=f"{_NS}llama.workstationModel",
            context=f"{_NS}{context_key}",
            parallel=f"{_NS}llama.parallel",
            gpu=f"{_NS}hosts[{host.name}].gpu",
            host_memory=f"{_NS}hosts[{host.name}].memoryGib",
        ),
        target="gpu",
        require_full_offload=llama.require_full_offload,
        host_memory_gib=host.memory_gib,
    )
