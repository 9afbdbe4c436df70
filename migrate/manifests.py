"""The Kubernetes objects a recorded plan applies, as the manifests the provider would send.

Each resource whose type starts with `kubernetes:` (not a Helm release, which renders its chart's
objects inside the cluster, and not the provider) is one object; its inputs are its
apiVersion/kind/metadata/spec. tests/test_manifests.py validates them strictly and
`python -m migrate.scan` hands them to checkov as YAML files. The objects a Helm chart renders
are not in the plan: offline there is no chart to render, so neither sees them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from migrate.harness import SECRET, RecordedPlan, RecordedResource

# Types that are not one Kubernetes object: a Helm release renders many, a provider is none.
NOT_MANIFESTS = ("kubernetes:helm.sh/v3:Release",)


def normalise(value: Any) -> Any:
    """The wire format carries every number as a double; Kubernetes wants integers."""
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def manifest(res: RecordedResource) -> dict[str, Any]:
    """The object the provider would apply for `res`.

    A Secret's `data`/`stringData` is one secret value as a whole (the SDK marks the map), so the
    plan shows "[secret]" where the API server gets a map: offline there is nothing to check
    there, and the field is left out. Any other secret leaf stays and must fit a string field.
    """
    obj = normalise(dict(res.inputs))
    if obj.get("kind") == "Secret":
        for key in ("data", "stringData"):
            if obj.get(key) == SECRET:
                del obj[key]
    return obj


def is_manifest(res: RecordedResource) -> bool:
    return res.custom and res.type.startswith("kubernetes:") and res.type not in NOT_MANIFESTS


def manifests(plan: RecordedPlan) -> Iterator[tuple[RecordedResource, dict[str, Any]]]:
    for res in plan.resources:
        if is_manifest(res):
            yield res, manifest(res)


def unique_manifests(plans: Iterable[RecordedPlan]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each distinct object of `plans` once: JSON text -> (where it first appears, manifest)."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for plan in plans:
        for res, obj in manifests(plan):
            key = json.dumps(obj, sort_keys=True)
            out.setdefault(key, (f"{plan.stack}/{plan.phase}: {res.name} ({res.type})", obj))
    return out


def write_manifests(plans: Iterable[RecordedPlan], out: Path) -> list[Path]:
    """One YAML file per distinct object of `plans` under `out`, named by kind, namespace and name.

    An object that differs between phases or stacks (a replica count, a traffic weight) gets one
    file per variant, numbered; each file starts with a comment naming where it comes from.
    """
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    seen: dict[str, int] = {}
    for where, obj in unique_manifests(plans).values():
        meta = obj.get("metadata") or {}
        stem = "_".join(
            str(part) for part in (obj.get("kind", "Object"), meta.get("namespace", ""), meta.get("name", "")) if part
        )
        seen[stem] = seen.get(stem, 0) + 1
        path = out / f"{stem}.{seen[stem]}.yaml"
        path.write_text(f"# {where}\n" + yaml.safe_dump(obj, sort_keys=False))
        written.append(path)
    return written
