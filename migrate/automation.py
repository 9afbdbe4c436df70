"""Moving a real stack between phases: `python -m migrate status|forward|rollback --stack S`.

Built on the Pulumi Automation API (`pulumi.automation`) against this directory's program, so it
needs the Pulumi CLI and the stack's backend, exactly like `pulumi up`.

A move is one phase at a time, in this order:

1. read the deployed phase from the stack's `phase` output (what actually runs, not what config says);
2. refuse what must not happen: skipping phases without `--to P --allow-skip`, rolling back past an
   irreversible step, running without `--yes` where nobody can answer the prompt, and leaving a
   traffic phase (one whose file changes `traffic`) forward while its exit checks fail (the cutover
   gate), and entering a phase with irreversible steps while the exit checks of the phase being
   left fail (the last gate before p4-decommission). `--override-gate "reason"` moves anyway; the
   reason is printed, logged and written into the update's message in the stack history. Rolling
   back is never gated;
3. the offline check (the policy pack on the recorded plan) of the target phase; nothing is changed yet;
4. `gpu-platform:phase` := target in the stack config, `pulumi preview --policy-pack policy`, the change
   summary, a confirmation, `pulumi up --policy-pack policy`;
5. the target phase's machine exit checks (migrate/checks.py).

If anything fails between setting the config and a successful `up`, the config goes back to the phase
that is deployed: `Pulumi.<stack>.yaml` never claims a phase that did not deploy, so the next plain
`pulumi up` cannot silently finish a move nobody confirmed.

Exit codes follow migrate/cli.py: 0 done; 1 a step failed (check, preview, up, exit checks) or the
move was declined; 2 refused, bad input, or the Pulumi CLI is missing.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pulumi import automation as auto
from pulumi.automation import CommandError, ConfigValue, StackNotFoundError
from rich.console import Console
from rich.markup import escape
from rich.prompt import Confirm
from rich.table import Table

from components.config.phases import STACKS_DIR, Phase, forward_gate, irreversible_between, load_phases, resolve
from components.core.errors import ConfigError
from components.migration.backups import BackupError, bucket_keys
from migrate import checks, stack_review

ROOT = Path(__file__).resolve().parent.parent
PHASE_KEY = "gpu-platform:phase"
FLY_TOKEN_KEY = "gpu-platform:flyApiToken"
FLY_APPS_KEY = "gpu-platform:flyApps"
BACKUPS_KEY = "gpu-platform:backups"
BACKUP_KEY_ID_KEY = "gpu-platform:backupAccessKeyId"
BACKUP_SECRET_KEY = "gpu-platform:backupSecretAccessKey"
POLICY_PACK = ROOT / "policy"
PHASE_OUTPUT = "phase"

EXIT_OK, EXIT_FAILED, EXIT_REFUSED, EXIT_IRREVERSIBLE = 0, 1, 2, 3  # migrate/output.py's contract
_LOG = logging.getLogger("gpu-platform.migrate")
# For a caller that configures logging (a CI wrapper): the command prints its notes on stderr itself,
# and logging's last-resort handler would print them there a second time.
_LOG.addHandler(logging.NullHandler())

INSTALL_HELP = (
    "The Pulumi CLI is not installed (no `pulumi` on PATH). Install it, then run this again:\n"
    "  curl -fsSL https://get.pulumi.com | sh\n"
    "  (other ways: https://www.pulumi.com/docs/install/)\n"
    "then log in to the state backend: `pulumi login` (Pulumi Cloud) or "
    "`pulumi login s3://<bucket>` (see docs/state-backends.md)."
)


class StackHandle(Protocol):
    """The part of `pulumi.automation.Stack` this module uses; tests provide a fake with the same methods."""

    name: str

    def get_config(self, key: str) -> Any: ...
    def set_config(self, key: str, value: Any) -> None: ...
    def remove_config(self, key: str) -> None: ...
    def outputs(self) -> Mapping[str, Any]: ...
    def preview(
        self,
        *,
        message: str | None = None,
        policy_packs: list[str] | None = None,
        policy_pack_configs: list[str] | None = None,
        refresh: bool | None = None,
        color: str | None = None,
        on_output: Callable[[str], Any] | None = None,
    ) -> Any: ...
    def up(
        self,
        *,
        message: str | None = None,
        policy_packs: list[str] | None = None,
        policy_pack_configs: list[str] | None = None,
        refresh: bool | None = None,
        color: str | None = None,
        on_output: Callable[[str], Any] | None = None,
    ) -> Any: ...


class PulumiMissingError(Exception):
    """The Pulumi CLI cannot be run."""


class Refused(Exception):  # noqa: N818 - a verdict, not an error in this program
    """The requested move must not happen; the message says why and what to do instead."""


class IrreversibleRefused(Refused):
    """A move back past an irreversible step: exit 3, as `migrate diff` reports the same move."""


# --- the boundary: opening the stack, the offline check, the exit checks ------------------------


def open_stack(name: str, create: bool) -> StackHandle:
    """The stack `name` of this directory's program, through a LocalWorkspace."""
    if shutil.which("pulumi") is None:
        raise PulumiMissingError(INSTALL_HELP)
    try:
        if create:
            return auto.create_or_select_stack(name, work_dir=str(ROOT))
        return auto.select_stack(name, work_dir=str(ROOT))
    except FileNotFoundError:
        # PulumiCommand runs `pulumi version` first; a CLI removed since `which` looked ends here.
        raise PulumiMissingError(INSTALL_HELP) from None
    except auto.InvalidVersionError as exc:
        raise PulumiMissingError(f"{exc}\nUpgrade the CLI: curl -fsSL https://get.pulumi.com | sh") from None


