"""The GPU benchmark (benchmarks/gpu/): its plan, its GGUF writer, its card table, and a CPU run end to end."""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpu import gpu_bench, plan, random_gguf
from components.catalog.gguf import MODELS
from tests.conftest import ROOT
from tests.real.tools import llama_server_binary


def _shape(name: str) -> random_gguf.Shape:
    m = MODELS[name]
    return random_gguf.Shape(m.n_layers, m.hidden, m.ffn, m.n_heads, m.n_kv_heads, m.head_dim, m.vocab, name=name)


def test_the_committed_plan_is_what_the_program_configures() -> None:
    assert plan.PLAN.read_text() == plan.render(), "run: .venv/bin/python -m benchmarks.gpu.plan --write"
    doc = json.loads(plan.PLAN.read_text())
    assert [s["model"] for s in doc["servers"]] == ["llama-3.1-70b-instruct-q4_k_m", "llama-3.1-8b-instruct-q4_k_m"]
    assert doc["targets"]["decode_tps"] == 40 and doc["targets"]["decode_tps_tuned"] == 60
    cluster = doc["servers"][0]["flags"]
    assert cluster[cluster.index("--n-gpu-layers") + 1] == "81" and "--model" not in cluster


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_random_model_has_the_published_files_size(name: str) -> None:
    # The Q4_K_M type of every tensor decides the bytes a token reads; the published file (the
    # real quantisation) agrees within 0.5%, header and all.
    size = random_gguf.expected_size(_shape(name))
    assert size / 1e9 == pytest.approx(MODELS[name].file_gb, rel=0.005)


def test_q4_k_m_keeps_more_bits_where_llama_quantize_does() -> None:
    types = {t.name: t.type for t in random_gguf.tensors(_shape("llama-3.1-70b-instruct-q4_k_m"))}
    assert types["output.weight"] == random_gguf.Q6_K and types["token_embd.weight"] == random_gguf.Q4_K
    assert types["blk.0.attn_v.weight"] == random_gguf.Q6_K and types["blk.0.ffn_down.weight"] == random_gguf.Q6_K
    # Layer 10 of 80 is not one of use_more_bits' layers; the 70B's attn_v is lifted to Q5_K.
    assert types["blk.10.attn_v.weight"] == random_gguf.Q5_K and types["blk.10.ffn_down.weight"] == random_gguf.Q4_K
    assert types["blk.12.ffn_down.weight"] == random_gguf.Q6_K  # (12 - 10) % 3 == 2


def test_every_block_scale_is_finite() -> None:
    for qtype, size in random_gguf.BLOCK_BYTES.items():
        pool = random_gguf.random_blocks(qtype, random.Random(1))
        offsets = (208,) if qtype == random_gguf.Q6_K else (0, 2)
        for i in range(0, len(pool), size):
            for off in offsets:
                (value,) = struct.unpack("<e", pool[i + off : i + off + 2])
                assert 0 < value < 1


@pytest.mark.parametrize(
    ("name", "gbps"),
    [
        ("NVIDIA H100 80GB HBM3", 3350),
        ("NVIDIA H100 PCIe", 2000),
        ("NVIDIA H100 NVL", 3900),
        ("NVIDIA H200", 4800),
        ("NVIDIA GH200 480GB", 4000),
        ("NVIDIA A100-SXM4-80GB", 2039),
        ("NVIDIA A100 80GB PCIe", 1935),
        ("NVIDIA A100-PCIE-40GB", 1555),
        ("NVIDIA A10", 600),
        ("NVIDIA GeForce RTX 4090", 1008),
    ],
)
def test_nvidia_smi_names_find_their_bandwidth(name: str, gbps: int) -> None:
    assert gpu_bench.bandwidth_of(name)[0] == gbps
    assert gpu_bench.bandwidth_of("NVIDIA Tesla T4") == (None, "not in the table in benchmarks/gpu/gpu_bench.py")


def test_the_build_script_builds_for_one_cuda_architecture_into_its_own_folder() -> None:
    script = ROOT / "scripts" / "build-llama-server.sh"
    env = {**os.environ, "LLAMA_CUDA_ARCH": "90"}
    out = subprocess.run([str(script), "--path"], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("-cuda90/bin/llama-server")
    bad = subprocess.run(
        [str(script), "--path"], env={**env, "LLAMA_CUDA_ARCH": "9.0"}, capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and "compute capability such as 90" in bad.stderr
    text = script.read_text()
    assert "-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCH" in text


@pytest.mark.network
@pytest.mark.xdist_group("llm-real")
def test_the_gpu_benchmark_runs_end_to_end_on_the_cpu_with_a_tiny_shape(tmp_path: Path) -> None:
    # The standard library only (-S: no site-packages), as on a GPU host without the project's venv.
    out = subprocess.run(
        [sys.executable, "-I", "-S", str(ROOT / "benchmarks" / "gpu" / "gpu_bench.py"), "--cpu", "--tiny",
         "--llama-server", str(llama_server_binary()), "--work", str(tmp_path), "--requests", "4", "--json"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    rows = json.loads(out.stdout.strip().splitlines()[-1])
    assert [r["label"] for r in rows] == ["prod cluster", "prod workstation"]
    for row in rows:
        assert row["decode_tps_p50"] > 0 and row["failed"] == 0 and row["bound_tps"] is None
    lines = out.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("server "))
    assert "decode tok/s p50" in lines[header] and lines[header + 1].startswith("prod cluster")
    assert "40 " in lines[header + 1] and "60 " in lines[header + 1]
    # The server ran with the configured flags: the cluster's --parallel 4 over --ctx-size 32768.
    log = (tmp_path / "prod-cluster.log").read_text()
    assert "n_slots = 4, n_ctx_slot = 8192" in log, log[-3000:]
