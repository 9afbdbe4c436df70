"""How the stack reaches its GPU hosts: the admin SSH key and the Lambda firewall rulesets.

One `HostAccess` per stack, shared by every `GpuHost`:
- the admin key pair (`tls.PrivateKey`, ED25519) that every SSH connection logs in with; its
  private half is a secret. Lambda gets the public half as an account SSH key; GCP VMs get it in
  their `ssh-keys` metadata; a static host (the workstation) gets it once, by hand: the operator
  appends `pulumi stack output adminPublicKey` to the login user's `~/.ssh/authorized_keys`.
- per Lambda region a host may land in, two firewall rulesets, both attached at launch (Lambda
  cannot attach a ruleset to a running instance):
  `edge` - SSH (22) and the K3s API (6443) from `adminCidrs` only, HTTP/HTTPS (80/443) from
  anywhere for the platform ingress;
  `peers` - created empty; its rules (K3s traffic between the nodes' public addresses) are owned
  by `ClusterPeers`, which can only know them after the hosts exist.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pulumi
import pulumi_tls as tls
from pydantic import Field, field_validator

from components.clouds.lambda_api import FirewallRule
from components.clouds.lambda_cloud import LambdaFirewallRuleset, LambdaSshKey, lambda_name
from components.core.errors import ConfigError
from components.core.model import Args

# Ports the edge rulesets and GCP firewalls open. Why each: SSH for pulumi_command and operators,
# 6443 for kubectl from admin machines, 80/443 for the platform's ingress (ACME HTTP-01 needs 80).
ADMIN_TCP_PORTS: tuple[int, ...] = (22, 6443)
PUBLIC_TCP_PORTS: tuple[int, ...] = (80, 443)
# K3s node-to-node traffic (K3s "Inbound Rules for K3s Nodes"): etcd between servers, the API
# from agents, kubelet, flannel VXLAN and flannel WireGuard (either backend may be chosen).
PEER_PORTS: tuple[tuple[str, int, int, str], ...] = (
    ("tcp", 2379, 2380, "etcd"),
    ("tcp", 6443, 6443, "k3s api"),
    ("tcp", 10250, 10250, "kubelet"),
    ("udp", 8472, 8472, "flannel vxlan"),
    ("udp", 51820, 51821, "flannel wireguard"),
)

# The tls provider reports these private-key outputs; each is secret in the plan and in state.
PRIVATE_KEY_OUTPUTS = ["private_key_pem", "private_key_openssh", "private_key_pem_pkcs8"]


def edge_rules(admin_cidrs: tuple[str, ...]) -> list[FirewallRule]:
    rules = [
        FirewallRule("tcp", cidr, f"{'ssh' if port == 22 else 'k3s api'} from admin {cidr}", (port, port))
        for cidr in admin_cidrs
        for port in ADMIN_TCP_PORTS
    ]
    rules += [FirewallRule("tcp", "0.0.0.0/0", f"platform ingress {port}", (port, port)) for port in PUBLIC_TCP_PORTS]
    return sorted(rules)


def peer_rules(addresses: list[str]) -> list[dict[str, object]]:
    """Rules letting every K3s node reach the others' K3s ports (pure: used inside apply)."""
    rules = [
        FirewallRule(proto, f"{addr}/32", f"k3s peer {addr} {what}", (low, high))
        for addr in sorted(set(addresses))
        if addr
        for proto, low, high, what in PEER_PORTS
    ]
    return [r.to_api() for r in sorted(rules)]


class HostAccessArgs(Args):
    # "<project>-<stack>": the prefix of every name this stack creates on the provider side.
    resource_prefix: str = Field(pattern=r"^[a-z][a-z0-9-]{0,40}$")
    admin_cidrs: tuple[str, ...] = Field(min_length=1)
    # Every region a Lambda host may land in (all candidates of all Lambda hosts), in order.
    lambda_regions: tuple[str, ...] = ()
    lambda_api_key: pulumi.Output[str] | None = None

    @field_validator("lambda_regions")
    @classmethod
    def _unique(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v))


