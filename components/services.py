"""The platform's own services on K3s, built from ONE table.

`SERVICES` is the only description of the dashboard, the MCP services, the jobs worker and nginx:
image (the organisation's own images by name, from the registry and tag of stack config
`serviceImages`; third-party ones pinned in components/versions.py), port, replicas per environment, requests and
limits, GPUs, health path, which data stores it talks to and which secrets it reads. Everything
else (Deployments, Services, PodDisruptionBudgets, HorizontalPodAutoscalers, NetworkPolicies,
the nginx routing table) is derived from it, so a new service is one row.

Security: every pod runs under the `restricted` Pod Security Standard (the namespace enforces
it): non-root, no privilege escalation, every capability dropped, the runtime's default seccomp
profile, a read-only root filesystem with an emptyDir for /tmp. Secrets reach containers only as
`secretKeyRef`s; no value is ever written into a pod spec.

GPU services request `nvidia.com/gpu` limits, run with `runtimeClassName: nvidia` and tolerate the
`nvidia.com/gpu=present:NoSchedule` taint the GPU agents carry; no CPU service has any of the three,
so CPU pods never land on (and never block) a dedicated GPU node.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pulumi

from components import versions
from components.config import ServiceImages
from components.errors import ConfigError
from components.handles import ClusterHandle

Store = Literal["postgres", "redis", "qdrant"]
STORES: tuple[Store, ...] = ("postgres", "redis", "qdrant")

PART_OF = "gpu-platform"
# Label that the data stores' NetworkPolicies select on: only pods carrying
# `gpu-platform/uses-<store>: "true"` may open a connection to that store.
USES_LABEL = "gpu-platform/uses-{store}"
# The taint the K3s component puts on dedicated GPU agents, and the runtime class K3s registers
# when it finds the NVIDIA container runtime on a node.
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TOLERATION: dict[str, str] = {"key": GPU_RESOURCE, "operator": "Equal", "value": "present", "effect": "NoSchedule"}
GPU_RUNTIME_CLASS = "nvidia"

# K3s's Traefik, as a NetworkPolicy peer.
TRAEFIK_PEER: dict[str, Any] = {
    "namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": "kube-system"}},
    "pod_selector": {"match_labels": {"app.kubernetes.io/name": "traefik"}},
}

APP_SECRET = "app-secrets"  # Secret in the services' namespace: API tokens from stack config
STORE_SECRET = "store-credentials"  # Secret in the services' namespace: URLs/keys of the stores


@dataclass(frozen=True)
class SecretEnv:
    """An environment variable read from a key of a Secret; `optional` ones may be absent."""

    env: str
    secret: str
    key: str
    optional: bool = False


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    # The name of one of the organisation's images (resolved against stack config serviceImages),
    # or the full, pinned reference of a third-party image (it has a registry: a '/').
    image: str
    port: int
    replicas: Mapping[str, int]  # per environment: {"dev": n, "prod": m}, prod > dev where it can be
    cpu: tuple[str, str]  # (request, limit)
    memory: tuple[str, str]  # (request, limit)
    gpus: int = 0
    health_path: str = "/health"
    max_replicas: int = 0  # HPA ceiling in prod once platform.autoscaling is on; 0 = never autoscaled
    stores: tuple[Store, ...] = ()
    secrets: tuple[SecretEnv, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    run_as_user: int = 10001
    behind_nginx: bool = True  # reachable as https://api.<domain>/<name>/ through nginx
    public_host: str | None = None  # a public hostname of its own: <public_host>.<domain>

    def replicas_for(self, environment: str) -> int:
        return self.replicas[environment]


def _store_env(stores: Sequence[Store]) -> tuple[SecretEnv, ...]:
    out: list[SecretEnv] = []
    if "postgres" in stores:
        out.append(SecretEnv("DATABASE_URL", STORE_SECRET, "postgres-url"))
    if "redis" in stores:
        out.append(SecretEnv("REDIS_URL", STORE_SECRET, "redis-url"))
    if "qdrant" in stores:
        out.append(SecretEnv("QDRANT_API_KEY", STORE_SECRET, "qdrant-api-key"))
    return tuple(out)


def _store_plain_env(stores: Sequence[Store], data_namespace: str) -> list[dict[str, str]]:
    if "qdrant" in stores:
        # Qdrant's HTTP port (components/datastores.py); the key comes from the Secret.
        return [{"name": "QDRANT_URL", "value": f"http://qdrant.{data_namespace}.svc.cluster.local:6333"}]
    return []


_LLM_KEY = SecretEnv("LLM_API_KEY", APP_SECRET, "llm-api-key", optional=True)

# The one table. Ports are the ones the Compose file publishes today, so nginx's routes and the
# services' own configs carry over unchanged. GPU services run one replica in both environments:
# prod has six GPUs and the llama server of phase p3 needs the rest.
SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        name="dashboard",
        image="dashboard",
        port=3000,
        replicas={"dev": 1, "prod": 2},
        cpu=("100m", "500m"),
        memory=("128Mi", "256Mi"),
        health_path="/",
        max_replicas=6,
        behind_nginx=False,
        public_host="app",
    ),
    ServiceSpec(
        name="research",
        image="mcp-research",
        port=8001,
        replicas={"dev": 1, "prod": 1},
        cpu=("500m", "2"),
        memory=("4Gi", "16Gi"),
        gpus=1,
        stores=("qdrant", "redis"),
        secrets=(_LLM_KEY,),
    ),
    ServiceSpec(
        name="context",
        image="mcp-context",
        port=8002,
        replicas={"dev": 1, "prod": 1},
        cpu=("500m", "2"),
        memory=("4Gi", "16Gi"),
        gpus=1,
        stores=("qdrant", "redis", "postgres"),
    ),
    ServiceSpec(
        name="github",
        image="mcp-github",
        port=8003,
        replicas={"dev": 1, "prod": 2},
        cpu=("100m", "500m"),
        memory=("256Mi", "512Mi"),
        max_replicas=4,
        stores=("redis",),
        secrets=(SecretEnv("GITHUB_TOKEN", APP_SECRET, "github-token"),),
    ),
    ServiceSpec(
        name="business",
        image="mcp-business",
        port=8004,
        replicas={"dev": 1, "prod": 2},
        cpu=("100m", "500m"),
        memory=("256Mi", "512Mi"),
        max_replicas=4,
        stores=("postgres",),
    ),
    ServiceSpec(
        name="lambda",
        image="mcp-lambda",
        port=8005,
        replicas={"dev": 1, "prod": 2},
        cpu=("100m", "500m"),
        memory=("128Mi", "256Mi"),
        max_replicas=4,
        secrets=(SecretEnv("LAMBDA_API_KEY", APP_SECRET, "lambda-api-key"),),
    ),
    ServiceSpec(
        name="hubspot",
        image="mcp-hubspot",
        port=8006,
        replicas={"dev": 1, "prod": 2},
        cpu=("100m", "500m"),
        memory=("256Mi", "512Mi"),
        max_replicas=4,
        stores=("postgres",),
        secrets=(SecretEnv("HUBSPOT_ACCESS_TOKEN", APP_SECRET, "hubspot-access-token"),),
    ),
    ServiceSpec(
        name="agents",
        image="mcp-agents",
        port=8007,
        replicas={"dev": 1, "prod": 1},
        cpu=("1", "4"),
        memory=("8Gi", "24Gi"),
        gpus=1,
        stores=("postgres", "redis", "qdrant"),
        secrets=(_LLM_KEY,),
    ),
    ServiceSpec(
        name="jobs",
        image="jobs",
        port=8080,  # health and metrics only; the worker takes its work from Redis
        replicas={"dev": 1, "prod": 2},
        cpu=("250m", "1"),
        memory=("512Mi", "1Gi"),
        health_path="/healthz",
        max_replicas=6,
        stores=("postgres", "redis"),
        secrets=(_LLM_KEY,),
        behind_nginx=False,
    ),
    ServiceSpec(
        name="nginx",
        image=versions.NGINX_IMAGE,
        port=8080,
        replicas={"dev": 1, "prod": 2},
        cpu=("100m", "500m"),
        memory=("64Mi", "128Mi"),
        health_path="/healthz",
        max_replicas=6,
        run_as_user=101,  # the nginx-unprivileged image's user
        behind_nginx=False,
        public_host="api",
    ),
)


def is_own_image(spec: ServiceSpec) -> bool:
    return "/" not in spec.image


def own_image_names(table: Sequence[ServiceSpec] = SERVICES) -> tuple[str, ...]:
    """The organisation's images the table runs, by name (the keys of serviceImages.tags)."""
    return tuple(s.image for s in table if is_own_image(s))


