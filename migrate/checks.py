"""Machine exit checks: does the deployed platform do what the phase promised?

Each phase file names its checks (`exitCriteria.checks`); `components.phases.CHECK_NAMES` is the list
of names a phase may use and `CHECKS` below holds one function per name (a test keeps them equal).
A check reads only the stack's outputs and talks to the real endpoints they name: the Kubernetes
API (the `kubeconfig` output, client certificates or a token, through `requests`), the public
routes, the llama servers, the backup bucket and the Fly Machines API.

Every check has one deadline. Conditions that settle after `pulumi up` returns (nodes joining, a
model loading, a certificate being issued) are polled until they hold or the deadline passes; the
result is one line, PASS or FAIL, with the detail that explains it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import os
import re
import ssl
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import requests
import yaml
from botocore.exceptions import BotoCoreError, ClientError

from benchmarks import llama_bench as bench
from components.cluster.nvidia import smoke_pod_manifest
from components.config.phases import CHECK_THRESHOLDS
from components.observability import series
from migrate import loadtest

# --- stack outputs the checks read --------------------------------------------------------------
# components/stack.py exports these; a check whose output is missing FAILS and names the output.
OUT_KUBECONFIG = "kubeconfig"  # secret: kubeconfig YAML of the K3s cluster (server reachable from here)
OUT_GPU_NODES = "gpuNodes"  # node names that must advertise nvidia.com/gpu
OUT_RESTORE_JOBS = "restoreJobs"  # ["namespace/name"], or platform.restoreJobs {namespace, selector}
OUT_PUBLIC_URLS = "publicUrls"  # optional: explicit https URLs (else platform.publicHostnames)
OUT_LLAMA_HEALTH_URLS = "llamaHealthUrls"  # optional: explicit /health URLs (else llamaWorkstation/llamaCluster)
OUT_BACKUP_BUCKET = "backupBucket"  # bucket name
OUT_BACKUP_OBJECTS = "backupObjects"  # [{"key": ..., "sha256": ...}] recorded when each backup was written
OUT_BACKUP_REGION = "backupRegion"  # optional
OUT_BACKUP_ENDPOINT = "backupEndpoint"  # optional, S3-compatible endpoint (R2, MinIO)
OUT_FLY_APPS = "flyApps"  # names of the legacy Fly apps (migrate/automation.py fills it from config)
# components/platform/platform.py: {"restoreJobs": {namespace, selector}, "publicHostnames": [...]}
OUT_PLATFORM = "platform"
OUT_PUBLIC_HOSTNAMES = "publicHostnames"  # inside `platform`; checked as https://<host>/
OUT_LLAMA_SERVERS = ("llamaWorkstation", "llamaCluster")  # components/llm/llama.py: each {"url": ...}

_T = TypeVar("_T")

FLY_API_URL = "https://api.machines.dev/v1"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
# Fly machine states that mean "not running": a suspended machine is frozen like a stopped one.
FLY_STOPPED_STATES = frozenset({"stopped", "suspended"})


class CheckError(Exception):
    """A check's verdict: the message is the FAIL detail shown to the user."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    seconds: float = 0.0

    @property
    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'} {self.name}: {self.detail}"


@dataclass
class CheckContext:
    """What a check may use. Tests inject short deadlines, fake endpoints and their CA."""

    outputs: Mapping[str, Any]
    timeout: float = 300.0  # seconds for one whole check, polling included
    request_timeout: float = 15.0  # seconds for one HTTP request
    poll_interval: float = 5.0
    fly_token: str | None = None
    fly_api_url: str = FLY_API_URL
    verify: str | bool = True  # TLS verification for public routes and llama servers (a CA path in tests)
    s3_client: Any = None  # a boto3 S3 client; built from the backup outputs when None
    s3_credentials: tuple[str, str] | None = None  # access key id and secret for an S3-compatible endpoint
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    overrides: dict[str, Any] = field(default_factory=dict)
    # Per check name, the thresholds of the phase being checked (components.phases.ExitCriteria);
    # a check that takes thresholds and finds none here uses its defaults.
    thresholds: Mapping[str, Any] = field(default_factory=dict)
    # The load test only: "host:443" -> "address:port", as `curl --connect-to` pins a hostname to an
    # address without changing the URL, SNI or Host header (tests point the stack's names at 127.0.0.1).
    connect_to: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    run: Callable[[CheckContext, Deadline], str]


class Deadline:
    def __init__(self, ctx: CheckContext) -> None:
        self._ctx = ctx
        self._end = ctx.clock() + ctx.timeout

    def remaining(self) -> float:
        return max(0.0, self._end - self._ctx.clock())

    def expired(self) -> bool:
        return self.remaining() <= 0

    def request_timeout(self) -> float:
        # Never wait on one request past the check's deadline, but give it a moment to answer.
        return max(0.5, min(self._ctx.request_timeout, self.remaining()))

    def poll(self, attempt: Callable[[], _T]) -> _T:
        """Call `attempt` until it returns (PASS detail) or the deadline passes (its last failure)."""
        while True:
            try:
                return attempt()
            except _FinalError:
                raise
            except (CheckError, requests.RequestException) as exc:
                last = _describe(exc)
            if self.expired():
                raise CheckError(f"{last} (still failing after {self._ctx.timeout:g}s)")
            self._ctx.sleep(min(self._ctx.poll_interval, self.remaining()))


