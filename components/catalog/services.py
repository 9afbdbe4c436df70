"""The platform's own services as data: ONE table, `SERVICES`.

Each row describes one service (the dashboard, the MCP services, the jobs worker, nginx): its
image (the organisation's own images by name, resolved against stack config `serviceImages`;
third-party ones pinned in components/catalog/versions.py), port, replicas per environment,
requests and limits, GPUs, health path, which data stores it talks to and which secrets it reads.
components/platform/services.py derives every Kubernetes object from it, so a new service is one
row. The table is pure data: config validation reads its image names without importing anything
that builds resources.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from components.catalog import versions
from components.core.errors import ConfigError

Store = Literal["postgres", "redis", "qdrant"]
STORES: tuple[Store, ...] = ("postgres", "redis", "qdrant")

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
        raise ConfigError("components/catalog/services.py SERVICES: " + "; ".join(problems))
