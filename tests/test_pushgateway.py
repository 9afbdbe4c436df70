"""The Pushgateway (components/platform/pushgateway.py): in which phases it exists and serves, what its
objects say (recorded plans, update and preview), and its flags on the real Pushgateway binary.

Its manifests are validated with the others (tests/test_manifests.py: kubernetes-validate, and the
ServiceMonitor against the upstream CRD).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from pydantic import ValidationError

from components.catalog import versions
from components.config.phases import load_phases, phase_ids
from components.handles import ClusterHandle
from components.platform import pushgateway as pg
from components.platform.charts import MONITORING_NAMESPACE
from components.platform.datastores import STORAGE_CLASS
from migrate.harness import RecordedPlan
from migrate.manifests import manifest
from migrate.plan import diff_plans
from tests.conftest import STACKS, recorded, recorded_preview, upstream_root
from tests.real.pushgateway import pushgateway

BACKUP_REPORT = Path(__file__).resolve().parent.parent / "components" / "scripts" / "backup-report.sh"


def _objects(plan: RecordedPlan) -> dict[str, dict[str, Any]]:
    """The Pushgateway's children, by kind."""
    (component,) = [r for r in plan.resources if r.type == "gpu-platform:pushgateway:Pushgateway"] or [None]
    if component is None:
        return {}
    return {manifest(r)["kind"]: manifest(r) for r in plan.resources if r.parent == component.urn}


def _resources(plan: RecordedPlan) -> dict[str, Any]:
    return {r.name: r for r in plan.resources if r.name.startswith("pushgateway")}


@pytest.mark.parametrize("stack", STACKS)
def test_it_exists_from_monitoring_with_retained_storage_and_serves_once_the_stores_run(stack: str) -> None:
    for phase in load_phases():
        platform = phase.state.platform
        objects = _objects(recorded(stack, phase.id))
        if not (platform.monitoring and platform.retain_storage):
            assert objects == {}, phase.id
            continue
        assert sorted(objects) == [
            "Deployment",
            "NetworkPolicy",
            "PersistentVolumeClaim",
            "Service",
            "ServiceMonitor",
        ], phase.id
        assert {o["metadata"]["namespace"] for o in objects.values()} == {MONITORING_NAMESPACE}
        assert objects["Deployment"]["spec"]["replicas"] == (1 if platform.services_stateful else 0), phase.id


@pytest.mark.parametrize("stack", STACKS)
def test_the_preview_registers_the_same_objects(stack: str) -> None:
    for phase in ("p2a-k3s", "p2b-services"):
        assert sorted(_objects(recorded_preview(stack, phase))) == sorted(_objects(recorded(stack, phase)))


@pytest.mark.parametrize("stack", STACKS)
def test_its_claim_is_retained_and_protected_in_prod_and_a_rollback_only_scales_it(stack: str) -> None:
    before, after = recorded(stack, "p2b-services"), recorded(stack, "p2a-k3s")
    claim = _resources(before)["pushgateway-data"]
    assert claim.inputs["spec"]["storageClassName"] == STORAGE_CLASS
    assert (claim.protect, claim.retain_on_delete) == ((True, True) if stack == "prod" else (False, False))
    mine = [c for c in diff_plans(before, after).changes if c.name.startswith("pushgateway")]
    assert [(c.name, c.kind, c.changed) for c in mine] == [("pushgateway-deployment", "update", ("spec.replicas",))]


