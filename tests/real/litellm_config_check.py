"""Run by the LiteLLM venv's python: list every key of a LiteLLM config that LiteLLM does not know.

    <litellm venv>/bin/python tests/real/litellm_config_check.py A.yaml [B.yaml ...]
        -> JSON: {path: [problem, ...]}

The proxy is lenient: `litellm_settings` keys are set on the `litellm` module whatever they are
(a typo is silently a new attribute) and unknown `router_settings` keys are logged and dropped, so
starting it proves nothing about a key. This checks each section against LiteLLM's own settings
classes and module of the installed version instead.
"""

from __future__ import annotations

import json
import sys

import litellm
import yaml
from litellm.proxy._types import ConfigGeneralSettings, ConfigYAML
from litellm.types.router import LiteLLM_Params


def problems(config: dict) -> list[str]:
    found = [f"top-level key {k!r} is not a LiteLLM config section" for k in config if k not in ConfigYAML.model_fields]
    for key in config.get("litellm_settings") or {}:
        if not hasattr(litellm, key):
            found.append(f"litellm_settings.{key} is not a LiteLLM setting")
    router_args = set(litellm.Router.get_valid_args())
    found += [
        f"router_settings.{k} is not a Router argument"
        for k in config.get("router_settings") or {}
        if k not in router_args
    ]
    found += [
        f"general_settings.{k} is not a proxy setting"
        for k in config.get("general_settings") or {}
        if k not in ConfigGeneralSettings.model_fields
    ]
    for entry in config.get("model_list") or []:
        for k in entry.get("litellm_params") or {}:
            if k not in LiteLLM_Params.model_fields:
                found.append(f"model_list[{entry.get('model_name')}].litellm_params.{k} is not a LiteLLM param")
    return found


if __name__ == "__main__":
    report = {}
    for path in sys.argv[1:]:
        with open(path) as fh:
            report[path] = problems(yaml.safe_load(fh))
    print(json.dumps(report))
