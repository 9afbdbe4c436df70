"""The pack under the engine and offline agree: the Analyzer started as the CLI starts it, asked over gRPC.

`pulumi preview --policy-pack policy` runs a Python pack through the Python language host:
`<pack>/venv/bin/python -u -m pulumi.policy <engine address> <pack>` in the pack's directory, the
venv being the one PulumiPolicy.yaml declares (tests/policy_pack.py: where the CLI does this, and how
that venv is made here, outside the work tree), with the stack in
PULUMI_PROJECT/PULUMI_STACK/PULUMI_ORGANIZATION, PULUMI_DRY_RUN=true for a preview and false for
the update (pkg/resource/plugin/analyzer_plugin.go, constructEnv). The engine then sends Configure
(each policy's level and properties), an AnalyzeRequest per resource and one AnalyzeStackRequest,
with properties marshalled KeepUnknowns and KeepSecrets: camelCase wire names, secrets in their
wrapper with the real value inside, unknowns as the sentinel, internal keys (`__provider`) left
out, plus the resource options and the provider.

This module does exactly that for every phase of both stacks, in both views (the update and the
first preview), and for every resource in tests/fixtures/policy, and asserts the diagnostics equal
what `migrate/policy_runner.py` reports offline. Rule parts the engine cannot see are declared in
policy_support.OFFLINE_ONLY; for those the engine may report less, never more, and every declared
part is shown to exist by a fixture that only the offline runner catches.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import struct_pb2
from packaging.utils import canonicalize_name
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from components.config.phases import phase_ids
from components.core.engine import WIRE_UNKNOWN
from components.core.errors import ConfigError
from migrate.harness import PROJECT, SECRET, UNKNOWN, RecordedPlan, RecordedResource
from migrate.policy_runner import (
    POLICY_DIR,
    STACK_TYPE,
    _provider,
    _seconds,
    evaluate,
    load_policies,
    offline_only,
    read_policy_config,
    resolve_settings,
    stack_urn,
)
from tests.conftest import ROOT, STACKS, recorded, recorded_preview
from tests.policy_pack import activated, declared_virtualenv, pack_directory, pack_virtualenv
from tests.test_policy_rules import all_cases, plan_for

pytestmark = pytest.mark.network

_SIG = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"

Diagnostic = tuple[str, str, str, str]  # policy, level, urn, message


# --- the engine's side -------------------------------------------------------------------------------


class Engine:
    """One policy pack process as the CLI starts it, and the requests the engine sends it."""

    def __init__(self, *, dry_run: bool, pack: Path) -> None:
        # The Python language host reads the runtime options (toolchain pip, virtualenv) itself and
        # runs the venv's python with the engine address and the pack's directory, in that directory
        # (tests/policy_pack.py cites where). PYTHONPATH is emptied so that nothing of this test's
        # own environment can reach the pack: it imports what its venv and its directory hold.
        self.python = pack / declared_virtualenv() / "bin" / "python"
        env = {
            **activated(os.environ, pack / declared_virtualenv()),
            "PYTHONPATH": "",
            "PULUMI_ORGANIZATION": "organization",
            "PULUMI_PROJECT": PROJECT,
            "PULUMI_STACK": "dev",
            "PULUMI_DRY_RUN": "true" if dry_run else "false",
            "PULUMI_CONFIG": "{}",
        }
        self.argv = [str(self.python), "-u", "-m", "pulumi.policy", "127.0.0.1:1", str(pack)]
        self.proc = subprocess.Popen(
            self.argv,
            cwd=pack,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line.isdigit(), (
            f"the pack did not print its port: {line!r} {self.proc.stderr.read() if not line else ''}"
        )
        self.channel = grpc.insecure_channel(f"127.0.0.1:{line}")
        grpc.channel_ready_future(self.channel).result(timeout=30)
        self.stub = analyzer_pb2_grpc.AnalyzerStub(self.channel)
        self.stack = ""
        self.cache: dict[bytes, list[Diagnostic]] = {}

    def close(self) -> None:
        self.channel.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)

    def configure(self, stack: str, raw: dict[str, Any] | None) -> None:
        """Configure as the CLI does from --policy-pack-config: every policy's level and properties."""
        key = f"{stack}:{json.dumps(raw, sort_keys=True)}"
        if key == self.stack:
            return
        levels = {
            "advisory": analyzer_pb2.ADVISORY,
            "mandatory": analyzer_pb2.MANDATORY,
            "remediate": analyzer_pb2.REMEDIATE,
            "disabled": analyzer_pb2.DISABLED,
        }
        settings = resolve_settings(load_policies(), raw)
        request = analyzer_pb2.ConfigureAnalyzerRequest()
        for name, setting in settings.items():
            props = struct_pb2.Struct()
            props.update(setting.config)
            request.policyConfig[name].CopyFrom(
                analyzer_pb2.PolicyConfig(enforcementLevel=levels[setting.level], properties=props)
            )
        self.stub.Configure(request, timeout=30)
        self.stack = key
        self.cache.clear()

    def diagnostics(self, plan: RecordedPlan, raw: dict[str, Any] | None) -> list[Diagnostic]:
        self.configure(plan.stack, raw)
        found: list[Diagnostic] = []
        by_urn = plan.by_urn()
        root = analyzer_pb2.AnalyzeRequest(
            type=STACK_TYPE, properties=_struct({}), urn=stack_urn(plan), name=f"{PROJECT}-{plan.stack}"
        )
        requests = [root]
        for res in plan.resources:
            request = analyzer_pb2.AnalyzeRequest(
                type=res.type,
                properties=_struct(wire_inputs(res)),
                urn=res.urn,
                name=res.name,
                options=_options(res),
            )
            provider = _provider_message(res, by_urn, plan)
            if provider is not None:
                request.provider.CopyFrom(provider)
            requests.append(request)
        for request in requests:
            # Phases repeat most resources; an identical request gets the identical answer.
            key = request.SerializeToString(deterministic=True)
            if key not in self.cache:
                response = self.stub.Analyze(request, timeout=60)
                self.cache[key] = [_diagnostic(d, request.urn) for d in response.diagnostics]
            found.extend(self.cache[key])
        response = self.stub.AnalyzeStack(_stack_request(plan, by_urn), timeout=120)
        found.extend(_diagnostic(d, "") for d in response.diagnostics)
        return found


