"""Reading a stack's config: the one validator for a Pulumi program and for offline tools.

- `load()` inside a Pulumi program (the real CLI or the recording harness): plain keys, then the
  secrets, read with `require_secret` / `get_secret` into `Secrets` so they stay `Output`s end to end;
- `parse(raw)` on a plain mapping, for tools that read a stack file directly.

Both build the typed model (components/config/schema.py) and then check what needs the whole
model: the prod registry, and that the llama servers' models fit the stack's GPUs
(components/config/sizing.py).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config
from pydantic import ValidationError

from components.config import sizing
from components.config.schema import NAMESPACE, StackConfig
from components.core.errors import ConfigError, format_validation_error

# --- secrets -----------------------------------------------------------------------------------

# Secret keys: (key, required). Declared `secret: true` in Pulumi.yaml; read only through
# `require_secret` / `get_secret` so the value is an Output marked secret from the first moment.
SECRET_KEYS: tuple[tuple[str, bool], ...] = (
    ("lambdaApiKey", True),
    ("flyApiToken", True),
    ("cloudLlmApiKey", False),
    ("backupAccessKeyId", False),
    ("backupSecretAccessKey", False),
    # Login key of the legacy Compose host (its host key is pinned in composeHost.hostKey); needed
    # from the phase that dumps its data (backups.composeData) on.
    ("composeSshPrivateKey", False),
    # Tokens of the GitHub and HubSpot MCP services; needed once platform.servicesStateless is on
    # (components/platform/platform.py names the missing one).
    ("githubToken", False),
    ("hubspotAccessToken", False),
)


# The API credentials the providers also take from the environment at call time (what CI sets):
# without the config key, the program reads the variable into a secret Output instead.
SECRET_ENV: dict[str, str] = {"lambdaApiKey": "LAMBDA_API_KEY", "flyApiToken": "FLY_API_TOKEN"}


def missing_secrets(present: set[str], environ: Mapping[str, str]) -> list[str]:
    """Required secret keys that neither config (`present`) nor the environment provides."""
    return [
        name
        for name, required in SECRET_KEYS
        if required and name not in present and not environ.get(SECRET_ENV.get(name, ""))
    ]


@dataclass(frozen=True)
class Secrets:
    lambda_api_key: pulumi.Output[str]
    fly_api_token: pulumi.Output[str]
    cloud_llm_api_key: pulumi.Output[str] | None
    backup_access_key_id: pulumi.Output[str] | None
    backup_secret_access_key: pulumi.Output[str] | None
    compose_ssh_private_key: pulumi.Output[str] | None = None
    github_token: pulumi.Output[str] | None = None
    hubspot_access_token: pulumi.Output[str] | None = None


@dataclass(frozen=True)
class Loaded:
    config: StackConfig
    secrets: Secrets


def _json_or_text(value: Any) -> Any:
    """Pulumi hands structured config to the program as JSON text; scalars stay text."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _coerce_scalars(raw: dict[str, Any]) -> dict[str, Any]:
    # The Pulumi engine passes every scalar as a string; integers declared in Pulumi.yaml arrive
    # as "4". Only the declared integer keys are converted, so a wrong type still fails clearly.
    out = dict(raw)
    for key in ("gpuTimeSlicingReplicas",):
        value = out.get(key)
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
            out[key] = int(value)
    return out


def parse(raw: Mapping[str, Any]) -> StackConfig:
    """Validate plain (non-secret) config, keyed without the namespace. Raises ConfigError."""
    secret_names = {name for name, _ in SECRET_KEYS}
    plain = {k: _json_or_text(v) for k, v in raw.items() if k not in secret_names}
    try:
        cfg = StackConfig.model_validate(_coerce_scalars(plain))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, prefix=f"{NAMESPACE}:")) from None
    check_service_images(cfg)
    check_sizing(cfg)
    return cfg


def check_sizing(cfg: StackConfig) -> None:
    """The llama servers' models fit the GPUs this stack has, whatever its phase.

    A stack that could never reach p3-local-brain is refused now, not an hour into that phase;
    `SizingError` is a `ConfigError` whose message names the keys at fault.
    """
    sizing.plan_cluster(cfg.llama, cfg.k3s_nodes, cfg.gpu_time_slicing_replicas)
    sizing.plan_workstation(cfg.llama, cfg.workstation)


def check_service_images(cfg: StackConfig) -> None:
    """A prod stack must name the registry its images come from; the default is a placeholder."""
    if cfg.is_prod and cfg.service_images.is_placeholder:
        raise ConfigError(
            f"{NAMESPACE}:serviceImages.registry: {cfg.service_images.registry!r} is the placeholder registry, and "
            "a prod stack would deploy services whose images cannot be pulled; set it to your organisation's "
            "registry (`pulumi config set --path serviceImages.registry registry.example.com/platform`)"
        )


def _stack_config_keys() -> dict[str, Any]:
    # pulumi.Config can only fetch a key it is asked for; to reject typos we need the whole bag.
    # The language host fills `CONFIG` from the engine; PULUMI_CONFIG is the fallback it reads too.
    bag: dict[str, Any] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    prefix = f"{NAMESPACE}:"
    return {key[len(prefix) :]: value for key, value in bag.items() if key.startswith(prefix)}


def check_conditional_secrets(cfg: StackConfig, present: set[str]) -> None:
    """Secrets that only some configurations need; `present` holds the secret keys that are set."""
    if cfg.router.cloud_fallback and "cloudLlmApiKey" not in present:
        raise ConfigError(
            f"{NAMESPACE}:cloudLlmApiKey: required secret is missing while {NAMESPACE}:router.cloudFallback is "
            f"true (the router falls back to {cfg.router.cloud_model}); set it with `pulumi config set --secret "
            f"cloudLlmApiKey`, or set router.cloudFallback to false to keep every request on the premises"
        )


def load() -> Loaded:
    """Read and validate this stack's config inside a Pulumi program, before any resource."""
    cfg = parse(_stack_config_keys())
    pc = pulumi.Config(NAMESPACE)
    present = {name for name, _ in SECRET_KEYS if pc.get(name) is not None}
    missing = missing_secrets(present, os.environ)
    if missing:
        keys = ", ".join(f"{NAMESPACE}:{m}" for m in missing)
        env = " or ".join(SECRET_ENV[m] for m in missing if m in SECRET_ENV)
        raise ConfigError(
            f"{keys}: required secret is missing; set it with `pulumi config set --secret <key>`"
            + (f" (or {env} in the environment)" if env else "")
        )
    check_conditional_secrets(cfg, present)

    def from_config_or_env(name: str) -> pulumi.Output[str]:
        value = pc.get_secret(name)
        return value if value is not None else pulumi.Output.secret(os.environ[SECRET_ENV[name]])

    secrets = Secrets(
        lambda_api_key=from_config_or_env("lambdaApiKey"),
        fly_api_token=from_config_or_env("flyApiToken"),
        cloud_llm_api_key=pc.get_secret("cloudLlmApiKey"),
        backup_access_key_id=pc.get_secret("backupAccessKeyId"),
        backup_secret_access_key=pc.get_secret("backupSecretAccessKey"),
        compose_ssh_private_key=pc.get_secret("composeSshPrivateKey"),
        github_token=pc.get_secret("githubToken"),
        hubspot_access_token=pc.get_secret("hubspotAccessToken"),
    )
    return Loaded(config=cfg, secrets=secrets)
