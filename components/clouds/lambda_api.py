"""A small typed client for the Lambda Cloud API (v1, spec 1.8.3).

What it does beyond sending requests, because the API asks for it:
- paces itself: about one request per second overall and one launch per 12 seconds (the limits
  in the spec's introduction); a 429 pushes every later request of the process back;
- retries 429 and 5xx with exponential backoff and full jitter, honouring `Retry-After`, inside a
  total deadline per call;
- never retries a non-idempotent request (launch, add key, create ruleset) blindly: when its
  outcome is unknown (a 5xx or a timeout after the request went out) it raises
  `LambdaOutcomeUnknownError`, and the caller looks for what it asked for before asking again;
- turns every error body into an exception that carries the error `code` (the spec says to branch
  on it, never on the message) and reads like a sentence.

The API key is held by the client object only; nothing here prints, logs or repr()s it. Clock and
sleep are injectable so tests of pacing and backoff run without real waiting.
"""

from __future__ import annotations

import email.utils
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import requests

from components.core.engine import credential

DEFAULT_BASE_URL = "https://cloud.lambda.ai/api/v1"
API_URL_ENV = "LAMBDA_API_URL"
API_KEY_ENV = "LAMBDA_API_KEY"

# Error codes the spec documents and this project branches on.
INSUFFICIENT_CAPACITY = "instance-operations/launch/insufficient-capacity"
INVALID_API_KEY = "global/invalid-api-key"
NOT_FOUND = "global/object-does-not-exist"
QUOTA_EXCEEDED = "global/quota-exceeded"
RULESET_IN_USE = "firewall-rulesets/firewall-ruleset-in-use"

# Instance states (`InstanceStatus`). Lambda has no "stopped": an instance runs or it is gone.
LIVE_STATES = frozenset({"booting", "active", "unhealthy"})
GONE_STATES = frozenset({"terminating", "terminated", "preempted"})

T = TypeVar("T")


# --- errors ------------------------------------------------------------------------------------


class LambdaError(Exception):
    """Anything that went wrong talking to Lambda Cloud; the message is meant for a person."""


class LambdaApiError(LambdaError):
    """The API answered with an error body."""

    def __init__(self, operation: str, status: int, code: str, message: str, suggestion: str = "") -> None:
        self.operation, self.status, self.code = operation, status, code
        self.api_message, self.suggestion = message, suggestion
        text = f"Lambda API {operation}: {code} (HTTP {status}): {message}"
        if suggestion:
            text += f" ({suggestion})"
        super().__init__(text)


class LambdaAuthError(LambdaApiError):
    """`global/invalid-api-key`: retrying cannot help."""

    def __init__(self, operation: str, status: int, code: str, message: str, suggestion: str = "") -> None:
        super().__init__(operation, status, code, message, suggestion)
        self.args = (
            f"Lambda API {operation}: the API key was rejected ({code}). Set {API_KEY_ENV} or "
            "`pulumi config set --secret gpu-platform:lambdaApiKey <key>` to a valid key from "
            "https://cloud.lambda.ai/api-keys",
        )


class LambdaBadResponseError(LambdaError):
    """The API answered something the spec does not allow (not JSON, no `data`, wrong shape)."""


class LambdaOutcomeUnknownError(LambdaError):
    """A non-idempotent request may or may not have taken effect (timeout, reset, 5xx)."""


class LambdaDeadlineError(LambdaError):
    """The call's total deadline passed while retrying or waiting."""


# --- time ----------------------------------------------------------------------------------------


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class Pacer:
    """Spaces requests out: `interval` between any two, `launch_interval` between two launches.

    Reservation based and thread-safe: the Pulumi engine runs several resource operations at once
    in one provider process, and they must share one budget.
    """

    def __init__(self, clock: Clock, interval: float = 1.0, launch_interval: float = 12.0) -> None:
        self.clock, self.interval, self.launch_interval = clock, interval, launch_interval
        self._lock = threading.Lock()
        self._next_any = 0.0
        self._next_launch = 0.0

    def acquire(self, launch: bool = False) -> None:
        with self._lock:
            now = self.clock.monotonic()
            start = max(now, self._next_any, self._next_launch if launch else now)
            self._next_any = start + self.interval
            if launch:
                self._next_launch = start + self.launch_interval
        if start > now:
            self.clock.sleep(start - now)

    def hold(self, seconds: float) -> None:
        """After a 429: nobody in this process sends anything for `seconds`."""
        with self._lock:
            self._next_any = max(self._next_any, self.clock.monotonic() + seconds)


