"""Scheduled, verified backups of the K3s data stores, once the stores run (platform.servicesStateful).

After the migration restored Qdrant, Redis and Postgres from the Compose host's verified backups
(components/platform/datastores.py), their only copy is a node volume. From p2b-services on, one
CronJob per store in the data namespace takes a backup on a fixed schedule (`backups.everyHours`)
and proves it the way the migration proved its own (components/migration/backups.py): each Job's
pod runs, in order,

    dump     the store's image (Qdrant: the curl image, through the API): pg_dump -Fc of the platform
             database, the live server's RDB (redis-cli --rdb), a full-storage snapshot;
             $BACKUP_DIR/started is the unix second before the dump began
    upload   curl image: a new key k3s/<store>/<UTC stamp>-<48 random bits>.<ext>, never an existing
             one, then read BACK from the bucket and compared, size and SHA-256, with the dump
    verify   the store's image (Qdrant: the curl image): the read-back object restored into a
             scratch instance inside the pod and checked (Postgres: every listed table restored;
             Redis: the key count; Qdrant: every collection's snapshot present and readable, which
             is weaker, see the README)
    report   curl image, scripts/backup-report.sh: the three gauges on the Pushgateway

the first three as init containers and `report` as the pod's one container, so a failed step
stops the pod before `report` and nothing is pushed: the newest verified backup's age keeps
growing until the alert fires. Each step is a script in
components/scripts, mounted from the ConfigMap `backup-scripts`.

Rolling back to p2a removes the CronJobs, their ConfigMap and their Secret; no object in the
bucket and no volume belongs to this component, so none is touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s
from pydantic import InstanceOf, model_validator

from components.catalog import versions
from components.catalog.services import STORES, SecretEnv, Store
from components.config.phases import range_seconds
from components.config.schema import EVERY_HOURS
from components.core.errors import ConfigError
from components.core.model import Args
from components.handles import ClusterHandle
from components.platform.datastores import (
    BACKUP_LABEL,
    STORE_LABEL,
    STORE_SPECS,
    BucketTarget,
    bucket_keys_secret,
    client_env,
    script,
)
from components.platform.kube import container_security, k8s_opts, labels, pod_security, secret_env
from components.platform.pushgateway import PUSHER_LABEL, push_url

BACKUP_WRITER_SECRET: Final = "backup-writer"  # in the data namespace: the bucket's keys
SCRIPTS_CONFIG_MAP: Final = "backup-scripts"
PREFIX: Final = "k3s"  # the bucket's prefix of these objects (fly/ and compose/ are the migration's)
# Minute past the hour every run starts: fixed (no random or time-based value in a plan), and away
# from the top of the hour, when other people's jobs pile up.
MINUTE: Final = 17
# The first run of the day is at 02:17 UTC (the quiet hours), or earlier where the interval is shorter.
FIRST_HOUR: Final = 2
# How late the CronJob controller may start a run it missed (a restarted server) before skipping it.
STARTING_DEADLINE_SECONDS: Final = 900
EXTENSION: Final[dict[Store, str]] = {"postgres": "dump", "redis": "rdb", "qdrant": "snapshot"}
# The image that runs each store's dump and verify steps: its own tools (Qdrant: the curl image,
# which talks to its API and unpacks the snapshot).
STEP_IMAGE: Final[dict[Store, str]] = {
    "postgres": versions.POSTGRES_IMAGE,
    "redis": versions.REDIS_IMAGE,
    "qdrant": versions.RESTORE_FETCH_IMAGE,
}


def cron_schedule(every_hours: int) -> str:
    """Every `every_hours` hours at minute MINUTE, evenly spaced across midnight.

    The first hour is FIRST_HOUR modulo the interval, so the gap from the day's last run to the
    next day's first is the interval too (2-23/2 would leave a 4-hour gap; 0-23/2 does not).
    """
    if every_hours not in EVERY_HOURS:
        raise ConfigError(f"gpu-platform:backups.everyHours: {every_hours}; expected one of {EVERY_HOURS}")
    if every_hours == 1:
        return f"{MINUTE} * * * *"
    if every_hours == 24:
        return f"{MINUTE} {FIRST_HOUR} * * *"
    return f"{MINUTE} {FIRST_HOUR % every_hours}-23/{every_hours} * * *"


def _hours(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if rest else f"{hours}h"


def check_schedule(every_hours: int, job_deadline_minutes: int, max_backup_age: str) -> None:
    """Refuse a schedule whose worst case reaches the age at which BackupTooOld fires.

    The newest verified backup is, just before a run verifies, at most one interval, plus how late
    the controller may start the run, plus the Job's deadline old: that must stay below
    alerts.maxBackupAge, or the alert fires on a healthy schedule.
    """
    worst = every_hours * 3600 + STARTING_DEADLINE_SECONDS + job_deadline_minutes * 60
    allowed = range_seconds(max_backup_age)
    if worst >= allowed:
        raise ConfigError(
            f"gpu-platform:backups.everyHours={every_hours} plus backups.jobDeadlineMinutes={job_deadline_minutes} "
            f"(and {STARTING_DEADLINE_SECONDS // 60}m of starting deadline) is {_hours(worst)}, not below "
            f"alerts.maxBackupAge={max_backup_age} of the phase file: shorten the interval or the deadline, "
            "or raise alerts.maxBackupAge"
        )


class ScheduledBackupsArgs(Args):
    cluster: InstanceOf[ClusterHandle]
    namespace: str  # the data namespace, where the stores run
    monitoring_namespace: str  # where the Pushgateway runs
    target: BucketTarget
    every_hours: int = 24
    job_deadline_minutes: int = 90
    max_backup_age: str = "26h"  # alerts.maxBackupAge of the phase
    stores: tuple[Store, ...] = STORES
    # The stores' StatefulSets and restore Jobs: no backup of a store before its data is back.
    depends_on: Sequence[InstanceOf[pulumi.Resource]] = ()

    @model_validator(mode="after")
    def _schedule(self) -> ScheduledBackupsArgs:
        check_schedule(self.every_hours, self.job_deadline_minutes, self.max_backup_age)
        unknown = [s for s in self.stores if s not in STORES]
        if unknown:
            raise ConfigError(f"ScheduledBackups: unknown stores {unknown}; expected some of {list(STORES)}")
        return self


class ScheduledBackups(pulumi.ComponentResource):
    """One CronJob per store: dump, upload and read back, restore-verify, report."""

    cron_jobs: dict[str, pulumi.Resource]
    schedule: str

    def __init__(self, name: str, args: ScheduledBackupsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gpu-platform:scheduled_backups:ScheduledBackups", name, None, opts)
        ns = args.namespace
        self.schedule = cron_schedule(args.every_hours)
        scripts = k8s.core.v1.ConfigMap(
            f"{name}-scripts",
            metadata={"name": SCRIPTS_CONFIG_MAP, "namespace": ns, "labels": labels("backup", "backup")},
            data={f: script(f) for f in _script_files(args.stores)},
            opts=k8s_opts(self, args.cluster, depends_on=args.depends_on),
        )
        writer = bucket_keys_secret(
            f"{name}-writer",
            secret_name=BACKUP_WRITER_SECRET,
            namespace=ns,
            secret_labels=labels("backup", "credentials"),
            access_key_id=args.target.access_key_id,
            secret_access_key=args.target.secret_access_key,
            opts=k8s_opts(self, args.cluster, depends_on=args.depends_on),
        )
        self.cron_jobs = {
            store: self._cron_job(name, args, store, [scripts, writer, *args.depends_on]) for store in args.stores
        }
        self.register_outputs({"schedule": self.schedule, "cronJobs": sorted(self.cron_jobs)})

    def _cron_job(
        self, name: str, args: ScheduledBackupsArgs, store: Store, after: list[pulumi.Resource]
    ) -> pulumi.Resource:
        job_labels = {**labels(f"backup-{store}", "backup"), BACKUP_LABEL: "true", STORE_LABEL: store}
        return k8s.batch.v1.CronJob(
            f"{name}-{store}",
            metadata={"name": f"backup-{store}", "namespace": args.namespace, "labels": job_labels},
            spec={
                "schedule": self.schedule,
                "time_zone": "Etc/UTC",
                # A run still going when the next is due is a backup that is late, not two backups.
                "concurrency_policy": "Forbid",
                "starting_deadline_seconds": STARTING_DEADLINE_SECONDS,
                # No ttlSecondsAfterFinished: the last failed Jobs (and their pods' logs) stay until
                # newer ones push them out, so a failure is still there to read and alert on.
                "successful_jobs_history_limit": 3,
                "failed_jobs_history_limit": 3,
                "job_template": {
                    "metadata": {"labels": job_labels},
                    "spec": {
                        # A retry is a new pod with a new key: never an overwrite (scripts/backup-upload.sh).
                        "backoff_limit": 1,
                        "active_deadline_seconds": args.job_deadline_minutes * 60,
                        "template": {
                            "metadata": {"labels": {**job_labels, PUSHER_LABEL: "true"}},
                            "spec": _pod_spec(store, args),
                        },
                    },
                },
            },
            opts=k8s_opts(self, args.cluster, depends_on=after),
        )


def _script_files(stores: Sequence[Store]) -> list[str]:
    return [
        *(f"backup-dump-{s}.sh" for s in stores),
        "backup-upload.sh",
        *(f"backup-verify-{s}.sh" for s in stores),
        "backup-report.sh",
    ]


def _pod_spec(store: Store, args: ScheduledBackupsArgs) -> dict[str, Any]:
    spec = STORE_SPECS[store]
    mounts = [
        {"name": "backup", "mount_path": "/backup"},
        {"name": "scratch", "mount_path": "/scratch"},
        {"name": "scripts", "mount_path": "/scripts", "read_only": True},
        {"name": "tmp", "mount_path": "/tmp"},
    ]

    def step(step_name: str, image: str, script_name: str, env: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "name": step_name,
            "image": image,
            "command": ["/bin/sh", f"/scripts/{script_name}"],
            "env": [{"name": "BACKUP_DIR", "value": "/backup"}, {"name": "SCRATCH_DIR", "value": "/scratch"}, *env],
            "security_context": container_security(),
            "resources": _resources(),
            "volume_mounts": mounts,
        }

    return {
        "restart_policy": "Never",
        "automount_service_account_token": False,
        # The store's own user: the postgres and redis images' tools run as it (initdb refuses root).
        "security_context": pod_security(spec.run_as_user),
        "init_containers": [
            step("dump", STEP_IMAGE[store], f"backup-dump-{store}.sh", client_env(store, args.namespace)),
            step("upload", versions.RESTORE_FETCH_IMAGE, "backup-upload.sh", _upload_env(store, args.target)),
            step("verify", STEP_IMAGE[store], f"backup-verify-{store}.sh", _verify_env(store)),
        ],
        "containers": [
            step(
                "report",
                versions.RESTORE_FETCH_IMAGE,
                "backup-report.sh",
                [
                    {"name": "PUSHGATEWAY_URL", "value": push_url(args.monitoring_namespace)},
                    {"name": "BACKUP_SOURCE", "value": store},
                ],
            )
        ],
        "volumes": [
            {"name": "backup", "empty_dir": {}},
            {"name": "scratch", "empty_dir": {}},
            {"name": "scripts", "config_map": {"name": SCRIPTS_CONFIG_MAP, "default_mode": 0o444}},
            {"name": "tmp", "empty_dir": {}},
        ],
    }


def _verify_env(store: Store) -> list[dict[str, Any]]:
    if store == "redis":
        # Keys written, deleted or expired between the count and the RDB's fork: a busy server's
        # RDB may differ from the count taken just before by a little, never by much.
        return [{"name": "COUNT_TOLERANCE_PERCENT", "value": "2"}]
    return []


def _upload_env(store: Store, target: BucketTarget) -> list[dict[str, Any]]:
    return [
        {"name": "BACKUP_SOURCE", "value": store},
        {"name": "BACKUP_EXT", "value": EXTENSION[store]},
        {"name": "BACKUP_PREFIX", "value": PREFIX},
        {"name": "BACKUP_BUCKET", "value": target.bucket},
        {"name": "S3_REGION", "value": target.region},
        *([{"name": "S3_ENDPOINT", "value": target.endpoint}] if target.endpoint else []),
        *secret_env(
            (
                SecretEnv("AWS_ACCESS_KEY_ID", BACKUP_WRITER_SECRET, "access-key-id"),
                SecretEnv("AWS_SECRET_ACCESS_KEY", BACKUP_WRITER_SECRET, "secret-access-key"),
            )
        ),
    ]


def _resources() -> dict[str, Any]:
    # Like the restore Jobs' (datastores.py): prod policy requires CPU limits on every container.
    return {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "2", "memory": "4Gi"}}
