"""K3s installed over SSH, servers one at a time then the agents, with the NVIDIA container
runtime (`k3s.py`), and NVIDIA's device plugin with optional time-slicing (`nvidia.py`). Imports:
`core`, `catalog`, `config`, `handles`.
"""