class _FinalError(CheckError):
    """A failure polling cannot fix (a Job that failed, a pod that exited non-zero)."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, CheckError):
        return str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        reason = str(exc).split("SSLError(", 1)[-1].split("(_ssl.c", 1)[0].strip(" ('\"")
        return f"TLS error: {exc.request.url if exc.request else ''}: {reason}"
    if isinstance(exc, requests.ConnectionError):
        return f"cannot connect: {exc.request.url if exc.request else ''} ({type(exc).__name__})".replace(" ()", "")
    if isinstance(exc, requests.Timeout):
        return f"timed out: {exc.request.url if exc.request else 'request'}"
    return f"{type(exc).__name__}: {exc}"


CHECKS: dict[str, Check] = {}


def _check(name: str, description: str) -> Callable[[Callable[[CheckContext, Deadline], str]], Check]:
    def register(fn: Callable[[CheckContext, Deadline], str]) -> Check:
        if name in CHECKS:
            raise ValueError(f"check {name!r} registered twice")
        CHECKS[name] = Check(name, description, fn)
        return CHECKS[name]

    return register


def run_check(name: str, ctx: CheckContext) -> CheckResult:
    """Run one check; every failure, expected or not, becomes a FAIL line, never a traceback."""
    if name not in CHECKS:
        return CheckResult(name, False, f"unknown check; known: {', '.join(sorted(CHECKS))}")
    started = ctx.clock()
    deadline = Deadline(ctx)
    try:
        detail, ok = CHECKS[name].run(ctx, deadline), True
    except CheckError as exc:
        detail, ok = str(exc), False
    except Exception as exc:  # a broken check is reported as a FAIL, not a crash
        detail, ok = f"check crashed: {type(exc).__name__}: {exc}", False
    return CheckResult(name, ok, detail, round(ctx.clock() - started, 2))


def run_checks(
    names: Sequence[str], ctx: CheckContext, on_result: Callable[[CheckResult], None] | None = None
) -> list[CheckResult]:
    results = []
    for name in names:
        result = run_check(name, ctx)
        if on_result:
            on_result(result)
        results.append(result)
    return results


# --- reading outputs ----------------------------------------------------------------------------


def _output(ctx: CheckContext, name: str) -> Any:
    value = ctx.outputs.get(name)
    if value is None or value in ([], ""):
        raise _FinalError(f"stack output {name!r} is missing or empty; the phase that builds it must export it")
    return value


def _str_list(ctx: CheckContext, name: str) -> list[str]:
    value = _output(ctx, name)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise _FinalError(f"stack output {name!r} must be a list of strings (got {value!r:.80})")
    return list(value)


# --- Kubernetes through its REST API ------------------------------------------------------------


class KubeClient:
    """The few Kubernetes API calls the checks need, authenticated as the kubeconfig says.

    Certificates given inline (`*-data`, as K3s writes them) are written to a private temporary
    directory for `requests` and removed when the client closes.
    """

    def __init__(self, kubeconfig: str, deadline: Deadline) -> None:
        self._deadline = deadline
        self._tmp = tempfile.TemporaryDirectory(prefix="gpu-platform-kube-")
        self.session = requests.Session()
        try:
            self.server = self._configure(kubeconfig)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.session.close()
        self._tmp.cleanup()

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _file(self, name: str, data_b64: str | None, path: str | None, what: str) -> str | None:
        if data_b64:
            try:
                raw = base64.b64decode(data_b64, validate=True)
            except ValueError:
                raise _FinalError(f"kubeconfig: {what} is not valid base64") from None
            target = Path(self._tmp.name) / name
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(raw)
            return str(target)
        if path:
            if not Path(path).is_file():
                raise _FinalError(f"kubeconfig: {what} file {path} does not exist")
            return path
        return None

    def _configure(self, text: str) -> str:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError:
            raise _FinalError("kubeconfig output is not valid YAML") from None
        if not isinstance(doc, dict):
            raise _FinalError("kubeconfig output is not a kubeconfig mapping")

        def named(section: str, name: str | None) -> dict[str, Any]:
            items = doc.get(section) or []
            for item in items:
                if isinstance(item, dict) and (name is None or item.get("name") == name):
                    body = item.get(section[:-1])
                    if isinstance(body, dict):
                        return body
            raise _FinalError(f"kubeconfig: no {section[:-1]} named {name!r}")

        context = named("contexts", doc.get("current-context"))
        cluster = named("clusters", context.get("cluster"))
        user = named("users", context.get("user"))
        server = str(cluster.get("server") or "").rstrip("/")
        if not server.startswith(("https://", "http://")):
            raise _FinalError(f"kubeconfig: cluster server {server!r} is not an http(s) URL")
        if cluster.get("insecure-skip-tls-verify"):
            raise _FinalError("kubeconfig: insecure-skip-tls-verify is set; refusing an unverified API server")
        ca = self._file("ca.crt", cluster.get("certificate-authority-data"), cluster.get("certificate-authority"), "CA")
        # Passed on every request: a session-level `verify` loses to REQUESTS_CA_BUNDLE (psf/requests#3829).
        self.verify: str | bool = ca if ca else True
        cert = self._file(
            "client.crt", user.get("client-certificate-data"), user.get("client-certificate"), "client certificate"
        )
        key = self._file("client.key", user.get("client-key-data"), user.get("client-key"), "client key")
        if cert and key:
            self.session.cert = (cert, key)
        elif user.get("token"):
            self.session.headers["Authorization"] = f"Bearer {user['token']}"
        else:
            raise _FinalError("kubeconfig: the user has neither a client certificate and key nor a token")
        return server

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(
            method, self.server + path, timeout=self._deadline.request_timeout(), verify=self.verify, **kwargs
        )

    def get(self, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.request("GET", path, **kwargs)
        _raise_for_kube(response, path)
        body = response.json()
        if not isinstance(body, dict):
            raise CheckError(f"GET {path}: the API answered {type(body).__name__}, not an object")
        return body


def _raise_for_kube(response: requests.Response, path: str) -> None:
    if response.status_code < 400:
        return
    try:
        message = response.json().get("message", "")
    except ValueError:
        message = response.text[:200]
    text = f"{response.request.method} {path}: HTTP {response.status_code} {message}".strip()
    if response.status_code in (401, 403):
        raise _FinalError(f"{text} (the kubeconfig's credentials are not accepted)")
    raise CheckError(text)


@contextmanager
def _kube(ctx: CheckContext, deadline: Deadline) -> Iterator[KubeClient]:
    kubeconfig = _output(ctx, OUT_KUBECONFIG)
    if not isinstance(kubeconfig, str):
        raise _FinalError(f"stack output {OUT_KUBECONFIG!r} must be the kubeconfig YAML text")
    with KubeClient(kubeconfig, deadline) as client:
        yield client


def _condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == kind:
            return cond
    return None


def _quantity(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


@_check("nodes-ready-gpu", "every K3s node Ready; every GPU node reports nvidia.com/gpu allocatable")
def nodes_ready_gpu(ctx: CheckContext, deadline: Deadline) -> str:
    expected = ctx.outputs.get(OUT_GPU_NODES)
    if expected is not None:
        expected = _str_list(ctx, OUT_GPU_NODES)
    with _kube(ctx, deadline) as kube:

        def attempt() -> str:
            nodes = kube.get("/api/v1/nodes").get("items") or []
            if not nodes:
                raise CheckError("no nodes registered with the API server")
            by_name = {n["metadata"]["name"]: n for n in nodes}
            not_ready = sorted(
                name for name, node in by_name.items() if (_condition(node, "Ready") or {}).get("status") != "True"
            )
            gpu_names = expected or sorted(
                name for name, node in by_name.items() if node["metadata"].get("labels", {}).get(GPU_PRESENT_LABEL)
            )
            if not gpu_names:
                raise CheckError(
                    f"no GPU nodes: stack output {OUT_GPU_NODES!r} is missing and no node has {GPU_PRESENT_LABEL}"
                )
            missing = sorted(set(gpu_names) - set(by_name))
            allocatable = {
                name: _quantity(by_name[name].get("status", {}).get("allocatable", {}).get(GPU_RESOURCE, 0))
                for name in gpu_names
                if name in by_name
            }
            no_gpu = sorted(name for name, count in allocatable.items() if count < 1)
            problems = []
            if not_ready:
                problems.append(f"not Ready: {', '.join(not_ready)}")
            if missing:
                problems.append(f"GPU nodes not registered: {', '.join(missing)}")
            if no_gpu:
                problems.append(
                    f"no {GPU_RESOURCE} allocatable on: {', '.join(no_gpu)} (is the NVIDIA device plugin running?)"
                )
            if problems:
                raise CheckError("; ".join(problems))
            gpus = ", ".join(f"{name}={count}" for name, count in sorted(allocatable.items()))
            return f"{len(by_name)} node(s) Ready; {GPU_RESOURCE} allocatable: {gpus}"

        return deadline.poll(attempt)


@_check("nvidia-smi-smoke", "a pod with nvidia.com/gpu: 1 on the nvidia runtime runs nvidia-smi")
def nvidia_smi_smoke(ctx: CheckContext, deadline: Deadline) -> str:
    manifest = ctx.overrides.get("smoke_manifest") or smoke_pod_manifest()
    namespace = manifest["metadata"].get("namespace", "default")
    name = manifest["metadata"]["name"]
    pods = f"/api/v1/namespaces/{quote(namespace)}/pods"
    pod_path = f"{pods}/{quote(name)}"
    with _kube(ctx, deadline) as kube:
        # A pod left behind by an interrupted run would make the create below fail with 409.
        _delete_quietly(kube, pod_path)
        deadline.poll(lambda: _create(kube, pods, manifest))
        try:

            def attempt() -> str:
                pod = kube.get(pod_path)
                phase = (pod.get("status") or {}).get("phase", "Unknown")
                if phase in ("Succeeded", "Failed"):
                    return phase
                scheduled = _condition(pod, "PodScheduled") or {}
                if scheduled.get("status") == "False":
                    raise CheckError(f"pod {namespace}/{name} not scheduled: {scheduled.get('message', '')}".strip())
                raise CheckError(f"pod {namespace}/{name} is {phase}")

            phase = deadline.poll(attempt)
            log_response = kube.request("GET", f"{pod_path}/log")
            log = log_response.text if log_response.ok else ""
        finally:
            _delete_quietly(kube, pod_path)
    if phase == "Succeeded" and "NVIDIA-SMI" in log:
        driver = next((line.strip(" |") for line in log.splitlines() if "Driver Version" in line), "nvidia-smi ran")
        return f"{namespace}/{name} ran nvidia-smi: {' '.join(driver.split())}"
    tail = " | ".join(line.strip() for line in log.strip().splitlines()[-3:]) or "no log"
    hint = ""
    if "NVML" in log:
        hint = " (NVML errors: the pod is not on the nvidia runtime; check runtimeClassName, docs/troubleshooting.md)"
    raise _FinalError(f"{namespace}/{name} {phase}: {tail}{hint}")


def _delete_quietly(kube: KubeClient, path: str) -> None:
    # Best effort: the pod is disposable, and a failed delete must not hide the check's verdict.
    with suppress(requests.RequestException):
        kube.request("DELETE", path, params={"gracePeriodSeconds": "0"})


def _create(kube: KubeClient, path: str, manifest: Mapping[str, Any]) -> str:
    response = kube.request("POST", path, json=manifest)
    if response.status_code == 409:
        raise CheckError(f"POST {path}: the previous smoke pod is still being deleted")
    _raise_for_kube(response, path)
    return "created"


def _restore_jobs_source(ctx: CheckContext) -> tuple[list[str], tuple[str, str] | None]:
    """Named jobs (`restoreJobs`: ["ns/name"]) or a label selector (`platform.restoreJobs`)."""
    if ctx.outputs.get(OUT_RESTORE_JOBS):
        jobs = _str_list(ctx, OUT_RESTORE_JOBS)
        for job in jobs:
            if job.count("/") != 1:
                raise _FinalError(f"stack output {OUT_RESTORE_JOBS!r}: {job!r} is not namespace/name")
        return jobs, None
    spec = (ctx.outputs.get(OUT_PLATFORM) or {}).get(OUT_RESTORE_JOBS)
    if isinstance(spec, Mapping) and spec.get("namespace") and spec.get("selector"):
        return [], (str(spec["namespace"]), str(spec["selector"]))
    raise _FinalError(
        f"stack outputs {OUT_RESTORE_JOBS!r} and {OUT_PLATFORM}.{OUT_RESTORE_JOBS} are missing; "
        "the phase that restores data must export its restore Jobs"
    )


@_check("restore-jobs-complete", "every data restore Job in K3s has completed")
def restore_jobs_complete(ctx: CheckContext, deadline: Deadline) -> str:
    named, selected = _restore_jobs_source(ctx)
    with _kube(ctx, deadline) as kube:

        def bodies() -> list[tuple[str, Mapping[str, Any]]]:
            if selected is None:
                found: list[tuple[str, Mapping[str, Any]]] = []
                for job in named:
                    namespace, name = job.split("/")
                    found.append((job, kube.get(f"/apis/batch/v1/namespaces/{quote(namespace)}/jobs/{quote(name)}")))
                return found
            namespace, selector = selected
            items = kube.get(f"/apis/batch/v1/namespaces/{quote(namespace)}/jobs", params={"labelSelector": selector})
            jobs = [(f"{namespace}/{j['metadata']['name']}", j) for j in items.get("items") or []]
            if not jobs:
                raise CheckError(f"no Job in {namespace} matches {selector}")
            return sorted(jobs, key=lambda pair: pair[0])

        def attempt() -> str:
            pending: list[str] = []
            done: list[str] = []
            for job, body in bodies():
                if (_condition(body, "Failed") or {}).get("status") == "True":
                    message = (_condition(body, "Failed") or {}).get("message") or "failed"
                    raise _FinalError(f"restore Job {job} failed: {message}")
                (done if (_condition(body, "Complete") or {}).get("status") == "True" else pending).append(job)
            if pending:
                raise CheckError(f"not complete yet: {', '.join(pending)}")
            return f"{len(done)} restore Job(s) complete: {', '.join(done)}"

        return deadline.poll(attempt)


# --- HTTP endpoints -----------------------------------------------------------------------------


def _public_urls(ctx: CheckContext) -> list[str]:
    if ctx.outputs.get(OUT_PUBLIC_URLS):
        return _str_list(ctx, OUT_PUBLIC_URLS)
    hostnames = (ctx.outputs.get(OUT_PLATFORM) or {}).get(OUT_PUBLIC_HOSTNAMES)
    if isinstance(hostnames, list | tuple) and hostnames and all(isinstance(h, str) and h for h in hostnames):
        return [f"https://{host}/" for host in hostnames]
    raise _FinalError(
        f"stack outputs {OUT_PUBLIC_URLS!r} and {OUT_PLATFORM}.{OUT_PUBLIC_HOSTNAMES} are missing or empty; "
        "the phase that routes traffic must export its public hostnames"
    )


@_check("public-routes-200", "every public hostname answers 200 over TLS")
def public_routes_200(ctx: CheckContext, deadline: Deadline) -> str:
    urls = _public_urls(ctx)
    plain = [url for url in urls if not url.startswith("https://")]
    if plain:
        raise _FinalError(f"not served over TLS: {', '.join(plain)}")

    def attempt() -> str:
        failures = []
        for url in urls:
            try:
                # A redirect is not an answer: the route itself must serve the page.
                response = requests.get(
                    url, timeout=deadline.request_timeout(), verify=ctx.verify, allow_redirects=False
                )
            except requests.RequestException as exc:
                failures.append(f"{url}: {_describe(exc)}")
                continue
            if response.status_code != 200:
                failures.append(f"{url}: HTTP {response.status_code}")
        if failures:
            raise CheckError("; ".join(failures))
        return f"{len(urls)} route(s) answered 200 over TLS"

    return deadline.poll(attempt)


def _llama_urls(ctx: CheckContext) -> list[str]:
    if ctx.outputs.get(OUT_LLAMA_HEALTH_URLS):
        return _str_list(ctx, OUT_LLAMA_HEALTH_URLS)
    urls = []
    for name in OUT_LLAMA_SERVERS:
        server = ctx.outputs.get(name)
        url = server.get("url") if isinstance(server, Mapping) else None
        if isinstance(url, str) and url:
            urls.append(url.rstrip("/") + "/health")
    if not urls:
        raise _FinalError(
            f"no llama server in the stack outputs ({', '.join(OUT_LLAMA_SERVERS)} with a url, or "
            f"{OUT_LLAMA_HEALTH_URLS!r})"
        )
    return urls


def _service_proxy_path(url: str) -> str | None:
    """The API server's proxy path for an in-cluster URL (http://svc.ns.svc.cluster.local:port/path)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    labels = host.split(".")
    if len(labels) < 3 or labels[2] != "svc":
        return None
    service, namespace = labels[0], labels[1]
    port = f":{parts.port}" if parts.port else ""
    scheme = "https:" if parts.scheme == "https" else ""
    return f"/api/v1/namespaces/{quote(namespace)}/services/{scheme}{quote(service)}{port}/proxy{parts.path or '/'}"


