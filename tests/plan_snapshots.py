"""Fingerprints of every recorded plan: the proof that a refactor changed no resource.

For each stack, view (update, first preview) and phase, the fingerprint holds one short SHA-256 per
resource URN, over everything the engine would act on (type, parent, inputs and which of them are
secret, options such as protect, aliases and ignore_changes, dependencies, the provider and its
version), and one over the stack outputs. Dependencies are compared as sets:
the engine orders steps by the graph, not by the order the program listed them in. Inputs are
hashed as the engine receives them (`wire_inputs`: a secret's offline placeholder value inside its
wrapper), so a change behind a secret, such as an SSH connection setting, changes the fingerprint;
only hashes are written, never a value.

The fingerprints are committed in tests/plans/. `tests/test_plan_snapshots.py` records the plans
again and fails on any difference, naming the URNs that were added, removed or changed. A change
that is meant to alter a plan rewrites them on purpose, and the diff of tests/plans/ is then part
of the review:

    .venv/bin/python -m tests.plan_snapshots write
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components.config.phases import phase_ids
from components.core.errors import ConfigError
from migrate.harness import RecordedPlan, record

SNAPSHOT_DIR = Path(__file__).parent / "plans"
STACKS = ("dev", "prod")
VIEWS = ("update", "preview")
REFUSED = "refused"  # the program refuses this phase on this stack (ConfigError), by design


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _canonical(resource: dict[str, Any]) -> dict[str, Any]:
    out = dict(resource)
    out["dependencies"] = sorted(out["dependencies"])
    out["property_dependencies"] = {k: sorted(v) for k, v in out["property_dependencies"].items()}
    return out


def fingerprint(plan: RecordedPlan) -> dict[str, Any]:
    data = plan.to_json()
    resources = {r.urn: r.wire_inputs for r in plan.resources}
    return {
        "outputs": _digest({"outputs": plan.wire_outputs, "secret": sorted(data["secret_outputs"])}),
        "resources": {
            r["urn"]: _digest({**_canonical(r), "wire_inputs": resources[r["urn"]]}) for r in data["resources"]
        },
    }


def _record(stack: str, phase: str, view: str) -> RecordedPlan:
    return record(stack, phase, preview=view == "preview")


def take(stack: str, view: str, recorder: Callable[[str, str, str], RecordedPlan] = _record) -> dict[str, Any]:
    """Every phase of `stack` in `view`, recorded now (by `recorder`: the tests pass their cached one)."""
    phases: dict[str, Any] = {}
    for phase in phase_ids():
        try:
            phases[phase] = fingerprint(recorder(stack, phase, view))
        except ConfigError as exc:
            phases[phase] = {REFUSED: str(exc)}
    return phases


def path(stack: str, view: str) -> Path:
    return SNAPSHOT_DIR / f"{stack}.{view}.json"


def write() -> None:
    SNAPSHOT_DIR.mkdir(exist_ok=True)
    for stack in STACKS:
        for view in VIEWS:
            path(stack, view).write_text(json.dumps(take(stack, view), indent=1, sort_keys=True) + "\n")
            print(f"wrote {path(stack, view).relative_to(Path.cwd())}")


def differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """One line per phase-level difference: refusal, outputs, or a URN added, removed or changed."""
    lines: list[str] = []
    for phase in sorted(set(expected) | set(actual)):
        old, new = expected.get(phase), actual.get(phase)
        if old == new:
            continue
        if old is None or new is None or REFUSED in old or REFUSED in new:
            lines.append(
                f"{phase}: was {old if old is None or REFUSED in old else 'planned'}, now "
                f"{new if new is None or REFUSED in new else 'planned'}"
            )
            continue
        if old["outputs"] != new["outputs"]:
            lines.append(f"{phase}: stack outputs changed")
        before, after = old["resources"], new["resources"]
        lines += [f"{phase}: added {u}" for u in sorted(after.keys() - before.keys())]
        lines += [f"{phase}: removed {u}" for u in sorted(before.keys() - after.keys())]
        lines += [f"{phase}: changed {u}" for u in sorted(before.keys() & after.keys()) if before[u] != after[u]]
    return lines


if __name__ == "__main__":
    if sys.argv[1:] != ["write"]:
        sys.exit("usage: python -m tests.plan_snapshots write")
    write()
