"""The local llama.cpp server: on the K3s GPU nodes (a Deployment) or on the workstation (Docker).

Both targets run the same pinned image (versions.LLAMA_CPP_SERVER_IMAGE) with the arguments the
sizing chose (components/config/sizing.py), and both put the model through components/scripts/
fetch-model.sh first: download once onto a kept volume, then check its SHA-256 on every start. A
mismatch stops the server from starting; a wrong model is never served.

k3s target
    A `Recreate` Deployment (a GPU cannot host the old and the new pod at once) pinned to the
    nodes whose GPU the sizing chose, `runtimeClassName: nvidia`, `nvidia.com/gpu` limits and the
    GPU toleration; the model on a PVC of the Retain StorageClass; an init container that fetches
    and verifies the model (script mounted from a ConfigMap); a startup probe on `/health` sized
    to the model (minutes for 70B), readiness and liveness on `/health`; the API key from a Secret
    through `secretKeyRef`; the restricted Pod Security profile; a ClusterIP Service reachable
    only from its namespace (the router) and Prometheus (NetworkPolicy). The namespace and the
    model volume exist from p2a (`serving=False`), so a rollback from p3 keeps the weights.
    Metrics: `--metrics`, scraped through a Prometheus Operator ServiceMonitor (not
    `prometheus.io/*` annotations): llama-server asks for the API key on `/metrics` too
    (ggml-org/llama.cpp#28915 would exempt it; open), and only a ServiceMonitor can present a
    bearer token from a Secret.

docker target
    pulumi_docker over SSH to the workstation. Docker's `ssh://` transport runs the system `ssh`
    client, which knows nothing of Pulumi's pinned host keys, so the provider passes `ssh_opts`
    that pin it: `StrictHostKeyChecking=yes`, both known_hosts files set to /dev/null, and
    `KnownHostsCommand=/bin/echo <host> <key>`, which hands ssh the key from the HostHandle
    (OpenSSH >= 8.5). No known_hosts file has to exist where Pulumi runs, so a fresh checkout,
    CI or another operator's laptop verifies the same key, and a changed host key fails the
    connection instead of being learned. Logging in uses the admin key the GPU-host block holds
    (HostHandle.ssh.private_key, the `adminPrivateKey` stack output) through the operator's SSH
    agent: ssh takes keys from files or an agent only, and a key file written where Pulumi runs
    would make the plan depend on that machine (a fresh runner would see a change every time). So
    nothing is written: before `pulumi up`, load the key once with
    `pulumi stack output adminPrivateKey --show-secrets | ssh-add -t 1h -` (docs/gpu-hosts.md);
    `BatchMode=yes` makes a missing key fail at once ("Permission denied (publickey)") instead
    of prompting.

    Metrics: from the phase that has both the container and the monitoring stack, the cluster's
    Prometheus scrapes the workstation's `/metrics` with its own API key, through a Service
    without a selector, its Endpoints (the workstation's address) and a ServiceMonitor like the
    cluster's, all in the cluster server's namespace. Not a `ScrapeConfig`: its CRD
    (monitoring.coreos.com/v1alpha1) is not among the pinned upstream CRDs the tests validate
    against, and kube-prometheus-stack 86.3.2 selects ScrapeConfigs only by its release label.
    Endpoints, not an EndpointSlice: the chart leaves `prometheusSpec.serviceDiscoveryRole`
    empty, and the operator then discovers ServiceMonitor targets with the `endpoints` role. The
    series carry `service="llama-workstation"` (and no `pod`), which sets them apart from the
    cluster's `service="llama"`. While the container listens on loopback (the default) the
    cluster cannot reach it: nothing is created and the program warns, naming
    `llama.workstationListen`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from typing import Any, Literal

import pulumi
import pulumi_docker as docker
import pulumi_kubernetes as k8s
import pulumi_random as random
from pydantic import Field, InstanceOf, model_validator

from components import HOST_SCRIPT_DIR
from components.catalog import versions
from components.catalog.gguf import GgufModel, resolve
from components.cluster import nvidia
from components.config.load import Secrets
from components.config.phases import LlamaState
from components.config.router_sizing import MAX_REPLICAS, size_router
from components.config.schema import HostConfig, LlamaConfig, StackConfig
from components.config.sizing import GIB, ServerSizing, plan_cluster, plan_workstation
from components.core.errors import ConfigError
from components.core.model import Args
from components.handles import ClusterHandle, HostHandle
from components.llm.router import Router, RouterArgs, RouterSettings
from components.platform.kube import bearer_monitor_spec, k8s_opts, namespace_ingress_policy

SCRIPT = HOST_SCRIPT_DIR / "fetch-model.sh"
PORT = 8080
MODELS_DIR = "/models"
API_KEY_SECRET_KEY = "api-key"
# The image's user `nobody`; the restricted Pod Security profile forbids root.
RUN_AS = 65534

# The workstation server as Prometheus sees it: the Service (so the `job` and `service` labels) and
# the labels its ServiceMonitor selects. Not LABELS: the cluster server's ServiceMonitor selects
# those, and would scrape the workstation a second time under the cluster's name.
WORKSTATION_SERVICE = "llama-workstation"
WORKSTATION_LABELS = {"app.kubernetes.io/name": "llama-server-workstation", "app.kubernetes.io/part-of": "gpu-platform"}

# Worst-case rates behind the timeouts: a 50 MB/s download, a 100 MB/s read of the file into
# GPU memory (a cold page cache on a network disk), plus two minutes of warm-up.
DOWNLOAD_BYTES_PER_S = 50e6
LOAD_BYTES_PER_S = 100e6
WARMUP_S = 120
PROBE_PERIOD_S = 10


def startup_budget_seconds(model: GgufModel) -> int:
    """How long llama-server may take to load `model` before the startup probe gives up."""
    return int(model.file_gb * 1e9 / LOAD_BYTES_PER_S) + WARMUP_S


def rollout_budget_minutes(model: GgufModel) -> int:
    """How long Pulumi waits for the server to become ready: first download, hash, load; doubled."""
    seconds = model.file_gb * 1e9 / DOWNLOAD_BYTES_PER_S + startup_budget_seconds(model)
    return max(15, math.ceil(2 * seconds / 60))


def model_volume_gib(model: GgufModel) -> int:
    """The file plus 15% and 2 GiB: room for a `.partial` resume and filesystem overhead."""
    return math.ceil(model.file_gb * 1e9 / GIB * 1.15) + 2


def server_args(model: GgufModel, sizing: ServerSizing) -> list[str]:
    """llama-server's command line: the model, the API surface, then the sizing's flags."""
    return [
        "--model",
        f"{MODELS_DIR}/{model.file_name}",
        "--alias",
        model.served_name,
        "--host",
        "0.0.0.0",
        "--port",
        str(PORT),
        "--metrics",
        # /slots shows the prompts being processed, the web UI is a chat page: neither belongs on
        # an API server shared by services.
        "--no-slots",
        "--no-webui",
        *sizing.args(),
    ]


def model_env(model: GgufModel) -> dict[str, str]:
    return {
        "MODEL_URL": model.url,
        "MODEL_SHA256": model.sha256,
        "MODEL_PATH": f"{MODELS_DIR}/{model.file_name}",
    }


# --- args --------------------------------------------------------------------------------------


class K3sTarget(Args):
    kind: Literal["k3s"] = "k3s"
    cluster: InstanceOf[ClusterHandle]
    namespace: str = Field(default="llm", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    # Nodes that have the GPU the sizing was done for. The first pod may land on any of them; the
    # model volume (local-path, node-local) then binds to that node and later pods follow it.
    nodes: tuple[str, ...] = Field(min_length=1)
    # The Retain StorageClass of the platform (platform.retainStorage).
    storage_class: str
    # prod: the model volume is protected and retained (see the PVC below).
    protect_models: bool
    # Labels the Prometheus Operator selects ServiceMonitors by; None: no monitoring stack.
    monitor_labels: dict[str, str] | None = None
    # Where Prometheus runs; its scrapes are the only traffic from outside the namespace.
    monitoring_namespace: str | None = None
    # What must exist first (the monitoring CRDs, the storage class); never the component itself.
    depends_on: list[InstanceOf[pulumi.Resource]] = []


class WorkstationMetrics(Args):
    """The cluster's Prometheus scraping the workstation's server (see the module docstring)."""

    cluster: InstanceOf[ClusterHandle]
    namespace: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    # Where the cluster reaches the server (workstation_metrics_address).
    address: str
    monitor_labels: dict[str, str]
    # The namespace and the monitoring stack (the ServiceMonitor CRD).
    depends_on: list[InstanceOf[pulumi.Resource]] = []

    @model_validator(mode="after")
    def _reachable(self) -> WorkstationMetrics:
        ip = ipaddress.ip_address(self.address)
        # The API server refuses such Endpoints addresses; no node could reach them anyway.
        if ip.is_loopback or ip.is_unspecified or ip.is_link_local or ip.is_multicast:
            raise ValueError(
                f"{self.address} cannot be scraped from the cluster (loopback, unspecified, link-local or multicast)"
            )
        return self


class DockerTarget(Args):
    kind: Literal["docker"] = "docker"
    host: InstanceOf[HostHandle]
    listen: str = "127.0.0.1"
    port: int = Field(default=PORT, ge=1024, le=65535)
    # prod: the downloaded weights are protected and retained, as on K3s. Protected, the volume
    # must outlive every phase after the one that creates it, hence `serving=False` before p3.
    protect_models: bool = False
    # None: nothing in the cluster scrapes the server (no monitoring, or it listens on loopback).
    metrics: WorkstationMetrics | None = None


class LlamaServerArgs(Args):
    model: GgufModel
    sizing: ServerSizing
    target: K3sTarget | DockerTarget = Field(discriminator="kind")
    # False before the phase that serves: on K3s the namespace and the model volume only; on the
    # workstation the Docker connection and the model volume only.
    serving: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> LlamaServerArgs:
        if self.sizing.model != self.model.name:
            raise ValueError(f"sizing is for {self.sizing.model}, the model is {self.model.name}")
        if self.target.kind == "docker" and self.sizing.gpu_count == 0:
            raise ValueError("the workstation container is a GPU target; its sizing has no GPU")
        return self


# --- the k3s pod: pure functions of the model and its sizing -----------------------------------

LABELS = {"app.kubernetes.io/name": "llama-server", "app.kubernetes.io/part-of": "gpu-platform"}
RESTRICTED_CONTAINER = {
    "allow_privilege_escalation": False,
    "capabilities": {"drop": ["ALL"]},
    "read_only_root_filesystem": True,
}


def _fetch_container(model: GgufModel) -> dict[str, Any]:
    """The init container that downloads the model once and verifies it on every start."""
    return {
        "name": "fetch-model",
        "image": versions.LLAMA_CPP_SERVER_IMAGE,
        "command": ["/bin/sh", "/scripts/fetch-model.sh"],
        "env": [{"name": k, "value": v} for k, v in model_env(model).items()],
        "volume_mounts": [
            {"name": "models", "mount_path": MODELS_DIR},
            {"name": "script", "mount_path": "/scripts", "read_only": True},
            {"name": "tmp", "mount_path": "/tmp"},
        ],
        "resources": {"requests": {"cpu": "1", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "security_context": RESTRICTED_CONTAINER,
    }


def _server_container(model: GgufModel, sizing: ServerSizing) -> dict[str, Any]:
    probe = {"http_get": {"path": "/health", "port": "http"}, "period_seconds": PROBE_PERIOD_S}
    startup_failures = math.ceil(startup_budget_seconds(model) / PROBE_PERIOD_S)
    # Host memory: the layers left on the CPU with their KV cache (none with full offload),
    # plus the process's buffers; the sizing worked it out.
    memory_gib = math.ceil(sizing.host_needed_bytes / GIB)
    gpu_limits = {"nvidia.com/gpu": str(sizing.gpu_count)} if sizing.gpu_count else {}
    return {
        "name": "llama-server",
        "image": versions.LLAMA_CPP_SERVER_IMAGE,
        "args": server_args(model, sizing),
        "ports": [{"name": "http", "container_port": PORT, "protocol": "TCP"}],
        "env": [
            {
                "name": "LLAMA_API_KEY",
                "value_from": {"secret_key_ref": {"name": "llama-api-key", "key": API_KEY_SECRET_KEY}},
            }
        ],
        "volume_mounts": [
            {"name": "models", "mount_path": MODELS_DIR, "read_only": True},
            {"name": "tmp", "mount_path": "/tmp"},
        ],
        "resources": {
            "requests": {"cpu": "4", "memory": f"{memory_gib}Gi", **gpu_limits},
            "limits": {"memory": f"{2 * memory_gib}Gi", **gpu_limits},
        },
        # Loading 43 GB into the GPU takes minutes; liveness and readiness only start
        # once this has passed, so a slow load is never killed half-way.
        "startup_probe": {**probe, "failure_threshold": startup_failures, "timeout_seconds": 5},
        "readiness_probe": {**probe, "failure_threshold": 3, "timeout_seconds": 5},
        "liveness_probe": {**probe, "failure_threshold": 6, "timeout_seconds": 10},
        "security_context": RESTRICTED_CONTAINER,
    }


def _pod_spec(model: GgufModel, sizing: ServerSizing, nodes: tuple[str, ...]) -> Any:
    """The server's pod: restricted, on one of `nodes`, the model fetched and verified first."""
    pod_spec: Any = {
        "security_context": {
            "run_as_non_root": True,
            "run_as_user": RUN_AS,
            "run_as_group": RUN_AS,
            "fs_group": RUN_AS,
            "seccomp_profile": {"type": "RuntimeDefault"},
        },
        "automount_service_account_token": False,
        "affinity": {
            "node_affinity": {
                "required_during_scheduling_ignored_during_execution": {
                    "node_selector_terms": [
                        {
                            "match_expressions": [
                                {"key": "kubernetes.io/hostname", "operator": "In", "values": list(nodes)}
                            ]
                        }
                    ]
                }
            }
        },
        "init_containers": [_fetch_container(model)],
        "containers": [_server_container(model, sizing)],
        "volumes": [
            {"name": "models", "persistent_volume_claim": {"claim_name": "llama-models"}},
            {"name": "script", "config_map": {"name": "llama-fetch-model", "default_mode": 0o555}},
            {"name": "tmp", "empty_dir": {"size_limit": "1Gi"}},
        ],
    }
    if sizing.gpu_count:
        pod_spec["runtime_class_name"] = nvidia.RUNTIME_CLASS
        pod_spec["tolerations"] = nvidia.gpu_tolerations()  # nvidia.com/gpu Exists NoSchedule
    return pod_spec


