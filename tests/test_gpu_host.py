"""GPU hosts: cloud-init rendering, firewall rules, and what the recorded plans of both stacks hold.

The plan tests run the real program under mocks (tests.conftest.recorded) at every phase that has
GPU hosts, and check the properties the issue asks for: every remote command pins the host key,
every secret (API key, private keys, user data) is marked secret, firewalls open SSH and the K3s
API only to adminCidrs.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
import yaml

from components.config import phases
from components.hosts.access import PEER_PORTS, edge_rules, peer_rules
from components.hosts.gpu_host import CLOUD_INIT_TEMPLATE, render_cloud_init, ssh_keys_metadata
from migrate.harness import RecordedPlan, RecordedResource
from tests.conftest import recorded

PRIVATE = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACB6c5yullmP2avgLpn0xU2iLVcB1ohuVn/2c3bUN9hzpgAAAJhm9WNhZvVj\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)
PUBLIC = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHpznK6WZj+Zq+AumfFTaItVwHWiG5Wf/Zw3bQ32YOak"

STACKS = ("dev", "prod")
GPU_PHASES = tuple(p for p in phases.phase_ids() if phases.resolve(p).state.k3s.gpu_hosts)
BEFORE_GPU = tuple(p for p in phases.phase_ids() if not phases.resolve(p).state.k3s.gpu_hosts)
ADMIN = {"dev": ["203.0.113.0/24"], "prod": ["203.0.113.0/24", "198.51.100.64/26"]}
INSTANCE = "pulumi-python:dynamic/lambda_cloud:LambdaInstance"
RULESET = "pulumi-python:dynamic/lambda_cloud:LambdaFirewallRuleset"
PRIVATE_OUTPUTS = {"privateKeyOpenssh", "privateKeyPem", "privateKeyPemPkcs8"}


# --- pure pieces -------------------------------------------------------------------------------


def test_cloud_init_installs_exactly_the_pinned_key() -> None:
    text = render_cloud_init(PRIVATE, PUBLIC + " comment\n")
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    assert doc["ssh_keys"] == {"ed25519_private": PRIVATE, "ed25519_public": PUBLIC}
    # No other host key type is kept (deletekeys), and none generated: with ssh_keys given, cloud-init
    # generates nothing, and the list names only the pinned type (tests/test_real_validators.py runs
    # the real `cloud-init schema` on this document).
    assert doc["ssh_deletekeys"] is True and doc["ssh_genkeytypes"] == ["ed25519"]
    assert "${" not in text


def test_cloud_init_template_is_a_file_with_placeholders() -> None:
    template = CLOUD_INIT_TEMPLATE.read_text()
    assert "${host_private_key}" in template and "${host_public_key}" in template


@pytest.mark.parametrize(
    ("private", "public", "match"),
    [
        ("-----BEGIN RSA PRIVATE KEY-----\nx\n-----END RSA PRIVATE KEY-----\n", PUBLIC, "OpenSSH format"),
        (PRIVATE, "ssh-rsa AAAAB3NzaC1yc2E", "ssh-ed25519"),
    ],
)
def test_cloud_init_refuses_keys_it_cannot_install(private: str, public: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        render_cloud_init(private, public)


def test_gcp_ssh_keys_metadata_line() -> None:
    assert ssh_keys_metadata("ubuntu", PUBLIC + " x@y\n") == f"ubuntu:{PUBLIC} ubuntu"


def test_edge_rules_open_ssh_and_k3s_only_to_admins() -> None:
    rules = edge_rules(("203.0.113.0/24", "198.51.100.64/26"))
    world = [r for r in rules if r.source_network == "0.0.0.0/0"]
    assert sorted(r.port_range or (0, 0) for r in world) == [(80, 80), (443, 443)]
    admin = [r for r in rules if r.source_network != "0.0.0.0/0"]
    assert sorted((r.source_network, r.port_range) for r in admin) == [
        ("198.51.100.64/26", (22, 22)),
        ("198.51.100.64/26", (6443, 6443)),
        ("203.0.113.0/24", (22, 22)),
        ("203.0.113.0/24", (6443, 6443)),
    ]
    assert all(r.protocol == "tcp" for r in rules)


def test_peer_rules_cover_every_node_and_k3s_port_only() -> None:
    rules = peer_rules(["198.51.100.7", "203.0.113.9", "198.51.100.7", ""])
    sources = {r["source_network"] for r in rules}
    assert sources == {"198.51.100.7/32", "203.0.113.9/32"}
    assert len(rules) == 2 * len(PEER_PORTS)
    assert {(r["protocol"], tuple(r["port_range"])) for r in rules} == {  # type: ignore[arg-type]
        (p, (lo, hi)) for p, lo, hi, _ in PEER_PORTS
    }


# --- the recorded plans ------------------------------------------------------------------------


def _host_keys(plan: RecordedPlan) -> dict[str, str]:
    """address -> pinned host key, for every GPU host the plan exports."""
    return {h["address"]: h["hostKey"] for h in plan.outputs["hosts"].values()}


def _by_type(plan: RecordedPlan, prefix: str) -> list[RecordedResource]:
    return [r for r in plan.resources if r.type.startswith(prefix)]


@pytest.mark.slow
@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("phase", GPU_PHASES)
def test_every_remote_command_pins_the_host_key(stack: str, phase: str) -> None:
    plan = recorded(stack, phase)
    keys = _host_keys(plan)
    commands = _by_type(plan, "command:remote:")
    assert commands, "a GPU phase runs remote steps"
    for r in commands:
        # The provider receives the connection unwrapped: the mock echo shows what it got.
        conn = r.outputs["connection"]
        assert conn.get("hostKey", "").startswith("ssh-"), f"{r.name}: connection without a pinned host key"
        if conn["host"] in keys:
            assert conn["hostKey"] == keys[conn["host"]], f"{r.name}: pins another host's key"
        assert "connection" in r.secret_inputs, f"{r.name}: the connection (private key) is not secret"
        assert conn.get("privateKey"), f"{r.name}: no login key"


@pytest.mark.slow
@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("phase", GPU_PHASES)
def test_every_secret_is_marked_secret(stack: str, phase: str) -> None:
    plan = recorded(stack, phase)
    keys = plan.of_type("tls:index/privateKey:PrivateKey")
    assert keys
    for r in keys:
        assert set(r.secret_outputs) >= PRIVATE_OUTPUTS, r.name
        assert set(r.additional_secret_outputs) >= PRIVATE_OUTPUTS, r.name
    lambda_resources = _by_type(plan, "pulumi-python:dynamic/lambda_cloud:")
    assert lambda_resources
    for r in lambda_resources:
        assert "api_key" in r.secret_inputs and "api_key" in r.secret_outputs, r.name
        assert r.inputs["api_key"] == "[secret]"
    for r in plan.of_type(INSTANCE):
        assert "user_data" in r.secret_inputs, f"{r.name}: user_data holds the host private key"
    for r in plan.of_type("gcp:compute/instance:Instance"):
        if "gpu_host:GpuHost" in r.parent:
            assert "metadata" in r.secret_inputs, f"{r.name}: metadata holds the host private key"
    assert "offline-placeholder" not in repr(plan.to_json())
    # Addresses and host keys are exported in the clear; nothing secret hides in them.
    assert "hosts" not in plan.secret_stack_outputs and "adminPublicKey" not in plan.secret_stack_outputs
    assert "adminPrivateKey" in plan.secret_stack_outputs


@pytest.mark.parametrize("stack", STACKS)
def test_lambda_rulesets_admit_admins_only_to_ssh_and_k3s(stack: str) -> None:
    plan = recorded(stack, "p2a-k3s")
    edges = [r for r in plan.of_type(RULESET) if r.name.endswith("-edge")]
    assert edges
    for r in edges:
        for rule in r.inputs["rules"]:
            ports = tuple(int(p) for p in rule["port_range"])
            if rule["source_network"] == "0.0.0.0/0":
                assert ports in ((80, 80), (443, 443)), f"{r.name}: {ports} open to the world"
            else:
                assert rule["source_network"] in ADMIN[stack] and ports in ((22, 22), (6443, 6443))
    peers = [r for r in plan.of_type(RULESET) if r.name.endswith("-peers")]
    assert {r.inputs["region"] for r in peers} == {r.inputs["region"] for r in edges}
    assert all(r.inputs.get("rules") is None for r in peers)  # owned by ClusterPeers
    # Each instance is launched with the edge and peers rulesets of every region it may land in.
    ids = {r.urn: r.outputs.get("ruleset_id") for r in plan.of_type(RULESET)}
    for inst in plan.of_type(INSTANCE):
        regions = {c["region"] for c in inst.inputs["candidates"]}
        assert set(inst.inputs["firewall_rulesets"]) == regions
        for attached in inst.inputs["firewall_rulesets"].values():
            assert len(attached) == 2
        assert len(ids) == 2 * len({r.inputs["region"] for r in edges})


def test_cluster_peer_rules_list_every_k3s_node() -> None:
    plan = recorded("prod", "p2a-k3s")
    nodes = {h["address"] for h in plan.outputs["hosts"].values() if h["role"] in ("server", "agent")}
    rules = plan.of_type("pulumi-python:dynamic/lambda_cloud:LambdaFirewallRulesetRules")
    assert rules
    for r in rules:
        assert {rule["source_network"].removesuffix("/32") for rule in r.inputs["rules"]} == nodes
    gcp_peers = [r for r in plan.of_type("gcp:compute/firewall:Firewall") if r.name.startswith("k3s-peers-")]
    assert len(gcp_peers) == 1
    assert {s.removesuffix("/32") for s in gcp_peers[0].inputs["sourceRanges"]} == nodes
    # The workstation is no K3s node and gets no peer access.
    assert plan.outputs["hosts"]["workstation"]["address"] not in nodes


def test_gcp_gpu_vm_shape_and_firewalls() -> None:
    plan = recorded("prod", "p2a-k3s")
    vm = plan.named("gpu-agent-gcp-vm")
    assert vm.inputs["scheduling"]["onHostMaintenance"] == "TERMINATE"
    assert vm.inputs["guestAccelerators"] == [{"type": "nvidia-tesla-a100", "count": 1}]
    assert vm.inputs["machineType"] == "a2-highgpu-1g"
    assert vm.protect, "prod GPU hosts are protected"
    metadata = vm.outputs["metadata"]
    assert metadata["pinned-ssh-host-key-pub"] == plan.outputs["hosts"]["gpu-agent-gcp"]["hostKey"]
    assert metadata["ssh-keys"].startswith("ubuntu:ssh-ed25519 ")
    assert metadata["startup-script"].startswith("#!/usr/bin/env bash")
    admin = plan.named("gpu-agent-gcp-admin-firewall")
    assert sorted(admin.inputs["sourceRanges"]) == sorted(ADMIN["prod"])
    assert admin.inputs["allows"] == [{"protocol": "tcp", "ports": ["22", "6443"]}]
    public = plan.named("gpu-agent-gcp-public-firewall")
    assert public.inputs["sourceRanges"] == ["0.0.0.0/0"]
    assert public.inputs["allows"] == [{"protocol": "tcp", "ports": ["80", "443"]}]
    for fw in (admin, public):
        assert fw.inputs["targetTags"] == vm.inputs["tags"]


@pytest.mark.parametrize(("stack", "protected"), [("dev", False), ("prod", True)])
def test_cloud_hosts_are_protected_in_prod_only(stack: str, protected: bool) -> None:
    plan = recorded(stack, "p2a-k3s")
    for r in plan.of_type(INSTANCE):
        assert r.protect is protected, r.name
        # A same-named successor must not adopt the instance being replaced (lambda_cloud.diff).
        assert r.delete_before_replace, r.name


def test_lambda_instance_inputs(stack: str = "dev") -> None:
    plan = recorded(stack, "p2a-k3s")
    inst = plan.named("dev-gpu-1-instance")
    assert inst.inputs["name"] == "gpu-platform-dev-dev-gpu-1"
    assert inst.inputs["hostname"] == "dev-gpu-1"
    assert [c["region"] for c in inst.inputs["candidates"]] == ["us-east-1", "us-west-1"]
    assert inst.inputs["ssh_key_names"] == [plan.named("hosts-lambda-ssh-key").outputs["name"]]
    # The Lambda key's name carries the admin key's fingerprint (a new admin key is a new name).
    assert plan.named("hosts-lambda-ssh-key").inputs["public_key"] == plan.outputs["adminPublicKey"]


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("phase", BEFORE_GPU)
def test_no_gpu_hosts_before_their_phase(stack: str, phase: str) -> None:
    plan = recorded(stack, phase)
    assert not _by_type(plan, "pulumi-python:dynamic/lambda_cloud:")
    assert not plan.of_type("gpu-platform:gpu_host:GpuHost")
    assert "hosts" not in plan.outputs


@pytest.mark.parametrize("stack", STACKS)
def test_workstation_is_a_static_host_with_its_configured_key(stack: str) -> None:
    plan = recorded(stack, "p2a-k3s")
    ws = plan.outputs["hosts"]["workstation"]
    assert ws["source"] == "static" and ws["address"] == "198.51.100.20" and ws["sshUser"] == "platform"
    assert ws["hostKey"].startswith("ssh-ed25519 AAAAC3")
    assert ws["gpu"] == {"model": "RTX4090-24GB", "count": 1}
    component = [r for r in plan.of_type("gpu-platform:gpu_host:GpuHost") if r.name == "workstation"]
    assert len(component) == 1
    children = [r for r in plan.resources if r.parent == component[0].urn]
    assert children == [], "nothing is created for an existing machine"


@pytest.mark.parametrize("stack", STACKS)
def test_every_gpu_host_exports_the_same_facts(stack: str) -> None:
    plan = recorded(stack, "p2a-k3s")
    for name, host in plan.outputs["hosts"].items():
        assert set(host) >= {"address", "sshUser", "hostKey", "gpu", "role", "source"}, name
        if host["source"] != "static":  # a cloud host always has a private address too
            assert ipaddress.ip_address(host["privateAddress"]).is_private, name
        assert host["hostKey"].startswith("ssh-ed25519 "), name
        assert host["gpu"]["count"] >= 1


def _doc_range(addr: str) -> bool:
    return any(
        ipaddress.ip_address(addr) in ipaddress.ip_network(n)
        for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
    )


@pytest.mark.parametrize("stack", STACKS)
def test_mocked_addresses_are_documentation_ranges(stack: str) -> None:
    plan: Any = recorded(stack, "p2a-k3s")
    assert all(_doc_range(h["address"]) for h in plan.outputs["hosts"].values())
