"""The policy pack, offline: feed a recorded plan to every policy in policy/policies.py.

The Pulumi engine runs the pack as an analyzer: a resource validation sees each resource's inputs
as it is registered, a stack validation sees every resource with its outputs and dependency links
at the end. This runner builds those same `pulumi_policy` objects (ResourceValidationArgs,
PolicyResource, PolicyResourceOptions, PolicyProviderResource) from `migrate.harness.record`, with
the same enforcement-level and config semantics as `--policy-pack-config`, so one pack serves
`pulumi preview` and `python -m migrate check`. Two facts the engine does not give a Python
policy are added as extra attributes (see policy/policy_support.py): which inputs were secret and
`retain_on_delete`.

Exit codes follow migrate/cli.py: 0 clean (advisories allowed), 1 a mandatory violation, 2 bad
input (policy config, phase id, a stack that cannot be recorded).
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import importlib
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from inspect import isawaitable
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import pulumi.runtime
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
)
from pulumi_policy.policy import _NotApplicableError
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

from components.config.load import parse
from components.config.phases import phase_ids, resolve
from components.core.errors import ConfigError
from migrate import capacity, harness
from migrate.harness import PROJECT, ROOT, UNKNOWN, RecordedPlan, RecordedResource, ResourceInApplyError

POLICY_DIR = ROOT / "policy"
STACK_TYPE = "pulumi:pulumi:Stack"
LEVELS = ("advisory", "mandatory", "remediate", "disabled")
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


@dataclass(frozen=True)
class Violation:
    policy: str
    level: str  # mandatory | advisory
    urn: str  # "" when a stack policy reports against the stack as a whole
    message: str
    description: str = ""

    def to_json(self) -> dict[str, str]:
        return {"policy": self.policy, "level": self.level, "urn": self.urn, "message": self.message}


# --- the pack ---------------------------------------------------------------------------------------


def load_pack() -> ModuleType:
    """policy/policies.py, imported the way the engine imports it (its directory on sys.path)."""
    path = str(POLICY_DIR)
    if path not in sys.path:
        sys.path.insert(0, path)
    return importlib.import_module("policies")


def load_policies() -> list[Any]:
    return list(load_pack().POLICIES)


# --- policy config ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicySettings:
    level: str
    config: dict[str, Any] = field(default_factory=dict)


def config_path(stack: str) -> Path:
    return POLICY_DIR / f"config.{stack}.json"


def read_policy_config(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read policy config ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: a policy config is a JSON object keyed by policy name")
    return doc


def _level(value: Any, where: str) -> str:
    if not isinstance(value, str) or value not in LEVELS:
        raise ConfigError(f"{where}: enforcement level {value!r} is not one of {', '.join(LEVELS)}")
    return value


def resolve_settings(
    policies: Sequence[Any], raw: Mapping[str, Any] | None, source: str = "policy config"
) -> dict[str, PolicySettings]:
    """Each policy's effective level and config, as the CLI's `--policy-pack-config` would set them.

    `"all": "<level>"` sets every policy's level; `"<policy>": "<level>"` or
    `{"enforcementLevel": ..., <property>: ...}` sets one policy's. Properties are validated against
    the policy's PolicyConfigSchema (unknown keys are refused: a typo must not silently do nothing),
    and the schema's defaults fill what is not set.
    """
    # Only `check` needs jsonschema; `python -m migrate` imports this module for its parser, and at the
    # top jsonschema would add 57 ms (43 modules) to every `plan` and `diff`, measured after a prod plan.
    import jsonschema  # noqa: PLC0415

    pack = load_pack()
    raw = dict(raw or {})
    names = {p.name for p in policies}
    unknown = sorted(set(raw) - names - {"all"})
    if unknown:
        raise ConfigError(f"{source}: unknown policy {unknown}; known: {', '.join(sorted(names))}")
    default_all = _level(raw["all"], f"{source}: all") if "all" in raw else None
    out: dict[str, PolicySettings] = {}
    for policy in policies:
        level_enum = policy.enforcement_level or pack.DEFAULT_LEVEL
        level = default_all or level_enum.value
        entry = raw.get(policy.name)
        props: dict[str, Any] = {}
        if isinstance(entry, str):
            level = _level(entry, f"{source}: {policy.name}")
        elif isinstance(entry, Mapping):
            props = {k: v for k, v in entry.items() if k != "enforcementLevel"}
            if "enforcementLevel" in entry:
                level = _level(entry["enforcementLevel"], f"{source}: {policy.name}.enforcementLevel")
        elif entry is not None:
            raise ConfigError(f"{source}: {policy.name} must be a level string or an object, got {entry!r}")
        properties = dict(policy.config_schema.properties) if policy.config_schema else {}
        extra = sorted(set(props) - set(properties))
        if extra:
            allowed = ", ".join(sorted(properties)) or "none (only enforcementLevel)"
            raise ConfigError(f"{source}: {policy.name}: unknown key(s) {extra}; allowed: {allowed}")
        schema = {
            "type": "object",
            "properties": properties,
            "required": list(policy.config_schema.required or []) if policy.config_schema else [],
        }
        for error in sorted(jsonschema.Draft7Validator(schema).iter_errors(props), key=str):
            where = ".".join(str(p) for p in error.absolute_path)
            raise ConfigError(f"{source}: {policy.name}.{where or '(config)'}: {error.message}")
        filled = {k: v["default"] for k, v in properties.items() if "default" in v}
        filled.update(props)
        out[policy.name] = PolicySettings(level, filled)
    return out


# --- building the SDK's objects from a recorded plan ------------------------------------------------------


def _engine_value(value: Any) -> Any:
    """The recording's "[unknown]" as the SDK's unknown sentinel, so reading it raises as under the engine."""
    if isinstance(value, Mapping):
        return {k: _engine_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_engine_value(v) for v in value]
    if value == UNKNOWN:
        return UNKNOWN_STRING_VALUE
    return value


def _props(values: Mapping[str, Any]) -> Any:
    return unknown_checking_proxy(_engine_value(dict(values)))


_DURATION = re.compile(r"([0-9.]+)(h|m|s|ms)")


def _seconds(duration: str) -> float:
    """A Go duration ("1h30m", "10m") in seconds, as the engine reports custom timeouts."""
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[unit] for n, unit in _DURATION.findall(duration or ""))


def _options(res: RecordedResource) -> Any:
    timeouts = PolicyCustomTimeouts(
        _seconds(res.custom_timeouts.get("create", "")),
        _seconds(res.custom_timeouts.get("update", "")),
        _seconds(res.custom_timeouts.get("delete", "")),
    )
    opts = PolicyResourceOptions(
        protect=res.protect,
        ignore_changes=list(res.ignore_changes),
        delete_before_replace=res.delete_before_replace,
        aliases=list(res.aliases),
        custom_timeouts=timeouts,
        additional_secret_outputs=list(res.additional_secret_outputs),
        parent=res.parent or None,
    )
    # Not in the engine's AnalyzerResourceOptions; policy_support.retain_on_delete reads it.
    opts.retain_on_delete = res.retain_on_delete  # type: ignore[attr-defined]
    return opts


def _package(resource_type: str) -> str:
    if resource_type.startswith("pulumi-python:dynamic"):
        return "pulumi-python"
    return resource_type.split(":", 1)[0]


def _provider(res: RecordedResource, by_urn: Mapping[str, RecordedResource], plan: RecordedPlan) -> Any:
    """The provider as the engine describes it; resources without an explicit one get the default."""
    if res.provider:
        p = by_urn.get(res.provider)
        if p is not None:
            return PolicyProviderResource(p.type, _props(p.inputs), p.urn, p.name)
        ptype, pname = res.provider.split("::")[-2:]
        return PolicyProviderResource(ptype.rsplit("$", 1)[-1], _props({}), res.provider, pname)
    if not res.custom or res.type.startswith("pulumi:providers:"):
        return None
    ptype = f"pulumi:providers:{_package(res.type)}"
    urn = f"urn:pulumi:{plan.stack}::{PROJECT}::{ptype}::default"
    return PolicyProviderResource(ptype, _props({}), urn, "default")


def stack_urn(plan: RecordedPlan) -> str:
    return f"urn:pulumi:{plan.stack}::{PROJECT}::{STACK_TYPE}::{PROJECT}-{plan.stack}"


def resource_args(plan: RecordedPlan, config: Mapping[str, Any] | None = None) -> list[Any]:
    """One ResourceValidationArgs per registration, the stack's own first, as the engine sends them."""
    by_urn = plan.by_urn()
    root_opts = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)
    root = ResourceValidationArgs(STACK_TYPE, _props({}), stack_urn(plan), f"{PROJECT}-{plan.stack}", root_opts, None)
    root.secret_paths = ()  # type: ignore[attr-defined]
    out = [root]
    for res in plan.resources:
        args = ResourceValidationArgs(
            res.type,
            _props(res.inputs),
            res.urn,
            res.name,
            _options(res),
            _provider(res, by_urn, plan),
            dict(config or {}),
        )
        args.secret_paths = res.secret_inputs  # type: ignore[attr-defined]
        args.custom = res.custom  # type: ignore[attr-defined]
        out.append(args)
    return out