@_check("llama-health", "the llama server(s) answer /health with ok")
def llama_health(ctx: CheckContext, deadline: Deadline) -> str:
    urls = _llama_urls(ctx)
    in_cluster = {url: _service_proxy_path(url) for url in urls}
    kube = None
    if any(in_cluster.values()):
        # In-cluster servers are reached through the API server's service proxy: no port-forward.
        kubeconfig = _output(ctx, OUT_KUBECONFIG)
        kube = KubeClient(str(kubeconfig), deadline)

    def get(url: str) -> requests.Response:
        proxy = in_cluster[url]
        if proxy and kube is not None:
            return kube.request("GET", proxy)
        return requests.get(url, timeout=deadline.request_timeout(), verify=ctx.verify)

    def attempt() -> str:
        failures = []
        for url in urls:
            try:
                response = get(url)
            except requests.RequestException as exc:
                failures.append(f"{url}: {_describe(exc)}")
                continue
            try:
                body = response.json()
            except ValueError:
                body = {}
            status = body.get("status") if isinstance(body, dict) else None
            if response.status_code != 200 or status != "ok":
                # llama-server answers 503 {"error": {"message": "Loading model"}} until the weights are in.
                error = body.get("error") if isinstance(body, dict) else None
                message = error.get("message") if isinstance(error, dict) else status
                failures.append(f"{url}: HTTP {response.status_code} {message or ''}".rstrip())
        if failures:
            raise CheckError("; ".join(failures))
        return f"{len(urls)} llama server(s) healthy"

    try:
        return deadline.poll(attempt)
    finally:
        if kube is not None:
            kube.close()


