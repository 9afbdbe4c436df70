"""One GPU host, wherever it comes from: a Lambda Cloud instance, a GCP VM or an existing machine.

Every source yields the same outputs (address, private address, SSH user, GPU model and count,
SSH host public key) and a `HostHandle` whose `SshTarget` pins the host key:
- `lambda`: a `LambdaInstance` launched on the first candidate with capacity. Its SSH host key is
  generated here (`tls.PrivateKey`, ED25519) and installed at first boot by cloud-init `user_data`
  (components/scripts/cloud-init-host-key.yaml).
- `gcp`: a `compute.Instance` with the GPU of its A2/A3 machine type, `onHostMaintenance:
  TERMINATE` (GPU VMs cannot live-migrate), firewalls limited to `adminCidrs` for SSH and the K3s
  API. Its generated host key is installed by the startup script
  (components/scripts/gcp-pin-host-key.sh) from instance metadata.
- `static`: an existing machine (the RTX 4090 workstation). Nothing is created; address and host
  key come from config, where the host key is required.

Cloud hosts end with `<name>-ready`, the first SSH step (components/scripts/host-ready.sh): it
waits for first boot and the GPUs, over a connection that already checks the pinned key.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pulumi
import pulumi_command as command
import pulumi_tls as tls
from pydantic import Field, InstanceOf, model_validator

from components import HOST_SCRIPT_DIR
from components.clouds import gcp_compute
from components.clouds.lambda_cloud import TAG_RESOURCE, TAG_STACK, LambdaInstance, lambda_name
from components.config.schema import HostConfig
from components.core.errors import ConfigError
from components.core.model import Args
from components.handles import HostHandle, SshTarget
from components.hosts.access import ADMIN_TCP_PORTS, PRIVATE_KEY_OUTPUTS, PUBLIC_TCP_PORTS, AccessHandle

SCRIPTS = HOST_SCRIPT_DIR
CLOUD_INIT_TEMPLATE = SCRIPTS / "cloud-init-host-key.yaml"
GCP_PIN_SCRIPT = SCRIPTS / "gcp-pin-host-key.sh"
HOST_READY_SCRIPT = SCRIPTS / "host-ready.sh"


def render_cloud_init(host_private_key: str, host_public_key: str, template: str | None = None) -> str:
    """The cloud-init user data that installs a host key. Pure given `template` (the template text;
    None reads components/scripts/cloud-init-host-key.yaml)."""
    private = host_private_key.strip()
    public = " ".join(host_public_key.split()[:2])
    if not private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----"):
        raise ValueError("host private key must be in OpenSSH format (tls.PrivateKey.private_key_openssh)")
    if not public.startswith("ssh-ed25519 "):
        raise ValueError("host public key must be an ssh-ed25519 key")
    # The private key goes into a YAML block scalar: every line after the first needs the indent
    # the template gives the placeholder.
    indent = "\n    "
    text = CLOUD_INIT_TEMPLATE.read_text() if template is None else template
    return string.Template(text).substitute(host_private_key=indent.join(private.splitlines()), host_public_key=public)


def ssh_keys_metadata(user: str, public_key: str) -> str:
    """GCP `ssh-keys` metadata line: the guest agent creates `user` with this key (pure)."""
    return f"{user}:{' '.join(public_key.split()[:2])} {user}"


class GpuHostArgs(Args):
    host: HostConfig
    # "<project>-<stack>": prefix of provider-side names (Lambda instance name, GCP VM name).
    resource_prefix: str = Field(pattern=r"^[a-z][a-z0-9-]{0,40}$")
    access: InstanceOf[AccessHandle]
    # Prod hosts are protected: terminating one loses its local volumes and, on a server, an etcd
    # member. Tearing them down is a deliberate `pulumi state unprotect`, never a side effect.
    protect: bool = False

    @model_validator(mode="after")
    def _source_ready(self) -> GpuHostArgs:
        h = self.host
        if h.source == "lambda":
            assert h.lambda_ is not None  # HostConfig guarantees it
            if self.access.lambda_ssh_key_name is None or self.access.lambda_api_key is None:
                raise ValueError(f"host {h.name!r}: Lambda hosts need HostAccess with Lambda regions and the API key")
            missing = [c.region for c in h.lambda_.candidates if c.region not in self.access.lambda_rulesets]
            if missing:
                raise ValueError(f"host {h.name!r}: no firewall rulesets for candidate region(s) {missing}")
        if h.source == "static" and (h.address is None or h.host_key is None):
            raise ValueError(f"host {h.name!r}: static hosts need address and hostKey")
        if h.gpu_spec is None:
            raise ValueError(f"host {h.name!r}: a GPU host needs a gpu (static hosts: gpu.model and gpu.count)")
        return self


class GpuHost(pulumi.ComponentResource):
    address: pulumi.Output[str]
    private_address: pulumi.Output[str] | None
    ssh_user: str
    gpu_model: str
    gpu_count: int
    host_public_key: pulumi.Output[str]
    # (project, network tag) of a GCP VM, for firewalls made elsewhere (ClusterPeers); else None.
    gcp_target: tuple[str, str] | None
    handle: HostHandle

    def __init__(self, name: str, args: GpuHostArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gpu-platform:gpu_host:GpuHost", name, None, opts)
        host = args.host
        gpu = host.gpu_spec
        assert gpu is not None  # validated in GpuHostArgs
        self.ssh_user = host.ssh_user
        self.gpu_model = gpu.model
        self.gpu_count = gpu.count
        ready: list[pulumi.Resource] = []
        self.gcp_target = None

        if host.source == "static":
            assert host.address is not None and host.host_key is not None
            self.address = pulumi.Output.from_input(host.address)
            self.private_address = (
                pulumi.Output.from_input(host.private_address) if host.private_address is not None else None
            )
            self.host_public_key = pulumi.Output.from_input(host.host_key)
        else:
            host_key = tls.PrivateKey(
                f"{name}-host-key",
                algorithm="ED25519",
                opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=PRIVATE_KEY_OUTPUTS),
            )
            self.host_public_key = host_key.public_key_openssh.apply(lambda k: " ".join(k.split()[:2]))
            if host.source == "lambda":
                ready += self._lambda(name, args, host_key)
            else:
                ready += self._gcp(name, args, host_key)

        ssh = SshTarget(
            host=self.address,
            user=host.ssh_user,
            host_key=self.host_public_key,
            private_key=args.access.admin_private_key,
        )
        if host.source != "static":
            ready.append(
                command.remote.Command(
                    f"{name}-ready",
                    connection=ssh.connection(),
                    create=f"EXPECTED_GPUS={gpu.count} bash -s",
                    stdin=HOST_READY_SCRIPT.read_text(),
                    # Re-run when the machine is a new one (new address or new host key).
                    triggers=[self.address, self.host_public_key],
                    opts=pulumi.ResourceOptions(
                        parent=self,
                        depends_on=list(ready),
                        # host-ready.sh waits up to 15 min for cloud-init, then 15 for the GPUs.
                        custom_timeouts=pulumi.CustomTimeouts(create="35m", update="35m"),
                    ),
                )
            )

        self.handle = HostHandle(
            name=host.name,
            role=host.role,
            source=host.source,
            address=self.address,
            private_address=self.private_address,
            ssh=ssh,
            gpu=gpu,
            dedicated_gpu=host.dedicated_gpu,
            labels=dict(host.labels),
            ready=tuple(ready),
        )
        self.register_outputs(
            {
                "address": self.address,
                "private_address": self.private_address,
                "ssh_user": self.ssh_user,
                "gpu_model": self.gpu_model,
                "gpu_count": self.gpu_count,
                "host_public_key": self.host_public_key,
            }
        )

    # --- sources -----------------------------------------------------------------------------

    def _lambda(self, name: str, args: GpuHostArgs, host_key: tls.PrivateKey) -> list[pulumi.Resource]:
        host, access = args.host, args.access
        assert host.lambda_ is not None and access.lambda_api_key is not None
        assert access.lambda_ssh_key_name is not None
        regions = dict.fromkeys(c.region for c in host.lambda_.candidates)
        # The template is read here, not inside the apply: an apply is a pure transform.
        template = CLOUD_INIT_TEMPLATE.read_text()
        user_data = pulumi.Output.all(host_key.private_key_openssh, host_key.public_key_openssh).apply(
            lambda keys: render_cloud_init(keys[0], keys[1], template)
        )
        instance = LambdaInstance(
            f"{name}-instance",
            name=lambda_name(args.resource_prefix, host.name),
            hostname=host.name,
            candidates=[{"region": c.region, "instance_type": c.instance_type} for c in host.lambda_.candidates],
            ssh_key_names=[access.lambda_ssh_key_name],
            firewall_rulesets={region: access.lambda_rulesets[region] for region in regions},
            user_data=pulumi.Output.secret(user_data),
            api_key=access.lambda_api_key,
            tags={TAG_STACK: args.resource_prefix, TAG_RESOURCE: host.name, "gpu-platform-role": host.role},
            image_family=host.lambda_.image_family,
            # Depends on the SSH key and rulesets through its inputs; nothing else of HostAccess.
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        self.address = instance.ip
        self.private_address = instance.private_ip
        return [instance]

    def _gcp(self, name: str, args: GpuHostArgs, host_key: tls.PrivateKey) -> list[pulumi.Resource]:
        host, access = args.host, args.access
        g = host.gcp
        assert g is not None
        vm_name = lambda_name(args.resource_prefix, host.name)[:63].rstrip("-")
        tag = vm_name
        startup_script = GCP_PIN_SCRIPT.read_text()  # read here: the apply below stays pure
        metadata: pulumi.Output[dict[str, str]] = pulumi.Output.all(
            access.admin_public_key, host_key.private_key_openssh, host_key.public_key_openssh
        ).apply(
            lambda v: {
                "ssh-keys": ssh_keys_metadata(host.ssh_user, v[0]),
                "pinned-ssh-host-key": v[1],
                "pinned-ssh-host-key-pub": " ".join(v[2].split()[:2]),
                "startup-script": startup_script,
                # Deep Learning VM images install the NVIDIA driver on first boot when asked.
                "install-nvidia-driver": "True",
                # Keys come from this metadata only, never from project-wide keys or OS Login.
                "block-project-ssh-keys": "true",
                "enable-oslogin": "FALSE",
            }
        )
        # The whole map is secret: it holds the host private key.
        secret_metadata: pulumi.Output[dict[str, str]] = pulumi.Output.secret(metadata)
        child = pulumi.ResourceOptions(parent=self)
        firewalls = [
            gcp_compute.Firewall(
                f"{name}-admin-firewall",
                project=g.project,
                network="default",
                direction="INGRESS",
                source_ranges=list(access.admin_cidrs),
                allows=[{"protocol": "tcp", "ports": [str(p) for p in ADMIN_TCP_PORTS]}],
                target_tags=[tag],
                description=f"SSH and the K3s API of {host.name} from the admin networks only",
                opts=child,
            ),
            gcp_compute.Firewall(
                f"{name}-public-firewall",
                project=g.project,
                network="default",
                direction="INGRESS",
                source_ranges=["0.0.0.0/0"],
                allows=[{"protocol": "tcp", "ports": [str(p) for p in PUBLIC_TCP_PORTS]}],
                target_tags=[tag],
                description=f"HTTP/HTTPS to the platform ingress on {host.name}",
                opts=child,
            ),
        ]
        vm = gcp_compute.Instance(
            f"{name}-vm",
            name=vm_name,
            project=g.project,
            zone=g.zone,
            machine_type=g.machine_type,
            boot_disk={"initializeParams": {"image": g.image, "size": g.disk_gb, "type": "pd-ssd"}},
            guest_accelerators=[{"type": g.accelerator_type, "count": g.accelerator_count}],
            # GPU VMs cannot live-migrate: GCP stops them for host maintenance, then restarts them.
            scheduling={"onHostMaintenance": "TERMINATE", "automaticRestart": True},
            # An empty access config asks GCP for an ephemeral external address.
            network_interfaces=[{"network": "default", "accessConfigs": [{}]}],
            metadata=secret_metadata,
            tags=[tag],
            labels={"managed-by": "pulumi", TAG_STACK: args.resource_prefix, "gpu-platform-role": host.role},
            allow_stopping_for_update=True,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect, depends_on=firewalls),
        )
        self.address = vm.network_interfaces.apply(_nat_ip(host.name))
        self.private_address = vm.network_interfaces.apply(lambda nics: str(nics[0].get("networkIp") or ""))
        self.gcp_target = (g.project, tag)
        return [vm, *firewalls]


def _nat_ip(host: str) -> Callable[[Sequence[Mapping[str, Any]]], str]:
    def pick(nics: Sequence[Mapping[str, Any]]) -> str:
        for nic in nics:
            for ac in nic.get("accessConfigs") or []:
                if ac.get("natIp"):
                    return str(ac["natIp"])
        raise ConfigError(f"host {host!r}: the GCP VM has no external address (accessConfigs)")

    return pick