def offline_check(stack: str, phase: str) -> int:
    """The policy pack on the recorded plan of `phase` (migrate/policy_runner.py)."""
    try:
        # Imported here for behaviour, not speed: a runner that cannot be imported must refuse the move
        # with this message before anything changes (tests/test_automation.py pins it).
        from migrate.policy_runner import run_check  # noqa: PLC0415
    except ImportError as exc:
        raise Refused(
            f"the offline policy runner (migrate/policy_runner.py) is not available: {exc}. "
            "It must pass before a real move; nothing was changed."
        ) from None
    code: int = run_check(stack, [phase], False, None)
    return code


def exit_checks(
    names: Sequence[str],
    outputs: Mapping[str, Any],
    stack: StackHandle,
    console: Console,
    thresholds: Mapping[str, Any] | None = None,
) -> list[Any]:
    """Run the machine checks `names` against the stack's outputs, printing each result as it lands.

    `thresholds`: per check name, the phase file's thresholds (ExitCriteria.thresholds_for).
    """
    fly_token = os.environ.get("FLY_API_TOKEN") or _config_value(stack, FLY_TOKEN_KEY)
    # FLY_API_URL: the same override components/clouds/fly_api.py honours (a proxy, a test server).
    fly_api_url = os.environ.get("FLY_API_URL", checks.FLY_API_URL)
    # The pair the providers read the bucket with: BACKUP_ACCESS_KEY_ID / BACKUP_SECRET_ACCESS_KEY when
    # set (a rotated pair), else the stack's; the check must not fail on a key the providers no longer use.
    stored = {
        "access_key_id": _config_value(stack, BACKUP_KEY_ID_KEY),
        "secret_access_key": _config_value(stack, BACKUP_SECRET_KEY),
    }
    try:
        key_id, secret = bucket_keys(stored)
    except BackupError as exc:
        raise ConfigError(str(exc)) from None
    ctx = checks.CheckContext(
        outputs=_with_config(outputs, stack),
        fly_token=fly_token,
        fly_api_url=fly_api_url,
        s3_credentials=(key_id, secret) if key_id and secret else None,
        thresholds=dict(thresholds or {}),
    )

    def show(result: checks.CheckResult) -> None:
        style = "green" if result.ok else "red"
        console.print(f"  [{style}]{'PASS' if result.ok else 'FAIL'}[/] {result.name}: ", end="")
        console.print(result.detail, markup=False, highlight=False)

    results = []
    for name in names:
        with console.status(f"exit check {name} …"):
            result = checks.run_check(name, ctx)
        show(result)
        results.append(result)
    return results


