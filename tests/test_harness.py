"""The recording harness captures what the engine would see, and refuses what it cannot mock."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from components.core.engine import WIRE_UNKNOWN
from migrate import harness
from migrate.harness import SECRET, UNKNOWN, ResourceInApplyError, record
from migrate.mocks import MissingMockRuleError, preview_outputs

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


def test_the_stand_ins_for_pulumi_internals_fail_loudly_on_another_pulumi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "PATCHED_PULUMI", "3.0.0")
    with pytest.raises(RuntimeError, match=r"pulumi/pulumi#22411"):
        record("dev", program=FIXTURES / "__main__.py")


def test_the_stand_ins_are_pinned_to_the_pulumi_in_requirements() -> None:
    pins = dict(
        line.split("==", 1)
        for line in (Path(__file__).parent.parent / "requirements.txt").read_text().splitlines()
        if line.startswith("pulumi==")
    )
    assert pins["pulumi"] == harness.PATCHED_PULUMI


def test_a_resource_built_inside_an_apply_fails_the_recording() -> None:
    with pytest.raises(ResourceInApplyError, match=r"'late-settings'.*inside an Output.apply"):
        record("dev", program=FIXTURES / "in_apply.py")
    # Why: the preview never runs that apply (the namespace's uid is unknown), so the resource
    # is simply missing there, which is what the every-phase test of the preview view would catch.
    preview = record("dev", program=FIXTURES / "in_apply.py", preview=True)
    assert [r.name for r in preview.resources] == ["apps"]


def test_a_preview_answers_as_providers_preview_a_create() -> None:
    plan = record("dev", program=FIXTURES / "__main__.py", preview=True)
    assert plan.preview and plan.to_json()["view"] == "preview"
    claim = plan.named("box-claim")
    # The API server's uid is computed: unknown; what the program gave (and the auto-name) is known.
    assert claim.outputs["metadata"]["uid"] == UNKNOWN and claim.outputs["metadata"]["name"] == "data"
    assert "metadata.uid" in claim.unknown_outputs and not claim.unknown_inputs
    update = record("dev", program=FIXTURES / "__main__.py")
    assert {r.urn for r in plan.resources} == {r.urn for r in update.resources}
    assert not any(r.unknown_outputs for r in update.resources)


def test_preview_outputs_follow_the_engine() -> None:
    inputs = {"app": "dashboard", "backup": WIRE_UNKNOWN}
    computed = {**inputs, "was_running": ["m1"]}
    # A dynamic provider has no preview: the engine hands back the inputs.
    assert preview_outputs("pulumi-python:dynamic/fly:FlyFreeze", inputs, computed) == inputs
    # A provider with preview support: inputs known, computed outputs unknown.
    assert preview_outputs(
        "random:index/randomPassword:RandomPassword", {"length": 24}, {"length": 24, "result": "x"}
    ) == {
        "length": 24,
        "result": WIRE_UNKNOWN,
    }
    # A provider whose own configuration is unknown answers nothing: every output unknown.
    assert (
        preview_outputs(
            "kubernetes:core/v1:Namespace", {"metadata": {}}, {"metadata": {}}, provider_config_unknown=True
        )
        == {}
    )


def test_program_warnings_are_kept_and_printed_once_per_stderr_stream() -> None:
    # pulumi.log.warn under the mocks reaches MockEngine's logger, which the harness gives this handler.
    logger, kept = harness._engine_log()
    first, second = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(first):
        logger.warning("the same line")
        logger.warning("the same line")  # a diff's second recording
        logger.info("not a warning")
    with contextlib.redirect_stderr(second):  # another command, as migrate.affected runs them
        logger.warning("the same line")
    assert first.getvalue() == second.getvalue() == "warning: the same line\n"
    assert kept.kept == ["the same line"] * 3
