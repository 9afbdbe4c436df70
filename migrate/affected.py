"""Which phases a change touches, and their offline plan, diff and check: `python -m migrate.affected`.

CI runs this on every pull request:

    python -m migrate.affected --base origin/main --run --summary "$GITHUB_STEP_SUMMARY"

Mapping changed files to (stack, phase) pairs:

- `stacks/<id>.yaml` touches that phase and every later one (each later phase merges over it);
- `Pulumi.<stack>.yaml` touches every phase of that stack; if it moves `gpu-platform:phase`, the move
  itself is checked with the rules of `migrate forward`/`rollback` (one phase at a time, never back
  past an irreversible step) and diffed from the old phase to the new one;
- the program and what it is built from (components/, policy/, __main__.py, Pulumi.yaml,
  requirements.txt, the harness and mocks) touch every phase of every stack;
- anything else (docs, tests, workflows, the CLI's other tools) touches no phase; `make test` covers it.

For each pair it runs, in process, `python -m migrate plan`, `diff` (from the phase before) and
`check`, and writes a Markdown report (a table plus each command's output, folded) to `--summary`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml

from components.config.phases import STACKS_DIR, Phase, load_phases
from components.core.errors import ConfigError
from migrate import output

ROOT = Path(__file__).resolve().parent.parent
PHASE_KEY = "gpu-platform:phase"

# Files and folders the program's resources are computed from.
PROGRAM_INPUTS = (
    "__main__.py",
    "Pulumi.yaml",
    "requirements.txt",
    "components/",
    "policy/",
    "migrate/harness.py",
    "migrate/mocks.py",
    "migrate/policy_runner.py",
)

# The `python -m migrate` subcommands this module runs; tests/test_workflows.py checks they exist.
SUBCOMMANDS = ("plan", "diff", "check")
MAX_OUTPUT_LINES = 150  # per command in the summary; GitHub caps a step summary at 1 MiB


@dataclass(frozen=True)
class PhaseMove:
    stack: str
    before: str
    after: str


@dataclass
class Affected:
    pairs: dict[str, list[str]] = field(default_factory=dict)  # stack -> phase ids, in order
    reasons: dict[str, str] = field(default_factory=dict)  # file -> why it matters
    moves: list[PhaseMove] = field(default_factory=list)

    def add(self, stack: str, phases: Iterable[str], order: Sequence[str]) -> None:
        merged = set(self.pairs.get(stack, ())) | set(phases)
        self.pairs[stack] = [p for p in order if p in merged]

    @property
    def empty(self) -> bool:
        return not any(self.pairs.values())


def known_stacks(root: Path = ROOT) -> list[str]:
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))


def _phase_of(text: str | None) -> str | None:
    if not text:
        return None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    config = doc.get("config") if isinstance(doc, dict) else None
    value = config.get(PHASE_KEY) if isinstance(config, dict) else None
    return value if isinstance(value, str) else None


def affected(
    files: Iterable[str],
    stacks: Sequence[str],
    phases: Sequence[Phase],
    base_text: Callable[[str], str | None] = lambda _path: None,
    head_text: Callable[[str], str | None] = lambda _path: None,
) -> Affected:
    """The (stack, phase) pairs `files` touch. `base_text`/`head_text` read a file before/after the change."""
    order = [p.id for p in phases]
    result = Affected()
    for name in sorted(set(files)):
        path = PurePosixPath(name)
        if any(name == item or (item.endswith("/") and name.startswith(item)) for item in PROGRAM_INPUTS):
            result.reasons[name] = "program input: every phase of every stack"
            for stack in stacks:
                result.add(stack, order, order)
        elif len(path.parts) == 2 and path.parts[0] == "stacks" and path.suffix == ".yaml":
            if path.stem in order:
                later = order[order.index(path.stem) :]
                result.reasons[name] = f"phase file: {path.stem} and the {len(later) - 1} phase(s) after it"
            else:  # removed or renamed: the order of every phase may have changed
                later = order
                result.reasons[name] = "phase file added or removed: every phase"
            for stack in stacks:
                result.add(stack, later, order)
        elif len(path.parts) == 1 and name.startswith("Pulumi.") and name.endswith(".yaml"):
            stack = name[len("Pulumi.") : -len(".yaml")]
            if stack not in stacks:
                result.reasons[name] = "stack file removed: nothing to plan"
                continue
            result.reasons[name] = f"stack file: every phase of {stack}"
            result.add(stack, order, order)
            before, after = _phase_of(base_text(name)), _phase_of(head_text(name))
            if before and after and before != after:
                result.moves.append(PhaseMove(stack, before, after))
        else:
            result.reasons[name] = "no phase (covered by make test)"
    return result


def check_move(move: PhaseMove, phases: Sequence[Phase], stacks_dir: Path = STACKS_DIR) -> str | None:
    """Why a phase change in a stack file must not merge, or None. Same rules as `migrate forward`."""
    # Only a stack file that moves its phase needs the move rules: +140 ms (186 modules) otherwise.
    from migrate.automation import Refused, plan_move  # noqa: PLC0415

    ids = [p.id for p in phases]
    for phase in (move.before, move.after):
        if phase not in ids:
            return f"{move.stack}: {PHASE_KEY} {phase!r} is not a phase in stacks/"
    before, after = phases[ids.index(move.before)], phases[ids.index(move.after)]
    direction = "forward" if after.index > before.index else "rollback"
    try:
        plan_move(
            phases, before, direction=direction, to=after.id, allow_skip=False, stack=move.stack, stacks_dir=stacks_dir
        )
    except Refused as exc:
        return str(exc)
    return None


# --- running the offline commands ---------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    label: str
    argv: tuple[str, ...]
    code: int
    output: str

    @property
    def ok(self) -> bool:
        return self.code == 0


def run_cli(argv: Sequence[str]) -> tuple[int, str]:
    """`python -m migrate <argv>` in this process, its stdout and stderr captured."""
    # Only `--run` needs the CLI (the harness, the policy runner, the Automation API): at the top it
    # would add 210 ms (210 modules) to listing the touched phases, which records nothing.
    from migrate.cli import main  # noqa: PLC0415

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse errors
            code = exc.code if isinstance(exc.code, int) else 2
    return code, buffer.getvalue()


def run_offline(
    found: Affected, phases: Sequence[Phase], runner: Callable[[Sequence[str]], tuple[int, str]] = run_cli
) -> list[Outcome]:
    ids = [p.id for p in phases]
    outcomes = []
    for move in found.moves:
        problem = check_move(move, phases)
        if problem:
            outcomes.append(Outcome(f"{move.stack}: move {move.before} -> {move.after}", (), 1, problem))
            continue
        move_argv = ("diff", "--stack", move.stack, "--from", move.before, "--to", move.after)
        outcomes.append(Outcome(f"{move.stack}: move {move.before} -> {move.after}", move_argv, *runner(move_argv)))
    for stack, stack_phases in found.pairs.items():
        for phase in stack_phases:
            commands: list[tuple[str, tuple[str, ...]]] = [("plan", ("plan", "--stack", stack, "--phase", phase))]
            index = ids.index(phase)
            if index > 0:
                commands.append(("diff", ("diff", "--stack", stack, "--from", ids[index - 1], "--to", phase)))
            commands.append(("check", ("check", "--stack", stack, "--phase", phase)))
            for kind, argv in commands:
                outcomes.append(Outcome(f"{stack} {phase} {kind}", argv, *runner(argv)))
    return outcomes


def review_cell(o: Outcome) -> str:
    """What `migrate diff` marks as dangerous (its `!!` lines: irreversible steps, refusals, skipped
    phases and gates) and its review counts, so the table shows them without opening the output."""
    text = o.output.splitlines()
    marks = [line[3:].split(";")[0].split(". ")[0] for line in text if line.startswith("!! ")]
    counts = [line[len("review: ") :] for line in text if line.startswith("review: ")]
    cell = "<br>".join(f"**{m}**" for m in marks) + ("<br>" if marks and counts else "") + "".join(counts)
    return cell.replace("|", "\\|")


def markdown(found: Affected, outcomes: Sequence[Outcome]) -> str:
    lines = ["## Offline plan, diff and check", ""]
    if found.reasons:
        lines += ["| changed file | touches |", "|---|---|"]
        lines += [f"| `{name}` | {why} |" for name, why in sorted(found.reasons.items())]
        lines.append("")
    if not outcomes:
        lines.append("No phase is touched by this change; nothing to plan.")
        return "\n".join(lines) + "\n"
    failed = [o for o in outcomes if not o.ok]
    lines.append(f"**{len(outcomes) - len(failed)} of {len(outcomes)} passed.**")
    lines += ["", "| | what | command | exit | review |", "|---|---|---|---|---|"]
    for o in outcomes:
        command = f"`python -m migrate {' '.join(o.argv)}`" if o.argv else "(refused before running)"
        lines.append(f"| {'✅' if o.ok else '❌'} | {o.label} | {command} | {o.code} | {review_cell(o)} |")
    lines.append("")
    for o in outcomes:
        text = o.output.rstrip().splitlines()
        if len(text) > MAX_OUTPUT_LINES:
            text = [*text[:MAX_OUTPUT_LINES], f"... {len(text) - MAX_OUTPUT_LINES} more line(s)"]
        body = "\n".join(text).replace("```", "'''") or "(no output)"
        state = "" if o.ok else " open"
        lines += [f"<details{state}><summary>{o.label}</summary>", "", "```text", body, "```", "", "</details>", ""]
    return "\n".join(lines)


def cost_section(
    found: Affected, base_text: Callable[[str], str | None], head_text: Callable[[str], str | None]
) -> str:
    """issue 24: the monthly cost before and after the change (migrate/affected_cost.py)."""
    # Records plans like `--run`'s commands do: at the top its 400 ms (measured under load) would slow
    # listing the touched phases, which records nothing.
    from migrate.affected_cost import cost_markdown  # noqa: PLC0415

    moves = [(m.stack, m.before, m.after) for m in found.moves]
    try:
        return cost_markdown(found.pairs, moves, base_text, head_text)
    except ConfigError as exc:
        return f"### Monthly cost (estimate)\n\nerror: {exc}\n"


# --- git ----------------------------------------------------------------------------------------


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)


def changed_files(base: str) -> list[str]:
    done = _git("diff", "--name-only", "--no-renames", f"{base}...HEAD")
    if done.returncode != 0:
        raise ConfigError(
            f"--base {base}: git cannot diff against it ({done.stderr.strip()}); "
            "fetch the base branch first (actions/checkout with fetch-depth: 0)"
        )
    return [line for line in done.stdout.splitlines() if line]


def file_at(revision: str, path: str) -> str | None:
    done = _git("show", f"{revision}:{path}")
    return done.stdout if done.returncode == 0 else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m migrate.affected", description=__doc__.split("\n")[0])
    parser.add_argument("--base", help="git revision the change is compared with, e.g. origin/main")
    parser.add_argument("--files", nargs="*", help="changed files (instead of --base)")
    parser.add_argument("--run", action="store_true", help="run plan, diff and check for every touched phase")
    parser.add_argument("--summary", help="append the Markdown report to this file (e.g. $GITHUB_STEP_SUMMARY)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.base is None) == (args.files is None):
        parser.error("give exactly one of --base or --files")

    return output.survive_closed_pipe(lambda: _report(args))


def _report(args: argparse.Namespace) -> int:
    def base_text(path: str) -> str | None:
        return file_at(args.base, path) if args.base is not None else None

    def head_text(path: str) -> str | None:
        return (ROOT / path).read_text() if (ROOT / path).is_file() else None

    try:
        phases = load_phases()
        files = changed_files(args.base) if args.base is not None else list(args.files)
        found = affected(files, known_stacks(), phases, base_text, head_text)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for stack, ids in found.pairs.items():
        print(f"{stack}: {' '.join(ids) if ids else '-'}")
    for move in found.moves:
        print(f"{move.stack}: moves {move.before} -> {move.after}")
    if found.empty and not found.moves:
        print("no phase touched")
    outcomes = run_offline(found, phases) if args.run else []
    costs = cost_section(found, base_text, head_text) if args.run else ""
    if args.summary:
        with open(args.summary, "a", encoding="utf-8") as fh:
            fh.write(markdown(found, outcomes))
            fh.write(costs)
    elif costs:
        print(costs)
    failed = [o.label for o in outcomes if not o.ok]
    for label in failed:
        print(f"FAILED: {label}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
