"""The stack's `costBasis` output: the catalog's prices, the stack's cost assumptions and its budget.

The program exports it so that the policy pack's `budget` rule can price the plan where it runs:
in its own virtualenv, without the project's packages and without the network (CrossGuard hands a
stack policy the resources and the stack's outputs, not its config). `python -m migrate cost`
prices the recorded plan from the same output, so both use one set of figures (policy/costing.py).
"""

from __future__ import annotations

from typing import Any

from components.catalog.prices import load_catalog
from components.config.schema import StackConfig


def cost_basis(cfg: StackConfig) -> dict[str, Any]:
    catalog = load_catalog()
    return {
        "catalogUpdated": catalog.updated.isoformat(),
        "budgetMonthlyUsd": cfg.budget.monthly_usd,
        "backupRegion": cfg.backups.region,
        "cloudModel": cfg.router.cloud_model,
        "routerCloudFallback": cfg.router.cloud_fallback,
        "assumptions": cfg.cost.model_dump(mode="json", by_alias=True),
        "prices": catalog.as_basis(),
    }