# --- backups ------------------------------------------------------------------------------------


def _s3(ctx: CheckContext) -> Any:
    if ctx.s3_client is not None:
        return ctx.s3_client
    # The providers' client (path-style addressing for an S3-compatible endpoint), so the check reads
    # the bucket as they do. Imported here: only this check needs it, and it brings boto3, the heaviest
    # import here (+118 ms, 160 modules, for every importer of this module: runbooks, every
    # `python -m migrate` command), measured after a whole prod plan.
    from components.migration.backups import BucketLocation, s3_client  # noqa: PLC0415

    location = BucketLocation(
        bucket=str(ctx.outputs.get(OUT_BACKUP_BUCKET) or ""),
        region=str(ctx.outputs.get(OUT_BACKUP_REGION) or "us-east-1"),
        endpoint=ctx.outputs.get(OUT_BACKUP_ENDPOINT) or None,
    )
    return s3_client(location, *(ctx.s3_credentials or ()))


@_check("backups-verified", "every backup object re-read and its SHA-256 matches the record")
def backups_verified(ctx: CheckContext, deadline: Deadline) -> str:
    bucket = _output(ctx, OUT_BACKUP_BUCKET)
    objects = _output(ctx, OUT_BACKUP_OBJECTS)
    if not isinstance(objects, list | tuple) or not all(
        isinstance(o, Mapping) and isinstance(o.get("key"), str) and isinstance(o.get("sha256"), str) for o in objects
    ):
        shape = "a list of {key, sha256}"
        raise _FinalError(f"stack output {OUT_BACKUP_OBJECTS!r} must be {shape} (got {objects!r:.80})")
    client = _s3(ctx)
    bad: list[str] = []
    total = 0
    for obj in objects:
        key, want = obj["key"], obj["sha256"].lower()
        digest = hashlib.sha256()
        try:
            body = client.get_object(Bucket=bucket, Key=key)["Body"]
            while chunk := body.read(1 << 20):
                digest.update(chunk)
                total += len(chunk)
                if deadline.expired():
                    raise _FinalError(f"reading s3://{bucket}/{key} took longer than {ctx.timeout:g}s")
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            bad.append(f"{key}: {code}")
            continue
        except BotoCoreError as exc:
            raise _FinalError(f"s3://{bucket}: {exc}") from None
        if digest.hexdigest() != want:
            bad.append(f"{key}: SHA-256 {digest.hexdigest()[:12]}… != recorded {want[:12]}…")
    if bad:
        raise _FinalError(f"s3://{bucket}: {'; '.join(bad)}")
    return f"{len(objects)} object(s), {total} bytes in s3://{bucket} match their recorded SHA-256"


