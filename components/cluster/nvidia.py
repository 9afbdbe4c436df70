"""GPU support on K3s: the host toolkit step, node labels and taints, the device plugin, the smoke pod.

Three layers, in the order a GPU pod needs them:

1. Host: `scripts/nvidia-toolkit.sh` checks the NVIDIA driver (Lambda and GCP GPU images ship it)
   and installs the NVIDIA container toolkit only when missing. `K3sCluster` runs it on each host
   BEFORE K3s starts there, because K3s adds the `nvidia` containerd runtime only when it finds
   `nvidia-container-runtime` at start-up. K3s also ships the `nvidia` RuntimeClass; the cluster
   checks that it exists instead of creating a second copy.
2. Nodes: GPU nodes get `nvidia.com/gpu.present=true` (the device plugin's node affinity matches
   it) and, when the host is a dedicated GPU node, the taint `nvidia.com/gpu=present:NoSchedule`.
3. Cluster: `NvidiaDevicePlugin` installs NVIDIA's k8s-device-plugin chart at a pinned version,
   on the `nvidia` runtime, with GPU time-slicing when the phase turns it on.

`smoke_pod_manifest()` renders the pod the `nvidia-smi-smoke` exit check (migrate/checks.py) runs.
Everything but the component is a pure function, so tests and the checks share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as kubernetes
import yaml
from pydantic import InstanceOf, model_validator

from components.catalog import versions
from components.catalog.gpus import GpuSpec
from components.core.errors import ConfigError
from components.core.model import Args
from components.handles import ClusterHandle

RUNTIME_CLASS = "nvidia"  # created by K3s from its packaged runtimes manifest
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
GPU_MODEL_LABEL = "gpu-platform/gpu-model"
GPU_COUNT_LABEL = "gpu-platform/gpu-count"
DEVICE_PLUGIN_RELEASE = "nvidia-device-plugin"
# kube-system: the chart runs at priority system-node-critical, which clusters may restrict to it.
DEVICE_PLUGIN_NAMESPACE = "kube-system"
TOOLKIT_SCRIPT = "nvidia-toolkit.sh"
SMOKE_POD_NAME = "nvidia-smi-smoke"
# The device plugin refuses time-slicing with fewer than 2 replicas ("number of replicas must be
# >= 2", api/config/v1/replicas.go); 1 means "no sharing", so no sharing section is rendered.
MIN_SHARED_REPLICAS = 2
MAX_SHARED_REPLICAS = 16


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str

    def k3s_flag(self) -> str:
        """The `node-taint` entry of a K3s config: `key=value:Effect`."""
        return f"{self.key}={self.value}:{self.effect}"

    def manifest(self) -> dict[str, str]:
        return {"key": self.key, "value": self.value, "effect": self.effect}


GPU_TAINT = Taint(key=GPU_RESOURCE, value="present", effect="NoSchedule")


# --- nodes -------------------------------------------------------------------------------------


def gpu_labels(gpu: GpuSpec | None) -> dict[str, str]:
    """Labels a node gets for its GPUs; none for a CPU node."""
    if gpu is None:
        return {}
    return {GPU_PRESENT_LABEL: "true", GPU_MODEL_LABEL: gpu.model, GPU_COUNT_LABEL: str(gpu.count)}


def gpu_taints(gpu: GpuSpec | None, dedicated: bool) -> tuple[Taint, ...]:
    """Only a dedicated GPU node is tainted; a shared one (dev's single node) also runs CPU pods."""
    return (GPU_TAINT,) if gpu is not None and dedicated else ()


def gpu_tolerations() -> list[dict[str, str]]:
    """What a pod needs to land on a tainted GPU node."""
    return [{"key": GPU_TAINT.key, "operator": "Exists", "effect": GPU_TAINT.effect}]


def toolkit_env(gpu_expected: bool) -> dict[str, str]:
    """Environment of `nvidia-toolkit.sh` on one host."""
    return {
        "GPU_EXPECTED": "1" if gpu_expected else "0",
        "NVIDIA_TOOLKIT_VERSION": versions.NVIDIA_CONTAINER_TOOLKIT_VERSION,
    }


# --- device plugin -----------------------------------------------------------------------------


def shared_replicas(time_slicing: bool, replicas: int) -> int:
    """How many pods share one physical GPU: 1 unless the phase enables time-slicing with >= 2."""
    if not 1 <= replicas <= MAX_SHARED_REPLICAS:
        raise ConfigError(
            f"gpu-platform:gpuTimeSlicingReplicas: {replicas} is out of range; "
            f"expected 1 (no sharing) to {MAX_SHARED_REPLICAS}"
        )
    return replicas if time_slicing and replicas >= MIN_SHARED_REPLICAS else 1


def plugin_config(replicas: int) -> dict[str, Any]:
    """The device plugin's config file (format `version: v1`) for `replicas` pods per GPU."""
    config: dict[str, Any] = {"version": "v1", "flags": {"migStrategy": "none"}}
    if replicas >= MIN_SHARED_REPLICAS:
        config["sharing"] = {
            "timeSlicing": {
                # Keep the resource name nvidia.com/gpu so workloads need no change when sharing
                # is switched on or off.
                "renameByDefault": False,
                # Two slices of one GPU are not two GPUs: a pod asking for more than one shared
                # GPU fails to start instead of getting less than it thinks.
                "failRequestsGreaterThanOne": True,
                "resources": [{"name": GPU_RESOURCE, "replicas": replicas}],
            }
        }
    return config


def device_plugin_values(replicas: int) -> dict[str, Any]:
    """Helm values of the device plugin chart."""
    return {
        "runtimeClassName": RUNTIME_CLASS,
        # The chart's default affinity already accepts nvidia.com/gpu.present=true (set by
        # K3sCluster on GPU nodes); without NFD that label is the only one that matches.
        "nodeSelector": {GPU_PRESENT_LABEL: "true"},
        "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}, *gpu_tolerations()],
        "config": {
            "map": {"default": yaml.safe_dump(plugin_config(replicas), sort_keys=False)},
            "default": "default",
        },
        # GPU feature discovery needs node-feature-discovery; our labels come from the config.
        "gfd": {"enabled": False},
        "nfd": {"enabled": False},
    }


# --- the smoke pod -----------------------------------------------------------------------------


def smoke_pod_manifest(
    name: str = SMOKE_POD_NAME,
    namespace: str = "default",
    node: str | None = None,
    image: str = versions.CUDA_SMOKE_IMAGE,
) -> dict[str, Any]:
    """A pod that asks for one GPU on the `nvidia` runtime and runs `nvidia-smi` once.

    Success is phase Succeeded with the nvidia-smi table ("NVIDIA-SMI ... Driver Version") in its
    log. `node` pins it to one node (kubernetes.io/hostname) to test that node's GPU.
    """
    node_selector = {GPU_PRESENT_LABEL: "true"}
    if node is not None:
        node_selector["kubernetes.io/hostname"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": SMOKE_POD_NAME, "app.kubernetes.io/part-of": "gpu-platform"},
        },
        "spec": {
            "runtimeClassName": RUNTIME_CLASS,
            "restartPolicy": "Never",
            "activeDeadlineSeconds": 300,  # a pod stuck pulling or pending ends instead of lingering
            "automountServiceAccountToken": False,
            "nodeSelector": node_selector,
            "tolerations": gpu_tolerations(),
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "nvidia-smi",
                    "image": image,
                    "command": ["nvidia-smi"],
                    # This checks the runtime plumbing, not a CUDA version: without it the image's
                    # NVIDIA_REQUIRE_CUDA would fail the pod on an older (but working) driver.
                    "env": [{"name": "NVIDIA_DISABLE_REQUIRE", "value": "true"}],
                    "resources": {"limits": {GPU_RESOURCE: 1, "cpu": "100m", "memory": "64Mi"}},
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }
            ],
        },
    }


