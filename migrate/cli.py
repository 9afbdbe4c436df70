"""`python -m migrate`: see what a phase builds and what a phase change does, offline.

Exit codes: 0 ok; 1 a check failed (policy violation, failed exit check); 2 bad input (config,
stack file, arguments) or a missing tool; 3 the transition would delete a protected resource or
undo an irreversible step.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from components.config.phases import irreversible_between, resolve
from components.core.errors import ConfigError
from migrate import automation, harness, policy_runner, render
from migrate.plan import counts, critical_path, diff_plans, images

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_PROTECTED = 0, 1, 2, 3


def _stack_path(stack: str, stack_file: str | None) -> Path:
    if stack_file:
        path = Path(stack_file)
        if not path.is_file():
            raise ConfigError(f"--stack-file {stack_file}: no such file")
        return path
    path = harness.stack_file(stack)
    if not path.is_file():
        known = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in path.parent.glob("Pulumi.*.yaml"))
        raise ConfigError(f"--stack {stack}: no Pulumi.{stack}.yaml; known stacks: {', '.join(known)}")
    return path


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def cmd_plan(args: argparse.Namespace) -> int:
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
        print(json.dumps(doc, indent=2, sort_keys=False))
    else:
        render.plan(_console(), recorded, phase)
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    path = _stack_path(args.stack, args.stack_file)
    resolve(args.from_phase), resolve(args.to_phase)  # unknown phase ids fail before any recording
    before = harness.record(args.stack, phase=args.from_phase, stack_path=path)
    after = harness.record(args.stack, phase=args.to_phase, stack_path=path)
    result = diff_plans(before, after)
    undone = irreversible_between(args.from_phase, args.to_phase)
    if args.json:
        doc = result.to_json()
        doc["irreversible"] = [{"phase": phase, "step": step} for phase, step in undone]
        print(json.dumps(doc, indent=2))
    else:
        render.diff(_console(), args.stack, result)
        for phase, step in undone:
            print(f"refused: {phase} did {step}, which cannot be undone; no rollback goes back past {phase}")
    return EXIT_PROTECTED if result.deletes_protected or undone else EXIT_OK


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
            name, help=f"move a real stack to {what}: offline check, preview, confirm, up, exit checks"
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
    parser = argparse.ArgumentParser(prog="python -m migrate", description=__doc__.split("\n")[0])
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
    p_diff.set_defaults(func=cmd_diff)

    p_check = sub.add_parser("check", help="the policy pack on recorded plans, offline (exit 1 on mandatory)")
    policy_runner.add_arguments(p_check)
    p_check.set_defaults(func=policy_runner.run_from_args)

    add_move_commands(sub)  # issue 9: status, forward, rollback

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except harness.ResourceInApplyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
