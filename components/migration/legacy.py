"""The legacy estate outside Fly: the GCP VM and the Docker Compose host.

- The GCP VM is adopted in p0 with `import_` and changes nothing until p4-decommission, when its
  boot disk is snapshotted and the VM is then stopped (`desired_status: TERMINATED`). It is never
  deleted: protect plus retain_on_delete, so even `pulumi destroy` leaves it.
- The Compose host is an existing machine that Pulumi never creates or terminates; it is reached
  over SSH with its pinned host key. Its data is dumped by `components/migration/backups.py` (p2b). In p4 its
  services are stopped with `docker compose stop` (never `down -v`) once traffic is 100% on K3s and
  the restores are verified; rolling that step back runs `docker compose start`.
"""

from __future__ import annotations

import shlex
from typing import Literal

import pulumi
import pulumi_command as command
import pulumi_gcp as gcp
from pydantic import InstanceOf, model_validator

from components import HOST_SCRIPT_DIR
from components.clouds import gcp_compute
from components.config.schema import GcpVm
from components.core.errors import ConfigError
from components.core.model import Args
from components.handles import SshTarget

SCRIPTS = HOST_SCRIPT_DIR

# Everything about the VM except its machine type and run state belongs to how it was built
# (console, gcloud, a former Terraform): adopting it must not rewrite any of that, and the import
# has to succeed without our inputs matching those fields.
VM_FIELDS_OWNED_ELSEWHERE: tuple[str, ...] = (
    "bootDisk",
    "networkInterfaces",
    "advancedMachineFeatures",
    "allowStoppingForUpdate",
    "attachedDisks",
    "canIpForward",
    "confidentialInstanceConfig",
    "deletionProtection",
    "description",
    "enableDisplay",
    "guestAccelerators",
    "hostname",
    "labels",
    "metadata",
    "metadataStartupScript",
    "minCpuPlatform",
    "networkPerformanceConfig",
    "params",
    "reservationAffinity",
    "resourcePolicies",
    "scheduling",
    "scratchDisks",
    "serviceAccount",
    "shieldedInstanceConfig",
    "tags",
)


def compose_services_command(action: Literal["stop", "start"], compose_dir: str) -> str:
    script = (SCRIPTS / "compose-services.sh").read_text()
    return f"bash -c {shlex.quote(script)} compose-services {action} {shlex.quote(compose_dir)}"


class LegacyEstateArgs(Args):
    environment: Literal["dev", "prod"]
    gcp_vm: GcpVm
    gcp_vm_state: Literal["running", "retired"]
    compose_state: Literal["running", "stopped"]
    compose_dir: str
    compose_ssh: InstanceOf[SshTarget] | None = None
    # What stopping the Compose services waits for: the verified dumps and the restores into K3s.
    compose_stop_after: list[InstanceOf[pulumi.Resource]] = []

    @model_validator(mode="after")
    def _login_key(self) -> LegacyEstateArgs:
        if self.compose_state == "stopped" and self.compose_ssh is None:
            raise ConfigError(
                "gpu-platform:composeSshPrivateKey: required to stop the Compose host's services "
                "(set it with `pulumi config set --secret gpu-platform:composeSshPrivateKey < key`)"
            )
        return self


class LegacyEstate(pulumi.ComponentResource):
    vm_self_link: pulumi.Output[str]
    vm_status: pulumi.Output[str]

    def __init__(self, name: str, args: LegacyEstateArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gpu-platform:legacy:LegacyEstate", name, None, opts)
        vm = args.gcp_vm
        prod = args.environment == "prod"
        retired = args.gcp_vm_state == "retired"
        provider = gcp.Provider(
            f"{name}-gcp", project=vm.project, zone=vm.zone, opts=pulumi.ResourceOptions(parent=self)
        )
        on_gcp = pulumi.ResourceOptions(parent=self, provider=provider)
        disk = vm.boot_disk or vm.name
        disk_path = f"projects/{vm.project}/zones/{vm.zone}/disks/{disk}"

        vm_after: list[pulumi.Resource] = []
        if retired:
            # The VM's last state, taken while it still runs (crash-consistent; GCP supports
            # snapshots of attached disks). The snapshot is the VM's backup and outlives it.
            snapshot = gcp_compute.Snapshot(
                f"{name}-gcp-vm-final",
                name=f"{vm.name[:57]}-final",
                project=vm.project,
                zone=vm.zone,
                source_disk=disk_path,
                labels={"gpu-platform": "legacy-retire", "environment": args.environment},
                opts=pulumi.ResourceOptions.merge(on_gcp, pulumi.ResourceOptions(protect=prod, retain_on_delete=True)),
            )
            vm_after.append(snapshot)

        instance = gcp_compute.Instance(
            f"{name}-gcp-vm",
            name=vm.name,
            project=vm.project,
            zone=vm.zone,
            machine_type=vm.machine_type,
            boot_disk={"source": disk_path},
            network_interfaces=[{"network": "default"}],
            # Left unset until p4 so the import is a no-op; TERMINATED stops the VM, keeping its disks.
            desired_status="TERMINATED" if retired else None,
            opts=pulumi.ResourceOptions.merge(
                on_gcp,
                pulumi.ResourceOptions(
                    import_=f"projects/{vm.project}/zones/{vm.zone}/instances/{vm.name}",
                    # An adopted VM that holds the old platform: never deleted by Pulumi, in any
                    # stack, not even by `pulumi destroy`. Retiring it means stopping it.
                    protect=True,
                    retain_on_delete=True,
                    ignore_changes=list(VM_FIELDS_OWNED_ELSEWHERE),
                    depends_on=vm_after,
                ),
            ),
        )
        self.vm_self_link = instance.self_link
        self.vm_status = instance.current_status

        if args.compose_state == "stopped":
            assert args.compose_ssh is not None
            command.remote.Command(
                f"{name}-compose-stop",
                connection=args.compose_ssh.connection(),
                create=compose_services_command("stop", args.compose_dir),
                # Rolling p4 back starts the services again; containers and volumes were kept.
                delete=compose_services_command("start", args.compose_dir),
                opts=pulumi.ResourceOptions(parent=self, depends_on=args.compose_stop_after),
            )
        self.register_outputs({"vmSelfLink": self.vm_self_link, "vmStatus": self.vm_status})
