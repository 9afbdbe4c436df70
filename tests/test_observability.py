"""The dashboards and alert rules (components/observability/): where they exist, what Grafana's sidecar
needs to load them, where their thresholds come from, and `promtool test rules` inducing and
clearing every alert (tests/fixtures/promtool/observability.test.yaml and backups.test.yaml).

That every query names real series is tests/real/test_observability.py's business.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.catalog import versions
from components.catalog.services import STORES
from components.config.phases import AlertThresholds, alert_thresholds, load_phases, phase_ids
from components.observability import series
from components.observability.alerts import rule_groups
from components.observability.dashboards import CONCERNS, FOLDER, Scope, boards, concerns_for, dashboard_json
from components.observability.shipping import DASHBOARD_LABEL
from components.platform.charts import DASHBOARD_FOLDER_ANNOTATION, MONITORING_NAMESPACE
from migrate.manifests import manifest
from tests.conftest import STACKS, recorded, upstream_root

PROMTOOL_CASES = Path(__file__).parent / "fixtures" / "promtool"
# BackupTooOld's cases span days: their file evaluates every 15 minutes (see its header).
CASE_FILES = (PROMTOOL_CASES / "observability.test.yaml", PROMTOOL_CASES / "backups.test.yaml")
RULE_TYPE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
CONFIGMAP_TYPE = "kubernetes:core/v1:ConfigMap"
LAST = phase_ids()[-1]
# The fixture's cases are written for two GPUs and the last phase's thresholds (see its header).
CASE_GPUS = 2
# ... and for the workstation's llama-server scraped beside the cluster's (a LAN listen address).
CASE_SCOPE = Scope(llama_services=(series.JOB_LLAMA, series.JOB_LLAMA_WORKSTATION))


def _shipped(stack: str, phase: str) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The dashboard ConfigMaps and observability PrometheusRules a recorded plan registers, by name."""
    plan = recorded(stack, phase)
    maps = {
        r.name: manifest(r)
        for r in plan.resources
        if r.type == CONFIGMAP_TYPE and r.name.startswith("observability-dashboard-")
    }
    rules = {r.name: manifest(r) for r in plan.resources if r.type == RULE_TYPE and r.name.startswith("observability-")}
    return maps, rules


@pytest.mark.parametrize("stack", STACKS)
def test_each_phase_ships_the_dashboards_and_rules_of_what_it_runs(stack: str) -> None:
    expected = {
        "p0-baseline": (),
        "p1-fly-freeze": (),
        "p2a-k3s": ("gpus",),
        "p2b-services": ("gpus", "cutover", "data"),
        "p3-local-brain": ("gpus", "brain", "router", "cutover", "data"),
        "p4-decommission": ("gpus", "brain", "router", "cutover", "data"),
    }
    for phase in load_phases():
        maps, rules = _shipped(stack, phase.id)
        concerns = concerns_for(phase.state)
        if phase.id in expected:
            assert concerns == expected[phase.id], phase.id
        assert sorted(maps) == sorted(f"observability-dashboard-{c}" for c in concerns), phase.id
        assert sorted(rules) == sorted(f"observability-rules-{c}" for c in concerns), phase.id


def test_the_sidecar_settings_are_the_charts() -> None:
    kps = yaml.safe_load(
        (
            upstream_root()
            / "charts"
            / f"kube-prometheus-stack-{versions.KUBE_PROMETHEUS_STACK_CHART[2]}"
            / "values.yaml"
        ).read_text()
    )
    sidecar = kps["grafana"]["sidecar"]["dashboards"]
    assert sidecar["enabled"] is True
    assert (sidecar["label"], str(sidecar["labelValue"])) == DASHBOARD_LABEL
    # Every namespace is watched, so the monitoring namespace is (the ConfigMaps live there anyway).
    assert sidecar["searchNamespace"] == "ALL"
    assert kps["grafana"]["sidecar"]["datasources"]["uid"] == "prometheus"


@pytest.mark.parametrize("stack", STACKS)
def test_dashboard_configmaps_carry_the_label_folder_and_json(stack: str) -> None:
    maps, _ = _shipped(stack, LAST)
    assert len(maps) == len(CONCERNS)
    for name, obj in maps.items():
        meta = obj["metadata"]
        assert meta["namespace"] == MONITORING_NAMESPACE
        assert meta["labels"][DASHBOARD_LABEL[0]] == DASHBOARD_LABEL[1], name
        assert meta["annotations"] == {DASHBOARD_FOLDER_ANNOTATION: FOLDER}, name
        ((key, text),) = obj["data"].items()
        board = json.loads(text)
        assert key == f"{board['uid']}.json" and board["panels"], name
        for panel in board["panels"]:
            assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}
            assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]


