"""GPU support: labels/taints, device plugin values and time-slicing, the smoke pod manifest."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from components.catalog import versions
from components.catalog.gpus import GpuSpec
from components.cluster import nvidia
from components.core.errors import ConfigError
from components.handles import ClusterHandle

H100 = GpuSpec(model="H100-80GB", count=2)


def test_gpu_node_labels_match_the_device_plugin_affinity() -> None:
    assert nvidia.gpu_labels(H100) == {
        "nvidia.com/gpu.present": "true",
        "gpu-platform/gpu-model": "H100-80GB",
        "gpu-platform/gpu-count": "2",
    }
    assert nvidia.gpu_labels(None) == {}


@pytest.mark.parametrize(
    ("gpu", "dedicated", "tainted"),
    [(H100, True, True), (H100, False, False), (None, True, False), (None, False, False)],
)
def test_only_dedicated_gpu_nodes_are_tainted(gpu: GpuSpec | None, dedicated: bool, tainted: bool) -> None:
    taints = nvidia.gpu_taints(gpu, dedicated)
    assert taints == ((nvidia.Taint("nvidia.com/gpu", "present", "NoSchedule"),) if tainted else ())
    if tainted:
        assert taints[0].k3s_flag() == "nvidia.com/gpu=present:NoSchedule"


@pytest.mark.parametrize(
    ("time_slicing", "replicas", "expected"),
    [(True, 4, 4), (False, 4, 1), (True, 1, 1), (False, 1, 1), (True, 16, 16)],
)
def test_sharing_only_when_the_phase_enables_it_and_replicas_allow(
    time_slicing: bool, replicas: int, expected: int
) -> None:
    assert nvidia.shared_replicas(time_slicing, replicas) == expected


@pytest.mark.parametrize("replicas", [0, 17, -1])
def test_out_of_range_replicas_name_the_config_key(replicas: int) -> None:
    with pytest.raises(ConfigError, match=r"gpuTimeSlicingReplicas: .* out of range"):
        nvidia.shared_replicas(True, replicas)


def test_no_sharing_renders_no_sharing_section() -> None:
    # The plugin refuses timeSlicing with replicas < 2, so 1 must mean "no sharing section at all".
    assert nvidia.plugin_config(1) == {"version": "v1", "flags": {"migStrategy": "none"}}


def test_time_slicing_config() -> None:
    sharing = nvidia.plugin_config(4)["sharing"]["timeSlicing"]
    assert sharing["resources"] == [{"name": "nvidia.com/gpu", "replicas": 4}]
    assert sharing["renameByDefault"] is False
    assert sharing["failRequestsGreaterThanOne"] is True


def test_device_plugin_values_run_on_the_nvidia_runtime_and_tolerate_the_gpu_taint() -> None:
    # What the values say; that the pinned chart reads these keys is tests/test_chart_values.py's check.
    values = nvidia.device_plugin_values(4)
    assert values["runtimeClassName"] == "nvidia"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in values["tolerations"]
    assert values["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert values["config"]["default"] == "default"
    assert yaml.safe_load(values["config"]["map"]["default"]) == nvidia.plugin_config(4)


def test_device_plugin_is_pinned_to_a_release_from_nvidias_repository() -> None:
    assert versions.NVIDIA_DEVICE_PLUGIN_CHART_REPO == "https://nvidia.github.io/k8s-device-plugin"
    assert versions.NVIDIA_DEVICE_PLUGIN_CHART == "nvidia-device-plugin"
    major, minor, patch = versions.NVIDIA_DEVICE_PLUGIN_VERSION.split(".")
    assert all(part.isdigit() for part in (major, minor, patch))


def test_toolkit_env_carries_the_pinned_version() -> None:
    assert nvidia.toolkit_env(True) == {
        "GPU_EXPECTED": "1",
        "NVIDIA_TOOLKIT_VERSION": versions.NVIDIA_CONTAINER_TOOLKIT_VERSION,
    }
    assert nvidia.toolkit_env(False)["GPU_EXPECTED"] == "0"


# --- smoke pod ---------------------------------------------------------------------------------


def _container(manifest: dict[str, Any]) -> dict[str, Any]:
    (container,) = manifest["spec"]["containers"]
    return container


def test_smoke_pod_requests_one_gpu_on_the_nvidia_runtime() -> None:
    pod = nvidia.smoke_pod_manifest()
    assert pod["kind"] == "Pod" and pod["metadata"]["name"] == "nvidia-smi-smoke"
    assert pod["spec"]["runtimeClassName"] == "nvidia"
    assert pod["spec"]["restartPolicy"] == "Never"
    container = _container(pod)
    assert container["command"] == ["nvidia-smi"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["image"] == versions.CUDA_SMOKE_IMAGE
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"]["tolerations"]


def test_smoke_pod_can_target_one_node() -> None:
    pod = nvidia.smoke_pod_manifest(name="smoke-gpu-agent-1", namespace="gpu-checks", node="gpu-agent-1")
    assert pod["metadata"] == {**pod["metadata"], "name": "smoke-gpu-agent-1", "namespace": "gpu-checks"}
    assert pod["spec"]["nodeSelector"]["kubernetes.io/hostname"] == "gpu-agent-1"


@pytest.mark.parametrize("node", [None, "gpu-agent-1"])
def test_smoke_pod_is_a_valid_pod_for_our_kubernetes(node: str | None) -> None:
    kubernetes_validate.validate(nvidia.smoke_pod_manifest(node=node), versions.KUBERNETES_VERSION, strict=True)


# --- component args --------------------------------------------------------------------------


def test_device_plugin_needs_a_gpu_node() -> None:
    handle = ClusterHandle(provider=None, cluster=None, kubeconfig=None, api_address=None, gpu_nodes=())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs at least one GPU node"):
        nvidia.NvidiaDevicePluginArgs(cluster=handle, time_slicing=False, replicas=1)
