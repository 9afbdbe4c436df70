"""What a phase costs per month, from its recorded plan: `python -m migrate cost`.

    python -m migrate cost --stack prod --phase p2a-k3s            # lines, providers, total, assumptions
    python -m migrate cost --stack prod --json                      # {"monthlyUsd", "lines": [...], ...}
    python -m migrate cost --stack prod --stack-file proposed.yaml --against Pulumi.prod.yaml

The arithmetic is policy/costing.py's, the one the policy pack's `budget` rule runs: each line is a
catalog price (components/catalog/prices.json) times a quantity taken from the recorded resources
and the stack's `cost` assumptions, both carried by the stack's `costBasis` output. `plan` shows a
phase's total, `diff` and the pull-request summary (migrate/affected.py) the change per resource.
A price the catalog does not have is an error naming it (exit 2), never a zero.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from components.catalog.prices import PRICES_FILE, load_catalog
from components.config.phases import Phase, load_phases, resolve
from components.core.errors import ConfigError
from migrate import harness
from migrate.harness import PROJECT, RecordedPlan

POLICY_DIR = harness.ROOT / "policy"
STACK_TYPE = "pulumi:pulumi:Stack"
# Resources of the legacy estate: what the migration window keeps running beside K3s.
_LEGACY_MARKERS = ("gpu-platform:legacy:LegacyEstate", "gpu-platform:fly:FlyApps")


def costing() -> ModuleType:
    """policy/costing.py, imported the way the policy pack imports its helpers (its directory on sys.path)."""
    path = str(POLICY_DIR)
    if path not in sys.path:
        sys.path.insert(0, path)
    return importlib.import_module("costing")


def usd(value: float) -> str:
    text: str = costing().usd(value)
    return text


def stack_urn(plan: RecordedPlan) -> str:
    return f"urn:pulumi:{plan.stack}::{PROJECT}::{STACK_TYPE}::{PROJECT}-{plan.stack}"


def estimate(plan: RecordedPlan) -> Any:
    """The plan's `costing.Estimate`. Raises ConfigError for a missing price or a plan without costBasis."""
    mod = costing()
    basis = plan.outputs.get(mod.BASIS_OUTPUT)
    if not isinstance(basis, Mapping):
        raise ConfigError(f"stack {plan.stack} at {plan.phase}: the program exported no costBasis output")
    resources = [mod.Resource(r.urn, r.type, r.name, r.inputs) for r in plan.resources]
    resources.append(mod.Resource(stack_urn(plan), STACK_TYPE, f"{PROJECT}-{plan.stack}", plan.outputs))
    try:
        return mod.estimate(resources, basis)
    except mod.CostError as exc:
        raise ConfigError(f"stack {plan.stack} at {plan.phase}: {exc}") from None


def source_of(key: str) -> str:
    entry = load_catalog().get(key)
    return entry.source if entry else ""


def to_json(plan: RecordedPlan, est: Any) -> dict[str, Any]:
    catalog = load_catalog()
    return {
        "stack": plan.stack,
        "phase": plan.phase,
        "monthlyUsd": round(est.monthly_usd, 2),
        "budgetMonthlyUsd": est.budget_usd,
        "byProvider": {k: round(v, 2) for k, v in est.by_provider().items()},
        "lines": [line.to_json(source_of(line.price_key)) for line in est.lines],
        "assumptions": dict(est.basis.get("assumptions") or {}),
        "catalog": {"file": str(PRICES_FILE.relative_to(harness.ROOT)), "updated": catalog.updated.isoformat()},
    }


# --- text ----------------------------------------------------------------------------------------


def catalog_warning(plan: RecordedPlan, today: dt.date | None = None) -> str | None:
    """A warning line when the catalog is older than the stack's `cost.catalogMaxAgeDays`."""
    catalog = load_catalog()
    basis = plan.outputs.get("costBasis") or {}
    max_age = int((basis.get("assumptions") or {}).get("catalogMaxAgeDays", 90))
    age = catalog.age_days(today or dt.date.today())
    if age <= max_age:
        return None
    return (
        f"warning: the price catalog was last updated {catalog.updated.isoformat()} ({age} days ago, more than "
        f"cost.catalogMaxAgeDays {max_age}); refresh it with `python -m migrate.prices refresh --stack {plan.stack}`"
    )


