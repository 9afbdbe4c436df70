"""The `load-test` exit check's engine: a bounded Locust run against the stack's public hostnames.

`run(plan)` starts `python -m migrate.loadtest` with the plan as JSON on stdin and reads the report
as JSON from its stdout. Locust runs in that child process because importing it monkey-patches the
standard library for gevent (sockets, ssl, threads), which the caller (gRPC, the Automation API)
must not inherit.

Bounds, each enforced in code, not left to the phase file:
- the users, duration and request budget are capped (components/config/phases.py, LOAD_TEST_MAX_*), and
  `Plan` refuses anything above the caps before a process starts;
- every request first takes a token from the budget, so no more than `max_requests` are ever sent;
- the child stops its runner at `duration_seconds`, or as soon as the budget is spent and the last
  request has answered; the parent kills the child `GRACE_SECONDS` after the duration if it has not
  exited by then;
- targets are `https://<public hostname><path>` only, redirects are not followed, and `connect_to`
  may pin only those hostnames (to a test server, as `curl --connect-to` does).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
GRACE_SECONDS = 30.0  # Locust's start-up and the last in-flight requests, past the planned duration
REQUEST_TIMEOUT_SECONDS = 30.0  # one request; never longer than the whole test
# The Python that runs Locust; the project venv has it (requirements.txt).
PYTHON_ENV = "GPU_PLATFORM_LOCUST_PYTHON"


class LoadTestError(Exception):
    """The load test could not run (bad plan, Locust missing, the child crashed or overran)."""


@dataclass(frozen=True)
class Plan:
    hosts: tuple[str, ...]  # the stack's public hostnames: the only hosts requested
    paths: tuple[str, ...]
    users: int
    spawn_rate: float
    duration_seconds: float
    max_requests: int
    think_seconds: float
    verify: str | bool = True  # TLS verification: True, or a CA bundle path
    connect_to: Mapping[str, str] = field(default_factory=dict)  # "host:443" -> "address:port"

    def __post_init__(self) -> None:
        # Imported here, not at the top: the child imports Locust (and gevent's patches) first, and
        # this module loads pydantic, pulumi and grpc (+436 modules, 0.37 s) that must come after them.
        from components.config.phases import (  # noqa: PLC0415
            LOAD_TEST_MAX_REQUESTS,
            LOAD_TEST_MAX_SECONDS,
            LOAD_TEST_MAX_USERS,
        )

        problems = []
        if not 1 <= self.users <= LOAD_TEST_MAX_USERS:
            problems.append(f"users {self.users} outside 1-{LOAD_TEST_MAX_USERS}")
        if not 0 < self.duration_seconds <= LOAD_TEST_MAX_SECONDS:
            problems.append(f"durationSeconds {self.duration_seconds} outside (0, {LOAD_TEST_MAX_SECONDS}]")
        if not 1 <= self.max_requests <= LOAD_TEST_MAX_REQUESTS:
            problems.append(f"maxRequests {self.max_requests} outside 1-{LOAD_TEST_MAX_REQUESTS}")
        if not self.hosts or not self.paths:
            problems.append("no public hostname or path to load")
        # "//other.host/" would still parse as a path of the URL, but say another host to a reader.
        problems += [
            f"{p!r} is not a path on the stack's hostnames"
            for p in self.paths
            if not p.startswith("/") or p.startswith("//")
        ]
        for url in self.targets():
            parts = urlsplit(url)
            if parts.scheme != "https" or parts.hostname not in self.hosts or parts.port is not None:
                problems.append(f"{url} is not https on one of the stack's hostnames")
        allowed = {f"{host}:443" for host in self.hosts}
        stray = sorted(set(self.connect_to) - allowed)
        if stray:
            problems.append(f"connect_to may pin only the stack's hostnames on 443, not {stray}")
        if problems:
            raise LoadTestError("load test refused: " + "; ".join(problems))

    @classmethod
    def from_thresholds(
        cls, limits: Any, hosts: Sequence[str], verify: str | bool = True, connect_to: Mapping[str, str] | None = None
    ) -> Plan:
        """A plan from a phase's `load-test` thresholds (components.phases.LoadTestThresholds)."""
        return cls(
            hosts=tuple(hosts),
            paths=tuple(limits.paths),
            users=limits.users,
            spawn_rate=limits.spawn_rate,
            duration_seconds=limits.duration_seconds,
            max_requests=limits.max_requests,
            think_seconds=limits.think_seconds,
            verify=verify,
            connect_to=dict(connect_to or {}),
        )

    def targets(self) -> list[str]:
        return [f"https://{host}{path}" for host in self.hosts for path in self.paths]

    def request_timeout(self) -> float:
        return min(REQUEST_TIMEOUT_SECONDS, self.duration_seconds)

    def to_json(self) -> str:
        doc = asdict(self)
        doc["connect_to"] = dict(self.connect_to)
        return json.dumps(doc)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        doc = json.loads(text)
        doc["hosts"], doc["paths"] = tuple(doc["hosts"]), tuple(doc["paths"])
        return cls(**doc)


