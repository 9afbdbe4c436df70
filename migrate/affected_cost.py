"""The pull-request summary's cost section (`python -m migrate.affected --run`), the way Infracost
comments a change: the monthly estimate before and after, per touched phase, and the lines that moved.

"Before" is the base branch's stack file where the change edits `Pulumi.<stack>.yaml` (same phase,
same program: what the edit itself costs), and the phase the stack moves from where it moves
`gpu-platform:phase`. Other touched phases show their phase-to-phase change in their `diff` output.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from components.core.errors import ConfigError
from migrate import cost, harness


def _row(stack: str, label: str, before: harness.RecordedPlan, after: harness.RecordedPlan) -> tuple[str, list[str]]:
    a, b = cost.estimate(before), cost.estimate(after)
    delta = b.monthly_usd - a.monthly_usd
    change = f"{'+' if delta >= 0 else ''}{cost.usd(delta)}"
    row = f"| {stack} | {label} | {cost.usd(a.monthly_usd)} | {cost.usd(b.monthly_usd)} | {change} |"
    return row, [f"{stack} {label}:", *cost.change_lines(before, after)]


def cost_markdown(
    pairs: dict[str, list[str]],
    moves: Sequence[tuple[str, str, str]],
    base_text: Callable[[str], str | None],
    head_text: Callable[[str], str | None],
) -> str:
    """`pairs`: stack -> touched phases; `moves`: (stack, from, to). Empty when nothing to compare."""
    rows: list[str] = []
    details: list[str] = []
    with tempfile.TemporaryDirectory(prefix="affected-cost-") as tmp:
        for stack, phases in pairs.items():
            name = f"Pulumi.{stack}.yaml"
            base, head = base_text(name), head_text(name)
            if base is None or head is None or base == head:
                continue
            base_path, head_path = Path(tmp) / f"base.{name}", Path(tmp) / f"head.{name}"
            base_path.write_text(base)
            head_path.write_text(head)
            for phase in phases:
                try:
                    row, lines = _row(
                        stack,
                        f"{phase} (base branch -> this change)",
                        harness.record(stack, phase=phase, stack_path=base_path),
                        harness.record(stack, phase=phase, stack_path=head_path),
                    )
                except ConfigError as exc:
                    row, lines = f"| {stack} | {phase} | - | - | error |", [f"{stack} {phase}: error: {exc}"]
                rows.append(row)
                details += [*lines, ""]
        for stack, before, after in moves:
            try:
                row, lines = _row(
                    stack,
                    f"move {before} -> {after}",
                    harness.record(stack, phase=before),
                    harness.record(stack, phase=after),
                )
            except ConfigError as exc:
                row, lines = f"| {stack} | move {before} -> {after} | - | - | error |", [f"error: {exc}"]
            rows.append(row)
            details += [*lines, ""]
    if not rows:
        return ""
    body = "\n".join(details).rstrip().replace("```", "'''")
    return "\n".join(
        [
            "### Monthly cost (estimate)",
            "",
            "| stack | what | before | after | change |",
            "|---|---|---|---|---|",
            *rows,
            "",
            "<details open><summary>Cost change per resource</summary>",
            "",
            "```text",
            body,
            "```",
            "",
            "</details>",
            "",
        ]
    )
