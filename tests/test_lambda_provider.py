"""The Lambda dynamic providers (create / read / diff / update / delete) against the fake API.

Every fault the fake can raise is survived or ends in a clear error, and no path launches two
instances for one resource: each test asserts on the fake's launch count. The fixture asserts that
every request and response of the test validated against the published spec.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.output import Unknown

from components.clouds.lambda_api import LambdaAuthError, LambdaDeadlineError, LambdaError, RetryPolicy
from components.clouds.lambda_cloud import (
    TAG_SPEC,
    LambdaFirewallRulesetProvider,
    LambdaFirewallRulesetRulesProvider,
    LambdaInstanceProvider,
    LambdaSshKeyProvider,
    instance_spec,
    lambda_name,
)
from tests.fakes.lambda_server import FakeClock, FakeLambda, fake_lambda

pytestmark = pytest.mark.network

ROOT = Path(__file__).resolve().parent.parent
KEY = "fake-lambda-key"
PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHpznK6WZj+Zq+AumfFTaItVwHWiG5Wf/Zw3bQ32YOak"
OTHER_PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICu2qLuLf7n42EfpndByQN9R8lP/YKYF6o6ELWU4m92n"
USER_DATA = "#cloud-config\nssh_deletekeys: true\n"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLambda]:
    with fake_lambda(api_key=KEY) as f:
        monkeypatch.setenv("LAMBDA_API_URL", f.base_url)
        monkeypatch.delenv("LAMBDA_API_KEY", raising=False)
        yield f
        assert f.violations == [], "\n".join(f.violations)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def providers(clock: FakeClock, **kw: Any) -> dict[str, Any]:
    settings = {
        "clock": clock,
        "policy": RetryPolicy(deadline_s=120.0, read_timeout_s=0.3),
        "poll_interval_s": 5.0,
        "boot_timeout_s": 60.0,
        "launch_deadline_s": 300.0,
        "delete_timeout_s": 60.0,
        **kw,
    }
    return {
        "instance": LambdaInstanceProvider(**settings),
        "key": LambdaSshKeyProvider(**settings),
        "ruleset": LambdaFirewallRulesetProvider(**settings),
        "rules": LambdaFirewallRulesetRulesProvider(**settings),
    }


SSH_RULE = {"protocol": "tcp", "port_range": [22, 22], "source_network": "203.0.113.0/24", "description": "ssh"}


def account(
    fake: FakeLambda, clock: FakeClock, regions: tuple[str, ...] = ("us-east-1", "us-west-1")
) -> dict[str, Any]:
    """An SSH key and one ruleset per region, made through the providers; launch props using them."""
    p = providers(clock)
    key = p["key"].create({"name": "gpu-platform-test-admin", "public_key": PUBKEY, "api_key": KEY})
    rulesets = {}
    for region in regions:
        rs = p["ruleset"].create(
            {"name": f"gpu-platform-test-{region}-edge", "region": region, "rules": [SSH_RULE], "api_key": KEY}
        )
        rulesets[region] = [rs.id]
    return {
        "name": lambda_name("gpu-platform", "test", "gpu-1"),
        "hostname": "gpu-1",
        "candidates": [{"region": r, "instance_type": "gpu_1x_a10"} for r in regions],
        "ssh_key_names": [key.outs["name"]],
        "firewall_rulesets": rulesets,
        "user_data": USER_DATA,
        "api_key": KEY,
        "tags": {"gpu-platform-stack": "gpu-platform-test", "gpu-platform-resource": "gpu-1"},
        "image_family": None,
    }


# --- create ------------------------------------------------------------------------------------


def test_create_launches_once_and_waits_until_active(fake: FakeLambda, clock: FakeClock) -> None:
    props = account(fake, clock)
    fake.boot_polls = 3
    result = providers(clock)["instance"].create(props)
    assert fake.launches == 1
    inst = fake.instances[result.id]
    assert inst["status"] == "active"
    assert result.outs["ip"] == inst["ip"] and result.outs["status"] == "active"
    assert result.outs["region"] == "us-east-1"
    # The launch carried the pinned-key user data, the ruleset of its region and the spec tag.
    assert inst["_user_data"] == USER_DATA
    assert inst["firewall_rulesets"] == [{"id": props["firewall_rulesets"]["us-east-1"][0]}]
    assert {"key": TAG_SPEC, "value": instance_spec(props)} in inst["tags"]
    # The secret user data is not an output; its digest is, so a change still shows up.
    assert "user_data" not in result.outs and len(result.outs["user_data_sha256"]) == 64


def test_insufficient_capacity_fails_over_to_the_next_candidate(fake: FakeLambda, clock: FakeClock) -> None:
    props = account(fake, clock)
    fake.faults.no_capacity.add("us-east-1")
    result = providers(clock)["instance"].create(props)
    assert result.outs["region"] == "us-west-1"
    assert result.outs["capacity_skipped"] == ["us-east-1/gpu_1x_a10"]
    assert fake.launches == 1
    assert [r.body["region_name"] for r in fake.calls("POST", "/instance-operations/launch")] == [
        "us-east-1",
        "us-west-1",
    ]
    # Launches are paced 12 s apart even across candidates.
    assert 12.0 in clock.sleeps or any(s >= 11.0 for s in clock.sleeps)


def test_no_capacity_anywhere_names_every_candidate_tried(fake: FakeLambda, clock: FakeClock) -> None:
    props = account(fake, clock)
    fake.faults.no_capacity |= {"us-east-1", "us-west-1"}
    with pytest.raises(LambdaError) as err:
        providers(clock)["instance"].create(props)
    assert "us-east-1/gpu_1x_a10, us-west-1/gpu_1x_a10" in str(err.value)
    assert "hosts[].lambda.candidates" in str(err.value)
    assert fake.launches == 0


@pytest.mark.parametrize("retry_after", [9, None])
def test_rate_limits_during_create_are_survived(fake: FakeLambda, clock: FakeClock, retry_after: int | None) -> None:
    props = account(fake, clock)
    fake.faults.rate_limited = [retry_after, retry_after]
    providers(clock)["instance"].create(props)
    assert fake.launches == 1
    assert sum(1 for r in fake.requests if r.status == 429) == 2
    if retry_after is not None:
        assert sum(1 for s in clock.sleeps if s >= retry_after) >= 2


def test_500_on_launch_then_success_looks_before_launching_again(fake: FakeLambda, clock: FakeClock) -> None:
    props = account(fake, clock)
    fake.faults.server_errors = {"POST /instance-operations/launch": 1}
    providers(clock)["instance"].create(props)
    assert fake.launches == 1
    launches = [i for i, r in enumerate(fake.requests) if r.path.endswith("/launch")]
    assert [fake.requests[i].status for i in launches] == [500, 200]
    # Between the failed and the retried launch the provider listed instances to look for its own.
    between = fake.requests[launches[0] + 1 : launches[1]]
    assert any(r.method == "GET" and r.path.endswith("/instances") for r in between)


def test_launch_that_times_out_but_succeeds_is_adopted_not_relaunched(fake: FakeLambda, clock: FakeClock) -> None:
    props = account(fake, clock)
    fake.faults.launch_hang_s = 0.8  # the client gives up after 0.3 s; the server launched anyway
    result = providers(clock)["instance"].create(props)
    assert fake.launches == 1
    assert len(fake.calls("POST", "/instance-operations/launch")) == 1
    assert result.id in fake.instances


def test_stuck_in_booting_is_a_clear_error_and_the_next_create_adopts_it(fake: FakeLambda, clock: FakeClock) -> None:
    props = account(fake, clock)
    fake.faults.stuck_booting = True
    p = providers(clock)["instance"]
    with pytest.raises(LambdaDeadlineError, match=r"still booting after 60s.*adopts it"):
        p.create(props)
    assert fake.launches == 1
    fake.faults.stuck_booting = False
    result = p.create(props)  # what `pulumi up` does next time: no second instance
    assert fake.launches == 1
    assert result.outs["status"] == "active"


def test_unhealthy_instance_is_reported_clearly(fake: FakeLambda, clock: FakeClock) -> None:
    props = account(fake, clock)
    fake.faults.boot_to = "unhealthy"
    with pytest.raises(LambdaError, match="is unhealthy"):
        providers(clock)["instance"].create(props)
    assert fake.launches == 1


def test_preempted_while_booting_is_reported_clearly(fake: FakeLambda, clock: FakeClock) -> None:
    props = account(fake, clock)
    fake.faults.boot_to = "preempted"
    with pytest.raises(LambdaError, match="is preempted before it became active"):
        providers(clock)["instance"].create(props)


def test_invalid_key_stops_create_with_a_clear_error(fake: FakeLambda, clock: FakeClock) -> None:
    props = account(fake, clock)
    with pytest.raises(LambdaAuthError, match="API key was rejected"):
        providers(clock)["instance"].create({**props, "api_key": "revoked-key"})
    assert fake.launches == 0


def test_environment_key_overrides_a_stale_key_in_state(
    fake: FakeLambda, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    props = account(fake, clock)
    monkeypatch.setenv("LAMBDA_API_KEY", KEY)
    providers(clock)["instance"].create({**props, "api_key": "rotated-away"})
    assert fake.launches == 1


def test_create_after_lost_state_adopts_the_existing_instance(fake: FakeLambda, clock: FakeClock) -> None:
    props = account(fake, clock)
    p = providers(clock)["instance"]
    first = p.create(props)
    second = p.create(props)  # e.g. the engine crashed before it saved the first result
    assert second.id == first.id
    assert fake.launches == 1


def test_a_replacement_never_adopts_the_instance_it_replaces(fake: FakeLambda, clock: FakeClock) -> None:
    props = account(fake, clock)
    p = providers(clock)["instance"]
    old = p.create(props)
    new = p.create({**props, "user_data": USER_DATA + "# new host key\n"})
    assert new.id != old.id
    assert fake.launches == 2


def test_an_untagged_instance_of_the_same_name_is_never_adopted(fake: FakeLambda, clock: FakeClock) -> None:
    # Someone launched one by hand under the name this resource uses: it is not ours to manage
    # (or to terminate on `pulumi destroy`), so the provider launches its own.
    props = account(fake, clock)
    p = providers(clock)["instance"]
    ours = p.create(props)
    manual = dict(fake.instances[ours.id], id="f" * 32, tags=[])
    p.delete(ours.id, ours.outs)
    fake.instances[manual["id"]] = {**manual, "status": "active"}
    again = p.create(props)
    assert again.id not in (manual["id"], ours.id)
    assert fake.instances[manual["id"]]["status"] == "active"  # left alone


def test_a_forced_replacement_with_the_same_spec_launches_a_new_instance(fake: FakeLambda, clock: FakeClock) -> None:
    # `pulumi up --replace`: same inputs, so the same name and spec tag. Were the new instance
    # created first, create() would adopt the old one (same name, same spec) and the engine
    # would then terminate it, leaving state pointing at a dead machine. Delete-before-replace
    # is what prevents that; replay the engine's order for it.
    props = account(fake, clock)
    p = providers(clock)["instance"]
    old = p.create(props)
    assert p.diff(old.id, old.outs, {**props, "user_data": USER_DATA + "# x\n"}).delete_before_replace
    p.delete(old.id, old.outs)
    new = p.create(props)
    assert new.id != old.id and fake.launches == 2
    assert [i["id"] for i in fake.live_instances()] == [new.id]


# --- read / diff / update / delete -------------------------------------------------------------


@pytest.mark.parametrize("status", ["terminated", "preempted", "terminating"])
def test_refresh_notices_an_instance_that_is_gone(fake: FakeLambda, clock: FakeClock, status: str) -> None:
    props = account(fake, clock)
    p = providers(clock)["instance"]
    created = p.create(props)
    fake.set_status(created.id, status)
    assert p.read(created.id, created.outs).id is None


def test_refresh_of_a_live_instance_reports_its_current_state(fake: FakeLambda, clock: FakeClock) -> None:
    props = account(fake, clock)
    p = providers(clock)["instance"]
    created = p.create(props)
    fake.set_status(created.id, "unhealthy")
    read = p.read(created.id, created.outs)
    assert read.id == created.id and read.outs["status"] == "unhealthy"
    assert p.read("f" * 32, created.outs).id is None


def _olds() -> dict[str, Any]:
    props = {
        "name": "gpu-platform-test-gpu-1",
        "hostname": "gpu-1",
        "candidates": [
            {"region": "us-east-1", "instance_type": "gpu_1x_a10"},
            {"region": "us-west-1", "instance_type": "gpu_1x_a10"},
        ],
        "ssh_key_names": ["admin"],
        "firewall_rulesets": {"us-east-1": ["rs-east"], "us-west-1": ["rs-west"]},
        "api_key": KEY,
        "tags": {"a-b": "c"},
        "image_family": None,
    }
    return {**props, "region": "us-east-1", "instance_type": "gpu_1x_a10", "user_data_sha256": _sha(USER_DATA)}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _news(**changes: Any) -> dict[str, Any]:
    news = {k: v for k, v in _olds().items() if k not in ("region", "instance_type", "user_data_sha256")}
    return {**news, "user_data": USER_DATA, **changes}


@pytest.mark.parametrize(
    ("changes", "replaces", "changed"),
    [
        ({}, [], False),
        ({"api_key": "rotated"}, [], True),
        ({"name": "renamed"}, [], True),
        # Reordered candidates that still allow where the instance is: no replacement.
        ({"candidates": list(reversed(_olds()["candidates"]))}, [], True),
        ({"candidates": [{"region": "us-west-1", "instance_type": "gpu_1x_a10"}]}, ["candidates"], True),
        ({"candidates": [{"region": "us-east-1", "instance_type": "gpu_1x_h100_pcie"}]}, ["candidates"], True),
        ({"user_data": USER_DATA + "#x\n"}, ["user_data"], True),
        ({"ssh_key_names": ["other"]}, ["ssh_key_names"], True),
        ({"hostname": "gpu-2"}, ["hostname"], True),
        ({"image_family": "ubuntu-lts"}, ["image_family"], True),
        ({"firewall_rulesets": {"us-east-1": ["rs-new"], "us-west-1": ["rs-west"]}}, ["firewall_rulesets"], True),
        # A ruleset of a region the instance is not in can change in place.
        ({"firewall_rulesets": {"us-east-1": ["rs-east"], "us-west-1": ["rs-new"]}}, [], True),
        # Preview: the provider host hands check/diff the engine's unknowns as `Unknown` objects.
        ({"user_data": Unknown()}, ["user_data"], True),
        ({"ssh_key_names": Unknown()}, ["ssh_key_names"], True),
        ({"ssh_key_names": [Unknown()]}, ["ssh_key_names"], True),
        # Preview: a new region's ruleset has no id yet; the instance's own region is unaffected.
        (
            {"firewall_rulesets": {"us-east-1": ["rs-east"], "us-west-1": ["rs-west"], "us-west-2": [Unknown()]}},
            [],
            True,
        ),
        ({"firewall_rulesets": {"us-east-1": [Unknown()], "us-west-1": ["rs-west"]}}, ["firewall_rulesets"], True),
        # Two rulesets of the instance's region not created yet: nothing unknown is sorted.
        (
            {"firewall_rulesets": {"us-east-1": [Unknown(), Unknown()], "us-west-1": ["rs-west"]}},
            ["firewall_rulesets"],
            True,
        ),
    ],
)
def test_diff_replaces_only_what_the_api_cannot_change(
    changes: dict[str, Any], replaces: list[str], changed: bool
) -> None:
    result = LambdaInstanceProvider().diff("id", _olds(), _news(**changes))
    assert sorted(result.replaces or []) == sorted(replaces)
    assert result.changes is changed


def test_update_renames_in_place(fake: FakeLambda, clock: FakeClock) -> None:
    props = account(fake, clock)
    p = providers(clock)["instance"]
    created = p.create(props)
    updated = p.update(created.id, created.outs, {**props, "name": "gpu-platform-test-renamed"})
    assert fake.instances[created.id]["name"] == "gpu-platform-test-renamed"
    assert updated.outs["name"] == "gpu-platform-test-renamed"
    assert fake.launches == 1


def test_delete_terminates_waits_and_is_idempotent(fake: FakeLambda, clock: FakeClock) -> None:
    props = account(fake, clock)
    p = providers(clock)["instance"]
    created = p.create(props)
    fake.terminate_polls = 2
    p.delete(created.id, created.outs)
    assert fake.instances[created.id]["status"] == "terminated"
    p.delete(created.id, created.outs)  # already gone is success
    p.delete("e" * 32, created.outs)  # never existed is success too
    assert len(fake.calls("POST", "/instance-operations/terminate")) == 1


def test_check_rejects_bad_launch_inputs(clock: FakeClock) -> None:
    p = LambdaInstanceProvider()
    news = _news(
        candidates=[
            {"region": "mars-1", "instance_type": "gpu_1x_a10"},
            {"region": "us-east-1", "instance_type": "gpu_9x_nope"},
            {"region": "us-west-2", "instance_type": "gpu_1x_a10"},
        ],
        ssh_key_names=["a", "b"],
        tags={"Bad Key": "x"},
    )
    reasons = {f.property: f.reason for f in p.check({}, news).failures}
    assert "unknown Lambda region 'mars-1'" in reasons["candidates[0].region"]
    assert "unknown instance type 'gpu_9x_nope'" in reasons["candidates[1].instance_type"]
    assert "us-west-2" in reasons["firewall_rulesets"]
    assert "exactly one SSH key" in reasons["ssh_key_names"]
    assert "Bad Key" in reasons["tags"]
    assert p.check({}, _news()).failures == []


# --- SSH keys and rulesets ---------------------------------------------------------------------


def test_ssh_key_create_adopts_the_same_key_and_refuses_another(fake: FakeLambda, clock: FakeClock) -> None:
    p = providers(clock)["key"]
    first = p.create({"name": "admin-1", "public_key": PUBKEY, "api_key": KEY})
    again = p.create({"name": "admin-1", "public_key": PUBKEY + " comment", "api_key": KEY})
    assert again.id == first.id and len(fake.ssh_keys) == 1
    with pytest.raises(LambdaError, match="already has an SSH key named 'admin-1' with another public key"):
        p.create({"name": "admin-1", "public_key": OTHER_PUBKEY, "api_key": KEY})
    assert p.read(first.id, first.outs).id == first.id
    p.delete(first.id, first.outs)
    p.delete(first.id, first.outs)
    assert fake.ssh_keys == {}
    assert p.read(first.id, first.outs).id is None


def test_ssh_key_add_with_unknown_outcome_is_not_duplicated(fake: FakeLambda, clock: FakeClock) -> None:
    fake.faults.server_errors = {"POST /ssh-keys": 1}
    providers(clock)["key"].create({"name": "admin-1", "public_key": PUBKEY, "api_key": KEY})
    assert len(fake.ssh_keys) == 1


def test_ruleset_update_and_delete_waits_for_its_instances(fake: FakeLambda, clock: FakeClock) -> None:
    props = account(fake, clock, regions=("us-east-1",))
    p = providers(clock)
    rid = props["firewall_rulesets"]["us-east-1"][0]
    rs_props = {"name": "gpu-platform-test-us-east-1-edge", "region": "us-east-1", "rules": [SSH_RULE], "api_key": KEY}
    created = p["instance"].create(props)

    new_rule = {**SSH_RULE, "source_network": "198.51.100.64/26"}
    p["ruleset"].update(rid, rs_props, {**rs_props, "rules": [SSH_RULE, new_rule]})
    assert len(fake.rulesets[rid]["rules"]) == 2

    # Still attached to a live instance: the delete retries until its deadline, then says why.
    with pytest.raises(LambdaDeadlineError, match="still attached to instances"):
        p["ruleset"].delete(rid, rs_props)
    p["instance"].delete(created.id, created.outs)
    p["ruleset"].delete(rid, rs_props)
    assert rid not in fake.rulesets
    p["ruleset"].delete(rid, rs_props)  # already gone is success


def test_ruleset_create_adopts_by_name_and_region(fake: FakeLambda, clock: FakeClock) -> None:
    p = providers(clock)["ruleset"]
    props = {"name": "edge", "region": "us-east-1", "rules": [SSH_RULE], "api_key": KEY}
    first = p.create(props)
    second = p.create({**props, "rules": []})
    assert second.id == first.id and len(fake.rulesets) == 1
    assert fake.rulesets[first.id]["rules"] == []  # adopted, then brought to the desired rules


def test_ruleset_diff(clock: FakeClock) -> None:
    p = LambdaFirewallRulesetProvider()
    olds = {"name": "edge", "region": "us-east-1", "rules": [SSH_RULE], "api_key": KEY}
    assert p.diff("r", olds, {**olds}).changes is False
    assert p.diff("r", olds, {**olds, "region": "us-west-1"}).replaces == ["region"]
    changed = p.diff("r", olds, {**olds, "rules": []})
    assert changed.changes is True and changed.replaces == []
    # Port numbers come back from the engine as floats; that is no change.
    floats = {**SSH_RULE, "port_range": [22.0, 22.0]}
    assert p.diff("r", olds, {**olds, "rules": [floats]}).changes is False


def test_peer_rules_resource_owns_the_rules_of_an_unmanaged_ruleset(fake: FakeLambda, clock: FakeClock) -> None:
    p = providers(clock)
    rs = p["ruleset"].create({"name": "peers", "region": "us-east-1", "rules": None, "api_key": KEY})
    assert fake.rulesets[rs.id]["rules"] == []
    rule = {"protocol": "udp", "port_range": [8472, 8472], "source_network": "198.51.100.7/32", "description": "vx"}
    props = {"ruleset_id": rs.id, "rules": [rule], "api_key": KEY}
    created = p["rules"].create(props)
    assert fake.rulesets[rs.id]["rules"] == [rule]
    assert p["rules"].read(created.id, props).outs["rules"] == [rule]
    # The ruleset resource never reports or touches rules it does not own.
    refreshed = p["ruleset"].read(rs.id, {**rs.outs}).outs
    assert refreshed["rules"] is None
    assert p["ruleset"].diff(rs.id, refreshed, {**rs.outs}).changes is False
    p["rules"].delete(created.id, props)
    assert fake.rulesets[rs.id]["rules"] == []


# --- what gets pickled into state --------------------------------------------------------------


def test_serialized_providers_hold_no_api_key(
    fake: FakeLambda, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "lambda-secret-from-env-1234"
    monkeypatch.setenv("LAMBDA_API_KEY", secret)
    for provider in (LambdaInstanceProvider(), LambdaSshKeyProvider(), LambdaFirewallRulesetProvider()):
        provider.client({"api_key": "lambda-secret-from-state-5678"})  # used once, as in a real run
        blob = base64.b64decode(serialize_provider(provider))
        assert secret.encode() not in blob
        assert b"lambda-secret-from-state-5678" not in blob


def test_a_serialized_provider_loads_in_a_fresh_process() -> None:
    """What the dynamic-provider host does: dill.loads the provider from state, then calls it."""
    blob = serialize_provider(LambdaInstanceProvider(boot_timeout_s=123.0))
    code = (
        "import base64, sys, dill\n"
        "p = dill.loads(base64.b64decode(sys.stdin.read()))\n"
        "print(type(p).__name__, p.boot_timeout_s)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        input=blob,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["LambdaInstanceProvider", "123.0"]
