"""K3s and NVIDIA in the recorded plan of the real program (p2a-k3s and around it)."""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

import migrate.mocks
from components.catalog import versions
from components.cluster import k3s
from migrate.harness import RecordedPlan, RecordedResource, read_stack_file, record, stack_file
from migrate.plan import Change, diff_plans
from tests.conftest import recorded

P1, P2A, P2C = "p1-fly-freeze", "p2a-k3s", "p2c-optimize"
SERVERS = ("server-1", "server-2", "server-3")
AGENTS = ("gpu-agent-1", "gpu-agent-2", "gpu-agent-gcp")
UPGRADE = "v1.35.6+k3s1"
CLUSTER_TYPE = "gpu-platform:k3s:K3sCluster"


def cluster_resources(plan: RecordedPlan) -> list[RecordedResource]:
    (component,) = plan.of_type(CLUSTER_TYPE)
    return [r for r in plan.resources if r.parent == component.urn]


def step(plan: RecordedPlan, name: str) -> RecordedResource:
    return plan.named(f"k3s-{name}")


@functools.lru_cache(maxsize=8)
def recorded_with(stack: str, phase: str, overrides_json: str) -> RecordedPlan:
    return record(stack, phase=phase, overrides=json.loads(overrides_json))


def changes_to_cluster(before: RecordedPlan, after: RecordedPlan) -> list[Change]:
    """What moving `before` to `after` changes among K3sCluster's own resources."""
    mine = {r.urn for r in cluster_resources(before)} | {r.urn for r in cluster_resources(after)}
    return [c for c in diff_plans(before, after).changes if c.urn in mine]


def hosts_of(stack: str) -> list[dict[str, Any]]:
    return copy.deepcopy(read_stack_file(stack_file(stack))["hosts"])


# --- topology and ordering -----------------------------------------------------------------------


def test_prod_has_three_servers_and_the_agents() -> None:
    plan = recorded("prod", P2A)
    roles = {}
    for name in (*SERVERS, *AGENTS):
        create = step(plan, f"{name}-install").inputs["create"]
        roles[name] = next(p.split("=", 1)[1] for p in create.split() if p.startswith("ROLE="))
    assert roles == {**dict.fromkeys(SERVERS, "server"), **dict.fromkeys(AGENTS, "agent")}
    assert plan.outputs["k3sNodes"] == [*SERVERS, *AGENTS]
    assert plan.outputs["gpuNodes"] == [*SERVERS, *AGENTS]


def assert_join_order(plan: RecordedPlan) -> None:
    def deps(name: str) -> set[str]:
        return set(step(plan, f"{name}-install").dependencies)

    def gate(name: str) -> set[str]:
        return {step(plan, f"{name}-install").urn, step(plan, f"{name}-ready").urn}

    installs = {r.urn for r in cluster_resources(plan) if r.name.endswith("-install") and "-script-" not in r.name}
    assert not deps("server-1") & installs  # the seed waits for no other node
    assert gate("server-1") <= deps("server-2")
    assert gate("server-2") <= deps("server-3")
    agent_steps = {step(plan, f"{a}-{s}").urn for a in AGENTS for s in ("install", "ready")}
    for agent in AGENTS:
        assert gate("server-3") <= deps(agent)
        assert not deps(agent) & agent_steps, f"{agent} waits for another agent"


def test_servers_join_one_at_a_time_and_agents_in_parallel() -> None:
    assert_join_order(recorded("prod", P2A))


def test_dev_is_a_single_server() -> None:
    plan = recorded("dev", P2A)
    installs = [r for r in cluster_resources(plan) if r.name.endswith("-install") and "-script-" not in r.name]
    assert [r.name for r in installs] == ["k3s-dev-gpu-1-install"]
    assert "ROLE=server" in installs[0].inputs["create"]


def test_nvidia_toolkit_runs_before_k3s_on_every_node() -> None:
    plan = recorded("prod", P2A)
    for name in (*SERVERS, *AGENTS):
        toolkit = step(plan, f"{name}-nvidia-toolkit")
        assert toolkit.urn in step(plan, f"{name}-install").dependencies
        assert "GPU_EXPECTED=1" in toolkit.inputs["create"]
        assert f"NVIDIA_TOOLKIT_VERSION={versions.NVIDIA_CONTAINER_TOOLKIT_VERSION}" in toolkit.inputs["create"]


