"""Typed stack configuration.

Every `gpu-platform:*` key of a stack is read here into frozen pydantic models and validated as a
whole before a single resource exists. A mistake raises `ConfigError` with one line per problem,
naming the key, the bad value and what is allowed. Secrets never enter these models: they are read
with `require_secret` / `get_secret` into `Secrets` and stay `Output`s end to end.

The loader has two entry points that share one validator:
- `load()` inside a Pulumi program (real CLI or the recording harness);
- `parse(raw)` on a plain mapping, for tools that read a stack file directly.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pulumi
from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator

from components import versions
from components.catalog import GCP_ACCELERATORS, GPUS, LAMBDA_INSTANCE_TYPES, LAMBDA_REGIONS, GpuModel
from components.errors import ConfigError, format_validation_error
from components.model import Frozen
from components.phases import phase_ids

NAMESPACE = "gpu-platform"

_DNS_LABEL = re.compile(r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,63}$")
# What `ssh-keyscan` prints for a host key: "<type> <base64>", optionally preceded by the host.
_HOST_KEY = re.compile(r"^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/]{40,}={0,3}$")
_K3S_RELEASE = re.compile(r"^v1\.\d+\.\d+\+k3s\d+$")


def _ip(value: str, what: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"not a valid IP address for {what}") from None


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError:
        raise ValueError("not a valid CIDR such as 203.0.113.0/24 (host bits must be zero)") from None


Cidr = Annotated[str, AfterValidator(_cidr)]


def _host_key(value: str) -> str:
    parts = value.split()
    if len(parts) == 3 and not parts[0].startswith(("ssh-", "ecdsa-")):
        parts = parts[1:]  # drop the host name that ssh-keyscan prints first
    key = " ".join(parts[:2])
    if not _HOST_KEY.match(key):
        raise ValueError("not an SSH public host key; paste one line of `ssh-keyscan -t ed25519 <host>`")
    return key


# --- hosts -------------------------------------------------------------------------------------


class LambdaCandidate(Frozen):
    region: str
    instance_type: str

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        if v not in LAMBDA_REGIONS:
            raise ValueError(f"unknown Lambda region; expected one of {', '.join(LAMBDA_REGIONS)}")
        return v

    @field_validator("instance_type")
    @classmethod
    def _type(cls, v: str) -> str:
        if v not in LAMBDA_INSTANCE_TYPES:
            raise ValueError(f"unknown Lambda instance type; expected one of {', '.join(LAMBDA_INSTANCE_TYPES)}")
        return v


class LambdaHost(Frozen):
    # Tried in order; the next is used when Lambda answers insufficient-capacity.
    candidates: tuple[LambdaCandidate, ...] = Field(min_length=1)


class GcpHost(Frozen):
    project: str = Field(pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
    zone: str = Field(pattern=r"^[a-z]+-[a-z]+[0-9]-[a-z]$")
    machine_type: str = "a2-highgpu-1g"
    accelerator_type: str = "nvidia-tesla-a100"
    accelerator_count: int = Field(default=1, ge=1, le=8)
    disk_gb: int = Field(default=200, ge=50)
    image: str = "projects/ml-images/global/images/family/common-cu124-ubuntu-2204"

    @field_validator("accelerator_type")
    @classmethod
    def _accel(cls, v: str) -> str:
        if v not in GCP_ACCELERATORS:
            raise ValueError(f"unknown accelerator; expected one of {', '.join(GCP_ACCELERATORS)}")
        return v


class GpuSpec(Frozen):
    model: GpuModel
    count: int = Field(default=1, ge=1, le=8)

    @property
    def memory_gib(self) -> int:
        return GPUS[self.model].memory_gib


class HostConfig(Frozen):
    """One machine: a K3s server or agent, or the workstation that runs Docker."""

    name: str
    role: Literal["server", "agent", "workstation"]
    source: Literal["lambda", "gcp", "static"]
    ssh_user: str = Field(default="ubuntu", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    address: str | None = None  # static hosts only: the public address
    private_address: str | None = None
    host_key: str | None = None  # static hosts only: what `ssh-keyscan` prints
    lambda_: LambdaHost | None = None
    gcp: GcpHost | None = None
    gpu: GpuSpec | None = None  # static hosts; lambda/gcp hosts take it from the machine type
    # False on a GPU node that must also run CPU workloads (a single-node dev cluster): no taint.
    dedicated_gpu: bool = True
    labels: dict[str, str] = {}

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _DNS_LABEL.match(v):
            raise ValueError("host names are DNS labels: lowercase letters, digits and '-', at most 32")
        return v

    @field_validator("address", "private_address")
    @classmethod
    def _addr(cls, v: str | None) -> str | None:
        return None if v is None else _ip(v, "a host")

    @field_validator("host_key")
    @classmethod
    def _key(cls, v: str | None) -> str | None:
        return None if v is None else _host_key(v)

    @model_validator(mode="after")
    def _by_source(self) -> HostConfig:
        present = {"lambda": self.lambda_ is not None, "gcp": self.gcp is not None}
        for section, there in present.items():
            if there and self.source != section:
                raise ValueError(f"host {self.name!r}: a '{section}' section needs source: {section}")
        if self.source == "static":
            if self.address is None:
                raise ValueError(f"host {self.name!r}: static hosts need address")
            if self.host_key is None:
                raise ValueError(
                    f"host {self.name!r}: static hosts need hostKey (the line `ssh-keyscan -t ed25519 "
                    f"{self.address}` prints); connections without a pinned host key are refused"
                )
        else:
            if not present[self.source]:
                raise ValueError(f"host {self.name!r}: source {self.source} needs a '{self.source}' section")
            if self.address is not None or self.host_key is not None:
                raise ValueError(
                    f"host {self.name!r}: address and hostKey are only for static hosts; "
                    f"{self.source} hosts get both when they are created"
                )
            if self.gpu is not None:
                raise ValueError(f"host {self.name!r}: gpu comes from the {self.source} machine type; remove it")
        if self.role == "workstation" and self.source != "static":
            raise ValueError(f"host {self.name!r}: the workstation is an existing machine (source: static)")
        return self

    @property
    def gpu_spec(self) -> GpuSpec | None:
        """The GPUs this host has, wherever that fact comes from."""
        if self.lambda_ is not None:
            first = LAMBDA_INSTANCE_TYPES[self.lambda_.candidates[0].instance_type]
            return GpuSpec(model=first.gpu, count=first.gpu_count)
        if self.gcp is not None:
            return GpuSpec(model=GCP_ACCELERATORS[self.gcp.accelerator_type], count=self.gcp.accelerator_count)
        return self.gpu

    @property
    def is_k3s_node(self) -> bool:
        return self.role in ("server", "agent")


# --- legacy estate -----------------------------------------------------------------------------


class ComposeHost(Frozen):
    """The Docker Compose host on Lambda that runs the platform today. Adopted, never re-created."""

    address: str
    ssh_user: str = "ubuntu"
    host_key: str
    compose_dir: str = Field(default="/srv/platform", pattern=r"^/[A-Za-z0-9._/-]+$")
    # Where the data services answer on the Compose host; the backup scripts read them there.
    qdrant_url: str = Field(default="http://127.0.0.1:6333", pattern=r"^https?://[A-Za-z0-9.:\[\]-]+(:\d+)?/?$")
    redis_service: str = Field(default="redis", pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")
    postgres_service: str = Field(default="postgres", pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")
    postgres_user: str = Field(default="postgres", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    postgres_database: str = Field(default="platform", pattern=r"^[a-z_][a-z0-9_]{0,62}$")

    @field_validator("address")
    @classmethod
    def _addr(cls, v: str) -> str:
        return _ip(v, "the Compose host")

    @field_validator("host_key")
    @classmethod
    def _key(cls, v: str) -> str:
        return _host_key(v)


class GcpVm(Frozen):
    """The GCP VM that is retired in the last phase."""

    project: str = Field(pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
    zone: str = Field(pattern=r"^[a-z]+-[a-z]+[0-9]-[a-z]$")
    name: str = Field(pattern=r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
    machine_type: str = "e2-standard-4"
    # The boot disk snapshotted before the VM is stopped; GCP names it after the VM by default.
    boot_disk: str | None = Field(default=None, pattern=r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


class Backups(Frozen):
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    region: str = "us-east-1"
    # S3-compatible endpoint (R2, MinIO, GCS interop); None means AWS S3 itself.
    endpoint: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/.*)?$")
    retention_days: int = Field(default=90, ge=7, le=3650)
    gcs_bucket: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
    gcs_location: str = Field(default="US", pattern=r"^[A-Za-z0-9-]+$")
    # Fly keeps volume snapshots 1 to 60 days; p1 raises every volume's retention to this before
    # taking the on-demand snapshot (never lowers it).
    fly_snapshot_retention_days: int = Field(default=60, ge=1, le=60)


class LlamaConfig(Frozen):
    workstation_model: str = "llama-3.1-8b-instruct-q4_k_m"
    cluster_model: str = "llama-3.1-70b-instruct-q4_k_m"
    context_size: int = Field(default=8192, ge=512, le=131072)
    parallel: int = Field(default=2, ge=1, le=32)


class RouterConfig(Frozen):
    # Which requests may leave the premises when the local model fails or times out.
    cloud_fallback: bool = True
    cloud_model: str = "openai/gpt-4o-mini"
    local_timeout_seconds: int = Field(default=30, ge=1, le=600)


# --- the stack ---------------------------------------------------------------------------------


class StackConfig(Frozen):
    """Everything a stack says about its environment. The phase says what is switched on."""

    phase: str
    environment: Literal["dev", "prod"]
    k3s_version: str = versions.K3S_VERSION
    admin_cidrs: tuple[Cidr, ...] = Field(min_length=1)
    cluster_cidr: str = "10.42.0.0/16"
    service_cidr: str = "10.43.0.0/16"
    domain: str
    acme_email: str
    acme_server: Literal["staging", "production"] = "production"
    gpu_time_slicing_replicas: int = Field(default=1, ge=1, le=16)
    fly_org: str = "personal"
    fly_apps: tuple[str, ...] = Field(min_length=1)
    fly_allow_destroy: tuple[str, ...] = ()
    hosts: tuple[HostConfig, ...] = Field(min_length=1)
    compose_host: ComposeHost
    gcp_vm: GcpVm
    backups: Backups
    llama: LlamaConfig = LlamaConfig()
    router: RouterConfig = RouterConfig()

    @field_validator("phase")
    @classmethod
    def _phase(cls, v: str) -> str:
        ids = phase_ids()
        if v not in ids:
            raise ValueError(f"unknown phase; expected one of: {', '.join(ids)}")
        return v

    @field_validator("k3s_version")
    @classmethod
    def _k3s(cls, v: str) -> str:
        if not _K3S_RELEASE.match(v):
            raise ValueError("must be a pinned K3s release such as v1.35.5+k3s1, never a channel like 'stable'")
        return v

    @field_validator("admin_cidrs")
    @classmethod
    def _admin(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if any(ipaddress.ip_network(c).prefixlen == 0 for c in v):
            raise ValueError("0.0.0.0/0 opens SSH and the K3s API to the internet; list your admin networks")
        return v

    @field_validator("cluster_cidr", "service_cidr")
    @classmethod
    def _net(cls, v: str) -> str:
        return _cidr(v)

    @field_validator("domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        if not _DOMAIN.match(v):
            raise ValueError("not a DNS domain such as example.com")
        return v

    @field_validator("acme_email")
    @classmethod
    def _email(cls, v: str) -> str:
        if not _EMAIL.match(v):
            raise ValueError("not an e-mail address (Let's Encrypt sends expiry notices there)")
        return v

    @field_validator("fly_apps")
    @classmethod
    def _apps(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for app in v:
            if not re.match(r"^[a-z0-9][a-z0-9-]{1,62}$", app):
                raise ValueError(f"{app!r} is not a Fly app name")
        if len(set(v)) != len(v):
            raise ValueError("lists an app twice")
        return v

    @model_validator(mode="after")
    def _whole(self) -> StackConfig:
        nets = [ipaddress.ip_network(self.cluster_cidr), ipaddress.ip_network(self.service_cidr)]
        if nets[0].overlaps(nets[1]):
            raise ValueError(f"clusterCidr {self.cluster_cidr} overlaps serviceCidr {self.service_cidr}")
        names = [h.name for h in self.hosts]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"hosts: duplicate host name(s) {dupes}")
        addresses = [h.address for h in self.hosts if h.address]
        if len(set(addresses)) != len(addresses):
            raise ValueError("hosts: two static hosts share an address")
        servers = [h for h in self.hosts if h.role == "server"]
        if not servers:
            raise ValueError("hosts: at least one host needs role: server (the K3s control plane)")
        if len(servers) % 2 == 0:
            raise ValueError(
                f"hosts: {len(servers)} servers; embedded etcd needs an odd number (1, 3 or 5) to keep quorum"
            )
        if self.environment == "prod" and len(servers) < 3:
            raise ValueError("hosts: prod needs 3 servers for an HA control plane")
        unknown = sorted(set(self.fly_allow_destroy) - set(self.fly_apps))
        if unknown:
            raise ValueError(f"flyAllowDestroy names app(s) not in flyApps: {unknown}")
        return self

    @property
    def is_prod(self) -> bool:
        return self.environment == "prod"

    @property
    def k3s_nodes(self) -> tuple[HostConfig, ...]:
        return tuple(h for h in self.hosts if h.is_k3s_node)

    @property
    def workstation(self) -> HostConfig | None:
        return next((h for h in self.hosts if h.role == "workstation"), None)


# --- secrets -----------------------------------------------------------------------------------

# Secret keys: (key, required). Declared `secret: true` in Pulumi.yaml; read only through
# `require_secret` / `get_secret` so the value is an Output marked secret from the first moment.
SECRET_KEYS: tuple[tuple[str, bool], ...] = (
    ("lambdaApiKey", True),
    ("flyApiToken", True),
    ("cloudLlmApiKey", False),
    ("backupAccessKeyId", False),
    ("backupSecretAccessKey", False),
    # Login key of the legacy Compose host (its host key is pinned in composeHost.hostKey); needed
    # from the phase that dumps its data (backups.composeData) on.
    ("composeSshPrivateKey", False),
)


@dataclass(frozen=True)
class Secrets:
    lambda_api_key: pulumi.Output[str]
    fly_api_token: pulumi.Output[str]
    cloud_llm_api_key: pulumi.Output[str] | None
    backup_access_key_id: pulumi.Output[str] | None
    backup_secret_access_key: pulumi.Output[str] | None
    compose_ssh_private_key: pulumi.Output[str] | None = None


@dataclass(frozen=True)
class Loaded:
    config: StackConfig
    secrets: Secrets


def _json_or_text(value: Any) -> Any:
    """Pulumi hands structured config to the program as JSON text; scalars stay text."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _coerce_scalars(raw: dict[str, Any]) -> dict[str, Any]:
    # The Pulumi engine passes every scalar as a string; integers declared in Pulumi.yaml arrive
    # as "4". Only the declared integer keys are converted, so a wrong type still fails clearly.
    out = dict(raw)
    for key in ("gpuTimeSlicingReplicas",):
        value = out.get(key)
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
            out[key] = int(value)
    return out


