"""Migration phases as data.

`stacks/<phase-id>.yaml` holds one file per phase. Sorting the file names gives the order. Each file
declares only what its phase changes relative to the one before (`changes`), plus its exit
criteria. The state of phase N is the deep merge of the `changes` of phases 0..N over
`PhaseState()`'s defaults (everything off, the legacy estate running).

This module is pure: it reads YAML and builds frozen models. It never touches Pulumi, so the
offline tools, the policy pack and the tests share it without a runtime.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from components.core.errors import ConfigError, format_validation_error
from components.core.model import Frozen

STACKS_DIR = Path(__file__).resolve().parents[2] / "stacks"

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
        "routes-slo",  # per route, K3s's p95 and error ratio in Prometheus within thresholds, vs legacy
        "load-test",  # a bounded load test of the public hostnames meets the latency and error targets
        "llama-bench-targets",  # the llama server(s) meet the latency and tokens/s targets under load
        "router-local-share",  # the share of router requests served by local model groups
        "cost-reduction",  # the phase's estimated monthly run rate against the baseline phase's (issue 24)
    }
)

# A PromQL range: a whole number of seconds, minutes, hours or days.
_PROMQL_RANGE = r"^[1-9][0-9]*[smhd]$"
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def range_seconds(value: str) -> int:
    """A phase file's range with one unit (`26h`, `90m`) in seconds: for comparing with a schedule, and in
    rules, since Prometheus 2.x has no duration literals in expressions."""
    if re.fullmatch(_PROMQL_RANGE, value) is None:
        raise ConfigError(f"{value!r} is not a duration like 26h or 90m")
    return int(value[:-1]) * _UNIT_SECONDS[value[-1]]


class RoutesSloThresholds(Frozen):
    """`exitCriteria.thresholds.routes-slo`: what K3s must show in Prometheus, per public route."""

    window: str = Field(default="1h", pattern=_PROMQL_RANGE)  # how far back Prometheus is asked
    max_p95_seconds: float = Field(default=2.0, gt=0, le=60)
    max_error_ratio: float = Field(default=0.01, ge=0, le=1)  # 5xx answers / all answers
    # Compared with legacy where legacy served at least `min_requests` in the window:
    max_p95_vs_legacy: float = Field(default=1.25, ge=1, le=10)  # K3s p95 <= this x legacy p95
    max_error_ratio_over_legacy: float = Field(default=0.005, ge=0, le=1)  # K3s ratio <= legacy's + this
    # Fewer K3s requests than this on a route in the window is not evidence: the route fails.
    min_requests: int = Field(default=100, ge=1, le=10_000_000)


# Hard ceilings of the load test, whatever a phase file asks for (migrate/loadtest.py enforces them too).
LOAD_TEST_MAX_USERS = 1000
LOAD_TEST_MAX_SECONDS = 600
LOAD_TEST_MAX_REQUESTS = 200_000


class LoadTestThresholds(Frozen):
    """`exitCriteria.thresholds.load-test`: the load, its bounds and the targets it must meet."""

    users: int = Field(default=100, ge=1, le=LOAD_TEST_MAX_USERS)
    spawn_rate: float = Field(default=20, gt=0, le=LOAD_TEST_MAX_USERS)  # users started per second
    duration_seconds: float = Field(default=60, gt=0, le=LOAD_TEST_MAX_SECONDS)
    max_requests: int = Field(default=20_000, ge=1, le=LOAD_TEST_MAX_REQUESTS)  # the request budget
    think_seconds: float = Field(default=1.0, ge=0, le=60)  # each user's pause between two requests
    # Paths requested on every public hostname; paths only, so the test never leaves those hosts.
    paths: tuple[str, ...] = Field(default=("/",), min_length=1)
    max_p95_seconds: float = Field(default=2.0, gt=0, le=60)
    max_error_ratio: float = Field(default=0.01, ge=0, le=1)

    @model_validator(mode="after")
    def _paths_stay_on_the_host(self) -> LoadTestThresholds:
        bad = [p for p in self.paths if not p.startswith("/") or p.startswith("//") or any(c in p for c in " \\#")]
        if bad:
            raise ValueError(f"paths must be absolute paths on the public hostnames (/...), not {bad}")
        return self


class LlamaBenchThresholds(Frozen):
    """`exitCriteria.thresholds.llama-bench-targets`: the benchmark's load and the serving targets
    each llama server must meet (benchmarks/llama_bench.py runs it)."""

    max_tokens: int = Field(default=100, ge=1, le=4096)  # tokens asked for per answer
    requests: int = Field(default=16, ge=1, le=1000)
    clients: int = Field(default=4, ge=1, le=64)  # requests in flight at once
    ttft_p95_seconds: float = Field(default=1.0, gt=0, le=60)  # time to the first token, p95
    latency_p95_seconds: float = Field(default=5.0, gt=0, le=600)  # a whole answer, p95
    decode_tokens_per_second: float = Field(default=40, ge=0, le=100_000)  # per request, p50
    # With monitoring, the decode rate Prometheus recorded over this range must meet the target too:
    # the series the local-brain dashboard and the LlamaDecodeRateLow alert watch afterwards.
    window: str = Field(default="5m", pattern=_PROMQL_RANGE)


class RouterLocalShareThresholds(Frozen):
    """`exitCriteria.thresholds.router-local-share`: the share of the router's answers its local
    model groups must serve, counted from LiteLLM's Prometheus counters over a window: the window
    just past in the cluster's Prometheus where the stack has monitoring, else read from the router
    at the window's start and end."""

    min_share: float = Field(default=0.9, ge=0, le=1)
    # Counters are read at the start and the end of the window; 0 counts since the router started.
    # The check refuses a window longer than its own deadline.
    window_seconds: float = Field(default=240, ge=0, le=3600)
    min_requests: int = Field(default=20, ge=1, le=10_000_000)  # fewer in the window is not evidence