def _with_config(outputs: Mapping[str, Any], stack: StackHandle) -> dict[str, Any]:
    """The outputs plus what the checks need that lives in stack config rather than in outputs."""
    merged = dict(outputs)
    merged.setdefault("stackName", stack.name)  # cost-reduction records the stack's plans offline
    if checks.OUT_FLY_APPS not in merged:
        apps = _config_json(stack, FLY_APPS_KEY)
        if isinstance(apps, list):
            merged[checks.OUT_FLY_APPS] = apps
    backups = _config_json(stack, BACKUPS_KEY)
    if isinstance(backups, dict):
        if backups.get("region"):
            merged.setdefault(checks.OUT_BACKUP_REGION, backups["region"])
        if backups.get("endpoint"):
            merged.setdefault(checks.OUT_BACKUP_ENDPOINT, backups["endpoint"])
    return merged


def _config_json(stack: StackHandle, key: str) -> Any:
    # Structured config comes back from `pulumi config get` as its JSON text.
    raw = _config_value(stack, key)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "unknown user"


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _confirm(prompt: str) -> bool:
    return Confirm.ask(prompt, default=False)


def cost_drift(stack: StackHandle, phase: str) -> list[str]:
    """issue 24: the Lambda instances running for `stack` at their API prices against the estimate."""
    key = os.environ.get("LAMBDA_API_KEY") or _config_value(stack, "gpu-platform:lambdaApiKey")
    if not key:
        return ["cost drift: not compared (no LAMBDA_API_KEY and no gpu-platform:lambdaApiKey to list instances with)"]
    # Records a plan and talks to Lambda: only `status --checks` pays for these imports (about 400 ms
    # measured under load, the harness and the estimate).
    from components.clouds.lambda_api import LambdaClient, LambdaError  # noqa: PLC0415
    from migrate import cost_checks  # noqa: PLC0415

    try:
        return cost_checks.drift_report(stack.name, phase, LambdaClient(str(key)).list_instances())
    except (LambdaError, ConfigError) as exc:
        return [f"cost drift: not compared ({exc})"]


@dataclass
class Deps:
    """Everything a move touches outside this module. Tests replace these at the boundary."""

    open_stack: Callable[[str, bool], StackHandle] = open_stack
    offline_check: Callable[[str, str], int] = offline_check
    exit_checks: Callable[..., list[Any]] = exit_checks  # (names, outputs, stack, console, thresholds=...)
    cost_drift: Callable[[StackHandle, str], list[str]] = cost_drift
    confirm: Callable[[str], bool] = _confirm
    interactive: Callable[[], bool] = _interactive
    # emoji off: a `:name:` in a stack, phase or resource name is text (migrate/output.py).
    console: Console = field(default_factory=lambda: Console(highlight=False, soft_wrap=True, emoji=False))
    # Errors and refusals go to stderr (migrate/output.py's contract); tests point both at one buffer.
    err: Console = field(default_factory=lambda: Console(stderr=True, highlight=False, soft_wrap=True, emoji=False))
    stacks_dir: Path = STACKS_DIR  # the phase files
    stack_file: Callable[[str], Path] = stack_review.stack_path  # Pulumi.<stack>.yaml, which `up` reads


# --- reading the stack --------------------------------------------------------------------------


def _value(item: Any) -> Any:
    """The plain value of an automation OutputValue/ConfigValue (or of a plain value)."""
    return getattr(item, "value", item)


def _config_value(stack: StackHandle, key: str) -> str | None:
    try:
        value = _value(stack.get_config(key))
    except CommandError:
        return None  # `pulumi config get` fails when the key is not set
    return str(value) if value not in (None, "") else None


def _phases(deps: Deps) -> tuple[Phase, ...]:
    return load_phases(deps.stacks_dir)


def _resolve(phase_id: str, deps: Deps) -> Phase:
    return resolve(phase_id, deps.stacks_dir)


