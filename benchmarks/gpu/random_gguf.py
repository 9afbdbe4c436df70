"""Write a llama GGUF with random weights in a model's exact shape and Q4_K_M layout. Standard library only.

    python3 benchmarks/gpu/random_gguf.py OUT.gguf --layers 80 --hidden 8192 --ffn 28672 --heads 64 \
        --kv-heads 8 --head-dim 128 --vocab 128256

Decode speed depends on the bytes each token reads, not on the weights' values, so every tensor
has the type and size llama.cpp's `llama-quantize ... Q4_K_M` gives it (src/llama-quant.cpp of the
vendored llama.cpp): Q4_K everywhere, Q6_K for `output.weight`, and for `attn_v` and `ffn_down` in
the layers `use_more_bits` picks (the first and last eighth and every third in between); on a
70B-shaped model (80 layers) the other `attn_v` are Q5_K; norms F32 (ones). Block layouts are
ggml's (ggml-common.h, QK_K = 256): Q4_K 144 bytes (fp16 d, fp16 dmin, 12 scale bytes, 128 of
nibbles), Q5_K 176 (the same plus 32 bytes of high bits), Q6_K 210 (128 + 64 + 16 int8 scales,
fp16 d last). The quantised bytes are random; each block's fp16 scales are set to small finite
values, so no weight decodes to inf or NaN.

Fast: a pool of random blocks per type is repeated, and each tensor is written in a few large
writes, so a 42 GB file costs about what the disk takes to write it.

The vocabulary is SentencePiece-style (`llama`): <unk>, <s>, </s>, the 256 byte tokens, then
filler tokens up to the model's size, so any prompt tokenizes (byte fallback).
"""

from __future__ import annotations

import argparse
import os
import random
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

QK_K = 256
ALIGNMENT = 32
# ggml_type ids (ggml.h) and bytes per 256-weight block.
F32, Q4_K, Q5_K, Q6_K = 0, 12, 13, 14
BLOCK_BYTES = {Q4_K: 144, Q5_K: 176, Q6_K: 210}
FILE_TYPE_Q4_K_M = 15  # llama_ftype LLAMA_FTYPE_MOSTLY_Q4_K_M
# GGUF metadata value types (gguf.md).
T_UINT32, T_INT32, T_FLOAT32, T_STRING, T_ARRAY = 4, 5, 6, 8, 9
FP16_D = struct.pack("<e", 1e-3)  # block scale: small and finite
FP16_DMIN = struct.pack("<e", 1e-4)
POOL = 64  # distinct random blocks per type


@dataclass(frozen=True)
class Shape:
    layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    context: int = 8192
    name: str = "random"


@dataclass(frozen=True)
class Tensor:
    name: str
    dims: tuple[int, ...]  # ggml order: ne0 (the row length) first
    type: int

    @property
    def nbytes(self) -> int:
        n = 1
        for d in self.dims:
            n *= d
        return n * 4 if self.type == F32 else n // QK_K * BLOCK_BYTES[self.type]


def use_more_bits(i_layer: int, n_layers: int) -> bool:
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


def tensors(s: Shape) -> list[Tensor]:
    """Every tensor of a llama model, with its Q4_K_M type."""
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    # llama.cpp treats an 80-layer llama as its 70B type, which lifts Q4_K attn_v to Q5_K.
    plain_v = Q5_K if s.layers == 80 else Q4_K
    out = [Tensor("token_embd.weight", (s.hidden, s.vocab), Q4_K)]
    for i in range(s.layers):
        more = use_more_bits(i, s.layers)
        out += [
            Tensor(f"blk.{i}.attn_norm.weight", (s.hidden,), F32),
            Tensor(f"blk.{i}.attn_q.weight", (s.hidden, q), Q4_K),
            Tensor(f"blk.{i}.attn_k.weight", (s.hidden, kv), Q4_K),
            Tensor(f"blk.{i}.attn_v.weight", (s.hidden, kv), Q6_K if more else plain_v),
            Tensor(f"blk.{i}.attn_output.weight", (q, s.hidden), Q4_K),
            Tensor(f"blk.{i}.ffn_norm.weight", (s.hidden,), F32),
            Tensor(f"blk.{i}.ffn_gate.weight", (s.hidden, s.ffn), Q4_K),
            Tensor(f"blk.{i}.ffn_up.weight", (s.hidden, s.ffn), Q4_K),
            Tensor(f"blk.{i}.ffn_down.weight", (s.ffn, s.hidden), Q6_K if more else Q4_K),
        ]
    out += [Tensor("output_norm.weight", (s.hidden,), F32), Tensor("output.weight", (s.hidden, s.vocab), Q6_K)]
    return out


def _string(v: str) -> bytes:
    b = v.encode()
    return struct.pack("<Q", len(b)) + b


def _kv(key: str, vtype: int, value: bytes) -> bytes:
    return _string(key) + struct.pack("<I", vtype) + value


def _array(item_type: int, items: list[bytes]) -> bytes:
    return struct.pack("<IQ", item_type, len(items)) + b"".join(items)


