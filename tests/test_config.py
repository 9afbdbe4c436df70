"""Typed stack config: good stacks load, every kind of mistake is refused with a message naming it."""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

import pytest
import yaml

from components.config import load as config
from components.config.schema import StackConfig
from components.core.errors import ConfigError
from migrate.harness import ROOT, read_stack_file, record


def _raw(stack: str) -> dict[str, Any]:
    return read_stack_file(ROOT / f"Pulumi.{stack}.yaml")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_committed_stacks_are_valid(stack: str) -> None:
    cfg = config.parse(_raw(stack))
    assert cfg.environment == stack
    assert cfg.k3s_nodes, "every stack has K3s nodes"


def test_prod_is_ha_and_dev_is_small() -> None:
    dev, prod = config.parse(_raw("dev")), config.parse(_raw("prod"))
    assert [h.role for h in prod.k3s_nodes].count("server") == 3
    assert [h.role for h in dev.k3s_nodes].count("server") == 1
    assert len(prod.k3s_nodes) > len(dev.k3s_nodes)


def test_gpu_comes_from_the_machine_type() -> None:
    prod = config.parse(_raw("prod"))
    agent = next(h for h in prod.hosts if h.name == "gpu-agent-1")
    assert agent.gpu_spec is not None and agent.gpu_spec.model == "H100-80GB"
    gcp = next(h for h in prod.hosts if h.source == "gcp")
    assert gcp.gpu_spec is not None and gcp.gpu_spec.model == "A100-40GB"


def _host(raw: dict[str, Any], name: str) -> dict[str, Any]:
    return next(h for h in raw["hosts"] if h["name"] == name)


def _set_static_address(raw: dict[str, Any]) -> None:
    _host(raw, "workstation")["address"] = "198.51.100.300"


def _drop_static_host_key(raw: dict[str, Any]) -> None:
    del _host(raw, "workstation")["hostKey"]


def _bad_instance_type(raw: dict[str, Any]) -> None:
    _host(raw, "gpu-agent-1")["lambda"] = {"candidates": [{"region": "us-east-1", "instanceType": "gpu_1x_v100"}]}


def _bad_region(raw: dict[str, Any]) -> None:
    _host(raw, "gpu-agent-1")["lambda"] = {"candidates": [{"region": "mars-1", "instanceType": "gpu_1x_a10"}]}


def _even_servers(raw: dict[str, Any]) -> None:
    raw["hosts"] = [h for h in raw["hosts"] if h["name"] != "server-3"]


def _duplicate_host(raw: dict[str, Any]) -> None:
    raw["hosts"].append(copy.deepcopy(_host(raw, "gpu-agent-2")))


def _typo_key(raw: dict[str, Any]) -> None:
    _host(raw, "server-1")["sshUsr"] = "root"


def _unknown_stack_key(raw: dict[str, Any]) -> None:
    raw["gpuTimeslicing"] = 2


# (what is wrong, how to break a valid prod config, text the message must contain)
BAD: list[tuple[str, Any, tuple[str, ...]]] = [
    ("unknown phase", {"phase": "p9-moon"}, ("gpu-platform:phase", "p9-moon", "p0-baseline")),
    ("unknown environment", {"environment": "staging"}, ("gpu-platform:environment", "'dev' or 'prod'", "staging")),
    ("k3s channel", {"k3sVersion": "stable"}, ("gpu-platform:k3sVersion", "never a channel", "stable")),
    ("malformed CIDR", {"adminCidrs": ["203.0.113.7/24"]}, ("gpu-platform:adminCidrs", "CIDR", "203.0.113.7/24")),
    ("open admin CIDR", {"adminCidrs": ["0.0.0.0/0"]}, ("gpu-platform:adminCidrs", "0.0.0.0/0")),
    ("overlapping CIDRs", {"serviceCidr": "10.42.128.0/17"}, ("clusterCidr", "overlaps serviceCidr")),
    ("bad domain", {"domain": "not a domain"}, ("gpu-platform:domain", "not a DNS domain")),
    ("bad e-mail", {"acmeEmail": "platform"}, ("gpu-platform:acmeEmail", "e-mail")),
    ("time-slicing out of range", {"gpuTimeSlicingReplicas": 0}, ("gpu-platform:gpuTimeSlicingReplicas", "1")),
    ("no fly apps", {"flyApps": []}, ("gpu-platform:flyApps",)),
    ("allow-destroy unknown app", {"flyAllowDestroy": ["ghost"]}, ("flyAllowDestroy", "ghost")),
    ("missing compose host", {"composeHost": None}, ("gpu-platform:composeHost",)),
    ("bad address", _set_static_address, ("gpu-platform:hosts[6].address", "198.51.100.300")),
    ("static without host key", _drop_static_host_key, ("workstation", "hostKey", "ssh-keyscan")),
    ("unknown instance type", _bad_instance_type, ("instanceType", "gpu_1x_v100", "gpu_1x_a10")),
    ("unknown region", _bad_region, ("region", "mars-1", "us-east-1")),
    ("even number of servers", _even_servers, ("odd number", "quorum")),
    ("duplicate host", _duplicate_host, ("duplicate host name", "gpu-agent-2")),
    ("typo in a host key", _typo_key, ("gpu-platform:hosts[0].sshUsr", "unknown key")),
    ("typo in a stack key", _unknown_stack_key, ("gpu-platform:gpuTimeslicing", "unknown key")),
    # No placeholder image reaches a prod plan: unset, or set back to the placeholder, it is refused.
    (
        "prod without its image registry",
        {"serviceImages": None},
        ("gpu-platform:serviceImages.registry", "placeholder"),
    ),
    (
        "prod on the placeholder registry",
        {"serviceImages": {"registry": "ghcr.io/example-org"}},
        ("gpu-platform:serviceImages.registry", "'ghcr.io/example-org' is the placeholder"),
    ),
    ("a moving image tag", {"serviceImages": {"registry": "r.example.com", "tag": "latest"}}, ("serviceImages.tag",)),
    (
        "a tag for an image the platform does not run",
        {"serviceImages": {"registry": "r.example.com", "tags": {"mcp-githb": "1"}}},
        ("serviceImages.tags", "'mcp-githb' is not one of the platform's images"),
    ),
    ("a registry with a tag", {"serviceImages": {"registry": "r.example.com/platform:1"}}, ("serviceImages.registry",)),
    (
        "a digest that is not one",
        {"serviceImages": {"registry": "r.example.com", "digests": {"dashboard": "sha256:abc"}}},
        ("serviceImages.digests", "'sha256:abc' is not a digest"),
    ),
    (
        "a digest for an image the platform does not run",
        {"serviceImages": {"registry": "r.example.com", "digests": {"dashbord": "sha256:" + "0" * 64}}},
        ("serviceImages.digests", "'dashbord' is not one of the platform's images"),
    ),
]


