"""Every policy against its fixtures: each has cases that must pass and cases that must fail.

Fixtures live in tests/fixtures/policy/<policy-name>.yaml. A case builds a small recorded plan
(Kubernetes manifests from _compliant.yaml with one change, inline manifests, or recorded-resource
dicts) and runs it through `migrate.policy_runner.evaluate`, the same path `migrate check` takes.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from components.catalog.versions import KUBERNETES_VERSION
from migrate.harness import PROJECT, SECRET, RecordedPlan, RecordedResource
from migrate.policy_runner import Violation, evaluate, load_policies

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "policy"


# --- building plans from fixtures ------------------------------------------------------------------


@functools.cache
def compliant() -> dict[str, dict[str, Any]]:
    """The compliant manifests, keyed `Kind/namespace/name` (or `Kind/name` when cluster-scoped)."""
    docs = [d for d in yaml.safe_load_all((FIXTURES / "_compliant.yaml").read_text()) if d]
    out = {}
    for doc in docs:
        meta = doc["metadata"]
        key = "/".join(p for p in (doc["kind"], meta.get("namespace"), meta["name"]) if p)
        out[key] = doc
    return out


def resource_type(manifest: dict[str, Any]) -> str:
    api = manifest["apiVersion"]
    return f"kubernetes:{'core/' + api if '/' not in api else api}:{manifest['kind']}"


_TOKEN = re.compile(r'\["([^"]+)"\]|\[(\d+)\]|([^.\[\]]+)')


def _steps(path: str) -> list[str | int]:
    """`a.b[0]["nvidia.com/gpu"]` -> ["a", "b", 0, "nvidia.com/gpu"]."""
    steps: list[str | int] = []
    for quoted, index, plain_key in _TOKEN.findall(path):
        steps.append(int(index) if index else (quoted or plain_key))
    return steps


def set_path(obj: Any, path: str, value: Any) -> None:
    """Set a value; an index one past the end of a list appends."""
    *head, last = _steps(path)
    for step in head:
        obj = obj[step] if isinstance(step, int) else obj.setdefault(step, {})
    if isinstance(last, int) and last == len(obj):
        obj.append(value)
    else:
        obj[last] = value


def unset_path(obj: Any, path: str) -> None:
    *head, last = _steps(path)
    for step in head:
        obj = obj[step]
    del obj[last]


def _secret_leaves(value: Any, path: str = "") -> list[str]:
    """Where a fixture wrote "[secret]": the recording marks exactly those paths secret."""
    if value == SECRET:
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _secret_leaves(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _secret_leaves(v, f"{path}[{i}]")]
    return []


def _manifest_resource(manifest: dict[str, Any]) -> dict[str, Any]:
    return {"type": resource_type(manifest), "name": manifest["metadata"]["name"], "inputs": manifest}


def case_resources(case: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    bases = case.get("base", [])
    if bases == "all":
        bases = list(compliant())
    for i, key in enumerate([bases] if isinstance(bases, str) else bases):
        manifest = copy.deepcopy(compliant()[key])
        if i == 0:
            for path, value in (case.get("set") or {}).items():
                set_path(manifest, path, value)
            for path in case.get("unset") or []:
                unset_path(manifest, path)
        out.append({**_manifest_resource(manifest), **(case.get("options") or {})})
    out.extend(_manifest_resource(m) for m in case.get("manifests") or [])
    out.extend(case.get("resources") or [])
    return out


def plan_for(case: dict[str, Any]) -> RecordedPlan:
    stack = case.get("stack", "dev")

    def urn(rtype: str, name: str) -> str:
        return f"urn:pulumi:{stack}::{PROJECT}::{rtype}::{name}"

    specs = case_resources(case)
    urns = {s["name"]: urn(s["type"], s["name"]) for s in specs}
    root = urn("pulumi:pulumi:Stack", f"{PROJECT}-{stack}")
    resources = []
    for s in specs:
        custom = s.get("custom", not s["type"].startswith("gpu-platform:"))
        inputs = s.get("inputs", {})
        secret_inputs = tuple(s.get("secretInputs", _secret_leaves(inputs)))
        resources.append(
            RecordedResource(
                urn=urns[s["name"]],
                type=s["type"],
                name=s["name"],
                parent=urns[s["parent"]] if "parent" in s else root,
                custom=custom,
                inputs=inputs,
                secret_inputs=secret_inputs,
                dependencies=tuple(urns[d] for d in s.get("dependsOn", [])),
                property_dependencies={
                    k: tuple(urns[d] for d in v) for k, v in s.get("propertyDependencies", {}).items()
                },
                provider=urns[s["provider"]] if "provider" in s else "",
                protect=bool(s.get("protect", False)),
                retain_on_delete=bool(s.get("retainOnDelete", False)),
                ignore_changes=(),
                delete_before_replace=False,
                replace_on_changes=(),
                additional_secret_outputs=tuple(s.get("additionalSecretOutputs", [])),
                deleted_with="",
                aliases=(),
                custom_timeouts={},
                import_id="",
                outputs=s.get("outputs", inputs) if custom else {},
                secret_outputs=tuple(s.get("secretOutputs", {p.split(".")[0].split("[")[0] for p in secret_inputs})),
            )
        )
    return RecordedPlan(
        stack=stack,
        phase="fixture",
        resources=tuple(resources),
        outputs=case.get("outputs", {"environment": stack}),
        secret_stack_outputs=tuple(case.get("secretOutputs", [])),
    )


# --- loading the fixture files ---------------------------------------------------------------------


@functools.cache
def fixture_files() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(FIXTURES.glob("*.yaml")):
        if path.name.startswith("_"):
            continue
        doc = yaml.safe_load(path.read_text())
        assert doc["policy"] == path.stem, f"{path.name} declares policy {doc['policy']!r}"
        out[path.stem] = doc
    return out


def all_cases() -> list[Any]:
    params = []
    for name, doc in fixture_files().items():
        for outcome in ("pass", "fail"):
            for case in doc.get(outcome) or []:
                params.append(pytest.param(name, outcome, case, id=f"{name}:{outcome}:{case['case']}"))
    return params


def violations_of(policy: str, case: dict[str, Any]) -> list[Violation]:
    return [v for v in evaluate(plan_for(case), case.get("config")) if v.policy == policy]


# --- tests ------------------------------------------------------------------------------------------------


def test_every_policy_has_passing_and_failing_fixtures() -> None:
    files = fixture_files()
    names = [p.name for p in load_policies()]
    missing = [n for n in names if n not in files]
    assert not missing, f"policies without tests/fixtures/policy/<name>.yaml: {missing}"
    thin = [n for n in names if not files[n].get("pass") or not files[n].get("fail")]
    assert not thin, f"policies without both a passing and a failing case: {thin}"
    stale = sorted(set(files) - set(names))
    assert not stale, f"fixture files for policies that do not exist: {stale}"


@pytest.mark.parametrize(("policy", "outcome", "case"), all_cases())
def test_fixture(policy: str, outcome: str, case: dict[str, Any]) -> None:
    found = violations_of(policy, case)
    if outcome == "pass":
        assert not found, "\n".join(v.message for v in found)
        return
    assert found, f"{policy} reported nothing for a case that must fail"
    expect = case["expect"]
    assert any(expect in v.message for v in found), f"no message contains {expect!r}:\n" + "\n".join(
        v.message for v in found
    )
    by_name = {p.name: p for p in load_policies()}
    level = case.get("level", by_name[policy].enforcement_level.value)
    assert {v.level for v in found} == {level}
    # Every message says what is wrong, why it matters and how to fix it.
    assert all(". Why: " in v.message and ". Fix: " in v.message for v in found)


def test_compliant_manifests_pass_every_policy() -> None:
    """The baseline the fixtures start from is clean under the whole pack, so each failing case
    fails for the one thing it changes."""
    verified = {"type": "pulumi-python:dynamic/backups:VerifiedObject", "name": "qdrant-verified", "inputs": {}}
    case = {"case": "all", "base": "all", "resources": [verified], "options": {"dependsOn": ["qdrant-verified"]}}
    found = evaluate(plan_for(case))
    assert not found, "\n".join(f"{v.policy}: {v.message}" for v in found)


def test_compliant_core_manifests_are_valid_kubernetes() -> None:
    core = ("v1", "apps/v1", "batch/v1", "networking.k8s.io/v1")
    checked = 0
    for manifest in compliant().values():
        if manifest["apiVersion"] in core:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
            checked += 1
    assert checked >= 12, "the compliant set lost its core manifests"


def test_fixture_paths_address_what_they_mean() -> None:
    obj: dict[str, Any] = {"a": {"b": [{"c": 1}]}}
    set_path(obj, 'a.b[0]["nvidia.com/gpu"]', 2)
    unset_path(obj, "a.b[0].c")
    assert obj == {"a": {"b": [{"nvidia.com/gpu": 2}]}}
