"""Migration phases as data.

`stacks/<phase-id>.yaml` holds one file per phase. Sorting the file names gives the order. Each file
declares only what its phase changes relative to the one before (`changes`), plus its exit
criteria. The state of phase N is the deep merge of the `changes` of phases 0..N over
`PhaseState()`'s defaults (everything off, the legacy estate running).

This module is pure: it reads YAML and builds frozen models. It never touches Pulumi, so the
offline tools, the policy pack and the tests share it without a runtime.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from components.errors import ConfigError, format_validation_error
from components.model import Frozen

STACKS_DIR = Path(__file__).resolve().parent.parent / "stacks"

# Machine checks a phase may name as exit criteria. `migrate/checks.py` implements each one;
# a test keeps the two lists equal.
CHECK_NAMES: frozenset[str] = frozenset(
    {
        "backups-verified",  # every backup object re-read and its SHA-256 matches the record
        "fly-apps-running",  # every legacy Fly app has its machines started
        "fly-machines-stopped",  # every machine of every legacy Fly app is stopped
        "nodes-ready-gpu",  # every K3s node Ready; GPU nodes report nvidia.com/gpu allocatable
        "nvidia-smi-smoke",  # a pod with nvidia.com/gpu: 1 on the nvidia runtime runs nvidia-smi
        "restore-jobs-complete",  # every data restore Job in K3s has completed
        "public-routes-200",  # every public hostname answers 200 over TLS
        "llama-health",  # the llama server(s) answer /health with ok
        "fly-apps-destroyed",  # the legacy Fly apps no longer exist
        "llama-bench-targets",  # the llama server(s) meet the latency and tokens/s targets under load
        "router-local-share",  # the share of router requests served by local model groups
    }
)
# The thresholds a check takes from its phase file (exitCriteria.targets.<check>); migrate/checks.py
# reads them from the `exitTargets` stack output.
CHECK_TARGETS: dict[str, frozenset[str]] = {
    "llama-bench-targets": frozenset(
        {"maxTokens", "requests", "clients", "ttftP95Seconds", "latencyP95Seconds", "decodeTokensPerSecond"}
    ),
    "router-local-share": frozenset({"minShare", "windowSeconds", "minRequests"}),
}

FlyAppsState = Literal["running", "stopped", "destroyed"]


class BackupsState(Frozen):
    bucket: bool = False  # the backup bucket exists (adopted or created)
    compose_data: bool = False  # Qdrant/Redis/Postgres dumps from the Compose host, verified


class LegacyState(Frozen):
    fly_apps: FlyAppsState = "running"
    compose: Literal["running", "stopped"] = "running"
    gcp_vm: Literal["running", "retired"] = "running"


class FlyState(Frozen):
    snapshots: bool = False  # volume snapshots taken and exported to the bucket, verified


class K3sState(Frozen):
    gpu_hosts: bool = False
    cluster: bool = False
    device_plugin: bool = False
    time_slicing: bool = False  # GPU sharing; the replica count is stack config


class PlatformState(Frozen):
    retain_storage: bool = False
    cert_manager: bool = False
    monitoring: bool = False
    slo_alerts: bool = False
    services_stateless: bool = False
    services_stateful: bool = False
    restore_from_backup: bool = False
    autoscaling: bool = False


class TrafficState(Frozen):
    # Percentage of public traffic sent to K3s; the rest goes to the legacy Compose host.
    k3s_weight: int = Field(default=0, ge=0, le=100)


class LlamaState(Frozen):
    workstation: bool = False  # 8B on the RTX 4090 workstation through Docker
    cluster: bool = False  # the big model on the K3s GPU nodes
    router: bool = False  # OpenAI-compatible router, local first, cloud fallback


class PhaseState(Frozen):
    """What a phase turns on. Every field defaults to the pre-migration estate."""

    backups: BackupsState = BackupsState()
    legacy: LegacyState = LegacyState()
    fly: FlyState = FlyState()
    k3s: K3sState = K3sState()
    platform: PlatformState = PlatformState()
    traffic: TrafficState = TrafficState()
    llama: LlamaState = LlamaState()

    @model_validator(mode="after")
    def _consistent(self) -> PhaseState:
        # Each rule guards an ordering the migration depends on; a phase file that breaks one is
        # a mistake in the data, caught before any resource exists.
        rules: list[tuple[bool, str]] = [
            (self.fly.snapshots and not self.backups.bucket, "fly.snapshots needs backups.bucket"),
            (
                self.legacy.fly_apps != "running" and not self.fly.snapshots,
                f"legacy.flyApps={self.legacy.fly_apps} needs fly.snapshots (verified backups first)",
            ),
            (self.k3s.cluster and not self.k3s.gpu_hosts, "k3s.cluster needs k3s.gpuHosts"),
            (self.k3s.device_plugin and not self.k3s.cluster, "k3s.devicePlugin needs k3s.cluster"),
            (self.k3s.time_slicing and not self.k3s.device_plugin, "k3s.timeSlicing needs k3s.devicePlugin"),
            (
                any(
                    [
                        self.platform.retain_storage,
                        self.platform.cert_manager,
                        self.platform.monitoring,
                        self.platform.services_stateless,
                    ]
                )
                and not self.k3s.cluster,
                "platform components need k3s.cluster",
            ),
            (self.platform.slo_alerts and not self.platform.monitoring, "platform.sloAlerts needs platform.monitoring"),
            (
                self.platform.services_stateful
                and not (self.platform.retain_storage and self.platform.services_stateless),
                "platform.servicesStateful needs platform.retainStorage and platform.servicesStateless",
            ),
            (
                self.platform.restore_from_backup
                and not (self.platform.services_stateful and self.backups.compose_data),
                "platform.restoreFromBackup needs platform.servicesStateful and backups.composeData",
            ),
            (
                self.traffic.k3s_weight > 0 and not (self.platform.services_stateless and self.platform.cert_manager),
                "traffic.k3sWeight > 0 needs platform.servicesStateless and platform.certManager",
            ),
            (self.llama.cluster and not self.k3s.device_plugin, "llama.cluster needs k3s.devicePlugin"),
            (self.llama.router and not self.k3s.cluster, "llama.router needs k3s.cluster"),
            (
                self.legacy.compose == "stopped"
                and not (self.traffic.k3s_weight == 100 and self.platform.restore_from_backup),
                "legacy.compose=stopped needs traffic.k3sWeight=100 and platform.restoreFromBackup",
            ),
            (
                self.legacy.gcp_vm == "retired" and not self.backups.bucket,
                "legacy.gcpVm=retired needs backups.bucket (its disk is snapshotted first)",
            ),
        ]
        broken = [message for failed, message in rules if failed]
        if broken:
            raise ValueError("; ".join(broken))
        return self


class ExitCriteria(Frozen):
    checklist: tuple[str, ...] = Field(min_length=1)
    checks: tuple[str, ...] = ()
    # Per check, its thresholds: every check in CHECK_TARGETS that the phase names has all of them.
    targets: dict[str, dict[str, float]] = {}

    @model_validator(mode="after")
    def _known_checks(self) -> ExitCriteria:
        unknown = sorted(set(self.checks) - CHECK_NAMES)
        if unknown:
            raise ValueError(f"unknown machine check(s) {unknown}; known: {sorted(CHECK_NAMES)}")
        stray = sorted(set(self.targets) - set(self.checks))
        if stray:
            raise ValueError(f"targets for check(s) {stray} the phase does not run")
        for check in self.checks:
            want = CHECK_TARGETS.get(check, frozenset())
            have = set(self.targets.get(check, {}))
            if have != want:
                missing, extra = sorted(want - have), sorted(have - want)
                raise ValueError(f"targets.{check}: missing {missing}, unknown {extra}; it takes {sorted(want)}")
        return self


class PhaseFile(Frozen):
    """One `stacks/<id>.yaml` file, as written."""

    id: str = Field(pattern=r"^p[0-9][a-z0-9]*-[a-z0-9-]+$")
    title: str
    summary: str
    changes: dict[str, Any] = {}
    # Steps of this phase that cannot be undone; rolling back past this phase is refused.
    irreversible: tuple[str, ...] = ()
    rollback: str = ""  # what rolling back from this phase does, for the runbook
    exit_criteria: ExitCriteria


class Phase(Frozen):
    """A phase resolved against the ones before it."""

    index: int
    id: str
    title: str
    summary: str
    changes: dict[str, Any]
    irreversible: tuple[str, ...]
    rollback: str
    exit_criteria: ExitCriteria
    state: PhaseState
    path: Path


def deep_merge(base: Mapping[str, Any], delta: Mapping[str, Any]) -> dict[str, Any]:
    """`delta` over `base`: mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in delta.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read phase file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})".replace("\n", " ")) from None