class CostReductionThresholds(Frozen):
    """`exitCriteria.thresholds.cost-reduction`: how much cheaper per month than the baseline phase
    the phase's estimate must be (policy/costing.py prices both from the same stack file)."""

    min_reduction: float = Field(default=0.27, ge=0, le=1)  # 0.27: 27% less than the baseline
    baseline_phase: str = Field(default="p0-baseline", pattern=r"^p[0-9][a-z0-9]*-[a-z0-9-]+$")


class CheckThresholds(Frozen):
    """`exitCriteria.thresholds`: one entry per check that takes thresholds, keyed by the check's name."""

    routes_slo: RoutesSloThresholds | None = Field(default=None, alias="routes-slo")
    load_test: LoadTestThresholds | None = Field(default=None, alias="load-test")
    llama_bench_targets: LlamaBenchThresholds | None = Field(default=None, alias="llama-bench-targets")
    router_local_share: RouterLocalShareThresholds | None = Field(default=None, alias="router-local-share")
    cost_reduction: CostReductionThresholds | None = Field(default=None, alias="cost-reduction")


# Check name -> the model its thresholds follow (a test keeps this equal to CheckThresholds' fields).
CHECK_THRESHOLDS: dict[str, type[Frozen]] = {
    "routes-slo": RoutesSloThresholds,
    "load-test": LoadTestThresholds,
    "llama-bench-targets": LlamaBenchThresholds,
    "router-local-share": RouterLocalShareThresholds,
    "cost-reduction": CostReductionThresholds,
}


class AlertSettings(Frozen):
    """`alerts` in a phase file: how the alert rules (components/observability/alerts.py) judge what
    they watch. Merged over the earlier phases' like `changes`, so a setting holds from the phase
    that writes it on. The targets the rules compare with are the exit criteria's in force
    (`alert_thresholds`): the decode rate and the local share of the last phase that names
    llama-bench-targets / router-local-share, the routes' limits of the last that names routes-slo.
    """

    # How long a target must be missed before its alert fires (the rule's `for`).
    sustained: str = Field(default="15m", pattern=_PROMQL_RANGE)
    # The range of the rate()s the decode, share and error rules average over.
    rate_window: str = Field(default="10m", pattern=_PROMQL_RANGE)
    # How long a source's series may be missing before its absent() alert fires. The router's
    # counters exist only once it has answered; a quieter router needs a longer setting.
    absent_for: str = Field(default="30m", pattern=_PROMQL_RANGE)
    # Hottest a GPU may run (DCGM_FI_DEV_GPU_TEMP, degrees C) before its alert fires.
    max_gpu_temperature_celsius: float = Field(default=85, gt=0, le=120)
    # Oldest the newest verified backup of a store may be (the data-loss window an operator accepts)
    # before BackupTooOld fires; it must exceed the backup schedule's interval plus one backup's run.
    max_backup_age: str = Field(default="26h", pattern=_PROMQL_RANGE)


