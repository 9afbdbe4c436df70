"""Terminal output for `python -m migrate`: the plan as a tree, the diff as a change list."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from components.config.phases import Phase, forward_gate, load_phases
from migrate.harness import SECRET, UNKNOWN, RecordedPlan, RecordedResource
from migrate.plan import PlanDiff, counts, critical_path, images, tree

_KIND_STYLE = {"create": ("+", "green"), "update": ("~", "yellow"), "replace": ("±", "magenta"), "delete": ("-", "red")}


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
        console.print(f"  {i:>2}. {_short(urn)}")

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

    if p.outputs:
        console.print(Text("\nOutputs", style="bold"))
        for key, value in p.outputs.items():
            shown = SECRET if key in p.secret_stack_outputs else value
            console.print(f"  {key} = {shown}", markup=False)


def diff(console: Console, stack: str, d: PlanDiff) -> None:
    console.print(Text(f"Diff for stack {stack}: {d.before} -> {d.after}", style="bold"))
    if not d.changes:
        console.print("  no changes")
    for c in d.changes:
        sign, style = _KIND_STYLE[c.kind]
        line = Text(f"  {sign} {c.kind:<8}", style=style)
        line.append(f"{c.name}  ", style="bold")
        line.append(c.type, style="dim")
        if c.changed:
            shown = ", ".join(c.changed[:6]) + (f", … {len(c.changed) - 6} more" if len(c.changed) > 6 else "")
            line.append(f"  ({shown})")
        if c.options:
            line.append(f"  options: {', '.join(c.options)}", style="cyan")
        if c.kind in ("delete", "replace") and (c.protected or c.stateful):
            line.append(
                "  !! " + ("PROTECTED " if c.protected else "") + ("STATEFUL" if c.stateful else ""), "bold red"
            )
        console.print(line)
    summary = ", ".join(f"{len(d.of_kind(k))} {k}" for k in ("create", "update", "replace", "delete"))
    console.print(f"\n{summary}")
    if d.deletes_protected:
        console.print(
            Text(
                f"refused: this transition would delete or replace {len(d.deletes_protected)} protected resource(s)",
                style="bold red",
            )
        )