def _deployed(stack: StackHandle, deps: Deps) -> Phase | None:
    raw = _value(stack.outputs().get(PHASE_OUTPUT))
    if raw in (None, ""):
        return None
    try:
        return _resolve(str(raw), deps)
    except ConfigError:
        known = ", ".join(p.id for p in _phases(deps))
        raise Refused(
            f"stack {stack.name} reports deployed phase {raw!r}, which no file in stacks/ defines "
            f"(known: {known}). Restore that phase file or fix the stack before moving."
        ) from None


# --- deciding the move --------------------------------------------------------------------------


@dataclass(frozen=True)
class Move:
    stack: str
    direction: str  # forward | rollback
    current: Phase | None  # deployed phase; None for a stack that never deployed
    target: Phase
    skipped: tuple[Phase, ...]


def plan_move(
    phases: Sequence[Phase],
    current: Phase | None,
    *,
    direction: str,
    to: str | None,
    allow_skip: bool,
    stack: str,
    stacks_dir: Path = STACKS_DIR,
) -> Move:
    """The phase to move to, or `Refused` saying why not. Pure: no stack, no I/O."""
    ids = [p.id for p in phases]
    at = current.index if current else -1
    if to is not None and to not in ids:
        raise Refused(f"--to {to}: unknown phase; expected one of: {', '.join(ids)}")
    if direction == "forward":
        if to is None:
            if at + 1 >= len(phases):
                raise Refused(f"stack {stack} is at the last phase ({ids[-1]}); there is nothing to move forward to")
            target = phases[at + 1]
        else:
            target = phases[ids.index(to)]
            if target.index <= at:
                raise Refused(
                    f"--to {to} is not ahead of the deployed phase {ids[at]}; use `rollback --to {to}` to go back"
                )
        skipped = tuple(phases[at + 1 : target.index])
    elif direction == "rollback":
        if current is None:
            raise Refused(f"stack {stack} has no deployed phase (no `phase` output); there is nothing to roll back")
        if to is None:
            if at == 0:
                raise Refused(
                    f"stack {stack} is at the first phase ({ids[0]}); there is no earlier phase to roll back to. "
                    f"{phases[0].rollback}".rstrip()
                )
            target = phases[at - 1]
        else:
            target = phases[ids.index(to)]
            if target.index >= at:
                raise Refused(
                    f"--to {to} is not behind the deployed phase {ids[at]}; use `forward --to {to}` to go ahead"
                )
        skipped = tuple(phases[target.index + 1 : at])
        blocked = irreversible_between(current.id, target.id, stacks_dir)
        if blocked:
            steps = ", ".join(f"{step} (in {phase})" for phase, step in blocked)
            raise IrreversibleRefused(
                f"cannot roll back {stack} from {current.id} to {target.id}: it would have to undo "
                f"irreversible step(s): {steps}. {current.rollback}".rstrip()
            )
    else:
        raise ValueError(f"direction must be forward or rollback, not {direction!r}")
    if skipped and not (to is not None and allow_skip):
        names = ", ".join(p.id for p in skipped)
        raise Refused(
            f"moving {stack} from {ids[at] if at >= 0 else '(nothing deployed)'} to {target.id} skips {names}. "
            "Phases go one at a time so each one's exit checks run; to skip anyway pass "
            f"--to {target.id} --allow-skip."
        )
    return Move(stack, direction, current, target, skipped)


# --- commands -----------------------------------------------------------------------------------


def _open(stack: str, create: bool, deps: Deps) -> StackHandle:
    try:
        return deps.open_stack(stack, create)
    except StackNotFoundError:
        raise Refused(
            f"stack {stack} does not exist in the logged-in backend (`pulumi whoami -v` shows which). "
            f"`python -m migrate forward --stack {stack}` creates it and deploys the first phase."
        ) from None


def _run(deps: Deps, body: Callable[[], int]) -> int:
    err = deps.err
    try:
        return body()
    except PulumiMissingError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return EXIT_REFUSED
    except IrreversibleRefused as exc:
        err.print(f"[red]refused:[/] {escape(str(exc))}", highlight=False)
        return EXIT_IRREVERSIBLE
    except Refused as exc:
        err.print(f"[red]refused:[/] {escape(str(exc))}", highlight=False)
        return EXIT_REFUSED
    except ConfigError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return EXIT_REFUSED
    except CommandError as exc:
        err.print(f"[red]pulumi failed:[/] {escape(_tail(exc))}", highlight=False)
        return EXIT_FAILED