def parse(raw: Mapping[str, Any]) -> StackConfig:
    """Validate plain (non-secret) config, keyed without the namespace. Raises ConfigError."""
    secret_names = {name for name, _ in SECRET_KEYS}
    plain = {k: _json_or_text(v) for k, v in raw.items() if k not in secret_names}
    try:
        return StackConfig.model_validate(_coerce_scalars(plain))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, prefix=f"{NAMESPACE}:")) from None


def _stack_config_keys() -> dict[str, Any]:
    # pulumi.Config can only fetch a key it is asked for; to reject typos we need the whole bag.
    # The language host fills `CONFIG` from the engine; PULUMI_CONFIG is the fallback it reads too.
    from pulumi.runtime import config as runtime_config

    bag: dict[str, Any] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    prefix = f"{NAMESPACE}:"
    return {key[len(prefix) :]: value for key, value in bag.items() if key.startswith(prefix)}


def load() -> Loaded:
    """Read and validate this stack's config inside a Pulumi program, before any resource."""
    cfg = parse(_stack_config_keys())
    pc = pulumi.Config(NAMESPACE)
    missing = [name for name, required in SECRET_KEYS if required and pc.get(name) is None]
    if missing:
        keys = ", ".join(f"{NAMESPACE}:{m}" for m in missing)
        raise ConfigError(f"{keys}: required secret is missing; set it with `pulumi config set --secret <key>`")
    secrets = Secrets(
        lambda_api_key=pc.require_secret("lambdaApiKey"),
        fly_api_token=pc.require_secret("flyApiToken"),
        cloud_llm_api_key=pc.get_secret("cloudLlmApiKey"),
        backup_access_key_id=pc.get_secret("backupAccessKeyId"),
        backup_secret_access_key=pc.get_secret("backupSecretAccessKey"),
        compose_ssh_private_key=pc.get_secret("composeSshPrivateKey"),
    )
    return Loaded(config=cfg, secrets=secrets)