def test_scripts_reach_the_hosts_as_reviewable_text() -> None:
    plan = recorded("prod", P2A)
    copies = [r for r in cluster_resources(plan) if "-script-" in r.name]
    # Three scripts on every node, the cluster-level one on the first server only.
    assert len(copies) == 3 * 6 + 1
    for res in copies:
        script = res.name.split("-script-", 1)[1] + ".sh"
        assert res.inputs["stdin"] == (k3s.SCRIPTS_DIR / script).read_text()
        assert res.inputs["create"] == f"install -D -v -m 0755 /dev/stdin /home/ubuntu/.gpu-platform/{script}"
        assert res.inputs["update"] == res.inputs["create"]
    for name in (*SERVERS, *AGENTS):
        assert step(plan, f"{name}-script-k3s-install").urn in step(plan, f"{name}-install").dependencies
    # A new script revision re-runs the install as an update (the hash is on its command line).
    assert f"SCRIPT_SHA256={k3s.script_sha256('k3s-install.sh')}" in step(plan, "server-1-install").inputs["create"]


# --- host keys and secrets -----------------------------------------------------------------------


class _PlainInputs(migrate.mocks.Mocks):
    """The mocks, also keeping each resource's inputs with secrets unwrapped (the recorded plan
    shows a secret object as one opaque "[secret]", which hides a connection's hostKey)."""

    seen: dict[str, dict[str, Any]] = {}

    def new_resource(self, args: Any) -> tuple[str, dict[str, Any]]:
        _PlainInputs.seen[args.name] = {"type": args.typ, "inputs": args.inputs}
        return super().new_resource(args)


@pytest.fixture(scope="module")
def plain_prod() -> Iterator[dict[str, dict[str, Any]]]:
    _PlainInputs.seen = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(migrate.mocks, "Mocks", _PlainInputs)
        record("prod", phase=P2A)
    yield dict(_PlainInputs.seen)


def test_every_remote_step_pins_the_host_key(plain_prod: dict[str, dict[str, Any]]) -> None:
    plan = recorded("prod", P2A)
    remote = [r for r in cluster_resources(plan) if r.type.startswith("command:remote:")]
    assert len(remote) > 30
    for res in remote:
        connection = plain_prod[res.name]["inputs"]["connection"]
        assert connection["hostKey"].startswith("ssh-"), res.name
        assert connection["privateKey"], res.name
        assert "connection" in res.secret_inputs  # and the whole connection is secret in the plan


def test_join_token_and_kubeconfig_are_secrets_end_to_end(plain_prod: dict[str, dict[str, Any]]) -> None:
    plan = recorded("prod", P2A)
    token = step(plan, "token")
    assert token.type == "random:index/randomPassword:RandomPassword"
    assert "result" in token.secret_outputs
    for name in (*SERVERS, *AGENTS):
        install = step(plan, f"{name}-install")
        assert install.inputs["stdin"] == "[secret]"  # the config, with the token
        assert "stdin" in install.additional_secret_outputs
    read = step(plan, "kubeconfig")
    assert read.inputs["logging"] == "none"
    assert read.inputs["addPreviousOutputInEnv"] is False
    assert "stdout" in read.additional_secret_outputs
    assert step(plan, "provider").inputs["kubeconfig"] == "[secret]"
    assert "kubeconfig" in plan.secret_stack_outputs
    assert plan.outputs["kubeconfig"] == "[secret]"
    # The mock token and the mock client key appear nowhere in plain text.
    text = json.dumps(plan.to_json())
    token_inputs = plain_prod["k3s-token"]["inputs"]
    mock_token = migrate.mocks.RULES[token.type]("k3s-token", token_inputs)["result"]
    mock_key = migrate.mocks.digest("key", "k3s-kubeconfig", length=32)
    assert mock_token not in text and mock_key not in text


def test_kubeconfig_points_at_the_first_server(plain_prod: dict[str, dict[str, Any]]) -> None:
    plan = recorded("prod", P2A)
    kubeconfig = plain_prod["k3s-provider"]["inputs"]["kubeconfig"]
    assert f"server: {plan.outputs['k3sApiUrl']}" in kubeconfig
    assert "127.0.0.1" not in kubeconfig
    assert plain_prod["k3s-provider"]["inputs"]["clusterIdentifier"] == "k3s-server-1"


def test_install_config_carries_the_token_and_the_join_url(plain_prod: dict[str, dict[str, Any]]) -> None:
    plan = recorded("prod", P2A)
    configs = {n: yaml.safe_load(plain_prod[f"k3s-{n}-install"]["inputs"]["stdin"]) for n in (*SERVERS, *AGENTS)}
    tokens = {c["token"] for c in configs.values()}
    assert len(tokens) == 1 and len(tokens.pop()) == 48  # one cluster, one token
    assert configs["server-1"].get("cluster-init") is True and "server" not in configs["server-1"]
    for name in (*SERVERS[1:], *AGENTS):
        assert configs[name]["server"] == plan.outputs["k3sApiUrl"]
        assert "cluster-init" not in configs[name]
    for name in AGENTS:
        assert configs[name]["node-taint"] == ["nvidia.com/gpu=present:NoSchedule"]
    for name in SERVERS:
        assert "node-taint" not in configs[name]  # prod servers are not dedicated GPU nodes
        assert configs[name]["flannel-backend"] == "wireguard-native"


