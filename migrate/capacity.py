"""Whether the pods a phase schedules fit the stack's K3s nodes, by their requests: pure, offline.

The scheduler places a pod only on a node whose allocatable CPU, memory and GPUs, less the
requests of the pods already there, cover the pod's requests. This module adds up what a recorded
plan asks for and compares it with what the stack's nodes can allocate:

- per node, allocatable = the machine's vCPUs and RAM (components/catalog/gpus.py) less the
  kubelet's reservations. K3s passes no `--kube-reserved` or `--system-reserved` and the program
  sets none (components/cluster/k3s.py), so only the kubelet's default hard eviction threshold,
  `memory.available<100Mi`, comes off memory (kubernetes.io/docs "Reserve Compute Resources for
  System Daemons": allocatable = capacity - kube-reserved - system-reserved - eviction threshold);
- what the cluster runs besides the plan's own workloads: the K3s add-ons and the pods of the
  charts the plan installs, at their requests (SYSTEM_PODS, CHART_DAEMONS, with their sources);
- the plan's Deployments and StatefulSets (replicas), Jobs (parallelism), CronJobs (their Job's
  parallelism: the scheduled backups all start at one minute, and Forbid keeps each to one Job) and
  DaemonSets (one per node they may run on); a pod's request is the larger of its containers' sum and its largest
  init container, as the scheduler computes it.

The checks are necessary conditions, not a scheduler: each pod fits on some node it may use (GPU
taints and tolerations), the pods that do not tolerate the GPU taint fit the untainted nodes
together, all pods fit all nodes together, and the GPU requests fit the GPUs (time-sliced
replicas included). Not counted: the extra pod of a rolling update (maxSurge), a
HorizontalPodAutoscaler's scale-up beyond the replicas the plan sets, and the chart pods whose
chart sets no requests (they are scheduled, but request nothing).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from components.catalog.gpus import GCP_MACHINE_SIZES, LAMBDA_INSTANCE_TYPES
from components.cluster import nvidia
from components.config.phases import resolve
from components.config.schema import HostConfig, StackConfig
from components.core.errors import ConfigError
from migrate.harness import RecordedPlan

MI = 1 << 20
GI = 1 << 30
# The kubelet's default hard eviction threshold for memory (`evictionHard: memory.available: 100Mi`,
# KubeletConfiguration defaults), the only reservation a K3s node has unless flags add more.
EVICTION_HARD_MEMORY = 100 * MI


@dataclass(frozen=True)
class Request:
    cpu_m: int = 0  # millicores
    memory: int = 0  # bytes
    gpus: int = 0  # nvidia.com/gpu, time-sliced replicas counted as the device plugin advertises them

    def __add__(self, other: Request) -> Request:
        return Request(self.cpu_m + other.cpu_m, self.memory + other.memory, self.gpus + other.gpus)

    def times(self, n: int) -> Request:
        return Request(self.cpu_m * n, self.memory * n, self.gpus * n)

    def covers(self, other: Request) -> bool:
        return self.cpu_m >= other.cpu_m and self.memory >= other.memory and self.gpus >= other.gpus


# Pods of the K3s add-ons, once per cluster, at the requests of their manifests in k3s-io/k3s
# (manifests/coredns.yaml: cpu 100m, memory 70Mi; metrics-server's Deployment in manifests/
# metrics-server/ is counted the same, an allowance: its requests could not be read here at
# K3S_VERSION's tag). local-path-provisioner and the bundled Traefik request nothing.
SYSTEM_PODS: Mapping[str, Request] = {
    "kube-system/coredns": Request(cpu_m=100, memory=70 * MI),
    "kube-system/metrics-server": Request(cpu_m=100, memory=70 * MI),
}

# DaemonSet pods of the charts the plan installs that request something, per node they run on,
# from the pinned charts' values.yaml (tests/test_capacity.py reads them there): Alloy's config
# reloader (`configReloader.resources.requests`) on every node, dcgm-exporter (`resources.requests`)
# on every GPU node. The charts' other pods set `resources: {}` by default and the program adds none.
CHART_DAEMONS: Mapping[str, tuple[Request, bool]] = {  # chart -> (request per pod, GPU nodes only)
    "alloy": (Request(cpu_m=10, memory=50 * MI), False),
    "dcgm-exporter": (Request(cpu_m=100, memory=128 * MI), True),
}

_WORKLOADS = {
    "kubernetes:apps/v1:Deployment",
    "kubernetes:apps/v1:StatefulSet",
    "kubernetes:batch/v1:Job",
    "kubernetes:batch/v1:CronJob",
    "kubernetes:apps/v1:DaemonSet",
}
_RELEASE = "kubernetes:helm.sh/v3:Release"

_SUFFIX = {
    "Ki": 1 << 10,
    "Mi": MI,
    "Gi": GI,
    "Ti": 1 << 40,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
}


def cpu_millicores(value: Any) -> int:
    """A Kubernetes CPU quantity ("500m", "2", 1.5) in millicores."""
    text = str(value).strip()
    if text.endswith("m"):
        return math.ceil(float(text[:-1]))
    return math.ceil(float(text) * 1000)


def memory_bytes(value: Any) -> int:
    """A Kubernetes memory quantity ("512Mi", "1Gi", "1G", 1048576) in bytes."""
    m = re.fullmatch(r"([0-9.]+)([KMGT]i?|k)?", str(value).strip())
    if m is None:
        raise ConfigError(f"memory quantity {value!r} is not one Kubernetes accepts")
    return math.ceil(float(m.group(1)) * _SUFFIX.get(m.group(2) or "", 1))


@dataclass(frozen=True)
class Node:
    name: str
    allocatable: Request
    tainted: tuple[nvidia.Taint, ...]
    gpu: bool


@dataclass(frozen=True)
class Pods:
    """The pods of one workload: `count` pods of `each`."""

    resource: str  # the plan's resource name
    count: int
    each: Request
    tolerations: tuple[Mapping[str, Any], ...] = ()
    per_node: bool = False  # a DaemonSet: one pod on each node it may run on
    gpu_nodes_only: bool = False

    def may_run_on(self, node: Node) -> bool:
        if self.gpu_nodes_only and not node.gpu:
            return False
        return all(any(_tolerates(t, taint) for t in self.tolerations) for taint in node.tainted)

    def on(self, group: Sequence[Node], cluster: Sequence[Node]) -> int:
        """How many of these pods must land on the nodes of `group` (a part of `cluster`)."""
        eligible = [n for n in cluster if self.may_run_on(n)]
        if self.per_node:
            return sum(1 for n in eligible if n in group)
        return self.count if eligible and all(n in group for n in eligible) else 0


def _tolerates(toleration: Mapping[str, Any], taint: nvidia.Taint) -> bool:
    if toleration.get("effect") and toleration["effect"] != taint.effect:
        return False
    key = toleration.get("key")
    if toleration.get("operator") == "Exists":
        return not key or key == taint.key
    return bool(key == taint.key and toleration.get("value") == taint.value)


def node_size(host: HostConfig) -> tuple[int, int]:
    """(vCPUs, memory bytes) of a K3s node's machine; a size no source states is refused, not guessed."""
    if host.lambda_ is not None:
        # Any candidate may be the one Lambda has capacity for: the smallest decides.
        sizes = []
        for candidate in host.lambda_.candidates:
            t = LAMBDA_INSTANCE_TYPES[candidate.instance_type]
            if t.vcpus is None or t.memory_gib is None:
                raise ConfigError(
                    f"host {host.name}: the vCPUs and RAM of {t.name} are not in components/catalog/gpus.py; "
                    "add them with their source"
                )
            sizes.append((t.vcpus, t.memory_gib * GI))
        return min(sizes)
    if host.gcp is not None:
        if host.gcp.machine_type not in GCP_MACHINE_SIZES:
            raise ConfigError(
                f"host {host.name}: the size of {host.gcp.machine_type} is not in components/catalog/gpus.py "
                "(GCP_MACHINE_SIZES); add it with its source"
            )
        vcpus, gb = GCP_MACHINE_SIZES[host.gcp.machine_type]
        return vcpus, gb * 10**9
    raise ConfigError(f"host {host.name}: a static K3s node's CPU count is not in its config; it cannot be checked")


