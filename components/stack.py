"""Wiring: which components a phase builds, in dependency order, and what the stack exports.

Each block below belongs to one component module. A block reads only the phase state, the typed
config and the handles earlier blocks produced.
"""

from __future__ import annotations

from typing import Any

from components.config import Loaded
from components.phases import Phase


def build(loaded: Loaded, phase: Phase) -> dict[str, Any]:
    """Create the resources `phase` enables; return the stack outputs."""
    cfg, state = loaded.config, phase.state
    outputs: dict[str, Any] = {
        "phase": phase.id,
        "environment": cfg.environment,
        "exitChecks": list(phase.exit_criteria.checks),
    }
    del state  # each block below reads it once its component lands

    # --- backups and the legacy estate (components/backups.py, components/fly.py) -------------

    # --- GPU hosts (components/gpu_host.py) ---------------------------------------------------

    # --- K3s and NVIDIA (components/k3s.py, components/nvidia.py) ------------------------------

    # --- platform on K3s (components/platform.py) ---------------------------------------------

    # --- local llama servers and router (components/llama.py) ---------------------------------

    return outputs