def _tail(exc: BaseException, lines: int = 15) -> str:
    stderr = getattr(exc, "stderr", None)
    text = str(stderr if stderr else exc).strip().splitlines()
    return "\n".join(text[-lines:])


def status(stack: str, checks: bool = False, deps: Deps | None = None) -> int:
    """Print the deployed phase of `stack` with the phases either side; with `checks`, run its exit checks."""
    deps = deps or Deps()
    console = deps.console

    def body() -> int:
        handle = _open(stack, False, deps)
        phases = _phases(deps)
        current = _deployed(handle, deps)
        configured = _config_value(handle, PHASE_KEY)
        console.print(f"[bold]stack {stack}[/]")
        console.print("  " + _progress_line(phases, current))
        if current is None:
            console.print("  deployed: nothing yet (the stack has no `phase` output)")
            console.print(f"  next:     {phases[0].id} - {phases[0].title}")
            console.print(f"  move:     python -m migrate forward --stack {stack}")
            return EXIT_OK
        console.print(f"  deployed: [bold]{current.id}[/] - {current.title}")
        if configured and configured != current.id:
            console.print(
                f"  [yellow]config says {configured}[/]: `pulumi up` would move the stack there without the "
                "checks `migrate forward` runs"
            )
        previous = phases[current.index - 1] if current.index > 0 else None
        following = phases[current.index + 1] if current.index + 1 < len(phases) else None
        if previous is None:
            console.print("  previous: none")
        else:
            blocked = irreversible_between(current.id, previous.id, deps.stacks_dir)
            note = f" [red](rollback blocked: {', '.join(step for _, step in blocked)} cannot be undone)[/]" * bool(
                blocked
            )
            console.print(f"  previous: {previous.id} - {previous.title}{note}")
        console.print(
            f"  next:     {following.id} - {following.title}" if following else "  next:     none (last phase)"
        )
        names = list(current.exit_criteria.checks)
        console.print(f"  exit checks: {', '.join(names) or 'none'}")
        reason = forward_gate(current, [following]) if following is not None else None
        if reason is not None:
            console.print(f"  gate:     `forward` runs these checks first and stops if one fails ({reason})")
        if not checks:
            return EXIT_OK
        for line in deps.cost_drift(handle, current.id):
            console.print(f"  {line}", markup=False, highlight=False)
        if not names:
            return EXIT_OK
        results = deps.exit_checks(
            names, _plain_outputs(handle.outputs()), handle, console, thresholds=_thresholds(current)
        )
        return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED

    return _run(deps, body)


def forward(
    stack: str,
    yes: bool = False,
    to: str | None = None,
    allow_skip: bool = False,
    deps: Deps | None = None,
    *,
    override_gate: str | None = None,
) -> int:
    """Move `stack` one phase forward (or to `to` with `allow_skip`); a failing cutover gate stops it
    unless `override_gate` gives the reason to move anyway."""
    return _move(
        stack, "forward", yes=yes, to=to, allow_skip=allow_skip, deps=deps or Deps(), override_gate=override_gate
    )


def rollback(
    stack: str, yes: bool = False, to: str | None = None, allow_skip: bool = False, deps: Deps | None = None
) -> int:
    """Move `stack` one phase back (or to `to` with `allow_skip`); never past an irreversible step."""
    return _move(stack, "rollback", yes=yes, to=to, allow_skip=allow_skip, deps=deps or Deps())


def _thresholds(phase: Phase) -> dict[str, Any]:
    names = phase.exit_criteria.checks
    return {name: t for name in names if (t := phase.exit_criteria.thresholds_for(name)) is not None}


