"""Bad GPU host config is refused at config time, with a message naming the key and the fix."""

from __future__ import annotations

import copy
from typing import Any
from unittest.mock import MagicMock

import pytest

from components.config.load import parse
from components.core.errors import ConfigError
from components.hosts.access import AccessHandle
from components.hosts.gpu_host import GpuHostArgs
from migrate.harness import read_stack_file, stack_file

DEV = read_stack_file(stack_file("dev"))
PROD = read_stack_file(stack_file("prod"))


def _with_host(base: dict[str, Any], index: int, **changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(base)
    host = raw["hosts"][index]
    for key, value in changes.items():
        if value is None:
            host.pop(key, None)
        else:
            host[key] = value
    return raw


def _error(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as err:
        parse(raw)
    return str(err.value)


def test_the_committed_stacks_are_valid() -> None:
    assert parse(DEV).hosts[0].source == "lambda"
    assert {h.source for h in parse(PROD).hosts} == {"lambda", "gcp", "static"}


def test_static_host_without_host_key_is_refused() -> None:
    message = _error(_with_host(DEV, 1, hostKey=None))
    assert "gpu-platform:hosts[1]" in message
    assert "static hosts need hostKey" in message and "ssh-keyscan -t ed25519 198.51.100.20" in message


def test_static_host_with_a_malformed_host_key_is_refused() -> None:
    message = _error(_with_host(DEV, 1, hostKey="ssh-ed25519 not-base64!"))
    assert "gpu-platform:hosts[1].hostKey" in message and "not an SSH public host key" in message


def test_host_key_as_ssh_keyscan_prints_it_is_accepted() -> None:
    line = "198.51.100.20 " + DEV["hosts"][1]["hostKey"]
    assert parse(_with_host(DEV, 1, hostKey=line)).hosts[1].host_key == DEV["hosts"][1]["hostKey"]


def test_unknown_instance_type_is_refused() -> None:
    raw = copy.deepcopy(DEV)
    raw["hosts"][0]["lambda"]["candidates"][0]["instanceType"] = "gpu_1x_b300"
    message = _error(raw)
    assert "gpu-platform:hosts[0].lambda.candidates[0].instanceType" in message
    assert "unknown Lambda instance type" in message and "gpu_1x_a10" in message and "'gpu_1x_b300'" in message


def test_region_without_firewall_rules_is_refused() -> None:
    raw = copy.deepcopy(DEV)
    raw["hosts"][0]["lambda"]["candidates"][1]["region"] = "us-south-1"
    message = _error(raw)
    assert "candidates[1].region" in message and "firewall rules do not apply in us-south-1" in message


def test_a_candidate_listed_twice_is_refused() -> None:
    raw = copy.deepcopy(DEV)
    first = raw["hosts"][0]["lambda"]["candidates"][0]
    raw["hosts"][0]["lambda"]["candidates"] = [first, dict(first)]
    assert "lists one region/instanceType pair twice" in _error(raw)


def test_malformed_address_is_refused() -> None:
    message = _error(_with_host(DEV, 1, address="198.51.100.300"))
    assert "gpu-platform:hosts[1].address" in message and "not a valid IP address" in message


def test_address_on_a_cloud_host_is_refused() -> None:
    message = _error(_with_host(DEV, 0, address="198.51.100.9"))
    assert "address and hostKey are only for static hosts" in message


@pytest.mark.parametrize(
    ("cidr", "expected"),
    [
        ("203.0.113.7/24", "host bits must be zero"),
        ("203.0.113.0/33", "not a valid CIDR"),
        ("0.0.0.0/0", "opens SSH and the K3s API to the internet"),
    ],
)
def test_malformed_or_open_admin_cidr_is_refused(cidr: str, expected: str) -> None:
    raw = {**copy.deepcopy(DEV), "adminCidrs": [cidr]}
    message = _error(raw)
    assert "gpu-platform:adminCidrs" in message and expected in message


def test_ipv6_admin_network_with_lambda_hosts_is_refused() -> None:
    raw = {**copy.deepcopy(DEV), "adminCidrs": ["203.0.113.0/24", "2001:db8::/32"]}
    assert "Lambda firewall rulesets take IPv4 networks only" in _error(raw)


def test_gcp_machine_type_must_carry_the_configured_gpu() -> None:
    index = next(i for i, h in enumerate(PROD["hosts"]) if h["source"] == "gcp")
    raw = copy.deepcopy(PROD)
    raw["hosts"][index]["gcp"]["machineType"] = "n1-standard-8"
    assert "carries no A100/H100" in _error(raw)
    raw["hosts"][index]["gcp"]["machineType"] = "a2-highgpu-2g"
    message = _error(raw)
    assert "a2-highgpu-2g comes with 2 x nvidia-tesla-a100" in message and "acceleratorCount: 2" in message


def test_static_gpu_host_needs_its_gpu() -> None:
    raw = _with_host(DEV, 1, gpu=None)
    raw["hosts"][1]["role"] = "agent"
    parsed = parse(raw)  # config alone allows it; the GpuHost refuses before any resource

    with pytest.raises(ValueError, match=r"static hosts: gpu\.model and gpu\.count"):
        GpuHostArgs(host=parsed.hosts[1], resource_prefix="gpu-platform-dev", access=_access())


def _access() -> Any:
    return AccessHandle(
        admin_cidrs=("203.0.113.0/24",),
        admin_public_key=MagicMock(),
        admin_private_key=MagicMock(),
        lambda_api_key=None,
        lambda_ssh_key_name=None,
        lambda_rulesets={},
        lambda_peer_rulesets={},
        resources=[],
    )


def test_lambda_host_without_rulesets_for_its_regions_is_refused() -> None:
    with pytest.raises(ValueError, match="Lambda hosts need HostAccess"):
        GpuHostArgs(host=parse(DEV).hosts[0], resource_prefix="gpu-platform-dev", access=_access())