_SHARED_PACERS: dict[str, Pacer] = {}
_SHARED_LOCK = threading.Lock()


def shared_pacer(base_url: str) -> Pacer:
    """One pacer per API endpoint per process, on the real clock."""
    with _SHARED_LOCK:
        pacer = _SHARED_PACERS.get(base_url)
        if pacer is None:
            pacer = _SHARED_PACERS[base_url] = Pacer(SystemClock())
        return pacer


@dataclass(frozen=True)
class RetryPolicy:
    deadline_s: float = 300.0  # total time one call may take, retries included
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0  # a launch can take tens of seconds to answer


# --- models --------------------------------------------------------------------------------------


def _str(d: Mapping[str, Any], key: str, what: str, default: str | None = None) -> str:
    value = d.get(key, default)
    if not isinstance(value, str):
        raise LambdaBadResponseError(f"Lambda API returned {what} without a string '{key}': {_snippet(d)}")
    return value


@dataclass(frozen=True)
class Instance:
    id: str
    name: str
    status: str
    region: str
    instance_type: str
    ip: str
    private_ip: str
    hostname: str
    ssh_key_names: tuple[str, ...]
    tags: dict[str, str]
    firewall_ruleset_ids: tuple[str, ...]
    gpu_description: str
    # What Lambda bills for it (the instance type's price_cents_per_hour); None if not given.
    price_cents_per_hour: int | None = None

    @staticmethod
    def from_api(d: Any) -> Instance:
        if not isinstance(d, Mapping):
            raise LambdaBadResponseError(f"Lambda API returned an instance that is not an object: {_snippet(d)}")
        region = d.get("region") or {}
        itype = d.get("instance_type") or {}
        return Instance(
            id=_str(d, "id", "an instance"),
            name=_str(d, "name", "an instance", ""),
            status=_str(d, "status", "an instance"),
            region=_str(region, "name", "an instance region", ""),
            instance_type=_str(itype, "name", "an instance type", ""),
            ip=_str(d, "ip", "an instance", ""),
            private_ip=_str(d, "private_ip", "an instance", ""),
            hostname=_str(d, "hostname", "an instance", ""),
            ssh_key_names=tuple(d.get("ssh_key_names") or ()),
            tags={t["key"]: t["value"] for t in d.get("tags") or () if isinstance(t, Mapping)},
            firewall_ruleset_ids=tuple(r["id"] for r in d.get("firewall_rulesets") or () if isinstance(r, Mapping)),
            gpu_description=_str(itype, "gpu_description", "an instance type", ""),
            price_cents_per_hour=price if isinstance(price := itype.get("price_cents_per_hour"), int) else None,
        )


@dataclass(frozen=True)
class SshKey:
    id: str
    name: str
    public_key: str

    @staticmethod
    def from_api(d: Any) -> SshKey:
        if not isinstance(d, Mapping):
            raise LambdaBadResponseError(f"Lambda API returned an SSH key that is not an object: {_snippet(d)}")
        return SshKey(_str(d, "id", "an SSH key"), _str(d, "name", "an SSH key"), _str(d, "public_key", "an SSH key"))


@dataclass(frozen=True, order=True)
class FirewallRule:
    protocol: str  # tcp | udp | icmp | all
    source_network: str
    description: str
    port_range: tuple[int, int] | None = None  # required for tcp/udp, refused for icmp

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "protocol": self.protocol,
            "source_network": self.source_network,
            "description": self.description,
        }
        if self.port_range is not None:
            out["port_range"] = list(self.port_range)
        return out

    @staticmethod
    def from_api(d: Any) -> FirewallRule:
        if not isinstance(d, Mapping):
            raise LambdaBadResponseError(f"Lambda API returned a firewall rule that is not an object: {_snippet(d)}")
        ports = d.get("port_range")
        return FirewallRule(
            protocol=_str(d, "protocol", "a firewall rule"),
            source_network=_str(d, "source_network", "a firewall rule"),
            description=_str(d, "description", "a firewall rule", ""),
            port_range=(int(ports[0]), int(ports[1])) if ports else None,
        )


