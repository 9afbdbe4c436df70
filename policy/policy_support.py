"""What every policy in this pack shares: messages, config, unknowns, offline-only facts.

The pack runs in two places: under the Pulumi engine (`pulumi preview --policy-pack policy`) and
offline under `migrate/policy_runner.py`, which builds the same `pulumi_policy` argument objects
from a recorded plan (the update view, or with `--preview` a stack's first preview).

Unknown values follow CrossGuard's own contract (`fail_closed`): during a preview a rule that
reads an unknown cannot run, and the SDK reports that as an advisory "can't run" note; during the
update every input is known before the resource is analyzed, and a rule that still meets an
unknown fails closed at its own level.

Two facts the engine does not hand a Python policy are added offline as extra attributes, and
every rule part that reads them is declared in OFFLINE_ONLY (policy/README.md lists it; `python
-m migrate check`, a required CI gate through `make check`, is where those parts are enforced):

- secret-ness of inputs: the SDK unwraps secrets before a policy sees them
  (pulumi_policy/deserialize.py), so only the offline runner can say which inputs were secret
  (`args.secret_paths`).
- `retain_on_delete`: analyzer.proto's AnalyzerResourceOptions has no such field; the runner adds
  `opts.retain_on_delete`.

This module imports nothing but the standard library, pulumi and pulumi_policy: importing it
starts no server and touches no network.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pulumi.runtime
from pulumi_policy import PolicyConfigSchema
from pulumi_policy.proxy import UnknownValueError

# What the offline runner shows in place of a secret value (migrate/harness.py writes it).
SECRET_MARKER = "[secret]"

Report = Callable[..., None]


def explain(what: str, why: str, fix: str) -> str:
    """Every violation message: what is wrong, why it matters, how to fix it."""
    return f"{what.rstrip('.')}. Why: {why.rstrip('.')}. Fix: {fix.rstrip('.')}."


# The rule parts that only `python -m migrate check` can enforce, and why: under the engine the
# accessor they read (secret_paths, retain_on_delete below) returns None and the part is skipped.
OFFLINE_ONLY: dict[str, str] = {
    "k8s-secret-env-from-secret-ref": (
        "a literal env value the program marked secret, whatever the variable's name (the SDK hands "
        "policies secrets unwrapped); the name-based part runs under the engine too"
    ),
    "secrets-stay-secret": (
        "inputs that should be secret and are not (command environment, the Kubernetes provider's "
        "kubeconfig, Secret data, Docker env, Helm values, provider and dynamic-resource inputs); "
        "under the engine only secret command output (additional_secret_outputs, logging) is checked"
    ),
    "secret-stack-outputs": "all of it: the engine does not tell a Python policy which stack outputs are secret",
    "stateful-protected-in-prod": (
        "retain_on_delete (not in the analyzer protocol's resource options); protect is checked under the engine too"
    ),
}


def is_preview() -> bool:
    """Whether the pack is judging a preview: the engine sets PULUMI_DRY_RUN for the pack's process
    and the SDK configures `pulumi.runtime` from it before each request; offline the runner does."""
    return pulumi.runtime.is_dry_run()


def fail_closed(check: Callable[[Any, Report], None]) -> Callable[[Any, Report], None]:
    """An unknown value: during a preview the SDK's advisory "can't run" note; otherwise a violation.

    During a preview an unknown output of a resource not yet created is expected, and the same rule
    runs again during the update on every resource with its inputs known, before the resource is
    created, where a violation stops it. Outside a preview an unknown should not exist, and a
    mandatory rule that cannot see its input must not pass.
    """

    @functools.wraps(check)
    def validate(args: Any, report: Report) -> None:
        try:
            check(args, report)
        except UnknownValueError as exc:
            if is_preview():
                raise  # the SDK turns this into its advisory "can't run policy ... during preview"
            report(
                explain(
                    f"cannot evaluate this rule: {exc.message}",
                    "a value this rule depends on is unknown outside a preview, and a mandatory rule that "
                    "cannot see its input must not pass",
                    "make the value known before the resource is created (a literal, stack config or "
                    "another resource's output), or run the check against the recorded plan with "
                    "`python -m migrate check`",
                )
            )

    return validate


def config(args: Any, key: str, default: Any) -> Any:
    """A policy config value, or the default the schema documents."""
    value = args.get_config().get(key)
    return default if value is None else value


def schema(properties: dict[str, dict[str, Any]]) -> PolicyConfigSchema:
    """A config schema; every policy's level is overridable through `enforcementLevel` as well."""
    return PolicyConfigSchema(properties=properties)


def string_list(description: str, default: Sequence[str]) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string"}, "description": description, "default": list(default)}


def plain(value: Any) -> Any:
    """The value as plain dicts and lists. Reading through the SDK's proxy raises on unknowns."""
    if isinstance(value, Mapping):
        return {str(k): plain(value[k]) for k in value}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [plain(value[i]) for i in range(len(value))]
    return value


def get(obj: Any, *path: str | int, default: Any = None) -> Any:
    """obj[p0][p1]... or `default` when a step is missing or of the wrong shape."""
    cur = obj
    for step in path:
        if isinstance(step, int):
            if not isinstance(cur, Sequence) or isinstance(cur, str) or step >= len(cur):
                return default
        elif not isinstance(cur, Mapping) or step not in cur:
            return default
        cur = cur[step]
    return default if cur is None else cur


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) for every node; unknown values raise, as reading them would."""
    yield path, value
    if isinstance(value, Mapping):
        for key in value:
            yield from walk(value[key], f"{path}.{key}" if path else str(key))
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
        for i in range(len(value)):
            yield from walk(value[i], f"{path}[{i}]")


def strings(value: Any) -> list[str]:
    return [v for _, v in walk(value) if isinstance(v, str)]


def secret_paths(args: Any) -> tuple[str, ...] | None:
    """Input paths that were secret, where the caller knows (offline); None under the engine."""
    paths = getattr(args, "secret_paths", None)
    return None if paths is None else tuple(paths)


def is_secret(path: str, paths: Sequence[str]) -> bool:
    """Whether the input at `path` was secret: it, or an object or list that contains it."""
    return any(path == p or path.startswith(p + ".") or path.startswith(p + "[") for p in paths)


def retain_on_delete(opts: Any) -> bool | None:
    """The retainOnDelete option where the caller knows it (offline); None under the engine."""
    value = getattr(opts, "retain_on_delete", None)
    return None if value is None else bool(value)


def dynamic_name(resource_type: str) -> str:
    """`pulumi-python:dynamic/backups:VerifiedObject` -> `VerifiedObject`; other types -> ''."""
    if not resource_type.startswith("pulumi-python:dynamic"):
        return ""
    return resource_type.rsplit(":", 1)[-1]
