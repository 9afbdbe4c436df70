"""The llama servers as recorded: the K3s Deployment (prod's 70B, dev's TinyLlama) and the
workstation container, from the real config, sizing and component code (tests/fakes/llama_program.py
stands in for the K3s and GPU-host handles)."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from typing import Any

import kubernetes_validate
import pytest

from components.catalog import versions
from components.catalog.gguf import MODELS, resolve
from components.config.load import check_conditional_secrets, parse
from components.core.errors import ConfigError
from components.llm.llama import model_volume_gib, rollout_budget_minutes, startup_budget_seconds
from migrate.harness import RecordedPlan, RecordedResource, read_stack_file, stack_file
from tests.fakes.llama_recording import MONITOR_LABELS, STORAGE_CLASS, brain

M70 = MODELS["llama-3.1-70b-instruct-q4_k_m"]


def _deployment(plan: RecordedPlan) -> dict[str, Any]:
    return plan.named("llama-cluster-deployment").inputs


def _pod(plan: RecordedPlan) -> dict[str, Any]:
    return _deployment(plan)["spec"]["template"]["spec"]


def _server(plan: RecordedPlan) -> dict[str, Any]:
    (c,) = _pod(plan)["containers"]
    return c


def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


# --- prod: the 70B model on the H100 agents ----------------------------------------------------


def test_prod_runs_the_70b_with_every_layer_on_the_h100() -> None:
    plan = brain("prod")
    args = _server(plan)["args"]
    assert _flag(args, "--model") == f"/models/{M70.file_name}"
    assert _flag(args, "--n-gpu-layers") == "81"  # 80 layers + the output layer
    assert _flag(args, "--ctx-size") == "32768" and _flag(args, "--parallel") == "4"
    assert _flag(args, "--flash-attn") == "on"
    assert "--metrics" in args and "--no-slots" in args
    terms = _pod(plan)["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    (expr,) = terms["nodeSelectorTerms"][0]["matchExpressions"]
    assert expr == {"key": "kubernetes.io/hostname", "operator": "In", "values": ["gpu-agent-1", "gpu-agent-2"]}
    assert plan.outputs["llamaCluster"]["fullOffload"] is True
    assert plan.outputs["llamaCluster"]["gpu"] == "H100-80GB"


def test_the_deployment_recreates_on_the_gpu_runtime_with_gpu_limits_and_toleration() -> None:
    plan = brain("prod")
    spec = _deployment(plan)["spec"]
    assert spec["strategy"] == {"type": "Recreate"} and spec["replicas"] == 1
    pod = _pod(plan)
    assert pod["runtimeClassName"] == "nvidia"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert _server(plan)["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert _server(plan)["image"] == versions.LLAMA_CPP_SERVER_IMAGE
    # The build tests/real runs every rendered command line against (tests/test_llm_tools.py).
    assert versions.LLAMA_CPP_SERVER_IMAGE.endswith(f"-{versions.LLAMA_CPP_TEST_SOURCE['build']}")


def test_probes_are_on_health_and_startup_allows_minutes_for_the_70b() -> None:
    server = _server(brain("prod"))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["httpGet"] == {"path": "/health", "port": "http"}
    startup = server["startupProbe"]
    allowed = startup["failureThreshold"] * startup["periodSeconds"]
    assert allowed >= startup_budget_seconds(M70) >= 5 * 60


def test_the_model_is_fetched_and_verified_by_an_init_container() -> None:
    plan = brain("prod")
    (init,) = _pod(plan)["initContainers"]
    assert init["command"] == ["/bin/sh", "/scripts/fetch-model.sh"]
    env = {e["name"]: e["value"] for e in init["env"]}
    assert env == {"MODEL_URL": M70.url, "MODEL_SHA256": M70.sha256, "MODEL_PATH": f"/models/{M70.file_name}"}
    script = plan.named("llama-cluster-script").inputs["data"]["fetch-model.sh"]
    assert "sha256sum" in script and "refusing to serve it" in script
    mounts = {m["name"]: m for m in init["volumeMounts"]}
    assert mounts["script"]["mountPath"] == "/scripts" and mounts["models"]["mountPath"] == "/models"
    # The server itself only reads the verified file.
    server_mounts = {m["name"]: m for m in _server(plan)["volumeMounts"]}
    assert server_mounts["models"]["readOnly"] is True


def test_prod_model_volume_is_retained_and_protected_on_the_retain_class() -> None:
    pvc = brain("prod").named("llama-cluster-models")
    assert pvc.protect and pvc.retain_on_delete
    assert pvc.inputs["spec"]["storageClassName"] == STORAGE_CLASS
    assert pvc.inputs["spec"]["resources"]["requests"]["storage"] == f"{model_volume_gib(M70)}Gi"
    assert model_volume_gib(M70) * 2**30 > M70.file_gb * 1e9


def test_dev_model_volume_is_neither_protected_nor_retained() -> None:
    pvc = brain("dev").named("llama-cluster-models")
    assert not pvc.protect and not pvc.retain_on_delete


def test_the_api_key_is_a_secret_passed_by_reference_never_literal() -> None:
    plan = brain("prod")
    secret = plan.named("llama-cluster-api-key-secret")
    assert "stringData" in secret.secret_inputs
    (env,) = _server(plan)["env"]
    assert env == {"name": "LLAMA_API_KEY", "valueFrom": {"secretKeyRef": {"name": "llama-api-key", "key": "api-key"}}}
    key = plan.named("llama-cluster-api-key")
    assert key.type == "random:index/randomPassword:RandomPassword"
    assert "llamaClusterApiKey" in plan.secret_stack_outputs
    # The mock's generated key appears nowhere in plain inputs.
    value = key.outputs.get("result")
    dumped = json.dumps([r.inputs for r in plan.resources])
    assert isinstance(value, str) and len(value) == 40 and value not in dumped


def test_the_pod_runs_under_the_restricted_profile() -> None:
    plan = brain("prod")
    ns = plan.named("llama-cluster-namespace").inputs["metadata"]["labels"]
    assert ns["pod-security.kubernetes.io/enforce"] == "restricted"
    pod = _pod(plan)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in pod["containers"] + pod["initContainers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["readOnlyRootFilesystem"] is True


def test_service_is_cluster_ip_and_metrics_are_scraped_with_the_key() -> None:
    plan = brain("prod")
    svc = plan.named("llama-cluster-service").inputs["spec"]
    assert svc["type"] == "ClusterIP" and svc["ports"][0]["port"] == 8080
    monitor = plan.named("llama-cluster-monitor")
    assert monitor.type == "kubernetes:monitoring.coreos.com/v1:ServiceMonitor"
    assert monitor.inputs["metadata"]["labels"]["release"] == MONITOR_LABELS["release"]
    (endpoint,) = monitor.inputs["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["authorization"]["credentials"] == {"name": "llama-api-key", "key": "api-key"}


def test_every_object_goes_with_the_cluster_and_uses_its_provider() -> None:
    plan = brain("prod")
    cluster = plan.named("cluster").urn
    k8s = [r for r in plan.resources if r.type.startswith("kubernetes:") and r.custom]
    assert k8s and all(r.deleted_with == cluster for r in k8s)
    assert all(r.provider.endswith("::k8s") for r in k8s)


def test_rollout_waits_long_enough_for_the_first_download() -> None:
    dep = brain("prod").named("llama-cluster-deployment")
    budget = f"{rollout_budget_minutes(M70)}m"
    assert dep.custom_timeouts == {"create": budget, "update": budget}
    # 42.5 GB at 50 MB/s is 14 minutes before the load even starts.
    assert rollout_budget_minutes(M70) > 14 * 2


def _validatable(r: RecordedResource) -> dict[str, Any]:
    doc = copy.deepcopy(r.inputs)
    if doc.get("stringData") == "[secret]":
        doc["stringData"] = {"api-key": "redacted"}

    def ints(v: Any) -> Any:  # the wire carries numbers as floats
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, dict):
            return {k: ints(x) for k, x in v.items()}
        if isinstance(v, list):
            return [ints(x) for x in v]
        return v

    return ints(doc)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_manifests_validate_strictly(stack: str) -> None:
    plan = brain(stack)
    checked = 0
    for r in plan.resources:
        if r.custom and r.type.startswith("kubernetes:") and "monitoring.coreos.com" not in r.type:
            kubernetes_validate.validate(_validatable(r), versions.KUBERNETES_VERSION, strict=True)
            checked += 1
    assert checked >= 10


# --- the workstation container ----------------------------------------------------------------


def test_workstation_docker_provider_pins_the_host_key() -> None:
    plan = brain("prod")
    provider = plan.named("llama-workstation-docker").inputs
    cfg = parse(read_stack_file(stack_file("prod")))
    host = cfg.workstation
    assert host is not None
    assert provider["host"] == f"ssh://{host.ssh_user}@{host.address}:22"
    opts = json.loads(provider["sshOpts"]) if isinstance(provider["sshOpts"], str) else provider["sshOpts"]
    assert "StrictHostKeyChecking=yes" in opts
    assert "UserKnownHostsFile=/dev/null" in opts and "GlobalKnownHostsFile=/dev/null" in opts
    assert f"KnownHostsCommand=/bin/echo {host.address} {host.host_key}" in opts


def test_the_system_ssh_accepts_the_pinning_options() -> None:
    ssh = shutil.which("ssh")
    if ssh is None:
        pytest.skip("no ssh client here")
    provider = brain("prod").named("llama-workstation-docker").inputs
    opts = json.loads(provider["sshOpts"]) if isinstance(provider["sshOpts"], str) else provider["sshOpts"]
    # -G prints the configuration ssh would use, without connecting.
    out = subprocess.run(
        [ssh, "-G", *opts, "-l", "platform", "198.51.100.20"], capture_output=True, text=True, timeout=20, check=True
    ).stdout
    assert "stricthostkeychecking true" in out
    assert "userknownhostsfile /dev/null" in out
    assert "knownhostscommand /bin/echo 198.51.100.20 ssh-ed25519 " in out


def test_workstation_container_verifies_the_model_then_serves_it_on_the_gpu() -> None:
    plan = brain("dev")
    c = plan.named("llama-workstation-container")
    m8 = MODELS["llama-3.1-8b-instruct-q4_k_m"]
    assert c.inputs["entrypoints"] == ["/bin/sh", "/scripts/fetch-model.sh", "--", "/app/llama-server"]
    assert _flag(c.inputs["command"], "--n-gpu-layers") == str(m8.n_layers + 1)
    (upload,) = c.inputs["uploads"]
    assert upload["file"] == "/scripts/fetch-model.sh" and "sha256sum" in upload["content"]
    (req,) = c.inputs["deviceRequests"]
    assert req["driver"] == "nvidia" and req["capabilities"] == ["gpu"] and req["count"] == 1
    assert c.inputs["healthcheck"]["tests"][-1] == "http://127.0.0.1:8080/health"
    assert c.inputs["wait"] is True
    assert "envs" in c.secret_inputs  # carries the API key
    (port,) = c.inputs["ports"]
    assert port["ip"] == "127.0.0.1" and port["external"] == 8080
    image = plan.named("llama-workstation-image").inputs["name"]
    assert image == versions.LLAMA_CPP_SERVER_IMAGE
    volume = plan.named("llama-workstation-models")
    assert volume.retain_on_delete


# --- config ------------------------------------------------------------------------------------


def test_cloud_fallback_without_its_key_fails_with_a_clear_message() -> None:
    cfg = parse(read_stack_file(stack_file("prod")))
    assert cfg.router.cloud_fallback
    with pytest.raises(ConfigError, match=r"gpu-platform:cloudLlmApiKey: required secret is missing while"):
        check_conditional_secrets(cfg, {"lambdaApiKey", "flyApiToken"})
    check_conditional_secrets(cfg, {"cloudLlmApiKey"})  # with the key: accepted


def test_without_cloud_fallback_no_key_is_needed() -> None:
    raw = read_stack_file(stack_file("prod"))
    raw["router"] = {**raw["router"], "cloudFallback": False}
    check_conditional_secrets(parse(raw), set())


@pytest.mark.parametrize(
    ("llama", "message"),
    [
        ({"clusterModel": "llama-9b"}, r"gpu-platform:llama\.clusterModel: unknown model"),
        ({"modelSha256": {"llama-3.1-8b-instruct-q4_k_m": "XYZ"}}, r"not a SHA-256"),
        ({"modelSha256": {"gpt-5": "0" * 64}}, r"'gpt-5' is not a catalog model"),
        ({"workstationListen": "localhost"}, r"llama\.workstationListen"),
    ],
)
def test_bad_llama_config_names_the_key(llama: dict[str, Any], message: str) -> None:
    raw = read_stack_file(stack_file("dev"))
    raw["llama"] = {**raw["llama"], **llama}
    with pytest.raises(ConfigError, match=message):
        parse(raw)


def test_a_configured_checksum_replaces_the_catalog_one() -> None:
    digest = "ab" * 32
    m = resolve("llama-3.1-8b-instruct-q4_k_m", {"llama-3.1-8b-instruct-q4_k_m": digest})
    assert m.sha256 == digest and "stack config" in m.sha256_source
    assert resolve("llama-3.1-8b-instruct-q4_k_m").sha256 == MODELS["llama-3.1-8b-instruct-q4_k_m"].sha256


@pytest.mark.parametrize("model", list(MODELS.values()), ids=list(MODELS))
def test_catalog_downloads_are_pinned_to_a_revision(model: Any) -> None:
    assert "/resolve/main/" not in model.url and model.url.endswith("/" + model.file_name)
    assert len(model.sha256) == 64 and model.sha256_source


def test_only_the_namespace_and_prometheus_reach_the_server() -> None:
    policy = brain("prod").named("llama-cluster-ingress").inputs["spec"]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "llama-server"
    (rule,) = policy["ingress"]
    assert rule["from"] == [
        {"podSelector": {}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "test-monitoring"}}},
    ]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
