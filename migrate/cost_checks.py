"""The cost checks of a deployed stack: `cost-reduction` (an exit check) and the Lambda drift report.

- `cost-reduction` (p4's exit criteria): the phase's estimated monthly run rate against the baseline
  phase's, both recorded offline from the stack's file (`Pulumi.<stack>.yaml`) and priced by
  policy/costing.py; the phase file's `exitCriteria.thresholds.cost-reduction` sets the minimum
  reduction (the source plans' 27%) and the baseline.
- drift (`migrate status --checks`): the Lambda instances the API lists with this stack's tag, each
  at the price the API states for its type, against the estimate's Lambda instance lines. A host
  that fell back to another candidate type, or an instance the program does not know, shows here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.clouds.lambda_api import Instance
from migrate import cost, harness

OUT_STACK_NAME = "stackName"  # filled by migrate/automation.py from the stack handle, not an output
LAMBDA_INSTANCE = "pulumi-python:dynamic/lambda_cloud:LambdaInstance"
STACK_TAG = "gpu-platform-stack"


class CostCheckError(Exception):
    """The check's FAIL detail (migrate/checks.py turns it into a CheckError)."""


def _stack_path(stack: str, overrides: Mapping[str, Any]) -> Path:
    given = overrides.get("stack_file")
    return Path(given) if given else harness.stack_file(stack)


def cost_reduction(outputs: Mapping[str, Any], overrides: Mapping[str, Any], thresholds: Any) -> str:
    stack, phase = outputs.get(OUT_STACK_NAME), outputs.get("phase")
    if not isinstance(stack, str) or not isinstance(phase, str):
        raise CostCheckError("needs the stack's name and its `phase` output to record the two plans")
    path = _stack_path(stack, overrides)
    baseline = str(thresholds.baseline_phase)
    before = cost.estimate(harness.record(stack, phase=baseline, stack_path=path))
    after = cost.estimate(harness.record(stack, phase=phase, stack_path=path))
    if before.monthly_usd <= 0:
        raise CostCheckError(f"{baseline} has no cost to compare with (estimate {cost.usd(before.monthly_usd)})")
    reduction = 1 - after.monthly_usd / before.monthly_usd
    wanted = float(thresholds.min_reduction)
    detail = (
        f"{phase} {cost.usd(after.monthly_usd)}/month against {baseline} {cost.usd(before.monthly_usd)}/month: "
        f"{reduction:.1%} less (needs at least {wanted:.0%})"
    )
    if reduction + 1e-9 < wanted:
        grown = [c for c in cost.costing().compare(before, after) if c.delta_usd > 0][:3]
        why = "; ".join(f"{c.line.name} +{cost.usd(c.delta_usd)} ({c.line.price_key})" for c in grown)
        raise CostCheckError(detail + (f"; largest increases: {why}" if why else ""))
    return detail


@dataclass(frozen=True)
class Drift:
    estimated_usd: float
    running_usd: float
    lines: tuple[str, ...]

    @property
    def delta_usd(self) -> float:
        return self.running_usd - self.estimated_usd


def lambda_drift(est: Any, instances: Sequence[Instance], stack: str) -> Drift:
    """The estimate's Lambda instance lines against the running instances tagged for `stack`."""
    hours = float((est.basis.get("assumptions") or {}).get("hoursPerMonth", 730))
    planned = {line.name.removesuffix("-instance"): line for line in est.lines if LAMBDA_INSTANCE in line.urn}
    ours = [i for i in instances if i.tags.get(STACK_TAG) == f"gpu-platform-{stack}"]
    out: list[str] = []
    running = 0.0
    for inst in sorted(ours, key=lambda i: i.name):
        if inst.price_cents_per_hour is None:
            out.append(f"{inst.name} ({inst.instance_type}): the API states no price for its type")
            continue
        monthly = inst.price_cents_per_hour / 100 * hours
        running += monthly
        host = inst.tags.get("gpu-platform-resource", inst.name)
        line = planned.pop(host, None)
        if line is None:
            out.append(f"{inst.name} ({inst.instance_type}) runs but is not in the plan: +{cost.usd(monthly)}/month")
        elif line.price_key != f"lambda/{inst.instance_type}" or abs(line.monthly_usd - monthly) >= 0.005:
            out.append(
                f"{inst.name}: planned {line.price_key} {cost.usd(line.monthly_usd)}/month, running "
                f"{inst.instance_type} {cost.usd(monthly)}/month"
            )
    for host, line in sorted(planned.items()):
        out.append(f"{host}: planned {line.price_key} {cost.usd(line.monthly_usd)}/month, not running")
    estimated = sum(line.monthly_usd for line in est.lines if LAMBDA_INSTANCE in line.urn)
    return Drift(estimated, running, tuple(out))


def drift_report(stack: str, phase: str, instances: Sequence[Instance], stack_path: Path | None = None) -> list[str]:
    est = cost.estimate(harness.record(stack, phase=phase, stack_path=stack_path or harness.stack_file(stack)))
    drift = lambda_drift(est, instances, stack)
    pct = f" ({drift.delta_usd / drift.estimated_usd:+.1%})" if drift.estimated_usd else ""
    head = (
        f"cost drift (Lambda): estimate {cost.usd(drift.estimated_usd)}/month, running "
        f"{cost.usd(drift.running_usd)}/month at the API's prices: "
        f"{'+' if drift.delta_usd >= 0 else ''}{cost.usd(drift.delta_usd)}{pct}"
    )
    return [head, *(f"  {line}" for line in drift.lines)]