def _sorted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def _struct(value: Mapping[str, Any]) -> Any:
    """A property map as the engine marshals it: every object's keys in sorted order (StableKeys)."""
    out = struct_pb2.Struct()
    out.update(_sorted(dict(value)))
    return out


def _options(res: RecordedResource) -> Any:
    opts = analyzer_pb2.AnalyzerResourceOptions(
        protect=res.protect,
        ignoreChanges=list(res.ignore_changes),
        deleteBeforeReplace=res.delete_before_replace,
        deleteBeforeReplaceDefined=True,
        additionalSecretOutputs=list(res.additional_secret_outputs),
        aliases=list(res.aliases),
        parent=res.parent,
    )
    if res.custom_timeouts:
        opts.customTimeouts.CopyFrom(
            analyzer_pb2.AnalyzerResourceOptions.CustomTimeouts(
                create=_seconds(res.custom_timeouts.get("create", "")),
                update=_seconds(res.custom_timeouts.get("update", "")),
                delete=_seconds(res.custom_timeouts.get("delete", "")),
            )
        )
    return opts


def _provider_message(res: RecordedResource, by_urn: Mapping[str, RecordedResource], plan: RecordedPlan) -> Any:
    described = _provider(res, by_urn, plan)  # the offline runner's view of the same provider
    if described is None:
        return None
    explicit = by_urn.get(described.urn)
    props = wire_inputs(explicit) if explicit is not None else {}
    return analyzer_pb2.AnalyzerProviderResource(
        type=described.resource_type, properties=_struct(props), urn=described.urn, name=described.name
    )