def stack_resources(plan: RecordedPlan) -> list[Any]:
    """PolicyResource objects (outputs, parent, dependencies linked) as AnalyzeStack builds them."""
    by_urn = plan.by_urn()
    root_opts = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)
    root = PolicyResource(
        STACK_TYPE, _props(plan.outputs), stack_urn(plan), f"{PROJECT}-{plan.stack}", root_opts, None, None, [], {}
    )
    root.secret_paths = plan.secret_stack_outputs  # type: ignore[attr-defined]
    root.custom = False  # type: ignore[attr-defined]
    made: dict[str, Any] = {root.urn: root}
    for res in plan.resources:
        # The engine hands a stack policy each resource's outputs; a component's are its registered outputs.
        pr = PolicyResource(
            res.type,
            _props(res.outputs if res.custom else {}),
            res.urn,
            res.name,
            _options(res),
            _provider(res, by_urn, plan),
            None,
            [],
            {},
        )
        pr.secret_paths = res.secret_outputs  # type: ignore[attr-defined]
        pr.custom = res.custom  # type: ignore[attr-defined]
        made[res.urn] = pr
    for res in plan.resources:
        pr = made[res.urn]
        pr.parent = made.get(res.parent)
        pr.dependencies = [made[d] for d in res.dependencies if d in made]
        pr.property_dependencies = {
            k: [made[d] for d in deps if d in made] for k, deps in res.property_dependencies.items()
        }
    return list(made.values())