# --- deletes, timeouts, in-cluster objects -------------------------------------------------------


def test_remote_steps_have_timeouts_and_clean_deletes() -> None:
    plan = recorded("prod", P2A)
    seed = step(plan, "server-1-install").urn
    for res in cluster_resources(plan):
        if res.type.startswith("command:remote:"):
            assert res.custom_timeouts.get("create"), res.name
    for name in (*SERVERS, *AGENTS):
        install = step(plan, f"{name}-install")
        assert install.inputs["delete"] == "sudo bash /home/ubuntu/.gpu-platform/k3s-remove.sh"
        assert install.inputs["update"] == install.inputs["create"]
        # triggers would make the SDK replace (install, then uninstall): pulumi/pulumi-command#855
        assert "triggers" not in install.inputs
        assert install.custom_timeouts.get("delete")
        ready = step(plan, f"{name}-ready")
        assert ready.inputs["delete"].endswith(f"k3s-admin.sh node-remove {name}")
        assert "triggers" not in ready.inputs
        assert ready.deleted_with == seed  # a full teardown drains nothing
        node = step(plan, f"{name}-node")
        assert node.deleted_with == seed
        assert node.provider == step(plan, "provider").urn


def test_gpu_nodes_are_labelled_and_only_dedicated_ones_tainted() -> None:
    prod, dev = recorded("prod", P2A), recorded("dev", P2A)
    taint = [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    for name in AGENTS:
        node = step(prod, f"{name}-node")
        assert node.inputs["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"
        assert node.inputs["spec"]["taints"] == taint
    for plan, name in [(prod, "server-1"), (prod, "server-2"), (dev, "dev-gpu-1")]:
        node = step(plan, f"{name}-node")
        assert node.inputs["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"
        assert "spec" not in node.inputs, name


def test_runtimeclass_is_checked_not_created() -> None:
    plan = recorded("prod", P2A)
    check = step(plan, "runtimeclass")
    assert check.inputs["create"].endswith("k3s-admin.sh runtimeclass nvidia")
    assert not [r for r in plan.resources if r.type.endswith(":RuntimeClass")]


def test_device_plugin_release_is_pinned_and_waits_for_the_cluster() -> None:
    plan = recorded("prod", P2A)
    release = plan.named("nvidia-release")
    assert release.type == "kubernetes:helm.sh/v3:Release"
    assert release.inputs["chart"] == versions.NVIDIA_DEVICE_PLUGIN_CHART
    assert release.inputs["version"] == versions.NVIDIA_DEVICE_PLUGIN_VERSION
    assert release.inputs["repositoryOpts"]["repo"] == versions.NVIDIA_DEVICE_PLUGIN_CHART_REPO
    assert release.inputs["values"]["runtimeClassName"] == "nvidia"
    assert release.provider == step(plan, "provider").urn
    assert release.deleted_with == step(plan, "server-1-install").urn
    for name in ("runtimeclass", *(f"{n}-node" for n in (*SERVERS, *AGENTS))):
        assert step(plan, name).urn in release.dependencies


def sharing(plan: RecordedPlan) -> Any:
    config = yaml.safe_load(plan.named("nvidia-release").inputs["values"]["config"]["map"]["default"])
    return config.get("sharing")


def test_time_slicing_follows_the_phase_and_the_stack_replicas() -> None:
    assert sharing(recorded("dev", P2A)) is None  # time-slicing is off until p2c
    assert sharing(recorded("dev", P2C))["timeSlicing"]["resources"] == [{"name": "nvidia.com/gpu", "replicas": 4}]
    assert sharing(recorded("prod", P2C)) is None  # prod: 1 replica = no sharing
    assert recorded("dev", P2C).outputs["gpuSharesPerGpu"] == 4


# --- changes: upgrade, adding/removing a node, labels ---------------------------------------------


def test_upgrade_reaches_every_install_as_an_update_in_order() -> None:
    base = recorded("prod", P2A)
    upgraded = recorded_with("prod", P2A, json.dumps({"k3sVersion": UPGRADE}))
    for name in (*SERVERS, *AGENTS):
        install = step(upgraded, f"{name}-install").inputs
        assert f"INSTALL_K3S_VERSION={UPGRADE}" in install["create"] and install["update"] == install["create"]
        assert step(upgraded, f"{name}-ready").inputs["create"].endswith(f"node-ready {name} {UPGRADE}")
    assert_join_order(upgraded)
    changes = {c.name: c for c in changes_to_cluster(base, upgraded)}
    for name in (*SERVERS, *AGENTS):
        assert changes[f"k3s-{name}-install"].kind == "update"
        assert changes[f"k3s-{name}-ready"].kind == "update"
    assert all(c.kind in ("update", "replace") for c in changes.values())
    # The host prerequisites do not move with K3s.
    assert not [n for n in changes if n.endswith(("-nvidia-toolkit", "-node")) or "-script-" in n]


def test_removing_an_agent_and_relabelling_another_touch_only_those_nodes() -> None:
    # One recording for both edits keeps the suite fast; each node's changes are checked apart.
    hosts = [h for h in hosts_of("prod") if h["name"] != "gpu-agent-2"]
    next(h for h in hosts if h["name"] == "gpu-agent-1")["labels"] = {"pool": "h100"}
    base = recorded("prod", P2A)
    changed = recorded_with("prod", P2A, json.dumps({"hosts": hosts}))
    changes = changes_to_cluster(base, changed)

    removed = [c for c in changes if "-gpu-agent-2-" in c.name]
    assert {c.kind for c in removed} == {"delete"}
    assert {c.name for c in removed} == {r.name for r in cluster_resources(base) if "-gpu-agent-2-" in r.name}
    assert step(base, "gpu-agent-2-ready").inputs["delete"].endswith("node-remove gpu-agent-2")

    # A label is a NodePatch update on that node only; K3s on the host is not touched.
    others = [(c.name, c.kind, c.changed) for c in changes if c not in removed]
    assert others == [("k3s-gpu-agent-1-node", "update", ("metadata.labels.pool",))]


def test_adding_an_agent_creates_only_that_node_and_opens_the_peer_rules_to_it() -> None:
    hosts = hosts_of("prod")
    extra = copy.deepcopy(next(h for h in hosts if h["name"] == "gpu-agent-2"))
    extra["name"] = "gpu-agent-3"
    base = recorded("prod", P2A)
    grown = recorded_with("prod", P2A, json.dumps({"hosts": [*hosts, extra]}))
    changes = diff_plans(base, grown).changes
    created = {c.name for c in changes if c.kind == "create"}
    assert created and all("gpu-agent-3" in name for name in created), sorted(created)
    assert {"k3s-gpu-agent-3-install", "k3s-gpu-agent-3-ready", "gpu-agent-3-instance"} <= created
    # Nothing of another node is created, replaced or deleted; the only updates are the peer
    # firewall rules, which must now admit the new node's address, and the GPU alert's count of
    # the GPUs that should report (one more).
    touched = [c for c in changes if c.kind != "create"]
    assert {c.kind for c in touched} <= {"update"}
    rules = [c for c in touched if c.name == "observability-rules-gpus"]
    assert [c.changed for c in rules] == [("spec.groups",)], rules
    firewalls = [c for c in touched if c not in rules]
    assert all(c.type.endswith(("LambdaFirewallRulesetRules", "compute/firewall:Firewall")) for c in firewalls), [
        (c.name, c.type) for c in firewalls
    ]
    gpus_before, gpus_after = (
        re.findall(r"count\(DCGM_FI_DEV_GPU_UTIL\) < (\d+)", json.dumps(p.named("observability-rules-gpus").inputs))
        for p in (base, grown)
    )
    assert [int(n) + 1 for n in gpus_before] == [int(n) for n in gpus_after] != []
    # Agents join in parallel: the new one waits for the last server, not for another agent.
    install = step(grown, "gpu-agent-3-install")
    agents = {step(grown, f"gpu-agent-{i}-install").urn for i in (1, 2)}
    assert not agents & set(install.dependencies)


# --- phases ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_p1_to_p2a_only_adds_and_back_removes_exactly_that(stack: str) -> None:
    p1, p2a = recorded(stack, P1), recorded(stack, P2A)
    forward, back = diff_plans(p1, p2a), diff_plans(p2a, p1)
    assert {c.kind for c in forward.changes} == {"create"}
    assert {c.kind for c in back.changes} == {"delete"}
    assert {c.urn for c in forward.changes} == {c.urn for c in back.changes}
    assert {r.urn for r in p1.resources} <= {r.urn for r in p2a.resources}
    assert {r.urn for r in cluster_resources(p2a)} <= {c.urn for c in forward.changes}
