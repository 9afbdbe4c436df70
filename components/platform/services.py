"""The platform's own services on K3s, every object derived from the catalog's ONE table.

`SERVICES` (components/catalog/services.py) describes the dashboard, the MCP services, the jobs
worker and nginx; this module turns each row into its Deployment, Service, PodDisruptionBudget,
HorizontalPodAutoscaler and NetworkPolicies, and writes nginx's routing table, so a new service is
one row there and nothing here.

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
from collections.abc import Sequence
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field, InstanceOf, field_validator, model_validator

from components.catalog.services import (
    SERVICES,
    STORE_SECRET,
    SecretEnv,
    ServiceSpec,
    Store,
    hpa_ceiling,
    is_own_image,
    validate_table,
)
from components.config.schema import ServiceImages
from components.core.errors import ConfigError
from components.core.model import Args
from components.handles import ClusterHandle
from components.platform.kube import (
    GPU_RESOURCE,
    GPU_RUNTIME_CLASS,
    GPU_TOLERATION,
    TRAEFIK_PEER,
    USES_LABEL,
    container_security,
    k8s_opts,
    labels,
    pod_security,
    secret_env,
    selector,
)


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
        # Qdrant's HTTP port (components/platform/datastores.py); the key comes from the Secret.
        return [{"name": "QDRANT_URL", "value": f"http://qdrant.{data_namespace}.svc.cluster.local:6333"}]
    return []


def image_reference(spec: ServiceSpec, images: ServiceImages) -> str:
    """What the pod pulls: `<registry>/<name>:<tag>` for the organisation's images, else the pin."""
    return images.reference(spec.image) if is_own_image(spec) else spec.image


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


def _container(spec: ServiceSpec, images: ServiceImages, data_namespace: str) -> dict[str, Any]:
    """The service's one container: its image, env (Secrets only as references), probes, limits."""
    resources: dict[str, Any] = {
        "requests": {"cpu": spec.cpu[0], "memory": spec.memory[0]},
        "limits": {"cpu": spec.cpu[1], "memory": spec.memory[1]},
    }
    if spec.gpus:
        resources["limits"][GPU_RESOURCE] = str(spec.gpus)
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mount_path": "/tmp"}]
    if spec.name == "nginx":
        mounts.append({"name": "config", "mount_path": "/etc/nginx/conf.d", "read_only": True})
    probe = {"http_get": {"path": spec.health_path, "port": "http"}, "period_seconds": 10, "timeout_seconds": 3}
    return {
        "name": spec.name,
        "image": image_reference(spec, images),
        "image_pull_policy": "IfNotPresent",
        "ports": [{"name": "http", "container_port": spec.port, "protocol": "TCP"}],
        "env": [
            {"name": "PORT", "value": str(spec.port)},
            *({"name": k, "value": v} for k, v in sorted(spec.env.items())),
            *_store_plain_env(spec.stores, data_namespace),
            *secret_env(_store_env(spec.stores) + spec.secrets),
        ],
        "resources": resources,
        "startup_probe": {**probe, "failure_threshold": 30},
        "readiness_probe": {**probe, "failure_threshold": 3},
        "liveness_probe": {**probe, "failure_threshold": 6},
        "security_context": container_security(),
        "volume_mounts": mounts,
    }


def _pod_spec(spec: ServiceSpec, replicas: int, container: dict[str, Any]) -> dict[str, Any]:
    """Restricted pod security, GPU scheduling for GPU services, replicas spread over nodes."""
    volumes: list[dict[str, Any]] = [{"name": "tmp", "empty_dir": {"size_limit": "256Mi"}}]
    if spec.name == "nginx":
        volumes.append({"name": "config", "config_map": {"name": "nginx-config"}})
    pod_spec: dict[str, Any] = {
        "automount_service_account_token": False,
        "security_context": pod_security(spec.run_as_user),
        "containers": [container],
        "volumes": volumes,
    }
    if spec.gpus:
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
    return pod_spec


# --- the component ------------------------------------------------------------------------------


class PlatformServicesArgs(Args):
    cluster: InstanceOf[ClusterHandle]
    namespace: str
    environment: Literal["dev", "prod"]
    autoscaling: bool
    data_namespace: str
    monitoring_namespace: str | None  # Prometheus scrapes the services from here when set
    # Created by the caller: app-secrets and store-credentials exist before any pod reads them.
    secrets: Sequence[InstanceOf[pulumi.Resource]] = ()
    table: tuple[InstanceOf[ServiceSpec], ...] = SERVICES
    images: ServiceImages = Field(default_factory=ServiceImages)  # stack config serviceImages

    # Before the Literal check, so a wrong environment is a ConfigError like the table's.
    @field_validator("environment", mode="before")
    @classmethod
    def _environment(cls, v: object) -> object:
        if v not in ("dev", "prod"):
            raise ConfigError(f"PlatformServices: environment {v!r}; expected dev or prod")
        return v

    @model_validator(mode="after")
    def _table(self) -> PlatformServicesArgs:
        validate_table(self.table)
        return self