def _stack_request(plan: RecordedPlan, by_urn: Mapping[str, RecordedResource]) -> Any:
    root = analyzer_pb2.AnalyzerResource(
        type=STACK_TYPE,
        properties=_struct(plan.wire_outputs or _wire(plan.outputs, set(plan.secret_stack_outputs))),
        urn=stack_urn(plan),
        name=f"{PROJECT}-{plan.stack}",
        options=analyzer_pb2.AnalyzerResourceOptions(),
    )
    resources = [root]
    for res in plan.resources:
        item = analyzer_pb2.AnalyzerResource(
            type=res.type,
            properties=_struct(wire_outputs(res) if res.custom else {}),
            urn=res.urn,
            name=res.name,
            options=_options(res),
            parent=res.parent,
            dependencies=list(res.dependencies),
        )
        for key, urns in res.property_dependencies.items():
            item.propertyDependencies[key].urns.extend(urns)
        provider = _provider_message(res, by_urn, plan)
        if provider is not None:
            item.provider.CopyFrom(provider)
        resources.append(item)
    return analyzer_pb2.AnalyzeStackRequest(resources=resources)


# A rule that meets an unknown stops at the first one; which one that is follows the iteration
# order of the protobuf map the SDK parses the properties from, which it does not fix. Both sides
# must agree that the rule could not run on that resource, not on which unknown stopped it.
CANT_RUN = "can't run during preview"
_CANT_RUN_ENGINE = re.compile(r"^can't run policy '([^']+)' from policy pack '[^']+' during preview: (.*)$", re.S)
_CANT_RUN_OFFLINE = re.compile(r"^can't run policy '([^']+)' during preview: (.*)$", re.S)


def _diagnostic(d: Any, analyzed_urn: str) -> Diagnostic:
    level = {analyzer_pb2.ADVISORY: "advisory", analyzer_pb2.MANDATORY: "mandatory"}[d.enforcementLevel]
    if _CANT_RUN_ENGINE.match(d.message):
        message = CANT_RUN
    else:
        # The SDK prefixes every reported message with the policy's description.
        message = d.message.removeprefix(d.description).removeprefix("\n")
    # The engine files a resource policy's diagnostic under the resource it analyzed.
    return d.policyName, level, analyzed_urn or d.urn, message


def stack_config(stack: str) -> dict[str, Any]:
    return read_policy_config(POLICY_DIR / f"config.{stack}.json")


def offline(plan: RecordedPlan, raw: dict[str, Any] | None) -> list[Diagnostic]:
    out = []
    for v in evaluate(plan, raw):
        message = CANT_RUN if _CANT_RUN_OFFLINE.match(v.message) else v.message
        out.append((v.policy, v.level, v.urn, message))
    return out


# --- what the engine marshals --------------------------------------------------------------------------