def nodes(cfg: StackConfig, phase_id: str) -> list[Node]:
    """The stack's K3s nodes with what each can allocate in `phase_id` (no cluster before K3s runs)."""
    k3s = resolve(phase_id).state.k3s
    if not k3s.cluster:
        return []
    slices = nvidia.shared_replicas(k3s.time_slicing, cfg.gpu_time_slicing_replicas)
    out = []
    for host in cfg.k3s_nodes:
        vcpus, memory = node_size(host)
        spec = host.gpu_spec
        gpus = spec.count * slices if spec is not None and k3s.device_plugin else 0
        allocatable = Request(cpu_m=vcpus * 1000, memory=memory - EVICTION_HARD_MEMORY, gpus=gpus)
        out.append(Node(host.name, allocatable, nvidia.gpu_taints(spec, host.dedicated_gpu), spec is not None))
    return out


def _pod_request(pod_spec: Mapping[str, Any]) -> Request:
    def request(container: Mapping[str, Any]) -> Request:
        wanted = (container.get("resources") or {}).get("requests") or {}
        return Request(
            cpu_m=cpu_millicores(wanted["cpu"]) if "cpu" in wanted else 0,
            memory=memory_bytes(wanted["memory"]) if "memory" in wanted else 0,
            gpus=int(wanted.get(nvidia.GPU_RESOURCE, 0)),
        )

    total = Request()
    for c in pod_spec.get("containers") or []:
        total = total + request(c)
    for c in pod_spec.get("initContainers") or []:
        init = request(c)
        total = Request(max(total.cpu_m, init.cpu_m), max(total.memory, init.memory), max(total.gpus, init.gpus))
    return total