@dataclass(frozen=True)
class FirewallRuleset:
    id: str
    name: str
    region: str
    rules: tuple[FirewallRule, ...]
    instance_ids: tuple[str, ...] = field(default=())

    @staticmethod
    def from_api(d: Any) -> FirewallRuleset:
        if not isinstance(d, Mapping):
            raise LambdaBadResponseError(f"Lambda API returned a ruleset that is not an object: {_snippet(d)}")
        return FirewallRuleset(
            id=_str(d, "id", "a firewall ruleset"),
            name=_str(d, "name", "a firewall ruleset"),
            region=_str(d.get("region") or {}, "name", "a firewall ruleset region"),
            rules=tuple(FirewallRule.from_api(r) for r in d.get("rules") or ()),
            instance_ids=tuple(d.get("instance_ids") or ()),
        )


# --- the client ----------------------------------------------------------------------------------


def _snippet(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _retry_after(headers: Mapping[str, str], now_wall: float) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date), None when absent."""
    raw = headers.get("Retry-After")
    if not raw:
        return None
    raw = raw.strip()
    if raw.isdigit():
        return float(raw)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now_wall)


def resolve_api_key(from_state: str | None) -> str:
    """The key to call with: `LAMBDA_API_KEY` when set, else the stack's secret config value.

    The environment wins (components.engine.credential, the rule every provider follows) because
    the copy in state can be stale after a key rotation, and a `pulumi destroy` must still work
    with the new key.
    """
    key = credential(API_KEY_ENV, from_state)
    if not key:
        raise LambdaError(
            f"no Lambda Cloud API key: set {API_KEY_ENV} or `pulumi config set --secret gpu-platform:lambdaApiKey`"
        )
    return key


def resolve_base_url() -> str:
    return (os.environ.get(API_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")


class LambdaClient:
    """Typed calls to the endpoints this project uses. Thread-safe."""

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        *,
        clock: Clock | None = None,
        policy: RetryPolicy | None = None,
        pacer: Pacer | None = None,
        rng: random.Random | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = (base_url or resolve_base_url()).rstrip("/")
        self.clock: Clock = clock or SystemClock()
        self.policy = policy or RetryPolicy()
        self.pacer = pacer or (shared_pacer(self.base_url) if clock is None else Pacer(self.clock))
        self._rng = rng or random.Random()
        self._session = session or requests.Session()
        self._auth = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}

    def __repr__(self) -> str:  # never show the key
        return f"LambdaClient({self.base_url!r})"

    # --- transport ---------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        cap = min(self.policy.max_delay_s, self.policy.base_delay_s * (2**attempt))
        return self._rng.uniform(0, cap)

    def _request(
        self,
        method: str,
        path: str,
        operation: str,
        *,
        body: Any = None,
        idempotent: bool = True,
        launch: bool = False,
        deadline: float | None = None,
    ) -> Any:
        """The `data` of a successful answer. Retries what is safe to retry until the deadline."""
        end = deadline if deadline is not None else self.clock.monotonic() + self.policy.deadline_s
        attempt = 0
        last = ""
        while True:
            self.pacer.acquire(launch=launch)
            delay: float | None = None
            try:
                resp = self._session.request(
                    method,
                    self.base_url + path,
                    json=body,
                    headers=self._auth,
                    timeout=(self.policy.connect_timeout_s, self.policy.read_timeout_s),
                )
            except requests.exceptions.ConnectTimeout as exc:
                last = f"connect timeout ({type(exc).__name__})"  # nothing was sent: safe to retry
            except requests.exceptions.Timeout as exc:
                if not idempotent:
                    raise LambdaOutcomeUnknownError(
                        f"Lambda API {operation}: no answer within {self.policy.read_timeout_s:g}s; "
                        "the request may have taken effect"
                    ) from exc
                last = "read timeout"
            except requests.exceptions.ConnectionError as exc:
                if not idempotent:
                    raise LambdaOutcomeUnknownError(
                        f"Lambda API {operation}: connection failed mid-request; the request may have taken effect"
                    ) from exc
                last = f"connection error ({type(exc).__name__})"
            else:
                if resp.status_code == 429:
                    after = _retry_after(resp.headers, time.time())
                    last = "429 rate limited"
                    if after is not None:
                        delay = max(after, self._backoff(attempt) / 4)
                        self.pacer.hold(after)
                elif resp.status_code >= 500:
                    if not idempotent:
                        raise LambdaOutcomeUnknownError(
                            f"Lambda API {operation}: HTTP {resp.status_code}; the request may have taken effect"
                        )
                    last = f"HTTP {resp.status_code}"
                    after = _retry_after(resp.headers, time.time())
                    delay = after if after is not None else None
                else:
                    return self._parse(resp, operation)
            if delay is None:
                delay = self._backoff(attempt)
            attempt += 1
            if self.clock.monotonic() + delay > end:
                raise LambdaDeadlineError(
                    f"Lambda API {operation}: gave up after {attempt} attempt(s) inside the "
                    f"{self.policy.deadline_s:g}s deadline; last answer: {last}"
                )
            self.clock.sleep(delay)

    def _parse(self, resp: requests.Response, operation: str) -> Any:
        try:
            doc = resp.json()
        except ValueError:
            raise LambdaBadResponseError(
                f"Lambda API {operation}: HTTP {resp.status_code} with a body that is not JSON: {_snippet(resp.text)}"
            ) from None
        if 200 <= resp.status_code < 300:
            if not isinstance(doc, dict) or "data" not in doc:
                raise LambdaBadResponseError(f"Lambda API {operation}: success without 'data': {_snippet(doc)}")
            return doc["data"]
        err = doc.get("error") if isinstance(doc, dict) else None
        if not isinstance(err, dict) or not isinstance(err.get("code"), str):
            raise LambdaBadResponseError(
                f"Lambda API {operation}: HTTP {resp.status_code} without an error code: {_snippet(doc)}"
            )
        cls = LambdaAuthError if err["code"] == INVALID_API_KEY else LambdaApiError
        raise cls(operation, resp.status_code, err["code"], str(err.get("message", "")), str(err.get("suggestion", "")))

    # --- instances ---------------------------------------------------------------------------

    def list_instances(self) -> list[Instance]:
        data = self._request("GET", "/instances", "list instances")
        if not isinstance(data, list):
            raise LambdaBadResponseError(f"Lambda API list instances: 'data' is not a list: {_snippet(data)}")
        return [Instance.from_api(d) for d in data]

    def instance_type_prices(self) -> dict[str, int]:
        """`GET /instance-types`: each type's `price_cents_per_hour` (what `migrate.prices refresh` records)."""
        data = self._request("GET", "/instance-types", "list instance types")
        if not isinstance(data, dict):
            raise LambdaBadResponseError(f"Lambda API list instance types: 'data' is not an object: {_snippet(data)}")
        out: dict[str, int] = {}
        for name, item in data.items():
            price = (item.get("instance_type") or {}).get("price_cents_per_hour") if isinstance(item, dict) else None
            if not isinstance(price, int) or isinstance(price, bool):
                raise LambdaBadResponseError(
                    f"Lambda API list instance types: {name} has no integer price_cents_per_hour"
                )
            out[str(name)] = price
        return out

    def get_instance(self, instance_id: str) -> Instance | None:
        """The instance, or None when Lambda no longer knows it."""
        try:
            return Instance.from_api(self._request("GET", f"/instances/{instance_id}", f"get instance {instance_id}"))
        except LambdaApiError as exc:
            if exc.status == 404 or exc.code == NOT_FOUND:
                return None
            raise

    def launch(self, body: Mapping[str, Any], deadline: float | None = None) -> str:
        """POST one launch; the new instance's id. Not retried on an unknown outcome (see module doc)."""
        data = self._request(
            "POST",
            "/instance-operations/launch",
            f"launch {body.get('name', '')} in {body.get('region_name')}",
            body=dict(body),
            idempotent=False,
            launch=True,
            deadline=deadline,
        )
        ids = data.get("instance_ids") if isinstance(data, dict) else None
        if not isinstance(ids, list) or len(ids) != 1 or not isinstance(ids[0], str):
            raise LambdaBadResponseError(f"Lambda API launch: expected exactly one instance id, got {_snippet(data)}")
        return ids[0]

    def terminate(self, instance_ids: Iterable[str]) -> None:
        # Terminating twice is harmless, so a retry after an unknown outcome is safe.
        self._request(
            "POST",
            "/instance-operations/terminate",
            "terminate " + ", ".join(instance_ids),
            body={"instance_ids": list(instance_ids)},
        )

    def rename_instance(self, instance_id: str, name: str) -> Instance:
        data = self._request("POST", f"/instances/{instance_id}", f"rename instance {instance_id}", body={"name": name})
        return Instance.from_api(data)

    # --- ssh keys ----------------------------------------------------------------------------

    def list_ssh_keys(self) -> list[SshKey]:
        data = self._request("GET", "/ssh-keys", "list SSH keys")
        if not isinstance(data, list):
            raise LambdaBadResponseError(f"Lambda API list SSH keys: 'data' is not a list: {_snippet(data)}")
        return [SshKey.from_api(d) for d in data]

    def add_ssh_key(self, name: str, public_key: str) -> SshKey:
        data = self._request(
            "POST", "/ssh-keys", f"add SSH key {name}", body={"name": name, "public_key": public_key}, idempotent=False
        )
        return SshKey.from_api(data)

    def delete_ssh_key(self, key_id: str) -> None:
        self._request("DELETE", f"/ssh-keys/{key_id}", f"delete SSH key {key_id}")

    # --- firewall rulesets -------------------------------------------------------------------

    def list_firewall_rulesets(self) -> list[FirewallRuleset]:
        data = self._request("GET", "/firewall-rulesets", "list firewall rulesets")
        if not isinstance(data, list):
            raise LambdaBadResponseError(f"Lambda API list firewall rulesets: 'data' is not a list: {_snippet(data)}")
        return [FirewallRuleset.from_api(d) for d in data]

    def get_firewall_ruleset(self, ruleset_id: str) -> FirewallRuleset | None:
        try:
            data = self._request("GET", f"/firewall-rulesets/{ruleset_id}", f"get firewall ruleset {ruleset_id}")
        except LambdaApiError as exc:
            if exc.status == 404 or exc.code == NOT_FOUND:
                return None
            raise
        return FirewallRuleset.from_api(data)

    def create_firewall_ruleset(self, name: str, region: str, rules: Iterable[FirewallRule]) -> FirewallRuleset:
        body = {"name": name, "region": region, "rules": [r.to_api() for r in rules]}
        data = self._request(
            "POST", "/firewall-rulesets", f"create firewall ruleset {name}", body=body, idempotent=False
        )
        return FirewallRuleset.from_api(data)

    def update_firewall_ruleset(
        self, ruleset_id: str, *, name: str | None = None, rules: Iterable[FirewallRule] | None = None
    ) -> FirewallRuleset:
        body: dict[str, Any] = {}
        if name is not None:
            body["name"] = name
        if rules is not None:
            body["rules"] = [r.to_api() for r in rules]
        # PATCH with the whole desired list is idempotent: sending it twice leaves the same rules.
        data = self._request(
            "PATCH", f"/firewall-rulesets/{ruleset_id}", f"update firewall ruleset {ruleset_id}", body=body
        )
        return FirewallRuleset.from_api(data)

    def delete_firewall_ruleset(self, ruleset_id: str) -> None:
        self._request("DELETE", f"/firewall-rulesets/{ruleset_id}", f"delete firewall ruleset {ruleset_id}")

    # --- helpers for callers -----------------------------------------------------------------

    def create_once(
        self,
        what: str,
        find: Callable[[], T | None],
        create: Callable[[], T],
        deadline: float,
    ) -> T:
        """Create something exactly once: look first, and look again after an unknown outcome.

        `find` must recognise what `create` makes (a unique name or tag). A 5xx or a timeout on
        `create` may hide a success, so the next round starts with `find` instead of a blind retry.
        """
        attempt = 0
        while True:
            existing = find()
            if existing is not None:
                return existing
            try:
                return create()
            except LambdaOutcomeUnknownError as exc:
                delay = self._backoff(attempt)
                attempt += 1
                if self.clock.monotonic() + delay > deadline:
                    raise LambdaDeadlineError(f"{what}: outcome still unknown at the deadline ({exc})") from exc
                self.clock.sleep(delay)
