"""The platform on K3s, asserted on the recorded plans of every phase of both stacks.

Each test reads what the real program registers (tests.conftest.recorded, cached per session):
the weighted cutover changes nothing but weights, no phase move loses data in prod, GPU pods and
only GPU pods carry the GPU limit, runtime class and toleration, the restore Jobs wait for the
verified backups, and the Helm releases get the values this project relies on.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from components.catalog import versions
from components.catalog.services import SERVICES
from components.config.load import parse
from components.config.phases import load_phases, phase_ids
from components.platform.datastores import RESTORE_LABEL, STORAGE_CLASS
from components.platform.kube import GPU_RESOURCE, GPU_RUNTIME_CLASS, GPU_TOLERATION, USES_LABEL
from components.platform.platform import DATA_NAMESPACE, NAMESPACE
from components.platform.traffic import legacy_service, public_routes
from migrate.harness import SECRET, RecordedPlan, RecordedResource, read_stack_file, record, stack_file
from migrate.manifests import manifest
from migrate.plan import diff_plans
from tests.conftest import STACKS, recorded

CUTOVER = ("p2b-services", "p2b1-cutover-50", "p2b2-cutover-100")
WORKLOADS = {
    "kubernetes:apps/v1:Deployment",
    "kubernetes:apps/v1:StatefulSet",
    "kubernetes:apps/v1:DaemonSet",
    "kubernetes:batch/v1:Job",
}
MY_NAMESPACES = (NAMESPACE, DATA_NAMESPACE)
STORE_NAMES = ("postgres", "redis", "qdrant")


def _state(phase: str) -> Any:
    return next(p.state for p in load_phases() if p.id == phase)


def objects(plan: RecordedPlan, type_: str) -> list[tuple[RecordedResource, dict[str, Any]]]:
    return [(r, manifest(r)) for r in plan.resources if r.type == type_]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


def workloads(plan: RecordedPlan) -> Iterator[tuple[RecordedResource, dict[str, Any]]]:
    for res in plan.resources:
        if res.type in WORKLOADS:
            yield res, manifest(res)


def in_my_namespaces(obj: dict[str, Any]) -> bool:
    return obj["metadata"].get("namespace") in MY_NAMESPACES


def _leaves(value: Any, path: str = "") -> dict[str, Any]:
    """Every leaf by path, list items by index (so one weight in a list is one path)."""
    out: dict[str, Any] = {}
    if isinstance(value, dict) and value:
        for key, item in value.items():
            out.update(_leaves(item, f"{path}.{key}" if path else key))
    elif isinstance(value, list) and value:
        for i, item in enumerate(value):
            out.update(_leaves(item, f"{path}[{i}]"))
    else:
        out[path] = value
    return out


# The harness records an asset (pulumi.FileAsset) by its repr, which carries a memory address
# that differs from run to run; the address says nothing about the asset, so it is ignored.
_ADDRESS = re.compile(r" object at 0x[0-9a-f]+>")


def _comparable(value: Any) -> Any:
    return _ADDRESS.sub(" object>", value) if isinstance(value, str) else value


def changed_leaves(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    a, b = _leaves(before), _leaves(after)
    missing = object()
    return {k for k in a.keys() | b.keys() if _comparable(a.get(k, missing)) != _comparable(b.get(k, missing))}


_OPTIONS = (
    "protect",
    "retain_on_delete",
    "ignore_changes",
    "delete_before_replace",
    "deleted_with",
    "provider",
    "parent",
)
_WEIGHT = re.compile(r"spec\.weighted\.services\[\d+\]\.weight")


# --- weighted cutover --------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize(("before", "after"), [(CUTOVER[0], CUTOVER[1]), (CUTOVER[1], CUTOVER[2])])
def test_cutover_steps_change_only_route_weights(stack: str, before: str, after: str) -> None:
    a, b = recorded(stack, before).by_urn(), recorded(stack, after).by_urn()
    # The same resources, forward and back: a cutover step creates and deletes nothing.
    assert a.keys() == b.keys(), {"only before": sorted(a.keys() - b.keys()), "only after": sorted(b.keys() - a.keys())}
    weight_changes = 0
    for urn, old in a.items():
        new = b[urn]
        changed = changed_leaves(old.inputs, new.inputs)
        not_weights = {p for p in changed if not (old.type.endswith(":TraefikService") and _WEIGHT.fullmatch(p))}
        assert not not_weights, (
            f"{before} -> {after} changes {old.name} ({old.type}) beyond weights: {sorted(not_weights)}"
        )
        options = [o for o in _OPTIONS if getattr(old, o) != getattr(new, o)]
        assert not options, f"{before} -> {after} changes resource options of {old.name}: {options}"
        weight_changes += len(changed)
    # Both backends of every public hostname move.
    assert weight_changes == 2 * len(public_routes())


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("phase", phase_ids())
def test_route_weights_follow_the_phase(stack: str, phase: str) -> None:
    weight = _state(phase).traffic.k3s_weight
    plan = recorded(stack, phase)
    splits = objects(plan, "kubernetes:traefik.io/v1alpha1:TraefikService")
    routes = objects(plan, "kubernetes:traefik.io/v1alpha1:IngressRoute")
    if weight == 0:
        assert not splits and not routes, "no public route may exist before the platform takes traffic"
        return
    assert len(splits) == len(routes) == len(public_routes())
    for _, obj in splits:
        backends = {s["name"]: s["weight"] for s in obj["spec"]["weighted"]["services"]}
        route = next(r for r in public_routes() if obj["metadata"]["name"] == f"{r.host}-split")
        # At 100 the legacy backend stays, at weight 0: rolling back is a weight change.
        assert backends == {route.service: weight, legacy_service(route): 100 - weight}


@pytest.mark.parametrize("stack", STACKS)
def test_every_public_route_is_tls_with_a_certificate_for_its_host(stack: str) -> None:
    plan = recorded(stack, CUTOVER[0])
    ((_, cert),) = objects(plan, "kubernetes:cert-manager.io/v1:Certificate")
    ((_, issuer),) = objects(plan, "kubernetes:cert-manager.io/v1:ClusterIssuer")
    assert cert["spec"]["issuerRef"] == {
        "group": "cert-manager.io",
        "kind": "ClusterIssuer",
        "name": issuer["metadata"]["name"],
    }
    routes = [o for _, o in objects(plan, "kubernetes:traefik.io/v1alpha1:IngressRoute")]
    assert routes
    for route in routes:
        assert route["spec"]["entryPoints"] == ["websecure"]
        assert route["spec"]["tls"]["secretName"] == cert["spec"]["secretName"]
        match = re.fullmatch(r"Host\(`([^`]+)`\)", route["spec"]["routes"][0]["match"])
        assert match and match.group(1) in cert["spec"]["dnsNames"]
    ((_, config),) = objects(plan, "kubernetes:helm.cattle.io/v1:HelmChartConfig")
    # The key chart v39 reads (tests/test_chart_values.py checks it against the chart's schema).
    web = yaml.safe_load(config["spec"]["valuesContent"])["ports"]["web"]
    assert web["http"]["redirections"]["entryPoint"] == {"to": "websecure", "scheme": "https", "permanent": True}


@pytest.mark.parametrize("stack", STACKS)
def test_the_legacy_backend_is_the_compose_host(stack: str) -> None:
    address = read_stack_file(stack_file(stack))["composeHost"]["address"]
    plan = recorded(stack, CUTOVER[0])
    services = {o["metadata"]["name"]: o for _, o in objects(plan, "kubernetes:core/v1:Service")}
    slices = {
        o["metadata"]["labels"]["kubernetes.io/service-name"]: o
        for _, o in objects(plan, "kubernetes:discovery.k8s.io/v1:EndpointSlice")
    }
    transports = {o["metadata"]["name"]: o for _, o in objects(plan, "kubernetes:traefik.io/v1alpha1:ServersTransport")}
    # One legacy Service per hostname: Traefik names a backend after its Service and port, so a shared
    # one would be one backend for every TraefikService, with one hostname's ServersTransport (SNI).
    assert sorted(slices) == sorted(legacy_service(r) for r in public_routes())
    for route in public_routes():
        legacy, endpoints = services[legacy_service(route)], slices[legacy_service(route)]
        assert "selector" not in legacy["spec"], "a selector would make Kubernetes manage (and empty) its endpoints"
        assert endpoints["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] != (
            "endpointslice-controller.k8s.io"
        )
        assert endpoints["endpoints"] == [
            {"addresses": [address], "conditions": {"ready": True, "serving": True, "terminating": False}}
        ]
        assert {p["name"] for p in endpoints["ports"]} == {p["name"] for p in legacy["spec"]["ports"]}
        assert transports[legacy_service(route)]["spec"]["serverName"].startswith(f"{route.host}.")


# --- stateful data -----------------------------------------------------------------------------


def _adjacent() -> list[tuple[str, str]]:
    ids = phase_ids()
    forward = list(itertools.pairwise(ids))
    return forward + [(b, a) for a, b in forward]


@pytest.mark.parametrize(("before", "after"), _adjacent())
def test_no_phase_move_deletes_or_replaces_stateful_data_in_prod(before: str, after: str) -> None:
    diff = diff_plans(recorded("prod", before), recorded("prod", after))
    replaced = [c.name for c in diff.changes if c.kind == "replace" and c.stateful]
    assert not replaced, f"{before} -> {after} replaces stateful resources: {replaced}"
    old = recorded("prod", before).by_urn()
    for change in diff.changes:
        if change.kind == "delete" and change.stateful:
            res = old[change.urn]
            # Pulumi refuses to delete a protected resource (the move stops), and a retained one
            # it only forgets (the object and its data stay where they are).
            assert res.protect or res.retain_on_delete, f"{before} -> {after} would delete {res.name} ({res.type})"


def _is_data(res: RecordedResource) -> bool:
    if res.type == "kubernetes:apps/v1:StatefulSet":
        return True
    if res.type == "kubernetes:core/v1:Namespace":
        return bool(res.inputs["metadata"]["name"] == DATA_NAMESPACE)
    return res.type.endswith(":RandomPassword") and any(f"-{s}-password" in res.name for s in STORE_NAMES)


@pytest.mark.parametrize("stack", STACKS)
def test_the_stores_exist_unchanged_from_p2a_on_and_only_scale(stack: str) -> None:
    retained = [p.id for p in load_phases() if p.state.platform.retain_storage]
    first = {r.urn: r for r in recorded(stack, retained[0]).resources if _is_data(r)}
    assert sum(r.type.endswith("StatefulSet") for r in first.values()) == 3
    for phase in retained:
        now = {r.urn: r for r in recorded(stack, phase).resources if _is_data(r)}
        assert now.keys() == first.keys(), f"{phase}: the data resources differ from {retained[0]}"
        for urn, res in now.items():
            if res.type.endswith("StatefulSet"):
                running = _state(phase).platform.services_stateful
                assert res.inputs["spec"]["replicas"] == (1 if running else 0)
                changed = changed_leaves(first[urn].inputs, res.inputs)
                assert changed <= {"spec.replicas"}, f"{phase}: {res.name} changes {sorted(changed)}"
            # prod protects every one of them from its first phase on; dev protects none.
            assert res.protect == (stack == "prod"), res.name
            if res.type.startswith("kubernetes:"):
                assert res.retain_on_delete == (stack == "prod"), res.name


@pytest.mark.parametrize("stack", STACKS)
def test_stores_keep_their_volumes(stack: str) -> None:
    plan = recorded(stack, CUTOVER[0])
    ((_, storage_class),) = objects(plan, "kubernetes:storage.k8s.io/v1:StorageClass")
    assert storage_class["metadata"]["name"] == STORAGE_CLASS
    assert storage_class["reclaimPolicy"] == "Retain"
    assert storage_class["provisioner"] == "rancher.io/local-path"
    stateful_sets = objects(plan, "kubernetes:apps/v1:StatefulSet")
    assert len(stateful_sets) == 3
    for _, sts in stateful_sets:
        assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
        for template in sts["spec"]["volumeClaimTemplates"]:
            assert template["spec"]["storageClassName"] == STORAGE_CLASS


# --- restore -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("phase", phase_ids())
def test_restore_jobs_exist_exactly_when_the_phase_restores(stack: str, phase: str) -> None:
    jobs = [o for _, o in objects(recorded(stack, phase), "kubernetes:batch/v1:Job") if in_my_namespaces(o)]
    assert len(jobs) == (3 if _state(phase).platform.restore_from_backup else 0)
    for job in jobs:
        # The `restore-jobs-complete` check lists them by this label in this namespace.
        assert job["metadata"]["labels"][RESTORE_LABEL] == "true"
        assert job["metadata"]["namespace"] == DATA_NAMESPACE


@pytest.mark.parametrize("stack", STACKS)
def test_restore_jobs_wait_for_and_check_the_verified_backup(stack: str) -> None:
    plan = recorded(stack, CUTOVER[0])
    by_urn = plan.by_urn()
    jobs = objects(plan, "kubernetes:batch/v1:Job")
    assert {o["metadata"]["labels"]["gpu-platform/store"] for _, o in jobs} == set(STORE_NAMES)
    for res, job in jobs:
        store = job["metadata"]["labels"]["gpu-platform/store"]
        verification = [
            by_urn[d]
            for d in res.dependencies
            if by_urn[d].type.endswith(":BackupVerification") and f"-{store}-" in by_urn[d].name
        ]
        assert len(verification) == 1, f"{res.name} must depend on the verification of the {store} backup"
        # The object the verification re-read and checked: the Job must expect exactly it.
        assert verification[0].outputs["verified"] is True
        (verified,) = verification[0].outputs["objects"]
        fetch = pod_spec(job)["initContainers"][0]
        env = {e["name"]: e.get("value") for e in fetch["env"]}
        assert env["BACKUP_SHA256"] == verified["sha256"]
        assert re.fullmatch(r"[0-9a-f]{64}", env["BACKUP_SHA256"])
        assert env["BACKUP_OBJECT"] == verified["key"]
        assert env["BACKUP_SIZE"] == str(int(verified["size"]))
        assert fetch["command"] == ["/bin/sh", "/scripts/restore-fetch.sh"]
        assert res.delete_before_replace, "a new backup replaces the Job, whose name is fixed"


@pytest.mark.parametrize("stack", STACKS)
def test_services_start_after_the_restore(stack: str) -> None:
    plan = recorded(stack, CUTOVER[0])
    jobs = {r.urn for r, _ in objects(plan, "kubernetes:batch/v1:Job")}
    assert len(jobs) == 3
    for res, obj in objects(plan, "kubernetes:apps/v1:Deployment"):
        if in_my_namespaces(obj):
            assert jobs <= set(res.dependencies), f"{res.name} could write into the stores before the restore"


# --- GPU ---------------------------------------------------------------------------------------


@functools.cache
def _all_workloads() -> tuple[tuple[str, dict[str, Any]], ...]:
    out: list[tuple[str, dict[str, Any]]] = []
    for stack in STACKS:
        for phase in phase_ids():
            out += [(f"{stack}/{phase}: {r.name}", o) for r, o in workloads(recorded(stack, phase))]
    return tuple(out)


def _tolerates_gpu_taint(t: dict[str, Any]) -> bool:
    """Whether a toleration lets a pod onto a node tainted nvidia.com/gpu=present:NoSchedule."""
    if t.get("key") not in (GPU_RESOURCE, None) or t.get("effect") not in ("NoSchedule", None):
        return False
    if t.get("operator", "Equal") == "Exists":
        return True
    return t.get("value") == GPU_TOLERATION["value"] and t.get("key") == GPU_RESOURCE


def _gpu_facts(spec: dict[str, Any]) -> tuple[bool, bool, bool]:
    containers = spec.get("containers", []) + spec.get("initContainers", [])
    limit = any(int(c.get("resources", {}).get("limits", {}).get(GPU_RESOURCE, 0)) > 0 for c in containers)
    runtime = spec.get("runtimeClassName") == GPU_RUNTIME_CLASS
    toleration = any(_tolerates_gpu_taint(t) for t in spec.get("tolerations", []))
    return limit, runtime, toleration


def test_gpu_workloads_have_limit_runtime_and_toleration_and_cpu_workloads_none() -> None:
    gpu, cpu = [], []
    for where, obj in _all_workloads():
        limit, runtime, toleration = _gpu_facts(pod_spec(obj))
        if limit:
            gpu.append(where)
            assert runtime and toleration, f"{where}: a GPU pod needs runtimeClassName nvidia and the GPU toleration"
        else:
            cpu.append(where)
            assert not runtime and not toleration, f"{where}: a CPU pod must not claim the GPU runtime or taint"
    assert gpu and cpu


@pytest.mark.parametrize("stack", STACKS)
def test_exactly_the_gpu_services_of_the_table_get_a_gpu(stack: str) -> None:
    deployments = objects(recorded(stack, CUTOVER[0]), "kubernetes:apps/v1:Deployment")
    with_gpu = {o["metadata"]["name"] for _, o in deployments if in_my_namespaces(o) and _gpu_facts(pod_spec(o))[0]}
    assert with_gpu == {s.name for s in SERVICES if s.gpus} == {"research", "context", "agents"}
    for _, obj in deployments:
        if obj["metadata"]["name"] in with_gpu and in_my_namespaces(obj):
            assert pod_spec(obj)["tolerations"] == [dict(GPU_TOLERATION)]


# --- services ----------------------------------------------------------------------------------

_SENSITIVE = re.compile(r"PASSWORD|TOKEN|SECRET|API_KEY|ACCESS_KEY|DATABASE_URL|REDIS_URL|AUTH")


@pytest.mark.parametrize("stack", STACKS)
def test_every_pod_of_the_platform_is_restricted(stack: str) -> None:
    plan = recorded(stack, CUTOVER[0])
    pods = [(r.name, o) for r, o in workloads(plan) if in_my_namespaces(o)]
    assert len(pods) == len(SERVICES) + 3 + 3  # services, stores, restore Jobs
    for name, obj in pods:
        spec = pod_spec(obj)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            assert sc["readOnlyRootFilesystem"] is True, name
            for env in c.get("env", []):
                # Secrets arrive as references only; a literal would sit in the pod spec.
                if _SENSITIVE.search(env["name"]):
                    assert "secretKeyRef" in env.get("valueFrom", {}), f"{name}: {env['name']} is not from a Secret"
                assert env.get("value") != SECRET, f"{name}: a secret value in {env['name']}"
    namespaces = {o["metadata"]["name"]: o for _, o in objects(plan, "kubernetes:core/v1:Namespace")}
    for ns in MY_NAMESPACES:
        assert namespaces[ns]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("stack", STACKS)
def test_service_images_come_from_the_stacks_registry_and_tag(stack: str) -> None:
    images = parse(read_stack_file(stack_file(stack))).service_images
    deployments = {
        o["metadata"]["name"]: o for _, o in objects(recorded(stack, CUTOVER[0]), "kubernetes:apps/v1:Deployment")
    }
    for spec in SERVICES:
        (container,) = pod_spec(deployments[spec.name])["containers"]
        if "/" in spec.image:
            assert container["image"] == spec.image  # a third-party pin from components/catalog/versions.py
        else:
            assert container["image"] == f"{images.registry}/{spec.image}:{images.tag}"
    # prod names its registry; dev plans with the placeholder (and a warning).
    assert images.is_placeholder == (stack == "dev")


def test_one_image_tag_can_be_overridden() -> None:
    raw = read_stack_file(stack_file("prod"))
    override = {"serviceImages": {**raw["serviceImages"], "tags": {"mcp-github": "2026.09.2"}}}
    plan = record("prod", phase=CUTOVER[0], overrides=override)
    found = {
        o["metadata"]["name"]: pod_spec(o)["containers"][0]["image"]
        for _, o in objects(plan, "kubernetes:apps/v1:Deployment")
    }
    registry = raw["serviceImages"]["registry"]
    assert found["github"] == f"{registry}/mcp-github:2026.09.2"
    assert found["business"] == f"{registry}/mcp-business:{versions.PLATFORM_RELEASE}"


@pytest.mark.parametrize("stack", STACKS)
def test_secrets_are_secret_in_the_plan(stack: str) -> None:
    secrets = [r for r in recorded(stack, CUTOVER[0]).resources if r.type == "kubernetes:core/v1:Secret"]
    assert len(secrets) >= 4
    for res in secrets:
        data = res.inputs.get("stringData")
        # Secret as a whole, or every value secret: either way no plaintext reaches the plan.
        whole = data == SECRET
        per_key = isinstance(data, dict) and data and all(v == SECRET for v in data.values())
        assert whole or per_key, f"{res.name}: stringData is not marked secret"


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("phase", [CUTOVER[0], "p2c-optimize"])
def test_replicas_pdbs_and_autoscalers(stack: str, phase: str) -> None:
    plan = recorded(stack, phase)
    deployments = {
        o["metadata"]["name"]: (r, o) for r, o in objects(plan, "kubernetes:apps/v1:Deployment") if in_my_namespaces(o)
    }
    pdbs = {o["metadata"]["name"] for _, o in objects(plan, "kubernetes:policy/v1:PodDisruptionBudget")}
    hpas = {o["metadata"]["name"] for _, o in objects(plan, "kubernetes:autoscaling/v2:HorizontalPodAutoscaler")}
    assert set(deployments) == {s.name for s in SERVICES}
    autoscaling = _state(phase).platform.autoscaling
    for spec in SERVICES:
        res, obj = deployments[spec.name]
        replicas = spec.replicas[stack]
        assert obj["spec"]["replicas"] == replicas
        assert (spec.name in pdbs) == (replicas > 1), spec.name
        scaled = spec.name in hpas
        assert scaled == (autoscaling and not spec.gpus and spec.max_replicas > 0), spec.name
        # The HPA owns spec.replicas once it exists.
        assert ("spec.replicas" in res.ignore_changes) == scaled, spec.name
    assert all(s.replicas["prod"] > s.replicas["dev"] for s in SERVICES if not s.gpus)


@pytest.mark.parametrize("stack", STACKS)
def test_only_the_services_that_need_a_store_can_reach_it(stack: str) -> None:
    plan = recorded(stack, CUTOVER[0])
    policies = {
        o["metadata"]["name"]: o
        for _, o in objects(plan, "kubernetes:networking.k8s.io/v1:NetworkPolicy")
        if o["metadata"]["namespace"] == DATA_NAMESPACE
    }
    assert policies["default-deny-ingress"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    deployments = [
        o for _, o in objects(plan, "kubernetes:apps/v1:Deployment") if o["metadata"]["namespace"] == NAMESPACE
    ]
    for store in STORE_NAMES:
        peers = policies[f"allow-{store}-clients"]["spec"]["ingress"][0]["from"]
        client_rule = next(p for p in peers if "namespaceSelector" in p)
        assert client_rule["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": NAMESPACE}
        wanted = client_rule["podSelector"]["matchLabels"]
        assert wanted == {USES_LABEL.format(store=store): "true"}
        admitted = {
            d["metadata"]["name"]
            for d in deployments
            if all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in wanted.items())
        }
        assert admitted == {s.name for s in SERVICES if store in s.stores}, store
        assert admitted, f"no service uses {store}?"


# --- charts ------------------------------------------------------------------------------------

# Whether each value path exists in the pinned chart is tests/test_chart_values.py's business; here,
# that the releases are pinned and the values say what the platform needs.
PINS = {
    chart[1]: chart
    for chart in (
        versions.CERT_MANAGER_CHART,
        versions.KUBE_PROMETHEUS_STACK_CHART,
        versions.LOKI_CHART,
        versions.ALLOY_CHART,
    )
}


def _get(values: dict[str, Any], path: str) -> Any:
    node: Any = values
    for part in path.split("."):
        assert isinstance(node, dict) and part in node, f"value {path} is not set"
        node = node[part]
    return node


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("phase", phase_ids())
def test_helm_releases_are_pinned_and_get_the_values_we_rely_on(stack: str, phase: str) -> None:
    state = _state(phase).platform
    releases = {
        r.inputs["chart"]: r.inputs
        for r in recorded(stack, phase).resources
        if r.type == "kubernetes:helm.sh/v3:Release" and r.inputs["chart"] in PINS
    }
    expected = ({"cert-manager"} if state.cert_manager else set()) | (
        {"kube-prometheus-stack", "loki", "alloy"} if state.monitoring else set()
    )
    assert set(releases) == expected
    for chart, inputs in releases.items():
        repo, _, version = PINS[chart]
        assert (inputs["repositoryOpts"]["repo"], inputs["version"], inputs["name"]) == (repo, version, chart)
    if "kube-prometheus-stack" in releases:
        values = releases["kube-prometheus-stack"]["values"]
        assert _get(values, "prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues") is False
        assert _get(values, "grafana.admin.existingSecret") == "grafana-admin"
    if "cert-manager" in releases:
        assert _get(releases["cert-manager"]["values"], "crds.enabled") is True
    if "loki" in releases:
        # Loki deletes old logs only through the compactor, with retention switched on.
        loki = releases["loki"]["values"]["loki"]
        assert loki["compactor"]["retention_enabled"] is True
        assert loki["compactor"]["delete_request_store"] == loki["schemaConfig"]["configs"][0]["object_store"]
        assert loki["limits_config"]["retention_period"] == ("744h" if stack == "prod" else "168h")


@pytest.mark.parametrize("stack", STACKS)
def test_the_acme_directory_follows_stack_config(stack: str) -> None:
    server = read_stack_file(stack_file(stack))["acmeServer"]
    ((_, issuer),) = objects(recorded(stack, "p2a-k3s"), "kubernetes:cert-manager.io/v1:ClusterIssuer")
    assert ("staging" in issuer["spec"]["acme"]["server"]) == (server == "staging")
    assert issuer["metadata"]["name"] == f"letsencrypt-{server}"


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("phase", phase_ids())
def test_slo_alerts_only_when_switched_on(stack: str, phase: str) -> None:
    # The SLO rules only; components/observability/'s are tests/test_observability.py's.
    rules = [
        (r, obj)
        for r, obj in objects(recorded(stack, phase), "kubernetes:monitoring.coreos.com/v1:PrometheusRule")
        if r.name.endswith("-slo-rules")
    ]
    assert bool(rules) == _state(phase).platform.slo_alerts
    for _, rule in rules:
        alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
        assert {"PlatformErrorBudgetFastBurn", "PlatformDataStoreDown"} <= alerts


def test_nothing_of_the_platform_exists_before_the_cluster() -> None:
    for stack in STACKS:
        for phase in (p.id for p in load_phases() if not p.state.k3s.cluster):
            mine = [r.name for r in recorded(stack, phase).resources if r.name.startswith("platform")]
            assert not mine, f"{stack}/{phase}: {mine}"


@pytest.mark.parametrize("stack", STACKS)
def test_every_platform_object_uses_the_cluster_provider_and_goes_with_the_cluster(stack: str) -> None:
    plan = recorded(stack, "p2c-optimize")
    mine = [
        r for r in plan.resources if r.custom and r.type.startswith("kubernetes:") and r.name.startswith("platform")
    ]
    assert len(mine) > 40
    providers = {r.provider for r in mine}
    clusters = {r.deleted_with for r in mine}
    assert len(providers) == 1 and "pulumi:providers:kubernetes::" in next(iter(providers))
    assert len(clusters) == 1 and next(iter(clusters)), "every object must be deleted_with the cluster resource"


@pytest.mark.parametrize("stack", STACKS)
def test_traefik_reaches_the_public_services_and_the_acme_solver_only(stack: str) -> None:
    plan = recorded(stack, CUTOVER[0])
    policies = {
        o["metadata"]["name"]: o["spec"]
        for _, o in objects(plan, "kubernetes:networking.k8s.io/v1:NetworkPolicy")
        if o["metadata"]["namespace"] == NAMESPACE
    }
    assert policies["default-deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    (expression,) = policies["allow-traefik"]["podSelector"]["matchExpressions"]
    assert sorted(expression["values"]) == sorted(r.service for r in public_routes())
    solver = policies["allow-acme-http01-solver"]
    # Without it the HTTP-01 challenge never reaches cert-manager's solver and no certificate issues.
    assert solver["podSelector"] == {"matchLabels": {"acme.cert-manager.io/http01-solver": "true"}}
    assert solver["ingress"][0]["ports"] == [{"port": 8089, "protocol": "TCP"}]
    for name in ("allow-traefik", "allow-acme-http01-solver"):
        (peer,) = policies[name]["ingress"][0]["from"]
        assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kube-system"}
