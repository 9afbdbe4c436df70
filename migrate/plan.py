"""What a recorded plan means: its component tree, counts, critical path, and the diff between two.

Pure functions over `RecordedPlan`; the command line renders them, tests and the policy runner
assert on them.
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from components.catalog.images import ImagePin, digest_pending_reason, pinned_images
from migrate.harness import RecordedPlan, RecordedResource

# Types that hold data: deleting or replacing one loses it unless a backup says otherwise.
STATEFUL_TYPES: frozenset[str] = frozenset(
    {
        "kubernetes:core/v1:PersistentVolumeClaim",
        "kubernetes:core/v1:PersistentVolume",
        "kubernetes:apps/v1:StatefulSet",
        "aws:s3/bucket:Bucket",
        "aws:s3/bucketV2:BucketV2",
        "gcp:storage/bucket:Bucket",
        "gcp:compute/snapshot:Snapshot",
    }
)

# Input paths a provider cannot change in place; a change replaces the resource. Kubernetes
# rejects updates to these fields (the API server answers "field is immutable"), Pulumi replaces.
_IMMUTABLE: dict[str, tuple[str, ...]] = {
    "kubernetes:apps/v1:StatefulSet": ("spec.selector", "spec.volumeClaimTemplates", "spec.serviceName"),
    "kubernetes:apps/v1:Deployment": ("spec.selector",),
    "kubernetes:apps/v1:DaemonSet": ("spec.selector",),
    "kubernetes:core/v1:PersistentVolumeClaim": ("spec.storageClassName", "spec.accessModes", "spec.volumeName"),
    "kubernetes:batch/v1:Job": ("spec.template", "spec.selector"),
    "kubernetes:storage.k8s.io/v1:StorageClass": ("provisioner", "parameters", "reclaimPolicy", "volumeBindingMode"),
}


def is_stateful(res: RecordedResource) -> bool:
    return res.type in STATEFUL_TYPES or res.protect or res.retain_on_delete


# --- tree and counts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    resource: RecordedResource
    children: tuple[Node, ...]


def tree(plan: RecordedPlan) -> list[Node]:
    """The resources as a forest under the stack, in registration order."""
    children: dict[str, list[RecordedResource]] = {}
    urns = {r.urn for r in plan.resources}
    roots: list[RecordedResource] = []
    for res in plan.resources:
        if res.parent in urns:
            children.setdefault(res.parent, []).append(res)
        else:
            roots.append(res)

    def build(res: RecordedResource) -> Node:
        return Node(res, tuple(build(c) for c in children.get(res.urn, [])))

    return [build(r) for r in roots]


def counts(plan: RecordedPlan) -> dict[str, int]:
    return dict(sorted(Counter(r.type for r in plan.resources).items()))


# --- dependency graph ------------------------------------------------------------------------------


def _expand(plan: RecordedPlan) -> dict[str, set[str]]:
    """custom resource URN -> custom resource URNs it waits for before it can be created.

    Depending on a component means waiting for every custom resource under it; a resource with an
    explicit provider waits for the provider (which in turn may wait for a kubeconfig).
    """
    by_urn = plan.by_urn()
    kids: dict[str, list[str]] = {}
    for r in plan.resources:
        kids.setdefault(r.parent, []).append(r.urn)

    @functools.cache
    def customs_under(urn: str) -> frozenset[str]:
        res = by_urn.get(urn)
        if res is None:
            return frozenset()
        if res.custom:
            return frozenset({urn})
        out: set[str] = set()
        for child in kids.get(urn, []):
            out |= customs_under(child)
        return frozenset(out)

    graph: dict[str, set[str]] = {}
    for r in plan.resources:
        if not r.custom:
            continue
        direct = set(r.dependencies)
        for deps in r.property_dependencies.values():
            direct |= set(deps)
        if r.provider:
            direct.add(r.provider)
        waits: set[str] = set()
        for dep in direct:
            waits |= customs_under(dep)
        waits.discard(r.urn)
        graph[r.urn] = waits
    return graph


@dataclass(frozen=True)
class CriticalPath:
    length: int
    urns: tuple[str, ...]


def critical_path(plan: RecordedPlan) -> CriticalPath:
    """The longest chain of resources that must be created one after another."""
    graph = _expand(plan)

    @functools.cache
    def longest(urn: str) -> tuple[str, ...]:
        best: tuple[str, ...] = ()
        for dep in sorted(graph.get(urn, ())):
            if dep in graph:
                chain = longest(dep)
                if len(chain) > len(best):
                    best = chain
        return (*best, urn)

    best: tuple[str, ...] = ()
    for urn in graph:
        chain = longest(urn)
        if len(chain) > len(best):
            best = chain
    return CriticalPath(length=len(best), urns=best)


# --- diff ------------------------------------------------------------------------------------------


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out or {prefix: {}}
    return {prefix: value}


def changed_paths(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Dotted input paths whose values differ (lists compare whole)."""
    a, b = _flatten(before), _flatten(after)
    return sorted(k for k in a.keys() | b.keys() if a.get(k, _MISSING) != b.get(k, _MISSING))