@pytest.mark.parametrize(("what", "change", "expected"), BAD, ids=[b[0] for b in BAD])
def test_bad_config_is_refused_with_a_message_naming_it(what: str, change: Any, expected: tuple[str, ...]) -> None:
    raw = _raw("prod")
    if callable(change):
        change(raw)
    else:
        for key, value in change.items():
            if value is None:
                raw.pop(key)
            else:
                raw[key] = value
    with pytest.raises(ConfigError) as info:
        config.parse(raw)
    message = str(info.value)
    for fragment in expected:
        assert fragment in message, f"{what}: {fragment!r} not in {message!r}"
    assert "Traceback" not in message


def test_host_key_accepts_ssh_keyscan_output_with_host_prefix() -> None:
    raw = _raw("dev")
    key = _host(raw, "workstation")["hostKey"]
    _host(raw, "workstation")["hostKey"] = f"198.51.100.20 {key}"
    cfg = config.parse(raw)
    assert next(h for h in cfg.hosts if h.name == "workstation").host_key == key


def test_dev_may_plan_with_the_placeholder_registry() -> None:
    raw = _raw("dev")
    assert "serviceImages" not in raw
    assert config.parse(raw).service_images.is_placeholder


def test_config_error_in_program_registers_nothing() -> None:
    # The real program, under the harness: the bad key stops it before the first resource.
    with pytest.raises(ConfigError) as info:
        record("prod", overrides={"adminCidrs": ["not-a-cidr"]})
    assert "gpu-platform:adminCidrs" in str(info.value)
    assert "already registered" not in str(info.value)


def test_every_key_the_loader_reads_is_declared_in_pulumi_yaml() -> None:
    declared = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    read = {field.alias or name for name, field in StackConfig.model_fields.items()}
    read |= {name for name, _ in config.SECRET_KEYS}
    assert read == set(declared), f"undeclared: {read - set(declared)}; stale: {set(declared) - read}"
    for name, _required in config.SECRET_KEYS:
        assert declared[name].get("secret") is True, f"{name} must be declared secret"
    for name, decl in declared.items():
        assert decl.get("description"), f"{name} needs a description"


def test_pulumi_yaml_defaults_match_the_models() -> None:
    declared = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    for name, field in StackConfig.model_fields.items():
        key = field.alias or name
        if "default" in declared[key] and not isinstance(declared[key]["default"], dict):
            default = field.default
            default = list(default) if isinstance(default, tuple) else default
            assert declared[key]["default"] == default, key


def test_stack_files_use_documentation_addresses_only() -> None:
    docs = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
    for stack in ("dev", "prod"):
        cfg = config.parse(_raw(stack))
        addresses = [h.address for h in cfg.hosts if h.address] + [cfg.compose_host.address]
        networks = [ipaddress.ip_network(c) for c in cfg.admin_cidrs]
        for addr in addresses:
            assert any(ipaddress.ip_address(addr) in d for d in docs), f"{stack}: {addr}"
        for net in networks:
            assert any(net.subnet_of(d) for d in docs), f"{stack}: {net}"


# --- required secrets --------------------------------------------------------------------------


def test_api_credentials_may_come_from_the_environment_instead_of_config() -> None:
    everything = {"lambdaApiKey", "flyApiToken"}
    assert config.missing_secrets(everything, {}) == []
    assert config.missing_secrets(set(), {}) == ["lambdaApiKey", "flyApiToken"]
    # What CI does: the providers' own variables, no secret config.
    assert config.missing_secrets(set(), {"LAMBDA_API_KEY": "k", "FLY_API_TOKEN": "t"}) == []
    assert config.missing_secrets({"flyApiToken"}, {"LAMBDA_API_KEY": ""}) == ["lambdaApiKey"]  # empty is unset
