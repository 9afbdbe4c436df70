"""What the GPU benchmark runs, from the program itself: `python -m benchmarks.gpu.plan [--write]`.

The GPU host has no network and maybe no project venv, so benchmarks/gpu/gpu_bench.py (standard
library only) reads benchmarks/gpu/plan.json, which this writes from the prod stack: for each
configured llama server (the cluster's 70B, the workstation's 8B) the model's shape from
components/catalog/gguf.py and the server's own flags as the recorded prod plan at p3-local-brain
renders them (the llama sizing's -ngl, -c, --parallel, -b, -ub, -fa), and the p3 targets.
tests/test_gpu_bench.py fails when the committed file is not what this would write.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.gpu.random_gguf import Shape, bytes_per_token, expected_size
from components.catalog.gguf import MODELS
from components.config.phases import LlamaBenchThresholds, load_phases
from tests.fakes.llama_recording import brain
from tests.real import serving

PLAN = Path(__file__).resolve().parent / "plan.json"
# The source plans' decode target once tuned (benchmarks/README.md, p3-local-brain targets); the
# untuned one is the phase file's own threshold.
TUNED_TPS = 60
# Flags the benchmark sets itself: where the model is, what it is called, where to listen.
RUNTIME_FLAGS = ("--model", "--alias", "--host", "--port")


def server_flags(argv: list[str]) -> list[str]:
    """`argv` after the binary, without the flags the benchmark sets itself."""
    args = argv[argv.index("--model") :]
    out: list[str] = []
    i = 0
    while i < len(args):
        if args[i] in RUNTIME_FLAGS:
            i += 2
            continue
        out.append(args[i])
        i += 1
    return out


def build() -> dict[str, Any]:
    plan = brain("prod")
    (p3,) = [p for p in load_phases() if p.id == "p3-local-brain"]
    bench = p3.exit_criteria.thresholds_for("llama-bench-targets")
    assert isinstance(bench, LlamaBenchThresholds), bench
    servers = []
    for rendered in (serving.cluster_server(plan, "prod"), serving.workstation_server(plan, "prod")):
        model = MODELS[rendered.served_name]
        shape = Shape(
            layers=model.n_layers,
            hidden=model.hidden,
            ffn=model.ffn,
            heads=model.n_heads,
            kv_heads=model.n_kv_heads,
            head_dim=model.head_dim,
            vocab=model.vocab,
            context=model.n_ctx_train,
            name=model.name,
        )
        servers.append(
            {
                "label": rendered.label,
                "model": model.name,
                "shape": shape.__dict__,
                "weights_bytes": expected_size(shape),
                "bytes_per_token": bytes_per_token(shape),
                "flags": server_flags(rendered.argv),
            }
        )
    return {
        "generated_by": "python -m benchmarks.gpu.plan --write",
        "targets": {
            "decode_tps": bench.decode_tokens_per_second,
            "decode_tps_tuned": TUNED_TPS,
            "max_tokens": bench.max_tokens,
            "requests": bench.requests,
            "clients": bench.clients,
        },
        "servers": servers,
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--write", action="store_true", help=f"write {PLAN.name}")
    args = p.parse_args(argv)
    text = render()
    if args.write:
        PLAN.write_text(text)
        print(f"wrote {PLAN}")
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
