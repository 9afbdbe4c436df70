"""The typed stack configuration: every `gpu-platform:*` key as a frozen pydantic model.

A mistake raises `ConfigError` with one line per problem, naming the key, the bad value and what is
allowed. Secrets never enter these models: components/config/load.py reads them with
`require_secret` / `get_secret` into `Secrets`, and they stay `Output`s end to end. Checks that need
the whole model and another layer's arithmetic (the llama sizing) run in the loader, after the model
is built, so this module imports nothing above the catalog.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from components.catalog import versions
from components.catalog.gguf import MODELS
from components.catalog.gpus import GCP_ACCELERATORS, LAMBDA_INSTANCE_TYPES, LAMBDA_REGIONS, GpuSpec
from components.catalog.services import own_image_names
from components.config.phases import phase_ids
from components.core.model import Frozen

NAMESPACE = "gpu-platform"

_DNS_LABEL = re.compile(r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,63}$")
# What `ssh-keyscan` prints for a host key: "<type> <base64>", optionally preceded by the host.
_HOST_KEY = re.compile(r"^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/]{40,}={0,3}$")
_K3S_RELEASE = re.compile(r"^v1\.\d+\.\d+\+k3s\d+$")
# GCP machine types that carry the catalog's GPUs, and which accelerator each family has.
_GCP_GPU_MACHINE = re.compile(r"^(a2-highgpu|a2-ultragpu|a3-highgpu)-(\d)g$")
_GCP_FAMILY_ACCELERATOR = {
    "a2-highgpu": "nvidia-tesla-a100",
    "a2-ultragpu": "nvidia-a100-80gb",
    "a3-highgpu": "nvidia-h100-80gb",
}
# Lambda regions where firewall rules and rulesets do not apply (spec note on PUT /firewall-rules).
LAMBDA_REGIONS_WITHOUT_FIREWALL = frozenset({"us-south-1"})


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
        if v in LAMBDA_REGIONS_WITHOUT_FIREWALL:
            # The spec (PUT /firewall-rules): "Firewall rules do not apply to the us-south-1 region".
            # A node there would expose SSH, the K3s API and the kubelet to the whole internet.
            raise ValueError(f"Lambda firewall rules do not apply in {v}; pick a region where they do")
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
    # Lambda machine image family; None is Lambda's default (the latest Lambda Stack, with drivers).
    image_family: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")

    @field_validator("candidates")
    @classmethod
    def _distinct(cls, v: tuple[LambdaCandidate, ...]) -> tuple[LambdaCandidate, ...]:
        pairs = [(c.region, c.instance_type) for c in v]
        if len(set(pairs)) != len(pairs):
            raise ValueError("lists one region/instanceType pair twice")
        return v


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

    @model_validator(mode="after")
    def _machine_matches_gpu(self) -> GcpHost:
        # A100 and H100 come only with the accelerator-optimized A2/A3 machine types, which carry a
        # fixed GPU count: a2-highgpu-2g has exactly two A100 40GB. Anything else fails at create.
        m = _GCP_GPU_MACHINE.match(self.machine_type)
        if m is None:
            raise ValueError(
                f"machineType {self.machine_type!r} carries no A100/H100; use an accelerator-optimized type such "
                "as a2-highgpu-1g (A100 40GB), a2-ultragpu-1g (A100 80GB) or a3-highgpu-1g (H100 80GB)"
            )
        family, count = m.group(1), int(m.group(2))
        accel = _GCP_FAMILY_ACCELERATOR[family]
        if (self.accelerator_type, self.accelerator_count) != (accel, count):
            raise ValueError(
                f"machineType {self.machine_type} comes with {count} x {accel}; set acceleratorType: {accel} "
                f"and acceleratorCount: {count} (got {self.accelerator_type} x {self.accelerator_count})"
            )
        return self


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
    # Host RAM, when known (static hosts): the llama sizing refuses CPU-side layers that need more.
    memory_gib: int | None = Field(default=None, ge=1, le=65536)
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


EVERY_HOURS = (1, 2, 3, 4, 6, 8, 12, 24)


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
    # The scheduled backups of the K3s stores (components/platform/scheduled_backups.py): one run
    # every this many hours (a divisor of 24, so the runs are evenly spaced across midnight), each
    # Job stopped after jobDeadlineMinutes; their objects under k3s/ expire after k3sRetentionDays.
    every_hours: int = 24
    job_deadline_minutes: int = Field(default=90, ge=10, le=1440)
    k3s_retention_days: int = Field(default=35, ge=1, le=3650)

    @field_validator("every_hours")
    @classmethod
    def _every_hours(cls, v: int) -> int:
        if v not in EVERY_HOURS:
            raise ValueError(f"must be one of {', '.join(map(str, EVERY_HOURS))} (hours that divide a day)")
        return v


class LlamaConfig(Frozen):
    """The local llama servers (components/llm/llama.py); models are keys of components/catalog/gguf.py."""

    workstation_model: str = "llama-3.1-8b-instruct-q4_k_m"
    cluster_model: str = "llama-3.1-70b-instruct-q4_k_m"
    # Tokens of context per request; llama-server's -c is this times `parallel`.
    context_size: int = Field(default=8192, ge=512, le=131072)
    # Per-server overrides of context_size (a small dev model has a short training context).
    cluster_context_size: int | None = Field(default=None, ge=512, le=131072)
    workstation_context_size: int | None = Field(default=None, ge=512, le=131072)
    parallel: int = Field(default=2, ge=1, le=32)
    # Partial GPU offload runs at CPU speed; refuse it unless a stack says it accepts that.
    require_full_offload: bool = True
    # Replaces a catalog checksum, e.g. after an upstream re-upload you verified yourself.
    model_sha256: dict[str, str] = {}
    # Where the workstation container publishes its port: loopback by default, a LAN address to
    # share it. The server always requires its API key.
    workstation_listen: str = "127.0.0.1"
    workstation_port: int = Field(default=8080, ge=1024, le=65535)

    @field_validator("workstation_model", "cluster_model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        if v not in MODELS:
            raise ValueError(f"unknown model; the catalog (components/catalog/gguf.py) has {', '.join(sorted(MODELS))}")
        return v

    @field_validator("model_sha256")
    @classmethod
    def _sha(cls, v: dict[str, str]) -> dict[str, str]:
        for name, digest in v.items():
            if name not in MODELS:
                raise ValueError(f"{name!r} is not a catalog model; expected one of {', '.join(sorted(MODELS))}")
            if not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise ValueError(f"{name}: not a SHA-256 (64 lowercase hex digits, what `sha256sum` prints)")
        return v

    @field_validator("workstation_listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        listen = ipaddress.ip_address(_ip(v, "llama.workstationListen"))
        # The cluster's Prometheus scrapes a non-loopback address through Endpoints, which the API
        # server refuses for these (components/llm/llama.py).
        if listen.is_link_local or listen.is_multicast:
            raise ValueError(
                "a link-local or multicast address cannot be published to; use loopback (127.0.0.1, the "
                "default), the workstation's LAN address, or 0.0.0.0"
            )
        return str(listen)

    @property
    def cluster_context(self) -> int:
        return self.cluster_context_size or self.context_size

    @property
    def workstation_context(self) -> int:
        return self.workstation_context_size or self.context_size


class RouterConfig(Frozen):
    """The OpenAI-compatible router (components/llm/router.py): local model first, cloud on failure."""

    # Which requests may leave the premises when the local model fails or times out: none unless
    # this is on, and then only those sent to an alias in `fallback_aliases`.
    cloud_fallback: bool = False
    cloud_model: str = Field(default="openai/gpt-4o-mini", pattern=r"^[a-z0-9_-]+/[A-Za-z0-9._:/-]+$")
    local_timeout_seconds: int = Field(default=30, ge=1, le=600)
    # Model names clients may ask the router for; each is served by the cluster llama server.
    local_aliases: tuple[str, ...] = Field(default=("local", "local-private"), min_length=1)
    # The subset of local_aliases whose requests may go to the cloud model on timeouts and 5xx.
    fallback_aliases: tuple[str, ...] = ("local",)
    replicas: int = Field(default=2, ge=1, le=10)

    @field_validator("local_aliases", "fallback_aliases")
    @classmethod
    def _aliases(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for alias in v:
            if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,62}", alias):
                raise ValueError(f"{alias!r} is not a model alias (lowercase letters, digits, '.', '_', '-')")
        if len(set(v)) != len(v):
            raise ValueError("lists an alias twice")
        return v

    @model_validator(mode="after")
    def _subset(self) -> RouterConfig:
        unknown = sorted(set(self.fallback_aliases) - set(self.local_aliases))
        if unknown:
            raise ValueError(f"fallbackAliases {unknown} are not in localAliases {list(self.local_aliases)}")
        return self


class ServiceImages(Frozen):
    """Where the platform's own service images come from (components/catalog/services.py, `image` names).

    Each image is `<registry>/<name>:<tag>`; `tags` overrides the tag of single images (a hotfix
    of one service) by name. The default registry is a placeholder no cluster can pull from: dev
    plans with it (and warns), a prod stack must name its registry (checked in `parse`).
    """

    registry: str = Field(
        default=versions.PLATFORM_IMAGE_REGISTRY,
        # host[:port][/path], lowercase as OCI references require; no tag or digest here.
        pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*$",
    )
    tag: str = versions.PLATFORM_RELEASE
    tags: dict[str, str] = {}
    # {image name: "sha256:<hex>"}: what each image's tag resolved to when the release was cut
    # (`crane digest <registry>/<name>:<tag>`), so a re-pushed tag cannot change what runs. An image
    # without one runs by tag only if its registry is on the reviewed pending list (versions.py).
    digests: dict[str, str] = {}

    @field_validator("tag")
    @classmethod
    def _tag(cls, v: str) -> str:
        return _image_tag(v)

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: dict[str, str]) -> dict[str, str]:
        for tag in _own_images(v).values():
            _image_tag(tag)
        return v

    @field_validator("digests")
    @classmethod
    def _digests(cls, v: dict[str, str]) -> dict[str, str]:
        for name, digest in _own_images(v).items():
            if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
                raise ValueError(f"{name}: {digest!r} is not a digest (sha256: and 64 lowercase hex digits)")
        return v

    @property
    def is_placeholder(self) -> bool:
        return self.registry == versions.PLATFORM_IMAGE_REGISTRY

    def reference(self, name: str) -> str:
        ref = f"{self.registry}/{name}:{self.tags.get(name, self.tag)}"
        digest = self.digests.get(name)
        return f"{ref}@{digest}" if digest else ref


class FlyCost(Frozen):
    """What each legacy Fly app runs, for the estimate: the recorded plan adopts the apps by name only."""

    machines_per_app: int = Field(default=1, ge=0, le=100)
    machine_size: str = Field(default="shared-cpu-1x-256mb", pattern=r"^(shared-cpu|performance)-\d+x-\d+(mb|gb)$")
    region: str = Field(default="iad", pattern=r"^[a-z]{3}$")
    volume_gb: float = Field(default=1, ge=0, le=500)  # per app
    rootfs_gb: float = Field(default=1, ge=0, le=100)  # per machine, billed while it is stopped


class LegacyVmDisk(Frozen):
    """The adopted GCP VM's boot disk: the program references it by name, so its size is stated here."""

    size_gb: float = Field(default=10, ge=0, le=65536)
    type: Literal["pd-standard", "pd-balanced", "pd-ssd"] = "pd-standard"