def pods(plan: RecordedPlan) -> list[Pods]:
    """What the plan schedules: its workloads, and the requesting DaemonSets of the charts it installs."""
    out: list[Pods] = []
    for r in plan.resources:
        if r.type in _WORKLOADS:
            spec = r.inputs.get("spec") or {}
            if r.type == "kubernetes:batch/v1:CronJob":
                spec = (spec.get("job_template") or spec.get("jobTemplate") or {}).get("spec") or {}
            template = (spec.get("template") or {}).get("spec") or {}
            key = "replicas" if r.type.startswith("kubernetes:apps/") else "parallelism"
            tolerations = tuple(template.get("tolerations") or ())
            per_node = r.type == "kubernetes:apps/v1:DaemonSet"
            out.append(Pods(r.name, int(spec.get(key, 1)), _pod_request(template), tolerations, per_node))
        elif r.type == _RELEASE and r.inputs.get("chart") in CHART_DAEMONS:
            each, gpu_only = CHART_DAEMONS[r.inputs["chart"]]
            # Counted as tolerating every taint: dcgm-exporter must reach the tainted GPU nodes, and
            # Alloy collects every node's logs.
            out.append(Pods(r.name, 1, each, ({"operator": "Exists"},), per_node=True, gpu_nodes_only=gpu_only))
    return out


def _fmt(r: Request) -> str:
    return f"{r.cpu_m / 1000:g} CPU, {r.memory / GI:.1f} GiB, {r.gpus} GPU"


def _demand(workloads: Sequence[Pods], group: Sequence[Node], cluster: Sequence[Node]) -> Request:
    """What must land on `group`: the K3s add-ons (on any node: counted in every group that can take
    them all) and the pods that have nowhere else to go."""
    return sum((p.each.times(p.on(group, cluster)) for p in workloads), sum(SYSTEM_PODS.values(), Request()))


def check(plan: RecordedPlan, cfg: StackConfig) -> list[str]:
    """Why the pods of `plan` cannot all be scheduled on the stack's nodes, one line each; [] when they fit."""
    cluster = nodes(cfg, plan.phase)
    workloads = pods(plan)
    where = f"{plan.stack} {plan.phase}"
    if not cluster:
        return [f"{where}: {len(workloads)} workload(s) but no K3s node runs in this phase"] if workloads else []
    problems: list[str] = []
    for p in workloads:
        eligible = [n for n in cluster if p.may_run_on(n)]
        if p.count and not any(n.allocatable.covers(p.each) for n in eligible):
            most = ", ".join(f"{n.name} {_fmt(n.allocatable)}" for n in eligible) or "no node it tolerates"
            problems.append(f"{where}: one pod of {p.resource} requests {_fmt(p.each)}; the nodes it may use: {most}")
    untainted = [n for n in cluster if not n.tainted]
    for label, group in (("all nodes", cluster), ("the nodes without the GPU taint", untainted)):
        if not group or (group is untainted and len(untainted) == len(cluster)):
            continue
        capacity = sum((n.allocatable for n in group), Request())
        wanted = _demand(workloads, group, cluster)
        for attr, what in (("cpu_m", "CPU"), ("memory", "memory"), ("gpus", "GPUs")):
            if getattr(wanted, attr) > getattr(capacity, attr):
                ranked = sorted(workloads, key=lambda p: getattr(p.each, attr) * p.on(group, cluster), reverse=True)
                largest = ", ".join(
                    f"{p.resource} {p.on(group, cluster)} x {_fmt(p.each)}"
                    for p in ranked[:3]
                    if getattr(p.each, attr) and p.on(group, cluster)
                )
                problems.append(
                    f"{where}: {what}: the pods request {_fmt(wanted)} on {label} "
                    f"({', '.join(n.name for n in group)}), which allocate {_fmt(capacity)}; largest: {largest}"
                )
    return problems


def summary(plan: RecordedPlan, cfg: StackConfig) -> str:
    """One line: what the phase's pods (the K3s add-ons included) request against what the nodes allocate."""
    cluster = nodes(cfg, plan.phase)
    capacity = sum((n.allocatable for n in cluster), Request())
    wanted = _demand(pods(plan), cluster, cluster) if cluster else Request()
    return f"{plan.stack} {plan.phase}: requests {_fmt(wanted)} of {_fmt(capacity)} on {len(cluster)} node(s)"