# --- the component -----------------------------------------------------------------------------


class NvidiaDevicePluginArgs(Args):
    cluster: InstanceOf[ClusterHandle]
    time_slicing: bool  # phase.state.k3s.time_slicing
    replicas: int  # cfg.gpu_time_slicing_replicas; 1 = no sharing

    @model_validator(mode="after")
    def _gpu_nodes(self) -> NvidiaDevicePluginArgs:
        if not self.cluster.gpu_nodes:
            raise ConfigError("the NVIDIA device plugin needs at least one GPU node; no K3s host has a GPU")
        shared_replicas(self.time_slicing, self.replicas)  # validates the range
        return self


class NvidiaDevicePlugin(pulumi.ComponentResource):
    """NVIDIA's k8s-device-plugin, pinned, on the `nvidia` runtime of the GPU nodes."""

    release_name: pulumi.Output[str]
    release_status: pulumi.Output[str]  # "deployed" once Helm is done
    replicas_per_gpu: int

    def __init__(self, name: str, args: NvidiaDevicePluginArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gpu-platform:nvidia:NvidiaDevicePlugin", name, None, opts)
        self.replicas_per_gpu = shared_replicas(args.time_slicing, args.replicas)
        release = kubernetes.helm.v3.Release(
            f"{name}-release",
            name=DEVICE_PLUGIN_RELEASE,  # fixed: no random suffix, so the release is found again
            namespace=DEVICE_PLUGIN_NAMESPACE,
            chart=versions.NVIDIA_DEVICE_PLUGIN_CHART,
            version=versions.NVIDIA_DEVICE_PLUGIN_VERSION,
            repository_opts=kubernetes.helm.v3.RepositoryOptsArgs(repo=versions.NVIDIA_DEVICE_PLUGIN_CHART_REPO),
            values=device_plugin_values(self.replicas_per_gpu),
            atomic=True,  # a failed upgrade rolls back instead of leaving GPU nodes without a plugin
            cleanup_on_fail=True,
            timeout=600,
            max_history=5,
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=args.cluster.provider,
                depends_on=list(args.cluster.ready),
                # Uninstalling K3s removes the release with the cluster; no API call to a dying one.
                deleted_with=args.cluster.cluster,
                custom_timeouts=pulumi.CustomTimeouts(create="15m", update="15m", delete="10m"),
            ),
        )
        self.release_name = release.name.apply(lambda n: n or DEVICE_PLUGIN_RELEASE)
        self.release_status = release.status.apply(lambda s: (s.status if s is not None else None) or "unknown")
        self.register_outputs(
            {
                "releaseName": self.release_name,
                "releaseStatus": self.release_status,
                "replicasPerGpu": self.replicas_per_gpu,
            }
        )