class LlmTraffic(Frozen):
    """The platform's LLM requests, for the cloud model's line of the estimate."""

    requests_per_day: float = Field(default=0, ge=0, le=1e9)
    input_tokens: int = Field(default=500, ge=0, le=2_000_000)  # per request
    output_tokens: int = Field(default=200, ge=0, le=2_000_000)  # per request
    # The share of requests the local models answer once the router runs (p3 on); the source
    # plans' target is the router-local-share check's threshold.
    local_share: float = Field(default=0.9, ge=0, le=1)


class CostConfig(Frozen):
    """`gpu-platform:cost`: the assumptions the monthly estimate multiplies catalog prices by
    (policy/costing.py; `python -m migrate cost`). Estimates, not invoices: see the README."""

    hours_per_month: float = Field(default=730, gt=0, le=744)  # 8760 h / 12
    backup_storage_gb: float = Field(default=0, ge=0, le=1e7)
    # The legacy Compose host runs on Lambda but is adopted by address: its instance type prices it.
    compose_host_instance_type: str | None = None
    fly: FlyCost = FlyCost()
    legacy_vm_disk: LegacyVmDisk = LegacyVmDisk()
    llm: LlmTraffic = LlmTraffic()
    # A plan warns when components/catalog/prices.json was last updated longer ago than this.
    catalog_max_age_days: int = Field(default=90, ge=1, le=3650)

    @field_validator("compose_host_instance_type")
    @classmethod
    def _compose_type(cls, v: str | None) -> str | None:
        if v is not None and v not in LAMBDA_INSTANCE_TYPES:
            raise ValueError(
                f"unknown Lambda instance type; expected one of: {', '.join(sorted(LAMBDA_INSTANCE_TYPES))}"
            )
        return v