def total_lines(plan: RecordedPlan, today: dt.date | None = None) -> list[str]:
    """What `migrate plan` shows: the phase's monthly total, by provider, and the catalog's date."""
    est = estimate(plan)
    providers = ", ".join(f"{name} {usd(v)}" for name, v in est.by_provider().items())
    out = [
        f"Monthly cost (estimate): {usd(est.monthly_usd)} ({providers or 'nothing billed'}); "
        f"prices of {load_catalog().updated.isoformat()}, `python -m migrate cost` for the lines"
    ]
    if est.budget_usd is not None and est.monthly_usd > est.budget_usd:
        out.insert(0, f"OVER BUDGET: {usd(est.monthly_usd)} a month against gpu-platform:budget {usd(est.budget_usd)}")
    warning = catalog_warning(plan, today)
    if warning:
        out.append(warning)
    return out


def _line_text(line: Any) -> str:
    return (
        f"{usd(line.monthly_usd):>12}  {line.name}: {line.item}  "
        f"[{line.quantity:,.4g} {line.unit} x {usd_unit(line.unit_price_usd)}, {line.price_key}]"
    )


def usd_unit(value: float) -> str:
    """A unit price: cents kept for hourly figures, significant digits for per-token ones."""
    return f"${value:.2f}" if value >= 0.01 else f"${value:.3g}"


def report(plan: RecordedPlan, est: Any, window: WindowCost | None = None) -> list[str]:
    out = [f"Monthly cost of stack {plan.stack} at {plan.phase}: {usd(est.monthly_usd)} (estimate)"]
    if est.budget_usd is not None:
        verdict = "OVER" if est.monthly_usd > est.budget_usd else "within"
        out.append(f"  budget: {usd(est.budget_usd)} a month, {verdict} it")
    out.append("")
    for name, value in est.by_provider().items():
        out.append(f"  {name:<8}{usd(value):>12}")
    out += ["", "Lines, largest first:"]
    out += [f"  {_line_text(line)}" for line in est.largest(len(est.lines))]
    assumptions = est.basis.get("assumptions") or {}
    out += ["", "Assumptions (gpu-platform:cost):", f"  {json.dumps(assumptions, sort_keys=True)}"]
    out.append(f"Prices: {PRICES_FILE.relative_to(harness.ROOT)}, updated {load_catalog().updated.isoformat()}")
    if window is not None:
        out += ["", *window.lines()]
    warning = catalog_warning(plan)
    if warning:
        out.append(warning)
    return out


def change_lines(before: RecordedPlan, after: RecordedPlan) -> list[str]:
    """The change in monthly cost between two plans, per resource, the way Infracost comments it."""
    mod = costing()
    a, b = estimate(before), estimate(after)
    delta = b.monthly_usd - a.monthly_usd
    pct = f", {delta / a.monthly_usd:+.1%}" if a.monthly_usd else ""
    out = [f"Monthly cost: {usd(a.monthly_usd)} -> {usd(b.monthly_usd)} ({'+' if delta >= 0 else ''}{usd(delta)}{pct})"]
    for change in mod.compare(a, b):
        line = change.line
        sign = "+" if change.before is None else "-" if change.after is None else "~"
        was = f"{usd(change.before.monthly_usd)} -> " if change.before and change.after else ""
        now = usd(change.after.monthly_usd) if change.after else "removed"
        out.append(
            f"  {sign} {'+' if change.delta_usd >= 0 else ''}{usd(change.delta_usd):>11}  {line.name}: {line.item}"
            f"  ({was}{now}; {line.price_key})"
        )
    return out


