"""The OpenAI-compatible router: the local llama server first, a cloud model only when allowed.

A LiteLLM proxy (versions.LITELLM_IMAGE) in the cluster, beside the llama server. Clients ask for
a model alias (`router.localAliases`); every alias is served by the cluster llama server. Only the
aliases in `router.fallbackAliases`, and only with `router.cloudFallback` on, fall back to
`router.cloudModel` when the local call fails. LiteLLM's general `fallbacks` fire on any failed
call (its docs: "if a call fails after num_retries, fallback to another model group"): a timeout
after `router.localTimeoutSeconds` (`timeout` and `stream_timeout`), a connection error, a 5xx,
and also a 4xx such as a 429 or a rejected local key. So a misconfigured local server sends every
request of a fallback alias to the cloud: the llama-health exit check and the router's metrics
(share of requests served locally) are what notice that. `num_retries: 0`, so a slow local model
costs one timeout, not several, and a deployment that keeps failing is cooled down for
`cooldown_time` so requests go straight to the fallback meanwhile. An alias outside
`fallbackAliases` never leaves the premises: its request fails instead.

The config file is rendered by `render_config`, a pure function, into a ConfigMap; keys reach the
pod only through `secretKeyRef` (`os.environ/...` in the config): the master key clients present
(a pulumi_random secret), the llama server's key, and the cloud key from the `cloudLlmApiKey`
stack secret.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import yaml
from pydantic import Field, InstanceOf, model_validator

from components.catalog import versions
from components.config.router_sizing import MAX_REPLICAS
from components.core.model import Args
from components.handles import ClusterHandle
from components.platform.kube import bearer_monitor_spec, namespace_ingress_policy

PORT = 4000
CLOUD_GROUP = "cloud-fallback"
CONFIG_PATH = "/etc/litellm/config.yaml"
# The one writable directory under the read-only root filesystem (an emptyDir).
SCRATCH_PATH = "/tmp"
# Environment variables the rendered config reads with LiteLLM's `os.environ/<NAME>` syntax.
ENV_MASTER_KEY = "LITELLM_MASTER_KEY"
ENV_LOCAL_KEY = "LOCAL_LLM_API_KEY"
ENV_CLOUD_KEY = "CLOUD_LLM_API_KEY"
RUN_AS = 65534  # `nobody`, the user of the litellm-non_root image
LABELS = {"app.kubernetes.io/name": "llm-router", "app.kubernetes.io/part-of": "gpu-platform"}


class RouterSettings(Args):
    """Everything the rendered LiteLLM config depends on; plain data, no Outputs."""

    local_url: str = Field(pattern=r"^https?://[^\s/]+(:\d+)?$")  # the llama server, no path
    local_model: str  # the model id llama-server serves (its --alias)
    local_aliases: tuple[str, ...] = Field(min_length=1)
    fallback_aliases: tuple[str, ...] = ()
    cloud_model: str | None = None  # None: no fallback at all
    local_timeout_seconds: int = Field(ge=1, le=600)
    cloud_timeout_seconds: int = Field(default=120, ge=1, le=600)
    cooldown_seconds: int = Field(default=30, ge=1)

    @model_validator(mode="after")
    def _fallbacks(self) -> RouterSettings:
        unknown = sorted(set(self.fallback_aliases) - set(self.local_aliases))
        if unknown:
            raise ValueError(f"fallback aliases {unknown} are not local aliases {list(self.local_aliases)}")
        if self.fallback_aliases and self.cloud_model is None:
            raise ValueError("fallback aliases need a cloud model to fall back to")
        return self


def render_config(s: RouterSettings) -> str:
    """The LiteLLM proxy config.yaml for `s`. Pure: the same settings give the same bytes."""
    local_params = {
        # LiteLLM's OpenAI-compatible provider; llama-server speaks the OpenAI API under /v1.
        "model": f"openai/{s.local_model}",
        "api_base": f"{s.local_url}/v1",
        "api_key": f"os.environ/{ENV_LOCAL_KEY}",
        "timeout": s.local_timeout_seconds,
        "stream_timeout": s.local_timeout_seconds,
    }
    model_list: list[dict[str, Any]] = [
        {"model_name": alias, "litellm_params": dict(local_params)} for alias in s.local_aliases
    ]
    fallbacks: list[dict[str, list[str]]] = []
    if s.cloud_model is not None and s.fallback_aliases:
        model_list.append(
            {
                "model_name": CLOUD_GROUP,
                "litellm_params": {
                    "model": s.cloud_model,
                    "api_key": f"os.environ/{ENV_CLOUD_KEY}",
                    "timeout": s.cloud_timeout_seconds,
                },
            }
        )
        fallbacks = [{alias: [CLOUD_GROUP]} for alias in s.fallback_aliases]
    config = {
        "model_list": model_list,
        "router_settings": {
            "num_retries": 0,
            "timeout": s.local_timeout_seconds,
            "allowed_fails": 3,
            "cooldown_time": s.cooldown_seconds,
            "fallbacks": fallbacks,
        },
        "litellm_settings": {
            # Clients send OpenAI parameters llama-server may not know; drop them, do not fail.
            "drop_params": True,
            # LiteLLM counts tokens with a Hugging Face tokenizer it downloads for model names it
            # recognises ("llama-3..."); without egress every streamed or failed request waited
            # ~23 s for that download. Its bundled tokenizer is close enough for the counts.
            "disable_hf_tokenizer_download": True,
            # Prometheus metrics on /metrics (behind the master key): requests per model group,
            # which the router-local-share exit check reads (migrate/checks.py).
            "callbacks": ["prometheus"],
        },
        "general_settings": {"master_key": f"os.environ/{ENV_MASTER_KEY}"},
    }
    return yaml.safe_dump(config, sort_keys=False)


class RouterArgs(Args):
    cluster: InstanceOf[ClusterHandle]
    namespace: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    settings: RouterSettings
    # Name of the Secret (in `namespace`) that holds the llama server's key under `api-key`.
    local_key_secret: str
    cloud_api_key: pulumi.Output[str] | None = None  # secret; required when settings.cloud_model is set
    replicas: int = Field(default=2, ge=1, le=MAX_REPLICAS)
    # LiteLLM worker processes per pod, one per CPU of the pod's request (its production guide);
    # components/config/router_sizing.py chooses both from the GPU's token ceiling.
    workers: int = Field(default=1, ge=1, le=16)
    cpu_millicores: int = Field(default=1000, ge=100)
    # Namespaces whose pods may call the router (the platform's services); its own always may.
    client_namespaces: tuple[str, ...] = ()
    # Where Prometheus runs: a ServiceMonitor scrapes /metrics (the router dashboard, its alerts and
    # the router-local-share check read those series) and the NetworkPolicy lets it in. None: no monitoring.
    monitoring_namespace: str | None = None
    depends_on: list[InstanceOf[pulumi.Resource]] = []

    @model_validator(mode="after")
    def _cloud_key(self) -> RouterArgs:
        if self.settings.cloud_model is not None and self.cloud_api_key is None:
            raise ValueError("a cloud fallback model needs its API key (stack secret cloudLlmApiKey)")
        return self


# --- the pod: pure functions of the args -------------------------------------------------------


def _from_secret(env: str, secret_name: str, key: str) -> dict[str, Any]:
    return {"name": env, "value_from": {"secret_key_ref": {"name": secret_name, "key": key}}}


def _router_env(local_key_secret: str, cloud_key: bool) -> list[dict[str, Any]]:
    """The keys (each through `secretKeyRef`) and settings the rendered config reads."""
    env: list[dict[str, Any]] = [
        _from_secret(ENV_MASTER_KEY, "router-keys", "master-key"),
        _from_secret(ENV_LOCAL_KEY, local_key_secret, "api-key"),
        # LiteLLM's production guide: log errors only. Its default level is DEBUG
        # (litellm/_logging.py reads LITELLM_LOG), formatted on every request.
        {"name": "LITELLM_LOG", "value": "ERROR"},
        # The model price map bundled with the pinned version, not a fetch of LiteLLM's main
        # branch at every start (three retries, seconds, without egress).
        {"name": "LITELLM_LOCAL_MODEL_COST_MAP", "value": "True"},
    ]
    if cloud_key:
        env.append(_from_secret(ENV_CLOUD_KEY, "router-keys", "cloud-api-key"))
    return env


def _litellm_container(env: list[dict[str, Any]], workers: int, cpu_millicores: int) -> dict[str, Any]:
    probe_port = {"port": "http"}
    return {
        "name": "litellm",
        "image": versions.LITELLM_IMAGE,
        # Workers matched to the pod's CPUs, as LiteLLM's production guide says; with more than one,
        # the proxy keeps the Prometheus samples of all workers in a directory under /tmp (the
        # emptyDir), so /metrics still counts every request (litellm proxy_cli.py).
        "args": ["--config", CONFIG_PATH, "--port", str(PORT), "--num_workers", str(workers)],
        "ports": [{"name": "http", "container_port": PORT, "protocol": "TCP"}],
        # The non-root image sets HOME=/app and XDG_CACHE_HOME=/app/.cache
        # (BerriAI/litellm docker/Dockerfile.non_root); under a read-only root
        # the caches (tokenizer downloads) and Python's temporary files go to
        # the one writable emptyDir, /tmp. With no database configured, nothing
        # else is written: the Prisma migration directory that BerriAI/litellm#10624
        # and #13369 needed writable is only used with DATABASE_URL.
        "env": [*env, {"name": "XDG_CACHE_HOME", "value": SCRATCH_PATH + "/cache"}],
        "volume_mounts": [
            {"name": "config", "mount_path": "/etc/litellm", "read_only": True},
            {"name": "tmp", "mount_path": SCRATCH_PATH},
        ],
        "resources": {
            "requests": {"cpu": f"{cpu_millicores}m", "memory": "512Mi"},
            "limits": {"memory": "2Gi"},
        },
        # LiteLLM's own probe endpoints (its Helm chart uses the same).
        "startup_probe": {
            "http_get": {"path": "/health/liveliness", **probe_port},
            "period_seconds": 5,
            "failure_threshold": 36,
        },
        "readiness_probe": {
            "http_get": {"path": "/health/readiness", **probe_port},
            "period_seconds": 10,
        },
        "liveness_probe": {
            "http_get": {"path": "/health/liveliness", **probe_port},
            "period_seconds": 15,
            "failure_threshold": 4,
        },
        "security_context": {
            "allow_privilege_escalation": False,
            "capabilities": {"drop": ["ALL"]},
            "read_only_root_filesystem": True,
        },
    }


def _deployment_spec(replicas: int, config_text: str, container: dict[str, Any]) -> Any:
    """The router Deployment's spec.

    Typed Any: the nested dicts are checked by kubernetes-validate in the tests, not by mypy's
    TypedDict matching, which cannot follow values built in loops.
    """
    return {
        "replicas": replicas,
        "strategy": {"type": "RollingUpdate", "rolling_update": {"max_unavailable": 0, "max_surge": 1}},
        "selector": {"match_labels": LABELS},
        "template": {
            "metadata": {
                "labels": LABELS,
                # The config is read at start; a new config rolls the pods.
                "annotations": {"gpu-platform/config-sha256": hashlib.sha256(config_text.encode()).hexdigest()},
            },
            "spec": {
                "automount_service_account_token": False,
                "security_context": {
                    "run_as_non_root": True,
                    "run_as_user": RUN_AS,
                    "run_as_group": RUN_AS,
                    "seccomp_profile": {"type": "RuntimeDefault"},
                },
                "containers": [container],
                "volumes": [
                    {"name": "config", "config_map": {"name": "router-config"}},
                    {"name": "tmp", "empty_dir": {"size_limit": "256Mi"}},
                ],
            },
        },
    }


# --- the component -----------------------------------------------------------------------------


class Router(pulumi.ComponentResource):
    """LiteLLM proxy Deployment + Service + ConfigMap, local llama first, cloud fallback by alias."""

    url: pulumi.Output[str]
    master_key: pulumi.Output[str]
    config_text: str

    def __init__(self, name: str, args: RouterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gpu-platform:router:Router", name, None, opts)
        ns = args.namespace
        # The cloud key reaches the pod only when a cloud model uses it.
        cloud_key = args.cloud_api_key if args.settings.cloud_model is not None else None
        self.master_key = self._master_key(name)
        secret = self._keys(name, args, cloud_key)
        self.config_text = render_config(args.settings)
        config = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata={"name": "router-config", "namespace": ns, "labels": LABELS},
            data={"config.yaml": self.config_text},
            opts=self._opts(args.cluster, depends_on=args.depends_on),
        )
        container = _litellm_container(
            _router_env(args.local_key_secret, cloud_key is not None), args.workers, args.cpu_millicores
        )
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata={"name": "router", "namespace": ns, "labels": LABELS},
            spec=_deployment_spec(args.replicas, self.config_text, container),
            opts=self._opts(args.cluster, depends_on=[secret, config, *args.depends_on]),
        )
        self.service = self._service_and_policy(name, args)
        if args.replicas > 1:
            # Node drains take one router pod at a time; clients keep an answer meanwhile.
            k8s.policy.v1.PodDisruptionBudget(
                f"{name}-pdb",
                metadata={"name": "router", "namespace": ns, "labels": LABELS},
                spec={"min_available": 1, "selector": {"match_labels": LABELS}},
                opts=self._opts(args.cluster, depends_on=[deployment]),
            )
        self.url = pulumi.Output.from_input(f"http://router.{ns}.svc.cluster.local:{PORT}")
        self.deployment = deployment
        self.register_outputs({"url": self.url, "masterKey": self.master_key})

    def _opts(self, cluster: ClusterHandle, **extra: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, provider=cluster.provider, deleted_with=cluster.cluster, **extra)

    def _master_key(self, name: str) -> pulumi.Output[str]:
        master = random.RandomPassword(
            f"{name}-master-key", length=48, special=False, opts=pulumi.ResourceOptions(parent=self)
        )
        # LiteLLM wants master keys to start with "sk-".
        return pulumi.Output.secret(pulumi.Output.concat("sk-", master.result))

    def _keys(self, name: str, args: RouterArgs, cloud_key: pulumi.Output[str] | None) -> k8s.core.v1.Secret:
        keys: dict[str, Any] = {"master-key": self.master_key}
        if cloud_key is not None:
            keys["cloud-api-key"] = pulumi.Output.secret(cloud_key)
        return k8s.core.v1.Secret(
            f"{name}-keys",
            metadata={"name": "router-keys", "namespace": args.namespace, "labels": LABELS},
            type="Opaque",
            string_data=keys,
            opts=self._opts(args.cluster, depends_on=args.depends_on, additional_secret_outputs=["data", "stringData"]),
        )

    def _service_and_policy(self, name: str, args: RouterArgs) -> k8s.core.v1.Service:
        """The ClusterIP Service, reachable only from the router's namespace and its clients'."""
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata={"name": "router", "namespace": args.namespace, "labels": LABELS},
            spec={
                "type": "ClusterIP",
                "selector": LABELS,
                "ports": [{"name": "http", "port": PORT, "target_port": "http", "protocol": "TCP"}],
            },
            opts=self._opts(args.cluster, depends_on=args.depends_on),
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-ingress",
            metadata={"name": "router-ingress", "namespace": args.namespace, "labels": LABELS},
            spec=namespace_ingress_policy(
                LABELS, (*args.client_namespaces, *([args.monitoring_namespace] if args.monitoring_namespace else []))
            ),
            opts=self._opts(args.cluster, depends_on=args.depends_on),
        )
        if args.monitoring_namespace is not None:
            k8s.apiextensions.CustomResource(
                f"{name}-monitor",
                api_version="monitoring.coreos.com/v1",
                kind="ServiceMonitor",
                metadata={"name": "router", "namespace": args.namespace, "labels": LABELS},
                # /metrics is behind the master key (the check reads it the same way).
                spec=bearer_monitor_spec(LABELS, "router-keys", "master-key"),
                opts=self._opts(args.cluster, depends_on=[service]),
            )
        return service
