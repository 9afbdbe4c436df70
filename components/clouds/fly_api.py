"""A small typed client for the Fly.io Machines API, as the dynamic providers in `fly.py` use it.

It follows the published Machines API (`https://api.machines.dev/v1`, the OpenAPI document the
project's contract tests read from `../shared/specs/fly-machines-openapi.yaml`):

- every request carries `Authorization: Bearer <token>`; the token never appears in an error,
  a log line or a `repr` of this client;
- requests are paced (`min_interval` between two calls) and retried on 429 and 5xx with capped
  exponential backoff that honours `Retry-After`. Calls that create something (a machine, a
  volume, a snapshot) are retried on 429 only: a 5xx may mean it was created, and a second one
  would be a leak;
- "already gone" is success where the caller asks for idempotence (`delete_*`, `stop_machine`):
  the method returns False instead of raising `FlyNotFoundError`.

The Machines API has no endpoint for IP addresses; `fly ips release` and every other client use
the Fly GraphQL API (`https://api.fly.io/graphql`) for that, so `list_ips` / `release_ip` do too.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

import requests

DEFAULT_API_URL = "https://api.machines.dev/v1"
DEFAULT_GRAPHQL_URL = "https://api.fly.io/graphql"

# Machine states (Fly docs, "Machine states"): a freeze stops what is running and nothing else.
RUNNING_STATES = frozenset({"started", "starting"})
STOPPED_STATES = frozenset({"stopped", "suspended"})
GONE_STATES = frozenset({"destroyed", "destroying"})


class FlyError(Exception):
    """Something about a Fly app that a user has to act on; the message names the app."""


class FlyApiError(FlyError):
    def __init__(self, operation: str, status: int, detail: str) -> None:
        self.operation = operation
        self.status = status
        self.detail = detail
        super().__init__(f"Fly API {operation}: HTTP {status}: {detail}")


class FlyNotFoundError(FlyApiError):
    pass


@dataclass(frozen=True)
class FlySettings:
    """Where the API is and how patient to be. Tests shrink every interval to milliseconds."""

    api_url: str = DEFAULT_API_URL
    graphql_url: str = DEFAULT_GRAPHQL_URL
    # Fly rate-limits per action and machine (about 1 req/s sustained, small bursts).
    min_interval: float = 0.25
    max_attempts: int = 6
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    request_timeout: float = 60.0
    poll_interval: float = 2.0
    # How long a machine may take to reach stopped/started, or a snapshot to be created.
    state_timeout: float = 300.0
    # Seconds the exec endpoint may stream one volume's tarball.
    exec_timeout: int = 3600

    @classmethod
    def from_env(cls) -> FlySettings:
        return cls(
            api_url=os.environ.get("FLY_API_URL", DEFAULT_API_URL).rstrip("/"),
            graphql_url=os.environ.get("FLY_GRAPHQL_URL", DEFAULT_GRAPHQL_URL),
        )


@dataclass
class _Pacer:
    min_interval: float
    sleep: Callable[[float], None]
    clock: Callable[[], float]
    _last: float = -1e9
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait(self) -> None:
        with self._lock:
            delay = self._last + self.min_interval - self.clock()
            if delay > 0:
                self.sleep(delay)
            self._last = self.clock()


def _error_text(response: requests.Response) -> str:
    """The `error` field of an ErrorResponse, else a short slice of the body."""
    try:
        body = response.json()
    except ValueError:
        return (response.text or response.reason or "").strip()[:200] or "(empty body)"
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"]
    return json.dumps(body)[:200]


class FlyClient:
    """One token, one pacing budget. Not shared between threads that need separate budgets."""

    def __init__(
        self,
        token: str,
        settings: FlySettings | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not token:
            raise FlyError("no Fly API token: set gpu-platform:flyApiToken (secret) or FLY_API_TOKEN")
        self._token = token
        self.settings = settings or FlySettings.from_env()
        self._session = session or requests.Session()
        self._sleep = sleep
        self._clock = clock
        self._pacer = _Pacer(self.settings.min_interval, sleep, clock)

    def __repr__(self) -> str:  # never show the token
        return f"FlyClient(api_url={self.settings.api_url!r})"

    def with_settings(self, **changes: Any) -> FlyClient:
        return FlyClient(self._token, replace(self.settings, **changes), self._session, self._sleep, self._clock)

    # --- transport ------------------------------------------------------------------------------

    def _backoff(self, attempt: int, response: requests.Response | None) -> float:
        retry_after = response.headers.get("Retry-After") if response is not None else None
        if retry_after:
            try:
                return min(float(retry_after), self.settings.backoff_max)
            except ValueError:
                pass  # an HTTP date; fall back to our own schedule
        return min(self.settings.backoff_base * 2 ** (attempt - 1), self.settings.backoff_max)

    def request(
        self,
        method: str,
        path: str,
        operation: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        creates: bool = False,
        stream: bool = False,
        url: str | None = None,
    ) -> requests.Response:
        """One API call with pacing and retries. Raises FlyNotFoundError on 404, FlyApiError otherwise."""
        target = url or f"{self.settings.api_url}{path}"
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        last: str = ""
        for attempt in range(1, self.settings.max_attempts + 1):
            self._pacer.wait()
            try:
                response = self._session.request(
                    method,
                    target,
                    json=body,
                    params=params,
                    headers=headers,
                    timeout=self.settings.request_timeout,
                    stream=stream,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                # The request may have reached Fly; only calls that create nothing are resent.
                last = f"{type(exc).__name__}"
                if creates or attempt == self.settings.max_attempts:
                    raise FlyApiError(operation, 0, f"no answer from {self.settings.api_url} ({last})") from None
                self._sleep(self._backoff(attempt, None))
                continue
            status = response.status_code
            if status < 400:
                return response
            retryable = status == 429 or (status >= 500 and not creates)
            if retryable and attempt < self.settings.max_attempts:
                last = f"HTTP {status}"
                self._sleep(self._backoff(attempt, response))
                response.close()
                continue
            detail = _error_text(response)
            if retryable:
                detail = f"{detail} (gave up after {attempt} attempts)"
            if status == 404:
                raise FlyNotFoundError(operation, status, detail)
            raise FlyApiError(operation, status, detail)
        raise FlyApiError(operation, 0, f"gave up after {self.settings.max_attempts} attempts ({last})")

    def _json(self, response: requests.Response, operation: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise FlyApiError(operation, response.status_code, "answer is not JSON") from None

    @staticmethod
    def _p(*parts: str) -> str:
        return "".join(f"/{quote(p, safe='')}" for p in parts)

    # --- apps -----------------------------------------------------------------------------------

    def get_app(self, app: str) -> dict[str, Any]:
        op = f"show app {app}"
        data = self._json(self.request("GET", self._p("apps", app), op), op)
        if not isinstance(data, dict) or "name" not in data:
            raise FlyApiError(op, 200, "answer has no app name")
        return data

    def delete_app(self, app: str) -> bool:
        """True if Fly accepted the delete, False if the app was already gone."""
        try:
            self.request("DELETE", self._p("apps", app), f"delete app {app}")
        except FlyNotFoundError:
            return False
        return True

    # --- machines -------------------------------------------------------------------------------

    def list_machines(self, app: str) -> list[dict[str, Any]]:
        op = f"list machines of {app}"
        data = self._json(self.request("GET", self._p("apps", app, "machines"), op), op)
        if not isinstance(data, list) or not all(isinstance(m, dict) and "id" in m for m in data):
            raise FlyApiError(op, 200, "answer is not a list of machines")
        return [m for m in data if m.get("state") not in GONE_STATES]

    def get_machine(self, app: str, machine_id: str) -> dict[str, Any]:
        op = f"show machine {machine_id} of {app}"
        data = self._json(self.request("GET", self._p("apps", app, "machines", machine_id), op), op)
        if not isinstance(data, dict):
            raise FlyApiError(op, 200, "answer is not a machine")
        return data

    def machine_state(self, app: str, machine_id: str) -> str:
        """The machine's state, or "destroyed" when Fly no longer knows it."""
        try:
            return str(self.get_machine(app, machine_id).get("state", ""))
        except FlyNotFoundError:
            return "destroyed"

    def stop_machine(self, app: str, machine_id: str, signal: str | None = None) -> bool:
        """Ask the machine to stop; False if it is already gone. Stopping a stopped machine is fine."""
        body = {"signal": signal} if signal else None
        try:
            self.request(
                "POST", self._p("apps", app, "machines", machine_id, "stop"), f"stop {machine_id} of {app}", body=body
            )
        except FlyNotFoundError:
            return False
        return True

    def start_machine(self, app: str, machine_id: str) -> bool:
        try:
            self.request("POST", self._p("apps", app, "machines", machine_id, "start"), f"start {machine_id} of {app}")
        except FlyNotFoundError:
            return False
        return True

    def delete_machine(self, app: str, machine_id: str) -> bool:
        try:
            self.request("DELETE", self._p("apps", app, "machines", machine_id), f"destroy {machine_id} of {app}")
        except FlyNotFoundError:
            return False
        return True

    def create_machine(self, app: str, request: dict[str, Any]) -> dict[str, Any]:
        op = f"create machine in {app}"
        data = self._json(self.request("POST", self._p("apps", app, "machines"), op, body=request, creates=True), op)
        if not isinstance(data, dict) or "id" not in data:
            raise FlyApiError(op, 200, "answer has no machine id")
        return data

    def wait_for_state(self, app: str, machine_id: str, wanted: frozenset[str], timeout: float | None = None) -> str:
        """Poll until the machine is in one of `wanted`; returns the state, raises FlyError on timeout."""
        deadline = self._clock() + (self.settings.state_timeout if timeout is None else timeout)
        while True:
            state = self.machine_state(app, machine_id)
            if state in wanted:
                return state
            if self._clock() >= deadline:
                raise FlyError(
                    f"Fly app {app}: machine {machine_id} is {state or 'in no state'}, "
                    f"not {'/'.join(sorted(wanted))}, after {timeout or self.settings.state_timeout:g}s"
                )
            self._sleep(self.settings.poll_interval)

    def exec_output(self, app: str, machine_id: str, command: list[str], timeout: int) -> Iterator[bytes]:
        """Run `command` in the machine; yield its stdout as it arrives.

        The published spec answers raw bytes (`application/octet-stream`); the live service answers
        `{"stdout", "stderr", "exit_code"}` JSON. Both are handled; a non-zero exit raises.
        """
        op = f"exec in {machine_id} of {app}"
        response = self.request(
            "POST",
            self._p("apps", app, "machines", machine_id, "exec"),
            op,
            body={"command": command, "timeout": timeout},
            stream=True,
        )
        with response:
            if response.headers.get("Content-Type", "").startswith("application/json"):
                data = self._json(response, op)
                if isinstance(data, dict):
                    code = data.get("exit_code", 0)
                    if code:
                        stderr = str(data.get("stderr", ""))[-300:]
                        raise FlyError(f"Fly app {app}: {command[0]} in machine {machine_id} exited {code}: {stderr}")
                    yield str(data.get("stdout", "")).encode()
                elif isinstance(data, str):
                    yield data.encode()
                else:
                    raise FlyApiError(op, response.status_code, "exec answer is neither output nor a result")
                return
            yield from response.iter_content(chunk_size=64 * 1024)

    # --- volumes and snapshots ------------------------------------------------------------------

    def list_volumes(self, app: str) -> list[dict[str, Any]]:
        op = f"list volumes of {app}"
        data = self._json(self.request("GET", self._p("apps", app, "volumes"), op), op)
        if not isinstance(data, list) or not all(isinstance(v, dict) and "id" in v for v in data):
            raise FlyApiError(op, 200, "answer is not a list of volumes")
        return [v for v in data if v.get("state") not in {"destroyed", "pending_destroy", "destroying"}]

    def get_volume(self, app: str, volume_id: str) -> dict[str, Any]:
        op = f"show volume {volume_id} of {app}"
        return dict(self._json(self.request("GET", self._p("apps", app, "volumes", volume_id), op), op))

    def set_snapshot_retention(self, app: str, volume_id: str, days: int) -> dict[str, Any]:
        if not 1 <= days <= 60:
            raise FlyError(f"Fly app {app}: snapshot retention {days} is outside 1..60 days")
        op = f"update volume {volume_id} of {app}"
        path = self._p("apps", app, "volumes", volume_id)
        return dict(self._json(self.request("POST", path, op, body={"snapshot_retention": days}), op))

    def create_volume(self, app: str, request: dict[str, Any]) -> dict[str, Any]:
        op = f"create volume in {app}"
        data = self._json(self.request("POST", self._p("apps", app, "volumes"), op, body=request, creates=True), op)
        if not isinstance(data, dict) or "id" not in data:
            raise FlyApiError(op, 200, "answer has no volume id")
        return data

    def delete_volume(self, app: str, volume_id: str) -> bool:
        try:
            self.request("DELETE", self._p("apps", app, "volumes", volume_id), f"delete volume {volume_id} of {app}")
        except FlyNotFoundError:
            return False
        return True

    def list_snapshots(self, app: str, volume_id: str) -> list[dict[str, Any]]:
        op = f"list snapshots of {volume_id} in {app}"
        data = self._json(self.request("GET", self._p("apps", app, "volumes", volume_id, "snapshots"), op), op)
        if not isinstance(data, list) or not all(isinstance(s, dict) and "id" in s for s in data):
            raise FlyApiError(op, 200, "answer is not a list of snapshots")
        return data

    def create_snapshot(self, app: str, volume_id: str) -> dict[str, Any]:
        """Take an on-demand snapshot and wait until Fly lists it as created; returns it.

        The create call answers 200 with no body, so the new snapshot is the one that was not in
        the list before the call.
        """
        before = {s["id"] for s in self.list_snapshots(app, volume_id)}
        path = self._p("apps", app, "volumes", volume_id, "snapshots")
        self.request("POST", path, f"snapshot volume {volume_id} of {app}", creates=True)
        deadline = self._clock() + self.settings.state_timeout
        while True:
            new = [s for s in self.list_snapshots(app, volume_id) if s["id"] not in before]
            done = [s for s in new if s.get("status") in {"created", "complete", "completed"}]
            failed = [s for s in new if s.get("status") in {"failed", "error"}]
            if done:
                return done[-1]
            if failed:
                raise FlyError(f"Fly app {app}: snapshot {failed[-1]['id']} of volume {volume_id} failed")
            if self._clock() >= deadline:
                raise FlyError(
                    f"Fly app {app}: no finished snapshot of volume {volume_id} within {self.settings.state_timeout:g}s"
                )
            self._sleep(self.settings.poll_interval)

    # --- IP addresses (GraphQL) -----------------------------------------------------------------

    def _graphql(self, query: str, variables: dict[str, Any], operation: str) -> dict[str, Any]:
        response = self.request(
            "POST", "", operation, body={"query": query, "variables": variables}, url=self.settings.graphql_url
        )
        data = self._json(response, operation)
        if not isinstance(data, dict):
            raise FlyApiError(operation, response.status_code, "GraphQL answer is not an object")
        errors = data.get("errors") or []
        if errors:
            message = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors)
            if "not find" in message.lower() or "not found" in message.lower():
                raise FlyNotFoundError(operation, 404, message)
            raise FlyApiError(operation, response.status_code, message)
        return dict(data.get("data") or {})

    def list_ips(self, app: str) -> list[dict[str, Any]]:
        """The app's public and private IP addresses: [{id, address, type}]; [] if the app is gone."""
        query = "query($appName: String!) { app(name: $appName) { ipAddresses { nodes { id address type } } } }"
        try:
            data = self._graphql(query, {"appName": app}, f"list IPs of {app}")
        except FlyNotFoundError:
            return []
        nodes = ((data.get("app") or {}).get("ipAddresses") or {}).get("nodes") or []
        return [n for n in nodes if isinstance(n, dict) and "id" in n]

    def release_ip(self, app: str, ip_id: str) -> bool:
        query = "mutation($input: ReleaseIPAddressInput!) { releaseIpAddress(input: $input) { clientMutationId } }"
        try:
            self._graphql(query, {"input": {"ipAddressId": ip_id}}, f"release IP {ip_id} of {app}")
        except FlyNotFoundError:
            return False
        return True