# --- Fly.io -------------------------------------------------------------------------------------


def _fly_get(ctx: CheckContext, deadline: Deadline, path: str) -> requests.Response:
    if not ctx.fly_token:
        raise _FinalError("no Fly API token: set FLY_API_TOKEN or gpu-platform:flyApiToken")
    response = requests.get(
        ctx.fly_api_url.rstrip("/") + path,
        headers={"Authorization": f"Bearer {ctx.fly_token}"},
        timeout=deadline.request_timeout(),
    )
    if response.status_code in (401, 403):
        raise _FinalError(f"Fly API GET {path}: HTTP {response.status_code} (the token is not accepted)")
    return response


def _fly_machines(ctx: CheckContext, deadline: Deadline, app: str) -> list[dict[str, Any]]:
    path = f"/apps/{quote(app)}/machines"
    response = _fly_get(ctx, deadline, path)
    if response.status_code == 404:
        raise _FinalError(f"Fly app {app} does not exist")
    if response.status_code != 200:
        raise CheckError(f"Fly API GET {path}: HTTP {response.status_code}")
    machines = response.json()
    if not isinstance(machines, list):
        raise CheckError(f"Fly API GET {path}: expected a list of machines")
    return machines


def _fly_states(ctx: CheckContext, deadline: Deadline, want: Callable[[str], bool], adjective: str) -> str:
    apps = _str_list(ctx, OUT_FLY_APPS)

    def attempt() -> str:
        problems, count = [], 0
        for app in apps:
            machines = _fly_machines(ctx, deadline, app)
            if not machines and adjective == "started":
                problems.append(f"{app}: no machines")
            for machine in machines:
                count += 1
                state = str(machine.get("state", "unknown"))
                if not want(state):
                    problems.append(f"{app}/{machine.get('id', '?')}: {state}")
        if problems:
            raise CheckError(f"not {adjective}: {', '.join(problems)}")
        return f"{count} machine(s) of {len(apps)} app(s) {adjective}"

    return deadline.poll(attempt)


@_check("fly-apps-running", "every legacy Fly app has its machines started")
def fly_apps_running(ctx: CheckContext, deadline: Deadline) -> str:
    return _fly_states(ctx, deadline, lambda s: s == "started", "started")


@_check("fly-machines-stopped", "every machine of every legacy Fly app is stopped")
def fly_machines_stopped(ctx: CheckContext, deadline: Deadline) -> str:
    return _fly_states(ctx, deadline, lambda s: s in FLY_STOPPED_STATES, "stopped")


@_check("fly-apps-destroyed", "the legacy Fly apps no longer exist")
def fly_apps_destroyed(ctx: CheckContext, deadline: Deadline) -> str:
    apps = _str_list(ctx, OUT_FLY_APPS)

    def attempt() -> str:
        remaining = []
        for app in apps:
            response = _fly_get(ctx, deadline, f"/apps/{quote(app)}")
            if response.status_code == 200:
                remaining.append(app)
            elif response.status_code != 404:
                raise CheckError(f"Fly API GET /apps/{app}: HTTP {response.status_code}")
        if remaining:
            raise CheckError(f"still exist: {', '.join(remaining)}")
        return f"{len(apps)} app(s) gone: {', '.join(apps)}"

    return deadline.poll(attempt)


# --- traffic cutover gates (p2b1-cutover-50, p2b2-cutover-100) ----------------------------------
# Thresholds come from the phase file (`exitCriteria.thresholds`, components/config/phases.py).

OUT_PROMETHEUS_URL = "prometheusUrl"  # inside `platform`: the in-cluster Prometheus (components/platform/charts.py)
OUT_ROUTE_BACKENDS = "routeBackends"  # inside `platform`: [{hostname, k3sService, legacyService}]
# Traefik's service names as components/platform/traffic.py builds them: `<namespace>-<service>-<port>@kubernetescrd`.
_TRAEFIK_SERVICE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?@kubernetescrd$")


def _thresholds(ctx: CheckContext, name: str) -> Any:
    given = ctx.thresholds.get(name)
    return given if given is not None else CHECK_THRESHOLDS[name]()


def _platform_output(ctx: CheckContext, key: str) -> Any:
    value = (ctx.outputs.get(OUT_PLATFORM) or {}).get(key)
    if value in (None, [], ""):
        raise _FinalError(
            f"stack output {OUT_PLATFORM}.{key} is missing; the phase that routes traffic (with monitoring) exports it"
        )
    return value


def _route_backends(ctx: CheckContext) -> list[tuple[str, str, str]]:
    rows = _platform_output(ctx, OUT_ROUTE_BACKENDS)
    backends = []
    for row in rows if isinstance(rows, list | tuple) else [rows]:
        if not isinstance(row, Mapping):
            raise _FinalError(f"stack output {OUT_PLATFORM}.{OUT_ROUTE_BACKENDS}: {row!r:.80} is not a mapping")
        names = (row.get("hostname"), row.get("k3sService"), row.get("legacyService"))
        # The names go into PromQL: only Traefik's own service-name shape is accepted, so nothing is escaped.
        if not isinstance(names[0], str) or not all(
            isinstance(n, str) and _TRAEFIK_SERVICE.match(n) for n in names[1:]
        ):
            raise _FinalError(
                f"stack output {OUT_PLATFORM}.{OUT_ROUTE_BACKENDS}: {dict(row)!r:.120} needs a hostname and two "
                "Traefik service names (<namespace>-<service>-<port>@kubernetescrd)"
            )
        backends.append((str(names[0]), str(names[1]), str(names[2])))
    return backends


def routes_slo_queries(services: Sequence[str], window: str) -> dict[str, str]:
    """The PromQL `routes-slo` sends, per Traefik backend service: requests, 5xx answers, p95 seconds.

    Traefik v3 records `traefik_service_requests_total` and `traefik_service_request_duration_seconds`
    (labels code, method, protocol, service) for each load-balanced backend it proxies to.
    """
    selector = f'service=~"{"|".join(services)}"'
    return {
        "requests": f"sum by (service) (increase(traefik_service_requests_total{{{selector}}}[{window}]))",
        "errors": (f'sum by (service) (increase(traefik_service_requests_total{{{selector},code=~"5.."}}[{window}]))'),
        "p95": (
            "histogram_quantile(0.95, sum by (service, le) "
            f"(rate(traefik_service_request_duration_seconds_bucket{{{selector}}}[{window}])))"
        ),
    }


