"""The `budget` rule: a phase whose estimated monthly run rate is above the stack's budget fails.

The estimate is policy/costing.py's, priced with the stack's `costBasis` output (the program
exports the catalog's prices, the stack's cost assumptions and `gpu-platform:budget` there), so the
rule needs neither the project's packages nor the network, and `python -m migrate check` and the
engine judge the same figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import costing
from policy_support import Report, config, explain

DEFAULT_LARGEST_LINES = 3


def _resources(args: Any) -> tuple[list[Any], Mapping[str, Any] | None, str]:
    basis: Mapping[str, Any] | None = None
    stack_urn = ""
    out = []
    for res in args.resources:
        if res.resource_type == costing.STACK_TYPE:
            found = res.props.get(costing.BASIS_OUTPUT)
            basis = found if isinstance(found, Mapping) else None
            stack_urn = res.urn
        out.append(costing.Resource(res.urn, res.resource_type, str(res.name or ""), res.props))
    return out, basis, stack_urn


def check_budget(args: Any, report: Report) -> None:
    resources, basis, stack_urn = _resources(args)
    if basis is None:
        return  # a program without the costBasis output (an older release) has no budget to hold
    try:
        est = costing.estimate(resources, basis)
    except costing.CostError as exc:
        report(
            explain(
                f"cannot price this phase: {exc}",
                "a budget that skips what it cannot price would pass a plan it never measured",
                "add the missing price to components/catalog/prices.json with its source, or change the resource",
            ),
            stack_urn or None,
        )
        return
    budget = est.budget_usd
    if budget is None or est.monthly_usd <= budget:
        return
    n = int(config(args, "largestLines", DEFAULT_LARGEST_LINES))
    largest = "; ".join(f"{line.name} {costing.usd(line.monthly_usd)} ({line.price_key})" for line in est.largest(n))
    report(
        explain(
            f"this phase's estimated run rate is {costing.usd(est.monthly_usd)} a month, "
            f"{costing.usd(est.monthly_usd - budget)} over the budget of {costing.usd(budget)}; largest: {largest}",
            "gpu-platform:budget is the monthly spend this stack was approved for",
            "shrink the phase (fewer or smaller hosts), or raise gpu-platform:budget.monthlyUsd with the approval",
        ),
        stack_urn or None,
    )
