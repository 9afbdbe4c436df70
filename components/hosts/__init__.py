"""The GPU machines: Lambda instances, GCP VMs or machines that already exist (`gpu_host.py`),
the admin SSH key and per-region firewalls they launch with (`access.py`), and the K3s node-to-node
rules made once every node's address is known (`peers.py`). Imports: `core`, `catalog`, `config`,
`handles`, `clouds`.
"""
