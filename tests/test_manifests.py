"""Every Kubernetes object of every phase of both stacks, validated without a cluster.

The objects are rebuilt from the RECORDED PLAN (the real program under mocks): each resource whose
type starts with `kubernetes:` (not a Helm release or the provider) becomes the manifest the
provider would apply, from its apiVersion/kind/metadata/spec/... inputs. Built-in kinds are
validated with kubernetes-validate's strict schemas for components.versions.KUBERNETES_VERSION
(unknown fields are errors). kubernetes-validate has no schemas for CRDs, so each custom resource
is validated against the `openAPIV3Schema` of its upstream CRD at the pinned version
(`make upstream`'s verified cache, tools/upstream.lock), just as strictly; a kind without one fails.
What no schema here can check: the CRDs' CEL rules (`x-kubernetes-validations`) and formats.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import referencing
import yaml
from kubernetes_validate import utils as kv_utils

from components.catalog import versions
from components.config.phases import phase_ids
from migrate.harness import UNKNOWN
from migrate.manifests import unique_manifests
from tests.conftest import STACKS, recorded, upstream_root

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
CLUSTER_SCOPED = {
    "Namespace",
    "Node",
    "StorageClass",
    "ClusterIssuer",
    "ClusterRole",
    "ClusterRoleBinding",
    "RuntimeClass",
}


# --- the manifests of every phase (migrate/manifests.py rebuilds them from the recorded plan) ---


def _unknowns(value: Any, path: str = "") -> list[str]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _unknowns(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _unknowns(v, f"{path}[{i}]")]
    return [path] if value == UNKNOWN else []


@functools.cache
def all_manifests() -> dict[str, tuple[str, dict[str, Any]]]:
    """Unique manifests of every phase of both stacks: JSON text -> (where, manifest)."""
    return unique_manifests(recorded(stack, phase) for stack in STACKS for phase in phase_ids())


# --- built-in kinds: kubernetes-validate, strict -----------------------------------------------


@functools.cache
def _builtin_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator | None:
    """kubernetes_validate.validate(..., strict=True), with its schemas loaded once per kind.

    Same files and the same version rule (the newest schema not newer than the desired minor);
    returns None where kubernetes-validate has no schema (a CRD kind).
    """
    version = [
        v
        for v in kv_utils.all_versions()
        if kv_utils.major_minor(v) <= kv_utils.major_minor(versions.KUBERNETES_VERSION)
    ][-1]
    schema_dir = f"kubernetes-json-schema/v{version}-local-strict"
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = kv_utils.schema_contents(f"{schema_dir}/{kind.lower()}-{group}.json", version)
    except FileNotFoundError:
        return None
    definitions = kv_utils.schema_contents(f"{schema_dir}/_definitions.json", version)
    registry: referencing.Registry[Any] = referencing.Resource.from_contents(schema) @ referencing.Registry()
    registry = referencing.Resource.from_contents(definitions) @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


# --- CRD kinds: the upstream CRDs' own schemas, strict ----------------------------------------


def _strict(schema: Any) -> Any:
    """An openAPIV3Schema as JSON Schema in which unknown fields fail.

    A structural schema lists the fields of each object in `properties`; the API server drops
    (prunes) any other field silently, and `kubectl apply` / server-side apply with strict field
    validation refuse it. Here an object with `properties` and neither `additionalProperties` nor
    `x-kubernetes-preserve-unknown-fields: true` gets `additionalProperties: false`, and
    `nullable: true` becomes JSON Schema's null type.
    """
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) if k not in ("enum", "default", "example", "required") else v for k, v in schema.items()}
    open_ended = "additionalProperties" in schema or schema.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in schema and not open_ended:
        out["additionalProperties"] = False
    if schema.get("nullable") and isinstance(schema.get("type"), str):
        out["type"] = [schema["type"], "null"]
    return out


@functools.cache
def crd_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator | None:
    """The pinned upstream CRD's openAPIV3Schema for `api_version`, strict; None when there is no CRD file."""
    group, _, version = api_version.rpartition("/")
    path = upstream_root() / "crds" / group / f"{kind}.yaml"
    if not path.is_file():
        return None
    (crd,) = [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "CustomResourceDefinition"]
    assert crd["spec"]["names"]["kind"] == kind and crd["spec"]["group"] == group, path
    served = {v["name"]: v for v in crd["spec"]["versions"] if v.get("served", True)}
    if version not in served:
        raise AssertionError(f"{path}: {api_version} is not a served version of {kind} (served: {sorted(served)})")
    return jsonschema.Draft4Validator(_strict(served[version]["schema"]["openAPIV3Schema"]))


def crd_problems(obj: dict[str, Any]) -> list[str]:
    """What the CRD's own schema rejects; a kind without an upstream CRD is itself a problem."""
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    validator = crd_validator(*key)
    if validator is None:
        return [f"no upstream CRD for {key}; add it to CHART_CRDS in tools/upstream.py, then `make upstream-lock`"]
    problems = [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(obj)]
    if key == ("helm.cattle.io/v1", "HelmChartConfig"):
        values = yaml.safe_load(obj["spec"]["valuesContent"])
        if not isinstance(values, dict):
            problems.append("spec.valuesContent: not a YAML mapping of chart values")
        if obj["metadata"].get("namespace") != "kube-system":
            problems.append("metadata.namespace: K3s's helm-controller reads HelmChartConfigs in kube-system only")
    return problems