class _Prometheus:
    """Instant queries on Prometheus's HTTP API, directly or through the API server's service proxy."""

    def __init__(self, ctx: CheckContext, deadline: Deadline) -> None:
        self._ctx, self._deadline = ctx, deadline
        self.url = str(_platform_output(ctx, OUT_PROMETHEUS_URL)).rstrip("/")
        proxy = _service_proxy_path(self.url + "/")
        self._kube = KubeClient(str(_output(ctx, OUT_KUBECONFIG)), deadline) if proxy else None
        self._base = proxy.rstrip("/") if proxy else self.url

    def close(self) -> None:
        if self._kube is not None:
            self._kube.close()

    def query(self, promql: str, key: str = "service") -> dict[str, float]:
        """Label `key` -> value of one instant query (NaN where Prometheus answers NaN)."""
        path, params = f"{self._base}/api/v1/query", {"query": promql}
        if self._kube is not None:
            response = self._kube.request("GET", path, params=params)
        else:
            response = requests.get(path, params=params, timeout=self._deadline.request_timeout())
        try:
            body = response.json()
        except ValueError:
            raise CheckError(f"Prometheus {self.url}: HTTP {response.status_code}, not a JSON answer") from None
        if response.status_code != 200 or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else None
            text = f"Prometheus {self.url}: HTTP {response.status_code} {error or ''}".rstrip()
            # 400 and 422: the query itself is wrong; asking again cannot help.
            raise (_FinalError if response.status_code in (400, 422) else CheckError)(text)
        data = body.get("data") or {}
        if data.get("resultType") != "vector":
            raise CheckError(f"Prometheus {self.url}: expected a vector, got {data.get('resultType')!r}")
        return {
            str(item["metric"].get(key, "")): float(item["value"][1])
            for item in data.get("result") or []
            if isinstance(item, dict) and isinstance(item.get("metric"), dict)
        }


@dataclass(frozen=True)
class BackendSlo:
    requests: float
    errors: float
    p95: float  # seconds; NaN without requests

    @property
    def error_ratio(self) -> float:
        return self.errors / self.requests if self.requests > 0 else math.nan

    def show(self) -> str:
        if self.requests <= 0:
            return "no requests"
        p95 = f"{self.p95:.3g}s" if math.isfinite(self.p95) else "n/a"
        return f"p95 {p95}, errors {self.error_ratio:.2%} of {self.requests:.0f}"


def judge_route(k3s: BackendSlo, legacy: BackendSlo, limits: Any) -> list[str]:
    """What is wrong with one route's K3s backend under `limits` (RoutesSloThresholds); empty when it passes."""
    problems = []
    if k3s.requests < limits.min_requests:
        return [
            f"only {k3s.requests:.0f} K3s request(s) in {limits.window}, fewer than minRequests {limits.min_requests}"
        ]
    if not math.isfinite(k3s.p95) or k3s.p95 > limits.max_p95_seconds:
        problems.append(f"K3s p95 {k3s.p95:.3g}s > {limits.max_p95_seconds:g}s")
    if k3s.error_ratio > limits.max_error_ratio:
        problems.append(f"K3s errors {k3s.error_ratio:.2%} > {limits.max_error_ratio:.2%}")
    if legacy.requests >= limits.min_requests:
        if math.isfinite(legacy.p95) and k3s.p95 > limits.max_p95_vs_legacy * legacy.p95:
            problems.append(f"K3s p95 {k3s.p95:.3g}s > {limits.max_p95_vs_legacy:g} x legacy {legacy.p95:.3g}s")
        if k3s.error_ratio > legacy.error_ratio + limits.max_error_ratio_over_legacy:
            problems.append(
                f"K3s errors {k3s.error_ratio:.2%} > legacy {legacy.error_ratio:.2%} "
                f"+ {limits.max_error_ratio_over_legacy:.2%}"
            )
    return problems


@_check(
    "routes-slo", "per route, K3s's p95 latency and error ratio in Prometheus within the phase's limits and vs legacy"
)
def routes_slo(ctx: CheckContext, deadline: Deadline) -> str:
    limits = _thresholds(ctx, "routes-slo")
    routes = _route_backends(ctx)
    services = sorted({name for _, k3s, legacy in routes for name in (k3s, legacy)})
    prometheus = _Prometheus(ctx, deadline)
    try:
        results = {
            what: deadline.poll(functools.partial(prometheus.query, promql))
            for what, promql in routes_slo_queries(services, limits.window).items()
        }
    finally:
        prometheus.close()

    def backend(service: str) -> BackendSlo:
        return BackendSlo(
            results["requests"].get(service, 0.0),
            results["errors"].get(service, 0.0),
            results["p95"].get(service, math.nan),
        )

    lines, failed = [], []
    for hostname, k3s_service, legacy_service in routes:
        k3s, legacy = backend(k3s_service), backend(legacy_service)
        problems = judge_route(k3s, legacy, limits)
        compared = "" if legacy.requests >= limits.min_requests else " (too little legacy traffic to compare)"
        verdict = "FAIL " + "; ".join(problems) if problems else "ok"
        lines.append(f"  {hostname}: K3s {k3s.show()} | legacy {legacy.show()}{compared} -> {verdict}")
        if problems:
            failed.append(hostname)
    head = (
        f"last {limits.window}, limits p95 <= {limits.max_p95_seconds:g}s, errors <= {limits.max_error_ratio:.2%}, "
        f"vs legacy p95 x{limits.max_p95_vs_legacy:g} and errors +{limits.max_error_ratio_over_legacy:.2%}"
    )
    if failed:
        raise _FinalError(f"{len(failed)} of {len(routes)} route(s) outside the limits ({head}):\n" + "\n".join(lines))
    return f"{len(routes)} route(s) within the limits ({head}):\n" + "\n".join(lines)


@_check("load-test", "a bounded Locust load test of the public hostnames meets the phase's p95 and error targets")
def load_test(ctx: CheckContext, deadline: Deadline) -> str:
    limits = _thresholds(ctx, "load-test")
    urls = _public_urls(ctx)
    plain = [url for url in urls if not url.startswith("https://")]
    if plain:
        raise _FinalError(f"not served over TLS: {', '.join(plain)}")
    hosts = [str(urlsplit(url).hostname) for url in urls]
    try:
        report = loadtest.run(
            loadtest.Plan.from_thresholds(limits, hosts, verify=ctx.verify, connect_to=dict(ctx.connect_to))
        )
    except loadtest.LoadTestError as exc:
        raise _FinalError(str(exc)) from None
    summary = report.summary()
    problems = report.problems(limits)
    if problems:
        raise _FinalError(f"{'; '.join(problems)} ({summary})")
    return summary


