"""`python -m migrate`: see what a phase builds and what a phase change does, offline.

Exit codes: 0 ok; 1 a check failed (policy violation, failed exit check); 2 bad input (config,
stack file, arguments) or a missing tool; 3 the transition would delete a protected resource or
undo an irreversible step.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.text import Text

from components.config.phases import phase_ids, resolve
from components.core.errors import ConfigError
from migrate import automation, cost, harness, output, policy_runner, render, review, stack_review
from migrate.output import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, EXIT_PROTECTED
from migrate.plan import counts, critical_path, diff_plans, images

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_OK", "EXIT_PROTECTED", "build_parser", "main"]

EXAMPLES = {
    "plan": [
        "python -m migrate plan --stack prod --phase p2a-k3s",
        "python -m migrate plan --stack prod --phase p2a-k3s --preview",
        "python -m migrate plan --stack prod --stack-file proposed.yaml --json",
    ],
    "diff": [
        "python -m migrate diff --stack prod --from p2b-services --to p2b1-cutover-50",
        "python -m migrate diff --stack prod --from p3-local-brain --to p4-decommission --fail-on irreversible",
    ],
    "check": [
        "python -m migrate check --stack prod --all-phases",
        "python -m migrate check --stack prod --all-phases --preview --verbose",
    ],
    "cost": ["python -m migrate cost --stack prod --phase p3-local-brain"],
    "status": ["python -m migrate status --stack prod --checks"],
    "forward": ["python -m migrate forward --stack prod", "python -m migrate forward --stack dev --yes"],
    "rollback": ["python -m migrate rollback --stack prod"],
}


def _epilog(*commands: str) -> str:
    lines = ["examples:"] + [f"  {ex}" for c in commands for ex in EXAMPLES[c]]
    try:
        lines += ["", "phases, in order:", "  " + " ".join(phase_ids())]
    except ConfigError as exc:  # broken phase files: --help still works and says why
        lines += ["", f"phases: unreadable ({exc})"]
    return "\n".join(lines) + "\n\n" + output.EXIT_CODES_HELP


def _stack_path(stack: str, stack_file: str | None) -> Path:
    return stack_review.stack_path(stack, stack_file)


def _console() -> Console:
    return output.console()


def _stack_review(args: argparse.Namespace, phase_id: str | None) -> stack_review.StackReview:
    """The stack file's keys and secrets, refused (ConfigError) before anything is recorded."""
    path = _stack_path(args.stack, args.stack_file)
    return stack_review.review_stack(args.stack, path, phase_id, explicit_file=bool(args.stack_file))


def _print_secrets(console: Console, sr: stack_review.StackReview) -> None:
    missing = sr.missing_lines(os.environ)
    present = len(sr.needed) - len(missing)
    console.print(
        Text(f"\nSecrets: {present} of {len(sr.needed)} this phase needs are in {sr.path.name}", style="bold")
    )
    for line in missing:
        console.print(Text(f"  missing  {line}", style="yellow"))
    if missing:
        console.print(
            Text("  (offline the plan uses placeholders; `pulumi up` refuses to run without them)", style="dim")
        )


def cmd_plan(args: argparse.Namespace) -> int:
    sr = _stack_review(args, args.phase)
    recorded = harness.record(
        args.stack, phase=args.phase, stack_path=_stack_path(args.stack, args.stack_file), preview=args.preview
    )
    phase = resolve(recorded.phase)
    if args.json:
        path = critical_path(recorded)
        doc = recorded.to_json()
        doc["counts"] = counts(recorded)
        doc["critical_path"] = {"length": path.length, "urns": list(path.urns)}
        uses = images(recorded)
        doc["images"] = [u.to_json() for u in uses]
        doc["digestPending"] = [{"image": u.ref, "reason": u.pending_reason} for u in uses if not u.digest]
        doc["exit_criteria"] = {
            "checklist": list(phase.exit_criteria.checklist),
            "checks": list(phase.exit_criteria.checks),
        }
        doc["secrets"] = sr.to_json()
        doc["mockOutputs"] = render.mock_output_keys(recorded)
        doc["cost"] = plan_cost_json(recorded)
        print(json.dumps(doc, indent=2, sort_keys=False))
    else:
        console = _console()
        render.plan(console, recorded, phase)
        _print_secrets(console, sr)
        print_plan_cost(recorded)
    return EXIT_OK


