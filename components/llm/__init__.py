"""The local brain: the llama.cpp servers on the workstation and the cluster (`llama.py`) and the
LiteLLM router in front of them (`router.py`). Imports: `core`, `catalog`, `config`, `handles`,
`cluster` (the GPU runtime class) and `platform` (`kube.py`).
"""
