"""GGUF models the llama servers may run: shape, quantisation, where to download them, their SHA-256.

Config names a model by its catalog key (`llama.clusterModel`, `llama.workstationModel`). The
sizing (components/config/sizing.py) reads the shape fields; the server's init step downloads `url` and
refuses to serve a file whose SHA-256 is not `sha256`.

Provenance of the checksums. Each `sha256` below was read from the "Git LFS Details" of the
Hugging Face file page *at the pinned revision* in `url` (the `resolve/<commit>/` part), so the URL
and the checksum name the same bytes. They were looked up, not computed here: this workplace cannot
download the files. `sha256_source` says where each one was read. A stack can replace any of them
with `llama.modelSha256: {<model>: <sha256>}` (for a re-uploaded file, or after checking a download
yourself with `sha256sum`); the init step then enforces the configured value.

Shapes (layers, heads, KV heads, head dim, hidden size, feed-forward size, vocabulary, training
context) are those of each model's `config.json` on Hugging Face (meta-llama/Llama-3.1-8B-Instruct, -70B-Instruct,
TinyLlama/TinyLlama-1.1B-Chat-v1.0), the values llama.cpp writes into the GGUF metadata.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final, Literal

from pydantic import Field, field_validator

from components.core.errors import ConfigError
from components.core.model import Frozen

# The quantisations the sizing has a bits-per-weight figure for (components/config/sizing.py).
Quant = Literal["Q4_0", "Q4_K_S", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "F16"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# A download pinned to a commit: a branch name such as `main` would let the bytes change under
# the checksum, and the pod would then refuse to start after an upstream re-upload.
_HF_PINNED = re.compile(r"^https://huggingface\.co/[\w.-]+/[\w.-]+/resolve/[0-9a-f]{40}/[\w.-]+\.gguf$")


class GgufModel(Frozen):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*[a-z0-9]$")
    params_b: float = Field(gt=0)  # parameters, in billions
    quant: Quant
    n_layers: int = Field(gt=0)
    n_heads: int = Field(gt=0)
    n_kv_heads: int = Field(gt=0)  # grouped-query attention: fewer KV heads than query heads
    head_dim: int = Field(gt=0)
    hidden: int = Field(gt=0)
    ffn: int = Field(gt=0)  # feed-forward width (`intermediate_size`)
    vocab: int = Field(gt=0)
    n_ctx_train: int = Field(gt=0)
    file_name: str
    url: str
    sha256: str
    sha256_source: str
    file_gb: float = Field(gt=0)  # published file size (decimal GB); sizes the model volume

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not _HF_PINNED.match(v):
            raise ValueError("must be an https Hugging Face `resolve/<40-hex commit>/<file>.gguf` URL")
        return v

    @field_validator("sha256")
    @classmethod
    def _sha(cls, v: str) -> str:
        if not _SHA256.match(v):
            raise ValueError("must be 64 lowercase hex digits (what `sha256sum` prints)")
        return v

    @property
    def served_name(self) -> str:
        """The model id llama-server reports (`--alias`) and the router asks for."""
        return self.name


MODELS: Final[dict[str, GgufModel]] = {
    m.name: m
    for m in (
        GgufModel(
            name="llama-3.1-70b-instruct-q4_k_m",
            params_b=70.55,
            quant="Q4_K_M",
            n_layers=80,
            n_heads=64,
            n_kv_heads=8,
            head_dim=128,
            hidden=8192,
            ffn=28672,
            vocab=128256,
            n_ctx_train=131072,
            file_name="Meta-Llama-3.1-70B-Instruct-Q4_K_M.gguf",
            url=(
                "https://huggingface.co/bartowski/Meta-Llama-3.1-70B-Instruct-GGUF/resolve/"
                "1188ae22973458db73c69653b08c36f0aec9d463/Meta-Llama-3.1-70B-Instruct-Q4_K_M.gguf"
            ),
            sha256="f775c87029be95fb41df9e2882e6e938b73121c30ffc235ac6b6b880add49aa5",
            sha256_source="Hugging Face LFS details of the file at revision 1188ae22 (42.5 GB)",
            file_gb=42.5,
        ),
        GgufModel(
            name="llama-3.1-8b-instruct-q4_k_m",
            params_b=8.03,
            quant="Q4_K_M",
            n_layers=32,
            n_heads=32,
            n_kv_heads=8,
            head_dim=128,
            hidden=4096,
            ffn=14336,
            vocab=128256,
            n_ctx_train=131072,
            file_name="Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf",
            url=(
                "https://huggingface.co/bartowski/Meta-Llama-3.1-8B-Instruct-GGUF/resolve/"
                "7cbac9881964b4c07e9d7097c4f5c2f5e132c78c/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf"
            ),
            sha256="2a4ca64e02e7126436cfdb066dd7311f2486eb487191910d3d000fde13826a4d",
            sha256_source="Hugging Face LFS details of the file at revision 7cbac988 (4.92 GB)",
            file_gb=4.92,
        ),
        GgufModel(
            name="tinyllama-1.1b-chat-q4_k_m",
            params_b=1.10,
            quant="Q4_K_M",
            n_layers=22,
            n_heads=32,
            n_kv_heads=4,
            head_dim=64,
            hidden=2048,
            ffn=5632,
            vocab=32000,
            n_ctx_train=2048,
            file_name="TinyLlama-1.1B-Chat-v1.0.Q4_K_M.gguf",
            url=(
                "https://huggingface.co/QuantFactory/TinyLlama-1.1B-Chat-v1.0-GGUF/resolve/"
                "6d7d866853bd9a22463762763aaac62c513f6e08/TinyLlama-1.1B-Chat-v1.0.Q4_K_M.gguf"
            ),
            sha256="ecd07a19c8caca27387ddf0c4dd69ea499baa0ef6f5a66841bda78c7276a6878",
            sha256_source="Hugging Face LFS details of the file at revision 6d7d8668 (668 MB)",
            file_gb=0.668,
        ),
    )
}


def resolve(name: str, sha256_overrides: Mapping[str, str] | None = None, *, key: str = "llama") -> GgufModel:
    """The catalog entry for `name`, with a configured checksum in place of the catalog's."""
    model = MODELS.get(name)
    if model is None:
        raise ConfigError(f"{key}: unknown model {name!r}; the catalog has {', '.join(sorted(MODELS))}")
    override = (sha256_overrides or {}).get(name)
    if override is None:
        return model
    return model.model_copy(update={"sha256": override, "sha256_source": "stack config llama.modelSha256"})
