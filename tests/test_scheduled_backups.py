"""The scheduled backups of the K3s stores in the recorded plans (update and preview) and their schedule.

What the pod's scripts do on real servers is in tests/test_scheduled_backups_real.py; here: the
CronJobs exist exactly in the phases whose stores run, their pods are the restricted, secret-safe
pods the brief of components/platform/scheduled_backups.py describes, the stores' NetworkPolicies
admit them, a schedule that would set off BackupTooOld by itself is refused before anything is
built, k3s/ alone expires early, and rolling back to p2a deletes no volume and no bucket object.
"""

from __future__ import annotations

import copy
import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.catalog import versions
from components.config.phases import load_phases, phase_ids, range_seconds
from components.core.errors import ConfigError
from components.platform.datastores import BACKUP_LABEL, STORE_LABEL
from components.platform.platform import DATA_NAMESPACE, MONITORING_NAMESPACE
from components.platform.pushgateway import PUSHER_LABEL, push_url
from components.platform.scheduled_backups import (
    MINUTE,
    STARTING_DEADLINE_SECONDS,
    check_schedule,
    cron_schedule,
)
from migrate.harness import SECRET, RecordedPlan, read_stack_file, record, stack_file
from migrate.manifests import manifest
from migrate.plan import diff_plans
from tests.conftest import ROOT, STACKS, recorded, recorded_preview

CRON_JOB = "kubernetes:batch/v1:CronJob"
STORES = ("postgres", "redis", "qdrant")


def _running(phase: str) -> bool:
    return next(p.state.platform.services_stateful for p in load_phases() if p.id == phase)


def _cron_jobs(plan: RecordedPlan) -> dict[str, dict[str, Any]]:
    return {manifest(r)["metadata"]["labels"][STORE_LABEL]: manifest(r) for r in plan.resources if r.type == CRON_JOB}