def image_reference(spec: ServiceSpec, images: ServiceImages) -> str:
    """What the pod pulls: `<registry>/<name>:<tag>` for the organisation's images, else the pin."""
    return images.reference(spec.image) if is_own_image(spec) else spec.image


def service(name: str) -> ServiceSpec:
    for spec in SERVICES:
        if spec.name == name:
            return spec
    raise KeyError(name)


def hpa_ceiling(spec: ServiceSpec, environment: str) -> int:
    """The most replicas an HPA may run: the table's ceiling in prod; dev may grow to prod's floor."""
    if not spec.max_replicas:
        return 0
    return spec.max_replicas if environment == "prod" else spec.replicas["prod"]


def app_secret_keys() -> dict[str, bool]:
    """Every key of the app Secret some service reads, and whether a service needs it."""
    keys: dict[str, bool] = {}
    for spec in SERVICES:
        for ref in spec.secrets:
            if ref.secret == APP_SECRET:
                keys[ref.key] = keys.get(ref.key, False) or not ref.optional
    return keys


def validate_table(table: Sequence[ServiceSpec] = SERVICES) -> None:
    """The table's own consistency; a mistake here is caught before any resource exists."""
    problems: list[str] = []
    names = [s.name for s in table]
    if len(set(names)) != len(names):
        problems.append(f"duplicate service names in {names}")
    hosts = [s.public_host for s in table if s.public_host]
    if len(set(hosts)) != len(hosts):
        problems.append(f"two services claim one public host: {hosts}")
    for s in table:
        if set(s.replicas) != {"dev", "prod"} or min(s.replicas.values()) < 1:
            problems.append(f"{s.name}: replicas needs dev and prod, each >= 1")
        elif s.gpus == 0 and s.replicas["prod"] <= s.replicas["dev"]:
            problems.append(f"{s.name}: prod must run more replicas than dev (HA)")
        if s.gpus and s.max_replicas:
            problems.append(f"{s.name}: GPU services are not autoscaled (a GPU per replica)")
        if s.max_replicas and s.max_replicas < s.replicas["prod"]:
            problems.append(f"{s.name}: maxReplicas {s.max_replicas} is below prod replicas")
        if is_own_image(s):
            if not re.fullmatch(r"[a-z0-9]+([._-][a-z0-9]+)*", s.image):
                problems.append(f"{s.name}: image name {s.image!r} is not a repository name")
        elif ":" not in s.image.rsplit("/", 1)[-1] or s.image.endswith(":latest"):
            problems.append(f"{s.name}: image {s.image!r} must be pinned by tag")
        if not s.health_path.startswith("/"):
            problems.append(f"{s.name}: health path must start with /")
    if problems:
        raise ConfigError("components/services.py SERVICES: " + "; ".join(problems))