def _gate(handle: StackHandle, move: Move, deps: Deps) -> str | None:
    """The gate of a forward move (leaving a traffic phase, or entering one with irreversible
    steps): None when it passes, else what failed (the move stops there unless --override-gate
    says why it may go on)."""
    if move.direction != "forward" or move.current is None:
        return None
    console = deps.console
    failed: list[str] = []
    unmeasured = [p.id for p in move.skipped if p.gated]
    if unmeasured:
        failed.append(f"skipped traffic phase(s) never measured: {', '.join(unmeasured)}")
    final = next((p for p in (*move.skipped, move.target) if p.irreversible), None)
    unchecked = [p.id for p in move.skipped if final and p.index < final.index and p.id not in unmeasured]
    if final is not None and unchecked:
        failed.append(f"skipped phase(s) never checked before the irreversible {final.id}: {', '.join(unchecked)}")
    current = move.current
    reason = forward_gate(current, (*move.skipped, move.target))
    if reason is not None:
        names = list(current.exit_criteria.checks)
        console.print(f"[bold]gate[/] {reason}: the exit checks of {current.id} must pass first", highlight=False)
        results = deps.exit_checks(
            names, _plain_outputs(handle.outputs()), handle, console, thresholds=_thresholds(current)
        )
        bad = [r.name for r in results if not r.ok]
        if bad:
            failed.append(f"exit check(s) of {current.id} failed: {', '.join(bad)}")
    return "; ".join(failed) or None


def _move(
    stack: str,
    direction: str,
    *,
    yes: bool,
    to: str | None,
    allow_skip: bool,
    deps: Deps,
    override_gate: str | None = None,
) -> int:
    console = deps.console
    if override_gate is not None and not override_gate.strip():
        deps.err.print('[red]refused:[/] --override-gate needs a reason, e.g. --override-gate "INC-123: legacy down"')
        return EXIT_REFUSED

    def body() -> int:
        # The stack file first, as `migrate check` reviews it: a clear-text secret, an unknown or
        # look-alike key, another stack's `environment`, an unknown phase refuse the move before the
        # stack is even opened.
        path = deps.stack_file(stack)
        stack_review.review_stack(stack, path, None)
        # A stack that does not exist yet can only move forward (to the first phase).
        handle = _open(stack, direction == "forward", deps)
        phases = _phases(deps)
        current = _deployed(handle, deps)
        move = plan_move(
            phases, current, direction=direction, to=to, allow_skip=allow_skip, stack=stack, stacks_dir=deps.stacks_dir
        )
        _secrets_for(stack, path, move.target, deps)
        configured = _config_value(handle, PHASE_KEY)
        _describe_move(console, move, configured)
        if not yes and not deps.interactive():
            raise Refused("no terminal to confirm on; pass --yes to move without a prompt (CI does)")

        gate = _gate(handle, move, deps)
        note = ""
        # The verdicts go to stderr, the move's own report (the plan, the checks as they run) to stdout.
        if gate is not None and override_gate is None:
            deps.err.print(
                f"[red]refused: gate closed:[/] {escape(gate)}. Nothing was changed. Fix what failed (or wait for "
                f"the measurements), roll back with `python -m migrate rollback --stack {stack}`, or move anyway with "
                '`--override-gate "<reason>"`, which is recorded in the stack history '
                "(docs/troubleshooting.md#the-cutover-gate-stays-closed).",
                highlight=False,
            )
            return EXIT_FAILED
        if gate is not None:
            note = f"gate overridden by {_who()}: {override_gate} ({gate})"
            _LOG.warning("%s: %s", stack, note)
            deps.err.print(f"[yellow]warning:[/] {escape(note)}", highlight=False)
        elif override_gate is not None:
            deps.err.print("note: --override-gate given, but the gate passed; nothing was overridden")

        console.print(f"[bold]1/4[/] offline check of {move.target.id}")
        code = deps.offline_check(stack, move.target.id)
        if code != EXIT_OK:
            deps.err.print(
                f"[red]refused:[/] the offline check of {move.target.id} failed (exit {code}); nothing was changed"
            )
            return EXIT_FAILED

        # What to put back if the move does not complete: the deployed phase, so config and state agree.
        restore_to = current.id if current else configured
        return _apply(handle, move, restore_to, yes, deps, note=note)

    return _run(deps, body)


