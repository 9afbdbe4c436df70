"""The router: its rendered LiteLLM config (pure) and its recorded Kubernetes objects."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from components.catalog import versions
from components.llm.router import (
    CLOUD_GROUP,
    ENV_CLOUD_KEY,
    ENV_LOCAL_KEY,
    ENV_MASTER_KEY,
    RouterSettings,
    render_config,
)
from tests.fakes.llama_recording import brain

BASE = {
    "local_url": "http://llama.llm.svc.cluster.local:8080",
    "local_model": "llama-3.1-70b-instruct-q4_k_m",
    "local_aliases": ("local", "local-private"),
    "local_timeout_seconds": 30,
}


def _render(**over: Any) -> dict[str, Any]:
    return yaml.safe_load(render_config(RouterSettings(**{**BASE, **over})))


def test_local_aliases_all_point_at_the_llama_server_first() -> None:
    cfg = _render()
    groups = {m["model_name"]: m["litellm_params"] for m in cfg["model_list"]}
    assert set(groups) == {"local", "local-private"}
    for params in groups.values():
        assert params["model"] == "openai/llama-3.1-70b-instruct-q4_k_m"
        assert params["api_base"] == "http://llama.llm.svc.cluster.local:8080/v1"
        assert params["api_key"] == f"os.environ/{ENV_LOCAL_KEY}"
        assert params["timeout"] == 30 and params["stream_timeout"] == 30
    assert cfg["router_settings"]["fallbacks"] == []
    assert cfg["general_settings"]["master_key"] == f"os.environ/{ENV_MASTER_KEY}"


def test_only_the_allowed_aliases_fall_back_to_the_cloud() -> None:
    cfg = _render(fallback_aliases=("local",), cloud_model="openai/gpt-4o-mini")
    assert cfg["router_settings"]["fallbacks"] == [{"local": [CLOUD_GROUP]}]
    cloud = next(m for m in cfg["model_list"] if m["model_name"] == CLOUD_GROUP)
    assert cloud["litellm_params"] == {
        "model": "openai/gpt-4o-mini",
        "api_key": f"os.environ/{ENV_CLOUD_KEY}",
        "timeout": 120,
    }
    # A slow local model costs one timeout before the fallback, not several.
    assert cfg["router_settings"]["num_retries"] == 0


def test_no_cloud_model_is_rendered_without_a_fallback() -> None:
    text = render_config(RouterSettings(**BASE, cloud_model="openai/gpt-4o-mini"))
    assert CLOUD_GROUP not in text and ENV_CLOUD_KEY not in text


def test_rendering_is_deterministic_and_carries_no_secret() -> None:
    a = render_config(RouterSettings(**BASE, fallback_aliases=("local",), cloud_model="openai/gpt-4o-mini"))
    b = render_config(RouterSettings(**BASE, fallback_aliases=("local",), cloud_model="openai/gpt-4o-mini"))
    assert a == b
    assert "sk-" not in a  # keys come from the environment only


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"fallback_aliases": ("other",), "cloud_model": "openai/gpt-4o-mini"}, "not local aliases"),
        ({"fallback_aliases": ("local",)}, "need a cloud model"),
        ({"local_url": "http://llama/v1"}, "local_url"),
    ],
)
def test_inconsistent_settings_are_refused(over: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RouterSettings(**{**BASE, **over})


# --- recorded ----------------------------------------------------------------------------------


def test_recorded_router_config_falls_back_only_for_local() -> None:
    plan = brain("prod")
    cfg = yaml.safe_load(plan.named("llm-router-config").inputs["data"]["config.yaml"])
    assert cfg["router_settings"]["fallbacks"] == [{"local": [CLOUD_GROUP]}]
    local = next(m for m in cfg["model_list"] if m["model_name"] == "local-private")
    assert local["litellm_params"]["api_base"] == "http://llama.llm.svc.cluster.local:8080/v1"


def test_router_keys_are_secrets_referenced_from_the_pod() -> None:
    plan = brain("prod")
    keys = plan.named("llm-router-keys")
    assert "stringData" in keys.secret_inputs
    dep = plan.named("llm-router-deployment").inputs
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "valueFrom" in e}
    assert env == {
        ENV_MASTER_KEY: {"name": "router-keys", "key": "master-key"},
        ENV_LOCAL_KEY: {"name": "llama-api-key", "key": "api-key"},
        ENV_CLOUD_KEY: {"name": "router-keys", "key": "cloud-api-key"},
    }
    plain = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    assert plain == {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "XDG_CACHE_HOME": "/tmp/cache"}
    assert c["image"] == versions.LITELLM_IMAGE
    assert "routerMasterKey" in plan.secret_stack_outputs
    # The offline placeholder of the cloud key never shows up in plain inputs.
    assert "offline-placeholder-cloudLlmApiKey" not in json.dumps([r.inputs for r in plan.resources])


def test_router_config_change_rolls_the_pods() -> None:
    plan = brain("prod")
    dep = plan.named("llm-router-deployment").inputs
    text = plan.named("llm-router-config").inputs["data"]["config.yaml"]
    annotation = dep["spec"]["template"]["metadata"]["annotations"]["gpu-platform/config-sha256"]
    assert annotation == hashlib.sha256(text.encode()).hexdigest()


def test_router_runs_non_root_with_probes_and_a_disruption_budget_in_prod() -> None:
    plan = brain("prod")
    spec = plan.named("llm-router-deployment").inputs["spec"]
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (c,) = pod["containers"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/health/readiness"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health/liveliness"
    assert spec["replicas"] == 2
    assert plan.named("llm-router-pdb").inputs["spec"]["minAvailable"] == 1
    assert plan.named("llm-router-service").inputs["spec"]["type"] == "ClusterIP"


def test_router_root_filesystem_is_read_only_with_one_writable_emptydir() -> None:
    pod = brain("prod").named("llm-router-deployment").inputs["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    writable = [m for m in c["volumeMounts"] if not m.get("readOnly")]
    # The only writable path is an emptyDir at /tmp, and the image's cache directory is under it.
    assert [(m["mountPath"], "emptyDir" in volumes[m["name"]]) for m in writable] == [("/tmp", True)]
    assert volumes["tmp"]["emptyDir"]["sizeLimit"]
    cache = next(e["value"] for e in c["env"] if e["name"] == "XDG_CACHE_HOME")
    assert cache.startswith("/tmp/")


def test_dev_router_is_sized_for_what_its_small_model_can_stream() -> None:
    # Dev configures one replica, but TinyLlama on an A10 can stream ~1,800 tokens/s, which needs
    # ~6 router cores (components/config/router_sizing.py): more pods, so a disruption budget too.
    plan = brain("dev")
    spec = plan.named("llm-router-deployment").inputs["spec"]
    (c,) = spec["template"]["spec"]["containers"]
    assert (spec["replicas"], c["args"][-1], c["resources"]["requests"]["cpu"]) == (4, "2", "2000m")
    assert plan.named("llm-router-pdb").inputs["spec"]["minAvailable"] == 1


def test_only_its_namespace_and_the_client_namespaces_reach_the_router() -> None:
    policy = brain("prod").named("llm-router-ingress").inputs["spec"]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "llm-router"
    (rule,) = policy["ingress"]
    assert rule["from"] == [
        {"podSelector": {}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "test-clients"}}},
        # Prometheus, which scrapes /metrics through the router's ServiceMonitor.
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "test-monitoring"}}},
    ]
