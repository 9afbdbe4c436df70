"""The Lambda Cloud client: pacing, retries, deadlines and error decoding, against the fake API.

Time is a FakeClock: the client's pacing and backoff sleeps are recorded, never slept.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from components.clouds.lambda_api import (
    INSUFFICIENT_CAPACITY,
    LambdaApiError,
    LambdaAuthError,
    LambdaBadResponseError,
    LambdaClient,
    LambdaDeadlineError,
    LambdaError,
    LambdaOutcomeUnknownError,
    Pacer,
    RetryPolicy,
    _retry_after,
    resolve_api_key,
    resolve_base_url,
)
from tests.fakes.lambda_server import FakeClock, FakeLambda, fake_lambda

pytestmark = pytest.mark.network

KEY = "fake-lambda-key"
PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHpznK6WZj+Zq+AumfFTaItVwHWiG5Wf/Zw3bQ32YOak"


@pytest.fixture
def fake() -> Iterator[FakeLambda]:
    with fake_lambda(api_key=KEY) as f:
        yield f
        assert f.violations == [], "\n".join(f.violations)


def client(fake: FakeLambda, clock: FakeClock, key: str = KEY, **policy: Any) -> LambdaClient:
    return LambdaClient(
        key,
        fake.base_url,
        clock=clock,
        policy=RetryPolicy(**{"deadline_s": 120.0, "read_timeout_s": 2.0, **policy}),
        rng=random.Random(7),
    )


def launch_body(**extra: Any) -> dict[str, Any]:
    return {"region_name": "us-east-1", "instance_type_name": "gpu_1x_a10", "ssh_key_names": ["admin"], **extra}


# --- pacing ------------------------------------------------------------------------------------


def test_pacer_spaces_requests_one_second_and_launches_twelve() -> None:
    clock = FakeClock()
    pacer = Pacer(clock)
    pacer.acquire()
    pacer.acquire()
    pacer.acquire(launch=True)
    pacer.acquire(launch=True)
    assert clock.sleeps == [1.0, 1.0, 12.0]


def test_pacer_hold_after_429_delays_everyone() -> None:
    clock = FakeClock()
    pacer = Pacer(clock)
    pacer.acquire()
    pacer.hold(30.0)
    pacer.acquire()
    assert clock.sleeps == [30.0]


def test_client_paces_real_requests(fake: FakeLambda) -> None:
    clock = FakeClock()
    c = client(fake, clock)
    for _ in range(3):
        c.list_instances()
    assert clock.sleeps == [1.0, 1.0]


# --- retries -----------------------------------------------------------------------------------


def test_429_with_retry_after_waits_at_least_that_long(fake: FakeLambda) -> None:
    fake.faults.rate_limited = [17]
    clock = FakeClock()
    assert client(fake, clock).list_instances() == []
    assert max(clock.sleeps) >= 17.0
    assert [r.status for r in fake.requests] == [429, 200]


def test_429_without_retry_after_backs_off_with_jitter(fake: FakeLambda) -> None:
    fake.faults.rate_limited = [None, None, None]
    clock = FakeClock()
    client(fake, clock, base_delay_s=1.0, max_delay_s=30.0).list_ssh_keys()
    backoffs = [s for s in clock.sleeps if s != 1.0]
    # Full jitter: each wait is somewhere in [0, base * 2^attempt], not a fixed step.
    assert len(fake.requests) == 4
    assert all(0 <= s <= 8 for s in backoffs)
    assert len(set(clock.sleeps)) > 1


def test_429_on_launch_is_retried_because_it_was_refused(fake: FakeLambda) -> None:
    fake.ssh_keys["k"] = {"id": "k", "name": "admin", "public_key": PUBKEY}
    fake.faults.rate_limited = [5]
    instance_id = client(fake, FakeClock()).launch(launch_body())
    assert fake.launches == 1
    assert instance_id in fake.instances


def test_500_then_success_for_a_read(fake: FakeLambda) -> None:
    fake.faults.server_errors = {"GET /instances": 1}
    assert client(fake, FakeClock()).list_instances() == []
    assert [r.status for r in fake.requests] == [500, 200]


def test_500_on_launch_is_an_unknown_outcome_not_a_blind_retry(fake: FakeLambda) -> None:
    fake.ssh_keys["k"] = {"id": "k", "name": "admin", "public_key": PUBKEY}
    fake.faults.server_errors = {"POST /instance-operations/launch": 1}
    with pytest.raises(LambdaOutcomeUnknownError, match="may have taken effect"):
        client(fake, FakeClock()).launch(launch_body())
    assert len(fake.calls("POST", "/instance-operations/launch")) == 1


def test_client_timeout_on_launch_is_an_unknown_outcome(fake: FakeLambda) -> None:
    fake.ssh_keys["k"] = {"id": "k", "name": "admin", "public_key": PUBKEY}
    fake.faults.launch_hang_s = 0.6
    with pytest.raises(LambdaOutcomeUnknownError):
        client(fake, FakeClock(), read_timeout_s=0.2).launch(launch_body())
    assert fake.launches == 1  # it did happen; the caller must look before launching again


def test_retries_stop_at_the_deadline_with_a_clear_message(fake: FakeLambda) -> None:
    fake.faults.rate_limited = [20] * 10
    with pytest.raises(LambdaDeadlineError, match=r"gave up after \d+ attempt.*60s deadline.*429"):
        client(fake, FakeClock(), deadline_s=60.0).list_instances()
    assert len(fake.requests) < 10


def test_retry_after_accepts_an_http_date() -> None:
    assert _retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT"}, 1445412480.0) == pytest.approx(30.0)
    assert _retry_after({"Retry-After": "12"}, 0.0) == 12.0
    assert _retry_after({}, 0.0) is None
    assert _retry_after({"Retry-After": "soon"}, 0.0) is None


# --- errors ------------------------------------------------------------------------------------


def test_invalid_key_is_a_clear_error_without_the_key(fake: FakeLambda) -> None:
    with pytest.raises(LambdaAuthError) as err:
        client(fake, FakeClock(), key="wrong-key-123").list_instances()
    message = str(err.value)
    assert "global/invalid-api-key" in message
    assert "LAMBDA_API_KEY" in message and "lambdaApiKey" in message
    assert "wrong-key-123" not in message
    assert len(fake.requests) == 1  # no retry can fix a bad key


def test_insufficient_capacity_carries_the_code(fake: FakeLambda) -> None:
    fake.ssh_keys["k"] = {"id": "k", "name": "admin", "public_key": PUBKEY}
    fake.faults.no_capacity.add("us-east-1")
    with pytest.raises(LambdaApiError) as err:
        client(fake, FakeClock()).launch(launch_body())
    assert err.value.code == INSUFFICIENT_CAPACITY
    assert err.value.status == 400


def test_missing_instance_reads_as_none(fake: FakeLambda) -> None:
    assert client(fake, FakeClock()).get_instance("0" * 32) is None


def test_repr_never_shows_the_key(fake: FakeLambda) -> None:
    c = client(fake, FakeClock(), key="super-secret-key")
    assert "super-secret-key" not in repr(c)


class _Canned(requests.adapters.BaseAdapter):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__()
        self.status, self.body = status, body

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        resp = requests.Response()
        resp.status_code = self.status
        resp._content = self.body
        resp.request = request
        return resp

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("status", "body", "match"),
    [
        (200, b"<html>gateway</html>", "not JSON"),
        (200, b'{"instances": []}', "success without 'data'"),
        (200, b'{"data": {"nope": 1}}', "'data' is not a list"),
        (400, b'{"message": "bad"}', "without an error code"),
        (200, b'{"data": [{"id": 5}]}', "without a string 'id'"),
    ],
)
def test_answers_outside_the_spec_are_clear_errors(status: int, body: bytes, match: str) -> None:
    session = requests.Session()
    session.mount("http://", _Canned(status, body))
    c = LambdaClient(KEY, "http://127.0.0.1:9/api/v1", clock=FakeClock(), session=session)
    with pytest.raises(LambdaBadResponseError, match=match):
        c.list_instances()


def test_key_resolution_prefers_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAMBDA_API_KEY", raising=False)
    assert resolve_api_key("from-state") == "from-state"
    monkeypatch.setenv("LAMBDA_API_KEY", "from-env")
    assert resolve_api_key("from-state") == "from-env"
    monkeypatch.delenv("LAMBDA_API_KEY")
    with pytest.raises(LambdaError, match="LAMBDA_API_KEY"):
        resolve_api_key(None)


def test_base_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAMBDA_API_URL", raising=False)
    assert resolve_base_url() == "https://cloud.lambda.ai/api/v1"
    monkeypatch.setenv("LAMBDA_API_URL", "http://127.0.0.1:1234/api/v1/")
    assert resolve_base_url() == "http://127.0.0.1:1234/api/v1"


def test_fake_checks_requests_against_the_spec(specs_dir: Any) -> None:
    """The contract check itself can fail: a request the spec forbids is reported."""
    with fake_lambda(api_key=KEY) as f:
        assert f.validating
        f.ssh_keys["k"] = {"id": "k", "name": "admin", "public_key": PUBKEY}
        # Tag keys must match ^[a-z][a-z0-9-:]+$ (RequestedTagEntry); "A" does not.
        client(f, FakeClock()).launch(launch_body(tags=[{"key": "A", "value": "x"}]))
        assert any("launch" in v and "does not match" in v for v in f.violations)
