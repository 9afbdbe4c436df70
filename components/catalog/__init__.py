"""Facts the config may name, with no resources and no I/O: GPUs and Lambda instance types
(`gpus.py`), the GGUF models with their checksums (`gguf.py`), every pinned version and image
(`versions.py`, read by Renovate; `images.py` parses the pins), and the table of the platform's own
services (`services.py`). Imports: `core`.
"""
