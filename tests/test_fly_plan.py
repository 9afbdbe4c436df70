"""The Fly apps through the phases, as the real program registers them (recorded plans)."""

from __future__ import annotations

import json

import pytest

from components.core.errors import ConfigError
from components.migration.fly import check_decommission
from migrate.harness import RecordedPlan, record
from tests.conftest import recorded

FLY = "pulumi-python:dynamic/fly:"
VERIFY = "pulumi-python:dynamic/backups:BackupVerification"


def _apps(plan: RecordedPlan, kind: str) -> dict[str, str]:
    """app -> URN of its resource of `kind` (FlyApp, FlyAppExport, FlyFreeze, FlyDestroy)."""
    return {r.inputs["app"]: r.urn for r in plan.of_type(FLY + kind)}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_p0_adopts_every_app_and_changes_nothing(stack: str) -> None:
    plan = recorded(stack, "p0-baseline")
    apps = _apps(plan, "FlyApp")
    assert len(apps) == 8 and all(app.endswith("-dev") == (stack == "dev") for app in apps)
    for kind in ("FlyAppExport", "FlyFreeze", "FlyDestroy"):
        assert plan.of_type(FLY + kind) == []
    for r in plan.of_type(FLY + "FlyApp"):
        assert r.inputs["allow_absent"] is False and "token" in r.secret_inputs and "token" in r.secret_outputs


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_p1_freezes_each_app_only_behind_its_own_verified_backup(stack: str) -> None:
    plan = recorded(stack, "p1-fly-freeze")
    by_urn = plan.by_urn()
    exports, freezes = _apps(plan, "FlyAppExport"), _apps(plan, "FlyFreeze")
    assert sorted(exports) == sorted(freezes) and len(freezes) == 8
    assert plan.of_type(FLY + "FlyDestroy") == []
    for app, urn in freezes.items():
        freeze = by_urn[urn]
        [verify_urn] = freeze.property_dependencies["backup"]
        verify = by_urn[verify_urn]
        assert verify.type == VERIFY and verify.inputs["label"] == f"fly-{app}"
        assert verify.property_dependencies["objects"] == (exports[app],)
        assert freeze.inputs["backup"]["verified"] is True
        assert {"token", "access_key_id", "secret_access_key"} <= set(freeze.secret_inputs)
        assert plan.outputs["verifiedBackups"][f"fly-{app}"] == freeze.inputs["backup"]["objects"][0]["key"]
    retention = {by_urn[u].inputs["retention_days"] for u in exports.values()}
    assert retention == {60}


def test_p4_destroys_after_the_freeze_and_the_verification() -> None:
    plan = recorded("dev", "p4-decommission")
    by_urn = plan.by_urn()
    freezes, destroys = _apps(plan, "FlyFreeze"), _apps(plan, "FlyDestroy")
    assert sorted(destroys) == sorted(freezes) and len(destroys) == 8
    for app, urn in destroys.items():
        destroy = by_urn[urn]
        assert freezes[app] in destroy.dependencies
        assert by_urn[destroy.property_dependencies["backup"][0]].type == VERIFY
        assert destroy.inputs["allow_destroy"] is True
    for r in plan.of_type(FLY + "FlyApp"):
        assert r.inputs["allow_absent"] is True  # after p4 the app is gone; adoption must not fail


def test_prod_p4_is_refused_at_preview_when_no_app_is_allowed() -> None:
    with pytest.raises(ConfigError) as caught:
        record("prod", phase="p4-decommission", overrides={"flyAllowDestroy": []})
    message = str(caught.value)
    assert message.startswith("gpu-platform:flyAllowDestroy: phase p4-decommission destroys the Fly apps")
    for app in ("dashboard", "mcp-services", "research", "context", "business", "lambda-mcp", "hubspot", "jobs"):
        assert app in message
    assert "Missing condition: the owner's sign-off" in message
    assert "resources were already registered" not in message


def test_one_app_without_the_flag_is_named_alone() -> None:
    allowed = [
        "dashboard-dev",
        "mcp-services-dev",
        "research-dev",
        "context-dev",
        "business-dev",
        "lambda-mcp-dev",
        "hubspot-dev",
    ]
    with pytest.raises(ConfigError, match=r"but jobs-dev is not in flyAllowDestroy"):
        record("dev", phase="p4-decommission", overrides={"flyAllowDestroy": allowed})
    # The same config is fine until the phase that destroys.
    plan = record("dev", phase="p1-fly-freeze", overrides={"flyAllowDestroy": allowed})
    assert plan.of_type(FLY + "FlyDestroy") == []


def test_check_decommission_only_cares_about_the_destroying_phase() -> None:
    check_decommission(("a", "b"), (), "stopped", "p1-fly-freeze")
    with pytest.raises(ConfigError, match="but a, b are not in flyAllowDestroy"):
        check_decommission(("a", "b"), (), "destroyed", "p4-decommission")


def test_the_fly_token_never_appears_in_clear() -> None:
    plan = recorded("dev", "p4-decommission")
    for r in plan.resources:
        if r.type.startswith(FLY):
            assert r.inputs["token"] == "[secret]"
    assert "offline-placeholder-flyApiToken" not in json.dumps(plan.to_json())
