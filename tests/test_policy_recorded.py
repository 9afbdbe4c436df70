"""The pack on the real program: every phase of both stacks has no mandatory violation.

This is what `python -m migrate check --stack <s> --all-phases` gates in CI; here it runs on the
session's cached recordings, with each stack's policy config.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable
from typing import Any

import pytest

from components.config.phases import phase_ids, resolve
from components.core.errors import ConfigError
from migrate.harness import RecordedPlan, RecordedResource
from migrate.policy_runner import POLICY_DIR, evaluate, read_policy_config
from tests.conftest import STACKS, recorded


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("phase", phase_ids())
def test_no_mandatory_violation(stack: str, phase: str) -> None:
    try:
        plan = recorded(stack, phase)
    except ConfigError:
        # Refusing to plan is only acceptable where the phase gates an irreversible step
        # (tests/test_phase_safety.py asserts the message).
        assert resolve(phase).irreversible
        return
    config = read_policy_config(POLICY_DIR / f"config.{stack}.json")
    mandatory = [v for v in evaluate(plan, config) if v.level == "mandatory"]
    assert not mandatory, f"{len(mandatory)} mandatory violation(s) in {stack} {phase}:\n" + "\n".join(
        f"[{v.policy}] {v.urn}\n    {v.message}" for v in mandatory[:15]
    )


# --- the rules bite on the real shapes ------------------------------------------------------------------
# A clean result above is only worth something if the policies read the inputs the components really
# register. Each case below breaks one real resource of the prod plan and expects its policy to fire.


def _first(plan: RecordedPlan, predicate: Callable[[RecordedResource], bool]) -> RecordedResource:
    found = [r for r in plan.resources if predicate(r)]
    assert found, "the recorded plan no longer has a resource this test breaks; update the predicate"
    return found[0]


def _with(plan: RecordedPlan, old: RecordedResource, new: RecordedResource) -> RecordedPlan:
    return dataclasses.replace(plan, resources=tuple(new if r.urn == old.urn else r for r in plan.resources))


def _pod_containers(inputs: dict[str, Any]) -> list[dict[str, Any]]:
    spec = inputs["spec"]
    return spec["template"]["spec"]["containers"]  # type: ignore[no-any-return]


def _break_image(r: RecordedResource) -> RecordedResource:
    inputs = copy.deepcopy(r.inputs)
    container = _pod_containers(inputs)[0]
    container["image"] = container["image"].split("@")[0].rsplit(":", 1)[0] + ":latest"
    return dataclasses.replace(r, inputs=inputs)


def _break_non_root(r: RecordedResource) -> RecordedResource:
    inputs = copy.deepcopy(r.inputs)
    inputs["spec"]["template"]["spec"].pop("securityContext", None)
    for c in _pod_containers(inputs):
        c.setdefault("securityContext", {})["runAsUser"] = 0
    return dataclasses.replace(r, inputs=inputs)


def _drop_cpu_limit(r: RecordedResource) -> RecordedResource:
    inputs = copy.deepcopy(r.inputs)
    for c in _pod_containers(inputs):
        c.get("resources", {}).get("limits", {}).pop("cpu", None)
    return dataclasses.replace(r, inputs=inputs)


def _break_k3s_pin(r: RecordedResource) -> RecordedResource:
    inputs = dict(r.inputs, create=re.sub(r"INSTALL_K3S_VERSION=\S+", "INSTALL_K3S_CHANNEL=stable", r.inputs["create"]))
    return dataclasses.replace(r, inputs=inputs)


BREAKAGES: list[Any] = [
    pytest.param(
        "p2b-services",
        lambda r: r.type == "kubernetes:apps/v1:Deployment",
        _break_image,
        "k8s-image-pinned",
        id="deployment-image-latest",
    ),
    # prod exempts only the two LLM Deployments from the CPU limit (cpuLimitExempt); any other goes.
    pytest.param(
        "p3-local-brain",
        lambda r: r.type == "kubernetes:apps/v1:Deployment" and r.inputs["metadata"].get("namespace") == "platform",
        _drop_cpu_limit,
        "k8s-resources",
        id="platform-deployment-without-cpu-limit",
    ),
    pytest.param(
        "p2b-services",
        lambda r: r.type == "kubernetes:apps/v1:StatefulSet",
        _break_non_root,
        "k8s-run-as-non-root",
        id="statefulset-as-root",
    ),
    pytest.param(
        "p2b-services",
        lambda r: r.type == "kubernetes:apps/v1:StatefulSet",
        lambda r: dataclasses.replace(r, protect=False),
        "stateful-protected-in-prod",
        id="statefulset-unprotected",
    ),
    pytest.param(
        "p2a-k3s",
        lambda r: r.type == "command:remote:Command" and "INSTALL_K3S_VERSION=" in str(r.inputs.get("create")),
        _break_k3s_pin,
        "k3s-version-pinned",
        id="k3s-install-channel",
    ),
    pytest.param(
        "p4-decommission",
        lambda r: r.type.endswith(":FlyDestroy"),
        lambda r: dataclasses.replace(r, dependencies=(), property_dependencies={}),
        "destroy-after-verified-backup",
        id="fly-destroy-without-backup",
    ),
    pytest.param(
        "p4-decommission",
        lambda r: r.type == "gcp:compute/instance:Instance" and r.inputs.get("desiredStatus") == "TERMINATED",
        lambda r: dataclasses.replace(r, dependencies=(), property_dependencies={}),
        "destroy-after-verified-backup",
        id="vm-retired-without-snapshot",
    ),
    pytest.param(
        "p4-decommission",
        lambda r: r.type.endswith(":FlyDestroy"),
        lambda r: dataclasses.replace(r, inputs={k: v for k, v in r.inputs.items() if "allow" not in k}),
        "irreversible-needs-allow-flag",
        id="fly-destroy-without-flag",
    ),
    pytest.param(
        "p2a-k3s",
        lambda r: r.type == "command:remote:Command" and r.name.endswith("kubeconfig"),
        lambda r: dataclasses.replace(r, additional_secret_outputs=()),
        "secrets-stay-secret",
        id="kubeconfig-stdout-plain",
    ),
]


@pytest.mark.parametrize(("phase", "pick", "breakage", "policy"), BREAKAGES)
def test_a_broken_real_resource_is_caught(
    phase: str,
    pick: Callable[[RecordedResource], bool],
    breakage: Callable[[RecordedResource], RecordedResource],
    policy: str,
) -> None:
    plan = recorded("prod", phase)
    target = _first(plan, pick)
    config = read_policy_config(POLICY_DIR / "config.prod.json")
    before = [v for v in evaluate(plan, config) if v.policy == policy and v.urn == target.urn]
    after = [v for v in evaluate(_with(plan, target, breakage(target)), config) if v.policy == policy]
    assert not before, f"{target.name} already violates {policy}"
    assert any(v.urn == target.urn for v in after), f"breaking {target.name} did not trip {policy}"
