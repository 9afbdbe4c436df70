"""Machine exit checks against small fake servers on 127.0.0.1.

The fake Kubernetes API speaks TLS and requires a client certificate signed by its CA, like K3s, so the
kubeconfig handling (inline certificate data written to private files) is exercised for real. Every
check runs with a deadline of a second or less and a 10 ms poll interval.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from moto import mock_aws

from components.cluster import nvidia
from components.config.phases import CHECK_NAMES
from migrate import checks
from migrate.checks import CHECKS, CheckContext, KubeClient, run_check
from tests.local import port, serve_http

pytestmark = pytest.mark.network

# --- certificates -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca_pem: bytes
    ca_path: Path
    server_cert: Path
    server_key: Path
    client_cert_pem: bytes
    client_key_pem: bytes


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer_key: ec.EllipticCurvePrivateKey, issuer: str, **kw: Any
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=kw.get("ca", False), path_length=None), critical=True)
    )
    if "ip" in kw:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(kw["ip"])]), critical=False)
    if "dns" in kw:
        names = [x509.DNSName(name) for name in kw["dns"]]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(obj: Any) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _issue("test-ca", ca_key, ca_key, "test-ca", ca=True)
    server = _issue("127.0.0.1", server_key, ca_key, "test-ca", ip=ipaddress.ip_address("127.0.0.1"))
    client = _issue("system:admin", client_key, ca_key, "test-ca")
    (root / "ca.crt").write_bytes(_pem(ca))
    (root / "server.crt").write_bytes(_pem(server))
    (root / "server.key").write_bytes(_pem(server_key))
    return Pki(_pem(ca), root / "ca.crt", root / "server.crt", root / "server.key", _pem(client), _pem(client_key))


# --- a tiny programmable HTTP(S) server ----------------------------------------------------------

Route = Callable[["Request"], tuple[int, Any]]


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    peer_cn: str | None


@dataclass
class FakeServer:
    routes: dict[tuple[str, str], Route]
    requests: list[Request] = field(default_factory=list)
    url: str = ""


@contextmanager
def serve(routes: dict[tuple[str, str], Route], tls: ssl.SSLContext | None = None) -> Iterator[FakeServer]:
    fake = FakeServer(routes)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            peer = None
            if isinstance(self.connection, ssl.SSLSocket):
                cert = self.connection.getpeercert()
                for rdn in (cert or {}).get("subject", ()):
                    for pair in rdn:
                        if pair[0] == "commonName":
                            peer = str(pair[1])
            req = Request(
                self.command, parts.path, parts.query, dict(self.headers), json.loads(raw) if raw else None, peer
            )
            fake.requests.append(req)
            route = fake.routes.get((self.command, parts.path))
            status, answer = route(req) if route else (404, {"kind": "Status", "message": f"{parts.path} not found"})
            data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
            self.send_response(status)
            if status in (301, 302):
                self.send_header("Location", "https://example.com/login")
            self.send_header("Content-Type", "text/plain" if isinstance(answer, str) else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def do_DELETE(self) -> None:
            self._handle()

    with serve_http(Handler, tls) as server:
        fake.url = f"{'https' if tls else 'http'}://127.0.0.1:{port(server)}"
        yield fake


def _server_tls(pki: Pki, require_client_cert: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(pki.ca_path)
    return ctx


def _kubeconfig(server: str, pki: Pki | None = None, token: str | None = None) -> str:
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    user: dict[str, Any] = {"token": token} if token else {}
    cluster: dict[str, Any] = {"server": server}
    if pki:
        cluster["certificate-authority-data"] = b64(pki.ca_pem)
        if not token:
            user = {"client-certificate-data": b64(pki.client_cert_pem), "client-key-data": b64(pki.client_key_pem)}
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "default",
            "clusters": [{"name": "default", "cluster": cluster}],
            "users": [{"name": "default", "user": user}],
            "contexts": [{"name": "default", "context": {"cluster": "default", "user": "default"}}],
        }
    )


def _ctx(outputs: dict[str, Any], **kw: Any) -> CheckContext:
    kw.setdefault("timeout", 1.0)
    return CheckContext(outputs=outputs, request_timeout=2.0, poll_interval=0.01, **kw)


def _node(name: str, ready: bool = True, gpus: int | None = 1, label: bool = False) -> dict[str, Any]:
    allocatable = {"cpu": "8"}
    if gpus is not None:
        allocatable["nvidia.com/gpu"] = str(gpus)
    labels = {"nvidia.com/gpu.present": "true"} if label else {}
    return {
        "metadata": {"name": name, "labels": labels},
        "status": {
            "allocatable": allocatable,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def _const(status: int, body: Any) -> Route:
    return lambda _req: (status, body)


# --- the registry -------------------------------------------------------------------------------


def test_one_check_function_per_check_name() -> None:
    assert set(CHECKS) == set(CHECK_NAMES)
    assert all(c.description and c.name == name for name, c in CHECKS.items())


def test_unknown_check_is_a_fail_line_not_an_exception() -> None:
    result = run_check("no-such-check", _ctx({}))
    assert not result.ok
    assert result.line.startswith("FAIL no-such-check: unknown check")


def test_a_crashing_check_is_reported_as_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(ctx: CheckContext, deadline: Any) -> str:
        raise ZeroDivisionError("bad math")

    monkeypatch.setitem(CHECKS, "llama-health", checks.Check("llama-health", "x", boom))
    result = run_check("llama-health", _ctx({}))
    assert not result.ok and "ZeroDivisionError: bad math" in result.detail


# --- Kubernetes ---------------------------------------------------------------------------------


def test_kubeclient_writes_private_cert_files_and_removes_them(pki: Pki) -> None:
    ctx = _ctx({})
    client = KubeClient(_kubeconfig("https://127.0.0.1:6443", pki), checks.Deadline(ctx))
    assert isinstance(client.session.cert, tuple)
    cert, key = client.session.cert
    assert Path(key).read_bytes() == pki.client_key_pem
    assert Path(key).stat().st_mode & 0o777 == 0o600
    assert Path(str(client.verify)).read_bytes() == pki.ca_pem
    client.close()
    assert not Path(cert).exists() and not Path(key).exists()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update({"current-context": "other"}), "no context named 'other'"),
        (lambda d: d["clusters"][0]["cluster"].update({"insecure-skip-tls-verify": True}), "insecure-skip"),
        (lambda d: d["users"][0].update({"user": {}}), "neither a client certificate"),
        (lambda d: d["clusters"][0]["cluster"].update({"server": "127.0.0.1:6443"}), "not an http"),
        (lambda d: d["clusters"][0]["cluster"].update({"certificate-authority-data": "@@"}), "not valid base64"),
    ],
)
def test_bad_kubeconfig_fails_with_the_reason(pki: Pki, mutate: Callable[[dict[str, Any]], None], message: str) -> None:
    doc = yaml.safe_load(_kubeconfig("https://127.0.0.1:6443", pki))
    mutate(doc)
    result = run_check("nodes-ready-gpu", _ctx({"kubeconfig": yaml.safe_dump(doc)}))
    assert not result.ok and message in result.detail


def test_nodes_ready_gpu_passes_over_mutual_tls(pki: Pki) -> None:
    nodes = {"items": [_node("gpu-1", gpus=4), _node("cpu-1", gpus=None)]}
    with serve({("GET", "/api/v1/nodes"): _const(200, nodes)}, _server_tls(pki, True)) as api:
        outputs = {"kubeconfig": _kubeconfig(api.url, pki), "gpuNodes": ["gpu-1"]}
        result = run_check("nodes-ready-gpu", _ctx(outputs))
    assert result.ok, result.line
    assert result.detail == "2 node(s) Ready; nvidia.com/gpu allocatable: gpu-1=4"
    assert api.requests[0].peer_cn == "system:admin"  # the kubeconfig's client certificate was presented


def test_nodes_ready_gpu_waits_for_a_node_to_become_ready(pki: Pki) -> None:
    calls = {"n": 0}

    def nodes(_req: Request) -> tuple[int, Any]:
        calls["n"] += 1
        return 200, {"items": [_node("gpu-1", ready=calls["n"] >= 3, label=True)]}

    with serve({("GET", "/api/v1/nodes"): nodes}, _server_tls(pki, True)) as api:
        result = run_check("nodes-ready-gpu", _ctx({"kubeconfig": _kubeconfig(api.url, pki)}))
    assert result.ok, result.line
    assert calls["n"] == 3


@pytest.mark.parametrize(
    ("items", "gpu_nodes", "message"),
    [
        ([_node("gpu-1", ready=False)], ["gpu-1"], "not Ready: gpu-1"),
        ([_node("gpu-1", gpus=0)], ["gpu-1"], "no nvidia.com/gpu allocatable on: gpu-1 (is the NVIDIA device plugin"),
        ([_node("gpu-1")], ["gpu-1", "gpu-2"], "GPU nodes not registered: gpu-2"),
        ([_node("cpu-1", gpus=None)], None, "no GPU nodes"),
        ([], ["gpu-1"], "no nodes registered"),
    ],
)
def test_nodes_ready_gpu_fails_after_its_deadline(
    pki: Pki, items: list[Any], gpu_nodes: list[str] | None, message: str
) -> None:
    with serve({("GET", "/api/v1/nodes"): _const(200, {"items": items})}, _server_tls(pki, True)) as api:
        outputs: dict[str, Any] = {"kubeconfig": _kubeconfig(api.url, pki)}
        if gpu_nodes:
            outputs["gpuNodes"] = gpu_nodes
        result = run_check("nodes-ready-gpu", _ctx(outputs, timeout=0.2))
    assert not result.ok
    assert message in result.detail and "still failing after 0.2s" in result.detail
    assert len(api.requests) >= 2  # it polled


def test_rejected_credentials_fail_at_once_with_a_token_kubeconfig() -> None:
    def nodes(req: Request) -> tuple[int, Any]:
        ok = req.headers.get("Authorization") == "Bearer right"
        return (200, {"items": [_node("g")]}) if ok else (401, {"kind": "Status", "message": "Unauthorized"})

    with serve({("GET", "/api/v1/nodes"): nodes}) as api:
        good = run_check(
            "nodes-ready-gpu", _ctx({"kubeconfig": _kubeconfig(api.url, token="right"), "gpuNodes": ["g"]})
        )
        bad = run_check("nodes-ready-gpu", _ctx({"kubeconfig": _kubeconfig(api.url, token="wrong"), "gpuNodes": ["g"]}))
    assert good.ok, good.line
    assert not bad.ok and "HTTP 401 Unauthorized" in bad.detail and "not accepted" in bad.detail
    assert len(api.requests) == 2  # one each: a rejected credential is not retried


def test_unreachable_api_server_fails_with_cannot_connect(pki: Pki) -> None:
    with serve({}, None) as api:
        url = api.url.replace("http://", "https://")
    result = run_check("nodes-ready-gpu", _ctx({"kubeconfig": _kubeconfig(url, pki)}, timeout=0.1))
    assert not result.ok and "cannot connect" in result.detail


def test_missing_kubeconfig_output_is_named() -> None:
    result = run_check("restore-jobs-complete", _ctx({"restoreJobs": ["data/restore-qdrant"]}))
    assert not result.ok and "stack output 'kubeconfig' is missing" in result.detail


SMOKE_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "nvidia-smi-smoke", "namespace": "gpu-smoke"},
    "spec": {"runtimeClassName": "nvidia", "restartPolicy": "Never", "containers": [{"name": "smi"}]},
}
NVIDIA_SMI_LOG = """+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 570.133.20             Driver Version: 570.133.20     CUDA Version: 12.8     |
|-----------------------------------------+------------------------+----------------------+
"""


def _pod_api(phases: list[str], log: str, scheduled_message: str = "") -> dict[tuple[str, str], Route]:
    state = {"gets": 0}
    base = "/api/v1/namespaces/gpu-smoke/pods"

    def get(_req: Request) -> tuple[int, Any]:
        phase = phases[min(state["gets"], len(phases) - 1)]
        state["gets"] += 1
        conditions = [{"type": "PodScheduled", "status": "False", "message": scheduled_message}] * bool(
            scheduled_message
        )
        return 200, {"metadata": {"name": "nvidia-smi-smoke"}, "status": {"phase": phase, "conditions": conditions}}

    return {
        ("DELETE", f"{base}/nvidia-smi-smoke"): _const(200, {}),
        ("POST", base): lambda req: (201, req.body),
        ("GET", f"{base}/nvidia-smi-smoke"): get,
        ("GET", f"{base}/nvidia-smi-smoke/log"): _const(200, log),
    }


def test_nvidia_smi_smoke_runs_the_pod_reads_its_log_and_cleans_up(pki: Pki) -> None:
    with serve(_pod_api(["Pending", "Running", "Succeeded"], NVIDIA_SMI_LOG), _server_tls(pki, True)) as api:
        ctx = _ctx({"kubeconfig": _kubeconfig(api.url, pki)}, overrides={"smoke_manifest": SMOKE_POD})
        result = run_check("nvidia-smi-smoke", ctx)
    assert result.ok, result.line
    assert "Driver Version: 570.133.20" in result.detail
    methods = [(r.method, r.path.rsplit("/", 1)[-1]) for r in api.requests]
    assert methods[0] == ("DELETE", "nvidia-smi-smoke")  # a leftover from an interrupted run goes first
    assert methods[1] == ("POST", "pods")
    assert methods[-2:] == [("GET", "log"), ("DELETE", "nvidia-smi-smoke")]
    assert api.requests[1].body == SMOKE_POD


def test_nvidia_smi_smoke_nvml_failure_points_at_the_runtime_class(pki: Pki) -> None:
    log = "Failed to initialize NVML: Unknown Error\n"
    with serve(_pod_api(["Failed"], log), _server_tls(pki, True)) as api:
        ctx = _ctx({"kubeconfig": _kubeconfig(api.url, pki)}, overrides={"smoke_manifest": SMOKE_POD})
        result = run_check("nvidia-smi-smoke", ctx)
    assert not result.ok
    assert "Failed to initialize NVML" in result.detail and "runtimeClassName" in result.detail
    assert api.requests[-1].method == "DELETE"  # cleaned up after a failure too


def test_nvidia_smi_smoke_unschedulable_pod_says_why(pki: Pki) -> None:
    message = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    with serve(_pod_api(["Pending"], "", scheduled_message=message), _server_tls(pki, True)) as api:
        ctx = _ctx({"kubeconfig": _kubeconfig(api.url, pki)}, overrides={"smoke_manifest": SMOKE_POD}, timeout=0.2)
        result = run_check("nvidia-smi-smoke", ctx)
    assert not result.ok and "Insufficient nvidia.com/gpu" in result.detail
    assert api.requests[-1].method == "DELETE"


def test_nvidia_smi_smoke_uses_the_manifest_from_components_nvidia() -> None:
    assert checks.smoke_pod_manifest is nvidia.smoke_pod_manifest  # one manifest, not a copy
    manifest = nvidia.smoke_pod_manifest()
    container = manifest["spec"]["containers"][0]
    assert manifest["spec"].get("runtimeClassName") == "nvidia"
    assert str(container["resources"]["limits"]["nvidia.com/gpu"]) == "1"


def _job(complete: bool = False, failed: str | None = None) -> dict[str, Any]:
    conditions = []
    if complete:
        conditions.append({"type": "Complete", "status": "True"})
    if failed:
        conditions.append({"type": "Failed", "status": "True", "message": failed})
    return {"status": {"conditions": conditions}}


def test_restore_jobs_complete(pki: Pki) -> None:
    jobs = "/apis/batch/v1/namespaces/data/jobs"
    seen = {"qdrant": 0}

    def qdrant(_req: Request) -> tuple[int, Any]:
        seen["qdrant"] += 1
        return 200, _job(complete=seen["qdrant"] > 1)

    routes = {("GET", f"{jobs}/restore-qdrant"): qdrant, ("GET", f"{jobs}/restore-redis"): _const(200, _job(True))}
    with serve(routes, _server_tls(pki, True)) as api:
        outputs = {
            "kubeconfig": _kubeconfig(api.url, pki),
            "restoreJobs": ["data/restore-qdrant", "data/restore-redis"],
        }
        result = run_check("restore-jobs-complete", _ctx(outputs))
    assert result.ok, result.line
    assert result.detail == "2 restore Job(s) complete: data/restore-qdrant, data/restore-redis"


def test_a_failed_restore_job_fails_at_once(pki: Pki) -> None:
    routes = {
        ("GET", "/apis/batch/v1/namespaces/data/jobs/restore-pg"): _const(200, _job(failed="BackoffLimitExceeded"))
    }
    with serve(routes, _server_tls(pki, True)) as api:
        outputs = {"kubeconfig": _kubeconfig(api.url, pki), "restoreJobs": ["data/restore-pg"]}
        result = run_check("restore-jobs-complete", _ctx(outputs, timeout=5))
    assert not result.ok and "restore Job data/restore-pg failed: BackoffLimitExceeded" in result.detail
    assert len(api.requests) == 1
    assert result.seconds < 2


# --- HTTP endpoints -----------------------------------------------------------------------------


def test_public_routes_200_over_tls(pki: Pki) -> None:
    routes = {("GET", "/"): _const(200, "ok"), ("GET", "/api"): _const(200, {"ok": True})}
    with serve(routes, _server_tls(pki, False)) as site:
        result = run_check(
            "public-routes-200", _ctx({"publicUrls": [site.url + "/", site.url + "/api"]}, verify=str(pki.ca_path))
        )
    assert result.ok, result.line
    assert result.detail == "2 route(s) answered 200 over TLS"


def test_public_routes_fail_on_500_redirect_untrusted_cert_and_plain_http(pki: Pki) -> None:
    routes = {
        ("GET", "/"): _const(200, "ok"),
        ("GET", "/broken"): _const(500, "err"),
        ("GET", "/moved"): _const(301, ""),
    }
    with serve(routes, _server_tls(pki, False)) as site:
        urls = [site.url + "/", site.url + "/broken", site.url + "/moved"]
        result = run_check("public-routes-200", _ctx({"publicUrls": urls}, verify=str(pki.ca_path), timeout=0.1))
        untrusted = run_check("public-routes-200", _ctx({"publicUrls": [site.url + "/"]}, timeout=0.1))
    assert not result.ok
    assert f"{site.url}/broken: HTTP 500" in result.detail and f"{site.url}/moved: HTTP 301" in result.detail
    assert f"{site.url}/:" not in result.detail
    assert (
        not untrusted.ok
        and "TLS error" in untrusted.detail
        and "CERTIFICATE_VERIFY_FAILED" in untrusted.detail  # the system trust store does not know the test CA
    )
    plain = run_check("public-routes-200", _ctx({"publicUrls": ["http://app.example.com/"]}))
    assert not plain.ok and "not served over TLS: http://app.example.com/" in plain.detail


def test_llama_health_waits_for_the_model_to_load() -> None:
    state = {"n": 0}

    def health(_req: Request) -> tuple[int, Any]:
        state["n"] += 1
        if state["n"] < 3:
            return 503, {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
        return 200, {"status": "ok"}

    with serve({("GET", "/health"): health}) as llama:
        result = run_check("llama-health", _ctx({"llamaHealthUrls": [llama.url + "/health"]}))
    assert result.ok, result.line
    assert state["n"] == 3


def test_llama_health_reports_the_servers_message() -> None:
    routes = {("GET", "/health"): _const(503, {"error": {"message": "Loading model"}})}
    with serve(routes) as llama:
        result = run_check("llama-health", _ctx({"llamaHealthUrls": [llama.url + "/health"]}, timeout=0.1))
    assert not result.ok and "HTTP 503 Loading model" in result.detail


# --- backups ------------------------------------------------------------------------------------


def test_backups_verified_rereads_every_object() -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="example-backups")
        blobs = {"fly/dashboard/vol.tar.zst": b"a" * 3000, "compose/qdrant.snapshot": b"qdrant"}
        records = []
        for key, data in blobs.items():
            s3.put_object(Bucket="example-backups", Key=key, Body=data)
            records.append({"key": key, "sha256": hashlib.sha256(data).hexdigest()})
        outputs = {"backupBucket": "example-backups", "backupObjects": records, "backupRegion": "us-east-1"}
        ok = run_check("backups-verified", _ctx(outputs))  # builds its own client from the outputs
        s3.put_object(Bucket="example-backups", Key="compose/qdrant.snapshot", Body=b"tampered")
        records.append({"key": "compose/missing.dump", "sha256": "0" * 64})
        bad = run_check("backups-verified", _ctx(outputs, s3_client=s3))
    assert ok.ok, ok.line
    assert ok.detail == "2 object(s), 3006 bytes in s3://example-backups match their recorded SHA-256"
    assert not bad.ok
    assert "compose/qdrant.snapshot: SHA-256" in bad.detail and "compose/missing.dump: NoSuchKey" in bad.detail
    assert "fly/dashboard" not in bad.detail


def test_backups_verified_needs_a_record() -> None:
    result = run_check("backups-verified", _ctx({"backupBucket": "b", "backupObjects": [{"key": "k"}]}))
    assert not result.ok and "must be a list of {key, sha256}" in result.detail


# --- Fly ----------------------------------------------------------------------------------------


def _fly(apps: dict[str, list[str]] | None, token: str = "fly-token") -> dict[tuple[str, str], Route]:
    def auth(route: Route) -> Route:
        def wrapped(req: Request) -> tuple[int, Any]:
            if req.headers.get("Authorization") != f"Bearer {token}":
                return 401, {"error": "unauthorized"}
            return route(req)

        return wrapped

    routes: dict[tuple[str, str], Route] = {}
    for app, states in (apps or {}).items():
        machines = [{"id": f"m{i}", "name": f"{app}-{i}", "state": s} for i, s in enumerate(states)]
        routes[("GET", f"/v1/apps/{app}")] = auth(_const(200, {"name": app, "status": "deployed"}))
        routes[("GET", f"/v1/apps/{app}/machines")] = auth(_const(200, machines))
    return routes


def _fly_ctx(url: str, apps: list[str], **kw: Any) -> CheckContext:
    kw.setdefault("fly_token", "fly-token")
    return _ctx({"flyApps": apps}, fly_api_url=url + "/v1", **kw)


def test_fly_apps_running_and_machines_stopped() -> None:
    with serve(_fly({"web": ["started", "started"], "jobs": ["started"]})) as fly:
        running = run_check("fly-apps-running", _fly_ctx(fly.url, ["web", "jobs"]))
        stopped = run_check("fly-machines-stopped", _fly_ctx(fly.url, ["web", "jobs"], timeout=0.1))
    assert running.ok and running.detail == "3 machine(s) of 2 app(s) started"
    assert not stopped.ok and "not stopped: web/m0: started, web/m1: started, jobs/m0: started" in stopped.detail
    with serve(_fly({"web": ["stopped", "suspended"], "jobs": []})) as fly:
        stopped = run_check("fly-machines-stopped", _fly_ctx(fly.url, ["web", "jobs"]))
        running = run_check("fly-apps-running", _fly_ctx(fly.url, ["web", "jobs"], timeout=0.1))
    assert stopped.ok, stopped.line
    assert not running.ok and "web/m0: stopped" in running.detail and "jobs: no machines" in running.detail


def test_fly_apps_destroyed() -> None:
    with serve(_fly({"web": ["stopped"]})) as fly:
        partly = run_check("fly-apps-destroyed", _fly_ctx(fly.url, ["web", "jobs"], timeout=0.1))
        gone = run_check("fly-apps-destroyed", _fly_ctx(fly.url, ["jobs", "docs"]))
    assert not partly.ok and "still exist: web" in partly.detail
    assert gone.ok and gone.detail == "2 app(s) gone: jobs, docs"


def test_fly_token_problems_fail_at_once() -> None:
    with serve(_fly({"web": ["started"]})) as fly:
        wrong = run_check("fly-apps-running", _fly_ctx(fly.url, ["web"], fly_token="nope", timeout=5))
        assert len(fly.requests) == 1
    missing = run_check("fly-apps-running", _fly_ctx("http://127.0.0.1:9", ["web"], fly_token=None))
    assert not wrong.ok and "HTTP 401" in wrong.detail and wrong.seconds < 2
    assert not missing.ok and "FLY_API_TOKEN" in missing.detail


def test_missing_fly_app_fails_for_running_check() -> None:
    with serve(_fly({})) as fly:
        result = run_check("fly-apps-running", _fly_ctx(fly.url, ["ghost"], timeout=5))
    assert not result.ok and "Fly app ghost does not exist" in result.detail and result.seconds < 2


# --- the outputs components/stack.py exports today ----------------------------------------------


def test_restore_jobs_found_by_the_platforms_label_selector(pki: Pki) -> None:
    seen: list[str] = []

    def jobs(req: Request) -> tuple[int, Any]:
        seen.append(req.query)
        items = [
            {"metadata": {"name": "restore-redis"}, **_job(complete=True)},
            {"metadata": {"name": "restore-qdrant"}, **_job(complete=len(seen) > 1)},
        ]
        return 200, {"items": items}

    routes: dict[tuple[str, str], Route] = {("GET", "/apis/batch/v1/namespaces/platform-data/jobs"): jobs}
    with serve(routes, _server_tls(pki, True)) as api:
        platform = {"restoreJobs": {"namespace": "platform-data", "selector": "gpu-platform/restore=true"}}
        outputs = {"kubeconfig": _kubeconfig(api.url, pki), "platform": platform}
        result = run_check("restore-jobs-complete", _ctx(outputs))
    assert result.ok, result.line
    assert result.detail == "2 restore Job(s) complete: platform-data/restore-qdrant, platform-data/restore-redis"
    assert seen[0] == "labelSelector=gpu-platform%2Frestore%3Dtrue"


def test_no_job_matching_the_selector_fails(pki: Pki) -> None:
    routes = {("GET", "/apis/batch/v1/namespaces/platform-data/jobs"): _const(200, {"items": []})}
    with serve(routes, _server_tls(pki, True)) as api:
        platform = {"restoreJobs": {"namespace": "platform-data", "selector": "gpu-platform/restore=true"}}
        outputs = {"kubeconfig": _kubeconfig(api.url, pki), "platform": platform}
        result = run_check("restore-jobs-complete", _ctx(outputs, timeout=0.1))
    assert not result.ok and "no Job in platform-data matches gpu-platform/restore=true" in result.detail
    missing = run_check("restore-jobs-complete", _ctx({"kubeconfig": "x"}))
    assert not missing.ok and "platform.restoreJobs are missing" in missing.detail


def test_public_routes_from_the_platforms_hostnames(pki: Pki) -> None:
    with serve({("GET", "/"): _const(200, "ok")}, _server_tls(pki, False)) as site:
        host = site.url.removeprefix("https://")
        outputs = {"platform": {"publicHostnames": [host]}}
        result = run_check("public-routes-200", _ctx(outputs, verify=str(pki.ca_path)))
    assert result.ok and result.detail == "1 route(s) answered 200 over TLS"
    assert site.requests[0].path == "/"
    missing = run_check("public-routes-200", _ctx({"platform": {}}))
    assert not missing.ok and "platform.publicHostnames" in missing.detail


def test_llama_health_reaches_in_cluster_servers_through_the_api_proxy(pki: Pki) -> None:
    proxy = "/api/v1/namespaces/llama/services/llama:8080/proxy/health"
    with (
        serve({("GET", proxy): _const(200, {"status": "ok"})}, _server_tls(pki, True)) as api,
        serve({("GET", "/health"): _const(200, {"status": "ok"})}) as workstation,
    ):
        outputs = {
            "kubeconfig": _kubeconfig(api.url, pki),
            "llamaCluster": {"url": "http://llama.llama.svc.cluster.local:8080"},
            "llamaWorkstation": {"url": workstation.url},
        }
        result = run_check("llama-health", _ctx(outputs))
    assert result.ok, result.line
    assert result.detail == "2 llama server(s) healthy"
    assert [r.path for r in api.requests] == [proxy]
    assert api.requests[0].peer_cn == "system:admin"
    assert [r.path for r in workstation.requests] == ["/health"]


def test_llama_health_without_servers_says_which_outputs_it_looked_for() -> None:
    result = run_check("llama-health", _ctx({}))
    assert not result.ok and "llamaWorkstation, llamaCluster" in result.detail
