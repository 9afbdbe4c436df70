"""How much CPU the router needs so that it can never cap the GPU: pure, from the llama sizing.

The LiteLLM proxy parses and re-serialises every streamed chunk, and llama-server streams one
chunk per token, so the router's CPU grows with the tokens/s the cluster server produces in all.
The rule:

    ceiling  = parallel slots x card bandwidth / model weight bytes      (tokens/s, all clients)
    cores    = ceiling x CPU per chunk x HEADROOM
    workers  = cores per pod, 1..MAX_WORKERS   (LiteLLM: one worker per CPU; its production guide)
    replicas = max(router.replicas, ceil(cores / workers))
    request  = workers x 1000m per pod

The ceiling is an upper bound on what the GPU can stream: each decode step reads every weight
once, so one slot's rate is at most bandwidth / weight bytes, and a step serves at most `parallel`
slots. A slower real rate (KV reads, partial offload) only leaves the router more room. On the CPU
(dev) the same holds with CPU_BANDWIDTH_GBPS.

CPU_PER_CHUNK_S is measured, not guessed: `python -m tests.real.router_bench` runs the real proxy
as rendered in front of the real llama-server and reads the proxy's CPU time (its process and
workers, /proc/<pid>/stat) over a run of streamed chunks; benchmarks/README.md has the run.
"""

from __future__ import annotations

import math
from typing import Final

from components.catalog.gpus import GPUS
from components.config.sizing import ServerSizing
from components.core.model import Frozen

# Router CPU seconds per streamed chunk: 1.72-1.74 ms in two runs of tests/real/router_bench.py
# (benchmarks/README.md, "Router sizing": the real proxy as rendered, 1 worker, LiteLLM 1.104.8, on
# the 2-core development VM at load average 10-11). Contention inflates CPU time, so a quiet
# machine measures less and the figure errs towards more router CPU.
CPU_PER_CHUNK_S: Final = 0.0017
# At the GPU's ceiling the router is at most half busy: headroom for bursts, the fixed cost per
# request (authentication, routing, metrics) and a pod lost to a drain.
HEADROOM: Final = 2.0
# Two workers (two cores) per pod at most, so a pod still schedules beside the GPU server on a
# small node; more CPU comes as more replicas.
MAX_WORKERS: Final = 2
# The most router pods the router component runs (RouterArgs.replicas). The ceiling is a bandwidth
# bound, far above what a small model really streams (kernel launches and sampling dominate there), so
# a server whose bound needs more pods gets this many and the plan says so (`capped`), not a refusal.
MAX_REPLICAS: Final = 10
# A generous host memory bandwidth (DDR5, several channels) for servers that run on the CPU.
CPU_BANDWIDTH_GBPS: Final = 200


class RouterSizing(Frozen):
    ceiling_tps: float  # what the cluster server can stream at most, all slots together
    cores_needed: float
    workers: int  # LiteLLM --num_workers per pod
    cpu_millicores: int  # the pod's CPU request: one core per worker
    replicas: int
    capped: bool = False  # the ceiling needs more than MAX_REPLICAS pods; the router may cap the server

    @property
    def follows_tps(self) -> float:
        """Tokens/s the sized router follows with its headroom intact."""
        return self.replicas * self.workers / (CPU_PER_CHUNK_S * HEADROOM)

    def summary(self) -> str:
        text = (
            f"router: {self.replicas} x {self.workers} worker(s) ({self.cpu_millicores}m CPU each) for up to "
            f"{self.ceiling_tps:.0f} tokens/s from the server ({self.cores_needed:.2f} cores at "
            f"{CPU_PER_CHUNK_S * 1000:g} ms per chunk, x{HEADROOM:g} headroom)"
        )
        if self.capped:
            text += f"; capped at {MAX_REPLICAS} pods, which follow {self.follows_tps:.0f} tokens/s"
        return text


def ceiling_tps(server: ServerSizing) -> float:
    """Tokens/s the server can stream at most, all slots together (memory-bandwidth bound)."""
    bandwidth_gbps = CPU_BANDWIDTH_GBPS if server.gpu == "cpu" else GPUS[server.gpu].bandwidth_gbps
    return server.parallel * bandwidth_gbps * 1e9 / server.weights_bytes


def size_router(server: ServerSizing, replicas: int) -> RouterSizing:
    """The router's workers, CPU request and replicas for `server`; `replicas` is the configured floor."""
    ceiling = ceiling_tps(server)
    cores = ceiling * CPU_PER_CHUNK_S * HEADROOM
    workers = min(MAX_WORKERS, max(1, math.ceil(cores / replicas)))
    needed = max(replicas, math.ceil(cores / workers))
    return RouterSizing(
        ceiling_tps=ceiling,
        cores_needed=cores,
        workers=workers,
        cpu_millicores=workers * 1000,
        replicas=min(needed, MAX_REPLICAS),
        capped=needed > MAX_REPLICAS,
    )