# --- shared pod building blocks (datastores.py and traffic.py use them too) -------------------


def labels(name: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/component": component,
    }


def selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": PART_OF}


def pod_security(run_as_user: int) -> dict[str, Any]:
    return {
        "run_as_non_root": True,
        "run_as_user": run_as_user,
        "run_as_group": run_as_user,
        "fs_group": run_as_user,
        "seccomp_profile": {"type": "RuntimeDefault"},
    }


def container_security(read_only_root: bool = True) -> dict[str, Any]:
    return {
        "allow_privilege_escalation": False,
        "capabilities": {"drop": ["ALL"]},
        "privileged": False,
        "read_only_root_filesystem": read_only_root,
        "run_as_non_root": True,
        "seccomp_profile": {"type": "RuntimeDefault"},
    }


def secret_env(refs: Sequence[SecretEnv]) -> list[dict[str, Any]]:
    return [
        {
            "name": r.env,
            "value_from": {
                "secret_key_ref": {"name": r.secret, "key": r.key, **({"optional": True} if r.optional else {})}
            },
        }
        for r in refs
    ]


def namespace_ingress_policy(labels: Mapping[str, str], from_namespaces: Sequence[str] = ()) -> dict[str, Any]:
    """A NetworkPolicy spec: the pods `labels` select take traffic on their `http` port from their
    own namespace and from `from_namespaces`, and from nowhere else."""
    sources: list[dict[str, Any]] = [{"pod_selector": {}}]
    sources += [
        {"namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": namespace}}}
        for namespace in from_namespaces
    ]
    return {
        "pod_selector": {"match_labels": dict(labels)},
        "policy_types": ["Ingress"],
        "ingress": [{"from": sources, "ports": [{"port": "http", "protocol": "TCP"}]}],
    }


