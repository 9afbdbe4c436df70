"""The Fly Machines API client against the fake server: retries, pacing, idempotence, no token leaks."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.clouds.fly_api import FlyApiError, FlyClient, FlyError, FlyNotFoundError, FlySettings
from tests.fakes.fly_server import FakeFly, fake_fly

pytestmark = pytest.mark.network

TOKEN = "fake-fly-token-do-not-print"


@pytest.fixture
def fly() -> Iterator[FakeFly]:
    with fake_fly(token=TOKEN) as fake:
        yield fake
        assert fake.violations == []


def _client(fly: FakeFly, **overrides: float) -> FlyClient:
    settings = FlySettings(
        api_url=fly.api_url,
        graphql_url=fly.graphql_url,
        min_interval=0,
        max_attempts=3,
        backoff_base=0.001,
        backoff_max=0.01,
        poll_interval=0.001,
        state_timeout=0.05,
    )
    return FlyClient(TOKEN, dataclasses.replace(settings, **overrides))


def test_429_is_retried_and_retry_after_is_honoured(fly: FakeFly) -> None:
    fly.add_app("a")
    fly.faults.rate_limited = ["0.002", None]
    slept: list[float] = []
    client = FlyClient(TOKEN, _client(fly).settings, sleep=slept.append)

    assert client.get_app("a")["name"] == "a"
    assert [r.status for r in fly.requests] == [429, 429, 200]
    assert slept[0] == pytest.approx(0.002) and slept[1] == pytest.approx(0.002)  # Retry-After, then backoff


def test_giving_up_names_the_operation_and_the_status(fly: FakeFly) -> None:
    fly.add_app("a")
    fly.faults.server_errors = {"GET /v1/apps/a/machines": 5}
    with pytest.raises(
        FlyApiError, match=r"Fly API list machines of a: HTTP 500: internal error \(gave up after 3 attempts\)"
    ):
        _client(fly).list_machines("a")
    assert len(fly.requests) == 3


def test_a_create_is_not_repeated_after_a_server_error(fly: FakeFly) -> None:
    fly.add_app("a")
    fly.faults.server_errors = {"POST /v1/apps/a/volumes": 1}
    with pytest.raises(FlyApiError, match="create volume in a: HTTP 500"):
        _client(fly).create_volume("a", {"name": "v", "region": "iad", "size_gb": 1})
    assert len(fly.calls("POST", "/apps/a/volumes")) == 1 and fly.volumes["a"] == {}


def test_already_gone_is_success_for_idempotent_calls(fly: FakeFly) -> None:
    ids = fly.add_app("a", machines=("stopped",))
    client = _client(fly)
    assert client.delete_machine("a", ids["machines"][0]) is True
    assert client.delete_machine("a", ids["machines"][0]) is False
    assert client.stop_machine("a", ids["machines"][0]) is False
    assert client.machine_state("a", ids["machines"][0]) == "destroyed"
    assert client.delete_app("a") is True and client.delete_app("a") is False
    assert client.list_ips("a") == []
    with pytest.raises(FlyNotFoundError, match='show app a: HTTP 404: Could not find App "a"'):
        client.get_app("a")


def test_waiting_for_a_state_is_bounded_and_says_what_it_saw(fly: FakeFly) -> None:
    ids = fly.add_app("a", machines=("started",))
    fly.faults.wont_stop.add(ids["machines"][0])
    client = _client(fly)
    client.stop_machine("a", ids["machines"][0])
    with pytest.raises(
        FlyError, match=f"Fly app a: machine {ids['machines'][0]} is stopping, not stopped, after 0.05s"
    ):
        client.wait_for_state("a", ids["machines"][0], frozenset({"stopped"}))


def test_pacing_spaces_requests(fly: FakeFly) -> None:
    fly.add_app("a")
    slept: list[float] = []
    now = [100.0]
    client = FlyClient(
        TOKEN,
        _client(fly, min_interval=0.5).settings,
        sleep=lambda s: (slept.append(s), now.__setitem__(0, now[0] + s)),
        clock=lambda: now[0],
    )
    client.get_app("a")
    client.get_app("a")
    assert slept == [pytest.approx(0.5)]


def test_the_token_never_appears_in_errors_or_repr(fly: FakeFly) -> None:
    client = _client(fly)
    bad = FlyClient("wrong-token", client.settings)
    with pytest.raises(FlyApiError) as caught:
        bad.get_app("a")
    assert caught.value.status == 401 and "wrong-token" not in str(caught.value)
    assert TOKEN not in repr(client) and TOKEN not in str(client.__dict__.get("settings"))
    with pytest.raises(FlyError, match="no Fly API token: set gpu-platform:flyApiToken"):
        FlyClient("", client.settings)


def test_snapshot_retention_outside_fly_limits_is_refused_locally(fly: FakeFly) -> None:
    with pytest.raises(FlyError, match=r"snapshot retention 61 is outside 1\.\.60 days"):
        _client(fly).set_snapshot_retention("a", "vol_1", 61)
    assert fly.requests == []


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLY_API_URL", "http://127.0.0.1:9/v1/")
    monkeypatch.delenv("FLY_GRAPHQL_URL", raising=False)
    settings = FlySettings.from_env()
    assert settings.api_url == "http://127.0.0.1:9/v1" and settings.graphql_url == "https://api.fly.io/graphql"
    monkeypatch.delenv("FLY_API_URL")
    assert FlySettings.from_env().api_url == "https://api.machines.dev/v1"


def test_fake_checks_requests_against_the_spec(specs_dir: Path) -> None:
    """The contract check itself can fail: a request the spec does not have is reported."""
    with fake_fly(token=TOKEN) as fake:
        assert fake.validating, f"the fake did not load {specs_dir / 'fly-machines-openapi.yaml'}"
        # The Machines API has no PUT on a volume; a client that sent one would be off the spec.
        with contextlib.suppress(FlyApiError):
            _client(fake).request("PUT", "/apps/jobs/volumes/vol_x", "update volume", body={})
        assert any(v.startswith("request PUT") and "/volumes/vol_x" in v for v in fake.violations), fake.violations