def _pod(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["jobTemplate"]["spec"]["template"]


# --- the schedule --------------------------------------------------------------------------------


def _run_hours(schedule: str) -> list[int]:
    """The hours of a day the cron expression runs in (this module's forms only)."""
    minute, hours, *rest = schedule.split()
    assert minute == str(MINUTE) and rest == ["*", "*", "*"], schedule
    if hours == "*":
        return list(range(24))
    if "/" in hours:
        span, step = hours.split("/")
        first, last = span.split("-")
        return list(range(int(first), int(last) + 1, int(step)))
    return [int(hours)]


@pytest.mark.parametrize("every", [1, 2, 3, 4, 6, 8, 12, 24])
def test_the_runs_are_evenly_spaced_across_midnight(every: int) -> None:
    hours = _run_hours(cron_schedule(every))
    assert len(hours) == 24 // every
    # Two days of runs: every gap, the one across midnight too, is the interval.
    runs = hours + [h + 24 for h in hours]
    assert {b - a for a, b in itertools.pairwise(runs)} == ({every} if every < 24 else {24})
    assert cron_schedule(every) == cron_schedule(every)  # no random or time-based value


@pytest.mark.parametrize("every", [0, 5, 7, 48])
def test_an_interval_that_does_not_divide_a_day_is_refused(every: int) -> None:
    with pytest.raises(ConfigError, match=r"backups\.everyHours"):
        cron_schedule(every)


def test_the_worst_case_age_must_stay_below_max_backup_age() -> None:
    check_schedule(24, 90, "26h")  # 24h + 15m + 90m = 25h45m
    with pytest.raises(ConfigError) as refused:
        check_schedule(24, 120, "26h")  # 24h + 15m + 2h
    message = str(refused.value)
    assert "\n" not in message
    for part in ("gpu-platform:backups.everyHours=24", "backups.jobDeadlineMinutes=120", "alerts.maxBackupAge=26h"):
        assert part in message
    assert "26h15m" in message
    assert range_seconds("26h") == 26 * 3600 and range_seconds("90m") == 5400
    assert STARTING_DEADLINE_SECONDS < 3600


def test_a_bad_schedule_is_refused_before_the_program_registers_anything() -> None:
    raw = read_stack_file(stack_file("prod"))
    with pytest.raises(ConfigError, match=r"everyHours=24 plus backups\.jobDeadlineMinutes=180"):
        record("prod", phase="p2b-services", overrides={"backups": {**raw["backups"], "jobDeadlineMinutes": 180}})
    # Before the stores run there is no schedule to judge.
    plan = record("prod", phase="p2a-k3s", overrides={"backups": {**raw["backups"], "jobDeadlineMinutes": 180}})
    assert not [r for r in plan.resources if r.type == CRON_JOB]


def test_the_cli_refuses_a_bad_schedule_in_one_line_with_exit_2(tmp_path: Path) -> None:
    raw = yaml.safe_load(stack_file("prod").read_text())
    raw["config"]["gpu-platform:backups"]["everyHours"] = 5
    proposed = tmp_path / "Pulumi.prod.yaml"
    proposed.write_text(yaml.safe_dump(raw))
    result = subprocess.run(
        [sys.executable, "-m", "migrate", "plan", "--stack", "prod", "--phase", "p2b-services",
         "--stack-file", str(proposed)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "everyHours" in result.stderr and "5" in result.stderr, result.stderr


# --- the CronJobs in the plans -------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("phase", phase_ids())
def test_a_cron_job_per_store_exactly_where_the_stores_run(stack: str, phase: str) -> None:
    # A first preview as well at the boundary (the stores start running at p2b-services).
    previews = [recorded_preview(stack, phase)] if phase in ("p2a-k3s", "p2b-services") else []
    for plan in (recorded(stack, phase), *previews):
        jobs = _cron_jobs(plan)
        assert sorted(jobs) == (sorted(STORES) if _running(phase) else [])
        for store, job in jobs.items():
            assert job["metadata"]["namespace"] == DATA_NAMESPACE
            assert job["metadata"]["labels"][BACKUP_LABEL] == "true"
            assert job["spec"]["schedule"] == cron_schedule(24)  # both stacks keep the default
            assert job["spec"]["timeZone"] == "Etc/UTC"
            assert job["spec"]["concurrencyPolicy"] == "Forbid"
            assert job["spec"]["startingDeadlineSeconds"] == STARTING_DEADLINE_SECONDS
            assert job["spec"]["successfulJobsHistoryLimit"] >= 1 and job["spec"]["failedJobsHistoryLimit"] >= 1
            spec = job["spec"]["jobTemplate"]["spec"]
            assert spec["activeDeadlineSeconds"] == 90 * 60
            assert spec["backoffLimit"] >= 1
            for meta in (job["spec"]["jobTemplate"]["metadata"], _pod(job)["metadata"]):
                assert meta["labels"][BACKUP_LABEL] == "true" and meta["labels"][STORE_LABEL] == store
            assert _pod(job)["metadata"]["labels"][PUSHER_LABEL] == "true"


@pytest.mark.parametrize("stack", STACKS)
def test_each_pod_dumps_uploads_verifies_then_reports(stack: str) -> None:
    jobs = _cron_jobs(recorded(stack, "p2b-services"))
    images = {
        "postgres": versions.POSTGRES_IMAGE,
        "redis": versions.REDIS_IMAGE,
        "qdrant": versions.RESTORE_FETCH_IMAGE,
    }
    for store, job in jobs.items():
        spec = _pod(job)["spec"]
        steps = [(c["name"], c["image"], c["command"]) for c in spec["initContainers"] + spec["containers"]]
        assert steps == [
            ("dump", images[store], ["/bin/sh", f"/scripts/backup-dump-{store}.sh"]),
            ("upload", versions.RESTORE_FETCH_IMAGE, ["/bin/sh", "/scripts/backup-upload.sh"]),
            ("verify", images[store], ["/bin/sh", f"/scripts/backup-verify-{store}.sh"]),
            ("report", versions.RESTORE_FETCH_IMAGE, ["/bin/sh", "/scripts/backup-report.sh"]),
        ]
        assert [c["name"] for c in spec["containers"]] == ["report"]  # the only one after every init step
        report = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
        assert report["PUSHGATEWAY_URL"] == push_url(MONITORING_NAMESPACE)
        assert report["BACKUP_SOURCE"] == store
        upload = {e["name"]: e for e in spec["initContainers"][1]["env"]}
        assert upload["BACKUP_PREFIX"]["value"] == "k3s"
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert upload[key]["valueFrom"]["secretKeyRef"]["name"] == "backup-writer"
        # Restricted, like the restore pods: non-root, read-only root, no token, CPU limits.
        assert spec["restartPolicy"] == "Never"
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        for c in spec["initContainers"] + spec["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["resources"]["limits"]["cpu"] and c["resources"]["requests"]["memory"]
            for env in c["env"]:
                if any(word in env["name"] for word in ("PASSWORD", "SECRET", "ACCESS_KEY", "API_KEY")):
                    assert "secretKeyRef" in env.get("valueFrom", {}), f"{store}/{c['name']}: {env['name']}"
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["scripts"]["configMap"]["name"] == "backup-scripts"


@pytest.mark.parametrize("stack", STACKS)
def test_the_scripts_and_the_keys_reach_the_cluster_whole_and_secret(stack: str) -> None:
    plan = recorded(stack, "p2b-services")
    (config_map,) = [
        manifest(r) for r in plan.resources if r.type == "kubernetes:core/v1:ConfigMap" and r.name.endswith("-scripts")
        and r.name.startswith("scheduled-backups")
    ]  # fmt: skip
    scripts = ROOT / "components" / "scripts"
    for name, body in config_map["data"].items():
        assert body == (scripts / name).read_text(), name
    assert {n for n in config_map["data"] if n.startswith("backup-")} == {
        *(f"backup-{step}-{s}.sh" for s in STORES for step in ("dump", "verify")),
        "backup-upload.sh",
        "backup-report.sh",
    }
    (writer,) = [r for r in plan.resources if r.name == "scheduled-backups-writer"]
    assert writer.type == "kubernetes:core/v1:Secret"
    assert writer.inputs["stringData"] == {"access-key-id": SECRET, "secret-access-key": SECRET}


@pytest.mark.parametrize("stack", STACKS)
def test_each_store_admits_its_own_backup_pods(stack: str) -> None:
    plan = recorded(stack, "p2b-services")
    policies = {
        manifest(r)["metadata"]["name"]: manifest(r)
        for r in plan.resources
        if r.type == "kubernetes:networking.k8s.io/v1:NetworkPolicy"
        and manifest(r)["metadata"]["namespace"] == DATA_NAMESPACE
    }
    for store in STORES:
        peers = policies[f"allow-{store}-clients"]["spec"]["ingress"][0]["from"]
        backup = {BACKUP_LABEL: "true", STORE_LABEL: store}
        assert {"podSelector": {"matchLabels": backup}} in peers, peers
        # Another store's backup pods are not admitted.
        assert all(p.get("podSelector", {}).get("matchLabels", {}).get(STORE_LABEL) in (None, store) for p in peers)


# --- the bucket and the rollback -------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("phase", ["p2a-k3s", "p2b-services", "p4-decommission"])
def test_only_k3s_objects_expire_early_and_only_where_they_are_written(stack: str, phase: str) -> None:
    (lifecycle,) = [r for r in recorded(stack, phase).resources if r.type.endswith("BucketLifecycleConfiguration")]
    rules = {rule["id"]: rule for rule in lifecycle.inputs["rules"]}
    retention = read_stack_file(stack_file(stack))["backups"].get("retentionDays", 90)
    assert rules["expire-backups"]["expiration"]["days"] == retention
    if _running(phase):
        k3s = rules["expire-k3s-backups"]
        assert k3s["filter"] == {"prefix": "k3s/"}
        assert k3s["expiration"]["days"] == 35
    else:
        assert "expire-k3s-backups" not in rules
    # No rule other than the bucket's own retention reaches the migration's records.
    early = [r for r in rules.values() if r["id"] != "expire-backups"]
    assert all(r["filter"]["prefix"] == "k3s/" for r in early)


@pytest.mark.parametrize("stack", STACKS)
def test_rolling_back_to_p2a_removes_the_cron_jobs_and_deletes_no_volume_or_object(stack: str) -> None:
    diff = diff_plans(recorded(stack, "p2b-services"), recorded(stack, "p2a-k3s"))
    deleted = {c.name: c.type for c in diff.changes if c.kind == "delete"}
    assert {f"scheduled-backups-{s}" for s in STORES} <= deleted.keys()
    assert deleted["scheduled-backups-writer"] == "kubernetes:core/v1:Secret"
    # What the component owned goes, and it owned no data: its CronJobs, scripts and keys.
    mine = {c.type for c in diff.changes if c.kind == "delete" and c.name.startswith("scheduled-backups")}
    assert mine == {
        CRON_JOB,
        "kubernetes:core/v1:ConfigMap",
        "kubernetes:core/v1:Secret",
        "gpu-platform:scheduled_backups:ScheduledBackups",
    }
    # No volume, no store, no data namespace, no bucket and no bucket object is deleted by the move.
    data = ("StatefulSet", "PersistentVolumeClaim", "aws:s3/bucket:", "BucketObject", "storage/bucket")
    gone = [f"{n} ({t})" for n, t in deleted.items() if any(k in t for k in data)]
    assert not gone, f"rolling back deletes data: {gone}"
    assert not [n for n, t in deleted.items() if t.endswith(":Namespace") and "data" in n]
    # The bucket's lifecycle is updated (the k3s/ rule goes), never replaced or deleted.
    lifecycle = [c for c in diff.changes if c.type.endswith("BucketLifecycleConfiguration")]
    assert [c.kind for c in lifecycle] == ["update"]
    assert all(not c.stateful for c in diff.changes if c.kind in ("delete", "replace") and "scheduled" in c.name)


def test_the_cron_jobs_pass_strict_validation_and_a_broken_one_does_not() -> None:
    # tests/test_manifests.py validates every object of every phase; this pins that the CronJobs are
    # among them with kubernetes-validate's own batch/v1 CronJob schema, not a CRD fallback.
    from tests.test_manifests import _builtin_validator, problems  # noqa: PLC0415 (loads the schemas)

    assert _builtin_validator("batch/v1", "CronJob") is not None
    jobs = _cron_jobs(recorded("prod", "p2b-services"))
    for job in jobs.values():
        assert problems(job) == [], job["metadata"]["name"]
    broken = copy.deepcopy(jobs["postgres"])
    broken["spec"]["startingDeadlineSeconds"] = "15m"
    _pod(broken)["spec"]["initContainers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    found = problems(broken)
    assert any("startingDeadlineSeconds" in p for p in found), found
    assert any("readOnlyRootFileSystem" in p for p in found), found