# --- evaluation --------------------------------------------------------------------------------------------


def _settle(result: Any) -> None:
    """Run an async validation to completion on its own loop, as the SDK's analyzer does."""
    if isawaitable(result):
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(result)
        finally:
            loop.close()


class PolicyCrashError(RuntimeError):
    """A policy raised: a bug in the pack, reported with the policy and resource it failed on."""


def evaluate(plan: RecordedPlan, policy_config: dict[str, Any] | None = None) -> list[Violation]:
    """Every violation the pack reports for `plan`, in policy order.

    `policy_config` has the shape of a `--policy-pack-config` file (see resolve_settings). The
    policies see `pulumi.runtime.is_dry_run()` as the engine's PULUMI_DRY_RUN would set it: true
    for a preview recording, false for the update. Raises ConfigError for a bad config and
    PolicyCrashError when a policy itself fails.
    """
    return contextvars.copy_context().run(_evaluate_as_engine_would, plan, policy_config)


def _evaluate_as_engine_would(plan: RecordedPlan, policy_config: dict[str, Any] | None) -> list[Violation]:
    # What pulumi_policy does with PULUMI_PROJECT/PULUMI_STACK/PULUMI_DRY_RUN before each request
    # (policy.py, _configure_runtime_settings), here in a copied context that nothing else shares.
    pulumi.runtime.configure(
        pulumi.runtime.Settings(project=PROJECT, stack=plan.stack, dry_run=plan.preview, organization="organization")
    )
    return _evaluate(plan, policy_config)