def test_the_release_turns_folders_from_annotations_on() -> None:
    values = next(
        r.inputs["values"]
        for r in recorded("prod", LAST).resources
        if r.type == "kubernetes:helm.sh/v3:Release" and r.inputs["chart"] == "kube-prometheus-stack"
    )
    dashboards = values["grafana"]["sidecar"]["dashboards"]
    assert dashboards == {
        "folderAnnotation": DASHBOARD_FOLDER_ANNOTATION,
        "provider": {"foldersFromFilesStructure": True},
    }


def test_the_board_json_holds_each_panels_queries_and_target_line() -> None:
    t = alert_thresholds(LAST)
    for board in boards(CONCERNS, t, Scope()):
        built = json.loads(dashboard_json(board))
        assert [p["title"] for p in built["panels"]] == [p.title for p in board.panels]
        for panel, model in zip(built["panels"], board.panels, strict=True):
            assert [q["expr"] for q in panel["targets"]] == [q.expr for q in model.queries]
            steps = panel["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", [])
            assert [s["value"] for s in steps[1:]] == ([model.threshold] if model.threshold is not None else [])


@pytest.mark.parametrize("stack", STACKS)
def test_the_recorded_rules_use_the_phase_files_thresholds(stack: str) -> None:
    for phase in phase_ids():
        _, rules = _shipped(stack, phase)
        t = alert_thresholds(phase)
        for name, obj in rules.items():
            concern = name.removeprefix("observability-rules-")
            got = obj["spec"]["groups"]
            gpus = int(
                next((r["expr"].rsplit("<", 1)[1] for g in got for r in g["rules"] if r["alert"] == "GpuMissing"), 1)
            )
            router = recorded(stack, phase).outputs.get("router") or {}
            scope = Scope(local_groups=tuple(router.get("aliases") or Scope().local_groups))
            assert got == rule_groups(concern, t, scope, gpus), f"{phase}: {name}"


