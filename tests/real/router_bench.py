"""The router benchmark in one run: `python -m tests.real.router_bench [llama_bench args...]`.

Starts the real llama-server and the LiteLLM proxy exactly as the router tests do
(tests/real/brain.py: the rendered config, command line and environment of the prod plan) and runs
benchmarks/llama_bench.py through the router with llama-server itself as the baseline
(`--direct-url`) and the router's process tree for its CPU per chunk (`--router-pid`). The load
average before and after goes with the figures: on a shared machine they are only as good as it
was quiet. benchmarks/README.md quotes its output.

`--py-spy PATH` (py-spy from PyPI, run as root) also samples the router's process (on-CPU samples) while the
benchmark runs and prints where its time goes: the share of samples in which each LiteLLM, FastAPI,
Starlette or uvicorn function is on the stack.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import llama_bench as bench
from tests.real.brain import LLAMA_KEY, MASTER_KEY, running_brain

DEFAULTS = ("--requests", "40", "--clients", "2", "--max-tokens", "32")
# Frames worth naming in the profile: the proxy's own code and the web stack under it.
PROFILED = ("litellm/", "fastapi/", "starlette/", "uvicorn/", "httpx/", "httpcore/", "pydantic/", "prometheus_client/")


def summarize(raw: Path, top: int = 25) -> list[str]:
    """py-spy's raw (collapsed) stacks -> the functions on the stack in the most samples."""
    total = 0
    inclusive: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        frames = {f for f in stack.split(";") if any(p in f for p in PROFILED)}
        for frame in frames:
            inclusive[frame] += int(count)
    return [f"{n / total:6.1%}  {frame}" for frame, n in inclusive.most_common(top)] if total else []


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--py-spy", type=Path, help="py-spy binary: profile the router while the benchmark runs")
    args, rest = p.parse_known_args(argv)
    print(f"{os.cpu_count()} CPUs, load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="router-bench-") as tmp, running_brain(Path(tmp)) as brain:
        print(f"router: {brain.router.argv[-6:]}")
        spy = None
        if args.py_spy:
            raw = Path(tmp) / "router.raw"
            spy = subprocess.Popen(
                [str(args.py_spy), "record", "--pid", str(brain.router.proc.pid), "--subprocesses",
                 "--format", "raw", "--output", str(raw), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        rc = bench.main(
            ["--url", brain.router_url, "--api-key", MASTER_KEY, "--model", "local",
             "--router-config", str(brain.config_path), "--direct-url", brain.llama_url,
             "--direct-api-key", LLAMA_KEY, "--router-pid", str(brain.router.proc.pid), *(rest or DEFAULTS)]
        )  # fmt: skip
        if spy is not None:
            spy.send_signal(2)  # SIGINT: py-spy writes what it has sampled and exits
            spy.wait(timeout=60)
            print("router profile (share of samples with the function on the stack):")
            print("\n".join(summarize(raw)))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
