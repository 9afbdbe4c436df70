"""Every dynamic provider through Pulumi's own provider host, driven over gRPC as the engine drives it.

One `python -m pulumi.dynamic` process serves the whole module (tests/provider_host.py starts it
as the engine does); behind it the fake Lambda and Fly APIs (every request and answer checked
against the published specs) and moto's S3 server. The providers travel in the properties,
serialized by the SDK's `serialize_provider`, configured only with what tests shrink (a fake
clock, millisecond polling) and the fakes' addresses.

What is proven here, for every dynamic resource type:
- Check/Create/Read/Diff/Update/Delete work through the host with what the engine sends;
- during a preview, every input made unknown in turn (whole, and each part of it) and all at
  once: Check reports no failure and hands the unknowns back, Diff neither raises nor fails, an
  unknown counts as a possible change, and it replaces only where a known change would;
- for every phase of both stacks, each recorded dynamic resource passes Check and Diff with the
  unknowns of a first preview, and Diff answers against the previous phase as the inputs require
  (diff_problems: which change, which replacement, deleted before or after).
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pulumi.dynamic import ResourceProvider
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime.proto import provider_pb2
from pulumi.runtime.rpc import UNKNOWN as WIRE_UNKNOWN

from components.clouds.fly_api import FlySettings
from components.clouds.lambda_api import RetryPolicy
from components.clouds.lambda_cloud import (
    LambdaFirewallRulesetProvider,
    LambdaFirewallRulesetRulesProvider,
    LambdaInstanceProvider,
    LambdaSshKeyProvider,
    lambda_name,
)
from components.config.phases import phase_ids
from components.core.engine import unknown_paths, unwrap_secrets
from components.migration.backups import BackupVerificationProvider
from components.migration.fly import FlyAppExportProvider, FlyAppProvider, FlyDestroyProvider, FlyFreezeProvider
from migrate.harness import SECRET, RecordedResource
from tests.conftest import STACKS, recorded, recorded_preview
from tests.fakes.fly_server import FakeFly, fake_fly
from tests.fakes.lambda_server import FakeClock, FakeLambda, fake_lambda
from tests.fakes.s3 import FakeS3, moto_s3
from tests.provider_host import PROVIDER_KEY, Diffed, ProviderError, ProviderHost, provider_host, with_provider
from tests.test_dynamic_providers import LEGACY_STATE_PATHS, pickled_globals

pytestmark = pytest.mark.network

LAMBDA_KEY = "fake-lambda-key-host"
FLY_TOKEN = "fake-fly-token-host"
BUCKET = "host-backups"
PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHpznK6WZj+Zq+AumfFTaItVwHWiG5Wf/Zw3bQ32YOak"
FILES = {"db/app.sqlite": b"SQLite format 3\x00" + bytes(range(256)) * 16}
NONE, SOME = provider_pb2.DiffResponse.DIFF_NONE, provider_pb2.DiffResponse.DIFF_SOME

KEY = "pulumi-python:dynamic/lambda_cloud:LambdaSshKey"
RULESET = "pulumi-python:dynamic/lambda_cloud:LambdaFirewallRuleset"
RULES = "pulumi-python:dynamic/lambda_cloud:LambdaFirewallRulesetRules"
INSTANCE = "pulumi-python:dynamic/lambda_cloud:LambdaInstance"
APP = "pulumi-python:dynamic/fly:FlyApp"
EXPORT = "pulumi-python:dynamic/fly:FlyAppExport"
VERIFY = "pulumi-python:dynamic/backups:BackupVerification"
FREEZE = "pulumi-python:dynamic/fly:FlyFreeze"
DESTROY = "pulumi-python:dynamic/fly:FlyDestroy"

# The provider class behind each type token (what `pulumi.dynamic.Resource` pickles).
PROVIDERS: dict[str, type[ResourceProvider]] = {
    KEY: LambdaSshKeyProvider,
    RULESET: LambdaFirewallRulesetProvider,
    RULES: LambdaFirewallRulesetRulesProvider,
    INSTANCE: LambdaInstanceProvider,
    APP: FlyAppProvider,
    EXPORT: FlyAppExportProvider,
    VERIFY: BackupVerificationProvider,
    FREEZE: FlyFreezeProvider,
    DESTROY: FlyDestroyProvider,
}

# The inputs each type's resource class sends (tests/test_provider_host.py checks them against
# the recorded program), and which of them the program marks secret.
INPUTS: dict[str, frozenset[str]] = {
    KEY: frozenset({"name", "public_key", "api_key"}),
    RULESET: frozenset({"name", "region", "rules", "api_key"}),
    RULES: frozenset({"ruleset_id", "rules", "api_key"}),
    INSTANCE: frozenset(
        {"name", "hostname", "candidates", "ssh_key_names", "firewall_rulesets", "user_data", "api_key", "tags"}
    ),
    APP: frozenset({"app", "org", "allow_absent", "token"}),
    EXPORT: frozenset(
        {"app", "org", "token", "location", "access_key_id", "secret_access_key", "retention_days", "prefix"}
    ),
    VERIFY: frozenset({"label", "location", "objects", "access_key_id", "secret_access_key"}),
    FREEZE: frozenset({"app", "token", "location", "access_key_id", "secret_access_key", "backup"}),
    DESTROY: frozenset({"app", "allow_destroy", "token", "location", "access_key_id", "secret_access_key", "backup"}),
}
_S3_KEYS = frozenset({"access_key_id", "secret_access_key"})
SECRETS: dict[str, frozenset[str]] = {
    KEY: frozenset({"api_key"}),
    RULESET: frozenset({"api_key"}),
    RULES: frozenset({"api_key"}),
    INSTANCE: frozenset({"api_key", "user_data"}),
    APP: frozenset({"token"}),
    EXPORT: _S3_KEYS | {"token"},
    VERIFY: _S3_KEYS,
    FREEZE: _S3_KEYS | {"token"},
    DESTROY: _S3_KEYS | {"token"},
}

# Diff semantics under unknowns: what an input, wholly unknown, replaces (a known change to it
# replaces the same), and the inputs whose change the provider ignores on purpose (so an unknown
# one is no change either). Every other unknown input is a possible change.
REPLACES: dict[str, dict[str, list[str]]] = {
    KEY: {"name": ["name"], "public_key": ["public_key"]},
    RULESET: {"region": ["region"]},
    RULES: {"ruleset_id": ["ruleset_id"]},
    INSTANCE: {k: [k] for k in ("hostname", "candidates", "ssh_key_names", "firewall_rulesets", "user_data", "tags")},
    APP: {"app": ["app"]},
    EXPORT: {"app": ["app"], "location": ["app"]},
    VERIFY: {"objects": ["objects"], "location": ["objects"]},
    FREEZE: {"app": ["app"]},
    DESTROY: {"app": ["app"]},
}
# Whether a replacement deletes the old resource first, as each provider's diff answers it (the
# Lambda providers say why beside their diff: the replacement carries the same name, and a new
# instance would adopt the old one). The host must carry the answer through unchanged.
DELETE_BEFORE_REPLACE: dict[str, bool] = {
    KEY: True,
    RULESET: True,
    RULES: True,
    INSTANCE: True,
    APP: False,
    EXPORT: False,
    VERIFY: False,
    FREEZE: True,
    DESTROY: False,
}
IGNORED: dict[str, frozenset[str]] = {
    KEY: frozenset(),
    RULESET: frozenset(),
    RULES: frozenset(),
    INSTANCE: frozenset(),
    APP: frozenset({"token"}),  # a read-only record: only which app (and org, absence) matters
    EXPORT: frozenset({"org", "token", "access_key_id", "secret_access_key", "retention_days", "prefix"}),
    VERIFY: frozenset({"label", "access_key_id", "secret_access_key"}),
    FREEZE: INPUTS[FREEZE] - {"app"},  # a new backup or key is no reason to re-stop anything
    DESTROY: INPUTS[DESTROY] - {"app"},  # done once; nothing but another app is a new destroy
}


# --- the estate behind the host ------------------------------------------------------------------


@dataclass
class Fakes:
    lam: FakeLambda
    fly: FakeFly
    s3: FakeS3
    clock: FakeClock

    def lambda_provider(self, cls: type[ResourceProvider]) -> ResourceProvider:
        # A fake clock makes the API's pacing (1 s between calls, 12 s between launches) free.
        return cls(  # type: ignore[call-arg]
            clock=self.clock,
            policy=RetryPolicy(deadline_s=60.0, read_timeout_s=10.0),
            poll_interval_s=5.0,
            boot_timeout_s=60.0,
            launch_deadline_s=300.0,
            delete_timeout_s=60.0,
        )

    def fly_provider(self, cls: type[ResourceProvider]) -> ResourceProvider:
        settings = FlySettings(
            api_url=self.fly.api_url,
            graphql_url=self.fly.graphql_url,
            min_interval=0,
            max_attempts=4,
            backoff_base=0.001,
            backoff_max=0.01,
            poll_interval=0.005,
            state_timeout=2.0,
            exec_timeout=30,
        )
        return cls(settings)  # type: ignore[call-arg]

    def provider(self, type_: str) -> ResourceProvider:
        cls = PROVIDERS[type_]
        if type_ == VERIFY:
            return cls()
        return self.lambda_provider(cls) if "lambda_cloud" in type_ else self.fly_provider(cls)


@dataclass
class Made:
    """One resource as the engine holds it after Create: inputs (with `__provider`), id, outputs."""

    type_: str
    name: str
    inputs: dict[str, Any]
    id_: str
    outputs: dict[str, Any]


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    with fake_lambda(api_key=LAMBDA_KEY) as lam, fake_fly(token=FLY_TOKEN) as fly, moto_s3() as s3:
        s3.make_bucket(BUCKET)
        yield Fakes(lam, fly, s3, FakeClock())
        assert lam.violations == [], "\n".join(lam.violations)
        assert fly.violations == [], "\n".join(fly.violations)


@pytest.fixture(scope="module")
def host(fakes: Fakes) -> Iterator[ProviderHost]:
    # The Lambda client reads its base URL from the environment, as it would on a user's machine.
    with provider_host({"LAMBDA_API_URL": fakes.lam.base_url}) as h:
        yield h


class Engine:
    """The engine's side of a resource's life: Check, then Create with the checked inputs."""

    def __init__(self, host: ProviderHost, fakes: Fakes) -> None:
        self.host, self.fakes = host, fakes

    def create(self, type_: str, name: str, props: dict[str, Any]) -> Made:
        inputs = with_provider(self.fakes.provider(type_), props)
        checked = self.host.check(type_, name, inputs, secrets=SECRETS[type_])
        assert checked.failures == [], f"{type_} {name}: {checked.failures}"
        id_, outputs = self.host.create(type_, name, checked.inputs, secrets=SECRETS[type_])
        assert id_, f"{type_} {name}: Create returned no id"
        return Made(type_, name, checked.inputs, id_, outputs)


def build_estate(host: ProviderHost, fakes: Fakes, tag: str) -> dict[str, Made]:
    """One resource of every dynamic type, created through the host as `pulumi up` would."""
    engine = Engine(host, fakes)
    s3 = fakes.s3.props(BUCKET)
    made: dict[str, Made] = {}
    made[KEY] = engine.create(
        KEY, f"{tag}-key", {"name": f"host-test-{tag}-admin", "public_key": PUBKEY, "api_key": LAMBDA_KEY}
    )
    rule = {"protocol": "tcp", "port_range": [22, 22], "source_network": "203.0.113.0/24", "description": "ssh"}
    made[RULESET] = engine.create(
        RULESET,
        f"{tag}-edge",
        {"name": f"host-test-{tag}-edge", "region": "us-east-1", "rules": [rule], "api_key": LAMBDA_KEY},
    )
    # A ruleset whose rules another resource owns (`rules` None is not sent at all).
    peers = engine.create(
        RULESET, f"{tag}-peers", {"name": f"host-test-{tag}-peers", "region": "us-east-1", "api_key": LAMBDA_KEY}
    )
    peer_rule = {
        "protocol": "udp",
        "port_range": [8472, 8472],
        "source_network": "198.51.100.7/32",
        "description": "vx",
    }
    made[RULES] = engine.create(
        RULES, f"{tag}-peer-rules", {"ruleset_id": peers.id_, "rules": [peer_rule], "api_key": LAMBDA_KEY}
    )
    made[INSTANCE] = engine.create(
        INSTANCE,
        f"{tag}-gpu-1",
        {
            "name": lambda_name("host-test", tag, "gpu-1"),
            "hostname": f"{tag}-gpu-1",
            "candidates": [
                {"region": "us-east-1", "instance_type": "gpu_1x_a10"},
                {"region": "us-west-1", "instance_type": "gpu_1x_a10"},
            ],
            "ssh_key_names": [made[KEY].outputs["name"]],
            "firewall_rulesets": {"us-east-1": [made[RULESET].id_, peers.id_], "us-west-1": [made[RULESET].id_]},
            "user_data": "#cloud-config\nssh_deletekeys: true\n",
            "api_key": LAMBDA_KEY,
            "tags": {"gpu-platform-stack": "host-test", "gpu-platform-resource": f"{tag}-gpu-1"},
        },
    )

    frozen, destroyed = f"{tag}-frozen", f"{tag}-gone"
    for app in (frozen, destroyed):
        fakes.fly.add_app(app, machines=("started", "stopped"), volume_files=FILES)
    made[APP] = engine.create(
        APP, f"fly-{frozen}", {"app": frozen, "org": "example", "allow_absent": False, "token": FLY_TOKEN}
    )
    backups = {}
    for app in (frozen, destroyed):
        export = engine.create(
            EXPORT,
            f"fly-{app}-export",
            {"app": app, "org": "example", "token": FLY_TOKEN, **s3, "retention_days": 60, "prefix": "fly"},
        )
        verify = engine.create(
            VERIFY, f"fly-{app}-verify", {"label": f"fly-{app}", **s3, "objects": export.outputs["objects"]}
        )
        backups[app] = {"verified": verify.outputs["verified"], "objects": verify.outputs["objects"]}
        if app == frozen:
            made[EXPORT], made[VERIFY] = export, verify
    made[FREEZE] = engine.create(
        FREEZE, f"fly-{frozen}-freeze", {"app": frozen, "token": FLY_TOKEN, **s3, "backup": backups[frozen]}
    )
    made[DESTROY] = engine.create(
        DESTROY,
        f"fly-{destroyed}-destroy",
        {"app": destroyed, "allow_destroy": True, "token": FLY_TOKEN, **s3, "backup": backups[destroyed]},
    )
    return made


@pytest.fixture(scope="module")
def estate(host: ProviderHost, fakes: Fakes) -> dict[str, Made]:
    return build_estate(host, fakes, "a")


# --- what the engine sends, and what the host says about itself ---------------------------------------


def test_the_cases_cover_every_dynamic_type_and_input_the_program_registers() -> None:
    """The tables above are bound to the real program: a new type or input fails here first."""
    last = phase_ids()[-1]
    seen: dict[str, set[str]] = {}
    secret: dict[str, set[str]] = {}
    for stack in STACKS:
        for r in recorded(stack, last).resources:
            if r.type.startswith("pulumi-python:dynamic/"):
                seen.setdefault(r.type, set()).update(set(r.inputs) - {PROVIDER_KEY})
                secret.setdefault(r.type, set()).update(p.split(".")[0].split("[")[0] for p in r.secret_inputs)
    assert set(seen) == set(PROVIDERS)
    for type_, keys in seen.items():
        # `image_family` is None unless configured, and None is never sent.
        assert keys - {"image_family"} == INPUTS[type_], type_
        assert secret[type_] <= SECRETS[type_], type_


def test_the_host_takes_no_secrets_so_the_engine_sends_them_plain(host: ProviderHost) -> None:
    """Why the providers read plain values: the engine marshals with KeepSecrets = acceptSecrets.

    Were a future SDK to accept secrets, every secret input (api_key, token, user_data, bucket
    keys) would arrive wrapped, and the providers would have to unwrap them
    (components.engine.unwrap_secrets) before use.
    """
    assert host.accept_secrets is False
    # No provider previews either: during a preview the engine calls only Check and Diff.
    assert host.supports_preview is False


# --- the life of each type ----------------------------------------------------------------------------


def test_every_type_is_created_read_diffed_updated_and_deleted_through_the_host(
    host: ProviderHost, fakes: Fakes
) -> None:
    made = build_estate(host, fakes, "b")
    for m in made.values():
        read_id, read_outs = host.read(
            m.type_, m.name, m.id_, outputs=m.outputs, inputs=m.inputs, secrets=SECRETS[m.type_]
        )
        assert read_id == m.id_, m.type_
        unchanged = host.diff(
            m.type_, m.name, m.id_, old_outputs=read_outs, news=m.inputs, old_inputs=m.inputs, secrets=SECRETS[m.type_]
        )
        assert unchanged.changes == NONE, f"{m.type_}: a refresh with nothing changed shows a diff"

    inst = made[INSTANCE]
    renamed = {**inst.inputs, "name": lambda_name("host-test", "b", "renamed")}
    diff = host.diff(INSTANCE, inst.name, inst.id_, old_outputs=inst.outputs, news=renamed, old_inputs=inst.inputs)
    assert (diff.changes, diff.replaces) == (SOME, [])
    outs = host.update(INSTANCE, inst.name, inst.id_, old_outputs=inst.outputs, news=renamed, old_inputs=inst.inputs)
    assert fakes.lam.instances[inst.id_]["name"] == renamed["name"] == outs["name"]

    rs = made[RULESET]
    open_rule = {"protocol": "tcp", "port_range": [443, 443], "source_network": "0.0.0.0/0", "description": "https"}
    wider = {**rs.inputs, "rules": [*rs.inputs["rules"], open_rule]}
    assert host.diff(RULESET, rs.name, rs.id_, old_outputs=rs.outputs, news=wider, old_inputs=rs.inputs).changes == SOME
    host.update(RULESET, rs.name, rs.id_, old_outputs=rs.outputs, news=wider, old_inputs=rs.inputs)
    assert len(fakes.lam.rulesets[rs.id_]["rules"]) == 2

    app = made[FREEZE].inputs["app"]
    assert {fakes.fly.state_of(app, m) for m in fakes.fly.machines[app]} <= {"stopped", "suspended"}
    assert "b-gone" not in fakes.fly.apps  # FlyDestroy destroyed it, after its backup verified

    # Rolling back: what the engine deletes, dependents first. FlyDestroy refuses (irreversible).
    with pytest.raises(ProviderError, match="cannot bring it back"):
        destroy = made[DESTROY]
        host.delete(DESTROY, destroy.name, destroy.id_, outputs=destroy.outputs, old_inputs=destroy.inputs)
    for type_ in (FREEZE, VERIFY, EXPORT, APP, INSTANCE, RULES, RULESET, KEY):
        m = made[type_]
        host.delete(m.type_, m.name, m.id_, outputs=m.outputs, old_inputs=m.inputs, secrets=SECRETS[m.type_])
    was_running = made[FREEZE].outputs["was_running"]
    assert was_running and {fakes.fly.state_of(app, m) for m in was_running} == {"started"}
    assert fakes.lam.instances[inst.id_]["status"] == "terminated"
    assert made[KEY].id_ not in fakes.lam.ssh_keys and rs.id_ not in fakes.lam.rulesets


# --- previews: unknowns as the engine sends them --------------------------------------------------------


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path into `value`: the value itself, then each key or element, recursively."""
    if path:
        yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*path, i))