# --- the migration window ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowPhase:
    phase: str
    days: int | None
    legacy_usd: float  # per month
    total_usd: float  # per month


@dataclass(frozen=True)
class WindowCost:
    """Legacy and K3s both running, from the first phase with GPU hosts to the last before p4."""

    phases: tuple[WindowPhase, ...]
    hours_per_month: float

    @property
    def missing_days(self) -> list[str]:
        return [p.phase for p in self.phases if p.days is None]

    @property
    def days(self) -> int:
        return sum(p.days or 0 for p in self.phases)

    def _over_window(self, monthly: Sequence[tuple[float, int | None]]) -> float:
        return sum(usd_month * (days or 0) * 24 / self.hours_per_month for usd_month, days in monthly)

    @property
    def legacy_usd(self) -> float:
        """What keeping the legacy estate beside K3s costs over the window."""
        return self._over_window([(p.legacy_usd, p.days) for p in self.phases])

    @property
    def total_usd(self) -> float:
        return self._over_window([(p.total_usd, p.days) for p in self.phases])

    def lines(self) -> list[str]:
        if not self.phases:
            return ["Migration window: no phase runs legacy and K3s together"]
        first, last = self.phases[0].phase, self.phases[-1].phase
        out = [
            f"Migration window {first} .. {last} ({self.days} days as the runbooks plan them): legacy kept running "
            f"beside K3s costs {usd(self.legacy_usd)}; everything over the window {usd(self.total_usd)}"
        ]
        for p in self.phases:
            days = f"{p.days} days" if p.days is not None else "no expectedDays in its phase file: not counted"
            out.append(f"  {p.phase:<18} {days:<12} legacy {usd(p.legacy_usd)}/month, total {usd(p.total_usd)}/month")
        return out


def window_phases(phases: Sequence[Phase]) -> list[Phase]:
    return [p for p in phases if p.state.k3s.gpu_hosts and p.state.legacy.fly_apps != "destroyed"]


def is_legacy(line: Any) -> bool:
    return any(marker in line.urn for marker in _LEGACY_MARKERS)


def window_cost(stack: str, stack_path: Path, phases: Sequence[Phase] | None = None) -> WindowCost:
    rows = []
    hours = 730.0
    for phase in window_phases(phases if phases is not None else load_phases()):
        est = estimate(harness.record(stack, phase=phase.id, stack_path=stack_path))
        hours = float((est.basis.get("assumptions") or {}).get("hoursPerMonth", hours))
        legacy = sum(line.monthly_usd for line in est.lines if is_legacy(line))
        rows.append(WindowPhase(phase.id, phase.expected_days, legacy, est.monthly_usd))
    return WindowCost(tuple(rows), hours)


# --- the command -------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--phase", help="phase id (default: the stack's gpu-platform:phase)")
    p.add_argument(
        "--against", metavar="FILE", help="another stack file (e.g. the base branch's): show the change per resource"
    )
    p.add_argument(
        "--no-window", action="store_true", help="skip the migration window figure (it records one plan per phase)"
    )


def cmd_cost(args: argparse.Namespace, stack_path: Path) -> int:
    plan = harness.record(args.stack, phase=args.phase, stack_path=stack_path)
    resolve(plan.phase)
    est = estimate(plan)
    if args.json:
        doc = to_json(plan, est)
        if args.against:
            base = harness.record(args.stack, phase=plan.phase, stack_path=Path(args.against))
            doc["againstMonthlyUsd"] = round(estimate(base).monthly_usd, 2)
        print(json.dumps(doc, indent=2))
        return 0
    window = None if args.no_window else window_cost(args.stack, stack_path)
    for line in report(plan, est, window):
        print(line)
    if args.against:
        against = Path(args.against)
        if not against.is_file():
            raise ConfigError(f"--against {args.against}: no such file")
        base = harness.record(args.stack, phase=plan.phase, stack_path=against)
        print(f"\nAgainst {args.against}:")
        for line in change_lines(base, plan):
            print(line)
    return 0