def test_a_threshold_changed_in_a_phase_file_changes_the_rule(tmp_path: Path) -> None:
    stacks = tmp_path / "stacks"
    shutil.copytree(Path(__file__).resolve().parent.parent / "stacks", stacks)
    p3 = stacks / "p3-local-brain.yaml"
    p3.write_text(p3.read_text().replace("decodeTokensPerSecond: 40", "decodeTokensPerSecond: 55"))
    p2a = stacks / "p2a-k3s.yaml"
    p2a.write_text(p2a.read_text().replace("sustained: 15m", "sustained: 25m"))
    t = alert_thresholds("p4-decommission", stacks)
    rule = next(r for r in rule_groups("brain", t, Scope())[0]["rules"] if r["alert"] == "LlamaDecodeRateLow")
    assert rule["expr"].endswith("< 55") and rule["for"] == "25m"
    # Before p3 names the check, the alert compares with the check's default.
    assert alert_thresholds("p2a-k3s", stacks).decode_tokens_per_second == 40


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing; run `make tools-validators` (it installs Debian's prometheus)")
    return found


def _promtool_test(groups: list[dict[str, Any]], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    (tmp_path / "observability-rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    for cases in CASE_FILES:
        shutil.copy(cases, tmp_path / cases.name)
    return subprocess.run(
        [_promtool(), "test", "rules", *(cases.name for cases in CASE_FILES)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )


def _last_phase_rules() -> list[dict[str, Any]]:
    t = alert_thresholds(LAST)
    return [g for c in CONCERNS for g in rule_groups(c, t, CASE_SCOPE, CASE_GPUS)]


def test_every_alert_fires_when_induced_and_stays_quiet_otherwise(tmp_path: Path) -> None:
    result = _promtool_test(_last_phase_rules(), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_catches_a_wrong_threshold(tmp_path: Path) -> None:
    groups = _last_phase_rules()
    for group in groups:
        for rule in group["rules"]:
            if rule["alert"] == "LlamaDecodeRateLow":
                rule["expr"] = rule["expr"].replace("< 40", "< 20")
    result = _promtool_test(groups, tmp_path)
    assert result.returncode != 0 and "LlamaDecodeRateLow" in result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_case_and_every_source_an_absent_alert() -> None:
    checks = [
        c
        for cases in CASE_FILES
        for case in yaml.safe_load(cases.read_text())["tests"]
        for c in case["alert_rule_test"]
    ]
    rules = [r for g in _last_phase_rules() for r in g["rules"]]
    for rule in rules:
        mine = [c for c in checks if c["alertname"] == rule["alert"]]
        assert any(c["exp_alerts"] for c in mine), f"{rule['alert']}: no case in which it fires"
        assert any(not c["exp_alerts"] for c in mine), f"{rule['alert']}: no case in which it stays quiet"
    absent = {r["alert"] for r in rules if "absent(" in r["expr"]}
    assert absent == {
        "DcgmExporterAbsent",
        "LlamaMetricsAbsent",
        "RouterMetricsAbsent",
        "TraefikMetricsAbsent",
        "RestoreJobMetricsAbsent",
        # The Pushgateway unscraped or the backup series renamed; a store that never reported.
        "BackupMetricsAbsent",
        "BackupTooOld",
    }


def test_the_llama_alerts_cover_each_scraped_server_and_only_those() -> None:
    t = alert_thresholds(LAST)

    def brain(scope: Scope) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for rule in rule_groups("brain", t, scope)[0]["rules"]:
            out.setdefault(rule["alert"], []).append(rule["expr"])
        return out

    cluster_only, both = brain(Scope()), brain(CASE_SCOPE)
    assert cluster_only["LlamaServerDown"] == ['up{job=~"llama",namespace="llm"} == 0']
    assert both["LlamaServerDown"] == ['up{job=~"llama|llama-workstation",namespace="llm"} == 0']
    # One absent() per server: the cluster's series never hide the workstation's disappearance.
    assert cluster_only["LlamaMetricsAbsent"] == [
        'absent(llamacpp:tokens_predicted_total{namespace="llm",service="llama"})'
    ]
    assert both["LlamaMetricsAbsent"] == [
        'absent(llamacpp:tokens_predicted_total{namespace="llm",service="llama"})',
        'absent(llamacpp:tokens_predicted_total{namespace="llm",service="llama-workstation"})',
    ]
    # The decode rate is per server already (by namespace, service): one rule serves both.
    assert cluster_only["LlamaDecodeRateLow"] == both["LlamaDecodeRateLow"]


def test_promtool_catches_a_workstation_alert_that_misses_the_workstation(tmp_path: Path) -> None:
    # The rules as they were before the workstation was scraped fail its cases.
    groups = [g for c in CONCERNS for g in rule_groups(c, alert_thresholds(LAST), Scope(), CASE_GPUS)]
    result = _promtool_test(groups, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "LlamaServerDown" in output and "LlamaMetricsAbsent" in output


# --- data safety: the scheduled backups' age ----------------------------------------------------


def _data_rules(t: AlertThresholds) -> list[dict[str, Any]]:
    return [r for g in rule_groups("data", t, Scope()) for r in g["rules"]]


def test_every_store_has_its_own_never_reported_rule_held_for_max_backup_age() -> None:
    t = alert_thresholds(LAST)
    absent = [r for r in _data_rules(t) if r["alert"] == "BackupTooOld" and r["expr"].startswith("absent(")]
    assert sorted(re.findall(r'source="(\w+)"', " ".join(r["expr"] for r in absent))) == sorted(STORES)
    assert {r["for"] for r in absent} == {t.settings.max_backup_age} == {"26h"}


def test_max_backup_age_comes_from_the_phase_files(tmp_path: Path) -> None:
    stacks = tmp_path / "stacks"
    shutil.copytree(Path(__file__).resolve().parent.parent / "stacks", stacks)
    p2b = stacks / "p2b-services.yaml"
    assert "maxBackupAge: 26h" in p2b.read_text()
    p2b.write_text(p2b.read_text().replace("maxBackupAge: 26h", "maxBackupAge: 2d"))
    t = alert_thresholds(LAST, stacks)
    too_old = [r for r in _data_rules(t) if r["alert"] == "BackupTooOld"]
    assert too_old[0]["expr"].endswith(f"> {2 * 86400}") and "2d" in too_old[0]["annotations"]["summary"]
    assert all(r["for"] == "2d" for r in too_old[1:])
    (board,) = boards(("data",), t, Scope())
    assert board.panels[0].threshold == 2 * 86400


def _without(alert_rules: list[dict[str, Any]], drop: Any) -> list[dict[str, Any]]:
    return [{**g, "rules": [r for r in g["rules"] if not drop(r)]} for g in alert_rules]


def test_promtool_catches_a_backup_rule_that_misses_a_store(tmp_path: Path) -> None:
    # Without the per-store absent() rules, a store that never reported goes unnoticed.
    groups = _without(_last_phase_rules(), lambda r: r["alert"] == "BackupTooOld" and "absent(" in r["expr"])
    result = _promtool_test(groups, tmp_path)
    assert result.returncode != 0 and "redis never reported" in result.stdout + result.stderr


def test_promtool_catches_a_wrong_backup_age_threshold(tmp_path: Path) -> None:
    groups = _last_phase_rules()
    for group in groups:
        for rule in group["rules"]:
            if rule["alert"] == "BackupTooOld" and not rule["expr"].startswith("absent("):
                rule["expr"] = rule["expr"].replace("> 93600", "> 108000")  # 30h instead of 26h
    result = _promtool_test(groups, tmp_path)
    assert result.returncode != 0 and "postgres's backups stop verifying" in result.stdout + result.stderr