def _fail_on(value: str) -> tuple[str, ...]:
    wanted = tuple(w.strip() for w in value.split(",") if w.strip())
    unknown = [w for w in wanted if w not in review.FAIL_ON]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"{', '.join(unknown)}: expected a comma-separated subset of {','.join(review.FAIL_ON)}"
        )
    return wanted


def cmd_diff(args: argparse.Namespace) -> int:
    path = _stack_path(args.stack, args.stack_file)
    resolve(args.from_phase)  # unknown phase ids fail before any recording
    sr = _stack_review(args, args.to_phase)  # the keys, and the secrets the target phase needs
    before = harness.record(args.stack, phase=args.from_phase, stack_path=path)
    after = harness.record(args.stack, phase=args.to_phase, stack_path=path)
    result = review.review(args.stack, diff_plans(before, after))
    code = result.exit_code(args.fail_on)
    failed = result.failures(args.fail_on)
    if args.json:
        doc = result.to_json()
        doc["failOn"] = {"conditions": list(args.fail_on), "met": failed}
        doc["exitCode"] = code
        doc["secrets"] = sr.to_json()
        doc["cost"] = diff_cost_json(before, after)
        print(json.dumps(doc, indent=2))
    else:
        console = _console()
        review.render_text(console, result)
        print_diff_cost(before, after)
        _print_secrets(console, sr)
    for phase, step in result.undone:
        output.error(f"{args.from_phase} -> {args.to_phase} would undo {step} ({phase})", prefix="refused")
    if result.diff.deletes_protected:
        output.error(
            f"{len(result.diff.deletes_protected)} protected resource(s) would be deleted or replaced", "refused"
        )
    if failed:
        output.error(f"--fail-on {','.join(args.fail_on)}: {', '.join(failed)}", prefix="failed")
    return code


def cmd_check(args: argparse.Namespace) -> int:
    """The policy pack, after the stack file's keys pass; secrets the phases need and the file
    lacks are warned about on stderr (the pack sees placeholders for them)."""
    ids = list(phase_ids()) if args.all_phases else list(args.phase)
    for phase_id in ids:
        resolve(phase_id)
    reviews = [_stack_review(args, phase_id) for phase_id in ids or [None]]
    missing = stack_review.missing_summary(reviews, os.environ)
    if missing:
        output.error(missing, "warning")
    code: int = policy_runner.run_from_args(args)
    return code


# --- issue 24: what a phase costs (migrate/cost.py) ------------------------------------------------


# A plan or diff whose cost cannot be estimated (a price the catalog lacks) still shows the plan and
# keeps its exit code; the line says why. `migrate cost` and the `budget` policy fail on it.


def print_plan_cost(recorded: harness.RecordedPlan) -> None:
    print()
    try:
        lines = cost.total_lines(recorded)
    except ConfigError as exc:
        lines = [f"Monthly cost: not estimated: {exc}"]
    for line in lines:
        print(line)


def plan_cost_json(recorded: harness.RecordedPlan) -> dict[str, object]:
    try:
        est = cost.estimate(recorded)
    except ConfigError as exc:
        return {"error": str(exc)}
    return {"monthlyUsd": round(est.monthly_usd, 2), "budgetMonthlyUsd": est.budget_usd}


def print_diff_cost(before: harness.RecordedPlan, after: harness.RecordedPlan) -> None:
    print()
    try:
        lines = cost.change_lines(before, after)
    except ConfigError as exc:
        lines = [f"Monthly cost: not estimated: {exc}"]
    for line in lines:
        print(line)


def diff_cost_json(before: harness.RecordedPlan, after: harness.RecordedPlan) -> dict[str, object]:
    try:
        a, b = cost.estimate(before), cost.estimate(after)
    except ConfigError as exc:
        return {"error": str(exc)}
    changes = cost.costing().compare(a, b)
    return {
        "beforeMonthlyUsd": round(a.monthly_usd, 2),
        "afterMonthlyUsd": round(b.monthly_usd, 2),
        "deltaMonthlyUsd": round(b.monthly_usd - a.monthly_usd, 2),
        "changes": [
            {"urn": c.line.urn, "priceKey": c.line.price_key, "deltaMonthlyUsd": round(c.delta_usd, 2)} for c in changes
        ],
    }


def cmd_cost(args: argparse.Namespace) -> int:
    return cost.cmd_cost(args, _stack_path(args.stack, args.stack_file))


# --- end of issue 24 ---------------------------------------------------------------------------------