def metadata(s: Shape) -> list[bytes]:
    u32 = lambda k, v: _kv(k, T_UINT32, struct.pack("<I", v))  # noqa: E731
    f32 = lambda k, v: _kv(k, T_FLOAT32, struct.pack("<f", v))  # noqa: E731
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256))]
    tokens += [f"\u2581t{i}" for i in range(s.vocab - len(tokens))]
    # llama_token_type: 1 normal, 2 unknown, 3 control, 6 byte.
    types = [2, 3, 3, *([6] * 256), *([1] * (s.vocab - 259))]
    return [
        _kv("general.architecture", T_STRING, _string("llama")),
        _kv("general.name", T_STRING, _string(f"gpu-platform random {s.name}")),
        u32("general.file_type", FILE_TYPE_Q4_K_M),
        u32("general.alignment", ALIGNMENT),
        u32("llama.context_length", s.context),
        u32("llama.embedding_length", s.hidden),
        u32("llama.block_count", s.layers),
        u32("llama.feed_forward_length", s.ffn),
        u32("llama.attention.head_count", s.heads),
        u32("llama.attention.head_count_kv", s.kv_heads),
        u32("llama.rope.dimension_count", s.head_dim),
        u32("llama.vocab_size", s.vocab),
        f32("llama.attention.layer_norm_rms_epsilon", 1e-5),
        f32("llama.rope.freq_base", 500000.0),
        _kv("tokenizer.ggml.model", T_STRING, _string("llama")),
        _kv("tokenizer.ggml.tokens", T_ARRAY, _array(T_STRING, [_string(t) for t in tokens])),
        _kv("tokenizer.ggml.scores", T_ARRAY, _array(T_FLOAT32, [struct.pack("<f", 0.0)] * s.vocab)),
        _kv("tokenizer.ggml.token_type", T_ARRAY, _array(T_INT32, [struct.pack("<i", t) for t in types])),
        u32("tokenizer.ggml.bos_token_id", 1),
        u32("tokenizer.ggml.eos_token_id", 2),
        u32("tokenizer.ggml.unknown_token_id", 0),
    ]


def random_blocks(qtype: int, rng: random.Random) -> bytes:
    """POOL random blocks of `qtype`, each with finite fp16 scales where ggml reads them."""
    size = BLOCK_BYTES[qtype]
    out = bytearray()
    for _ in range(POOL):
        block = bytearray(rng.randbytes(size))
        if qtype == Q6_K:
            block[208:210] = FP16_D
        else:  # Q4_K, Q5_K: d and dmin first
            block[0:2], block[2:4] = FP16_D, FP16_DMIN
        out += block
    return bytes(out)


def _pad(n: int) -> int:
    return (ALIGNMENT - n % ALIGNMENT) % ALIGNMENT


CHUNK = 32 << 20  # bytes per write


def _repeat(pattern: bytes) -> memoryview:
    """`pattern` repeated to about CHUNK bytes, built once per type."""
    return memoryview(pattern * max(1, CHUNK // len(pattern)))


def _write_data(fh: BinaryIO, t: Tensor, big: dict[int, memoryview], ones: bytes) -> None:
    if t.type == F32:
        fh.write(ones[: t.nbytes])
    else:
        left = t.nbytes
        while left > 0:
            n = min(left, len(big[t.type]))
            fh.write(big[t.type][:n])
            left -= n
    fh.write(b"\0" * _pad(t.nbytes))


def write(path: Path, s: Shape, seed: int = 25) -> int:
    """Write the model to `path` (atomically); returns its size in bytes."""
    rng = random.Random(seed)
    all_tensors = tensors(s)
    kvs = metadata(s)
    header = b"GGUF" + struct.pack("<IQQ", 3, len(all_tensors), len(kvs)) + b"".join(kvs)
    offset = 0
    for t in all_tensors:
        header += _string(t.name) + struct.pack("<I", len(t.dims)) + struct.pack(f"<{len(t.dims)}Q", *t.dims)
        header += struct.pack("<IQ", t.type, offset)
        offset += t.nbytes + _pad(t.nbytes)
    header += b"\0" * _pad(len(header))
    big = {q: _repeat(random_blocks(q, rng)) for q in BLOCK_BYTES}
    ones = struct.pack("<f", 1.0) * s.hidden
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        fh.write(header)
        for t in all_tensors:
            _write_data(fh, t, big, ones)
    size = tmp.stat().st_size
    os.replace(tmp, path)
    return size


def expected_size(s: Shape) -> int:
    """The weights' bytes, without the header: what decoding one token reads, near enough."""
    return sum(t.nbytes for t in tensors(s))


def bytes_per_token(s: Shape) -> int:
    """What decoding one token reads from memory at least: every weight once, except the token
    embeddings, of which it reads one row (llama.cpp keeps them in host memory). The KV cache read
    grows with the context and is left out, so the bound this gives is an upper one."""
    return sum(t.nbytes for t in tensors(s) if t.name != "token_embd.weight")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    for name in ("layers", "hidden", "ffn", "heads", "kv-heads", "head-dim", "vocab"):
        p.add_argument(f"--{name}", type=int, required=True)
    p.add_argument("--context", type=int, default=8192)
    a = p.parse_args(argv)
    shape = Shape(a.layers, a.hidden, a.ffn, a.heads, a.kv_heads, a.head_dim, a.vocab, a.context)
    for t in tensors(shape):
        if t.type != F32 and t.dims[0] % QK_K:
            p.error(f"{t.name}: rows of {t.dims[0]} are not a multiple of {QK_K} (k-quant blocks)")
    start = time.perf_counter()
    size = write(a.out, shape)
    took = time.perf_counter() - start
    print(f"{a.out}: {size / 1e9:.2f} GB in {took:.1f} s ({size / 1e9 / took:.2f} GB/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