class PlatformServices(pulumi.ComponentResource):
    """Deployments, Services, PDBs, HPAs and NetworkPolicies for every row of SERVICES."""

    deployments: dict[str, pulumi.Resource]
    services: dict[str, pulumi.Resource]

    def __init__(self, name: str, args: PlatformServicesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gpu-platform:services:PlatformServices", name, None, opts)
        self.deployments = {}
        self.services = {}

        nginx_conf = k8s.core.v1.ConfigMap(
            f"{name}-nginx-config",
            metadata={"name": "nginx-config", "namespace": args.namespace, "labels": labels("nginx", "config")},
            data={"default.conf": nginx_config(args.table, args.namespace)},
            opts=k8s_opts(self, args.cluster),
        )
        for spec in args.table:
            replicas = spec.replicas_for(args.environment)
            ceiling = hpa_ceiling(spec, args.environment)
            autoscaled = args.autoscaling and ceiling > replicas
            self.deployments[spec.name] = self._deployment(
                name, args, spec, replicas, autoscaled=autoscaled, nginx_conf=nginx_conf
            )
            self.services[spec.name] = self._service(name, args, spec)
            if replicas > 1:
                self._disruption_budget(name, args, spec)
            if autoscaled:
                self._autoscaler(name, args, spec, (replicas, ceiling), self.deployments[spec.name])

        self._network_policies(name, args)
        self.register_outputs({"deployments": sorted(self.deployments)})

    def _deployment(
        self,
        name: str,
        args: PlatformServicesArgs,
        spec: ServiceSpec,
        replicas: int,
        *,
        autoscaled: bool,
        nginx_conf: pulumi.Resource,
    ) -> pulumi.Resource:
        ns = args.namespace
        depends: list[pulumi.Resource] = [*args.secrets]
        template_metadata: dict[str, Any] = {
            "labels": {
                **labels(spec.name, "service"),
                **{USES_LABEL.format(store=s): "true" for s in spec.stores},
            }
        }
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
        return k8s.apps.v1.Deployment(
            f"{name}-{spec.name}",
            metadata={"name": spec.name, "namespace": ns, "labels": labels(spec.name, "service")},
            spec={
                "replicas": replicas,
                "revision_history_limit": 5,
                "selector": {"match_labels": selector(spec.name)},
                "strategy": strategy,
                "template": {
                    "metadata": template_metadata,
                    "spec": _pod_spec(spec, replicas, _container(spec, args.images, args.data_namespace)),
                },
            },
            # Once an HPA scales the Deployment, spec.replicas is the HPA's field; without
            # ignore_changes every `pulumi up` would reset it to the table's minimum.
            opts=k8s_opts(
                self, args.cluster, depends_on=depends, ignore_changes=["spec.replicas"] if autoscaled else ()
            ),
        )

    def _service(self, name: str, args: PlatformServicesArgs, spec: ServiceSpec) -> pulumi.Resource:
        return k8s.core.v1.Service(
            f"{name}-{spec.name}-svc",
            metadata={"name": spec.name, "namespace": args.namespace, "labels": labels(spec.name, "service")},
            spec={
                "type": "ClusterIP",
                "selector": selector(spec.name),
                "ports": [{"name": "http", "port": spec.port, "target_port": "http", "protocol": "TCP"}],
            },
            opts=k8s_opts(self, args.cluster),
        )

    def _disruption_budget(self, name: str, args: PlatformServicesArgs, spec: ServiceSpec) -> None:
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-{spec.name}-pdb",
            metadata={"name": spec.name, "namespace": args.namespace, "labels": labels(spec.name, "service")},
            spec={"max_unavailable": 1, "selector": {"match_labels": selector(spec.name)}},
            opts=k8s_opts(self, args.cluster),
        )

    def _autoscaler(
        self,
        name: str,
        args: PlatformServicesArgs,
        spec: ServiceSpec,
        bounds: tuple[int, int],
        deployment: pulumi.Resource,
    ) -> None:
        """CPU-driven HPA between `bounds` (the table's replicas and its ceiling)."""
        low, high = bounds
        k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{name}-{spec.name}-hpa",
            metadata={"name": spec.name, "namespace": args.namespace, "labels": labels(spec.name, "service")},
            spec={
                "scale_target_ref": {"api_version": "apps/v1", "kind": "Deployment", "name": spec.name},
                "min_replicas": low,
                "max_replicas": high,
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
            opts=k8s_opts(self, args.cluster, depends_on=[deployment]),
        )

    def _network_policies(self, name: str, args: PlatformServicesArgs) -> None:
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
