"""A Pulumi program that builds the local brain (components/llm/llama.py) against stand-in handles.

The recording harness runs it in place of `__main__.py` (`record(stack, program=...)`), so the
llama servers and the router are recorded with the real config loader, the real sizing and the
real mocks, without waiting for the K3s and GPU-host components. The stand-ins have the shape of
the real handles (components/handles.py): a kubernetes Provider, a resource standing for the
cluster, and the workstation's SSH target from stack config.
"""

from __future__ import annotations

import pulumi
import pulumi_command as command
import pulumi_kubernetes as k8s

from components.config import load
from components.config.phases import LlamaState
from components.handles import ClusterHandle, HostHandle, SshTarget
from components.llm.llama import build_local_brain
from tests.fakes.llama_recording import MONITOR_LABELS, STORAGE_CLASS

loaded = load.load()
cfg = loaded.config
provider = k8s.Provider("k8s", kubeconfig=pulumi.Output.secret("apiVersion: v1\nkind: Config\n"))
# Stands for the K3s server install; the real handle's `cluster` is such a remote command.
cluster_resource = command.remote.Command(
    "cluster",
    connection=command.remote.ConnectionArgs(host="203.0.113.10", user="ubuntu", host_key="ssh-ed25519 AAAA"),
    create="true",
)
gpu_nodes = tuple(h.name for h in cfg.k3s_nodes if h.gpu_spec is not None)
cluster = ClusterHandle(
    provider=provider,
    cluster=cluster_resource,
    kubeconfig=pulumi.Output.secret("apiVersion: v1\nkind: Config\n"),
    api_address=pulumi.Output.from_input("203.0.113.10"),
    gpu_nodes=gpu_nodes,
)
host = cfg.workstation
assert host is not None and host.address is not None and host.host_key is not None
workstation = HostHandle(
    name=host.name,
    role=host.role,
    source=host.source,
    address=pulumi.Output.from_input(host.address),
    private_address=None,
    ssh=SshTarget(
        host=host.address,
        user=host.ssh_user,
        host_key=host.host_key,
        private_key=pulumi.Output.secret("not-a-key"),
    ),
    gpu=host.gpu_spec,
    dedicated_gpu=host.dedicated_gpu,
    labels=dict(host.labels),
)
outputs = build_local_brain(
    cfg,
    loaded.secrets,
    LlamaState(workstation=True, cluster=True, router=True),
    cluster=cluster,
    workstation=workstation,
    storage_class=STORAGE_CLASS,
    monitor_labels=MONITOR_LABELS,
    monitoring_namespace="test-monitoring",
    client_namespaces=("test-clients",),
)
for key, value in outputs.items():
    pulumi.export(key, value)