@dataclass(frozen=True)
class AccessHandle:
    """What a GpuHost needs from HostAccess."""

    admin_cidrs: tuple[str, ...]
    admin_public_key: pulumi.Output[str]  # "ssh-ed25519 AAAA..." without a trailing newline
    admin_private_key: pulumi.Output[str]  # secret, OpenSSH format
    lambda_api_key: pulumi.Output[str] | None  # secret
    lambda_ssh_key_name: pulumi.Output[str] | None
    # region -> ids of the rulesets an instance there is launched with (edge, peers)
    lambda_rulesets: dict[str, list[pulumi.Output[str]]]
    # region -> id of the peers ruleset whose rules ClusterPeers owns
    lambda_peer_rulesets: dict[str, pulumi.Output[str]]
    resources: list[pulumi.Resource]


class HostAccess(pulumi.ComponentResource):
    admin_public_key: pulumi.Output[str]
    admin_private_key: pulumi.Output[str]
    handle: AccessHandle

    def __init__(self, name: str, args: HostAccessArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        if args.lambda_regions and args.lambda_api_key is None:
            raise ConfigError(f"{name}: Lambda hosts need the lambdaApiKey secret")
        super().__init__("gpu-platform:host_access:HostAccess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        admin = tls.PrivateKey(
            f"{name}-admin-key",
            algorithm="ED25519",
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=PRIVATE_KEY_OUTPUTS),
        )
        self.admin_public_key = admin.public_key_openssh.apply(lambda k: k.strip())
        self.admin_private_key = pulumi.Output.secret(admin.private_key_openssh)
        resources: list[pulumi.Resource] = [admin]

        key_name: pulumi.Output[str] | None = None
        rulesets: dict[str, list[pulumi.Output[str]]] = {}
        peer_sets: dict[str, pulumi.Output[str]] = {}
        if args.lambda_regions and args.lambda_api_key is not None:
            # The key's name carries its fingerprint: a new admin key is a new Lambda key name, and
            # a new name replaces the instances (Lambda installs launch keys only at first boot).
            ssh_key = LambdaSshKey(
                f"{name}-lambda-ssh-key",
                name=self.admin_public_key.apply(
                    lambda k: lambda_name(args.resource_prefix, "admin", hashlib.sha256(k.encode()).hexdigest()[:8])
                ),
                public_key=self.admin_public_key,
                api_key=args.lambda_api_key,
                opts=child,
            )
            key_name = ssh_key.name
            resources.append(ssh_key)
            edge = edge_rules(args.admin_cidrs)
            for region in args.lambda_regions:
                edge_set = LambdaFirewallRuleset(
                    f"{name}-{region}-edge",
                    name=lambda_name(args.resource_prefix, region, "edge"),
                    region=region,
                    rules=edge,
                    api_key=args.lambda_api_key,
                    opts=child,
                )
                peers_set = LambdaFirewallRuleset(
                    f"{name}-{region}-peers",
                    name=lambda_name(args.resource_prefix, region, "peers"),
                    region=region,
                    rules=None,  # owned by ClusterPeers
                    api_key=args.lambda_api_key,
                    opts=child,
                )
                rulesets[region] = [edge_set.id, peers_set.id]
                peer_sets[region] = peers_set.id
                resources += [edge_set, peers_set]

        self.handle = AccessHandle(
            admin_cidrs=args.admin_cidrs,
            admin_public_key=self.admin_public_key,
            admin_private_key=self.admin_private_key,
            lambda_api_key=args.lambda_api_key,
            lambda_ssh_key_name=key_name,
            lambda_rulesets=rulesets,
            lambda_peer_rulesets=peer_sets,
            resources=resources,
        )
        self.register_outputs({"admin_public_key": self.admin_public_key})
