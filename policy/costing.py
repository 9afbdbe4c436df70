"""What a phase costs per month: one line per billed thing, each a catalog price times a quantity.

The one estimator, shared by the policy pack's `budget` rule (under the engine and offline) and by
`python -m migrate cost|plan|diff` (migrate/cost.py). It reads two things only:

- the resources, as `(urn, type, name, inputs)`: what the engine shows a stack policy and what the
  recording harness records;
- the stack's `costBasis` output (components/config/cost_basis.py): the catalog's prices, the
  stack's cost assumptions and its budget. The program exports it so that the pack, which runs in
  its own virtualenv without the project's packages and without the network, prices the plan with
  exactly the figures `migrate cost` uses.

Standard library only, like the rest of the pack's helpers. A price the catalog does not have, or
has as a known gap, is a `CostError` naming the catalog key and the resource: never a zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

STACK_TYPE = "pulumi:pulumi:Stack"
BASIS_OUTPUT = "costBasis"

LAMBDA_INSTANCE = "pulumi-python:dynamic/lambda_cloud:LambdaInstance"
FLY_APP = "pulumi-python:dynamic/fly:FlyApp"
FLY_FREEZE = "pulumi-python:dynamic/fly:FlyFreeze"
FLY_DESTROY = "pulumi-python:dynamic/fly:FlyDestroy"
GCP_INSTANCE = "gcp:compute/instance:Instance"
GCP_SNAPSHOT = "gcp:compute/snapshot:Snapshot"
S3_BUCKET = "aws:s3/bucket:Bucket"
LEGACY_ESTATE = "gpu-platform:legacy:LegacyEstate"
ROUTER = "gpu-platform:router:Router"

# Fly states its Machine prices per 30 days of runtime (https://fly.io/docs/about/pricing/).
FLY_PERIOD_HOURS = 720.0
HOURS_PER_DAY = 24.0
# Machine families whose catalog price includes their GPUs (GCP's A2/A3 types come with them).
_GPU_BUNDLED_FAMILIES = ("a2-", "a3-")


class CostError(Exception):
    """A thing the plan bills for that the catalog cannot price; the message names the catalog key."""


@dataclass(frozen=True)
class Resource:
    urn: str
    type: str
    name: str
    inputs: Mapping[str, Any]


@dataclass(frozen=True)
class Line:
    urn: str
    name: str
    provider: str
    item: str
    price_key: str
    unit_price_usd: float
    unit: str
    quantity: float

    @property
    def monthly_usd(self) -> float:
        return self.unit_price_usd * self.quantity

    @property
    def ident(self) -> tuple[str, str]:
        return self.urn, self.price_key

    def to_json(self, source: str = "") -> dict[str, Any]:
        return {
            "urn": self.urn,
            "name": self.name,
            "provider": self.provider,
            "item": self.item,
            "monthlyUsd": round(self.monthly_usd, 2),
            "unitPriceUsd": self.unit_price_usd,
            "unit": self.unit,
            "quantity": round(self.quantity, 6),
            "priceKey": self.price_key,
            "source": source,
        }


@dataclass(frozen=True)
class Estimate:
    lines: tuple[Line, ...]
    basis: Mapping[str, Any]

    @property
    def monthly_usd(self) -> float:
        return sum(line.monthly_usd for line in self.lines)

    def by_provider(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for line in self.lines:
            out[line.provider] = out.get(line.provider, 0.0) + line.monthly_usd
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def largest(self, n: int) -> list[Line]:
        return sorted(self.lines, key=lambda line: -line.monthly_usd)[:n]

    @property
    def budget_usd(self) -> float | None:
        value = self.basis.get("budgetMonthlyUsd")
        return float(value) if isinstance(value, int | float) else None


def usd(value: float) -> str:
    """Dollars for a reviewer: thousands separated, cents shown."""
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.2f}"


class _Pricer:
    def __init__(self, basis: Mapping[str, Any]) -> None:
        self.basis = basis
        self.prices: Mapping[str, Any] = basis.get("prices") or {}
        self.assume: Mapping[str, Any] = basis.get("assumptions") or {}
        self.hours = float(self.assume.get("hoursPerMonth", 730))
        self.lines: list[Line] = []

    def price(self, key: str, res: Resource, what: str) -> tuple[float, str]:
        entry = self.prices.get(key)
        where = f"{res.name} ({what})"
        if not isinstance(entry, Mapping):
            raise CostError(
                f"no price for {key} in the price catalog (components/catalog/prices.json), needed by {where}; "
                "add the entry with its source, or change the resource to one the catalog prices"
            )
        if entry.get("usd") is None:
            gap = entry.get("gap") or "no public figure recorded"
            raise CostError(f"no price for {key}, needed by {where}: the catalog records it as a gap ({gap})")
        return float(entry["usd"]), str(entry.get("unit", ""))

    def add(self, res: Resource, provider: str, item: str, key: str, quantity: float) -> None:
        unit_price, unit = self.price(key, res, item)
        self.lines.append(Line(res.urn, res.name, provider, item, key, unit_price, unit, quantity))


def _region_of_zone(zone: str) -> str:
    return zone.rsplit("-", 1)[0] if zone.count("-") >= 2 else zone


def _lambda_instance(p: _Pricer, res: Resource) -> None:
    candidates = res.inputs.get("candidates") or []
    first = candidates[0] if candidates and isinstance(candidates[0], Mapping) else {}
    itype = str(first.get("instance_type", ""))
    # The first candidate is what launches when Lambda has capacity for it; the others are fallbacks.
    p.add(res, "lambda", f"instance {itype} ({first.get('region', '')}), always on", f"lambda/{itype}", p.hours)


def _gcp_instance(p: _Pricer, res: Resource) -> None:
    zone = str(res.inputs.get("zone", ""))
    region = _region_of_zone(zone)
    machine = str(res.inputs.get("machineType", ""))
    running = str(res.inputs.get("desiredStatus", "RUNNING")).upper() != "TERMINATED"
    if running:
        p.add(res, "gcp", f"VM {machine} in {zone}", f"gcp/{region}/{machine}", p.hours)
        if not machine.startswith(_GPU_BUNDLED_FAMILIES):
            for acc in res.inputs.get("guestAccelerators") or []:
                count = float(acc.get("count", 1))
                kind = str(acc.get("type", ""))
                p.add(res, "gcp", f"{count:g}x GPU {kind}", f"gcp/{region}/gpu/{kind}", p.hours * count)
    boot = res.inputs.get("bootDisk") or {}
    params = boot.get("initializeParams") if isinstance(boot, Mapping) else None
    if isinstance(params, Mapping) and params.get("size") is not None:
        size, kind = float(params["size"]), str(params.get("type") or "pd-standard")
    else:
        # An adopted VM's disk is referenced, not described: its size comes from the stack's assumptions.
        disk = p.assume.get("legacyVmDisk") or {}
        size, kind = float(disk.get("sizeGb", 0)), str(disk.get("type", "pd-standard"))
    p.add(res, "gcp", f"boot disk {kind} {size:g} GB", f"gcp/{region}/disk/{kind}", size)


def _gcp_snapshot(p: _Pricer, res: Resource) -> None:
    region = _region_of_zone(str(res.inputs.get("zone", "")))
    # Snapshots bill the data stored; the disk's provisioned size is the upper bound used here.
    size = float((p.assume.get("legacyVmDisk") or {}).get("sizeGb", 0))
    p.add(res, "gcp", f"snapshot of the legacy disk, at most {size:g} GB", f"gcp/{region}/snapshot", size)


def _fly_apps(p: _Pricer, resources: list[Resource]) -> None:
    fly = p.assume.get("fly") or {}
    frozen = {str(r.inputs.get("app")) for r in resources if r.type == FLY_FREEZE}
    destroyed = {str(r.inputs.get("app")) for r in resources if r.type == FLY_DESTROY}
    size, region = str(fly.get("machineSize", "")), str(fly.get("region", ""))
    machines = float(fly.get("machinesPerApp", 1))
    for res in resources:
        if res.type != FLY_APP:
            continue
        app = str(res.inputs.get("app"))
        if app in destroyed:
            continue  # p4: the machines, volumes and app are gone
        periods = p.hours / FLY_PERIOD_HOURS
        if app in frozen:
            rootfs = float(fly.get("rootfsGb", 0)) * machines
            p.add(
                res,
                "fly",
                f"{machines:g} stopped machine(s), {rootfs:g} GB rootfs",
                "fly/stopped-rootfs",
                rootfs * periods,
            )
        else:
            p.add(res, "fly", f"{machines:g} machine(s) {size} in {region}", f"fly/{region}/{size}", machines * periods)
        volume = float(fly.get("volumeGb", 0))
        if volume:
            p.add(res, "fly", f"volume {volume:g} GB", "fly/volume", volume)


def _compose_host(p: _Pricer, res: Resource) -> None:
    itype = p.assume.get("composeHostInstanceType")
    if not itype:
        raise CostError(
            "gpu-platform:cost.composeHostInstanceType is not set: the legacy Compose host runs on a Lambda instance "
            "the program adopts by address, so the stack must say which type it is to price it"
        )
    # Lambda has no stopped state: the host bills until it is terminated by hand, after p4 too.
    p.add(res, "lambda", f"Compose host, instance {itype}, always on", f"lambda/{itype}", p.hours)


def _bucket(p: _Pricer, res: Resource) -> None:
    region = str(p.basis.get("backupRegion", ""))
    size = float(p.assume.get("backupStorageGb", 0))
    p.add(res, "aws", f"backup bucket, {size:g} GB in S3 Standard", f"aws/{region}/s3-standard", size)


def _llm(p: _Pricer, anchor: Resource, has_router: bool) -> None:
    llm = p.assume.get("llm") or {}
    per_day = float(llm.get("requestsPerDay", 0))
    if not per_day:
        return
    local_share = float(llm.get("localShare", 0)) if has_router else 0.0
    if has_router and not p.basis.get("routerCloudFallback", False):
        return  # the router keeps every request on the premises
    cloud_requests = per_day * p.hours / HOURS_PER_DAY * (1 - local_share)
    model = str(p.basis.get("cloudModel", ""))
    share = f"{1 - local_share:.0%} of {per_day:g}/day to the cloud"
    for part in ("input", "output"):
        tokens = float(llm.get(f"{part}Tokens", 0))
        item = f"{model} {part} tokens ({share}, {tokens:g} per request)"
        p.add(anchor, "llm", item, f"llm/{model}/{part}", cloud_requests * tokens)


_HANDLERS = {
    LAMBDA_INSTANCE: _lambda_instance,
    GCP_INSTANCE: _gcp_instance,
    GCP_SNAPSHOT: _gcp_snapshot,
    LEGACY_ESTATE: _compose_host,
    S3_BUCKET: _bucket,
}


def estimate(resources: Iterable[Resource], basis: Mapping[str, Any]) -> Estimate:
    """The monthly run rate of the resources, priced with `basis`. Raises CostError for a missing price."""
    res = list(resources)
    p = _Pricer(basis)
    for r in res:
        handler = _HANDLERS.get(r.type)
        if handler is not None:
            handler(p, r)
    _fly_apps(p, res)
    stack = next((r for r in res if r.type == STACK_TYPE), None)
    router = next((r for r in res if r.type == ROUTER), None)
    anchor = router or stack
    if anchor is not None:
        _llm(p, anchor, has_router=router is not None)
    return Estimate(tuple(p.lines), basis)


@dataclass(frozen=True)
class LineChange:
    before: Line | None
    after: Line | None

    @property
    def delta_usd(self) -> float:
        return (self.after.monthly_usd if self.after else 0.0) - (self.before.monthly_usd if self.before else 0.0)

    @property
    def line(self) -> Line:
        found = self.after or self.before
        assert found is not None
        return found


def compare(before: Estimate, after: Estimate) -> list[LineChange]:
    """Per (resource, price) the change in monthly cost, largest first; unchanged lines left out."""
    a = {line.ident: line for line in before.lines}
    b = {line.ident: line for line in after.lines}
    changes = [LineChange(a.get(k), b.get(k)) for k in a.keys() | b.keys()]
    changes = [c for c in changes if abs(c.delta_usd) >= 0.005]
    return sorted(changes, key=lambda c: (-abs(c.delta_usd), c.line.urn, c.line.price_key))
