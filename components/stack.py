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
    # LEAD NOTE (rollback safety, read before wiring): resources that hold data - the Qdrant,
    # Redis and Postgres StatefulSets (and any standalone PVC) - are created as soon as
    # state.k3s.cluster and state.platform.retain_storage are on (p2a), not when the services
    # phase turns on: replicas 0 until state.platform.services_stateful, then the real count.
    # They carry protect + retain_on_delete in prod from creation. Rolling back p2b -> p2a is then
    # an update (replicas, restore Jobs, routes), never a delete of a protected resource; only
    # tearing the cluster down (p2a -> p1) removes them, which prod refuses by design.

    # --- local llama servers and router (components/llama.py) ---------------------------------
    # LEAD NOTE: the model PVC follows the same rule as the data stores above: it exists from the
    # moment the cluster and retain storage exist (p2a), protect + retain_on_delete in prod, so
    # rolling back p3 -> p2c removes the Deployment/Service/router but never the downloaded weights.

    return outputs