def k8s_opts(
    parent: pulumi.Resource,
    cluster: ClusterHandle,
    *,
    depends_on: Sequence[pulumi.Resource] = (),
    protect: bool = False,
    retain_on_delete: bool = False,
    ignore_changes: Sequence[str] = (),
    custom_timeouts: pulumi.CustomTimeouts | None = None,
    delete_before_replace: bool = False,
) -> pulumi.ResourceOptions:
    """Options every in-cluster object shares: the cluster's provider, and deleted with it.

    `deleted_with` the cluster: tearing K3s down (rolling back past p2a) deletes its objects with
    it, so Pulumi does not try to talk to an API server that is already gone.
    """
    return pulumi.ResourceOptions(
        parent=parent,
        provider=cluster.provider,
        deleted_with=cluster.cluster,
        depends_on=[*cluster.ready, *depends_on],
        protect=protect,
        retain_on_delete=retain_on_delete,
        ignore_changes=list(ignore_changes) or None,
        custom_timeouts=custom_timeouts,
        delete_before_replace=delete_before_replace,
    )


def nginx_config(table: Sequence[ServiceSpec], namespace: str) -> str:
    """nginx's server block: /<service>/ proxies to that service, /healthz answers locally.

    MCP speaks streamable HTTP and server-sent events, so responses are not buffered and idle
    streams may stay open for an hour.
    """
    lines = [
        "server {",
        "    listen 8080;",
        "    server_tokens off;",
        "    client_max_body_size 50m;",
        "    location = /healthz { access_log off; default_type text/plain; return 200 'ok'; }",
        # The `public-routes-200` exit check asks https://api.<domain>/ for a 200.
        "    location = / { default_type text/plain; return 200 'gpu-platform api'; }",
    ]
    for s in table:
        if not s.behind_nginx:
            continue
        lines += [
            f"    location /{s.name}/ {{",
            f"        proxy_pass http://{s.name}.{namespace}.svc.cluster.local:{s.port}/;",
            "        proxy_http_version 1.1;",
            '        proxy_set_header Connection "";',
            "        proxy_set_header Host $host;",
            "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
            "        proxy_set_header X-Forwarded-Proto https;",
            "        proxy_buffering off;",
            "        proxy_read_timeout 3600s;",
            "    }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


# --- the component ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlatformServicesArgs:
    cluster: ClusterHandle
    namespace: str
    environment: Literal["dev", "prod"]
    autoscaling: bool
    data_namespace: str
    monitoring_namespace: str | None  # Prometheus scrapes the services from here when set
    # Created by the caller: app-secrets and store-credentials exist before any pod reads them.
    secrets: Sequence[pulumi.Resource] = ()
    table: tuple[ServiceSpec, ...] = SERVICES
    images: ServiceImages = field(default_factory=ServiceImages)  # stack config serviceImages

    def __post_init__(self) -> None:
        validate_table(self.table)
        if self.environment not in ("dev", "prod"):
            raise ConfigError(f"PlatformServices: environment {self.environment!r}; expected dev or prod")


class PlatformServices(pulumi.ComponentResource):
    """Deployments, Services, PDBs, HPAs and NetworkPolicies for every row of SERVICES."""

    deployments: dict[str, pulumi.Resource]
    services: dict[str, pulumi.Resource]

    def __init__(self, name: str, args: PlatformServicesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gpu-platform:services:PlatformServices", name, None, opts)
        import pulumi_kubernetes as k8s

        ns = args.namespace
        self.deployments = {}
        self.services = {}

        nginx_conf = k8s.core.v1.ConfigMap(
            f"{name}-nginx-config",
            metadata={"name": "nginx-config", "namespace": ns, "labels": labels("nginx", "config")},
            data={"default.conf": nginx_config(args.table, ns)},
            opts=k8s_opts(self, args.cluster),
        )

        for spec in args.table:
            replicas = spec.replicas_for(args.environment)
            ceiling = hpa_ceiling(spec, args.environment)
            autoscaled = args.autoscaling and ceiling > replicas
            pod_labels = {
                **labels(spec.name, "service"),
                **{USES_LABEL.format(store=s): "true" for s in spec.stores},
            }
            resources: dict[str, Any] = {
                "requests": {"cpu": spec.cpu[0], "memory": spec.memory[0]},
                "limits": {"cpu": spec.cpu[1], "memory": spec.memory[1]},
            }
            volumes: list[dict[str, Any]] = [{"name": "tmp", "empty_dir": {"size_limit": "256Mi"}}]
            mounts: list[dict[str, Any]] = [{"name": "tmp", "mount_path": "/tmp"}]
            if spec.name == "nginx":
                volumes.append({"name": "config", "config_map": {"name": "nginx-config"}})
                mounts.append({"name": "config", "mount_path": "/etc/nginx/conf.d", "read_only": True})
            probe = {"http_get": {"path": spec.health_path, "port": "http"}, "period_seconds": 10, "timeout_seconds": 3}
            pod_spec: dict[str, Any] = {
                "automount_service_account_token": False,
                "security_context": pod_security(spec.run_as_user),
                "containers": [
                    {
                        "name": spec.name,
                        "image": image_reference(spec, args.images),
                        "image_pull_policy": "IfNotPresent",
                        "ports": [{"name": "http", "container_port": spec.port, "protocol": "TCP"}],
                        "env": [
                            {"name": "PORT", "value": str(spec.port)},
                            *({"name": k, "value": v} for k, v in sorted(spec.env.items())),
                            *_store_plain_env(spec.stores, args.data_namespace),
                            *secret_env(_store_env(spec.stores) + spec.secrets),
                        ],
                        "resources": resources,
                        "startup_probe": {**probe, "failure_threshold": 30},
                        "readiness_probe": {**probe, "failure_threshold": 3},
                        "liveness_probe": {**probe, "failure_threshold": 6},
                        "security_context": container_security(),
                        "volume_mounts": mounts,
                    }
                ],
                "volumes": volumes,
            }
            if spec.gpus:
                resources["limits"][GPU_RESOURCE] = str(spec.gpus)
                pod_spec["runtime_class_name"] = GPU_RUNTIME_CLASS
                pod_spec["tolerations"] = [dict(GPU_TOLERATION)]
            if replicas > 1:
                pod_spec["topology_spread_constraints"] = [
                    {
                        "max_skew": 1,
                        "topology_key": "kubernetes.io/hostname",
                        "when_unsatisfiable": "ScheduleAnyway",
                        "label_selector": {"match_labels": selector(spec.name)},
                    }
                ]
            depends: list[pulumi.Resource] = [*args.secrets]
            template_metadata: dict[str, Any] = {"labels": pod_labels}
            if spec.name == "nginx":
                depends.append(nginx_conf)
                # nginx reads its config once: a changed config must roll the pods.
                digest = hashlib.sha256(nginx_config(args.table, ns).encode()).hexdigest()
                template_metadata["annotations"] = {"gpu-platform/config-sha256": digest}
            # A GPU pod cannot surge: the new one would wait for the GPU the old one holds.
            strategy: dict[str, Any] = (
                {"type": "Recreate"}
                if spec.gpus
                else {"type": "RollingUpdate", "rolling_update": {"max_surge": 1, "max_unavailable": 0}}
            )
            self.deployments[spec.name] = k8s.apps.v1.Deployment(
                f"{name}-{spec.name}",
                metadata={"name": spec.name, "namespace": ns, "labels": labels(spec.name, "service")},
                spec={
                    "replicas": replicas,
                    "revision_history_limit": 5,
                    "selector": {"match_labels": selector(spec.name)},
                    "strategy": strategy,
                    "template": {"metadata": template_metadata, "spec": pod_spec},
                },
                # Once an HPA scales the Deployment, spec.replicas is the HPA's field; without
                # ignore_changes every `pulumi up` would reset it to the table's minimum.
                opts=k8s_opts(
                    self, args.cluster, depends_on=depends, ignore_changes=["spec.replicas"] if autoscaled else ()
                ),
            )
            self.services[spec.name] = k8s.core.v1.Service(
                f"{name}-{spec.name}-svc",
                metadata={"name": spec.name, "namespace": ns, "labels": labels(spec.name, "service")},
                spec={
                    "type": "ClusterIP",
                    "selector": selector(spec.name),
                    "ports": [{"name": "http", "port": spec.port, "target_port": "http", "protocol": "TCP"}],
                },
                opts=k8s_opts(self, args.cluster),
            )
            if replicas > 1:
                k8s.policy.v1.PodDisruptionBudget(
                    f"{name}-{spec.name}-pdb",
                    metadata={"name": spec.name, "namespace": ns, "labels": labels(spec.name, "service")},
                    spec={"max_unavailable": 1, "selector": {"match_labels": selector(spec.name)}},
                    opts=k8s_opts(self, args.cluster),
                )
            if autoscaled:
                k8s.autoscaling.v2.HorizontalPodAutoscaler(
                    f"{name}-{spec.name}-hpa",
                    metadata={"name": spec.name, "namespace": ns, "labels": labels(spec.name, "service")},
                    spec={
                        "scale_target_ref": {"api_version": "apps/v1", "kind": "Deployment", "name": spec.name},
                        "min_replicas": replicas,
                        "max_replicas": ceiling,
                        "metrics": [
                            {
                                "type": "Resource",
                                "resource": {
                                    "name": "cpu",
                                    "target": {"type": "Utilization", "average_utilization": 70},
                                },
                            }
                        ],
                        # Scale down slowly: MCP sessions are long-lived streams.
                        "behavior": {"scale_down": {"stabilization_window_seconds": 600}},
                    },
                    opts=k8s_opts(self, args.cluster, depends_on=[self.deployments[spec.name]]),
                )

        self._network_policies(name, args)
        self.register_outputs({"deployments": sorted(self.deployments)})

    def _network_policies(self, name: str, args: PlatformServicesArgs) -> None:
        import pulumi_kubernetes as k8s

        ns = args.namespace
        public = sorted(s.name for s in args.table if s.public_host)
        # (name, spec); Any because the SDK's NetworkPolicySpecArgsDict cannot be inferred from a table.
        policies: list[tuple[str, Any]] = [
            # Nothing reaches a service unless a policy below lets it.
            ("default-deny-ingress", {"pod_selector": {}, "policy_types": ["Ingress"]}),
            # The services call each other (nginx -> MCP, agents -> research/context).
            (
                "allow-same-namespace",
                {"pod_selector": {}, "policy_types": ["Ingress"], "ingress": [{"from": [{"pod_selector": {}}]}]},
            ),
            # K3s's Traefik (kube-system) reaches only the services with a public hostname.
            (
                "allow-traefik",
                {
                    "pod_selector": {
                        "match_expressions": [{"key": "app.kubernetes.io/name", "operator": "In", "values": public}]
                    },
                    "policy_types": ["Ingress"],
                    "ingress": [
                        {
                            "from": [dict(TRAEFIK_PEER)],
                            "ports": [{"port": "http", "protocol": "TCP"}],
                        }
                    ],
                },
            ),
        ]
        # cert-manager answers Let's Encrypt's HTTP-01 challenge from a solver pod it starts in the
        # Certificate's namespace; Traefik must reach it or no certificate is ever issued.
        policies.append(
            (
                "allow-acme-http01-solver",
                {
                    "pod_selector": {"match_labels": {"acme.cert-manager.io/http01-solver": "true"}},
                    "policy_types": ["Ingress"],
                    "ingress": [
                        {
                            "from": [dict(TRAEFIK_PEER)],
                            "ports": [{"port": 8089, "protocol": "TCP"}],
                        }
                    ],
                },
            )
        )
        if args.monitoring_namespace:
            policies.append(
                (
                    "allow-prometheus",
                    {
                        "pod_selector": {},
                        "policy_types": ["Ingress"],
                        "ingress": [
                            {
                                "from": [
                                    {
                                        "namespace_selector": {
                                            "match_labels": {"kubernetes.io/metadata.name": args.monitoring_namespace}
                                        }
                                    }
                                ],
                                "ports": [{"port": "http", "protocol": "TCP"}],
                            }
                        ],
                    },
                )
            )
        for policy_name, spec in policies:
            k8s.networking.v1.NetworkPolicy(
                f"{name}-{policy_name}",
                metadata={"name": policy_name, "namespace": ns, "labels": labels("platform", "network-policy")},
                spec=spec,
                opts=k8s_opts(self, args.cluster),
            )