def _secrets_for(stack: str, path: Path, target: Phase, deps: Deps) -> None:
    """Refuse a move whose target phase needs a secret that the stack file holds no `secure:` value
    for and the environment does not stand in for: the program would refuse it at preview, after
    the phase was written to config. A file that imports ESC environments may hold them there,
    which cannot be read offline: then it is a warning."""
    sr = stack_review.review(stack, path, target, explicit_file=False)
    missing = sr.unprovided(os.environ)
    if not missing:
        return
    lines = [f"{stack_review.NAMESPACE}:{name} ({sr.needed[name]})" for name in missing]
    if sr.imports_environments:
        deps.err.print(
            f"[yellow]warning:[/] {target.id} needs {len(missing)} secret(s) with no secure: value in "
            f"{path.name}; its ESC environments must provide them: {escape(', '.join(lines))}",
            highlight=False,
        )
        return
    raise ConfigError(
        f"{target.id} needs {len(missing)} secret(s) that {path.name} holds no secure: value for: "
        + ", ".join(lines)
        + f". Set each with `pulumi config set --secret <key> --stack {stack}`; nothing was changed"
    )


def _policy_pack_configs(stack: str) -> list[str] | None:
    """The stack's policy config, so the real run applies the levels `migrate check` applies
    offline (policy/config.prod.json makes some advisory policies mandatory in prod)."""
    config = POLICY_PACK / f"config.{stack}.json"
    return [str(config)] if config.is_file() else None


def _apply(handle: StackHandle, move: Move, restore_to: str | None, yes: bool, deps: Deps, *, note: str = "") -> int:
    console = deps.console
    target = move.target
    handle.set_config(PHASE_KEY, ConfigValue(value=target.id))
    deployed = False
    try:
        console.print(f"[bold]2/4[/] pulumi preview --refresh --policy-pack policy ({target.id})")
        with console.status("pulumi preview …"):
            preview = handle.preview(
                # Refresh first: the backup verifications re-read their objects then, so a backup
                # deleted or changed since it was verified stops the move at preview, not midway.
                refresh=True,
                policy_packs=[str(POLICY_PACK)],
                policy_pack_configs=_policy_pack_configs(move.stack),
                on_output=_stream(console),
                color="never",
            )
        _print_summary(console, getattr(preview, "change_summary", {}) or {})
        if not yes and not deps.confirm(f"Deploy {target.id} to stack {move.stack}?"):
            deps.err.print("declined; nothing was deployed")
            return EXIT_FAILED
        console.print(f"[bold]3/4[/] pulumi up --refresh ({target.id})")
        with console.status("pulumi up …"):
            result = handle.up(
                refresh=True,
                policy_packs=[str(POLICY_PACK)],
                policy_pack_configs=_policy_pack_configs(move.stack),
                on_output=_stream(console),
                color="never",
                message=f"migrate {move.direction}: {move.current.id if move.current else '-'} -> {target.id}"
                + (f"; {note}" if note else ""),
            )
        deployed = True
    except CommandError as exc:
        deps.err.print(f"[red]pulumi failed:[/] {escape(_tail(exc))}", highlight=False)
        deps.err.print(
            f"Resources of {target.id} that were created before the failure stay in the stack; "
            f"`python -m migrate {move.direction} --stack {move.stack}` tries again."
        )
        return EXIT_FAILED
    except Exception as exc:  # the automation API raises plain errors too ("summary event never found")
        deps.err.print(f"[red]{type(exc).__name__}:[/] {escape(str(exc))}", highlight=False)
        return EXIT_FAILED
    finally:
        if not deployed:
            _restore(handle, restore_to, move.stack, console, deps.err)

    console.print(f"[green]deployed {target.id}[/] on {move.stack}; commit Pulumi.{move.stack}.yaml ({PHASE_KEY})")
    measured = target.exit_criteria.measurements
    names = [name for name in target.exit_criteria.checks if name not in measured]
    console.print(f"[bold]4/4[/] exit checks of {target.id}: {', '.join(names) or 'none'}")
    if measured:
        gated = forward_gate(target, _phases(deps)[target.index + 1 : target.index + 2]) is not None
        console.print(
            f"  {', '.join(measured)}: measured on this phase's own traffic, so they run "
            + (f"when the stack leaves {target.id} (the gate) and " if gated else "")
            + f"with `python -m migrate status --stack {move.stack} --checks`"
        )
    outputs = getattr(result, "outputs", None)
    results = deps.exit_checks(
        names,
        _plain_outputs(outputs if outputs is not None else handle.outputs()),
        handle,
        console,
        thresholds=_thresholds(target),
    )
    failed = [r.name for r in results if not r.ok]
    for item in target.exit_criteria.checklist:
        console.print(f"  [ ] {item}", markup=False, highlight=False)
    if failed:
        deps.err.print(
            f"[red]{target.id} is deployed but exit check(s) failed: {', '.join(failed)}[/]. Fix and rerun "
            f"`python -m migrate status --stack {move.stack} --checks`, or go back with "
            f"`python -m migrate rollback --stack {move.stack}`."
        )
        return EXIT_FAILED
    console.print(f"[green]{target.id}: every machine check passed[/]; confirm the checklist above by hand.")
    return EXIT_OK


