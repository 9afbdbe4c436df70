"""K3sCluster's pure parts: node plan and ordering, rendered config, kubeconfig rewrite, invocations."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from components.catalog import versions
from components.catalog.gpus import GpuSpec
from components.cluster import k3s
from components.core.errors import ConfigError
from components.handles import HostHandle, SshTarget

H100 = GpuSpec(model="H100-80GB")
A10 = GpuSpec(model="A10-24GB")
TOKEN = "k3s-token-for-tests-only"


def host(name: str, role: str, gpu: GpuSpec | None = H100, dedicated: bool = True, **labels: str) -> HostHandle:
    address: Any = "203.0.113.10"
    return HostHandle(
        name=name,
        role=role,
        source="lambda",
        address=address,
        private_address=None,
        ssh=SshTarget(host=address, user="ubuntu", host_key="ssh-ed25519 AAAAtest", private_key="not-a-key"),
        gpu=gpu,
        dedicated_gpu=dedicated,
        labels=dict(labels),
    )


PROD = (
    host("server-1", "server", A10, dedicated=False),
    host("server-2", "server", A10, dedicated=False),
    host("server-3", "server", A10, dedicated=False),
    host("gpu-agent-1", "agent"),
    host("gpu-agent-2", "agent"),
    host("gpu-agent-gcp", "agent"),
)


# --- plan and ordering -------------------------------------------------------------------------


def test_servers_join_one_after_another_and_agents_after_the_last_server() -> None:
    plans = {p.name: p for p in k3s.plan_nodes(PROD)}
    assert plans["server-1"].after is None
    assert plans["server-2"].after == "server-1"
    assert plans["server-3"].after == "server-2"
    for agent in ("gpu-agent-1", "gpu-agent-2", "gpu-agent-gcp"):
        assert plans[agent].after == "server-3"  # never another agent


def test_agent_order_in_config_does_not_chain_agents() -> None:
    shuffled = (PROD[3], PROD[0], PROD[4], PROD[1], PROD[5], PROD[2])
    plans = k3s.plan_nodes(shuffled)
    assert [p.name for p in plans][:3] == ["server-1", "server-2", "server-3"]
    agents = {p.name for p in plans if p.role == "agent"}
    assert all(p.after not in agents for p in plans)


def test_only_the_first_of_several_servers_initialises_etcd() -> None:
    plans = k3s.plan_nodes(PROD)
    assert [p.name for p in plans if p.cluster_init] == ["server-1"]
    assert [p.name for p in plans if p.first] == ["server-1"]
    # One server: sqlite, no cluster-init.
    (single,) = k3s.plan_nodes((host("dev-gpu-1", "server", A10, dedicated=False),))
    assert single.first and not single.cluster_init


def test_labels_and_taints_per_node() -> None:
    plans = {p.name: p for p in k3s.plan_nodes((*PROD[:3], host("gpu-agent-1", "agent", pool="big")))}
    agent = plans["gpu-agent-1"]
    assert agent.labels == {
        "gpu-platform/gpu-count": "1",
        "gpu-platform/gpu-model": "H100-80GB",
        "gpu-platform/role": "agent",
        "gpu-platform/source": "lambda",
        "nvidia.com/gpu.present": "true",
        "pool": "big",
    }
    assert [t.k3s_flag() for t in agent.taints] == ["nvidia.com/gpu=present:NoSchedule"]
    assert plans["server-1"].taints == ()  # GPU, but not dedicated: CPU pods may run there


@pytest.mark.parametrize(
    ("hosts", "message"),
    [
        ((), "at least one host with role server"),
        ((host("a", "agent"),), "at least one host with role server"),
        ((host("s1", "server"), host("s2", "server")), "2 servers; embedded etcd needs an odd number"),
        ((host("s1", "server"), host("s1", "agent")), "duplicate K3s node name"),
        ((host("s1", "server"), host("ws", "workstation")), "only role server or agent joins K3s"),
        ((host("s1", "server", **{"nvidia.com/gpu.present": "false"}),), "are set by the platform"),
    ],
)
def test_bad_host_lists_are_refused_with_the_reason(hosts: tuple[HostHandle, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        k3s.plan_nodes(hosts)


# --- settings --------------------------------------------------------------------------------


def test_settings_refuse_a_channel_and_disabling_traefik() -> None:
    with pytest.raises(ValidationError, match="never a channel"):
        k3s.K3sSettings(version="stable")
    with pytest.raises(ValidationError, match=r"cannot disable \['traefik'\]"):
        k3s.K3sSettings(disable=("traefik",))
    assert k3s.K3sSettings().version == versions.K3S_VERSION


# --- rendered config ---------------------------------------------------------------------------


def render(plan_name: str, hosts: tuple[HostHandle, ...] = PROD, **kw: Any) -> dict[str, Any]:
    plan = next(p for p in k3s.plan_nodes(hosts) if p.name == plan_name)
    args: dict[str, Any] = {
        "token": TOKEN,
        "server_url": None if plan.first else "https://203.0.113.10:6443",
        "node_ip": "10.0.0.5",
        "external_ip": "203.0.113.20",
        "tls_sans": ["203.0.113.12", "203.0.113.10", "203.0.113.11", "203.0.113.10"],
    }
    args.update(kw)
    text = k3s.render_config(plan, k3s.K3sSettings(disable=("servicelb",)), **args)
    return yaml.safe_load(text)


def test_first_server_config_initialises_the_cluster() -> None:
    config = render("server-1")
    assert config["token"] == TOKEN
    assert config["cluster-init"] is True
    assert "server" not in config
    assert config["node-name"] == "server-1"
    assert config["node-ip"] == "10.0.0.5" and config["node-external-ip"] == "203.0.113.20"
    assert config["tls-san"] == ["203.0.113.10", "203.0.113.11", "203.0.113.12"]  # sorted, deduplicated
    assert config["cluster-cidr"] == "10.42.0.0/16" and config["service-cidr"] == "10.43.0.0/16"
    assert config["disable"] == ["servicelb"]
    assert config["write-kubeconfig-mode"] == "0600"
    assert config["flannel-backend"] == "wireguard-native" and config["flannel-external-ip"] is True
    assert "node-taint" not in config


def test_joining_server_points_at_the_first_and_does_not_initialise() -> None:
    config = render("server-2")
    assert config["server"] == "https://203.0.113.10:6443"
    assert "cluster-init" not in config
    assert config["flannel-backend"] == "wireguard-native"  # servers must agree on it


def test_agent_config_has_no_server_only_keys() -> None:
    config = render("gpu-agent-1")
    assert config["server"] == "https://203.0.113.10:6443"
    assert config["node-taint"] == ["nvidia.com/gpu=present:NoSchedule"]
    for key in ("tls-san", "cluster-cidr", "service-cidr", "cluster-init", "disable", "flannel-backend"):
        assert key not in config


def test_unknown_private_address_leaves_node_ip_to_k3s() -> None:
    assert "node-ip" not in render("gpu-agent-gcp", node_ip=None)


def test_config_is_deterministic_and_carries_no_labels() -> None:
    plan = k3s.plan_nodes(PROD)[3]
    args: dict[str, Any] = {
        "token": TOKEN,
        "server_url": "https://203.0.113.10:6443",
        "node_ip": None,
        "external_ip": "203.0.113.20",
        "tls_sans": [],
    }
    a = k3s.render_config(plan, k3s.K3sSettings(), **args)
    assert a == k3s.render_config(plan, k3s.K3sSettings(), **args)
    # Labels live in the NodePatch only: changing one must not restart K3s on the node.
    assert "node-label" not in yaml.safe_load(a)


# --- kubeconfig and invocations ----------------------------------------------------------------

KUBECONFIG = (
    "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: QQ==\n    server: https://127.0.0.1:6443\n"
)


def test_kubeconfig_points_at_the_api_address() -> None:
    rewritten = k3s.rewrite_kubeconfig(KUBECONFIG, "203.0.113.10")
    assert "server: https://203.0.113.10:6443" in rewritten
    assert "127.0.0.1" not in rewritten
    assert "certificate-authority-data: QQ==" in rewritten
    assert "server: https://[2001:db8::1]:6443" in k3s.rewrite_kubeconfig(KUBECONFIG, "2001:db8::1")


def test_kubeconfig_without_a_local_server_line_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"no 'server: https://127\.0\.0\.1:<port>' line"):
        k3s.rewrite_kubeconfig("apiVersion: v1\n", "203.0.113.10")


def test_invocation_is_one_line_running_the_copied_script_as_root() -> None:
    line = k3s.invocation("ubuntu", "k3s-install.sh", env={"INSTALL_K3S_VERSION": "v1.35.5+k3s1", "ROLE": "server"})
    assert line == (
        "sudo env INSTALL_K3S_VERSION=v1.35.5+k3s1 ROLE=server bash /home/ubuntu/.gpu-platform/k3s-install.sh"
    )
    assert "\n" not in line
    assert k3s.invocation("root", "k3s-admin.sh", "node-ready", "gpu agent") == (
        "sudo bash /root/.gpu-platform/k3s-admin.sh node-ready 'gpu agent'"
    )


def test_every_script_the_cluster_copies_exists() -> None:
    for script in (*k3s.HOST_SCRIPTS, *k3s.FIRST_SERVER_SCRIPTS):
        assert (k3s.SCRIPTS_DIR / script).is_file(), script
        assert len(k3s.script_sha256(script)) == 64
