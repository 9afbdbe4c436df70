"""K3s node-to-node firewall rules, made once every node's public address is known.

Lambda attaches firewall rulesets only at launch, and a node's address exists only after its
launch, so the rules that let the nodes reach each other cannot be in the ruleset an instance is
launched with. `HostAccess` creates a `peers` ruleset per region, empty; this component fills it
(`LambdaFirewallRulesetRules`) with one rule per node address and K3s port
(`host_access.PEER_PORTS`), and opens the same ports on GCP VMs from the same addresses. Nothing
else is opened between nodes: a node reaches another node's kubelet or etcd only if it is in this
stack's node list.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pulumi
from pydantic import Field, InstanceOf, field_validator

from components.clouds import gcp_compute
from components.clouds.lambda_cloud import LambdaFirewallRulesetRules
from components.core.model import Args
from components.handles import HostHandle
from components.hosts.access import PEER_PORTS, AccessHandle, peer_rules


@dataclass(frozen=True)
class PeerNode:
    handle: HostHandle
    gcp_target: tuple[str, str] | None  # (project, network tag) for GCP VMs


class ClusterPeersArgs(Args):
    # InstanceOf: handles hold Outputs; pydantic checks the type and leaves the fields alone.
    nodes: tuple[InstanceOf[PeerNode], ...] = Field(min_length=1)
    access: InstanceOf[AccessHandle]

    @field_validator("nodes")
    @classmethod
    def _k3s_only(cls, v: tuple[PeerNode, ...]) -> tuple[PeerNode, ...]:
        for node in v:
            if node.handle.role not in ("server", "agent"):
                raise ValueError(f"host {node.handle.name!r} is a {node.handle.role}, not a K3s node")
        return v


class ClusterPeers(pulumi.ComponentResource):
    resources: list[pulumi.Resource]
    # Each node's handle again, now also waiting on the rules that let it reach its peers: the
    # handles K3s must be given (a node's install must not start before it can reach the others).
    nodes: dict[str, HostHandle]

    def __init__(self, name: str, args: ClusterPeersArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gpu-platform:cluster_peers:ClusterPeers", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        addresses = pulumi.Output.all(*[n.handle.address for n in args.nodes])
        self.resources = []

        if args.access.lambda_peer_rulesets:
            assert args.access.lambda_api_key is not None
            rules = addresses.apply(lambda addrs: peer_rules(list(addrs)))
            for region, ruleset_id in args.access.lambda_peer_rulesets.items():
                self.resources.append(
                    LambdaFirewallRulesetRules(
                        f"{name}-{region}",
                        ruleset_id=ruleset_id,
                        rules=rules,
                        api_key=args.access.lambda_api_key,
                        opts=child,
                    )
                )

        targets = sorted({n.gcp_target for n in args.nodes if n.gcp_target is not None})
        if targets:
            sources = addresses.apply(lambda addrs: sorted({f"{a}/32" for a in addrs if a}))
            allows: list[gcp_compute.FirewallRule] = [
                {"protocol": proto, "ports": [str(low) if low == high else f"{low}-{high}"]}
                for proto, low, high, _what in PEER_PORTS
            ]
            for project, tag in targets:
                self.resources.append(
                    gcp_compute.Firewall(
                        f"{name}-{tag}",
                        project=project,
                        network="default",
                        direction="INGRESS",
                        source_ranges=sources,
                        allows=allows,
                        target_tags=[tag],
                        description="K3s traffic from the other nodes of this stack's cluster",
                        opts=child,
                    )
                )

        self.nodes = {
            n.handle.name: dataclasses.replace(n.handle, ready=(*n.handle.ready, *self.resources)) for n in args.nodes
        }
        self.register_outputs({})
