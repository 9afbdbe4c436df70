"""`migrate diff` as a review: what a phase change does, the dangerous parts first and counted.

On top of the resource diff (migrate/plan.py) a review knows the phase graph:

- irreversible steps: a phase file's `irreversible` list names its steps; `STEP_TYPES` says which
  resource types carry each out, so a forward move marks those creates, and a move back past the
  phase is refused (exit 3);
- protected and stateful resources that the move touches (any change, not only deletes);
- skipped phases, and among them the traffic phases whose cutover gate `migrate forward` would run
  (migrate/automation.py `_gate`): a diff across them reviews a move `forward` only makes with
  `--to P --allow-skip`;
- `--fail-on` turns any of these into a failing exit code for CI.

Issue 24 adds cost lines: `render_text` prints through `sections`, which a caller may extend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.text import Text

from components.config.phases import Phase, forward_gate, irreversible_between, load_phases, resolve
from migrate.output import EXIT_FAILED, EXIT_OK, EXIT_PROTECTED, scalar
from migrate.plan import ABSENT, Change, PlanDiff, summarise

# The resource types that carry out each irreversible step named in stacks/*.yaml. A step without
# an entry fails tests/test_review.py, so a new irreversible step cannot pass review unmarked.
STEP_TYPES: dict[str, tuple[str, ...]] = {
    "fly-destroy": ("pulumi-python:dynamic/fly:FlyDestroy",),
}

FAIL_ON = ("irreversible", "protected", "stateful", "skipped")
VALUES_SHOWN = 12  # changed values printed per resource in text; --json has up to MAX_VALUES


@dataclass(frozen=True)
class DiffReview:
    stack: str
    diff: PlanDiff
    direction: str  # forward | rollback | none
    irreversible: dict[str, tuple[str, str]] = field(default_factory=dict)  # urn -> (phase, step), done by the move
    undone: tuple[tuple[str, str], ...] = ()  # (phase, step) a move back would have to undo
    skipped: tuple[Phase, ...] = ()
    # A forward move out of a traffic phase, or into one with irreversible steps, runs the exit checks
    # of the phase it leaves first (components/config/phases.py forward_gate): (phase, why).
    leaving_gate: tuple[Phase, str] | None = None

    @property
    def skipped_gates(self) -> tuple[Phase, ...]:
        return tuple(p for p in self.skipped if p.gated) if self.direction == "forward" else ()

    @property
    def protected(self) -> list[Change]:
        return [c for c in self.diff.changes if c.protected and c.kind != "create"]

    @property
    def stateful(self) -> list[Change]:
        return [c for c in self.diff.changes if c.stateful and c.kind != "create"]

    def counts(self) -> dict[str, int]:
        return {
            "irreversible": len(self.irreversible) + len(self.undone),
            "protected": len(self.protected),
            "stateful": len(self.stateful),
            "skipped": len(self.skipped),
            "skippedGates": len(self.skipped_gates),
        }

    def failures(self, fail_on: Sequence[str]) -> list[str]:
        """The `--fail-on` conditions this review meets, as words for the log."""
        counts = self.counts()
        return [f"{counts[what]} {what}" for what in fail_on if counts[what]]

    def exit_code(self, fail_on: Sequence[str] = ()) -> int:
        if self.diff.deletes_protected or self.undone:
            return EXIT_PROTECTED
        hit = [what for what in fail_on if self.counts()[what]]
        if any(what in ("irreversible", "protected") for what in hit):
            return EXIT_PROTECTED
        return EXIT_FAILED if hit else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        doc = self.diff.to_json()
        for change in doc["changes"]:
            step = self.irreversible.get(change["urn"])
            change["irreversible"] = {"phase": step[0], "step": step[1]} if step else None
        doc["irreversible"] = [{"phase": phase, "step": step} for phase, step in self.undone]
        doc["irreversibleSteps"] = [
            {"urn": urn, "phase": phase, "step": step} for urn, (phase, step) in self.irreversible.items()
        ]
        doc["skipped"] = [p.id for p in self.skipped]
        doc["skippedGates"] = [p.id for p in self.skipped_gates]
        doc["leavingGate"] = (
            {"phase": self.leaving_gate[0].id, "why": self.leaving_gate[1]} if self.leaving_gate else None
        )
        doc["summary"].update(self.counts())
        return doc


def review(stack: str, diff: PlanDiff) -> DiffReview:
    start, end = resolve(diff.before), resolve(diff.after)
    phases = load_phases()
    if end.index > start.index:
        direction = "forward"
        skipped = phases[start.index + 1 : end.index]
        moved_through = phases[start.index + 1 : end.index + 1]
    elif end.index < start.index:
        direction = "rollback"
        skipped = phases[end.index + 1 : start.index]
        moved_through = ()
    else:
        direction, skipped, moved_through = "none", (), ()
    steps = {
        type_: (phase.id, step)
        for phase in moved_through
        for step in phase.irreversible
        for type_ in STEP_TYPES.get(step, ())
    }
    irreversible = {c.urn: steps[c.type] for c in diff.changes if c.kind != "delete" and c.type in steps}
    return DiffReview(
        stack=stack,
        diff=diff,
        direction=direction,
        irreversible=irreversible,
        undone=tuple(irreversible_between(diff.before, diff.after)),
        skipped=tuple(skipped),
        leaving_gate=_gate(start, phases[start.index + 1 : end.index + 1]) if direction == "forward" else None,
    )


def _gate(start: Phase, entered: Sequence[Phase]) -> tuple[Phase, str] | None:
    why = forward_gate(start, entered)
    return (start, why) if why is not None else None


# --- text ------------------------------------------------------------------------------------------

_KIND_STYLE = {"create": ("+", "green"), "update": ("~", "yellow"), "replace": ("±", "magenta"), "delete": ("-", "red")}


def _flags(r: DiffReview, c: Change) -> list[str]:
    flags = []
    step = r.irreversible.get(c.urn)
    if step:
        flags.append(f"IRREVERSIBLE ({step[1]}, {step[0]})")
    if c.protected:
        flags.append("PROTECTED")
    if c.stateful and c.kind != "create":
        flags.append("STATEFUL")
    return flags


def _value(value: Any) -> str:
    return ABSENT if value == ABSENT else summarise(value) if isinstance(value, dict | list) else _short(value)


def _short(value: Any) -> str:
    text = scalar(value)
    return text if len(text) <= 80 else summarise(value)


def header(console: Console, r: DiffReview) -> None:
    """The dangerous parts first: a reviewer who reads three lines reads these."""
    d = r.diff
    console.print(Text(f"Diff for stack {r.stack}: {d.before} -> {d.after}", style="bold"))
    for phase, step in r.undone:
        console.print(
            Text(
                f"!! refused: {phase} did {step}, which cannot be undone; no rollback goes back past {phase}",
                style="bold red",
            )
        )
    if r.irreversible:
        steps = sorted({f"{step} ({phase})" for phase, step in r.irreversible.values()})
        console.print(
            Text(
                f"!! IRREVERSIBLE: {len(r.irreversible)} step(s) of {', '.join(steps)} cannot be undone; "
                "after this move no rollback goes back past it",
                style="bold red",
            )
        )
    if r.diff.deletes_protected:
        console.print(
            Text(
                f"!! refused: this transition would delete or replace {len(d.deletes_protected)} protected resource(s)",
                style="bold red",
            )
        )
    if r.skipped:
        gates = r.skipped_gates
        console.print(
            Text(
                f"!! SKIPS {len(r.skipped)} phase(s): {', '.join(p.id for p in r.skipped)}"
                + (
                    f"; and {len(gates)} cutover gate(s) ({', '.join(p.id for p in gates)}) whose exit checks "
                    "would never be measured"
                    if gates
                    else ""
                )
                + f". `migrate {'forward' if r.direction == 'forward' else 'rollback'}` makes this move only with "
                f"--to {d.after} --allow-skip",
                style="bold yellow",
            )
        )
    if r.leaving_gate:
        left, why = r.leaving_gate
        checks = ", ".join(left.exit_criteria.checks)
        console.print(Text(f"gate: leaving {left.id} ({why}): `migrate forward` first runs {checks}"))


def changes(console: Console, r: DiffReview) -> None:
    if not r.diff.changes:
        console.print(Text("  no changes"))
    for c in r.diff.changes:
        sign, style = _KIND_STYLE[c.kind]
        line = Text(f"  {sign} {c.kind:<8}", style=style)
        line.append(f"{c.name}  ", style="bold")
        line.append(c.type, style="dim")
        if c.options:
            line.append(f"  options: {', '.join(c.options)}", style="cyan")
        flags = _flags(r, c)
        if flags:
            line.append("  !! " + ", ".join(flags), style="bold red")
        console.print(line)
        for v in c.values[:VALUES_SHOWN]:
            console.print(Text(f"        {v.path}: {_value(v.old)} -> {_value(v.new)}"))
        if len(c.values) > VALUES_SHOWN:
            console.print(Text(f"        … {len(c.values) - VALUES_SHOWN} more changed value(s) (--json has them)"))


def summary(console: Console, r: DiffReview) -> None:
    d = r.diff
    kinds = ", ".join(f"{len(d.of_kind(k))} {k}" for k in ("create", "update", "replace", "delete"))
    counts = r.counts()
    review_line = (
        f"{counts['irreversible']} irreversible, {counts['protected']} protected, {counts['stateful']} stateful "
        f"touched, {counts['skipped']} phase(s) skipped, {counts['skippedGates']} gate(s) skipped"
    )
    console.print(Text(f"\n{kinds}"))
    console.print(Text(f"review: {review_line}"))


# Printed in this order; a caller may add its own (issue 24: cost) without touching these.
sections = [header, changes, summary]


def render_text(console: Console, r: DiffReview) -> None:
    for section in sections:
        section(console, r)