def _evaluate(plan: RecordedPlan, policy_config: dict[str, Any] | None) -> list[Violation]:
    policies = load_policies()
    settings = resolve_settings(policies, policy_config)
    violations: list[Violation] = []
    base_args = resource_args(plan)
    resources = stack_resources(plan)
    for policy in policies:
        setting = settings[policy.name]
        if setting.level == "disabled":
            continue
        level = "mandatory" if setting.level == "remediate" else setting.level

        def report(message: str, urn: str | None = None, *, _p: Any = policy, _l: str = level, _u: str = "") -> None:
            violations.append(Violation(_p.name, _l, urn or _u, message, _p.description))

        if isinstance(policy, ResourceValidationPolicy):
            for base in base_args:
                args = ResourceValidationArgs(
                    base.resource_type, base.props, base.urn, base.name, base.opts, base.provider, setting.config
                )
                args.secret_paths = base.secret_paths  # type: ignore[attr-defined]
                args.custom = getattr(base, "custom", False)  # type: ignore[attr-defined]

                def report_resource(message: str, _urn: str | None = None, *, _res: str = base.urn) -> None:
                    # The SDK ignores a resource validation's urn argument: it is always this resource.
                    report(message, _res)

                try:
                    _settle(policy.validate(args, report_resource))
                except UnknownValueError as exc:
                    report(f"can't run policy {policy.name!r} during preview: {exc.message}", base.urn, _l="advisory")
                except _NotApplicableError:
                    continue
                except Exception as exc:
                    raise PolicyCrashError(f"policy {policy.name} failed on {base.urn}: {exc!r}") from exc
        else:
            stack_args = StackValidationArgs(resources, setting.config)
            try:
                _settle(policy.validate(stack_args, report))
            except UnknownValueError as exc:
                report(f"can't run policy {policy.name!r} during preview: {exc.message}", _l="advisory")
            except _NotApplicableError:
                continue
            except Exception as exc:
                raise PolicyCrashError(f"policy {policy.name} failed on stack {plan.stack}: {exc!r}") from exc
    return violations


def by_policy(violations: Sequence[Violation]) -> dict[str, list[Violation]]:
    grouped: dict[str, list[Violation]] = {}
    for v in violations:
        grouped.setdefault(v.policy, []).append(v)
    return grouped


# --- the command ----------------------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    phase: str
    status: str  # clean | violations | refused | error
    resources: int = 0
    violations: list[Violation] = field(default_factory=list)
    message: str = ""

    @property
    def mandatory(self) -> int:
        return sum(1 for v in self.violations if v.level == "mandatory")

    @property
    def advisory(self) -> int:
        return sum(1 for v in self.violations if v.level == "advisory")

    def to_json(self) -> dict[str, Any]:
        grouped = by_policy(self.violations)
        return {
            "phase": self.phase,
            "status": self.status,
            "resources": self.resources,
            "message": self.message,
            "mandatory": self.mandatory,
            "advisory": self.advisory,
            "violations": [v.to_json() for v in self.violations],
            "byPolicy": {
                name: {
                    "level": vs[0].level,
                    "count": len(vs),
                    "violations": [{"urn": v.urn, "message": v.message} for v in vs],
                }
                for name, vs in grouped.items()
            },
        }


def check_phase(
    stack: str,
    phase: str | None,
    stack_path: Path | None,
    policy_config: dict[str, Any] | None,
    *,
    preview: bool = False,
) -> PhaseResult:
    """Record `stack` at `phase` (the update, or with `preview` the stack's first preview) and
    evaluate it. A phase that declares irreversible steps may refuse to plan (its allow gate is
    closed): that refusal is the safety net working, not an error."""
    label = phase or "(configured phase)"
    try:
        plan = harness.record(stack, phase=phase, stack_path=stack_path, preview=preview)  # tests swap harness.record
    except ConfigError as exc:
        gated = phase is not None and bool(resolve(phase).irreversible)
        return PhaseResult(label, "refused" if gated else "error", message=str(exc))
    except ResourceInApplyError as exc:
        return PhaseResult(label, "error", message=str(exc))
    found = evaluate(plan, policy_config) + capacity_violations(plan, stack_path)
    return PhaseResult(plan.phase, "violations" if found else "clean", len(plan.resources), found)