@dataclass(frozen=True)
class Report:
    requests: int  # answered, as Locust counted them
    failures: int  # HTTP >= 400 or no answer
    sent: int  # budget tokens taken: never more than the plan's max_requests
    p50: float  # seconds
    p95: float
    p99: float
    rps: float
    elapsed: float  # seconds from the first user's start to the stop
    stopped_by: str  # "duration" or "budget"
    errors: tuple[str, ...] = ()  # the most frequent failures, "<count>x <what>"

    @property
    def error_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 1.0

    def summary(self) -> str:
        return (
            f"{self.requests} requests in {self.elapsed:.1f}s ({self.rps:.1f}/s, stopped by {self.stopped_by}), "
            f"p50 {self.p50:.3g}s p95 {self.p95:.3g}s p99 {self.p99:.3g}s, errors {self.error_ratio:.2%}"
            + (f" [{'; '.join(self.errors)}]" if self.errors else "")
        )

    def problems(self, limits: Any) -> list[str]:
        """What misses the phase's targets (LoadTestThresholds); empty when the run passes."""
        if self.requests == 0:
            return ["no request was answered"]
        problems = []
        if self.p95 > limits.max_p95_seconds:
            problems.append(f"p95 {self.p95:.3g}s > {limits.max_p95_seconds:g}s")
        if self.error_ratio > limits.max_error_ratio:
            problems.append(f"errors {self.error_ratio:.2%} > {limits.max_error_ratio:.2%}")
        return problems


def run(plan: Plan) -> Report:
    """Run `plan` in a child process and return its report; LoadTestError if it cannot."""
    python = os.environ.get(PYTHON_ENV) or sys.executable
    try:
        child = subprocess.run(
            [python, "-m", "migrate.loadtest"],
            input=plan.to_json(),
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=plan.duration_seconds + GRACE_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise LoadTestError(
            f"the load test did not stop within {plan.duration_seconds + GRACE_SECONDS:g}s; it was killed"
        ) from None
    except OSError as exc:
        raise LoadTestError(f"cannot start {python}: {exc.strerror}") from None
    last = (child.stdout.strip().splitlines() or [""])[-1]
    try:
        doc = json.loads(last)
    except ValueError:
        tail = " | ".join(child.stderr.strip().splitlines()[-3:])
        raise LoadTestError(
            f"the load test exited {child.returncode} without a report: {tail or 'no output'}"
        ) from None
    if "error" in doc:
        raise LoadTestError(str(doc["error"]))
    doc["errors"] = tuple(doc.get("errors") or ())
    return Report(**doc)


# --- the child process: Locust, headless ---------------------------------------------------------


class _Budget:
    """Request tokens. gevent switches only at I/O, so take() and done() need no lock."""

    def __init__(self, limit: int) -> None:
        self.limit, self.taken, self.in_flight = limit, 0, 0

    def take(self) -> bool:
        if self.taken >= self.limit:
            return False
        self.taken += 1
        self.in_flight += 1
        return True

    def done(self) -> None:
        self.in_flight -= 1

    def spent(self) -> bool:
        return self.taken >= self.limit and self.in_flight == 0


def _pin_addresses(connect_to: Mapping[str, str]) -> None:
    """Resolve the pinned "host:port" pairs to their "address:port"; every other name resolves as usual."""
    if not connect_to:
        return
    resolve = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        pinned = connect_to.get(f"{host}:{port}")
        if pinned is not None:
            address, _, pinned_port = pinned.rpartition(":")
            return resolve(address, int(pinned_port), *args, **kwargs)
        return resolve(host, port, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo


def _locust_run(plan: Plan) -> dict[str, Any]:
    # Only in the child (see the module docstring): importing Locust monkey-patches sockets, ssl and
    # threads for gevent (+522 modules, 0.6 s), which the parent must never inherit.
    import gevent  # noqa: PLC0415
    from locust import HttpUser, constant, task  # noqa: PLC0415
    from locust.env import Environment  # noqa: PLC0415
    from locust.exception import StopUser  # noqa: PLC0415

    _pin_addresses(plan.connect_to)
    budget = _Budget(plan.max_requests)
    targets = plan.targets()

    class Visitor(HttpUser):
        host = targets[0]
        wait_time = constant(plan.think_seconds)

        def on_start(self) -> None:
            self.client.verify = plan.verify
            self.turn = id(self) % len(targets)  # users start on different targets

        @task
        def visit(self) -> None:
            if not budget.take():
                raise StopUser()
            url = targets[self.turn % len(targets)]
            self.turn += 1
            try:
                self.client.get(url, name=url, allow_redirects=False, timeout=plan.request_timeout())
            finally:
                budget.done()

    env = Environment(user_classes=[Visitor])
    runner = env.create_local_runner()
    started = time.monotonic()
    runner.start(plan.users, spawn_rate=plan.spawn_rate)
    stopped_by = "duration"
    while time.monotonic() - started < plan.duration_seconds:
        if budget.spent():
            stopped_by = "budget"
            break
        gevent.sleep(0.05)
    runner.quit()
    elapsed = time.monotonic() - started
    total = env.stats.total
    errors = sorted(env.stats.errors.values(), key=lambda e: -e.occurrences)[:3]
    return {
        "requests": total.num_requests,
        "failures": total.num_failures,
        "sent": budget.taken,
        "p50": total.get_response_time_percentile(0.5) / 1000,
        "p95": total.get_response_time_percentile(0.95) / 1000,
        "p99": total.get_response_time_percentile(0.99) / 1000,
        "rps": total.num_requests / elapsed if elapsed > 0 else 0.0,
        "elapsed": round(elapsed, 3),
        "stopped_by": stopped_by,
        "errors": [f"{e.occurrences}x {e.name}: {str(e.error)[:120]}" for e in errors],
    }


def main() -> int:
    try:
        # First: gevent must patch sockets, ssl and threads before any other module holds them.
        import locust  # noqa: F401, PLC0415, RUF100
    except ImportError:
        fix = f"{sys.executable} -m pip install -r requirements.txt (or `make venv`)"
        print(json.dumps({"error": f"Locust is not installed for {sys.executable}: run {fix}"}))
        return 2
    try:
        plan = Plan.from_json(sys.stdin.read())
    except (LoadTestError, ValueError, TypeError, KeyError) as exc:
        print(json.dumps({"error": str(exc)}))
        return 2
    print(json.dumps(_locust_run(plan)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