# --- p3-local-brain: the serving targets ----------------------------------------------------------
OUT_LLAMA_API_KEYS = {"llamaWorkstation": "llamaWorkstationApiKey", "llamaCluster": "llamaClusterApiKey"}
OUT_ROUTER = "router"  # components/llm/llama.py: {"url", "aliases" (the local model groups), ...}
OUT_ROUTER_MASTER_KEY = "routerMasterKey"
ROUTER_POD_SELECTOR = "app.kubernetes.io/name=llm-router"
# LiteLLM's Prometheus counters (callbacks: ["prometheus"] in the rendered config): successful
# answers per model group, and requests the proxy failed altogether.
LITELLM_SUCCESS = series.LITELLM_SUCCESS
LITELLM_PROXY_FAILED = series.LITELLM_PROXY_FAILED
# Inside llamaCluster (components/llm/llama.py): the labels Prometheus knows the server's series by.
OUT_LLAMA_METRICS = "metrics"


def _kube_ssl(kube: KubeClient) -> Any:
    context = ssl.create_default_context(cafile=kube.verify if isinstance(kube.verify, str) else None)
    if isinstance(kube.session.cert, tuple):
        context.load_cert_chain(*kube.session.cert)
    return context


def _bench_endpoint(kube: KubeClient | None, url: str, key: str) -> Any:
    """The benchmark's Endpoint for `url`: straight there, or through the API server's service proxy
    for an in-cluster URL, authenticated to Kubernetes as the kubeconfig says and to llama-server
    with `X-Api-Key` (the Authorization header belongs to the API server there)."""
    proxy = _service_proxy_path(url)
    if proxy is None or kube is None:
        return bench.Endpoint(url, key)
    headers = {"X-Api-Key": key}
    token = kube.session.headers.get("Authorization")
    if isinstance(token, str):
        headers["Authorization"] = token
    return bench.Endpoint(kube.server + proxy.rstrip("/"), "", headers, _kube_ssl(kube))


@_check("llama-bench-targets", "the llama server(s) meet the phase's latency and tokens/s targets under load")
def llama_bench_targets(ctx: CheckContext, deadline: Deadline) -> str:
    t = _thresholds(ctx, "llama-bench-targets")
    servers = []
    for name in OUT_LLAMA_SERVERS:
        server = ctx.outputs.get(name)
        url = server.get("url") if isinstance(server, Mapping) else None
        if isinstance(url, str) and url:
            key = ctx.outputs.get(OUT_LLAMA_API_KEYS[name])
            if not isinstance(key, str) or not key:
                raise _FinalError(f"stack output {OUT_LLAMA_API_KEYS[name]!r} (the key of {name}) is missing")
            servers.append((name, url, key))
    if not servers:
        raise _FinalError(f"no llama server in the stack outputs ({', '.join(OUT_LLAMA_SERVERS)} with a url)")
    kube = (
        KubeClient(str(_output(ctx, OUT_KUBECONFIG)), deadline)
        if any(_service_proxy_path(u) for _, u, _ in servers)
        else None
    )
    args = bench.parse_args(
        [
            "--url", "http://benchmark.invalid",
            "--max-tokens", str(t.max_tokens),
            "--ttft-target", str(t.ttft_p95_seconds),
            "--latency-target", str(t.latency_p95_seconds),
            "--tps-target", str(t.decode_tokens_per_second),
        ]
    )  # fmt: skip
    passed, failed = [], []
    try:
        for name, url, key in servers:
            endpoint = _bench_endpoint(kube, url, key)
            results, wall = bench.run(
                endpoint,
                model="local",
                prompt=bench.DEFAULT_PROMPT,
                max_tokens=t.max_tokens,
                clients=t.clients,
                requests=t.requests,
                timeout=max(1.0, min(deadline.remaining(), 4 * t.latency_p95_seconds)),
            )
            report = bench.evaluate(results, wall, args)
            figures = {row[0]: row for row in report.rows}
            answer_row = f"answer of {t.max_tokens} tokens"
            summary = (
                f"{name}: ttft p95 {figures['time to first token'][2]}, "
                f"{figures[answer_row][2]} p95 per answer, "
                f"{figures['decode tokens/s per request'][1]} tokens/s p50"
            )
            watched = _watched_decode_rate(ctx, deadline, ctx.outputs.get(name), t)
            if watched is not None:
                summary += f", {watched[0]}"
            if report.passed and (watched is None or watched[1]):
                passed.append(summary)
            else:
                missed = [f"{row[0]} {row[1]}/{row[2]} (target {row[3]})" for row in report.rows if not row[4]]
                missed += [watched[0]] if watched is not None and not watched[1] else []
                errors = sorted({r.error for r in results if not r.ok})[:2]
                failed.append(f"{name}: missed {'; '.join(missed)}" + (f" ({'; '.join(errors)})" if errors else ""))
    finally:
        if kube is not None:
            kube.close()
    if failed:
        raise _FinalError("; ".join(failed))
    return f"{t.requests} requests x {t.max_tokens} tokens, {t.clients} clients: " + "; ".join(passed)


def _watched_decode_rate(ctx: CheckContext, deadline: Deadline, server: Any, t: Any) -> tuple[str, bool] | None:
    """The server's decode tokens/s per request as Prometheus saw it over the phase's window (the
    series the local-brain dashboard and the LlamaDecodeRateLow alert read), and whether it meets the
    target; None for a server Prometheus does not scrape (the workstation's) or without monitoring."""
    labels = server.get(OUT_LLAMA_METRICS) if isinstance(server, Mapping) else None
    if not isinstance(labels, Mapping) or not (ctx.outputs.get(OUT_PLATFORM) or {}).get(OUT_PROMETHEUS_URL):
        return None
    matchers = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if re.fullmatch(r"[a-z0-9-]+", str(v)))
    promql = series.decode_rate_expr(matchers, t.window, by=",".join(sorted(labels)))
    prometheus = _Prometheus(ctx, deadline)

    def attempt() -> float:
        # The benchmark's last answers reach Prometheus at its next scrape: wait for a value.
        values = [v for v in prometheus.query(promql).values() if math.isfinite(v)]
        if not values:
            raise CheckError(f"Prometheus has no decode rate yet for {matchers} over {t.window}")
        return min(values)

    try:
        rate = deadline.poll(attempt)
    finally:
        prometheus.close()
    ok = rate >= t.decode_tokens_per_second
    return f"Prometheus {rate:.1f} tokens/s per request over {t.window} (target {t.decode_tokens_per_second:g})", ok


def _router_counts_in_prometheus(ctx: CheckContext, deadline: Deadline, window: str) -> dict[str, float]:
    """Answers per model group and requests the proxy failed ("") over `window`, from the router's
    series in Prometheus (every router pod is scraped; the router dashboard reads the same)."""
    prometheus = _Prometheus(ctx, deadline)
    try:
        answered = deadline.poll(
            functools.partial(
                prometheus.query, f"sum by (model_group) (increase({LITELLM_SUCCESS}[{window}]))", "model_group"
            )
        )
        failed = deadline.poll(
            functools.partial(prometheus.query, f"sum(increase({LITELLM_PROXY_FAILED}[{window}]))", "_")
        )
    finally:
        prometheus.close()
    # increase() extrapolates to the window's edges: whole requests read better and judge the same.
    counts = {g: float(round(v)) for g, v in answered.items() if math.isfinite(v)}
    return {**counts, "": float(round(sum(v for v in failed.values() if math.isfinite(v))))}