def _wire(value: Any, secret_keys: set[str], path: str = "") -> Any:
    """A fixture's recorded value as the engine marshals it: "[secret]" leaves (and `secret_keys`)
    wrapped with a real value inside, "[unknown]" as the sentinel."""
    if path in secret_keys:
        return {_SIG: _SECRET_SIG, "value": _wire(value, set(), path)}
    if value == SECRET:
        return {_SIG: _SECRET_SIG, "value": f"real-value-of-{path or 'secret'}"}
    if value == UNKNOWN:
        return WIRE_UNKNOWN
    if isinstance(value, Mapping):
        return {k: _wire(v, secret_keys, f"{path}.{k}" if path else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_wire(v, secret_keys, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def wire_inputs(res: RecordedResource) -> dict[str, Any]:
    """What the harness kept of the real request; a fixture resource's built from its inputs."""
    return res.wire_inputs or _wire(res.inputs, set())


def wire_outputs(res: RecordedResource) -> dict[str, Any]:
    return res.wire_outputs or _wire(res.outputs, set())


# --- the comparison --------------------------------------------------------------------------------------


def compare(engine: list[Diagnostic], local: list[Diagnostic], *, messages: bool = True) -> list[str]:
    """Differences, as readable lines; empty when the two agree.

    Policies outside OFFLINE_ONLY must agree diagnostic for diagnostic, messages included (unless
    `messages` is off). For an OFFLINE_ONLY policy the engine sees less: per resource it may report
    fewer, never more.
    """
    declared = set(offline_only())
    problems = []
    width = 4 if messages else 3
    exact_engine = Counter(d[:width] for d in engine if d[0] not in declared)
    exact_local = Counter(d[:width] for d in local if d[0] not in declared)
    for d in sorted((exact_engine - exact_local).elements()):
        problems.append(f"only under the engine: {d}")
    for d in sorted((exact_local - exact_engine).elements()):
        problems.append(f"only offline: {d}")
    short_engine = Counter(d[:3] for d in engine if d[0] in declared)
    short_local = Counter(d[:3] for d in local if d[0] in declared)
    for d in sorted((short_engine - short_local).elements()):
        problems.append(f"an offline-only policy reported more under the engine: {d}")
    return problems


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack_directory(tmp_path_factory.mktemp("pack"), pack_virtualenv())


@pytest.fixture(scope="module")
def engines(pack: Path) -> Iterator[dict[bool, Engine]]:
    started = {dry_run: Engine(dry_run=dry_run, pack=pack) for dry_run in (True, False)}
    try:
        yield started
    finally:
        for engine in started.values():
            engine.close()


@pytest.mark.parametrize("stack", STACKS)
def test_recorded_phases_get_the_same_diagnostics(stack: str, engines: dict[bool, Engine]) -> None:
    """Every phase, both views. The preview view is each phase's first `pulumi preview` (issue 12):
    it has the update's resources, and under the engine as offline the pack reports no mandatory
    violation on it."""
    checked = cant_run = 0
    for phase in phase_ids():
        for preview in (True, False):
            try:
                plan = recorded_preview(stack, phase) if preview else recorded(stack, phase)
            except ConfigError:
                continue  # a phase whose irreversible step is gated refuses to plan (test_phase_safety.py)
            engine = engines[preview].diagnostics(plan, stack_config(stack))
            local = offline(plan, stack_config(stack))
            problems = compare(engine, local)
            assert not problems, f"{stack} {phase} {'preview' if preview else 'update'}:\n" + "\n".join(problems[:20])
            mandatory = [d for d in engine if d[1] == "mandatory"]
            assert not mandatory, f"{stack} {phase}: {mandatory[:5]}"
            if preview:
                cant_run += sum(1 for d in engine if d[3] == CANT_RUN)
                # The first preview shows exactly the resources the update creates.
                update = recorded(stack, phase)
                assert [(r.urn, r.type) for r in plan.resources] == [(r.urn, r.type) for r in update.resources]
            checked += 1
    assert checked >= 2 * (len(phase_ids()) - 1)
    # Not vacuous: the previews' unknowns reached the pack and came back as the SDK's advisory notes.
    assert cant_run > 0


def test_bad_resources_get_the_same_diagnostics(engines: dict[bool, Engine]) -> None:
    """Every fixture case (passing and failing) of every policy, as the update sends it."""
    declared = set(offline_only())
    missed_by_engine: set[str] = set()
    for param in all_cases():
        policy, _outcome, case = param.values
        plan = plan_for(case)
        engine = engines[False].diagnostics(plan, case.get("config"))
        local = offline(plan, case.get("config"))
        # A fixture's "[secret]" stands for a value it does not spell out (a whole connection
        # object, say); the engine gets a stand-in string, so only where and how hard must agree.
        problems = compare(engine, local, messages=SECRET not in json.dumps(case))
        assert not problems, f"{param.id}:\n" + "\n".join(problems)
        if policy in declared and Counter(d[:3] for d in local if d[0] == policy) != Counter(
            d[:3] for d in engine if d[0] == policy
        ):
            missed_by_engine.add(policy)
    # Each OFFLINE_ONLY entry is real: some fixture fails offline that the engine cannot catch.
    assert missed_by_engine == declared


def test_the_pack_runs_from_the_virtualenv_its_manifest_declares(pack: Path, engines: dict[bool, Engine]) -> None:
    """Not the project's Python: the declared venv, outside the work tree, with the pinned pack SDK."""
    venv = (pack / declared_virtualenv()).resolve()
    assert not venv.is_relative_to(ROOT) and (venv / "pyvenv.cfg").exists()
    for engine in engines.values():
        assert engine.argv[0] == str(pack / declared_virtualenv() / "bin" / "python")
    shown = subprocess.run(
        [
            str(engines[True].python),
            "-c",
            "import sys, pulumi_policy; print(sys.prefix); print(pulumi_policy.__file__)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=activated(os.environ, pack / declared_virtualenv()),
    ).stdout.split()
    assert Path(shown[0]).resolve() == venv and Path(shown[1]).resolve().is_relative_to(venv)
    pins = dict(re.findall(r"^([\w.-]+)==(\S+)", (POLICY_DIR / "requirements.txt").read_text(), re.MULTILINE))
    listed = subprocess.run(
        [str(engines[True].python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    versions = {canonicalize_name(p["name"]): p["version"] for p in json.loads(listed)}
    assert {name: versions.get(canonicalize_name(name)) for name in pins} == pins


def test_offline_only_parts_are_listed_in_the_readme() -> None:
    text = (POLICY_DIR / "README.md").read_text()
    assert "\n## Offline-only rule parts\n" in text, "policy/README.md has no 'Offline-only rule parts' section"
    section = text.split("\n## Offline-only rule parts\n", 1)[1].split("\n## ", 1)[0]
    for name in offline_only():
        assert f"`{name}`" in section, f"{name} is OFFLINE_ONLY but not listed in policy/README.md"
    assert set(offline_only()) <= {p.name for p in load_policies()}


def test_the_offline_gate_runs_in_ci() -> None:
    """OFFLINE_ONLY parts are enforced only where `migrate check` runs: `make check`, required in CI."""
    makefile = (Path(__file__).resolve().parent.parent / "Makefile").read_text()
    check = makefile.split("\ncheck:", 1)[1].split("\n\n", 1)[0]
    for stack in STACKS:
        assert f"-m migrate check --stack {stack} --all-phases" in check
    workflows = Path(__file__).resolve().parent.parent / ".github" / "workflows"
    for name in ("ci.yml", "deploy.yml"):
        steps = [s for job in yaml.safe_load((workflows / name).read_text())["jobs"].values() for s in job["steps"]]
        assert any(s.get("run") == "make check" and not s.get("continue-on-error") for s in steps), name


def test_wire_form_keeps_secret_values_and_unknowns() -> None:
    """The harness hands the parity test what the engine would: real secret values, the sentinel."""
    plan = recorded_preview("prod", "p2a-k3s")
    provider = next(r for r in plan.resources if r.type == "pulumi:providers:kubernetes")
    kubeconfig = provider.wire_inputs["kubeconfig"]
    assert kubeconfig[_SIG] == _SECRET_SIG and kubeconfig["value"] == WIRE_UNKNOWN
    update = recorded("prod", "p2a-k3s").named(provider.name).wire_inputs["kubeconfig"]
    assert update[_SIG] == _SECRET_SIG and "apiVersion: v1" in update["value"]
    # ...and never prints them.
    assert "apiVersion: v1" not in json.dumps(recorded("prod", "p2a-k3s").to_json())
