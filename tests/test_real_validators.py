"""What the hosts and Prometheus read, checked by the real software that reads it.

- The cloud-init user data of a Lambda GPU host (components/hosts/gpu_host.py:render_cloud_init, from
  components/scripts/cloud-init-host-key.yaml) passes `cloud-init schema --config-file`.
- Every PrometheusRule of every recorded phase of both stacks passes `promtool check rules`, and
  the SLO alerts behave as named under `promtool test rules` (tests/fixtures/promtool/): each
  fires on series that must fire it and stays quiet on series that must not.

Both tools come from the distribution (`cloud-init`, and `promtool` in `prometheus`); `make
tools-validators` installs them. A missing one, or one older than tests/tool_versions.py allows,
fails with the reason and that command; the versions checked: README.md, "Outside tools".
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from components.config.phases import phase_ids
from components.hosts.gpu_host import CLOUD_INIT_TEMPLATE, render_cloud_init
from components.platform.charts import slo_rules
from components.platform.platform import DATA_NAMESPACE, NAMESPACE
from migrate.manifests import manifest
from tests.conftest import STACKS, recorded
from tests.tool_versions import UnfitToolError, require, version_of

PROMTOOL_CASES = Path(__file__).parent / "fixtures" / "promtool" / "slo-alerts.test.yaml"
RULE_TYPE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"


def tool(name: str) -> str:
    """The tool, fit for these tests (tests/tool_versions.py: the versions checked and the oldest)."""
    try:
        return require(name)
    except UnfitToolError as exc:
        pytest.fail(str(exc), pytrace=False)


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False, cwd=cwd)


# --- cloud-init --------------------------------------------------------------------------------


def _host_key() -> tuple[str, str]:
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public.decode()


def cloud_init_schema(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "user-data.yaml"
    path.write_text(text)
    return run(tool("cloud-init"), "schema", "--config-file", str(path))


def valid_line(path: Path) -> str:
    """What `cloud-init schema --config-file` prints for a valid file: 23.4 reworded it
    (cloudinit/config/schema.py: "Valid cloud-config: FILE" up to 23.3, "Valid schema FILE" after)."""
    return f"Valid schema {path}" if version_of("cloud-init") >= (23, 4) else f"Valid cloud-config: {path}"


def test_the_gpu_host_user_data_passes_cloud_init_schema(tmp_path: Path) -> None:
    result = cloud_init_schema(render_cloud_init(*_host_key()), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert valid_line(tmp_path / "user-data.yaml") in result.stdout.splitlines()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # The template before this check: cloud-init's schema refuses an empty list.
        (("ssh_genkeytypes: [ed25519]", "ssh_genkeytypes: []"), "is too short"),
        (("ssh_deletekeys: true", "ssh_deletekeys: yes please"), "ssh_deletekeys"),
        (("ssh_genkeytypes: [ed25519]", "ssh_genkeytypes: [ed25519, ed448]"), "ed448"),
    ],
)
def test_cloud_init_schema_rejects_a_broken_template(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    template = CLOUD_INIT_TEMPLATE.read_text()
    assert change[0] in template
    result = cloud_init_schema(render_cloud_init(*_host_key(), template.replace(*change)), tmp_path)
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr


# --- promtool ----------------------------------------------------------------------------------


@functools.cache
def prometheus_rules() -> dict[str, tuple[str, dict[str, Any]]]:
    """Unique PrometheusRule specs of every phase of both stacks: JSON text -> (where, spec)."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for stack in STACKS:
        for phase in phase_ids():
            for res in recorded(stack, phase).resources:
                if res.type == RULE_TYPE:
                    spec = manifest(res)["spec"]
                    out.setdefault(json.dumps(spec, sort_keys=True), (f"{stack}/{phase}: {res.name}", spec))
    return out


def check_rules(spec: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": spec["groups"]}, sort_keys=False))
    return run(tool("promtool"), "check", "rules", str(path))


def test_every_prometheus_rule_passes_promtool_check_rules(tmp_path: Path) -> None:
    found = prometheus_rules()
    assert found, "the phases with SLO alerts register a PrometheusRule"
    for where, spec in found.values():
        result = check_rules(spec, tmp_path)
        assert result.returncode == 0, f"{where}:\n{result.stdout}{result.stderr}"


def test_promtool_check_rules_rejects_a_broken_expression(tmp_path: Path) -> None:
    (_, spec) = next(iter(prometheus_rules().values()))
    broken = json.loads(json.dumps(spec))
    broken["groups"][0]["rules"][0]["expr"] = "sum(rate(traefik_service_requests_total[5m]"
    result = check_rules(broken, tmp_path)
    assert result.returncode != 0 and "parse error" in result.stdout + result.stderr


def promtool_test(spec: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    (tmp_path / "slo-rules.yaml").write_text(yaml.safe_dump({"groups": spec["groups"]}, sort_keys=False))
    shutil.copy(PROMTOOL_CASES, tmp_path / PROMTOOL_CASES.name)
    return run(tool("promtool"), "test", "rules", PROMTOOL_CASES.name, cwd=tmp_path)


def test_the_slo_alerts_fire_when_and_only_when_they_should(tmp_path: Path) -> None:
    # The SLO rules only (components/observability/'s have their own cases, tests/test_observability.py).
    specs = [(where, spec) for where, spec in prometheus_rules().values() if where.endswith("-slo-rules")]
    # Both stacks and every phase with alerts register the same rules, so one run covers them all.
    assert len(specs) == 1, [where for where, _ in specs]
    result = promtool_test(specs[0][1], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules_catches_an_alert_that_never_fires(tmp_path: Path) -> None:
    groups = slo_rules(NAMESPACE, DATA_NAMESPACE)
    for rule in groups[0]["rules"]:
        if rule["alert"] == "PlatformErrorBudgetFastBurn":
            rule["expr"] = rule["expr"].replace("> 14.4 *", "> 144 *")
    result = promtool_test({"groups": groups}, tmp_path)
    assert result.returncode != 0 and "PlatformErrorBudgetFastBurn" in result.stdout + result.stderr


def test_every_slo_alert_has_a_firing_and_a_quiet_case() -> None:
    cases = yaml.safe_load(PROMTOOL_CASES.read_text())["tests"]
    checks = [check for case in cases for check in case["alert_rule_test"]]
    alerts = {rule["alert"] for group in slo_rules(NAMESPACE, DATA_NAMESPACE) for rule in group["rules"]}
    assert "PlatformSloMetricsAbsent" in alerts
    for alert in sorted(alerts):
        mine = [c for c in checks if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in mine), f"{alert}: no case in which it fires"
        assert any(not c["exp_alerts"] for c in mine), f"{alert}: no case in which it stays quiet"
