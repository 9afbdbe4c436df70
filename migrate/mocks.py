"""Realistic mock outputs for every resource type the program registers.

A rule takes the resource's name and (plain) inputs and returns the outputs a real provider would
report after create. A type without a rule raises `MissingMockRuleError`, so a new resource type can
never pass through the recorded plan unexamined. Outputs are deterministic (hashes of the URN
parts), so two recordings of one stack and phase are identical.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from pulumi.runtime.mocks import MockCallArgs, MockResourceArgs
from pulumi.runtime.mocks import Mocks as _PulumiMocks

Rule = Callable[[str, dict[str, Any]], dict[str, Any]]


class MissingMockRuleError(Exception):
    pass


def digest(*parts: str, length: int = 16) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


def fake_ip(*parts: str, net: str = "198.51.100") -> str:
    """A stable documentation-range address (RFC 5737) for a mocked resource."""
    return f"{net}.{int(digest(*parts, length=4), 16) % 200 + 20}"


def echo(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """Providers whose outputs are their inputs (plus what the engine adds)."""
    return dict(inputs)


RULES: dict[str, Rule] = {}
PREFIX_RULES: dict[str, Rule] = {}
CALL_RULES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def rule(*types: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        for t in types:
            RULES[t] = fn
        return fn

    return register


# --- Kubernetes: the API server echoes the object and fills metadata -----------------------------


def _k8s(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    out = dict(inputs)
    meta = dict(out.get("metadata") or {})
    meta.setdefault("name", name)
    meta.setdefault("uid", digest("uid", name, length=32))
    out["metadata"] = meta
    return out


# Every `kubernetes:<group>/<version>:<Kind>` type behaves alike (the API server stores what it is
# given), so one rule covers the family; helm releases and the provider have their own below.
PREFIX_RULES["kubernetes:"] = _k8s


@rule("kubernetes:helm.sh/v3:Release")
def _helm_release(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    out = dict(inputs)
    out.setdefault("name", name)
    out["status"] = {
        "name": inputs.get("name", name),
        "namespace": inputs.get("namespace", "default"),
        "chart": inputs.get("chart"),
        "version": inputs.get("version"),
        "revision": 1,
        "status": "deployed",
    }
    return out


@rule(
    "pulumi:providers:kubernetes",
    "pulumi:providers:command",
    "pulumi:providers:aws",
    "pulumi:providers:gcp",
    "pulumi:providers:docker",
    "pulumi:providers:random",
    "pulumi:providers:tls",
)
def _provider(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return dict(inputs)


class Mocks(_PulumiMocks):
    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        if not args.custom:
            return "", {}  # component resources have no provider and no outputs of their own
        fn = RULES.get(args.typ)
        if fn is None:
            fn = next((r for p, r in PREFIX_RULES.items() if args.typ.startswith(p)), None)
        if fn is None:
            raise MissingMockRuleError(
                f"no mock rule for resource type {args.typ!r} ({args.name}); add one to migrate/mocks.py"
            )
        outputs = fn(args.name, dict(args.inputs))
        return args.resource_id or f"{args.name}-{digest(args.typ, args.name, length=8)}", outputs

    def call(self, args: MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        fn = CALL_RULES.get(args.token)
        if fn is None:
            raise MissingMockRuleError(f"no mock rule for function {args.token!r}; add one to migrate/mocks.py")
        return fn(dict(args.args)), None