# --- the component -----------------------------------------------------------------------------


class LlamaServer(pulumi.ComponentResource):
    """A llama.cpp server with a verified model, on K3s or on the workstation's Docker.

    The component exists before it serves (`serving=False`): on K3s from the phase that has the
    cluster and the Retain StorageClass (p2a), with the namespace and the model volume only; on
    the workstation from the phase that has the host (p2a), with the model volume only. From
    p3-local-brain (`serving=True`) it adds the server. Rolling back p3 -> p2c is then an update
    that removes the server and keeps the volume with the downloaded weights, which prod protects.
    """

    url: pulumi.Output[str] | None
    api_key: pulumi.Output[str] | None
    namespace: str | None
    api_key_secret_name: str | None
    served_model: str
    sizing: ServerSizing
    # The K3s target's namespace (from p2a): the workstation's scrape target lives there too.
    k3s_namespace: k8s.core.v1.Namespace | None

    def __init__(self, name: str, args: LlamaServerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gpu-platform:llama:LlamaServer", name, None, opts)
        self.served_model = args.model.served_name
        self.sizing = args.sizing
        self.url = self.api_key = None
        self.namespace = self.api_key_secret_name = None
        self.k3s_namespace = None
        if args.serving:
            # A key of letters and digits only: it travels in an HTTP header and in env vars.
            key = random.RandomPassword(
                f"{name}-api-key",
                length=40,
                special=False,
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.api_key = pulumi.Output.secret(key.result)
        if isinstance(args.target, K3sTarget):
            self.namespace = args.target.namespace
            self._k3s(name, args, args.target)
            if args.serving:
                self.api_key_secret_name = "llama-api-key"
                self.url = pulumi.Output.from_input(f"http://llama.{args.target.namespace}.svc.cluster.local:{PORT}")
        else:
            if args.serving:
                self.url = pulumi.Output.from_input(f"http://{args.target.listen}:{args.target.port}")
            self._docker(name, args, args.target)
        self.register_outputs({"url": self.url, "apiKey": self.api_key, "servedModel": self.served_model})

    # --- k3s -----------------------------------------------------------------------------------

    def _k3s(self, name: str, args: LlamaServerArgs, t: K3sTarget) -> None:
        namespace = self.k3s_namespace = self._k3s_namespace(name, t)
        pvc = self._k3s_model_claim(name, args.model, t, namespace)
        if not args.serving:
            return
        assert self.api_key is not None
        secret = k8s.core.v1.Secret(
            f"{name}-api-key-secret",
            metadata={"name": "llama-api-key", "namespace": t.namespace, "labels": LABELS},
            type="Opaque",
            string_data={API_KEY_SECRET_KEY: self.api_key},
            opts=self._k3s_opts(t, depends_on=[namespace], additional_secret_outputs=["data", "stringData"]),
        )
        script = k8s.core.v1.ConfigMap(
            f"{name}-script",
            metadata={"name": "llama-fetch-model", "namespace": t.namespace, "labels": LABELS},
            data={"fetch-model.sh": SCRIPT.read_text()},
            opts=self._k3s_opts(t, depends_on=[namespace]),
        )
        self.deployment = self._k3s_deployment(name, args, t, depends_on=[secret, script, pvc])
        self.service = self._k3s_service(name, t, namespace)
        if t.monitor_labels is not None:
            self._k3s_monitor(name, t, t.monitor_labels, depends_on=[self.service, secret, *t.depends_on])

    def _k3s_opts(self, t: K3sTarget, **extra: Any) -> pulumi.ResourceOptions:
        # deleted_with: tearing K3s down removes these with it; no API calls to a dead cluster.
        return pulumi.ResourceOptions(parent=self, provider=t.cluster.provider, deleted_with=t.cluster.cluster, **extra)

    def _k3s_namespace(self, name: str, t: K3sTarget) -> k8s.core.v1.Namespace:
        return k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={
                "name": t.namespace,
                # Enforced, not just warned: every pod here must run non-root without privileges.
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                },
            },
            # Deleting a namespace deletes every claim in it: in prod the model volume's
            # namespace is protected and retained like the volume itself.
            opts=self._k3s_opts(
                t,
                depends_on=list(t.cluster.ready),
                protect=t.protect_models,
                retain_on_delete=t.protect_models,
            ),
        )

    def _k3s_model_claim(
        self, name: str, model: GgufModel, t: K3sTarget, namespace: k8s.core.v1.Namespace
    ) -> k8s.core.v1.PersistentVolumeClaim:
        # The weights are 5-43 GB that take many minutes to download. protect: a refactor or a
        # stray `pulumi destroy` cannot drop them in prod. The claim exists from p2a on, whatever
        # the llama phase, so a rollback from p3 never deletes it (and the Retain StorageClass
        # keeps the volume even if the claim goes); retain_on_delete keeps it in the cluster if it
        # ever leaves the program.
        return k8s.core.v1.PersistentVolumeClaim(
            f"{name}-models",
            metadata={"name": "llama-models", "namespace": t.namespace, "labels": LABELS},
            spec={
                "access_modes": ["ReadWriteOnce"],
                "storage_class_name": t.storage_class,
                "resources": {"requests": {"storage": f"{model_volume_gib(model)}Gi"}},
            },
            opts=self._k3s_opts(
                t,
                depends_on=[namespace, *t.depends_on],
                protect=t.protect_models,
                retain_on_delete=t.protect_models,
            ),
        )

    def _k3s_deployment(
        self, name: str, args: LlamaServerArgs, t: K3sTarget, depends_on: list[pulumi.Resource]
    ) -> k8s.apps.v1.Deployment:
        model, sizing = args.model, args.sizing
        budget = f"{rollout_budget_minutes(model)}m"
        return k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata={
                "name": "llama",
                "namespace": t.namespace,
                "labels": LABELS,
                "annotations": {"gpu-platform/sizing": sizing.summary()},
            },
            spec={
                "replicas": 1,
                # One GPU cannot hold the old and the new server: stop the old one first.
                "strategy": {"type": "Recreate"},
                "selector": {"match_labels": LABELS},
                # The first start downloads the model; do not call the rollout stuck before then.
                "progress_deadline_seconds": rollout_budget_minutes(model) * 60,
                "template": {
                    "metadata": {
                        "labels": LABELS,
                        # A new checksum or script restarts the pod, which verifies again.
                        "annotations": {
                            "gpu-platform/model-sha256": model.sha256,
                            "gpu-platform/script-sha256": hashlib.sha256(SCRIPT.read_bytes()).hexdigest(),
                        },
                    },
                    "spec": _pod_spec(model, sizing, t.nodes),
                },
            },
            opts=self._k3s_opts(
                t,
                depends_on=depends_on,
                custom_timeouts=pulumi.CustomTimeouts(create=budget, update=budget),
            ),
        )

    def _k3s_service(self, name: str, t: K3sTarget, namespace: k8s.core.v1.Namespace) -> k8s.core.v1.Service:
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata={"name": "llama", "namespace": t.namespace, "labels": LABELS},
            spec={
                "type": "ClusterIP",
                "selector": LABELS,
                "ports": [{"name": "http", "port": PORT, "target_port": "http", "protocol": "TCP"}],
            },
            opts=self._k3s_opts(t, depends_on=[namespace]),
        )
        # Only this namespace (the router) and Prometheus reach the server; the API key is the
        # second lock. K3s enforces NetworkPolicy with its embedded kube-router controller.
        k8s.networking.v1.NetworkPolicy(
            f"{name}-ingress",
            metadata={"name": "llama-ingress", "namespace": t.namespace, "labels": LABELS},
            spec=namespace_ingress_policy(LABELS, [t.monitoring_namespace] if t.monitoring_namespace else []),
            opts=self._k3s_opts(t, depends_on=[namespace]),
        )
        return service

    def _k3s_monitor(
        self, name: str, t: K3sTarget, monitor_labels: dict[str, str], depends_on: list[pulumi.Resource]
    ) -> None:
        k8s.apiextensions.CustomResource(
            f"{name}-monitor",
            api_version="monitoring.coreos.com/v1",
            kind="ServiceMonitor",
            metadata={"name": "llama", "namespace": t.namespace, "labels": {**LABELS, **monitor_labels}},
            spec=bearer_monitor_spec(LABELS, "llama-api-key", API_KEY_SECRET_KEY),
            opts=self._k3s_opts(t, depends_on=depends_on),
        )

    # --- docker --------------------------------------------------------------------------------

    def _docker(self, name: str, args: LlamaServerArgs, t: DockerTarget) -> None:
        provider = self._docker_provider(name, t.host)
        # retain_on_delete: the weights outlive a rollback, and `docker volume create` on an
        # existing name returns that volume, so coming forward again reuses the download. No
        # model label: Docker volumes are immutable, so a label would replace the volume (and
        # lose the weights) on a model change; the fetch script keeps one file per model.
        volume = docker.Volume(
            f"{name}-models",
            name="llama-models",
            labels=[docker.VolumeLabelArgs(label="gpu-platform/volume", value="llama-models")],
            opts=pulumi.ResourceOptions(
                parent=self, provider=provider, protect=t.protect_models, retain_on_delete=True
            ),
        )
        api_key = self.api_key
        if not args.serving:
            return
        assert api_key is not None  # made in __init__ whenever the server runs
        self._docker_container(name, args, t, provider=provider, volume=volume, api_key=api_key)
        if t.metrics is not None:
            self._workstation_monitor(name, t.port, t.metrics, api_key)

    def _workstation_monitor(self, name: str, port: int, m: WorkstationMetrics, api_key: pulumi.Output[str]) -> None:
        """The workstation's server as a scrape target of the cluster's Prometheus, with its own key."""
        meta = {"name": WORKSTATION_SERVICE, "namespace": m.namespace, "labels": WORKSTATION_LABELS}
        secret_name = f"{WORKSTATION_SERVICE}-api-key"
        secret = k8s.core.v1.Secret(
            f"{name}-metrics-key",
            metadata={**meta, "name": secret_name},
            type="Opaque",
            string_data={API_KEY_SECRET_KEY: api_key},
            opts=pulumi.ResourceOptions.merge(
                k8s_opts(self, m.cluster, depends_on=m.depends_on),
                pulumi.ResourceOptions(additional_secret_outputs=["data", "stringData"]),
            ),
        )
        # No selector: the Endpoints below are the Service's, and Kubernetes leaves them alone.
        service = k8s.core.v1.Service(
            f"{name}-metrics-service",
            metadata=meta,
            spec={
                "type": "ClusterIP",
                "ports": [{"name": "http", "port": PORT, "target_port": port, "protocol": "TCP"}],
            },
            opts=k8s_opts(self, m.cluster, depends_on=m.depends_on),
        )
        endpoints = k8s.core.v1.Endpoints(
            f"{name}-metrics-endpoints",
            metadata=meta,
            subsets=[{"addresses": [{"ip": m.address}], "ports": [{"name": "http", "port": port, "protocol": "TCP"}]}],
            opts=k8s_opts(self, m.cluster, depends_on=m.depends_on),
        )
        k8s.apiextensions.CustomResource(
            f"{name}-monitor",
            api_version="monitoring.coreos.com/v1",
            kind="ServiceMonitor",
            metadata={**meta, "labels": {**WORKSTATION_LABELS, **m.monitor_labels}},
            spec=bearer_monitor_spec(WORKSTATION_LABELS, secret_name, API_KEY_SECRET_KEY),
            opts=k8s_opts(self, m.cluster, depends_on=[service, endpoints, secret, *m.depends_on]),
        )

    def _docker_provider(self, name: str, host: HostHandle) -> docker.Provider:
        """Docker over SSH, the host key pinned (see the module docstring)."""
        ssh = host.ssh
        known_as = pulumi.Output.from_input(ssh.host).apply(
            lambda host: host if ssh.port == 22 else f"[{host}]:{ssh.port}"
        )
        return docker.Provider(
            f"{name}-docker",
            host=pulumi.Output.concat("ssh://", ssh.user, "@", ssh.host, ":", str(ssh.port)),
            ssh_opts=[
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                pulumi.Output.concat("KnownHostsCommand=/bin/echo ", known_as, " ", ssh.host_key),
                "-o",
                "BatchMode=yes",
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(host.ready)),
        )

    def _docker_container(
        self,
        name: str,
        args: LlamaServerArgs,
        t: DockerTarget,
        *,
        provider: docker.Provider,
        volume: docker.Volume,
        api_key: pulumi.Output[str],
    ) -> None:
        model, sizing = args.model, args.sizing
        image = docker.RemoteImage(
            f"{name}-image",
            name=versions.LLAMA_CPP_SERVER_IMAGE,
            keep_locally=True,
            opts=pulumi.ResourceOptions(parent=self, provider=provider),
        )
        budget_s = rollout_budget_minutes(model) * 60
        env = [f"{k}={v}" for k, v in model_env(model).items()]
        docker.Container(
            f"{name}-container",
            name="llama-server",
            image=image.image_id,
            restart="unless-stopped",
            # Verify the model, then exec the server: a mismatch exits before anything listens.
            entrypoints=["/bin/sh", "/scripts/fetch-model.sh", "--", "/app/llama-server"],
            command=server_args(model, sizing),
            # Secret: it is derived from the secret key (apply keeps the secret mark).
            envs=api_key.apply(lambda k: [*env, f"LLAMA_API_KEY={k}"]),
            uploads=[
                docker.ContainerUploadArgs(file="/scripts/fetch-model.sh", content=SCRIPT.read_text(), executable=True)
            ],
            volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path=MODELS_DIR)],
            ports=[docker.ContainerPortArgs(internal=PORT, external=t.port, ip=t.listen, protocol="tcp")],
            device_requests=[
                docker.ContainerDeviceRequestArgs(driver="nvidia", count=sizing.gpu_count, capabilities=["gpu"])
            ],
            # Root inside the container only because a fresh named volume is root-owned; with every
            # capability dropped and no new privileges it can write its own files and nothing
            # that needs a privilege. The root filesystem stays writable: Docker refuses the
            # script upload into a read-only one.
            capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"]),
            security_opts=["no-new-privileges:true"],
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=["CMD", "curl", "-fsS", f"http://127.0.0.1:{PORT}/health"],
                interval="15s",
                timeout="5s",
                retries=3,
                start_period=f"{budget_s}s",
                start_interval="5s",
            ),
            # Wait for healthy: `pulumi up` fails when the model does not verify or load.
            wait=True,
            wait_timeout=budget_s,
            opts=pulumi.ResourceOptions(parent=self, provider=provider, additional_secret_outputs=["envs"]),
        )