_MISSING = object()


@dataclass(frozen=True)
class ValueChange:
    """One changed input leaf: `old` -> `new`; `ABSENT` where the path is not set on that side.
    Secret leaves are already "[secret]" in a recording, so no secret value reaches a diff."""

    path: str
    old: Any
    new: Any


ABSENT = "(not set)"
MAX_VALUES = 40  # changed leaves kept per resource; a reviewer reads the count for the rest


def value_changes(before: dict[str, Any], after: dict[str, Any], paths: list[str]) -> tuple[ValueChange, ...]:
    """The leaves behind each changed path, lists included (`services[0].weight: 10 -> 50`)."""
    a, b = _flatten(before), _flatten(after)
    out: list[ValueChange] = []
    for path in paths:
        old, new = a.get(path, _MISSING), b.get(path, _MISSING)
        if isinstance(old, list | dict) and isinstance(new, list | dict) and type(old) is type(new):
            old_leaves, new_leaves = dict(_leaf_paths(old, path)), dict(_leaf_paths(new, path))
            for leaf in sorted(old_leaves.keys() | new_leaves.keys(), key=_natural):
                o, n = old_leaves.get(leaf, _MISSING), new_leaves.get(leaf, _MISSING)
                if o != n:
                    out.append(ValueChange(leaf, ABSENT if o is _MISSING else o, ABSENT if n is _MISSING else n))
        else:
            out.append(ValueChange(path, ABSENT if old is _MISSING else old, ABSENT if new is _MISSING else new))
    return tuple(out)