class AlertThresholds(Frozen):
    """What a phase's alert rules compare with, resolved from the phase files (`alert_thresholds`)."""

    settings: AlertSettings
    decode_tokens_per_second: float  # llama-bench-targets.decodeTokensPerSecond in force
    min_local_share: float  # router-local-share.minShare in force
    routes: RoutesSloThresholds  # routes-slo in force


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
    # Per check name, the thresholds of a check that takes them; a named check without an entry
    # here runs with its model's defaults.
    thresholds: CheckThresholds = CheckThresholds()

    @model_validator(mode="after")
    def _known_checks(self) -> ExitCriteria:
        unknown = sorted(set(self.checks) - CHECK_NAMES)
        if unknown:
            raise ValueError(f"unknown machine check(s) {unknown}; known: {sorted(CHECK_NAMES)}")
        unused = sorted(set(self.thresholds.model_dump(by_alias=True, exclude_none=True)) - set(self.checks))
        if unused:
            raise ValueError(f"thresholds for {unused}, which this phase's checks do not name")
        return self

    @property
    def measurements(self) -> tuple[str, ...]:
        """The checks that judge traffic over time (those that take thresholds): they run when the
        phase is left (the cutover gate) and on `status --checks`, not the moment it is deployed."""
        return tuple(name for name in self.checks if name in CHECK_THRESHOLDS)

    def thresholds_for(self, name: str) -> Frozen | None:
        """The thresholds check `name` runs with: the phase file's, else its defaults; None if it takes none."""
        model = CHECK_THRESHOLDS.get(name)
        if model is None:
            return None
        given = getattr(self.thresholds, name.replace("-", "_"))
        return given if given is not None else model()


class PhaseFile(Frozen):
    """One `stacks/<id>.yaml` file, as written."""

    id: str = Field(pattern=r"^p[0-9][a-z0-9]*-[a-z0-9-]+$")
    title: str
    summary: str
    changes: dict[str, Any] = {}
    # Steps of this phase that cannot be undone; rolling back past this phase is refused.
    irreversible: tuple[str, ...] = ()
    rollback: str = ""  # what rolling back from this phase does, for the runbook
    # How long the phase is planned to run before the next one (the runbook shows it; the cost
    # estimate prices the migration window's overlap of legacy and K3s over these days).
    expected_days: int | None = Field(default=None, ge=1, le=365)
    exit_criteria: ExitCriteria
    alerts: dict[str, Any] = {}  # AlertSettings, from this phase on


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
    expected_days: int | None = None
    alerts: AlertSettings = AlertSettings()  # the merged `alerts` of phases 0..N
    path: Path

    @property
    def gated(self) -> bool:
        """A traffic phase: `migrate forward` leaves it only when its exit checks pass (the cutover gate)."""
        return "traffic" in self.changes


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
    alerts: dict[str, Any] = {}
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
        alerts = deep_merge(alerts, spec.alerts)
        try:
            alert_settings = AlertSettings.model_validate(alerts)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, prefix=f"{path.name}: alerts.")) from None
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
                expected_days=spec.expected_days,
                alerts=alert_settings,
                path=path,
            )
        )
    return tuple(phases)


def alert_thresholds(phase_id: str, stacks_dir: Path = STACKS_DIR) -> AlertThresholds:
    """The targets `phase_id`'s alert rules compare with: per check, the thresholds of the last phase
    up to this one that names it (a target measured at a gate is the one watched afterwards), else
    the check's defaults; and the phase's merged `alerts` settings."""
    phase = resolve(phase_id, stacks_dir)
    found: dict[str, Any] = {name: CHECK_THRESHOLDS[name]() for name in CHECK_THRESHOLDS}
    for earlier in load_phases(stacks_dir)[: phase.index + 1]:
        for name in earlier.exit_criteria.measurements:
            found[name] = earlier.exit_criteria.thresholds_for(name)
    return AlertThresholds(
        settings=phase.alerts,
        decode_tokens_per_second=found["llama-bench-targets"].decode_tokens_per_second,
        min_local_share=found["router-local-share"].min_share,
        routes=found["routes-slo"],
    )


def phase_ids(stacks_dir: Path = STACKS_DIR) -> tuple[str, ...]:
    return tuple(phase.id for phase in load_phases(stacks_dir))


def resolve(phase_id: str, stacks_dir: Path = STACKS_DIR) -> Phase:
    """The phase called `phase_id`, or a ConfigError that lists the ones that exist."""
    for phase in load_phases(stacks_dir):
        if phase.id == phase_id:
            return phase
    ids = phase_ids(stacks_dir)
    close = difflib.get_close_matches(phase_id, ids, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]}? " if close else ""
    raise ConfigError(f"gpu-platform:phase: unknown phase {phase_id!r}; {hint}expected one of: {', '.join(ids)}")


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


def forward_gate(current: Phase, entered: Sequence[Phase]) -> str | None:
    """Why `migrate forward` runs `current`'s exit checks before moving through `entered` (the
    phases the move deploys, in order) and stops when one fails; None when leaving is not gated.

    Two moves are gated: leaving a traffic phase (the cutover gate), and entering a phase with
    irreversible steps (p4-decommission destroys the Fly apps), which nothing undoes if the phase
    before it was never proven to work.
    """
    if current.gated:
        return f"{current.id} moves traffic"
    final = next((p for p in entered if p.irreversible), None)
    if final is not None:
        return f"{final.id} has irreversible step(s): {', '.join(final.irreversible)}"
    return None
