#!/usr/bin/env python3
"""Decode tokens/s of the configured models on this machine's GPU, beside the targets and the bound.

    python3 benchmarks/gpu/gpu_bench.py [--work /var/tmp/gpu-bench]

Standard library only, no network (benchmarks/gpu/README.md). In order:

1. the GPU: `nvidia-smi` gives its name and compute capability;
2. llama-server with CUDA for that compute capability only, from the vendored llama.cpp
   (scripts/build-llama-server.sh with LLAMA_CUDA_ARCH; a no-op once built);
3. for each server in benchmarks/gpu/plan.json (the prod cluster's 70B and the workstation's 8B):
   a GGUF with random weights in the model's exact shape and Q4_K_M layout (random_gguf.py), then
   llama-server with the server's configured flags, then the project's benchmark
   (benchmarks/llama_bench.py) with the p3 load (16 requests, 4 clients, 100 tokens);
4. a table: decode tokens/s per request (p50) against the 40 and tuned 60 targets, and the bound
   memory bandwidth sets on it: the card's bandwidth over the bytes one token reads.

`--cpu --tiny` runs the same steps on the CPU build with a small shape (what tests/test_gpu_bench.py
does); `--llama-server PATH` skips the build.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
import llama_bench as bench  # noqa: E402 - the benchmarks folder, by path: no package needed
import random_gguf  # noqa: E402

# Memory bandwidth per card, from the vendors' data sheets, matched against `nvidia-smi`'s name
# (first match wins, so the more specific names come first). GB/s.
BANDWIDTH: list[tuple[str, int, str]] = [
    (r"H100 PCIe", 2000, "NVIDIA H100 Tensor Core GPU datasheet (H100 PCIe: 2 TB/s)"),
    (r"H100 NVL", 3900, "NVIDIA H100 Tensor Core GPU datasheet (H100 NVL: 3.9 TB/s)"),
    (r"H100", 3350, "NVIDIA H100 Tensor Core GPU datasheet (H100 SXM: 3.35 TB/s)"),
    (r"GH200", 4000, "NVIDIA GH200 Grace Hopper Superchip datasheet (96 GB HBM3: 4 TB/s)"),
    (r"H200", 4800, "NVIDIA H200 Tensor Core GPU datasheet (4.8 TB/s)"),
    (r"A100.*80GB PCIe", 1935, "NVIDIA A100 Tensor Core GPU datasheet (80GB PCIe: 1,935 GB/s)"),
    (r"A100.*80GB", 2039, "NVIDIA A100 Tensor Core GPU datasheet (80GB SXM: 2,039 GB/s)"),
    (r"A100", 1555, "NVIDIA A100 Tensor Core GPU datasheet (40GB: 1,555 GB/s)"),
    (r"L40S", 864, "NVIDIA L40S datasheet (864 GB/s)"),
    (r"A10\b", 600, "NVIDIA A10 Tensor Core GPU datasheet (600 GB/s)"),
    (r"RTX 4090", 1008, "NVIDIA GeForce RTX 4090 specifications (1,008 GB/s)"),
    (r"RTX A6000", 768, "NVIDIA RTX A6000 datasheet (768 GB/s)"),
]
# A shape small enough for a CPU in a test: every tensor a whole number of k-quant blocks.
TINY = random_gguf.Shape(layers=2, hidden=256, ffn=512, heads=4, kv_heads=2, head_dim=64, vocab=2048, name="tiny")


@dataclass(frozen=True)
class Gpu:
    name: str
    arch: str  # compute capability without the dot: "90"
    bandwidth_gbps: int | None
    source: str


def bandwidth_of(name: str) -> tuple[int | None, str]:
    for pattern, gbps, source in BANDWIDTH:
        if re.search(pattern, name):
            return gbps, source
    return None, "not in the table in benchmarks/gpu/gpu_bench.py"


def detect_gpu() -> Gpu:
    if shutil.which("nvidia-smi") is None:
        raise SystemExit("error: nvidia-smi is not on PATH: no NVIDIA driver here (use --cpu --tiny without a GPU)")
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout.strip().splitlines()  # fmt: skip
    name, cap = (part.strip() for part in out[0].split(","))
    gbps, source = bandwidth_of(name)
    return Gpu(name, cap.replace(".", ""), gbps, source)


def build_server(arch: str | None) -> Path:
    env = dict(os.environ, BUILD_JOBS=str(os.cpu_count() or 2))
    if arch:
        env["LLAMA_CUDA_ARCH"] = arch
    done = subprocess.run(
        [str(ROOT / "scripts" / "build-llama-server.sh")], env=env, stdout=subprocess.PIPE, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"error: scripts/build-llama-server.sh exited {done.returncode} (its output is above)")
    return Path(done.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama-server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError(f"llama-server not healthy after {timeout:.0f} s")


def run_server(
    binary: Path, gguf: Path, name: str, flags: list[str], *, targets: dict[str, Any], log: Path, cpu: bool
) -> dict[str, float]:
    if cpu:  # the CPU build offloads nothing
        flags = [*flags]
        if "--n-gpu-layers" in flags:
            flags[flags.index("--n-gpu-layers") + 1] = "0"
    port = _free_port()
    argv = [str(binary), "--model", str(gguf), "--alias", name, "--host", "127.0.0.1", "--port", str(port), *flags]
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            started = time.perf_counter()
            _wait_healthy(url, proc, timeout=600)
            load_s = time.perf_counter() - started
            results, wall = bench.run(
                url, model=name, prompt=bench.DEFAULT_PROMPT, max_tokens=targets["max_tokens"],
                clients=targets["clients"], requests=targets["requests"], timeout=300,
            )  # fmt: skip
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
    good = [r for r in results if r.ok]
    if not good:
        errors = sorted({r.error for r in results})
        raise RuntimeError(f"no answer from llama-server: {errors[:3]}")
    return {
        "decode_tps_p50": bench.percentile([r.decode_tps for r in good], 50),
        "aggregate_tps": bench.aggregate_tps(good, wall),
        "failed": float(len(results) - len(good)),
        "load_s": load_s,
    }


def table(rows: list[dict[str, Any]], targets: dict[str, Any]) -> str:
    cols = ("server", "model", "decode tok/s p50", "target", "tuned", "bandwidth bound", "of bound", "all clients")
    lines = []
    for r in rows:
        bound = r["bound_tps"]
        lines.append(
            (
                r["label"],
                r["model"],
                f"{r['decode_tps_p50']:.1f}",
                f"{targets['decode_tps']:g} {'PASS' if r['decode_tps_p50'] >= targets['decode_tps'] else 'FAIL'}",
                f"{targets['decode_tps_tuned']:g} "
                f"{'PASS' if r['decode_tps_p50'] >= targets['decode_tps_tuned'] else 'FAIL'}",
                "-" if bound is None else f"{bound:.1f}",
                "-" if bound is None else f"{r['decode_tps_p50'] / bound:.0%}",
                f"{r['aggregate_tps']:.1f}",
            )
        )
    widths = [max(len(c), *(len(line[i]) for line in lines)) for i, c in enumerate(cols)]
    out = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    out += ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--plan", type=Path, default=HERE / "plan.json")
    p.add_argument("--work", type=Path, default=Path("/var/tmp/gpu-bench"), help="GGUF files and logs")
    p.add_argument("--llama-server", type=Path, help="use this binary instead of building one")
    p.add_argument("--cpu", action="store_true", help="no GPU: the CPU build, nothing offloaded")
    p.add_argument("--tiny", action="store_true", help="a small shape instead of the models' (a test)")
    p.add_argument("--requests", type=int, help="override the plan's request count")
    p.add_argument("--json", action="store_true", help="print the rows as JSON after the table")
    args = p.parse_args(argv)
    plan = json.loads(args.plan.read_text())
    targets = dict(plan["targets"], **({"requests": args.requests} if args.requests else {}))
    begun = time.perf_counter()
    gpu = None if args.cpu else detect_gpu()
    print(f"card: {gpu.name}, sm_{gpu.arch}, {gpu.bandwidth_gbps} GB/s ({gpu.source})" if gpu else "card: none (CPU)")
    t = time.perf_counter()
    binary = args.llama_server or build_server(gpu.arch if gpu else None)
    print(f"llama-server: {binary} ({time.perf_counter() - t:.0f} s)")
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for server in plan["servers"]:
        shape = TINY if args.tiny else random_gguf.Shape(**server["shape"])
        gguf = args.work / f"{shape.name}.gguf"
        t = time.perf_counter()
        size = random_gguf.write(gguf, shape)
        took = time.perf_counter() - t
        print(f"{server['label']}: wrote {gguf} ({size / 1e9:.2f} GB in {took:.1f} s, {size / 1e9 / took:.2f} GB/s)")
        log = args.work / f"{server['label'].replace(' ', '-')}.log"
        figures = run_server(binary, gguf, server["model"], server["flags"], targets=targets, log=log, cpu=args.cpu)
        per_token = random_gguf.bytes_per_token(shape)
        bound = gpu.bandwidth_gbps * 1e9 / per_token if gpu and gpu.bandwidth_gbps else None
        print(f"{server['label']}: loaded in {figures['load_s']:.1f} s, {per_token / 1e9:.2f} GB read per token")
        rows.append({"label": server["label"], "model": shape.name, "bound_tps": bound, **figures})
        if not args.tiny:
            gguf.unlink()  # 42 GB: leave the disk as it was
    print(table(rows, targets))
    print(f"total: {time.perf_counter() - begun:.0f} s")
    if args.json:
        print(json.dumps(rows))
    return 1 if any(r["failed"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
