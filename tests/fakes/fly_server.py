"""A fake Fly.io Machines API: a real HTTP server on 127.0.0.1 (random port) with switchable faults.

It keeps apps, machines, volumes (with file contents), snapshots and IP addresses in memory and
answers in the shapes of the published spec (`specs/fly-machines-openapi.yaml` of tools/upstream.lock,
`make upstream`). Every request it receives is validated with openapi-core, and so is every response
whose status the spec documents for that operation; problems land in `violations` (tests assert it
is empty). The spec documents no 401/404/412/429/5xx; those answers use the spec's ErrorResponse
shape and are checked against that schema instead. `/graphql` (IP addresses, which the Machines API
does not cover) is outside the spec and only answers the two operations the client sends.

Machines move on reads, not on a clock: a stopping machine is `stopped` after `stop_polls` reads of
it, so tests never wait. Every request is kept in `requests`, to assert on what was (not) called.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import re
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema

from tests.fakes.openapi import OpenApiRequest, OpenApiResponse, describe, load_spec, spec_file

SPEC_NAME = "fly-machines-openapi.yaml"  # specs/ in the verified cache (tools/fetch.py)
PREFIX = "/v1"
SPEC_HOST = "https://api.machines.dev"  # the spec's server is https://api.machines.dev/v1
EXPORT_MARKER = b"#FLY-EXPORT-OK"


@dataclass
class Faults:
    """Switchable misbehaviour, consumed as requests arrive."""

    rate_limited: list[str | None] = field(default_factory=list)  # next requests get 429 (Retry-After value)
    server_errors: dict[str, int] = field(default_factory=dict)  # "METHOD /v1/path-regex" -> how many 500s first
    wont_stop: set[str] = field(default_factory=set)  # machine ids that ignore stop, even SIGKILL
    truncate_export: bool = False  # exec streams half the tarball and no end marker


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    body: Any
    status: int


def _tar_gz(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name=f"./{name}")
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


class FakeFly:
    """The fake API. Use `with fake_fly() as fake:`; `fake.api_url` / `fake.graphql_url` for the client."""

    def __init__(self, token: str = "fake-fly-token", spec_path: Path | None = None) -> None:
        self.token = token
        self.faults = Faults()
        self.stop_polls = 1
        self.snapshot_polls = 1
        self.apps: dict[str, dict[str, Any]] = {}
        self.machines: dict[str, dict[str, dict[str, Any]]] = {}
        self.volumes: dict[str, dict[str, dict[str, Any]]] = {}
        self.snapshots: dict[str, list[dict[str, Any]]] = {}
        self.ips: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        self._polls: dict[str, int] = {}
        self._seq = 0
        self._lock = threading.RLock()
        # Always validating: a missing spec fails here with the command that fetches it.
        self._spec: tuple[Any, dict[str, Any]] | None = load_spec(str(spec_path or spec_file(SPEC_NAME)))
        self.validating = self._spec is not None
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def base(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        return self.base + PREFIX

    @property
    def graphql_url(self) -> str:
        return self.base + "/graphql"

    def start(self) -> FakeFly:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # --- building the world ----------------------------------------------------------------------

    def _id(self, prefix: str = "") -> str:
        self._seq += 1
        return f"{prefix}{self._seq:014x}"

    def add_app(
        self,
        name: str,
        *,
        org: str = "example",
        machines: tuple[str, ...] = ("started",),
        volume_files: dict[str, bytes] | None = None,
        ips: tuple[str, ...] = ("203.0.113.10",),
        retention: int = 5,
    ) -> dict[str, list[str]]:
        """An app with machines in the given states; a volume (on the first machine) when files are given."""
        with self._lock:
            self.apps[name] = {
                "id": self._id("app"),
                "name": name,
                "organization": {"name": org.title(), "slug": org},
                "status": "deployed",
            }
            self.machines[name], self.volumes[name] = {}, {}
            volume_ids = []
            if volume_files is not None:
                vid = self._id("vol_")
                self.volumes[name][vid] = {
                    "id": vid,
                    "name": "data",
                    "region": "iad",
                    "size_gb": 1,
                    "state": "created",
                    "encrypted": True,
                    "fstype": "ext4",
                    "snapshot_retention": retention,
                    "attached_machine_id": None,
                    "created_at": "2025-01-01T00:00:00Z",
                    "_files": dict(volume_files),
                }
                self.snapshots[vid] = []
                volume_ids.append(vid)
            machine_ids = []
            for i, state in enumerate(machines):
                mid = self._id()
                mounts = [{"volume": volume_ids[0], "path": "/data"}] if i == 0 and volume_ids else []
                self.machines[name][mid] = {
                    "id": mid,
                    "name": f"{name}-{i}",
                    "state": state,
                    "region": "iad",
                    "instance_id": self._id("inst"),
                    "private_ip": f"fdaa:0:1::{i + 2}",
                    "config": {"image": f"registry.fly.io/{name}:v1", "mounts": mounts, "env": {"APP": name}},
                    "created_at": "2025-01-01T00:00:00Z",
                    "updated_at": "2025-01-01T00:00:00Z",
                }
                if mounts:
                    self.volumes[name][volume_ids[0]]["attached_machine_id"] = mid
                machine_ids.append(mid)
            self.ips[name] = [{"id": self._id("ip_"), "address": a, "type": "v4"} for a in ips]
            return {"machines": machine_ids, "volumes": volume_ids}

    # --- helpers for tests -----------------------------------------------------------------------

    def calls(self, method: str, pattern: str, since: int = 0) -> list[Recorded]:
        """Requests (from request `since` on) whose path without /v1 matches the regex `pattern` in full."""
        rx = re.compile(pattern)
        return [r for r in self.requests[since:] if r.method == method and rx.fullmatch(r.path.removeprefix(PREFIX))]

    def destructive_calls(self, app: str, since: int = 0) -> list[Recorded]:
        """Every stop, machine/volume/app delete and IP release that reached `app` (from request `since` on)."""
        stop = re.compile(f"/apps/{re.escape(app)}/machines/[^/]+/stop")
        out = []
        for r in self.requests[since:]:
            path = r.path.removeprefix(PREFIX)
            stopped = r.method == "POST" and stop.fullmatch(path)
            deleted = r.method == "DELETE" and path.startswith(f"/apps/{app}")
            released = r.path == "/graphql" and "releaseIpAddress" in json.dumps(r.body)
            if stopped or deleted or released:
                out.append(r)
        return out

    def state_of(self, app: str, machine_id: str) -> str:
        return str(self.machines[app][machine_id]["state"])

    # --- validation ------------------------------------------------------------------------------

    def _validate_request(self, req: OpenApiRequest) -> None:
        if self._spec is None:
            return
        try:
            self._spec[0].validate_request(req)
        except Exception as exc:
            self.violations.append(f"request {req.method.upper()} {req.path}: {describe(exc)}")

    def _documented(self, req: OpenApiRequest, status: int) -> bool:
        raw = self._spec[1] if self._spec else {}
        for template, ops in raw.get("paths", {}).items():
            rx = "^" + PREFIX + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
            if re.match(rx, req.path) and req.method in ops:
                return str(status) in ops[req.method].get("responses", {})
        return False

    def _validate_response(self, req: OpenApiRequest, status: int, body: bytes, content_type: str) -> None:
        if self._spec is None:
            return
        if not self._documented(req, status):
            schema = self._spec[1]["components"]["schemas"]["ErrorResponse"]
            try:
                doc = json.loads(body)
                jsonschema.validate(doc, schema)
                if not isinstance(doc.get("error"), str):
                    raise jsonschema.ValidationError("error is not a string")
            except (ValueError, jsonschema.ValidationError) as exc:
                self.violations.append(f"response {status} to {req.method.upper()} {req.path}: {exc}")
            return
        declared = self._declared_content(req, status)
        if declared == {}:
            # `content: {}`: the spec promises no body; openapi-core cannot express that check.
            if body:
                self.violations.append(
                    f"response {status} to {req.method.upper()} {req.path}: body where none is declared"
                )
            return
        if content_type == "application/octet-stream":
            # Raw bytes: openapi-core hands the schema `bytes`, which never matches `type: string`.
            if content_type not in declared:
                self.violations.append(
                    f"response {status} to {req.method.upper()} {req.path}: undeclared {content_type}"
                )
            return
        try:
            self._spec[0].validate_response(
                req, OpenApiResponse(status, body, {"Content-Type": content_type} if content_type else {})
            )
        except Exception as exc:
            self.violations.append(f"response {status} to {req.method.upper()} {req.path}: {describe(exc)}")

    def _declared_content(self, req: OpenApiRequest, status: int) -> dict[str, Any]:
        raw = self._spec[1] if self._spec else {}
        for template, ops in raw.get("paths", {}).items():
            rx = "^" + PREFIX + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
            if re.match(rx, req.path) and req.method in ops:
                return dict(ops[req.method]["responses"][str(status)].get("content") or {})
        return {}

    # --- shapes ----------------------------------------------------------------------------------

    @staticmethod
    def _public(obj: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in obj.items() if not k.startswith("_") and v is not None}

    @staticmethod
    def _error(status: int, message: str) -> tuple[int, Any, str]:
        return status, {"error": message}, "application/json"

    def _poll_machine(self, machine: dict[str, Any]) -> None:
        mid = machine["id"]
        if machine["state"] == "stopping" and mid not in self.faults.wont_stop:
            self._polls[mid] = self._polls.get(mid, 0) + 1
            if self._polls[mid] >= self.stop_polls:
                machine["state"] = "stopped"

    def _poll_snapshots(self, vid: str) -> None:
        for snap in self.snapshots.get(vid, []):
            if snap["status"] == "running":
                key = f"snap-{snap['id']}"
                self._polls[key] = self._polls.get(key, 0) + 1
                if self._polls[key] >= self.snapshot_polls:
                    snap["status"] = "created"

    # --- routing ---------------------------------------------------------------------------------

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any, str]:
        parts = path.removeprefix(PREFIX).strip("/").split("/")
        with self._lock:
            if parts[0] != "apps" or len(parts) < 2:
                return self._error(404, f"no route {method} {path}")
            app = parts[1]
            if app not in self.apps:
                return self._error(404, f'Could not find App "{app}"')
            rest = parts[2:]
            if not rest:
                if method == "GET":
                    return 200, self.apps[app], "application/json"
                if method == "DELETE":
                    for name in (self.apps, self.machines, self.volumes, self.ips):
                        name.pop(app, None)
                    return 202, None, ""
            if rest[0] == "machines":
                return self._machines(method, app, rest[1:], body)
            if rest[0] == "volumes":
                return self._volumes(method, app, rest[1:], body)
            return self._error(404, f"no route {method} {path}")

    def _machines(self, method: str, app: str, rest: list[str], body: Any) -> tuple[int, Any, str]:
        machines = self.machines[app]
        if not rest:
            if method == "GET":
                for m in machines.values():
                    self._poll_machine(m)
                return 200, [self._public(m) for m in machines.values()], "application/json"
            if method == "POST":
                return self._create_machine(app, body)
        machine = machines.get(rest[0])
        if machine is None:
            return self._error(404, f"machine {rest[0]} not found")
        action = rest[1] if len(rest) > 1 else ""
        if method == "GET" and not action:
            self._poll_machine(machine)
            return 200, self._public(machine), "application/json"
        if method == "DELETE" and not action:
            if machine["state"] not in ("stopped", "created", "suspended"):
                return self._error(
                    412, f"failed_precondition: machine {machine['id']} is {machine['state']}, stop it first"
                )
            for vol in self.volumes[app].values():
                if vol["attached_machine_id"] == machine["id"]:
                    vol["attached_machine_id"] = None
            del machines[machine["id"]]
            return 200, None, ""
        if method == "POST" and action == "stop":
            if machine["state"] in ("started", "starting"):
                machine["state"] = "stopping"
                self._polls[machine["id"]] = 0
            return 200, None, ""
        if method == "POST" and action == "start":
            if machine["state"] in ("stopped", "created", "suspended"):
                machine["state"] = "started"
            return 200, None, ""
        if method == "POST" and action == "exec":
            return self._exec(app, machine, body)
        return self._error(404, f"no route {method} machines/{'/'.join(rest)}")

    def _create_machine(self, app: str, body: dict[str, Any]) -> tuple[int, Any, str]:
        config = dict(body.get("config") or {})
        for mount in config.get("mounts") or []:
            vol = self.volumes[app].get(mount.get("volume"))
            if vol is None:
                return self._error(400, f"volume {mount.get('volume')} not found")
            if vol["attached_machine_id"]:
                return self._error(400, f"volume {vol['id']} is attached to {vol['attached_machine_id']}")
        mid = self._id()
        machine = {
            "id": mid,
            "name": body.get("name") or mid,
            "state": "started",
            "region": body.get("region") or "iad",
            "instance_id": self._id("inst"),
            "private_ip": "fdaa:0:1::99",
            "config": config,
            "created_at": "2025-01-02T00:00:00Z",
            "updated_at": "2025-01-02T00:00:00Z",
        }
        for mount in config.get("mounts") or []:
            self.volumes[app][mount["volume"]]["attached_machine_id"] = mid
        self.machines[app][mid] = machine
        return 200, self._public(machine), "application/json"

    def _exec(self, app: str, machine: dict[str, Any], body: dict[str, Any]) -> tuple[int, Any, str]:
        command = body.get("command") or []
        script = command[-1] if command else ""
        if machine["state"] != "started":
            return 400, {"error": f"machine {machine['id']} is {machine['state']}"}, "application/json"
        mounts = machine["config"].get("mounts") or []
        match = re.search(r"tar -C (\S+) -cf - \.", script)
        if not match or not mounts or mounts[0].get("path") != match.group(1):
            return (
                400,
                {"error": f"fake exec only runs the export script over a mounted volume: {script!r}"},
                ("application/json"),
            )
        files = self.volumes[app][mounts[0]["volume"]]["_files"]
        payload = base64.encodebytes(_tar_gz(files))  # 76-column lines, like busybox base64
        if self.faults.truncate_export:
            return 200, payload[: len(payload) // 2], "application/octet-stream"
        return 200, payload + EXPORT_MARKER + b"\n", "application/octet-stream"

    def _volumes(self, method: str, app: str, rest: list[str], body: Any) -> tuple[int, Any, str]:
        volumes = self.volumes[app]
        if not rest:
            if method == "GET":
                return 200, [self._public(v) for v in volumes.values()], "application/json"
            if method == "POST":
                return self._create_volume(app, body)
        vol = volumes.get(rest[0])
        if vol is None:
            return self._error(404, f"volume {rest[0]} not found")
        action = rest[1] if len(rest) > 1 else ""
        if not action:
            if method == "GET":
                return 200, self._public(vol), "application/json"
            if method == "POST":
                days = body.get("snapshot_retention")
                if not isinstance(days, int) or not 1 <= days <= 60:
                    return self._error(400, f"snapshot_retention must be 1..60, got {days!r}")
                vol["snapshot_retention"] = days
                return 200, self._public(vol), "application/json"
            if method == "DELETE":
                if vol["attached_machine_id"]:
                    return self._error(412, f"volume {vol['id']} is attached to machine {vol['attached_machine_id']}")
                del volumes[vol["id"]]
                return 200, self._public({**vol, "state": "destroyed"}), "application/json"
        if action == "snapshots":
            if method == "GET":
                self._poll_snapshots(vol["id"])
                return 200, [self._public(s) for s in self.snapshots[vol["id"]]], "application/json"
            if method == "POST":
                self.snapshots[vol["id"]].append(
                    {
                        "id": self._id("vs_"),
                        "status": "running",
                        "size": sum(len(d) for d in vol["_files"].values()),
                        "digest": self._id("sha256:"),
                        "created_at": f"2025-01-03T00:00:{len(self.snapshots[vol['id']]):02d}Z",
                        "_files": dict(vol["_files"]),
                    }
                )
                return 200, None, ""
        return self._error(404, f"no route {method} volumes/{'/'.join(rest)}")

    def _create_volume(self, app: str, body: dict[str, Any]) -> tuple[int, Any, str]:
        files: dict[str, bytes] = {}
        if body.get("snapshot_id"):
            snap = next((s for snaps in self.snapshots.values() for s in snaps if s["id"] == body["snapshot_id"]), None)
            if snap is None or snap["status"] != "created":
                return self._error(400, f"snapshot {body['snapshot_id']} is not available")
            files = dict(snap["_files"])
        vid = self._id("vol_")
        self.volumes[app][vid] = {
            "id": vid,
            "name": body.get("name", "vol"),
            "region": body.get("region", "iad"),
            "size_gb": body.get("size_gb", 1),
            "state": "created",
            "encrypted": True,
            "fstype": "ext4",
            "snapshot_retention": body.get("snapshot_retention", 5),
            "attached_machine_id": None,
            "created_at": "2025-01-02T00:00:00Z",
            "_files": files,
        }
        self.snapshots[vid] = []
        return 200, self._public(self.volumes[app][vid]), "application/json"

    def _graphql(self, body: Any) -> tuple[int, Any, str]:
        query = str((body or {}).get("query", ""))
        variables = (body or {}).get("variables") or {}
        with self._lock:
            if "ipAddresses" in query:
                app = variables.get("appName")
                if app not in self.apps:
                    return (
                        200,
                        {"data": {"app": None}, "errors": [{"message": f"Could not find App {app}"}]},
                        ("application/json"),
                    )
                return 200, {"data": {"app": {"ipAddresses": {"nodes": self.ips[app]}}}}, "application/json"
            if "releaseIpAddress" in query:
                ip_id = (variables.get("input") or {}).get("ipAddressId")
                for nodes in self.ips.values():
                    for node in list(nodes):
                        if node["id"] == ip_id:
                            nodes.remove(node)
                            return 200, {"data": {"releaseIpAddress": {"clientMutationId": None}}}, "application/json"
                return (
                    200,
                    {"data": None, "errors": [{"message": f"Could not find IP address {ip_id}"}]},
                    ("application/json"),
                )
        return 200, {"errors": [{"message": "unsupported query"}]}, "application/json"

    # --- HTTP ------------------------------------------------------------------------------------

    def _fault(self, method: str, path: str) -> tuple[int, Any, str, dict[str, str]] | None:
        with self._lock:
            if self.faults.rate_limited:
                retry_after = self.faults.rate_limited.pop(0)
                headers = {"Retry-After": retry_after} if retry_after is not None else {}
                return 429, {"error": "rate limit exceeded"}, "application/json", headers
            for key, count in self.faults.server_errors.items():
                m, rx = key.split(" ", 1)
                if count > 0 and m == method and re.fullmatch(rx, path):
                    self.faults.server_errors[key] = count - 1
                    return 500, {"error": "internal error"}, "application/json", {}
        return None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def _handle(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                headers = {k: v for k, v in self.headers.items()}
                method = self.command
                extra: dict[str, str] = {}
                if url.path == "/graphql":
                    status, doc, ctype = (
                        fake._graphql(body) if fake._authorised(headers) else fake._error(401, "unauthorized")
                    )
                    req = None
                else:
                    req = OpenApiRequest(SPEC_HOST, method, url.path, url.query, headers=headers, body=raw)
                    fake._validate_request(req)
                    fault = fake._fault(method, url.path)
                    if not fake._authorised(headers):
                        status, doc, ctype = fake._error(401, "unauthorized")
                    elif fault is not None:
                        status, doc, ctype, extra = fault
                    else:
                        status, doc, ctype = fake._route(method, url.path, parse_qs(url.query), body)
                if isinstance(doc, bytes):
                    payload = doc
                elif doc is None:
                    payload = b""
                else:
                    payload = json.dumps(doc).encode()
                if req is not None:
                    fake._validate_response(req, status, payload, ctype)
                with fake._lock:
                    fake.requests.append(Recorded(method, url.path, url.query, body, status))
                self.send_response(status)
                if ctype:
                    self.send_header("Content-Type", ctype)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815

        return Handler

    def _authorised(self, headers: dict[str, str]) -> bool:
        return headers.get("Authorization") == f"Bearer {self.token}"


@contextmanager
def fake_fly(**kwargs: Any) -> Iterator[FakeFly]:
    fake = FakeFly(**kwargs).start()
    try:
        yield fake
    finally:
        fake.close()