# --- wiring: what components/stack.py calls for p3-local-brain ----------------------------------


def build_local_brain(
    cfg: StackConfig,
    secrets: Secrets,
    state: LlamaState,
    *,
    cluster: ClusterHandle | None,
    workstation: HostHandle | None,
    storage_class: str | None,
    monitor_labels: dict[str, str] | None,
    monitoring_namespace: str | None = None,
    client_namespaces: tuple[str, ...] = (),
    depends_on: list[pulumi.Resource] | None = None,
) -> dict[str, Any]:
    """Create the llama servers and the router `state` enables; return their stack outputs.

    The cluster server's model volume (and its namespace) exist as soon as `cluster` and
    `storage_class` do (p2a), and the workstation's as soon as its host does, whatever `state`
    says, so a rollback never takes the weights away.
    The sizing is recomputed from config (pure, the same as config validation did), so what runs
    is exactly what was checked.
    """
    if state.router and not state.cluster:
        raise ConfigError("phase: llama.router needs llama.cluster, the local model it routes to first")
    cluster_server, cluster_outputs = _cluster_server(
        cfg,
        state,
        cluster,
        storage_class,
        monitor_labels=monitor_labels,
        monitoring_namespace=monitoring_namespace,
        depends_on=list(depends_on or []),
    )
    metrics = _workstation_metrics(
        cfg, state, cluster, cluster_server, monitor_labels=monitor_labels, depends_on=list(depends_on or [])
    )
    outputs = _workstation_server(cfg, state, workstation, metrics=metrics)
    outputs.update(cluster_outputs)
    if state.router and cluster is not None and cluster_server is not None and state.cluster:
        outputs.update(
            _router(cfg, secrets, cluster, cluster_server, client_namespaces, monitoring_namespace=monitoring_namespace)
        )
    return outputs