@functools.lru_cache(maxsize=8)
def load_phases(stacks_dir: Path = STACKS_DIR) -> tuple[Phase, ...]:
    """Every phase in `stacks_dir`, in file-name order, each merged over the ones before."""
    files = sorted(stacks_dir.glob("p*.yaml"))
    if not files:
        raise ConfigError(f"{stacks_dir}: no phase files (expected stacks/p0-*.yaml ...)")
    phases: list[Phase] = []
    merged: dict[str, Any] = {}
    for index, path in enumerate(files):
        raw = _read_yaml(path)
        try:
            spec = PhaseFile.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, prefix=f"{path.name}: ")) from None
        if spec.id != path.stem:
            raise ConfigError(f"{path.name}: id {spec.id!r} must equal the file name {path.stem!r}")
        merged = deep_merge(merged, spec.changes)
        try:
            state = PhaseState.model_validate(merged)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, prefix=f"{path.name}: changes.")) from None
        phases.append(
            Phase(
                index=index,
                id=spec.id,
                title=spec.title,
                summary=spec.summary,
                changes=spec.changes,
                irreversible=spec.irreversible,
                rollback=spec.rollback,
                exit_criteria=spec.exit_criteria,
                state=state,
                path=path,
            )
        )
    return tuple(phases)


def phase_ids(stacks_dir: Path = STACKS_DIR) -> tuple[str, ...]:
    return tuple(phase.id for phase in load_phases(stacks_dir))


def resolve(phase_id: str, stacks_dir: Path = STACKS_DIR) -> Phase:
    """The phase called `phase_id`, or a ConfigError that lists the ones that exist."""
    for phase in load_phases(stacks_dir):
        if phase.id == phase_id:
            return phase
    allowed = ", ".join(phase_ids(stacks_dir))
    raise ConfigError(f"gpu-platform:phase: unknown phase {phase_id!r}; expected one of: {allowed}")


def irreversible_between(from_id: str, to_id: str, stacks_dir: Path = STACKS_DIR) -> list[tuple[str, str]]:
    """(phase, step) pairs that a move from `from_id` back to `to_id` would have to undo."""
    start, end = resolve(from_id, stacks_dir), resolve(to_id, stacks_dir)
    if end.index >= start.index:
        return []
    return [
        (phase.id, step)
        for phase in load_phases(stacks_dir)[end.index + 1 : start.index + 1]
        for step in phase.irreversible
    ]