def _restore(handle: StackHandle, value: str | None, stack: str, console: Console, err: Console) -> None:
    try:
        if value is None:
            handle.remove_config(PHASE_KEY)
        else:
            handle.set_config(PHASE_KEY, ConfigValue(value=value))
    except (CommandError, OSError) as exc:
        fix = (
            f"pulumi config rm {PHASE_KEY} --stack {stack}"
            if value is None
            else f"pulumi config set {PHASE_KEY} {value} --stack {stack}"
        )
        err.print(f"[red]could not restore {PHASE_KEY}[/] ({escape(str(exc))}); run: {fix}", highlight=False)
        return
    console.print(f"{PHASE_KEY} restored to {value or '(unset)'}")


def _plain_outputs(outputs: Mapping[str, Any] | None) -> dict[str, Any]:
    return {key: _value(item) for key, item in (outputs or {}).items()}


def _stream(console: Console) -> Callable[[str], None]:
    def on_output(line: str) -> None:
        line = line.rstrip("\n")
        if line.strip():
            console.print(line, markup=False, highlight=False, style="dim")

    return on_output


def _print_summary(console: Console, summary: Mapping[Any, int]) -> None:
    table = Table(title="preview", show_header=True, header_style="bold")
    table.add_column("operation")
    table.add_column("resources", justify="right")
    # Keys are OpType members or their string values, depending on how the event was decoded.
    for op, count in sorted((str(getattr(op, "value", op)), count) for op, count in summary.items()):
        table.add_row(op, str(count))
    if not summary:
        table.add_row("(none)", "0")
    console.print(table)


def _progress_line(phases: Sequence[Phase], current: Phase | None) -> str:
    at = current.index if current else -1
    parts = []
    for phase in phases:
        if phase.index < at:
            parts.append(f"[green]{phase.id}[/]")
        elif phase.index == at:
            parts.append(f"[bold reverse]{phase.id}[/]")
        else:
            parts.append(f"[dim]{phase.id}[/]")
    return " → ".join(parts)


def _describe_move(console: Console, move: Move, configured: str | None) -> None:
    source = move.current.id if move.current else "(nothing deployed)"
    console.print(f"[bold]{move.direction}[/] {move.stack}: {source} → [bold]{move.target.id}[/] - {move.target.title}")
    if move.skipped:
        console.print(f"[yellow]skipping {', '.join(p.id for p in move.skipped)} (--allow-skip)[/]")
    if move.current and configured and configured != move.current.id:
        console.print(
            f"[yellow]note:[/] config said {configured} but {move.current.id} is deployed; moving from what is deployed"
        )
    if move.direction == "forward":
        console.print(f"  {move.target.summary}", markup=False, highlight=False)
        if move.target.irreversible:
            console.print(
                f"[red]{move.target.id} contains irreversible step(s): {', '.join(move.target.irreversible)}. "
                "Once deployed it cannot be rolled back.[/]"
            )
    elif move.current is not None:
        console.print(f"  {move.current.rollback}", markup=False, highlight=False)