class Budget(Frozen):
    """`gpu-platform:budget`: the monthly run rate the policy pack's `budget` rule holds a phase to."""

    monthly_usd: float | None = Field(default=None, gt=0, le=1e9)


def _own_images(by_name: dict[str, str]) -> dict[str, str]:
    """`by_name` when every key names one of the platform's own images."""
    known = own_image_names()
    for name in by_name:
        if name not in known:
            raise ValueError(f"{name!r} is not one of the platform's images; expected one of {', '.join(known)}")
    return by_name


def _image_tag(v: str) -> str:
    # OCI tag grammar; `latest` (or any tag that moves) would make two pods of one Deployment differ.
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", v):
        raise ValueError(f"{v!r} is not an image tag (letters, digits, '_', '.', '-'; at most 128)")
    if v == "latest":
        raise ValueError("'latest' moves; pin the release tag the images were built with")
    return v


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
    service_images: ServiceImages = ServiceImages()
    cost: CostConfig = CostConfig()
    budget: Budget = Budget()

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

    @model_validator(mode="after")
    def _gpu_host_networks(self) -> StackConfig:
        # Lambda firewall rules take IPv4 source networks only; an IPv6 admin network could not be
        # let in, and silently dropping it would lock its admins out.
        if any(h.source == "lambda" for h in self.hosts):
            v6 = [c for c in self.admin_cidrs if ipaddress.ip_network(c).version == 6]
            if v6:
                raise ValueError(f"adminCidrs {v6}: Lambda firewall rulesets take IPv4 networks only")
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