def problems(obj: dict[str, Any]) -> list[str]:
    """Every reason the API server would reject `obj` that we can know offline."""
    unknown = _unknowns(obj)
    if unknown:
        return [f"unknown values at {unknown}: the recorded plan must be fully resolved"]
    out: list[str] = []
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    if not DNS1123_SUBDOMAIN.match(name) or len(name) > 253:
        out.append(f"metadata.name {name!r} is not a DNS-1123 subdomain")
    if obj.get("kind") not in CLUSTER_SCOPED:
        namespace = meta.get("namespace")
        if not namespace or not DNS1123_LABEL.match(namespace):
            out.append(f"metadata.namespace {namespace!r}: a namespaced object needs an explicit namespace")
    validator = _builtin_validator(obj["apiVersion"], obj["kind"])
    if validator is None:
        return out + crd_problems(obj)
    return out + [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(obj)]


# --- the tests ---------------------------------------------------------------------------------


def test_every_kubernetes_object_of_every_phase_passes_strict_validation() -> None:
    found = all_manifests()
    assert len(found) > 50, "the recorded plans hold fewer Kubernetes objects than the platform alone creates"
    failures = {where: p for where, obj in found.values() if (p := problems(obj))}
    assert not failures, "\n".join(f"{where}:\n  " + "\n  ".join(p) for where, p in sorted(failures.items()))


def test_no_object_lands_in_the_default_namespace() -> None:
    offenders = [where for where, obj in all_manifests().values() if obj["metadata"].get("namespace") == "default"]
    assert not offenders, offenders


def test_every_crd_kind_in_the_plans_has_its_upstream_crd() -> None:
    kinds = {
        (obj["apiVersion"], obj["kind"])
        for _, obj in all_manifests().values()
        if _builtin_validator(obj["apiVersion"], obj["kind"]) is None
    }
    assert kinds, "expected CRD objects (cert-manager, Traefik, Prometheus Operator) in the plans"
    without = sorted(k for k in kinds if crd_validator(*k) is None)
    assert not without, f"custom kinds without an upstream CRD: {without}"


# The validators themselves must reject what the API server would: each case is one mistake.
_VALID_DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "platform"},
    "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "x:1"}]}},
    },
}


def _with(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(obj))
    *parents, last = path.split(".")
    node = out
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    node[last] = value
    return out


def test_a_valid_deployment_passes() -> None:
    assert problems(_VALID_DEPLOYMENT) == []


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("spec.replicaz", 2, "Additional properties"),  # strict: unknown field
        ("spec.replicas", "two", "is not of type"),
        ("metadata.name", "Web_1", "DNS-1123"),
        ("metadata.namespace", None, "explicit namespace"),
    ],
)
def test_strict_validation_rejects_a_broken_deployment(path: str, value: Any, expected: str) -> None:
    found = problems(_with(_VALID_DEPLOYMENT, path, value))
    assert any(expected in p for p in found), found


_SPLIT = {
    "apiVersion": "traefik.io/v1alpha1",
    "kind": "TraefikService",
    "metadata": {"name": "app-split", "namespace": "platform"},
    "spec": {"weighted": {"services": [{"name": "dashboard", "port": 3000, "weight": 10}]}},
}
_CERT = {
    "apiVersion": "cert-manager.io/v1",
    "kind": "Certificate",
    "metadata": {"name": "public-tls", "namespace": "platform"},
    "spec": {"secretName": "public-tls", "dnsNames": ["app.example.com"], "issuerRef": {"name": "le"}},
}


def test_valid_custom_resources_pass() -> None:
    assert problems(_SPLIT) == []
    assert problems(_CERT) == []


@pytest.mark.parametrize(
    ("obj", "path", "value", "expected"),
    [
        (_SPLIT, "spec.weighted.services.0.wieght", 1, "'wieght' was unexpected"),  # typo: unknown field
        (_SPLIT, "spec.weighted.services.0.weight", "ten", "is not of type 'integer'"),
        (_SPLIT, "spec.weightd", {}, "'weightd' was unexpected"),
        (_CERT, "spec.issuerRef", {"kind": "ClusterIssuer"}, "'name' is a required property"),
        (_CERT, "spec.dnsNames", "app.example.com", "is not of type 'array'"),
        (_CERT, "spec.privateKey", {"algorithm": "DSA"}, "is not one of"),
        (_CERT, "spec.secretNam", "x", "'secretNam' was unexpected"),
    ],
)
def test_crd_checks_reject_what_the_api_server_would(obj: dict[str, Any], path: str, value: Any, expected: str) -> None:
    found = problems(_with(obj, path, value))
    assert any(expected in p for p in found), found


def test_a_kind_without_an_upstream_crd_fails() -> None:
    unknown_kind = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "x"}}
    assert any("no upstream CRD" in p for p in problems(unknown_kind))


def test_kubernetes_validate_itself_agrees_on_a_rendered_object() -> None:
    # The cached validator above reads kubernetes-validate's own files; the library's entry point
    # must give the same verdict on an object from the plan.
    where, obj = next((w, o) for w, o in all_manifests().values() if o["kind"] == "StatefulSet")
    assert kubernetes_validate.validate(obj, versions.KUBERNETES_VERSION, strict=True), where
    broken = _with(obj, "spec.replicaz", 1)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, versions.KUBERNETES_VERSION, strict=True)
    assert problems(broken)
