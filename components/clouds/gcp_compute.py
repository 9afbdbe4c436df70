"""The three GCP Compute resources this project uses, registered without `pulumi_gcp.compute`.

Why not the generated classes: the `pulumi_gcp.compute` package imports all ~440 of its modules
the first time any of them is touched, 0.8 s measured on a 2-core machine, which alone is more
than a quarter of the 3 s budget for `python -m migrate plan`. A Pulumi resource is its type
token, its inputs and its options; these classes register the same token with the same provider
plugin version (the pinned `pulumi-gcp` package's) and the same additional secret outputs as the
generated classes, so the engine, the provider and the state cannot tell them apart.
`tests/test_gcp_compute.py` records each one next to its generated twin and compares every field
of the registration, so a `pulumi-gcp` bump that changes any of this fails there.

Inputs nested in maps use the provider's own (camelCase) property names, as the engine sees them;
keyword arguments and output attributes are snake_case, like the generated classes'.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Generic, Literal, Required, TypedDict, TypeVar, cast

import pulumi

# Which provider plugin the engine loads for these resources: exactly the pinned SDK's, as the
# generated classes ask for (`pulumi_gcp._utilities.get_resource_opts_defaults`).
PLUGIN_VERSION = importlib.metadata.version("pulumi-gcp")

# The provider marks these outputs secret on every labelled GCP resource.
LABEL_SECRET_OUTPUTS = ("effectiveLabels", "pulumiLabels")

T = TypeVar("T")


class InitializeParams(TypedDict, total=False):
    image: str
    size: int
    type: str


class BootDisk(TypedDict, total=False):
    initializeParams: InitializeParams
    source: str


class AccessConfig(TypedDict, total=False):
    natIp: str
    networkTier: str


class NetworkInterface(TypedDict, total=False):
    network: Required[str]
    accessConfigs: list[AccessConfig]


class GuestAccelerator(TypedDict):
    type: str
    count: int


class Scheduling(TypedDict, total=False):
    onHostMaintenance: Literal["MIGRATE", "TERMINATE"]
    automaticRestart: bool


class FirewallRule(TypedDict, total=False):
    protocol: Required[str]
    ports: list[str]


class _Output(Generic[T]):
    """A typed snake_case attribute for an output the SDK stores under its engine name.

    Props are passed in the engine's own names, so no name translation happens anywhere: the
    SDK's fallback translator would also rewrite keys nested inside maps (labels, metadata).
    """

    def __init__(self, engine_name: str) -> None:
        self.engine_name = engine_name

    def __get__(self, resource: object, owner: type | None = None) -> pulumi.Output[T]:
        return cast(pulumi.Output[T], vars(resource)[self.engine_name])


class _ComputeResource(pulumi.CustomResource):
    TOKEN: ClassVar[str]
    SECRET_OUTPUTS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, resource_name: str, inputs: Mapping[str, Any], opts: pulumi.ResourceOptions | None) -> None:
        props: dict[str, Any] = {k: v for k, v in inputs.items() if v is not None}
        for attribute in vars(type(self)).values():
            if isinstance(attribute, _Output):
                props.setdefault(attribute.engine_name, None)
        merged = pulumi.ResourceOptions.merge(pulumi.ResourceOptions(version=PLUGIN_VERSION), opts)
        if self.SECRET_OUTPUTS:
            merged = pulumi.ResourceOptions.merge(
                merged, pulumi.ResourceOptions(additional_secret_outputs=list(self.SECRET_OUTPUTS))
            )
        super().__init__(self.TOKEN, resource_name, props, merged)


class Instance(_ComputeResource):
    """`gcp:compute/instance:Instance`."""

    TOKEN = "gcp:compute/instance:Instance"
    SECRET_OUTPUTS = LABEL_SECRET_OUTPUTS

    current_status = _Output[str]("currentStatus")
    instance_id = _Output[str]("instanceId")
    network_interfaces = _Output[list[dict[str, Any]]]("networkInterfaces")
    self_link = _Output[str]("selfLink")

    def __init__(
        self,
        resource_name: str,
        *,
        name: str,
        project: str,
        zone: str,
        machine_type: str,
        boot_disk: BootDisk,
        network_interfaces: Sequence[NetworkInterface],
        guest_accelerators: Sequence[GuestAccelerator] | None = None,
        scheduling: Scheduling | None = None,
        metadata: pulumi.Input[Mapping[str, str]] | None = None,
        tags: Sequence[str] | None = None,
        labels: Mapping[str, str] | None = None,
        allow_stopping_for_update: bool | None = None,
        desired_status: Literal["RUNNING", "SUSPENDED", "TERMINATED"] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            resource_name,
            {
                "name": name,
                "project": project,
                "zone": zone,
                "machineType": machine_type,
                "bootDisk": boot_disk,
                "networkInterfaces": list(network_interfaces),
                "guestAccelerators": list(guest_accelerators) if guest_accelerators is not None else None,
                "scheduling": scheduling,
                "metadata": metadata,
                "tags": list(tags) if tags is not None else None,
                "labels": labels,
                "allowStoppingForUpdate": allow_stopping_for_update,
                "desiredStatus": desired_status,
            },
            opts,
        )


class Firewall(_ComputeResource):
    """`gcp:compute/firewall:Firewall`."""

    TOKEN = "gcp:compute/firewall:Firewall"

    name = _Output[str]("name")
    self_link = _Output[str]("selfLink")

    def __init__(
        self,
        resource_name: str,
        *,
        project: str,
        network: str,
        direction: Literal["INGRESS", "EGRESS"],
        source_ranges: pulumi.Input[Sequence[str]],
        allows: Sequence[FirewallRule],
        target_tags: Sequence[str],
        description: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            resource_name,
            {
                "project": project,
                "network": network,
                "direction": direction,
                "sourceRanges": source_ranges,
                "allows": list(allows),
                "targetTags": list(target_tags),
                "description": description,
            },
            opts,
        )


class Snapshot(_ComputeResource):
    """`gcp:compute/snapshot:Snapshot`."""

    TOKEN = "gcp:compute/snapshot:Snapshot"
    SECRET_OUTPUTS = LABEL_SECRET_OUTPUTS

    self_link = _Output[str]("selfLink")
    snapshot_id = _Output[int]("snapshotId")
    storage_bytes = _Output[int]("storageBytes")

    def __init__(
        self,
        resource_name: str,
        *,
        name: str,
        project: str,
        zone: str,
        source_disk: str,
        labels: Mapping[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            resource_name,
            {
                "name": name,
                "project": project,
                "zone": zone,
                "sourceDisk": source_disk,
                "labels": labels,
            },
            opts,
        )