def _unknown_at(props: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    out = copy.deepcopy(props)
    node: Any = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = WIRE_UNKNOWN
    return out


def _preview_variants(inputs: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(top-level key, label, news) for each input or part of one made unknown, then all at once."""
    props = {k: v for k, v in inputs.items() if k != PROVIDER_KEY}
    for path in _paths(props):
        yield str(path[0]), ".".join(map(str, path)), {**_unknown_at(props, path), PROVIDER_KEY: inputs[PROVIDER_KEY]}
    yield "*", "everything", {**dict.fromkeys(props, WIRE_UNKNOWN), PROVIDER_KEY: inputs[PROVIDER_KEY]}


def preview_problems(host: ProviderHost, m: Made) -> list[str]:
    problems: list[str] = []
    type_ = m.type_
    for key, label, news in _preview_variants(m.inputs):
        where = f"{type_.rsplit(':', 1)[1]} with {label} unknown"
        try:
            for olds in ({}, m.inputs):  # a create's preview, then an update's
                checked = host.check(type_, m.name, news, olds, secrets=SECRETS[type_])
                if checked.failures:
                    problems.append(f"{where}: Check failed {checked.failures}")
                if sorted(unknown_paths(checked.inputs)) != sorted(unknown_paths(news)):
                    problems.append(f"{where}: Check did not hand the unknowns back as unknowns")
            diff = host.diff(
                type_, m.name, m.id_, old_outputs=m.outputs, news=news, old_inputs=m.inputs, secrets=SECRETS[type_]
            )
        except ProviderError as exc:
            problems.append(f"{where}: {str(exc).strip().splitlines()[-1]}")
            continue
        allowed = (
            sorted({r for rs in REPLACES[type_].values() for r in rs}) if key == "*" else REPLACES[type_].get(key, [])
        )
        if key not in IGNORED[type_] and diff.changes != SOME:
            problems.append(f"{where}: Diff says no change; an unknown input is a possible change")
        if not set(diff.replaces) <= set(allowed):
            problems.append(f"{where}: Diff replaces {diff.replaces}; a known change replaces only {allowed}")
        if label == key and key != "*" and diff.replaces != allowed:
            problems.append(f"{where}: Diff replaces {diff.replaces}, a known change would replace {allowed}")
        if diff.replaces and diff.delete_before_replace != DELETE_BEFORE_REPLACE[type_]:
            problems.append(f"{where}: Diff says deleteBeforeReplace={diff.delete_before_replace} for {diff.replaces}")
    return problems


@pytest.mark.parametrize("type_", sorted(PROVIDERS), ids=lambda t: t.rsplit(":", 1)[1])
def test_every_input_unknown_passes_check_and_diff(host: ProviderHost, estate: dict[str, Made], type_: str) -> None:
    problems = preview_problems(host, estate[type_])
    assert problems == [], "\n".join(problems)


# --- every phase's first preview, from the recorded program ---------------------------------------------


def _first_preview_inputs(inputs: dict[str, Any], unknown: set[str], leaves: bool) -> dict[str, Any]:
    """Inputs fed by a resource not created yet are unknown: wholly, or in every leaf (list/map kept)."""

    def blank(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: blank(v) for k, v in value.items()}
        if isinstance(value, list):
            return [blank(v) for v in value]
        return WIRE_UNKNOWN

    return {k: (blank(v) if leaves else WIRE_UNKNOWN) if k in unknown else v for k, v in inputs.items()}


PHASE_CASES = [(s, p) for s in STACKS for p in phase_ids()]

# Phases are cumulative, so most resources recur unchanged from phase to phase: each distinct
# call is made once per process and its verdict reused (still reported under every phase).
_VERDICTS: dict[str, list[str]] = {}


def _verdict(host: ProviderHost, call: str, r: RecordedResource, news: dict[str, Any], old: Any) -> list[str]:
    key = json.dumps([call, r.type, r.name, news, old and old.outputs, old and old.inputs], sort_keys=True)
    if key not in _VERDICTS:
        wire = {**news, PROVIDER_KEY: with_provider_blob(r.type)}
        problems: list[str] = []
        try:
            if call == "Check":
                failures = host.check(r.type, r.name, wire).failures
                problems += [f"Check failed {failures}"] if failures else []
            else:
                olds = {**old.outputs, PROVIDER_KEY: wire[PROVIDER_KEY]}
                diff = host.diff(r.type, r.name, r.urn, old_outputs=olds, news=wire, old_inputs=old.inputs)
                problems += diff_problems(r.type, news, old.inputs, diff)
        except ProviderError as exc:
            problems.append(f"{call}: {str(exc).strip().splitlines()[-1]}")
        _VERDICTS[key] = [f"{r.name} ({r.type}) {p}" for p in problems]
    return _VERDICTS[key]


def diff_problems(type_: str, news: dict[str, Any], old_inputs: dict[str, Any], diff: Diffed) -> list[str]:
    """What is wrong with a Diff answer, given the inputs before and now (REPLACES and IGNORED say
    what each input's change means): a possible change of an input the provider does not ignore is
    DIFF_SOME, replacing only what that input replaces; nothing that matters moved is DIFF_NONE with
    no replacement; a replacement is ordered as the type's provider orders it."""
    keys = (set(news) | set(old_inputs)) - {PROVIDER_KEY}
    unknown = {p.split(".")[0].split("[")[0] for p in unknown_paths(news)}
    moved = {k for k in keys - unknown if news.get(k) != old_inputs.get(k)}
    matters = (unknown | moved) - IGNORED[type_]
    # A secret the recording hides is the same placeholder in both phases, while a provider may
    # compare the real value (user_data against its sha256): this test cannot tell either way.
    hidden = {k for k in keys if news.get(k) == SECRET} - IGNORED[type_] - matters
    allowed = {x for k in matters | hidden for x in REPLACES[type_].get(k, [])}
    problems = []
    if matters and diff.changes != SOME:
        problems.append(f"Diff says {diff.changes} (not DIFF_SOME) though {sorted(matters)} may have changed")
    if not matters and not hidden and (diff.changes, diff.replaces) != (NONE, []):
        problems.append(f"Diff says {diff.changes} replacing {diff.replaces}; no input that matters changed")
    if not set(diff.replaces) <= allowed:
        problems.append(f"Diff replaces {diff.replaces}; what may have changed replaces only {sorted(allowed)}")
    if diff.replaces and diff.delete_before_replace != DELETE_BEFORE_REPLACE[type_]:
        problems.append(f"Diff says deleteBeforeReplace={diff.delete_before_replace}; {type_} replaces the other way")
    return problems


def test_diff_problems_catches_every_wrong_answer() -> None:
    old = {"app": "web", "org": "example", "allow_absent": False, "token": SECRET}
    moved, unknown = {**old, "app": "api"}, {**old, "org": WIRE_UNKNOWN}
    right = [
        (old, Diffed(NONE, [], False)),
        ({**old, "token": "rotated"}, Diffed(NONE, [], False)),  # APP ignores the token
        (moved, Diffed(SOME, ["app"], False)),
        (unknown, Diffed(SOME, [], False)),
    ]
    for news, diff in right:
        assert diff_problems(APP, news, old, diff) == [], (news, diff)
    wrong = [
        (old, Diffed(SOME, [], False), "no input that matters changed"),
        (old, Diffed(NONE, ["app"], False), "no input that matters changed"),
        (moved, Diffed(NONE, [], False), "not DIFF_SOME"),
        (moved, Diffed(SOME, ["app"], True), "deleteBeforeReplace=True"),
        (unknown, Diffed(SOME, ["app"], False), "replaces only []"),
        (unknown, Diffed(NONE, [], False), "not DIFF_SOME"),
    ]
    for news, diff, message in wrong:
        assert any(message in p for p in diff_problems(APP, news, old, diff)), (news, diff)


_BLOBS: dict[str, str] = {}


def with_provider_blob(type_: str) -> str:
    """The `__provider` of a type as the program makes it (default settings: these calls never reach an API)."""
    if type_ not in _BLOBS:
        _BLOBS[type_] = with_provider(PROVIDERS[type_](), {})[PROVIDER_KEY]
    return _BLOBS[type_]


@pytest.mark.parametrize(("stack", "phase"), PHASE_CASES, ids=[f"{s}-{p}" for s, p in PHASE_CASES])
def test_first_preview_of_every_phase_passes_check_and_diff(host: ProviderHost, stack: str, phase: str) -> None:
    """The recorded program's dynamic resources, with a first preview's unknowns, through the host.

    In a preview the engine creates nothing, so every output of a resource being created is
    unknown: an input that depends on another custom resource is unknown (we try it wholly
    unknown and unknown in every leaf). Moving from the previous phase, a resource that already
    exists is diffed against its previous outputs, with unknowns where it depends on a resource
    this phase adds. Secret inputs carry the harness's placeholder: these calls only check and diff.
    """
    plan = recorded(stack, phase)
    index = phase_ids().index(phase)
    before = recorded(stack, phase_ids()[index - 1]).by_urn() if index else {}
    custom = {r.urn for r in plan.resources if r.custom}
    dynamic = [r for r in plan.resources if r.type in PROVIDERS]
    problems: list[str] = []
    for r in dynamic:
        fed = {k for k, deps in r.property_dependencies.items() if set(deps) & custom}
        new = {k for k, deps in r.property_dependencies.items() if set(deps) & (custom - set(before))}
        for leaves in (False, True):
            problems += _verdict(host, "Check", r, _first_preview_inputs(r.inputs, fed, leaves), None)
            if r.urn in before:
                problems += _verdict(host, "Diff", r, _first_preview_inputs(r.inputs, new, leaves), before[r.urn])
    assert problems == [], "\n".join(problems)
    assert dynamic, f"{stack} {phase} records no dynamic resource; the Fly apps are adopted in every phase"


@pytest.mark.parametrize(("stack", "phase"), PHASE_CASES, ids=[f"{s}-{p}" for s, p in PHASE_CASES])
def test_the_recorded_first_preview_passes_check_as_the_engine_sends_it(
    host: ProviderHost, stack: str, phase: str
) -> None:
    """Each dynamic resource of the recorded first preview (migrate/harness.py, preview=True), with
    exactly the inputs the program left unknown there, in the wire form the engine sends: unknowns
    as the sentinel and, since the host declines secrets at Configure, secrets unwrapped."""
    plan = recorded_preview(stack, phase)
    dynamic = [r for r in plan.resources if r.type in PROVIDERS]
    assert dynamic, f"{stack} {phase} records no dynamic resource in its preview"
    problems: list[str] = []
    for r in dynamic:
        problems += _verdict(host, "Check", r, unwrap_secrets(r.wire_inputs), None)
    assert problems == [], "\n".join(problems)
    # The preview really hands these providers unknowns from p1 on (the backups, the hosts' keys).
    if phase_ids().index(phase) >= phase_ids().index("p1-fly-freeze"):
        assert any(unknown_paths(r.wire_inputs) for r in dynamic), f"{stack} {phase}: no unknown input at all"


# --- one credential rule: the environment wins over what state holds ------------------------------------


def test_a_rotated_key_in_the_environment_refreshes_and_destroys_what_state_holds_a_stale_key_for(
    host: ProviderHost, fakes: Fakes
) -> None:
    """After a key rotation the state still holds the old key; the `pulumi` process has the new one.

    The fakes accept only the current key, so each call below succeeds only if the provider took
    the environment's key over the stored one. The same calls on the host without the variables
    fail, which shows the stored key really is stale.
    """
    made = build_estate(host, fakes, "c")
    stale = {"api_key": "rotated-away-lambda-key", "token": "rotated-away-fly-token"}

    def stored(m: Made) -> dict[str, Any]:
        return {k: stale.get(k, v) for k, v in m.outputs.items()}

    key, app, freeze = made[KEY], made[APP], made[FREEZE]
    with pytest.raises(ProviderError, match="API key was rejected"):
        host.read(KEY, key.name, key.id_, outputs=stored(key), inputs=stored(key))
    with pytest.raises(ProviderError, match="401"):
        host.read(APP, app.name, app.id_, outputs=stored(app), inputs=stored(app))

    rotated_env = {"LAMBDA_API_URL": fakes.lam.base_url, "LAMBDA_API_KEY": LAMBDA_KEY, "FLY_API_TOKEN": FLY_TOKEN}
    with provider_host(rotated_env) as rotated:
        # pulumi refresh
        assert rotated.read(KEY, key.name, key.id_, outputs=stored(key), inputs=stored(key))[0] == key.id_
        assert rotated.read(APP, app.name, app.id_, outputs=stored(app), inputs=stored(app))[1]["exists"] is True
        # pulumi destroy (a rollback): the frozen machines start again, the key goes
        rotated.delete(FREEZE, freeze.name, freeze.id_, outputs=stored(freeze), old_inputs=stored(freeze))
        rotated.delete(KEY, key.name, key.id_, outputs=stored(key), old_inputs=stored(key))
    was_running = freeze.outputs["was_running"]
    assert {fakes.fly.state_of(freeze.inputs["app"], m) for m in was_running} == {"started"}
    assert key.id_ not in fakes.lam.ssh_keys


def test_a_rotated_backup_key_pair_in_the_environment_refreshes_and_destroys_the_backup_resources(
    host: ProviderHost, fakes: Fakes
) -> None:
    """Issue 27: the backup bucket's keys follow the same rule. moto checks every signature against
    its own IAM here, so the pair stored in state stops working once the rotation deletes it."""
    s3 = fakes.s3
    old, new = s3.iam_key_pair("backups"), s3.iam_key_pair("backups")
    app = "rotated-backups"
    fakes.fly.add_app(app, machines=("started",), volume_files=FILES)
    engine = Engine(host, fakes)
    with s3.signed_requests_only():
        stored_keys = {"access_key_id": old[0], "secret_access_key": old[1]}
        props = {**s3.props(BUCKET), **stored_keys}
        export = engine.create(
            EXPORT, "rot-export", {"app": app, "org": "example", "token": FLY_TOKEN, **props, "prefix": "fly"}
        )
        verify = engine.create(VERIFY, "rot-verify", {"label": app, **props, "objects": export.outputs["objects"]})
        assert verify.outputs["verified"] is True and verify.outputs["access_key_id"] == old[0]
        s3.iam(new).delete_access_key(UserName="backups", AccessKeyId=old[0])  # the rotation

        # Without the new pair in the environment the stored one is refused: the refresh marks the
        # backup unverified (which would stop the next `up`), so the stored pair really is stale.
        _, seen = host.read(VERIFY, verify.name, verify.id_, outputs=verify.outputs, inputs=verify.inputs)
        assert seen["verified"] is False and "InvalidAccessKeyId" in " ".join(seen["problems"])

        half = {"BACKUP_ACCESS_KEY_ID": new[0]}
        with provider_host(half) as broken, pytest.raises(ProviderError, match="BACKUP_SECRET_ACCESS_KEY is not"):
            broken.read(VERIFY, verify.name, verify.id_, outputs=verify.outputs, inputs=verify.inputs)

        rotated_env = {"BACKUP_ACCESS_KEY_ID": new[0], "BACKUP_SECRET_ACCESS_KEY": new[1]}
        with provider_host(rotated_env) as rotated:
            # pulumi refresh: every recorded object read back with the new pair
            _, seen = rotated.read(VERIFY, verify.name, verify.id_, outputs=verify.outputs, inputs=verify.inputs)
            assert seen["verified"] is True and seen["problems"] == []
            # pulumi up before the config holds the new pair: the freeze checks the backup with it
            backup = {"verified": seen["verified"], "objects": seen["objects"]}
            freeze = Engine(rotated, fakes).create(
                FREEZE, "rot-freeze", {"app": app, "token": FLY_TOKEN, **props, "backup": backup}
            )
            # pulumi destroy
            for made in (freeze, verify, export):
                rotated.delete(made.type_, made.name, made.id_, outputs=made.outputs, old_inputs=made.inputs)
    assert {fakes.fly.state_of(app, m) for m in freeze.outputs["was_running"]} == {"started"}


# --- state written before the layout move (issue 18) -----------------------------------------------


def _pickled_at_old_path(provider: ResourceProvider) -> str:
    """`__provider` as the program wrote it before the providers moved (tests/test_dynamic_providers.py
    pins the old paths): the same class, named by its old module."""
    cls = type(provider)
    (old_module,) = {module for module, name in LEGACY_STATE_PATHS if name == cls.__name__}
    new_module = cls.__module__
    cls.__module__ = old_module
    try:
        blob = serialize_provider(provider)
    finally:
        cls.__module__ = new_module
    # By reference, as the old program wrote it; without the shim dill would pickle the class by
    # value instead, and this test would prove nothing about loading old state.
    assert (old_module, cls.__name__) in pickled_globals(base64.b64decode(blob)), f"{old_module} is not importable"
    return blob


def test_state_from_before_the_move_refreshes_diffs_clean_and_destroys(host: ProviderHost, fakes: Fakes) -> None:
    """A stack whose state names the old module paths: refresh and destroy load the old pickle
    through the shims, and the first `up` after the move (new pickle in the inputs) is a no-op."""
    made = build_estate(host, fakes, "d")
    for m in made.values():
        old = _pickled_at_old_path(fakes.provider(m.type_))
        assert old != m.inputs[PROVIDER_KEY]  # the two really name different modules
        state_in = {**m.inputs, PROVIDER_KEY: old}
        state_out = {**m.outputs, PROVIDER_KEY: old} if PROVIDER_KEY in m.outputs else m.outputs
        read_id, read_outs = host.read(
            m.type_, m.name, m.id_, outputs=state_out, inputs=state_in, secrets=SECRETS[m.type_]
        )
        assert read_id == m.id_, m.type_
        diff = host.diff(
            m.type_, m.name, m.id_, old_outputs=read_outs, news=m.inputs, old_inputs=state_in, secrets=SECRETS[m.type_]
        )
        assert diff.changes == NONE, f"{m.type_}: only __provider changed, yet the diff shows a change"
    for type_ in (FREEZE, VERIFY, EXPORT, APP, INSTANCE, RULES, RULESET, KEY):
        m = made[type_]
        old = _pickled_at_old_path(fakes.provider(m.type_))
        state_out = {**m.outputs, PROVIDER_KEY: old} if PROVIDER_KEY in m.outputs else m.outputs
        host.delete(
            m.type_,
            m.name,
            m.id_,
            outputs=state_out,
            old_inputs={**m.inputs, PROVIDER_KEY: old},
            secrets=SECRETS[type_],
        )
    assert made[KEY].id_ not in fakes.lam.ssh_keys
    assert fakes.lam.instances[made[INSTANCE].id_]["status"] == "terminated"
