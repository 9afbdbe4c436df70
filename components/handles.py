"""What one component hands to the next.

Components do not reach into each other's children: a `GpuHost` yields a `HostHandle`, a
`K3sCluster` a `ClusterHandle`, the backups a `BackupHandle`. The wiring in `components/stack.py`
passes these along, so each component's Args stay small and typed. A handle is complete when it
is made: `ready` is a tuple, and a component that adds a dependency (ClusterPeers, the peer rules)
returns a new handle rather than changing the one it was given.

Handles are frozen dataclasses, not `Args`: they are built by components from their own Outputs and
resources, so there is nothing of a user's to validate in them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_command as command

from components.catalog.gpus import GpuSpec


@dataclass(frozen=True)
class SshTarget:
    """How to reach a host over SSH. `host_key` is pinned: a connection without it is a defect."""

    host: pulumi.Input[str]
    user: str
    host_key: pulumi.Input[str]
    private_key: pulumi.Input[str]  # secret; an Output marked secret by whoever made it
    port: int = 22

    def connection(self) -> command.remote.ConnectionArgs:
        return command.remote.ConnectionArgs(
            host=self.host,
            user=self.user,
            port=self.port,
            host_key=self.host_key,
            private_key=pulumi.Output.secret(self.private_key),
            dial_error_limit=20,  # hosts come up minutes after their API says active
            per_dial_timeout=15,
        )


@dataclass(frozen=True)
class HostHandle:
    name: str
    role: str  # server | agent | workstation
    source: str  # lambda | gcp | static
    address: pulumi.Output[str]
    private_address: pulumi.Output[str] | None
    ssh: SshTarget
    gpu: GpuSpec | None
    dedicated_gpu: bool
    labels: dict[str, str]
    # What a step on this host must wait for (the instance, its firewalls, the first-boot check and,
    # for a K3s node, the peer rules); never the component. Complete when the handle is made.
    ready: tuple[pulumi.Resource, ...] = ()


@dataclass(frozen=True)
class ClusterHandle:
    provider: Any  # pulumi_kubernetes.Provider; typed Any so importing this stays cheap
    # Every in-cluster object sets deleted_with=cluster: tearing K3s down removes them with it.
    cluster: pulumi.Resource
    kubeconfig: pulumi.Output[str]  # secret
    api_address: pulumi.Output[str]
    gpu_nodes: tuple[str, ...]
    ready: tuple[pulumi.Resource, ...] = ()


@dataclass(frozen=True)
class VerifiedBackup:
    """A backup object whose size and SHA-256 were recorded at write time and checked on read-back."""

    name: str
    key: pulumi.Output[str]
    sha256: pulumi.Output[str]
    size: pulumi.Output[int]
    resource: pulumi.Resource  # the verification resource; destructive steps depend on it
    # Every object the verification re-read ({"key", "sha256", "size"}), the first included: a Fly
    # app's backup is its manifest plus one archive per volume.
    objects: pulumi.Output[list[dict[str, Any]]]


@dataclass(frozen=True)
class BackupHandle:
    bucket: pulumi.Output[str]
    endpoint: str | None
    region: str
    verified: dict[str, VerifiedBackup] = field(default_factory=dict)
    ready: tuple[pulumi.Resource, ...] = ()
