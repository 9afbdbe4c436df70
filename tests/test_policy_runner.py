"""The offline runner: config semantics, unknowns, async policies, exit codes, and the pack as the
Pulumi engine runs it (a real analyzer server on 127.0.0.1)."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy import EnforcementLevel, ResourceValidationPolicy, StackValidationPolicy

from components.core.errors import ConfigError
from migrate import harness, policy_runner
from migrate.harness import UNKNOWN, RecordedPlan
from migrate.policy_runner import (
    POLICY_DIR,
    PolicyCrashError,
    evaluate,
    load_policies,
    resolve_settings,
    run_check,
    stack_resources,
)
from tests.test_policy_rules import compliant, plan_for

ROOT = Path(__file__).resolve().parent.parent

LATEST = {
    "case": "latest",
    "base": "Deployment/llm/router",
    "set": {"spec.template.spec.containers[0].image": "ghcr.io/example/router:latest"},
}


def _names(found: list[Any]) -> set[str]:
    return {v.policy for v in found}


# --- policy config --------------------------------------------------------------------------------


def test_levels_follow_the_config_file_semantics() -> None:
    policies = load_policies()
    settings = resolve_settings(
        policies,
        {"all": "advisory", "k8s-probes": "disabled", "k8s-resources": {"enforcementLevel": "mandatory"}},
    )
    assert settings["k8s-image-pinned"].level == "advisory"  # "all" overrides the policy's own level
    assert settings["k8s-probes"].level == "disabled"
    assert settings["k8s-resources"].level == "mandatory"
    # The schema's defaults fill what the file leaves out, as the CLI does.
    assert settings["k8s-no-host-path"].config["allowedPaths"] == ["/var/lib/kubelet/device-plugins"]


def test_a_level_override_changes_what_blocks() -> None:
    assert {v.level for v in evaluate(plan_for(LATEST)) if v.policy == "k8s-image-pinned"} == {"mandatory"}
    relaxed = evaluate(plan_for(LATEST), {"k8s-image-pinned": "advisory"})
    assert {v.level for v in relaxed if v.policy == "k8s-image-pinned"} == {"advisory"}
    assert "k8s-image-pinned" not in _names(evaluate(plan_for(LATEST), {"k8s-image-pinned": "disabled"}))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"k8s-imge-pinned": "advisory"}, "unknown policy ['k8s-imge-pinned']"),
        ({"k8s-probes": "warn"}, "k8s-probes: enforcement level 'warn' is not one of"),
        ({"all": "strict"}, "all: enforcement level 'strict'"),
        ({"k8s-no-host-path": {"allowedPath": ["/x"]}}, "k8s-no-host-path: unknown key(s) ['allowedPath']; allowed:"),
        ({"k8s-no-host-path": {"allowedPaths": "/x"}}, "k8s-no-host-path.allowedPaths: '/x' is not of type 'array'"),
        ({"stateful-protected-in-prod": {"environment": "staging"}}, "stateful-protected-in-prod.environment"),
        ({"k8s-probes": 3}, "k8s-probes must be a level string or an object"),
    ],
)
def test_bad_policy_config_names_the_policy_and_key(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_settings(load_policies(), raw, "policy/config.test.json")
    assert str(err.value).startswith("policy/config.test.json: ")
    assert message in str(err.value)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_stack_policy_configs_are_valid(stack: str) -> None:
    raw = policy_runner.read_policy_config(POLICY_DIR / f"config.{stack}.json")
    settings = resolve_settings(load_policies(), raw)
    if stack == "prod":
        # prod blocks on hygiene too, and never guesses its environment.
        assert settings["k8s-probes"].level == settings["k8s-resources"].level == "mandatory"
        assert settings["stateful-protected-in-prod"].config["environment"] == "prod"
    else:
        assert settings["k8s-probes"].level == "advisory"


# --- what the runner hands the policies -----------------------------------------------------------------


def test_unknown_values_fail_closed() -> None:
    case = dict(LATEST, set={"spec.template.spec.containers[0].image": UNKNOWN})
    found = [v for v in evaluate(plan_for(case)) if v.policy == "k8s-image-pinned"]
    assert found and found[0].level == "mandatory"
    assert "cannot evaluate this rule" in found[0].message
    assert "spec.template.spec.containers.0.image" in found[0].message


def test_stack_resources_carry_the_graph_and_offline_extras() -> None:
    case = {
        "case": "graph",
        "resources": [
            {"type": "gpu-platform:backups:Backups", "name": "backups"},
            {"type": "aws:s3/bucketV2:BucketV2", "name": "bucket", "parent": "backups", "retainOnDelete": True},
            {
                "type": "pulumi-python:dynamic/backups:VerifiedObject",
                "name": "verified",
                "parent": "backups",
                "dependsOn": ["bucket"],
                "propertyDependencies": {"bucket": ["bucket"]},
            },
        ],
    }
    made = {r.name: r for r in stack_resources(plan_for(case))}
    verified, bucket = made["verified"], made["bucket"]
    assert verified.parent is made["backups"]
    assert verified.dependencies == [bucket]
    assert verified.property_dependencies == {"bucket": [bucket]}
    assert bucket.opts.retain_on_delete is True and bucket.opts.protect is False
    # A custom resource without an explicit provider gets the default one, as under the engine;
    # a component has none.
    assert bucket.provider.resource_type == "pulumi:providers:aws"
    assert made["backups"].provider is None
    assert made["gpu-platform-dev"].resource_type == "pulumi:pulumi:Stack"


def test_async_policies_are_awaited(monkeypatch: pytest.MonkeyPatch) -> None:
    async def resource_check(args: Any, report: Any) -> None:
        if args.resource_type.endswith(":Deployment"):
            report(f"async saw {args.name}")

    async def stack_check(args: Any, report: Any) -> None:
        report(f"async saw {len(args.resources)} resources", args.resources[-1].urn)

    extra = [
        ResourceValidationPolicy(
            name="async-resource", description="d", validate=resource_check, enforcement_level=EnforcementLevel.ADVISORY
        ),
        StackValidationPolicy(name="async-stack", description="d", validate=stack_check),
    ]
    monkeypatch.setattr(policy_runner, "load_policies", lambda: extra)
    found = evaluate(plan_for(LATEST))
    assert [(v.policy, v.message) for v in found] == [
        ("async-resource", "async saw router"),
        ("async-stack", "async saw 2 resources"),  # the stack itself and the Deployment
    ]
    # The pack's default level applies to a policy that sets none.
    assert found[1].level == "mandatory" and found[1].urn.endswith("::router")


def test_a_policy_that_crashes_is_reported_with_where(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(args: Any, report: Any) -> None:
        raise KeyError("spec")

    monkeypatch.setattr(
        policy_runner,
        "load_policies",
        lambda: [ResourceValidationPolicy(name="broken", description="d", validate=broken)],
    )
    with pytest.raises(PolicyCrashError, match=r"policy broken failed on urn:pulumi:dev::gpu-platform::pulumi:pulumi"):
        evaluate(plan_for(LATEST))


# --- run_check: output and exit codes ---------------------------------------------------------------------


def _fake_record(plans: dict[str, Any]) -> Any:
    def record(stack: str, phase: str | None = None, stack_path: Path | None = None, **_: Any) -> RecordedPlan:
        found = plans[phase or "p0-baseline"]
        if isinstance(found, Exception):
            raise found
        return dataclasses.replace(found, phase=phase or "p0-baseline")

    return record


def test_run_check_exit_codes_and_text(monkeypatch: pytest.MonkeyPatch) -> None:
    clean = plan_for({"case": "clean", "base": "Service/llm/router"})
    dirty = plan_for(LATEST)
    monkeypatch.setattr(
        harness,
        "record",
        _fake_record(
            {
                "p0-baseline": clean,
                "p2a-k3s": dirty,
                "p4-decommission": ConfigError("gpu-platform:flyAllowDestroy: empty, refusing to destroy"),
                "p1-fly-freeze": ConfigError("gpu-platform:hosts: broken"),
            }
        ),
    )
    out = io.StringIO()
    assert run_check("dev", ["p0-baseline"], False, None, out=out) == 0
    assert "p0-baseline        clean" in out.getvalue()

    out = io.StringIO()
    assert run_check("dev", ["p0-baseline", "p2a-k3s"], False, None, out=out) == 1
    text = out.getvalue()
    assert "[mandatory] k8s-image-pinned: 1 resource(s)" in text
    assert "urn:pulumi:dev::gpu-platform::kubernetes:apps/v1:Deployment::router" in text

    # p4 declares an irreversible step: its refusal to plan is the gate working, not an error.
    out = io.StringIO()
    assert run_check("dev", ["p4-decommission"], False, None, out=out) == 0
    assert "REFUSED (expected: this phase gates an irreversible step)" in out.getvalue()

    # Any other phase that cannot be recorded is bad input.
    assert run_check("dev", ["p1-fly-freeze", "p2a-k3s"], False, None, out=io.StringIO()) == 2


def test_run_check_json_groups_by_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "record", _fake_record({"p2a-k3s": plan_for(LATEST)}))
    out = io.StringIO()
    code = run_check("dev", ["p2a-k3s"], True, None, out=out)
    doc = json.loads(out.getvalue())
    assert code == doc["exitCode"] == 1
    assert doc["config"] == "policy/config.dev.json"
    phase = doc["phases"][0]
    assert phase["status"] == "violations" and phase["mandatory"] == 1
    group = phase["byPolicy"]["k8s-image-pinned"]
    assert group["level"] == "mandatory" and group["count"] == 1
    assert group["violations"][0]["urn"].endswith("Deployment::router")


def test_run_check_takes_a_policy_config_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(harness, "record", _fake_record({"p2a-k3s": plan_for(LATEST)}))
    relaxed = tmp_path / "relaxed.json"
    relaxed.write_text(json.dumps({"k8s-image-pinned": "advisory"}))
    assert run_check("dev", ["p2a-k3s"], False, None, policy_config_path=relaxed, out=io.StringIO()) == 0
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match=r"broken.json: not valid JSON"):
        run_check("dev", ["p2a-k3s"], False, None, policy_config_path=broken, out=io.StringIO())
    with pytest.raises(ConfigError, match=r"unknown phase 'p9-nope'"):
        run_check("dev", ["p9-nope"], False, None, out=io.StringIO())


def test_module_entry_point_reports_bad_input_without_a_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "migrate.policy_runner", "--stack", "dev", "--phase", "p9-nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: gpu-platform:phase: unknown phase 'p9-nope'")
    assert "Traceback" not in proc.stderr


# --- the pack under the engine's protocol -------------------------------------------------------------------


def test_importing_the_policies_starts_no_server() -> None:
    code = (
        "import sys, grpc\n"
        "def refuse(*a, **k): raise SystemExit('policies.py started a gRPC server')\n"
        "grpc.server = refuse\n"
        f"sys.path.insert(0, {str(POLICY_DIR)!r})\n"
        "import policies\n"
        "print(len(policies.POLICIES))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) == len(load_policies())


@pytest.mark.network
def test_the_pack_serves_the_analyzer_protocol() -> None:
    """policy/__main__.py as the engine starts it: the SDK's analyzer on 127.0.0.1, asked over gRPC."""
    proc = subprocess.Popen(
        [sys.executable, "-u", str(POLICY_DIR / "__main__.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().strip())  # the SDK prints its port, then serves
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=20)
        stub = analyzer_pb2_grpc.AnalyzerStub(channel)
        info = stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=20)
        assert info.name == "gpu-platform-policies"
        levels = {p.name: p.enforcementLevel for p in info.policies}
        assert set(levels) == {p.name for p in load_policies()}
        assert levels["k8s-image-pinned"] == analyzer_pb2.MANDATORY
        assert levels["k8s-probes"] == analyzer_pb2.ADVISORY
        assert dict(info.policies[0].configSchema.properties)  # schemas travel to the engine

        props = struct_pb2.Struct()
        manifest = json.loads(json.dumps(compliant()["Deployment/llm/router"]))
        manifest["spec"]["template"]["spec"]["containers"][0]["image"] = "ghcr.io/example/router:latest"
        props.update(manifest)
        response = stub.Analyze(
            analyzer_pb2.AnalyzeRequest(
                type="kubernetes:apps/v1:Deployment",
                properties=props,
                urn="urn:pulumi:dev::gpu-platform::kubernetes:apps/v1:Deployment::router",
                name="router",
            ),
            timeout=20,
        )
        found = {(d.policyName, d.enforcementLevel) for d in response.diagnostics}
        # The tag-only image is also reported, at the advisory level the pack declares by default.
        assert found == {("k8s-image-pinned", analyzer_pb2.MANDATORY), ("image-digest-pinned", analyzer_pb2.ADVISORY)}
        pinned = next(d for d in response.diagnostics if d.policyName == "k8s-image-pinned")
        assert "uses the moving tag 'latest'" in pinned.message
        channel.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_the_readme_lists_every_policy_with_its_level() -> None:
    text = (POLICY_DIR / "README.md").read_text()
    for policy in load_policies():
        assert f"| `{policy.name}` | {policy.enforcement_level.value} |" in text, f"{policy.name} missing from README"