# --- issue 9: real phase moves on the Automation API (migrate/automation.py) -----------------


def cmd_status(args: argparse.Namespace) -> int:
    return automation.status(args.stack, checks=args.checks)


def cmd_move(args: argparse.Namespace) -> int:
    if args.command == "forward":
        return automation.forward(
            args.stack, yes=args.yes, to=args.to, allow_skip=args.allow_skip, override_gate=args.override_gate
        )
    return automation.rollback(args.stack, yes=args.yes, to=args.to, allow_skip=args.allow_skip)


def add_move_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p_status = sub.add_parser("status", help="a real stack's deployed phase, with the phases either side")
    p_status.add_argument("--stack", required=True, help="stack name in the logged-in Pulumi backend")
    p_status.add_argument("--checks", action="store_true", help="also run the deployed phase's machine exit checks")
    p_status.set_defaults(func=cmd_status)
    for name, what in (("forward", "the next phase"), ("rollback", "the previous phase")):
        p_move = sub.add_parser(
            name,
            help=f"move a real stack to {what}: stack file review, offline check, preview, confirm, up, exit checks",
        )
        p_move.add_argument("--stack", required=True, help="stack name in the logged-in Pulumi backend")
        p_move.add_argument("--yes", action="store_true", help="do not ask for confirmation (needed without a TTY)")
        p_move.add_argument("--to", metavar="PHASE", help=f"target phase (default: {what})")
        p_move.add_argument(
            "--allow-skip", action="store_true", help="with --to: move past the phases in between in one update"
        )
        if name == "forward":
            p_move.add_argument(
                "--override-gate",
                metavar="REASON",
                help=(
                    "move on although the gate's exit checks fail (leaving a traffic phase, entering one with "
                    "irreversible steps); the reason goes into the update message"
                ),
            )
        p_move.set_defaults(func=cmd_move)


# --- end of issue 9 ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m migrate",
        description=__doc__.split("\n")[0],
        epilog=_epilog(*EXAMPLES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def stack_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--stack", required=True, help="stack name: dev or prod (reads Pulumi.<stack>.yaml)")
        p.add_argument("--stack-file", help="any stack config file, e.g. a proposed change under review")
        p.add_argument("--json", action="store_true", help="print one JSON document instead of text")

    p_plan = sub.add_parser("plan", help="the resource tree a phase builds, offline")
    stack_args(p_plan)
    p_plan.add_argument("--phase", help="phase id (default: the stack's gpu-platform:phase)")
    p_plan.add_argument(
        "--preview",
        action="store_true",
        help="the stack's first `pulumi preview`: outputs of resources being created shown as [unknown]",
    )
    p_plan.set_defaults(func=cmd_plan)

    p_diff = sub.add_parser("diff", help="creates, updates and deletes between two phases")
    stack_args(p_diff)
    p_diff.add_argument("--from", dest="from_phase", required=True, help="phase the stack is at")
    p_diff.add_argument("--to", dest="to_phase", required=True, help="phase to move to")
    p_diff.add_argument(
        "--fail-on",
        type=_fail_on,
        default=(),
        metavar="LIST",
        help=f"exit non-zero when the move meets any of {','.join(review.FAIL_ON)} "
        "(3 for irreversible or protected, 1 for the others), e.g. --fail-on irreversible,protected,skipped",
    )
    p_diff.set_defaults(func=cmd_diff)

    p_cost = sub.add_parser("cost", help="a phase's monthly cost estimate, per resource, provider and in total")
    stack_args(p_cost)
    cost.add_arguments(p_cost)
    p_cost.set_defaults(func=cmd_cost)

    p_check = sub.add_parser("check", help="the policy pack on recorded plans, offline (exit 1 on mandatory)")
    policy_runner.add_arguments(p_check)
    p_check.set_defaults(func=cmd_check)

    add_move_commands(sub)  # issue 9: status, forward, rollback

    # Every subcommand's --help ends with its examples, the valid phases and the exit codes.
    for name, p in sub.choices.items():
        if name in EXAMPLES:
            p.epilog = _epilog(name)
            p.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    harness.new_command()

    def run() -> int:
        try:
            code: int = args.func(args)
            return code
        except ConfigError as exc:
            output.error(str(exc))
            return EXIT_BAD_INPUT
        except harness.ResourceInApplyError as exc:
            output.error(str(exc))
            return EXIT_FAILED
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return output.survive_closed_pipe(run)
