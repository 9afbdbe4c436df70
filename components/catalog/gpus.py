"""Facts about hardware the config may name: GPU models and Lambda Cloud instance types.

Config validation and the llama sizing share these tables, so a host's GPU memory is stated once.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field

from components.core.model import Frozen

GpuModel = Literal["H100-80GB", "A100-80GB", "A100-40GB", "A10-24GB", "RTX4090-24GB", "GH200-96GB", "A6000-48GB"]


class GpuInfo(Frozen):
    model: GpuModel
    memory_gib: int
    # Memory bandwidth drives decode speed; the numbers are the vendors' data-sheet figures.
    bandwidth_gbps: int


GPUS: Final[dict[str, GpuInfo]] = {
    info.model: info
    for info in (
        GpuInfo(model="H100-80GB", memory_gib=80, bandwidth_gbps=2000),  # H100 PCIe
        GpuInfo(model="A100-80GB", memory_gib=80, bandwidth_gbps=1935),
        GpuInfo(model="A100-40GB", memory_gib=40, bandwidth_gbps=1555),
        GpuInfo(model="A10-24GB", memory_gib=24, bandwidth_gbps=600),
        GpuInfo(model="RTX4090-24GB", memory_gib=24, bandwidth_gbps=1008),
        GpuInfo(model="GH200-96GB", memory_gib=96, bandwidth_gbps=4000),
        GpuInfo(model="A6000-48GB", memory_gib=48, bandwidth_gbps=768),
    )
}


class GpuSpec(Frozen):
    """Which GPU a machine has, and how many: what config names and the sizing counts on."""

    model: GpuModel
    count: int = Field(default=1, ge=1, le=8)

    @property
    def memory_gib(self) -> int:
        return GPUS[self.model].memory_gib


class InstanceType(Frozen):
    name: str
    gpu: GpuModel
    gpu_count: int
    # The machine's vCPUs and RAM (GiB): what a K3s node on it can allocate (migrate/capacity.py).
    # None where no source states them; the capacity check then refuses to guess.
    vcpus: int | None = None
    memory_gib: int | None = None


# Lambda Cloud instance types we allow, from `GET /instance-types` (names follow the API's
# `gpu_<count>x_<model>` scheme). A name outside this table is refused at config time rather than
# failing minutes into a launch.
# vCPUs and RAM: lambda.ai/instances as transcribed verbatim (the same transcription as the prices in
# prices.json: github.com/api-evangelist/lambda-labs plans/lambda-labs-plans-pricing.yml, run
# 20260920T120546, `included_quota`); gpu_1x_gh200's also in the API spec's example (lambda-cloud
# 1.8.3, `specs`). The 1x A100 and 1x A6000 types are not on that page: unknown.
LAMBDA_INSTANCE_TYPES: Final[dict[str, InstanceType]] = {
    t.name: t
    for t in (
        InstanceType(name="gpu_1x_a10", gpu="A10-24GB", gpu_count=1, vcpus=30, memory_gib=226),
        InstanceType(name="gpu_1x_a100", gpu="A100-40GB", gpu_count=1),
        InstanceType(name="gpu_1x_a100_sxm4", gpu="A100-40GB", gpu_count=1),
        InstanceType(name="gpu_1x_a6000", gpu="A6000-48GB", gpu_count=1),
        InstanceType(name="gpu_1x_h100_pcie", gpu="H100-80GB", gpu_count=1, vcpus=26, memory_gib=225),
        InstanceType(name="gpu_1x_h100_sxm5", gpu="H100-80GB", gpu_count=1, vcpus=26, memory_gib=225),
        InstanceType(name="gpu_2x_h100_sxm5", gpu="H100-80GB", gpu_count=2, vcpus=52, memory_gib=450),
        InstanceType(name="gpu_8x_h100_sxm5", gpu="H100-80GB", gpu_count=8, vcpus=208, memory_gib=1800),
        InstanceType(name="gpu_8x_a100_80gb_sxm4", gpu="A100-80GB", gpu_count=8, vcpus=240, memory_gib=1800),
        InstanceType(name="gpu_1x_gh200", gpu="GH200-96GB", gpu_count=1, vcpus=64, memory_gib=432),
    )
}

# Lambda's public region codes (`PublicRegionCode` in the API spec).
LAMBDA_REGIONS: Final = (
    "europe-central-1",
    "asia-south-1",
    "australia-east-1",
    "me-west-1",
    "asia-northeast-1",
    "asia-northeast-2",
    "us-east-1",
    "us-west-2",
    "us-west-1",
    "us-south-1",
    "us-west-3",
    "us-midwest-1",
    "us-east-2",
    "us-south-2",
    "us-south-3",
    "us-east-3",
    "us-midwest-2",
)

# GCP machine types by their vCPUs and memory (GB as Google states it), for `gcp` K3s nodes: the
# accelerator-optimized table of cloud.google.com/compute/docs/accelerator-optimized-machines (A2
# Standard, a2-highgpu-1g: 12 vCPUs, 85 GB), the figures prices.json's entry carries too. Others are
# unknown until added with their source.
GCP_MACHINE_SIZES: Final[dict[str, tuple[int, int]]] = {"a2-highgpu-1g": (12, 85)}

# GCP accelerator types by the GPU they carry, for `gcp` hosts.
GCP_ACCELERATORS: Final[dict[str, GpuModel]] = {
    "nvidia-tesla-a100": "A100-40GB",
    "nvidia-a100-80gb": "A100-80GB",
    "nvidia-h100-80gb": "H100-80GB",
}
