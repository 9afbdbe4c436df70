"""Kubernetes building blocks every in-cluster component shares.

Labels and selectors, the restricted Pod Security settings, Secret-backed environment variables,
the NetworkPolicy that admits a namespace's own pods, the GPU scheduling triple (resource limit,
runtime class, toleration) and the options every in-cluster object takes (the cluster's provider,
deleted with the cluster). The platform, data stores, traffic and the llama servers all use them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pulumi

from components.catalog.services import SecretEnv
from components.handles import ClusterHandle

PART_OF = "gpu-platform"
# Label that the data stores' NetworkPolicies select on: only pods carrying
# `gpu-platform/uses-<store>: "true"` may open a connection to that store.
USES_LABEL = "gpu-platform/uses-{store}"
# The taint the K3s component puts on dedicated GPU agents, and the runtime class K3s registers
# when it finds the NVIDIA container runtime on a node.
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TOLERATION: dict[str, str] = {"key": GPU_RESOURCE, "operator": "Equal", "value": "present", "effect": "NoSchedule"}
GPU_RUNTIME_CLASS = "nvidia"

# K3s's Traefik, as a NetworkPolicy peer.
TRAEFIK_PEER: dict[str, Any] = {
    "namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": "kube-system"}},
    "pod_selector": {"match_labels": {"app.kubernetes.io/name": "traefik"}},
}


def labels(name: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/component": component,
    }


def selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": PART_OF}


def pod_security(run_as_user: int) -> dict[str, Any]:
    return {
        "run_as_non_root": True,
        "run_as_user": run_as_user,
        "run_as_group": run_as_user,
        "fs_group": run_as_user,
        "seccomp_profile": {"type": "RuntimeDefault"},
    }


def container_security(read_only_root: bool = True) -> dict[str, Any]:
    return {
        "allow_privilege_escalation": False,
        "capabilities": {"drop": ["ALL"]},
        "privileged": False,
        "read_only_root_filesystem": read_only_root,
        "run_as_non_root": True,
        "seccomp_profile": {"type": "RuntimeDefault"},
    }


def secret_env(refs: Sequence[SecretEnv]) -> list[dict[str, Any]]:
    return [
        {
            "name": r.env,
            "value_from": {
                "secret_key_ref": {"name": r.secret, "key": r.key, **({"optional": True} if r.optional else {})}
            },
        }
        for r in refs
    ]


def namespace_ingress_policy(labels: Mapping[str, str], from_namespaces: Sequence[str] = ()) -> dict[str, Any]:
    """A NetworkPolicy spec: the pods `labels` select take traffic on their `http` port from their
    own namespace and from `from_namespaces`, and from nowhere else."""
    sources: list[dict[str, Any]] = [{"pod_selector": {}}]
    sources += [
        {"namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": namespace}}}
        for namespace in from_namespaces
    ]
    return {
        "pod_selector": {"match_labels": dict(labels)},
        "policy_types": ["Ingress"],
        "ingress": [{"from": sources, "ports": [{"port": "http", "protocol": "TCP"}]}],
    }


def bearer_monitor_spec(match_labels: Mapping[str, str], secret: str, key: str) -> dict[str, Any]:
    """A ServiceMonitor spec scraping /metrics on the `http` port every 30 s with the bearer token
    stored in Secret `secret` under `key` (llama-server and LiteLLM both keep /metrics behind their key)."""
    return {
        "selector": {"matchLabels": dict(match_labels)},
        "endpoints": [
            {
                "port": "http",
                "path": "/metrics",
                "interval": "30s",
                "authorization": {"type": "Bearer", "credentials": {"name": secret, "key": key}},
            }
        ],
    }


def k8s_opts(
    parent: pulumi.Resource,
    cluster: ClusterHandle,
    *,
    depends_on: Sequence[pulumi.Resource] = (),
    protect: bool = False,
    retain_on_delete: bool = False,
    ignore_changes: Sequence[str] = (),
    custom_timeouts: pulumi.CustomTimeouts | None = None,
    delete_before_replace: bool = False,
) -> pulumi.ResourceOptions:
    """Options every in-cluster object shares: the cluster's provider, and deleted with it.

    `deleted_with` the cluster: tearing K3s down (rolling back past p2a) deletes its objects with
    it, so Pulumi does not try to talk to an API server that is already gone.
    """
    return pulumi.ResourceOptions(
        parent=parent,
        provider=cluster.provider,
        deleted_with=cluster.cluster,
        depends_on=[*cluster.ready, *depends_on],
        protect=protect,
        retain_on_delete=retain_on_delete,
        ignore_changes=list(ignore_changes) or None,
        custom_timeouts=custom_timeouts,
        delete_before_replace=delete_before_replace,
    )