def _prometheus_samples(text: str, names: set[str]) -> list[tuple[str, dict[str, str], float]]:
    """The samples of `names` in a Prometheus text exposition."""

    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)", line)
        if not match or match.group(1) not in names:
            continue
        labels = {k: v.replace('\\"', '"') for k, v in re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(3) or "")}
        try:
            samples.append((match.group(1), labels, float(match.group(4))))
        except ValueError:
            continue
    return samples


def _router_counts(
    ctx: CheckContext, deadline: Deadline, kube: KubeClient | None, url: str, key: str
) -> dict[str, float]:
    """Successful answers per model group, plus "" for requests the proxy failed, summed over every
    router pod (each pod counts its own; the Service would show one pod at random)."""
    texts = []
    # LiteLLM takes its key from x-litellm-api-key as well: the Authorization header may belong to
    # the API server on the proxied route.
    headers = {"x-litellm-api-key": key}
    proxy = _service_proxy_path(url.rstrip("/") + "/metrics")
    if proxy is not None and kube is not None:
        namespace = urlsplit(url).hostname.split(".")[1]  # type: ignore[union-attr]
        port = urlsplit(url).port or 4000
        pods = kube.get(f"/api/v1/namespaces/{quote(namespace)}/pods", params={"labelSelector": ROUTER_POD_SELECTOR})
        names = [
            p["metadata"]["name"] for p in pods.get("items") or [] if (p.get("status") or {}).get("phase") == "Running"
        ]
        if not names:
            raise CheckError(f"no running router pod in {namespace} ({ROUTER_POD_SELECTOR})")
        for pod in names:
            response = kube.request(
                "GET", f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}:{port}/proxy/metrics", headers=headers
            )
            if response.status_code != 200:
                raise CheckError(f"router pod {pod} /metrics: HTTP {response.status_code}")
            texts.append(response.text)
    else:
        response = requests.get(
            url.rstrip("/") + "/metrics", headers=headers, timeout=deadline.request_timeout(), verify=ctx.verify
        )
        if response.status_code in (401, 403):
            raise _FinalError(f"{url}/metrics: HTTP {response.status_code} (the router master key is not accepted)")
        if response.status_code == 404:
            raise _FinalError(f"{url}/metrics: HTTP 404 (is `callbacks: [prometheus]` in the router config?)")
        if response.status_code != 200:
            raise CheckError(f"{url}/metrics: HTTP {response.status_code}")
        texts.append(response.text)
    counts: dict[str, float] = {}
    for text in texts:
        for name, labels, value in _prometheus_samples(text, {LITELLM_SUCCESS, LITELLM_PROXY_FAILED}):
            group = labels.get("model_group", "") if name == LITELLM_SUCCESS else ""
            counts[group] = counts.get(group, 0.0) + value
    return counts


@_check("router-local-share", "the share of router requests served by the local model groups meets the target")
def router_local_share(ctx: CheckContext, deadline: Deadline) -> str:
    t = _thresholds(ctx, "router-local-share")
    router = _output(ctx, OUT_ROUTER)
    url = router.get("url") if isinstance(router, Mapping) else None
    local = router.get("aliases") if isinstance(router, Mapping) else None
    if not isinstance(url, str) or not isinstance(local, list) or not local:
        raise _FinalError(f"stack output {OUT_ROUTER!r} must have a url and its local groups (aliases)")
    if t.window_seconds and (ctx.outputs.get(OUT_PLATFORM) or {}).get(OUT_PROMETHEUS_URL):
        # With monitoring, the window is the one just past, as Prometheus recorded it: nothing to wait for.
        delta = _router_counts_in_prometheus(ctx, deadline, f"{t.window_seconds:.0f}s")
        return _judge_share(delta, local, f"in the last {t.window_seconds:g}s (Prometheus)", t)
    key = _output(ctx, OUT_ROUTER_MASTER_KEY)
    if t.window_seconds > ctx.timeout:
        raise _FinalError(f"the window ({t.window_seconds:g}s) is longer than the check's deadline ({ctx.timeout:g}s)")
    kube = KubeClient(str(_output(ctx, OUT_KUBECONFIG)), deadline) if _service_proxy_path(url) else None
    try:
        before = deadline.poll(lambda: _router_counts(ctx, deadline, kube, url, str(key))) if t.window_seconds else {}
        if t.window_seconds:
            ctx.sleep(t.window_seconds)
        after = deadline.poll(lambda: _router_counts(ctx, deadline, kube, url, str(key)))
    finally:
        if kube is not None:
            kube.close()
    delta = {group: after[group] - before.get(group, 0.0) for group in after}
    window = f"in the last {t.window_seconds:g}s" if t.window_seconds else "since the router started"
    return _judge_share(delta, local, window, t)


def _judge_share(delta: Mapping[str, float], local: Sequence[str], window: str, t: Any) -> str:
    """The verdict on answers per model group ("" = requests the proxy failed) over a window."""
    total = sum(delta.values())
    served_local = sum(v for group, v in delta.items() if group in local)
    if total < t.min_requests:
        raise _FinalError(f"{total:g} request(s) {window}, fewer than the {t.min_requests} needed to judge the share")
    share = served_local / total
    by_group = ", ".join(f"{group or 'failed'}={v:g}" for group, v in sorted(delta.items()) if v)
    detail = f"{share:.0%} of {total:g} request(s) {window} served by local groups {sorted(local)} ({by_group})"
    if share < t.min_share:
        raise _FinalError(f"{detail}; the target is at least {t.min_share:.0%}")
    return detail


# --- p4-decommission: the source plans' cost target (issue 24) ------------------------------------


@_check("cost-reduction", "the phase's estimated monthly run rate is the threshold below the baseline phase's")
def cost_reduction(ctx: CheckContext, deadline: Deadline) -> str:
    # Only this check records plans: the harness and the estimate cost 390 ms (measured under load)
    # that every other importer of the checks would pay at the top.
    from components.core.errors import ConfigError  # noqa: PLC0415
    from migrate import cost_checks  # noqa: PLC0415

    try:
        return cost_checks.cost_reduction(ctx.outputs, ctx.overrides, _thresholds(ctx, "cost-reduction"))
    except (cost_checks.CostCheckError, ConfigError) as exc:
        raise _FinalError(str(exc)) from None