def workstation_metrics_address(llama: LlamaConfig, host: HostConfig) -> str | None:
    """Where the cluster's Prometheus reaches the workstation's llama-server: the address the
    container publishes its port on, the host's own (its private address first) when that is every
    interface, None on loopback, which no other machine reaches."""
    listen = ipaddress.ip_address(llama.workstation_listen)
    if listen.is_loopback:
        return None
    if listen.is_unspecified:
        return host.private_address or host.address
    return str(listen)


def workstation_metrics_target(cfg: StackConfig, state: LlamaState, *, monitoring: bool) -> str | None:
    """The address the cluster's Prometheus scrapes the workstation's server at; None where it does
    not: no container, no monitoring stack, or a container on loopback (components/stack.py reads
    this for the alerts, build_local_brain for the scrape target)."""
    host = cfg.workstation
    if not (state.workstation and monitoring) or host is None:
        return None
    return workstation_metrics_address(cfg.llama, host)


def unscraped_warning(llama: LlamaConfig) -> str:
    """The one line a plan prints when the workstation's server runs where Prometheus cannot reach it."""
    return (
        f"gpu-platform:llama.workstationListen is {llama.workstation_listen} (loopback): the cluster's Prometheus "
        "cannot reach the workstation's llama-server, so no dashboard shows it and no alert fires when it stops; "
        "set it to the workstation's LAN address and let the workstation's firewall admit the K3s nodes on port "
        f"{llama.workstation_port}"
    )


