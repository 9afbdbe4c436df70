"""Facts the config may name, with no resources and no I/O but reading `prices.json`: GPUs and Lambda
instance types (`gpus.py`), the GGUF models with their checksums (`gguf.py`), every pinned version and
image (`versions.py`, read by Renovate; `images.py` parses the pins), the table of the platform's own
services (`services.py`) and what each thing the stacks run costs (`prices.py` over `prices.json`,
dated and sourced). Imports: `core`.
"""
