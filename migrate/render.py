"""Terminal output for `python -m migrate`: the plan as a tree, the diff as a change list."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from components.config.phases import Phase, forward_gate, load_phases
from migrate import review
from migrate.harness import SECRET, UNKNOWN, RecordedPlan, RecordedResource
from migrate.output import nested
from migrate.plan import PlanDiff, counts, critical_path, images, is_mock, mock_values, tree


def _label(res: RecordedResource) -> Text:
    text = Text()
    text.append(res.name, style="bold" if not res.custom else "")
    text.append(f"  {res.type}", style="dim")
    flags = []
    if res.protect:
        flags.append("protect")
    if res.retain_on_delete:
        flags.append("retain")
    if res.import_id:
        flags.append(f"import {res.import_id}")
    if flags:
        text.append("  [" + ", ".join(flags) + "]", style="cyan")
    if res.secret_inputs or res.secret_outputs:
        secrets = sorted({p.split(".")[0].split("[")[0] for p in res.secret_inputs} | set(res.secret_outputs))
        text.append(f"  {SECRET} " + ", ".join(secrets), style="yellow")
    if res.unknown_inputs:
        # A preview: inputs that wait for another resource's output (the engine's unknowns).
        unknown = sorted({p.split(".")[0].split("[")[0] for p in res.unknown_inputs})
        text.append(f"  {UNKNOWN} " + ", ".join(unknown), style="magenta")
    return text


def _short(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def plan(console: Console, p: RecordedPlan, phase: Phase) -> None:
    console.print(Text(f"Plan for stack {p.stack} at phase {phase.id}: {phase.title}", style="bold"))
    console.print(Text(phase.summary, style="dim"))
    if p.preview:
        waiting = sum(1 for r in p.resources if r.unknown_inputs)
        console.print(
            Text(
                f"First preview: {waiting} resources have {UNKNOWN} inputs (outputs of resources not yet created)",
                style="magenta",
            )
        )
    custom = sum(1 for r in p.resources if r.custom)
    console.print(f"{len(p.resources)} resources ({custom} custom, {len(p.resources) - custom} components)\n")

    root = Tree(Text(f"{p.stack} stack", style="bold"))

    def add(branch: Tree, node: Any) -> None:
        sub = branch.add(_label(node.resource))
        for child in node.children:
            add(sub, child)

    for node in tree(p):
        add(root, node)
    console.print(root)

    table = Table(title="Resources by type", show_edge=False)
    table.add_column("type")
    table.add_column("count", justify="right")
    for type_, n in counts(p).items():
        table.add_row(type_, str(n))
    console.print(table)

    path = critical_path(p)
    console.print(Text(f"\nCritical path ({path.length} resources, created one after another):", style="bold"))
    for i, urn in enumerate(path.urns, 1):
        console.print(Text(f"  {i:>2}. {_short(urn)}"))

    uses = images(p)
    if uses:
        by_digest = [u for u in uses if u.digest]
        console.print(Text(f"\nImages: {len(by_digest)} of {len(uses)} pinned by digest", style="bold"))
        for u in uses:
            if u.digest:
                continue
            why = u.pending_reason or "NOT on the reviewed pending list: the prod policy refuses it"
            console.print(f"  digest pending  {u.ref}  ({', '.join(u.resources)})", markup=False)
            console.print(Text(f"      {why}", style="dim" if u.pending_reason else "red"))

    console.print(Text("\nExit criteria", style="bold"))
    for item in phase.exit_criteria.checklist:
        console.print(f"  [ ] {item}", markup=False)
    for check in phase.exit_criteria.checks:
        console.print(f"  machine check: {check}")
    gate = forward_gate(phase, load_phases(phase.path.parent)[phase.index + 1 : phase.index + 2])
    if gate is not None and phase.exit_criteria.checks:
        console.print(
            f"  gate: `migrate forward` leaves {phase.id} only when these checks pass ({gate}); "
            '`--override-gate "reason"` moves anyway and records the reason',
            markup=False,
        )

    outputs(console, p)


def mock_output_keys(p: RecordedPlan) -> list[str]:
    """The stack outputs that hold a value the offline mocks made up (for --json)."""
    invented = mock_values(p)

    def walk(value: Any) -> bool:
        if isinstance(value, dict):
            return any(walk(v) for v in value.values())
        if isinstance(value, list):
            return any(walk(v) for v in value)
        return is_mock(value, invented)

    return sorted(k for k, v in p.outputs.items() if k not in p.secret_stack_outputs and walk(v))


def outputs(console: Console, p: RecordedPlan) -> None:
    """The stack outputs, nested as `pulumi up` prints them, each value the offline mocks made up
    (an address, a key, a backup object) marked so that nobody takes it for the real one."""
    if not p.outputs:
        return
    invented = mock_values(p)

    def mark(value: Any) -> str:
        return "  # offline mock value" if is_mock(value, invented) else ""

    console.print(Text(f"\nOutputs ({len(p.outputs)}), computed offline under mocks", style="bold"))
    console.print(
        Text(
            "  values marked '# offline mock value' were made up by migrate/mocks.py in place of a provider's "
            "answer; `pulumi up` returns the real ones",
            style="dim",
        )
    )
    for key in sorted(p.outputs):
        value = SECRET if key in p.secret_stack_outputs else p.outputs[key]
        for line in nested(key, value, mark=mark):
            console.print(Text(line))


def diff(console: Console, stack: str, d: PlanDiff) -> None:
    """The diff as a review (migrate/review.py: values, irreversible steps, skipped phases)."""
    review.render_text(console, review.review(stack, d))
