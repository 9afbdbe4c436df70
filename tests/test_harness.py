"""The recording harness captures what the engine would see, and refuses what it cannot mock."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrate.harness import SECRET, record
from migrate.mocks import MissingMockRuleError

FIXTURES = Path(__file__).parent / "fixtures" / "harness_program"


@pytest.fixture(scope="module")
def fixture_plan():  # type: ignore[no-untyped-def]
    return record("dev", program=FIXTURES / "__main__.py")


def test_records_types_names_parents_and_urns(fixture_plan) -> None:  # type: ignore[no-untyped-def]
    box = fixture_plan.named("box")
    claim = fixture_plan.named("box-claim")
    assert box.type == "gpu-platform:test:Box" and not box.custom
    assert claim.type == "kubernetes:core/v1:PersistentVolumeClaim" and claim.custom
    assert claim.parent == box.urn
    assert claim.urn == (
        "urn:pulumi:dev::gpu-platform::gpu-platform:test:Box$kubernetes:core/v1:PersistentVolumeClaim::box-claim"
    )


def test_records_resource_options(fixture_plan) -> None:  # type: ignore[no-untyped-def]
    claim = fixture_plan.named("box-claim")
    secret = fixture_plan.named("box-secret")
    assert claim.protect and claim.retain_on_delete
    assert claim.ignore_changes == ("metadata.annotations",)
    assert secret.urn in claim.dependencies
    assert any("name=old-claim" in a for a in claim.aliases)
    assert not secret.protect and not secret.retain_on_delete
    assert "data" in secret.additional_secret_outputs


def test_secrets_are_marked_and_never_shown(fixture_plan) -> None:  # type: ignore[no-untyped-def]
    secret = fixture_plan.named("box-secret")
    assert secret.inputs["stringData"] == {"token": SECRET}
    assert {"data", "stringData"} <= set(secret.secret_outputs)
    settings = fixture_plan.named("box-settings")
    # The SDK lifts secretness to the top-level property that contains a secret; the harness keeps
    # its shape and hides every value in it, the plain ones included.
    assert settings.inputs["data"] == {"plain": SECRET, "token": SECRET}
    assert settings.secret_inputs == ("data",)
    assert settings.inputs["metadata"]["name"] == "settings"
    assert "token" in fixture_plan.secret_stack_outputs
    dumped = repr(fixture_plan.to_json())
    assert "s3cr3t-token" not in dumped and "exported-secret" not in dumped


def test_stack_outputs_are_recorded(fixture_plan) -> None:  # type: ignore[no-untyped-def]
    assert fixture_plan.outputs["claim"] == "data"


def test_a_type_without_a_mock_rule_fails_loudly() -> None:
    with pytest.raises(MissingMockRuleError, match=r"mystery:index:Thing"):
        record("dev", program=FIXTURES / "unknown_type.py")


def test_recording_twice_gives_the_same_plan() -> None:
    first = record("prod", phase="p2b-services")
    second = record("prod", phase="p2b-services")
    assert first.to_json() == second.to_json()


def test_offline_secrets_are_placeholders_marked_secret() -> None:
    plan = record("dev")
    assert "offline-placeholder" not in repr(plan.to_json())