def _workstation_metrics(
    cfg: StackConfig,
    state: LlamaState,
    cluster: ClusterHandle | None,
    cluster_server: LlamaServer | None,
    *,
    monitor_labels: dict[str, str] | None,
    depends_on: list[pulumi.Resource],
) -> WorkstationMetrics | None:
    """How the cluster's Prometheus scrapes the workstation's server; None (with a warning on
    loopback) where it cannot."""
    monitoring = monitor_labels is not None and cluster is not None
    address = workstation_metrics_target(cfg, state, monitoring=monitoring)
    if address is None:
        if monitoring and state.workstation and cfg.workstation is not None:
            pulumi.log.warn(unscraped_warning(cfg.llama))
        return None
    assert cluster is not None and monitor_labels is not None  # monitoring
    if cluster_server is None or cluster_server.k3s_namespace is None or cluster_server.namespace is None:
        raise ConfigError(
            "phase: scraping the workstation's llama-server needs the llm namespace, which comes with "
            "platform.retainStorage"
        )
    return WorkstationMetrics(
        cluster=cluster,
        namespace=cluster_server.namespace,
        address=address,
        monitor_labels=monitor_labels,
        depends_on=[cluster_server.k3s_namespace, *depends_on],
    )


def _workstation_server(
    cfg: StackConfig, state: LlamaState, workstation: HostHandle | None, *, metrics: WorkstationMetrics | None
) -> dict[str, Any]:
    """The workstation's llama server (Docker) and its outputs; nothing without the host."""
    llama = cfg.llama
    sizing = plan_workstation(cfg.llama, cfg.workstation)
    host_cfg = cfg.workstation
    if state.workstation and (sizing is None or host_cfg is None or workstation is None):
        raise ConfigError("gpu-platform:hosts: llama.workstation needs a host with role: workstation")
    if sizing is None or host_cfg is None or workstation is None:
        return {}
    # From the phase that has the workstation host on: its model volume; from
    # llama.workstation on: the container too.
    model = resolve(llama.workstation_model, llama.model_sha256)
    server = LlamaServer(
        "llama-workstation",
        LlamaServerArgs(
            model=model,
            sizing=sizing,
            serving=state.workstation,
            target=DockerTarget(
                host=workstation,
                listen=llama.workstation_listen,
                port=llama.workstation_port,
                protect_models=cfg.is_prod,
                metrics=metrics,
            ),
        ),
    )
    if not state.workstation:
        return {}
    out: dict[str, Any] = {
        "url": server.url,
        "host": host_cfg.name,
        "model": model.name,
        "sizing": sizing.summary(),
        "fullOffload": sizing.full_offload,
    }
    if metrics is not None:
        # The target labels its ServiceMonitor gives the series, as for the cluster's server.
        out["metrics"] = {"namespace": metrics.namespace, "service": WORKSTATION_SERVICE}
    return {"llamaWorkstation": out, "llamaWorkstationApiKey": server.api_key}


