"""Tree, critical path and diff over hand-made recorded plans (the pure layer of `migrate`)."""

from __future__ import annotations

from typing import Any

from migrate.harness import RecordedPlan, RecordedResource
from migrate.plan import critical_path, diff_plans, tree

STACK = "urn:pulumi:prod::gpu-platform::"


def res(name: str, type_: str = "test:index:Thing", custom: bool = True, **kw: Any) -> RecordedResource:
    parent = kw.pop("parent", "")
    fields: dict[str, Any] = {
        "urn": f"{STACK}{type_}::{name}",
        "type": type_,
        "name": name,
        "parent": parent,
        "custom": custom,
        "inputs": kw.pop("inputs", {}),
        "secret_inputs": (),
        "dependencies": tuple(kw.pop("deps", ())),
        "property_dependencies": {},
        "provider": kw.pop("provider", ""),
        "protect": kw.pop("protect", False),
        "retain_on_delete": kw.pop("retain", False),
        "ignore_changes": (),
        "delete_before_replace": False,
        "replace_on_changes": tuple(kw.pop("replace_on", ())),
        "additional_secret_outputs": (),
        "deleted_with": "",
        "aliases": (),
        "custom_timeouts": {},
        "import_id": "",
    }
    assert not kw, kw
    return RecordedResource(**fields)


def plan(phase: str, *resources: RecordedResource) -> RecordedPlan:
    return RecordedPlan("prod", phase, tuple(resources), {}, ())


def urn(name: str, type_: str = "test:index:Thing") -> str:
    return f"{STACK}{type_}::{name}"


def test_critical_path_follows_the_longest_chain_through_components_and_providers() -> None:
    comp = res("cluster", "gpu-platform:k3s:K3sCluster", custom=False)
    first = res("server-1", parent=comp.urn)
    join = res("server-2", parent=comp.urn, deps=[first.urn])
    provider = res("k8s", "pulumi:providers:kubernetes", deps=[comp.urn])  # waits for the whole cluster
    app = res("app", provider=provider.urn)
    side = res("bucket")
    path = critical_path(plan("p", comp, first, join, provider, app, side))
    assert path.urns == (first.urn, join.urn, provider.urn, app.urn)
    assert path.length == 4


def test_parallel_agents_do_not_lengthen_the_path() -> None:
    server = res("server")
    agents = [res(f"agent-{i}", deps=[server.urn]) for i in range(5)]
    assert critical_path(plan("p", server, *agents)).length == 2


def test_tree_nests_children_under_their_component() -> None:
    comp = res("hosts", "gpu-platform:gpu_host:GpuHost", custom=False)
    child = res("hosts-instance", parent=comp.urn)
    [root] = tree(plan("p", comp, child))
    assert root.resource is comp and [n.resource for n in root.children] == [child]


def test_diff_classifies_creates_updates_replaces_and_deletes() -> None:
    kept = res("kept", inputs={"size": 1})
    gone = res("gone")
    changed = res("changed", inputs={"spec": {"weight": 10}, "metadata": {"name": "r"}})
    renamed = res("renamed", inputs={"metadata": {"name": "a"}})
    before = plan("a", kept, gone, changed, renamed)
    after = plan(
        "b",
        kept,
        res("changed", inputs={"spec": {"weight": 50}, "metadata": {"name": "r"}}),
        res("renamed", inputs={"metadata": {"name": "b"}}),
        res("new"),
    )
    d = diff_plans(before, after)
    kinds = {c.name: c.kind for c in d.changes}
    assert kinds == {"gone": "delete", "changed": "update", "renamed": "replace", "new": "create"}
    assert next(c for c in d.changes if c.name == "changed").changed == ("spec.weight",)


def test_diff_flags_protected_and_stateful_losses() -> None:
    pvc_type = "kubernetes:core/v1:PersistentVolumeClaim"
    data = res("data", pvc_type, inputs={"spec": {"storageClassName": "retain"}}, protect=True)
    moved = res("data", pvc_type, inputs={"spec": {"storageClassName": "local-path"}}, protect=True)
    d = diff_plans(plan("a", data), plan("b", moved))
    assert [c.kind for c in d.changes] == ["replace"]
    assert d.deletes_protected and d.loses_state
    assert not diff_plans(plan("a", data), plan("b", data)).changes


def test_replace_on_changes_and_provider_changes_replace() -> None:
    a = res("x", inputs={"region": "us-east-1"}, replace_on=["region"])
    b = res("x", inputs={"region": "us-west-1"}, replace_on=["region"])
    assert diff_plans(plan("a", a), plan("b", b)).changes[0].kind == "replace"
    c = res("y", provider="p1")
    e = res("y", provider="p2")
    assert diff_plans(plan("a", c), plan("b", e)).changes[0].kind == "replace"