def _natural(path: str) -> list[Any]:
    """`services[10]` after `services[9]`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


@dataclass(frozen=True)
class Change:
    urn: str
    type: str
    name: str
    kind: str  # create | update | replace | delete
    changed: tuple[str, ...] = ()  # input paths, for update/replace
    options: tuple[str, ...] = ()  # resource options that changed
    stateful: bool = False
    protected: bool = False
    values: tuple[ValueChange, ...] = ()  # old -> new per changed leaf, for update/replace


@dataclass(frozen=True)
class PlanDiff:
    before: str
    after: str
    changes: tuple[Change, ...] = field(default_factory=tuple)

    def of_kind(self, kind: str) -> list[Change]:
        return [c for c in self.changes if c.kind == kind]

    @property
    def deletes_protected(self) -> list[Change]:
        return [c for c in self.changes if c.kind in ("delete", "replace") and c.protected]

    @property
    def loses_state(self) -> list[Change]:
        return [c for c in self.changes if c.kind in ("delete", "replace") and c.stateful]

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.before,
            "to": self.after,
            "summary": {k: len(self.of_kind(k)) for k in ("create", "update", "replace", "delete")},
            "changes": [
                {
                    "urn": c.urn,
                    "type": c.type,
                    "name": c.name,
                    "kind": c.kind,
                    "changed": list(c.changed),
                    "options": list(c.options),
                    "stateful": c.stateful,
                    "protected": c.protected,
                    "values": [_value_json(v) for v in c.values[:MAX_VALUES]],
                    "valuesLeftOut": max(0, len(c.values) - MAX_VALUES),
                }
                for c in self.changes
            ],
        }


def summarise(value: Any, limit: int = 80) -> str:
    """A value on one line: whole when short, else its start and its size (a script, a config map)."""
    if isinstance(value, str) and value != ABSENT and not value.startswith("["):
        text = json.dumps(value)
    else:
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, float) and value.is_integer():
        text = str(int(value))
    if len(text) <= limit:
        return text
    size = (
        f"{len(value)} {'keys' if isinstance(value, dict) else 'items'}"
        if isinstance(value, dict | list)
        else (f"{len(str(value))} chars")
    )
    return f"{text[: limit - 20]}… ({size})"


def _value_json(v: ValueChange) -> dict[str, Any]:
    def shown(value: Any) -> Any:
        if value == ABSENT:
            return None
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value if len(json.dumps(value, default=str)) <= 200 else summarise(value, 200)

    return {
        "path": v.path,
        "old": shown(v.old),
        "new": shown(v.new),
        "added": v.old == ABSENT,
        "removed": v.new == ABSENT,
    }


_OPTIONS = ("protect", "retain_on_delete", "ignore_changes", "delete_before_replace", "deleted_with", "provider")


def _replaces(res: RecordedResource, changed: list[str], provider_changed: bool) -> bool:
    if provider_changed:
        return True
    triggers = set(res.replace_on_changes) | set(_IMMUTABLE.get(res.type, ()))
    if "*" in triggers and changed:
        return True
    top = [p for p in changed if not p.startswith("metadata.annotations") and not p.startswith("metadata.labels")]
    names = ("metadata.name", "metadata.namespace")
    return any(p == t or p.startswith(t + ".") for p in top for t in (*triggers, *names))


def diff_plans(before: RecordedPlan, after: RecordedPlan) -> PlanDiff:
    """What `pulumi up` would do to move a stack from `before` to `after`."""
    a, b = before.by_urn(), after.by_urn()
    changes: list[Change] = []
    for urn, res in b.items():
        if urn not in a:
            changes.append(Change(urn, res.type, res.name, "create", stateful=is_stateful(res), protected=res.protect))
    for urn, old in a.items():
        new = b.get(urn)
        if new is None:
            changes.append(Change(urn, old.type, old.name, "delete", stateful=is_stateful(old), protected=old.protect))
            continue
        changed = changed_paths(old.inputs, new.inputs)
        options = [o for o in _OPTIONS if getattr(old, o) != getattr(new, o)]
        if not changed and not options:
            continue
        kind = "replace" if _replaces(old, changed, "provider" in options) else "update"
        changes.append(
            Change(
                urn,
                new.type,
                new.name,
                kind,
                tuple(changed),
                tuple(options),
                stateful=is_stateful(old),
                protected=old.protect,
                values=value_changes(old.inputs, new.inputs, changed),
            )
        )
    order = {"delete": 0, "replace": 1, "update": 2, "create": 3}
    changes.sort(key=lambda c: (order[c.kind], c.urn))
    return PlanDiff(before.phase, after.phase, tuple(changes))


# --- what the offline mocks made up --------------------------------------------------------------


def _leaf_paths(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaf_paths(v, f"{prefix}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaf_paths(v, f"{prefix}[{i}]")
    else:
        yield prefix, value


def _json_leaves(text: str) -> list[str]:
    if text[:1] not in ("{", "["):
        return []
    try:
        parsed = json.loads(text)
    except ValueError:
        return []
    return [v for _p, v in _leaf_paths(parsed) if isinstance(v, str)]


def mock_values(plan: RecordedPlan) -> frozenset[str]:
    """Strings that only a provider's answer holds (addresses, keys, object keys, hashes): under
    the harness `migrate/mocks.py` invents them, so a plan must not print them as if real."""
    found: set[str] = set()
    for res in plan.resources:
        given = dict(_leaf_paths(res.inputs))
        echoed = {v for v in given.values() if isinstance(v, str)}
        for path, value in _leaf_paths(res.outputs):
            if not isinstance(value, str) or len(value) < 6 or value in echoed or given.get(path) == value:
                continue
            found.add(value.strip())  # a key file's trailing newline, which the program strips
            # An answer that is JSON text (a backup command's stdout) holds made-up values too,
            # beside what the resource's own inputs say (the store it dumped, named in its command).
            for leaf in _json_leaves(value):
                if len(leaf) >= 6 and not any(leaf in text for text in echoed):
                    found.add(leaf)
    found -= {"[secret]", "[unknown]"}
    return frozenset(found)


def is_mock(value: Any, invented: frozenset[str]) -> bool:
    """A leaf that is, or contains, a value the mocks made up (e.g. `https://<mock address>:6443`)."""
    if not isinstance(value, str):
        return False
    if value in invented:
        return True
    # Holding one: a URL around a made-up address.
    return any(len(v) >= 8 and v in value for v in invented)


# --- images ----------------------------------------------------------------------------------------

# Inputs that hold one image reference, besides any `image` key (containers, Fly machine configs).
_IMAGE_INPUTS = {"docker:index/remoteImage:RemoteImage": "name"}


@dataclass(frozen=True)
class ImageUse:
    """One image reference a plan runs, the resources that name it, and its digest status."""

    ref: str
    resources: tuple[str, ...]
    digest: str | None
    # Why it has no digest yet (components/catalog/versions.py DIGEST_PENDING); "" when it has one or when
    # it is not on the list, which the `image-digest-pinned` policy refuses in prod.
    pending_reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.ref,
            "digest": self.digest,
            "digestPending": self.pending_reason or None,
            "resources": list(self.resources),
        }


def _image_refs(res: RecordedResource, known: frozenset[str]) -> set[str]:
    found: set[str] = set()
    if res.type.startswith("gcp:"):
        return found  # `image` there is a VM boot image (a family or a disk image), not a container
    key = _IMAGE_INPUTS.get(res.type)
    if key and isinstance(res.inputs.get(key), str):
        found.add(res.inputs[key])

    def visit(value: Any, name: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                visit(v, k)
        elif isinstance(value, list):
            for v in value:
                visit(v, name)
        elif isinstance(value, str):
            if name == "image" and value:
                found.add(value)
            else:
                # A pinned image inside a script or command line (`docker run <image>`).
                found.update(ref for ref in known if ref in value)

    visit(res.inputs, "")
    return found


def images(plan: RecordedPlan) -> list[ImageUse]:
    """Every image the plan runs, sorted by reference."""
    known = frozenset(p.ref for p in pinned_images().values())
    users: dict[str, list[str]] = {}
    for res in plan.resources:
        for ref in _image_refs(res, known):
            users.setdefault(ref, []).append(res.name)
    out = []
    for ref, names in sorted(users.items()):
        if ref.startswith("sha256:"):  # an image ID (a container of a pulled image): content-addressed
            out.append(ImageUse(ref, tuple(sorted(set(names))), ref, ""))
            continue
        try:
            pin: ImagePin | None = ImagePin.parse(ref)
        except ValueError:
            pin = None
        digest = pin.digest if pin else None
        reason = "" if digest or pin is None else (digest_pending_reason(pin.repository) or "")
        out.append(ImageUse(ref, tuple(sorted(set(names))), digest, reason))
    return out
