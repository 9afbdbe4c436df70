"""The phase safety matrix: every adjacent pair of phases, both directions, both stacks.

For each transition the recorded plans must show that
- no protected or stateful resource is deleted or replaced (a delete with retain_on_delete and no
  protect leaves the data in place and is allowed);
- moving A -> B -> A records exactly the plan A recorded before (the program is a pure function of
  stack config and phase: no state leaks from one recording into the next);
- nothing changes that the phase files do not declare: every changed resource belongs to a
  component that a changed phase-state key drives, and a transition that only moves
  traffic.k3sWeight changes nothing but route weights.
A phase that refuses to plan (an irreversible step without its allow flag) is an expected refusal
with a message naming the flag; a rollback across an irreversible step is refused by the phase data.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest

from components.config.phases import irreversible_between, phase_ids, resolve
from components.core.errors import ConfigError
from migrate.harness import RecordedPlan, RecordedResource, read_stack_file, record, stack_file
from migrate.plan import Change, PlanDiff, changed_paths, diff_plans
from tests.conftest import STACKS, recorded

PHASES = phase_ids()
PAIRS = list(itertools.pairwise(PHASES))
TRANSITIONS = [
    pytest.param(stack, a, b, id=f"{stack}:{a}->{b}") for stack in STACKS for x, y in PAIRS for a, b in ((x, y), (y, x))
]

# Which component modules (`gpu-platform:<module>:<Class>`) each phase-state key drives. A changed
# resource must sit under (or be) a component driven by a key that changed in the transition.
DRIVES: dict[str, frozenset[str]] = {
    "backups.": frozenset({"backups"}),
    "fly.snapshots": frozenset({"fly", "backups"}),
    "legacy.flyApps": frozenset({"fly"}),
    "legacy.compose": frozenset({"legacy"}),
    "legacy.gcpVm": frozenset({"legacy"}),
    "k3s.gpuHosts": frozenset({"gpu_host", "host_access", "cluster_peers", "lambda_cloud"}),
    "k3s.cluster": frozenset({"k3s", "cluster_peers", "host_access"}),
    # GPU telemetry (dcgm-exporter in the charts, the GPU dashboard and rules) comes with the device plugin.
    "k3s.devicePlugin": frozenset({"nvidia", "k3s", "charts", "shipping"}),
    "k3s.timeSlicing": frozenset({"nvidia"}),
    "platform.": frozenset({"platform", "charts", "datastores", "services", "traffic", "shipping", "pushgateway"}),
    # The stores' scheduled backups run where the stores do, and the bucket expires their k3s/ objects
    # (components/platform/scheduled_backups.py, the lifecycle rule in components/migration/backups.py).
    "platform.servicesStateful": frozenset({"scheduled_backups", "backups"}),
    # The cluster model volume lives with the retained storage from p2a on, so a rollback of the
    # llama phase never deletes downloaded weights (components/stack.py, llama block).
    "platform.retainStorage": frozenset({"llama"}),
    # The dashboards and alert rules of what a phase runs (components/observability/shipping.py).
    "traffic.k3sWeight": frozenset({"traffic", "shipping"}),
    "llama.": frozenset({"llama", "router", "models", "shipping"}),
}


# --- helpers ------------------------------------------------------------------------------------------


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else key))
        return out
    return {prefix: value}


def changed_state_keys(a: str, b: str) -> set[str]:
    """Dotted phase-state keys (camelCase, as the phase files write them) that differ."""
    before = _flatten(resolve(a).state.model_dump(by_alias=True))
    after = _flatten(resolve(b).state.model_dump(by_alias=True))
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def expected_refusal(stack: str, phase: str) -> bool:
    """A phase that destroys the Fly apps refuses unless every app is in flyAllowDestroy."""
    raw = read_stack_file(stack_file(stack))
    apps, allowed = set(raw.get("flyApps") or []), set(raw.get("flyAllowDestroy") or [])
    return resolve(phase).state.legacy.fly_apps == "destroyed" and bool(apps - allowed)


def plan_or_refusal(stack: str, phase: str) -> RecordedPlan | ConfigError:
    try:
        return recorded(stack, phase)
    except ConfigError as exc:
        return exc


def modules_of(urn: str, plan: RecordedPlan) -> set[str]:
    """The component modules a resource sits under (its own, if it is a component)."""
    by_urn = plan.by_urn()
    out: set[str] = set()
    cur = by_urn.get(urn)
    while cur is not None:
        if cur.type.startswith("gpu-platform:"):
            out.add(cur.type.split(":")[1])
        cur = by_urn.get(cur.parent)
    return out


def leaf_changes(before: Any, after: Any, path: str = "") -> list[str]:
    """Every leaf path whose value differs, lists compared item by item."""
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for key in sorted(before.keys() | after.keys()):
            out += leaf_changes(before.get(key), after.get(key), f"{path}.{key}" if path else key)
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [
            p for i, (x, y) in enumerate(zip(before, after, strict=True)) for p in leaf_changes(x, y, f"{path}[{i}]")
        ]
    return [] if before == after else [path]


def _retained_delete(change: Change, before: RecordedPlan) -> bool:
    """A delete that keeps the data: retain_on_delete and not protected, so Pulumi forgets the
    resource and leaves it in place (the phase files promise this for model volumes). A protected
    resource is never deleted (Pulumi refuses), and a replace always starts from an empty resource."""
    res = before.by_urn()[change.urn]
    return change.kind == "delete" and res.retain_on_delete and not res.protect


def _as_sets(res: RecordedResource) -> RecordedResource:
    return dataclasses.replace(
        res,
        dependencies=tuple(sorted(res.dependencies)),
        property_dependencies={k: tuple(sorted(v)) for k, v in sorted(res.property_dependencies.items())},
    )


def _describe(diff: PlanDiff, kinds: tuple[str, ...]) -> list[str]:
    return [f"{c.kind} {c.type} {c.name} {list(c.changed) or list(c.options)}" for c in diff.changes if c.kind in kinds]


# --- refusals ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("phase", PHASES)
def test_a_phase_plans_or_refuses_deliberately(stack: str, phase: str) -> None:
    result = plan_or_refusal(stack, phase)
    if expected_refusal(stack, phase):
        assert isinstance(result, ConfigError), f"{stack} {phase} should refuse: apps missing from flyAllowDestroy"
        assert "gpu-platform:flyAllowDestroy" in str(result) and phase in str(result)
        assert resolve(phase).irreversible, f"{phase} refuses to plan but declares no irreversible step"
    else:
        assert isinstance(result, RecordedPlan), f"{stack} {phase} refused unexpectedly: {result}"


# --- the matrix ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("stack", "a", "b"), TRANSITIONS)
def test_transition_is_safe_and_declared(stack: str, a: str, b: str) -> None:
    before, after = plan_or_refusal(stack, a), plan_or_refusal(stack, b)
    if isinstance(after, ConfigError) or isinstance(before, ConfigError):
        # The refusal happens before any resource is registered: nothing changes. The refusal
        # itself is asserted in test_a_phase_plans_or_refuses_deliberately.
        assert expected_refusal(stack, b if isinstance(after, ConfigError) else a)
        return
    undone = irreversible_between(a, b)
    if undone:
        # Rolling back past an irreversible step is refused by the tooling; the data must say so.
        assert resolve(a).index > resolve(b).index and all(step for _, step in undone)
        return

    diff = diff_plans(before, after)
    lost = [
        f"{c.kind} {c.type} {c.name}" + (" (protected: Pulumi refuses the delete)" if c.protected else "")
        for c in diff.changes
        if c.kind in ("delete", "replace") and (c.protected or c.stateful) and not _retained_delete(c, before)
    ]
    if resolve(a).state.k3s.cluster and not resolve(b).state.k3s.cluster:
        # Tearing the cluster down (p2a -> p1) removes everything that lives in it, the data
        # stores and model volume included. In prod each of them is protected, so Pulumi refuses
        # (and `migrate diff` exits 3) until an operator unprotects them on purpose; in dev the
        # cluster's data is disposable.
        stateful = [c for c in diff.changes if c.kind in ("delete", "replace") and c.stateful]
        assert stateful, "the teardown transition is expected to remove the in-cluster stores"
        if stack == "prod":
            assert all(c.protected for c in stateful if c.type.startswith("kubernetes:")), stateful
            assert diff.deletes_protected
        lost = []
    assert not lost, f"{stack} {a} -> {b} deletes or replaces protected/stateful resources:\n" + "\n".join(lost)

    keys = changed_state_keys(a, b)
    assert keys, f"{a} and {b} declare the same state; adjacent phases must differ"
    allowed = set().union(*(mods for prefix, mods in DRIVES.items() for k in keys if k.startswith(prefix)))
    undeclared = []
    for change in diff.changes:
        plan = after if change.kind == "create" else before
        if not modules_of(change.urn, plan) & allowed:
            mods = sorted(modules_of(change.urn, plan)) or ["(stack root)"]
            undeclared.append(
                f"{change.kind} {change.name} under {mods} {list(change.changed) or list(change.options)}"
            )
    assert not undeclared, (
        f"{stack} {a} -> {b} changes {sorted(keys)}, which drive {sorted(allowed)}; these changes are not declared:\n"
        + "\n".join(undeclared)
    )

    if keys == {"traffic.k3sWeight"}:
        structural = _describe(diff, ("create", "delete", "replace"))
        assert not structural, "a weight-only transition creates or deletes resources:\n" + "\n".join(structural)
        old, new = before.by_urn(), after.by_urn()
        not_weights = [
            f"{c.name}: {path}"
            for c in diff.changes
            for path in leaf_changes(old[c.urn].inputs, new[c.urn].inputs) or [f"options {list(c.options)}"]
            if "weight" not in path.rsplit(".", 1)[-1].lower()
        ]
        assert not not_weights, "a weight-only transition changes more than route weights:\n" + "\n".join(not_weights)


@pytest.mark.slow
@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("phase", PHASES)
def test_rolling_forward_and_back_records_the_same_plan(stack: str, phase: str) -> None:
    """Record the phase, its neighbours, then the phase again: identical. Together the items cover
    A, B, A for every adjacent pair in both directions."""
    first = plan_or_refusal(stack, phase)
    index = PHASES.index(phase)
    for neighbour in PHASES[max(index - 1, 0) : index + 2]:
        plan_or_refusal(stack, neighbour)
    if isinstance(first, ConfigError):
        with pytest.raises(ConfigError) as again_err:
            record(stack, phase=phase)
        assert str(again_err.value) == str(first)
        return
    again = record(stack, phase=phase)
    # Registration order, and the order of a resource's dependency URNs, follow asyncio scheduling
    # and mean nothing to the engine (it orders by the dependency graph, a set), so plans compare
    # resource by resource with dependencies as sets.
    before, after = first.by_urn(), again.by_urn()
    differences = sorted(set(before) ^ set(after))
    for urn in sorted(set(before) & set(after)):
        old, new = _as_sets(before[urn]), _as_sets(after[urn])
        fields = [f for f in old.__dataclass_fields__ if getattr(old, f) != getattr(new, f)]
        if fields:
            differences.append(
                f"{urn}: {fields}" + (f" {changed_paths(old.inputs, new.inputs)}" if "inputs" in fields else "")
            )
    keys = first.outputs.keys() | again.outputs.keys()
    differences += [f"stack output {k}" for k in sorted(keys) if first.outputs.get(k) != again.outputs.get(k)]
    if first.secret_stack_outputs != again.secret_stack_outputs:
        differences.append("secret stack outputs")
    assert not differences, f"{stack} {phase} recorded differently the second time:\n" + "\n".join(differences[:20])


def test_leaf_changes_reach_into_lists() -> None:
    before = {"spec": {"weighted": {"services": [{"name": "k3s", "weight": 10}, {"name": "legacy", "weight": 90}]}}}
    after = {"spec": {"weighted": {"services": [{"name": "k3s", "weight": 50}, {"name": "legacy", "weight": 50}]}}}
    assert leaf_changes(before, after) == ["spec.weighted.services[0].weight", "spec.weighted.services[1].weight"]
    after["spec"]["weighted"]["services"][0]["name"] = "k3s-2"
    assert "spec.weighted.services[0].name" in leaf_changes(before, after)


def test_the_state_key_map_covers_every_phase_key() -> None:
    keys = set().union(*(changed_state_keys(a, b) for a, b in PAIRS))
    unmapped = sorted(k for k in keys if not any(k.startswith(prefix) for prefix in DRIVES))
    assert not unmapped, f"phase-state keys with no component mapping in DRIVES: {unmapped}"