def _cluster_server(
    cfg: StackConfig,
    state: LlamaState,
    cluster: ClusterHandle | None,
    storage_class: str | None,
    *,
    monitor_labels: dict[str, str] | None,
    monitoring_namespace: str | None,
    depends_on: list[pulumi.Resource],
) -> tuple[LlamaServer | None, dict[str, Any]]:
    """The cluster's llama server and its outputs; nothing without the cluster and the Retain class."""
    llama = cfg.llama
    if state.cluster and cluster is None:
        raise ConfigError("phase: llama.cluster needs the K3s cluster (k3s.cluster)")
    if state.cluster and storage_class is None:
        raise ConfigError("phase: llama.cluster needs platform.retainStorage (the model volume's class)")
    if cluster is None or storage_class is None:
        return None, {}
    # From the phase with the cluster and the Retain class on: the model volume; from
    # llama.cluster on: the server too.
    placement = plan_cluster(cfg.llama, cfg.k3s_nodes, cfg.gpu_time_slicing_replicas)
    missing = sorted(set(placement.nodes) - set(cluster.gpu_nodes))
    if missing:
        raise ConfigError(f"gpu-platform:hosts: {missing} are not GPU nodes of the K3s cluster {cluster.gpu_nodes}")
    model = resolve(llama.cluster_model, llama.model_sha256)
    server = LlamaServer(
        "llama-cluster",
        LlamaServerArgs(
            model=model,
            sizing=placement.sizing,
            serving=state.cluster,
            target=K3sTarget(
                cluster=cluster,
                nodes=placement.nodes,
                storage_class=storage_class,
                protect_models=cfg.is_prod,
                monitor_labels=monitor_labels,
                monitoring_namespace=monitoring_namespace,
                depends_on=depends_on,
            ),
        ),
    )
    outputs: dict[str, Any] = {"llamaModelVolume": f"{server.namespace}/llama-models"}
    if state.cluster:
        outputs["llamaCluster"] = {
            "url": server.url,
            "model": model.name,
            "nodes": list(placement.nodes),
            "gpu": placement.sizing.gpu,
            "nGpuLayers": placement.sizing.n_gpu_layers,
            "fullOffload": placement.sizing.full_offload,
            "sizing": placement.sizing.summary(),
        }
        if monitor_labels is not None:
            # The target labels its ServiceMonitor gives the series (the Service's namespace and name):
            # the llama-bench-targets check reads the decode rate by them.
            outputs["llamaCluster"]["metrics"] = {"namespace": server.namespace, "service": "llama"}
        outputs["llamaClusterApiKey"] = server.api_key
    return server, outputs