CAPACITY = "pods-fit-nodes"


def capacity_violations(plan: RecordedPlan, stack_path: Path | None) -> list[Violation]:
    """migrate/capacity.py beside the pack (it needs the stack's hosts, which no resource carries
    whole): a phase whose pods cannot all be scheduled by their requests fails as a mandatory
    policy would. A preview is skipped: a replica count may still be unknown there."""
    if plan.preview:
        return []
    raw = harness.read_stack_file(stack_path or harness.stack_file(plan.stack))
    try:
        problems = capacity.check(plan, parse(raw))
    except ConfigError as exc:  # a node size no source states: say so, do not guess
        return [Violation(CAPACITY, "advisory", "", f"not checked: {exc}")]
    return [Violation(CAPACITY, "mandatory", "", line) for line in problems]


CANT_RUN = "can't run policy"  # the SDK's advisory note when a rule reads an unknown during a preview


def _explanation(message: str) -> tuple[str, str]:
    """(what, the rest): `explain()` messages are "what. Why: ... Fix: ..."; the why and fix are shared
    by every resource a policy names, the what is per resource."""
    what, sep, rest = message.partition(". Why: ")
    return (what, f"Why: {rest}") if sep else (message, "")


def _print_policy(name: str, vs: Sequence[Violation], out: IO[str], verbose: bool) -> None:
    notes = [v for v in vs if v.message.startswith(CANT_RUN)]
    found = [v for v in vs if not v.message.startswith(CANT_RUN)]
    if found:
        out.write(f"  [{found[0].level}] {name}: {len(found)} resource(s)\n")
        by_reason: dict[str, list[str]] = {}
        for v in found:
            what, reason = _explanation(v.message)
            by_reason.setdefault(reason, []).append(f"{v.urn or '(stack)'}: {what}")
        for reason, items in by_reason.items():
            if reason:
                out.write(f"    {reason}\n")
            for item in items:
                out.write(f"      {item}\n")
    if notes:
        out.write(
            f"  [advisory] {name}: can't run during preview on {len(notes)} resource(s) with unknown inputs "
            f"(it runs in the update){'' if verbose else '; --verbose lists them'}\n"
        )
        if verbose:
            for v in notes:
                out.write(f"      {v.urn or '(stack)'}: {v.message}\n")


def _print_text(
    stack: str,
    source: str,
    results: Sequence[PhaseResult],
    code: int,
    out: IO[str],
    *,
    preview: bool,
    verbose: bool = False,
) -> None:
    view = "first preview (unknowns as the engine sends them)" if preview else "update"
    out.write(f"policy check: stack {stack}, {len(results)} phase(s), {view}, config {source}\n")
    for r in results:
        if r.status in ("refused", "error"):
            note = " (expected: this phase gates an irreversible step)" if r.status == "refused" else ""
            out.write(f"{r.phase:<18} {r.status.upper()}{note}: {r.message}\n")
            continue
        notes = sum(1 for v in r.violations if v.message.startswith(CANT_RUN))
        head = "clean" if not r.violations else f"{r.mandatory} mandatory, {r.advisory - notes} advisory"
        head += f", {notes} can't-run note(s)" if notes else ""
        out.write(f"{r.phase:<18} {head} ({r.resources} resources)\n")
        for name, vs in by_policy(r.violations).items():
            _print_policy(name, vs, out, verbose)
    mandatory = sum(r.mandatory for r in results)
    notes = sum(1 for r in results for v in r.violations if v.message.startswith(CANT_RUN))
    advisory = sum(r.advisory for r in results) - notes
    tail = f", {notes} can't-run note(s) of a preview" if notes else ""
    out.write(f"result: {mandatory} mandatory, {advisory} advisory violation(s){tail}; exit {code}\n")
    out.write(
        "offline-only rule parts (not enforced by `pulumi preview --policy-pack`, enforced here): "
        + ", ".join([*offline_only(), CAPACITY])
        + "\n"
    )


