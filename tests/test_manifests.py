"""Every Kubernetes object of every phase of both stacks, validated without a cluster.

The objects are rebuilt from the RECORDED PLAN (the real program under mocks): each resource whose
type starts with `kubernetes:` (not a Helm release or the provider) becomes the manifest the
provider would apply, from its apiVersion/kind/metadata/spec/... inputs. Built-in kinds are
validated with kubernetes-validate's strict schemas for components.versions.KUBERNETES_VERSION
(unknown fields are errors). kubernetes-validate has no schemas for CRDs, so each CRD kind this
project applies has a structural schema below, written from the CRD's reference docs and just as
strict (`additionalProperties: false`); a CRD kind without one fails the test.
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

from components import versions
from components.phases import phase_ids
from migrate.harness import UNKNOWN
from migrate.manifests import unique_manifests
from tests.conftest import STACKS, recorded

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


# --- CRD kinds: structural schemas -------------------------------------------------------------

_STR = {"type": "string", "minLength": 1}
_NAME = {"type": "string", "pattern": DNS1123_SUBDOMAIN.pattern, "maxLength": 253}
_FQDN = {"type": "string", "pattern": r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"}
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_DURATION = {"type": "string", "pattern": r"^([0-9]+(ms|s|m|h|d|w|y))+$"}


def _obj(props: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(required), "additionalProperties": False}


def _crd(api_version: str, kind: str, spec: dict[str, Any], namespaced: bool) -> dict[str, Any]:
    metadata = _obj(
        {"name": _NAME, "labels": _STR_MAP, "annotations": _STR_MAP, **({"namespace": _NAME} if namespaced else {})},
        ("name", "namespace") if namespaced else ("name",),
    )
    return _obj(
        {"apiVersion": {"const": api_version}, "kind": {"const": kind}, "metadata": metadata, "spec": spec},
        ("apiVersion", "kind", "metadata", "spec"),
    )


# cert-manager.io/v1 (cert-manager v1.21 API reference).
_ACME_SOLVER = _obj(
    {"http01": _obj({"ingress": _obj({"ingressClassName": _STR, "class": _STR, "name": _STR})}, ("ingress",))},
    ("http01",),
)
_CLUSTER_ISSUER = _obj(
    {
        "acme": _obj(
            {
                "email": {"type": "string", "pattern": r"^[^@\s]+@[^@\s]+$"},
                "server": {
                    "enum": [
                        "https://acme-v02.api.letsencrypt.org/directory",
                        "https://acme-staging-v02.api.letsencrypt.org/directory",
                    ]
                },
                "privateKeySecretRef": _obj({"name": _NAME, "key": _STR}, ("name",)),
                "solvers": {"type": "array", "minItems": 1, "items": _ACME_SOLVER},
                "skipTLSVerify": {"type": "boolean"},
            },
            ("email", "server", "privateKeySecretRef", "solvers"),
        )
    },
    ("acme",),
)
_CERTIFICATE = _obj(
    {
        "secretName": _NAME,
        "dnsNames": {"type": "array", "minItems": 1, "uniqueItems": True, "items": _FQDN},
        "issuerRef": _obj(
            {"name": _NAME, "kind": {"enum": ["Issuer", "ClusterIssuer"]}, "group": {"const": "cert-manager.io"}},
            ("name",),
        ),
        "privateKey": _obj(
            {
                "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
                "size": {"enum": [256, 384, 521, 2048, 3072, 4096, 8192]},
                "rotationPolicy": {"enum": ["Never", "Always"]},
                "encoding": {"enum": ["PKCS1", "PKCS8"]},
            }
        ),
        "duration": _DURATION,
        "renewBefore": _DURATION,
    },
    ("secretName", "dnsNames", "issuerRef"),
)

# traefik.io/v1alpha1 (Traefik v3 Kubernetes CRD reference).
_LB_SERVICE = _obj(
    {
        "name": _NAME,
        "namespace": _NAME,
        "kind": {"enum": ["Service", "TraefikService"]},
        "port": {"oneOf": [_PORT, _STR]},
        "weight": {"type": "integer", "minimum": 0},
        "scheme": {"enum": ["http", "https", "h2c"]},
        "serversTransport": _NAME,
        "passHostHeader": {"type": "boolean"},
        "nativeLB": {"type": "boolean"},
    },
    ("name",),
)
_TRAEFIK_SERVICE = _obj(
    {
        "weighted": _obj(
            {
                "services": {"type": "array", "minItems": 1, "items": _LB_SERVICE},
                "sticky": _obj(
                    {
                        "cookie": _obj(
                            {
                                "name": _STR,
                                "secure": {"type": "boolean"},
                                "httpOnly": {"type": "boolean"},
                                "sameSite": {"enum": ["none", "lax", "strict"]},
                                "maxAge": {"type": "integer", "minimum": 0},
                                "path": _STR,
                            }
                        )
                    },
                    ("cookie",),
                ),
            },
            ("services",),
        )
    },
    ("weighted",),
)
_INGRESS_ROUTE = _obj(
    {
        "entryPoints": {"type": "array", "minItems": 1, "items": {"enum": ["web", "websecure"]}},
        "routes": {
            "type": "array",
            "minItems": 1,
            "items": _obj(
                {
                    "kind": {"const": "Rule"},
                    "match": {"type": "string", "pattern": r"Host\(`[a-z0-9.-]+`\)"},
                    "priority": {"type": "integer"},
                    "services": {"type": "array", "minItems": 1, "items": _LB_SERVICE},
                    "middlewares": {"type": "array", "items": _obj({"name": _NAME, "namespace": _NAME}, ("name",))},
                },
                ("kind", "match", "services"),
            ),
        },
        "tls": _obj({"secretName": _NAME, "certResolver": _STR, "options": _obj({"name": _NAME})}),
    },
    ("entryPoints", "routes"),
)
_SERVERS_TRANSPORT = _obj(
    {
        "serverName": _FQDN,
        "insecureSkipVerify": {"type": "boolean"},
        "rootCAs": {"type": "array"},
        "maxIdleConnsPerHost": {"type": "integer", "minimum": 0},
        "disableHTTP2": {"type": "boolean"},
    }
)

# helm.cattle.io/v1 (K3s helm-controller).
_HELM_CHART_CONFIG = _obj(
    {"valuesContent": _STR, "failurePolicy": {"enum": ["abort", "reinstall"]}}, ("valuesContent",)
)

# monitoring.coreos.com/v1 (Prometheus Operator API reference).
_PROMETHEUS_RULE = _obj(
    {
        "groups": {
            "type": "array",
            "minItems": 1,
            "items": _obj(
                {
                    "name": _STR,
                    "interval": _DURATION,
                    "rules": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "oneOf": [
                                _obj(
                                    {
                                        "alert": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
                                        "expr": _STR,
                                        "for": _DURATION,
                                        "labels": _STR_MAP,
                                        "annotations": _STR_MAP,
                                    },
                                    ("alert", "expr"),
                                ),
                                _obj({"record": _STR, "expr": _STR, "labels": _STR_MAP}, ("record", "expr")),
                            ]
                        },
                    },
                },
                ("name", "rules"),
            ),
        }
    },
    ("groups",),
)

_SELECTOR = _obj(
    {
        "matchLabels": _STR_MAP,
        "matchExpressions": {
            "type": "array",
            "items": _obj(
                {
                    "key": _STR,
                    "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                    "values": {"type": "array"},
                },
                ("key", "operator"),
            ),
        },
    }
)
_SECRET_KEY_REF = _obj({"name": _NAME, "key": _STR, "optional": {"type": "boolean"}}, ("name", "key"))
_SERVICE_MONITOR = _obj(
    {
        "selector": _SELECTOR,
        "namespaceSelector": _obj({"any": {"type": "boolean"}, "matchNames": {"type": "array", "items": _NAME}}),
        "jobLabel": _STR,
        "endpoints": {
            "type": "array",
            "minItems": 1,
            "items": _obj(
                {
                    "port": _STR,
                    "targetPort": {"oneOf": [_PORT, _STR]},
                    "path": {"type": "string", "pattern": "^/"},
                    "scheme": {"enum": ["http", "https"]},
                    "interval": _DURATION,
                    "scrapeTimeout": _DURATION,
                    "honorLabels": {"type": "boolean"},
                    "authorization": _obj({"type": _STR, "credentials": _SECRET_KEY_REF}),
                    "bearerTokenSecret": _SECRET_KEY_REF,
                },
            ),
        },
    },
    ("selector", "endpoints"),
)

CRD_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _crd(
        "monitoring.coreos.com/v1", "ServiceMonitor", _SERVICE_MONITOR, True
    ),
    ("cert-manager.io/v1", "ClusterIssuer"): _crd("cert-manager.io/v1", "ClusterIssuer", _CLUSTER_ISSUER, False),
    ("cert-manager.io/v1", "Certificate"): _crd("cert-manager.io/v1", "Certificate", _CERTIFICATE, True),
    ("traefik.io/v1alpha1", "TraefikService"): _crd("traefik.io/v1alpha1", "TraefikService", _TRAEFIK_SERVICE, True),
    ("traefik.io/v1alpha1", "IngressRoute"): _crd("traefik.io/v1alpha1", "IngressRoute", _INGRESS_ROUTE, True),
    ("traefik.io/v1alpha1", "ServersTransport"): _crd(
        "traefik.io/v1alpha1", "ServersTransport", _SERVERS_TRANSPORT, True
    ),
    ("helm.cattle.io/v1", "HelmChartConfig"): _crd("helm.cattle.io/v1", "HelmChartConfig", _HELM_CHART_CONFIG, True),
    ("monitoring.coreos.com/v1", "PrometheusRule"): _crd(
        "monitoring.coreos.com/v1", "PrometheusRule", _PROMETHEUS_RULE, True
    ),
}


def crd_problems(obj: dict[str, Any]) -> list[str]:
    """Structural problems of a CRD object; a kind without a schema is itself a problem."""
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    schema = CRD_SCHEMAS.get(key)
    if schema is None:
        return [f"no structural schema for CRD kind {key}; add one to tests/test_manifests.py"]
    problems = [
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in jsonschema.Draft202012Validator(schema).iter_errors(obj)
    ]
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


def test_every_crd_kind_in_the_plans_has_a_structural_schema() -> None:
    kinds = {
        (obj["apiVersion"], obj["kind"])
        for _, obj in all_manifests().values()
        if _builtin_validator(obj["apiVersion"], obj["kind"]) is None
    }
    assert kinds, "expected CRD objects (cert-manager, Traefik, Prometheus Operator) in the plans"
    assert kinds <= set(CRD_SCHEMAS), f"CRD kinds without a schema: {sorted(kinds - set(CRD_SCHEMAS))}"


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


def test_crd_checks_reject_what_traefik_and_cert_manager_would() -> None:
    split = {
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "TraefikService",
        "metadata": {"name": "app-split", "namespace": "platform"},
        "spec": {"weighted": {"services": [{"name": "dashboard", "port": 3000, "weight": 10}]}},
    }
    assert problems(split) == []
    assert problems(_with(split, "spec.weighted.services.0.weight", -1))
    assert problems(_with(split, "spec.weighted.services.0.wieght", 1))  # typo: unknown field
    assert problems(_with(split, "spec.mirroring", {}))
    cert = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "public-tls", "namespace": "platform"},
        "spec": {"secretName": "public-tls", "dnsNames": ["app.example.com"], "issuerRef": {"name": "le"}},
    }
    assert problems(cert) == []
    assert problems(_with(cert, "spec.dnsNames", []))
    assert problems(_with(cert, "spec.issuerRef.kind", "Isuer"))
    unknown_kind = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "x"}}
    assert any("no structural schema" in p for p in problems(unknown_kind))


def test_kubernetes_validate_itself_agrees_on_a_rendered_object() -> None:
    # The cached validator above reads kubernetes-validate's own files; the library's entry point
    # must give the same verdict on an object from the plan.
    where, obj = next((w, o) for w, o in all_manifests().values() if o["kind"] == "StatefulSet")
    assert kubernetes_validate.validate(obj, versions.KUBERNETES_VERSION, strict=True), where
    broken = _with(obj, "spec.replicaz", 1)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, versions.KUBERNETES_VERSION, strict=True)
    assert problems(broken)
