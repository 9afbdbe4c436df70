"""Write a valid, tiny llama GGUF for the real llama-server: no download, the same bytes every time.

    python -m tests.fakes.tiny_gguf OUT.gguf      prints the file's SHA-256

Architecture `llama` with 2 layers, 64 wide, 4 heads, and a SentencePiece (`llama`) vocabulary of
<unk>, <s>, </s> and the 256 byte tokens, so any text tokenizes by byte fallback. The weights are
random from a fixed seed: the file, and so its checksum, is identical on every machine, and
llama-server loads and runs it like any llama model (it answers with nonsense, quickly). The
output row of </s> is zero, so its logit is 0 while the largest of the other 258 random logits is
positive: greedy decoding never ends early, and a request generates `max_tokens` tokens, which
the benchmark counts.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import gguf
import numpy as np

LAYERS = 2
WIDTH = 64
HEADS = 4
FFN = 128
CONTEXT = 131072
SEED = 15
EOS = 2


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256))]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256
    return tokens, [0.0] * len(tokens), [int(t) for t in types]


def write(path: Path) -> str:
    """Write the model to `path` (atomically) and return its SHA-256."""
    rng = np.random.default_rng(SEED)
    tokens, scores, types = vocabulary()
    vocab = len(tokens)

    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    tmp = path.with_name(path.name + ".tmp")
    writer = gguf.GGUFWriter(str(tmp), "llama")
    writer.add_name("gpu-platform tiny test llama")
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(WIDTH)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    writer.add_rope_dimension_count(WIDTH // HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(EOS)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)

    # numpy shapes are (rows, columns); gguf-py stores them reversed, as llama.cpp expects.
    writer.add_tensor("token_embd.weight", weight(vocab, WIDTH))
    for i in range(LAYERS):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(WIDTH, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"blk.{i}.{name}.weight", weight(WIDTH, WIDTH))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(WIDTH, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(FFN, WIDTH))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(FFN, WIDTH))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(WIDTH, FFN))
    writer.add_tensor("output_norm.weight", np.ones(WIDTH, dtype=np.float32))
    output = weight(vocab, WIDTH)
    output[EOS] = 0.0
    writer.add_tensor("output.weight", output)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.fakes.tiny_gguf OUT.gguf")
    print(write(Path(sys.argv[1])))
