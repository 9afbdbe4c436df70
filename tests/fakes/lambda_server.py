"""A fake Lambda Cloud API: a real HTTP server on 127.0.0.1 (random port) with switchable faults.

It keeps instances, SSH keys and firewall rulesets in memory and answers in the shapes of the
published spec (`specs/lambda-cloud-openapi-1.8.3.json` of tools/upstream.lock, `make upstream`). Every
request it receives and every response it sends is validated with openapi-core; problems are
collected in `violations` (tests assert the list is empty). Statuses the spec does not document for
an operation (429, 5xx faults) are checked against the error envelope the spec's introduction
describes, with `ApiErrorInternal` for 5xx.

State changes are counted, not timed: an instance becomes `active` after `boot_polls` reads of it,
so tests never wait on a clock.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema

from components.catalog.gpus import LAMBDA_INSTANCE_TYPES, LAMBDA_REGIONS
from tests.fakes.openapi import OpenApiRequest, OpenApiResponse, describe, load_spec, spec_file

SPEC_NAME = "lambda-cloud-openapi-1.8.3.json"  # specs/ in the verified cache (tools/fetch.py)
PREFIX = "/api/v1"
SPEC_HOST = "https://cloud.lambda.ai"  # the spec's server; validation pretends requests went there

INSUFFICIENT = "instance-operations/launch/insufficient-capacity"


@dataclass
class Faults:
    """Switchable misbehaviour. Counters are consumed as requests arrive."""

    no_capacity: set[str] = field(default_factory=set)  # regions (or "region/type") that answer insufficient capacity
    rate_limited: list[int | None] = field(default_factory=list)  # next requests get 429, Retry-After if not None
    server_errors: dict[str, int] = field(default_factory=dict)  # "METHOD /path-prefix" -> how many 500s first
    launch_hang_s: float = 0.0  # launch succeeds server-side, then answers this much later
    stuck_booting: bool = False
    boot_to: str = "active"  # what a booting instance turns into (e.g. "unhealthy")


@dataclass
class Recorded:
    method: str
    path: str
    body: Any
    status: int


class FakeLambda:
    """The fake API. Use `with fake_lambda() as fake:`; `fake.base_url` is what the client needs."""

    def __init__(self, api_key: str = "fake-lambda-key", spec_path: Path | None = None) -> None:
        self.api_key = api_key
        self.faults = Faults()
        self.boot_polls = 1
        self.terminate_polls = 1
        self.instances: dict[str, dict[str, Any]] = {}
        self.ssh_keys: dict[str, dict[str, Any]] = {}
        self.rulesets: dict[str, dict[str, Any]] = {}
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        self.launches = 0  # instances actually created
        self._polls: dict[str, int] = {}
        self._lock = threading.RLock()
        self._ip = 20
        # Always validating: a missing spec fails here with the command that fetches it.
        self._spec: tuple[Any, dict[str, Any]] | None = load_spec(str(spec_path or spec_file(SPEC_NAME)))
        self.validating = self._spec is not None
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}{PREFIX}"

    def start(self) -> FakeLambda:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # --- helpers for tests -------------------------------------------------------------------

    def calls(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path == PREFIX + path]

    def live_instances(self) -> list[dict[str, Any]]:
        return [i for i in self.instances.values() if i["status"] not in ("terminated", "preempted")]

    def set_status(self, instance_id: str, status: str) -> None:
        with self._lock:
            self.instances[instance_id]["status"] = status

    # --- validation --------------------------------------------------------------------------

    def _validate_request(self, req: OpenApiRequest) -> None:
        if self._spec is None:
            return
        try:
            self._spec[0].validate_request(req)
        except Exception as exc:
            self.violations.append(f"request {req.method.upper()} {req.path}: {describe(exc)}")

    def _validate_response(self, req: OpenApiRequest, status: int, body: bytes, headers: dict[str, str]) -> None:
        if self._spec is None:
            return
        if status == 429 or status >= 500:
            self._validate_envelope(req, status, json.loads(body))
            return
        try:
            self._spec[0].validate_response(req, OpenApiResponse(status, body, headers))
        except Exception as exc:
            self.violations.append(f"response {status} to {req.method.upper()} {req.path}: {describe(exc)}")

    def _validate_envelope(self, req: OpenApiRequest, status: int, doc: Any) -> None:
        raw = self._spec[1] if self._spec else {}
        if status >= 500:
            error_schema = raw["components"]["schemas"]["ApiErrorInternal"]
        else:  # the generic error object of the spec's "Error responses" section
            error_schema = {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "suggestion": {"type": "string"},
                },
                "additionalProperties": False,
            }
        schema = {
            "type": "object",
            "required": ["error"],
            "properties": {"error": error_schema},
            "additionalProperties": False,
        }
        try:
            jsonschema.validate(doc, schema)
        except jsonschema.ValidationError as exc:
            self.violations.append(f"response {status} to {req.method.upper()} {req.path}: {exc.message}")

    # --- shapes ------------------------------------------------------------------------------

    def _next_ip(self) -> tuple[str, str]:
        self._ip += 1
        return f"198.51.100.{self._ip}", f"10.0.2.{self._ip}"

    @staticmethod
    def _region(name: str) -> dict[str, str]:
        return {"name": name, "description": f"Region {name}"}

    @staticmethod
    def _itype(name: str) -> dict[str, Any]:
        t = LAMBDA_INSTANCE_TYPES[name]
        return {
            "name": name,
            "description": f"{t.gpu_count}x {t.gpu}",
            "gpu_description": t.gpu,
            "price_cents_per_hour": 100 * t.gpu_count,
            "specs": {
                "vcpus": 30 * t.gpu_count,
                "memory_gib": 200 * t.gpu_count,
                "storage_gib": 1400,
                "gpus": t.gpu_count,
            },
        }

    def _public_instance(self, inst: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in inst.items() if not k.startswith("_")}
        terminating = inst["status"] in ("terminating", "terminated", "preempted")
        action: dict[str, Any] = {"available": not terminating}
        if terminating:
            action = {"available": False, "reason_code": "vm-is-terminating", "reason_description": "terminating"}
        out["actions"] = {k: dict(action) for k in ("migrate", "rebuild", "restart", "cold_reboot", "terminate")}
        return out

    def _poll(self, inst: dict[str, Any]) -> None:
        """A read of an instance moves it along its life cycle."""
        iid = inst["id"]
        self._polls[iid] = self._polls.get(iid, 0) + 1
        if inst["status"] == "booting" and not self.faults.stuck_booting and self._polls[iid] >= self.boot_polls:
            inst["status"] = self.faults.boot_to
        elif inst["status"] == "terminating" and self._polls[iid] >= self.terminate_polls:
            inst["status"] = "terminated"

    # --- routing -----------------------------------------------------------------------------

    @staticmethod
    def _error(status: int, code: str, message: str, suggestion: str | None = None) -> tuple[int, Any]:
        err: dict[str, str] = {"code": code, "message": message}
        if suggestion is not None:
            err["suggestion"] = suggestion
        return status, {"error": err}

    def _route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        parts = path.removeprefix(PREFIX).strip("/").split("/")
        with self._lock:
            if parts == ["instances"] and method == "GET":
                for inst in self.instances.values():
                    self._poll(inst)
                live = [i for i in self.instances.values() if i["status"] != "terminated"]
                return 200, {"data": [self._public_instance(i) for i in live]}
            if parts[0] == "instances" and len(parts) == 2:
                found = self.instances.get(parts[1])
                if found is None:
                    return self._error(404, "global/object-does-not-exist", "Specified instance does not exist.")
                inst = found
                if method == "GET":
                    self._poll(inst)
                    return 200, {"data": self._public_instance(inst)}
                if method == "POST":
                    if "name" in body:
                        inst["name"] = body["name"]
                    return 200, {"data": self._public_instance(inst)}
            if parts == ["instance-operations", "launch"] and method == "POST":
                return self._launch(body)
            if parts == ["instance-operations", "terminate"] and method == "POST":
                done = []
                for iid in body["instance_ids"]:
                    target = self.instances.get(iid)
                    if target is None:
                        return self._error(404, "global/object-does-not-exist", "Specified instance does not exist.")
                    inst = target
                    if inst["status"] not in ("terminated", "preempted"):
                        inst["status"] = "terminating"
                        self._polls[iid] = 0
                    done.append(self._public_instance(inst))
                return 200, {"data": {"terminated_instances": done}}
            if parts == ["ssh-keys"]:
                if method == "GET":
                    return 200, {"data": list(self.ssh_keys.values())}
                if method == "POST":
                    if any(k["name"] == body["name"] for k in self.ssh_keys.values()):
                        return self._error(400, "global/invalid-parameters", "An SSH key with this name exists.")
                    kid = uuid.uuid4().hex
                    self.ssh_keys[kid] = {"id": kid, "name": body["name"], "public_key": body["public_key"]}
                    return 200, {"data": self.ssh_keys[kid]}
            if parts[0] == "ssh-keys" and len(parts) == 2 and method == "DELETE":
                if self.ssh_keys.pop(parts[1], None) is None:
                    return self._error(400, "global/invalid-parameters", "No SSH key with this id.")
                return 200, {"data": {}}
            if parts == ["firewall-rulesets"]:
                if method == "GET":
                    return 200, {"data": [self._ruleset(r) for r in self.rulesets.values()]}
                if method == "POST":
                    rid = uuid.uuid4().hex
                    self.rulesets[rid] = {
                        "id": rid,
                        "name": body["name"],
                        "region": self._region(body["region"]),
                        "rules": body["rules"],
                        "created": "2026-01-01T00:00:00Z",
                    }
                    return 200, {"data": self._ruleset(self.rulesets[rid])}
            if parts[0] == "firewall-rulesets" and len(parts) == 2:
                rs = self.rulesets.get(parts[1])
                if rs is None:
                    return self._error(
                        404,
                        "global/object-does-not-exist",
                        "Firewall ruleset does not exist or you do not have permission to access it.",
                        "Check your firewall ruleset ID and try again.",
                    )
                if method == "GET":
                    return 200, {"data": self._ruleset(rs)}
                if method == "PATCH":
                    rs.update({k: body[k] for k in ("name", "rules") if k in body})
                    return 200, {"data": self._ruleset(rs)}
                if method == "DELETE":
                    if self._ruleset(rs)["instance_ids"]:
                        return self._error(
                            400,
                            "firewall-rulesets/firewall-ruleset-in-use",
                            "Firewall ruleset is in use by one or more instances.",
                            "Terminate all instances that are using the ruleset before deleting it.",
                        )
                    del self.rulesets[parts[1]]
                    return 200, {"data": {}}
        return self._error(404, "global/object-does-not-exist", f"no route for {method} {path}")

    def _ruleset(self, rs: dict[str, Any]) -> dict[str, Any]:
        users = [
            iid
            for iid, inst in self.instances.items()
            if inst["status"] != "terminated" and any(r["id"] == rs["id"] for r in inst.get("firewall_rulesets", []))
        ]
        return {**rs, "instance_ids": users}

    def _launch(self, body: dict[str, Any]) -> tuple[int, Any]:
        region, itype = body["region_name"], body["instance_type_name"]
        if region not in LAMBDA_REGIONS or itype not in LAMBDA_INSTANCE_TYPES:
            return self._error(400, "global/invalid-parameters", f"unknown region or type {region}/{itype}")
        if region in self.faults.no_capacity or f"{region}/{itype}" in self.faults.no_capacity:
            return self._error(400, INSUFFICIENT, "Not enough capacity to fulfill launch request.")
        if len(body["ssh_key_names"]) != 1:
            return self._error(400, "global/invalid-parameters", "Exactly one SSH key must be specified.")
        if not any(k["name"] == body["ssh_key_names"][0] for k in self.ssh_keys.values()):
            return self._error(
                404, "global/object-does-not-exist", "SSH key not found.", "Add the SSH key before launching."
            )
        for entry in body.get("firewall_rulesets", []):
            rs = self.rulesets.get(entry["id"])
            if rs is None or rs["region"]["name"] != region:
                return self._error(400, "global/invalid-parameters", f"ruleset {entry['id']} is not in {region}")
        iid = uuid.uuid4().hex
        ip, private_ip = self._next_ip()
        self.instances[iid] = {
            "id": iid,
            "name": body.get("name", ""),
            "ip": ip,
            "private_ip": private_ip,
            "status": "booting",
            "ssh_key_names": list(body["ssh_key_names"]),
            "file_system_names": [],
            "region": self._region(region),
            "instance_type": self._itype(itype),
            "hostname": body.get("hostname", ip.replace(".", "-")),
            "tags": [dict(t) for t in body.get("tags", [])],
            "firewall_rulesets": [dict(r) for r in body.get("firewall_rulesets", [])],
            "_user_data": body.get("user_data"),
        }
        self._polls[iid] = 0
        self.launches += 1
        return 200, {"data": {"instance_ids": [iid]}}

    # --- HTTP --------------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Buffered: headers and body leave in one segment (no Nagle / delayed-ACK stalls).
            wbufsize = -1

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _serve(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items()}
                req = OpenApiRequest(SPEC_HOST, self.command, split.path, split.query, headers=headers, body=raw)
                fake._validate_request(req)
                body = json.loads(raw) if raw else {}
                status, doc, extra = fake._answer(self.command, split.path, body, headers)
                payload = json.dumps(doc).encode()
                out_headers = {"Content-Type": "application/json", **extra}
                fake._validate_response(req, status, payload, out_headers)
                fake.requests.append(Recorded(self.command, split.path, body, status))
                if split.path.endswith("/instance-operations/launch") and status == 200 and fake.faults.launch_hang_s:
                    time.sleep(fake.faults.launch_hang_s)
                try:
                    self.send_response(status)
                    for k, v in out_headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the launch-timeout fault)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve  # noqa: N815 - http.server names

        return Handler

    def _answer(self, method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        auth = headers.get("Authorization", "")
        if auth != f"Bearer {self.api_key}":
            status, doc = self._error(
                401,
                "global/invalid-api-key",
                "API key was invalid, expired, or deleted.",
                "Check your API key or create a new one, then try again.",
            )
            return status, doc, {}
        with self._lock:
            if self.faults.rate_limited:
                after = self.faults.rate_limited.pop(0)
                status, doc = self._error(429, "global/too-many-requests", "Too many requests.")
                return status, doc, ({"Retry-After": str(after)} if after is not None else {})
            for key, count in list(self.faults.server_errors.items()):
                want_method, want_path = key.split(" ", 1)
                if count > 0 and method == want_method and path.startswith(PREFIX + want_path):
                    self.faults.server_errors[key] = count - 1
                    status, doc = self._error(
                        500,
                        "global/internal-error",
                        "An internal server error occurred.",
                        "Try again later. Contact Support if the problem persists.",
                    )
                    return status, doc, {}
        status, doc = self._route(method, path, body)
        return status, doc, {}


@contextmanager
def fake_lambda(api_key: str = "fake-lambda-key", spec_path: Path | None = None) -> Iterator[FakeLambda]:
    fake = FakeLambda(api_key=api_key, spec_path=spec_path).start()
    try:
        yield fake
    finally:
        fake.close()


class FakeClock:
    """Monotonic time that only moves when someone sleeps: pacing and backoff cost no real time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return self.now

    # A provider carrying this clock is pickled into the provider host (tests/provider_host.py):
    # the lock is not state, so it is left out and made anew there.
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += max(0.0, seconds)