def offline_only() -> dict[str, str]:
    """The pack's OFFLINE_ONLY declaration (policy/policy_support.py)."""
    load_pack()
    support = importlib.import_module("policy_support")
    return dict(support.OFFLINE_ONLY)


def run_check(
    stack: str,
    phases: list[str],
    json_output: bool,
    stack_path: Path | None,
    *,
    policy_config_path: Path | None = None,
    out: IO[str] | None = None,
    preview: bool = False,
    verbose: bool = False,
) -> int:
    """Check `stack` at each phase in `phases` (all of them: pass phase_ids(); none: the stack's
    configured phase). Policy config: `policy_config_path`, else policy/config.<stack>.json if it
    exists. Prints text or one JSON document; returns the exit code."""
    out = out or sys.stdout
    for phase in phases:
        resolve(phase)  # an unknown phase id is bad input before anything is recorded
    path = policy_config_path or config_path(stack)
    if policy_config_path is None and not path.is_file():
        raw: dict[str, Any] | None = None
        source = "none (policy defaults)"
    else:
        raw = read_policy_config(path)
        source = str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    resolve_settings(load_policies(), raw, source)  # a bad config fails before any recording
    wanted: list[str | None] = list(phases) or [None]
    results = [check_phase(stack, p, stack_path, raw, preview=preview) for p in wanted]
    if any(r.status == "error" for r in results):
        code = EXIT_BAD_INPUT
    elif any(r.mandatory for r in results):
        code = EXIT_FAILED
    else:
        code = EXIT_OK
    if json_output:
        doc = {
            "stack": stack,
            "pack": load_pack().PACK_NAME,
            "view": "preview" if preview else "update",
            "config": source,
            "offlineOnly": offline_only(),
            "phases": [r.to_json() for r in results],
            "summary": {
                "mandatory": sum(r.mandatory for r in results),
                "advisory": sum(r.advisory for r in results),
                "refused": [r.phase for r in results if r.status == "refused"],
                "errors": [r.phase for r in results if r.status == "error"],
            },
            "exitCode": code,
        }
        out.write(json.dumps(doc, indent=2) + "\n")
    else:
        _print_text(stack, source, results, code, out, preview=preview, verbose=verbose)
    return code


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `check` options, shared by `python -m migrate check` and this module's own main."""
    parser.add_argument("--stack", required=True, help="stack name: dev or prod (reads Pulumi.<stack>.yaml)")
    parser.add_argument("--stack-file", help="any stack config file, e.g. a proposed change under review")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--phase", action="append", default=[], help="phase id; repeat for several")
    which.add_argument("--all-phases", action="store_true", help="every phase in stacks/, in order")
    parser.add_argument("--policy-config", help="policy config file (default: policy/config.<stack>.json)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument(
        "--preview",
        action="store_true",
        help="check each phase's first `pulumi preview` (outputs of resources being created unknown)",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="list every resource behind a preview's \"can't run\" notes (by default counted per policy)",
    )


def run_from_args(args: argparse.Namespace) -> int:
    phases = list(phase_ids()) if args.all_phases else list(args.phase)
    stack_path = Path(args.stack_file) if args.stack_file else None
    if stack_path is not None and not stack_path.is_file():
        raise ConfigError(f"--stack-file {args.stack_file}: no such file")
    policy_path = Path(args.policy_config) if args.policy_config else None
    return run_check(
        args.stack,
        phases,
        args.json,
        stack_path,
        policy_config_path=policy_path,
        preview=args.preview,
        verbose=getattr(args, "verbose", False),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m migrate.policy_runner", description="Run the policy pack on recorded plans, offline."
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_from_args(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
