"""The program's building blocks, one folder per concern, each importing only the layers above it:

    core       errors, the frozen model base, the engine's view of unknowns and secrets
    catalog    facts: GPUs, GGUF models, pinned versions and images, the platform's service table
    config     what a stack asks for: the typed config, the phases, the llama sizing, the loader
    handles    (module) what one component hands the next
    clouds     Lambda and Fly API clients, the Lambda dynamic providers, GCP compute resources
    hosts      GPU machines, their SSH access and firewalls, the K3s peer rules
    cluster    K3s over SSH, the NVIDIA device plugin
    platform   Helm charts, data stores, the platform's services, traffic split, shared k8s helpers
    llm        the llama.cpp servers and the LiteLLM router
    migration  verified backups, the Fly.io apps, the legacy estate
    observability  dashboards and alert rules as data, shipped as ConfigMaps and PrometheusRules
    stack      (module) the wiring: which components a phase builds, in order

Any layer may import `HOST_SCRIPT_DIR` from here; nothing imports `stack` but `__main__.py`.
tests/test_layout.py enforces the order and that the import graph has no cycle. The three modules
left at the top, `lambda_cloud.py`, `fly.py` and `backups.py`, only keep old dynamic-provider paths
importable for existing stacks' state.
"""

from pathlib import Path

# The scripts that run on hosts over SSH (and in restore Jobs): files, never strings in Python.
HOST_SCRIPT_DIR = Path(__file__).resolve().parent / "scripts"