def test_the_pod_runs_the_pinned_image_non_root_read_only_with_limits_and_probes() -> None:
    deployment = _objects(recorded("prod", phase_ids()[-1]))["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == versions.PUSHGATEWAY_IMAGE
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == pg.RUN_AS_USER
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["limits"]["cpu"] and container["resources"]["limits"]["memory"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    # The persistence file lies on the claim, the only writable path.
    (mount,) = container["volumeMounts"]
    assert f"--persistence.file={mount['mountPath']}/metrics" in container["args"]
    (volume,) = pod["volumes"]
    assert volume["persistentVolumeClaim"]["claimName"] == "pushgateway-data"
    # One writer of that file at a time.
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_the_service_monitor_honours_the_pushed_labels_and_selects_the_service() -> None:
    objects = _objects(recorded("prod", phase_ids()[-1]))
    monitor, service = objects["ServiceMonitor"]["spec"], objects["Service"]
    (endpoint,) = monitor["endpoints"]
    assert endpoint["honorLabels"] is True and endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert service["metadata"]["name"] == pg.SERVICE and service["spec"]["ports"][0]["port"] == pg.PORT
    labels = service["metadata"]["labels"]
    assert all(labels[k] == v for k, v in monitor["selector"]["matchLabels"].items())
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels[k] == v for k, v in service["spec"]["selector"].items())
    assert pg.push_url(MONITORING_NAMESPACE) == f"http://pushgateway.{MONITORING_NAMESPACE}.svc.cluster.local:9091"


def test_the_network_policy_admits_pushers_from_anywhere_and_prometheus_only() -> None:
    policy = _objects(recorded("prod", phase_ids()[-1]))["NetworkPolicy"]["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    pushers, scraper = rule["from"]
    assert pushers == {"namespaceSelector": {}, "podSelector": {"matchLabels": {pg.PUSHER_LABEL: "true"}}}
    assert scraper["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": MONITORING_NAMESPACE}}
    assert scraper["podSelector"] == {"matchLabels": pg.PROMETHEUS_POD_LABELS}
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    # The label the chart's Prometheus pods carry (its Service selects them by it).
    service = (
        upstream_root()
        / "charts"
        / f"kube-prometheus-stack-{versions.KUBE_PROMETHEUS_STACK_CHART[2]}"
        / "templates"
        / "prometheus"
        / "service.yaml"
    ).read_text()
    ((key, value),) = pg.PROMETHEUS_POD_LABELS.items()
    assert f"{key}: {value}\n" in service


@pytest.mark.parametrize(("field", "value"), [("namespace", "Monitoring"), ("storage_class", "")])
def test_bad_args_are_refused_before_anything_is_built(field: str, value: str) -> None:
    good: dict[str, Any] = {
        "cluster": ClusterHandle.__new__(ClusterHandle),
        "namespace": MONITORING_NAMESPACE,
        "storage_class": STORAGE_CLASS,
        "serving": True,
        "protect": False,
    }
    pg.PushgatewayArgs(**good)
    with pytest.raises(ValidationError, match=field):
        pg.PushgatewayArgs(**{**good, field: value})


# --- the rendered flags on the real Pushgateway --------------------------------------------------


def _report(url: str, tmp: Path, source: str, started: int) -> None:
    folder = tmp / source
    folder.mkdir(exist_ok=True)
    (folder / "started").write_text(f"{started}\n")
    (folder / "verified").write_text(f"4096 {'cd' * 32}\n")
    env = {"PATH": os.environ["PATH"], "PUSHGATEWAY_URL": url, "BACKUP_SOURCE": source, "BACKUP_DIR": str(folder)}
    done = subprocess.run(["sh", str(BACKUP_REPORT)], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def _backup_lines(url: str) -> list[tuple[str, float]]:
    """The pushed data-time samples the Pushgateway exposes: (series, value)."""
    text = requests.get(f"{url}/metrics", timeout=5).text
    samples = [line.rsplit(" ", 1) for line in text.splitlines() if " " in line]
    return [
        (name, float(value)) for name, value in samples if name.startswith("gpu_platform_backup_verified_timestamp")
    ]


@pytest.mark.network
def test_a_restarted_pushgateway_still_holds_the_last_verified_backup(tmp_path: Path) -> None:
    # The persistence flags as rendered, with the data folder moved under tmp_path. Debian's 1.5.1
    # (the image runs v1.11.3: the README says what that leaves unproven).
    data = tmp_path / "data"
    data.mkdir()
    argv = [a.replace(pg.DATA_DIR, str(data)) for a in pg.ARGS if not a.startswith("--web.listen-address")]
    assert argv == [f"--persistence.file={data}/metrics", "--persistence.interval=1m"]
    started = int(time.time()) - 900
    with pushgateway(tmp_path, extra_args=argv) as url:
        _report(url, tmp_path, "postgres", started)
        assert _backup_lines(url) == [_line(started)]
    # A clean stop writes the file out; a new process reads it back.
    assert (data / "metrics").stat().st_size > 0
    with pushgateway(tmp_path, extra_args=argv) as url:
        assert _backup_lines(url) == [_line(started)]


def _line(started: int) -> tuple[str, float]:
    return (
        'gpu_platform_backup_verified_timestamp_seconds{instance="",job="gpu-platform-backup",source="postgres"}',
        float(started),
    )