def _router(
    cfg: StackConfig,
    secrets: Secrets,
    cluster: ClusterHandle,
    cluster_server: LlamaServer,
    client_namespaces: tuple[str, ...],
    *,
    monitoring_namespace: str | None,
) -> dict[str, Any]:
    """The router in front of the cluster server, and its outputs."""
    router_cfg = cfg.router
    fallback = router_cfg.cloud_fallback
    # Enough router CPU for everything the cluster server can stream (components/config/router_sizing.py).
    sized = size_router(
        plan_cluster(cfg.llama, cfg.k3s_nodes, cfg.gpu_time_slicing_replicas).sizing, router_cfg.replicas
    )
    if sized.capped:
        pulumi.log.warn(
            f"gpu-platform:llama.parallel: {cfg.llama.parallel} slots of the cluster server can stream up to "
            f"{sized.ceiling_tps:.0f} tokens/s by its memory bandwidth, more than the router's {MAX_REPLICAS} pods "
            f"follow ({sized.follows_tps:.0f}); the router is sized at its maximum and may cap the server"
        )
    router = Router(
        "llm-router",
        RouterArgs(
            cluster=cluster,
            namespace=cluster_server.namespace or "llm",
            settings=RouterSettings(
                local_url=f"http://llama.{cluster_server.namespace}.svc.cluster.local:{PORT}",
                local_model=cluster_server.served_model,
                local_aliases=router_cfg.local_aliases,
                fallback_aliases=router_cfg.fallback_aliases if fallback else (),
                cloud_model=router_cfg.cloud_model if fallback else None,
                local_timeout_seconds=router_cfg.local_timeout_seconds,
            ),
            local_key_secret=cluster_server.api_key_secret_name or "llama-api-key",
            cloud_api_key=secrets.cloud_llm_api_key if fallback else None,
            replicas=sized.replicas,
            workers=sized.workers,
            cpu_millicores=sized.cpu_millicores,
            client_namespaces=client_namespaces,
            monitoring_namespace=monitoring_namespace,
            depends_on=[cluster_server],
        ),
    )
    return {
        "router": {
            "url": router.url,
            "aliases": list(router_cfg.local_aliases),
            "cloudFallbackAliases": list(router_cfg.fallback_aliases if fallback else ()),
            "sizing": sized.summary(),
        },
        "routerMasterKey": router.master_key,
    }
