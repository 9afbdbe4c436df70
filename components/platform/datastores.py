"""Qdrant, Redis and Postgres on K3s, their data restored once from verified backups.

Why typed StatefulSets with the official images, not Helm charts: Bitnami moved its free charts
and images to a legacy repository in 2025, and the alternatives would hide the one object whose
safety matters (the StatefulSet and its volume claim template) inside a chart render, where the
recorded plan cannot see it, kubernetes-validate cannot check it and `protect` cannot reach it.
A single-replica store per kind is what the Compose host runs today; CloudNativePG or the qdrant
chart are the step up once a store needs replicas of its own.

Data is never lost by a phase change:
- the StorageClass `platform-retain` keeps the volume when its claim is deleted (K3s's default
  `local-path` class deletes it);
- the data namespace, the credentials and the StatefulSets exist from p2a (platform.retainStorage)
  on, with 0 replicas until platform.servicesStateful: rolling back p2b -> p2a scales the stores
  to 0 and removes the restore Jobs and the routes, it deletes nothing that holds data;
- each StatefulSet's `persistentVolumeClaimRetentionPolicy` is Retain/Retain, so deleting or
  scaling it down leaves its claims alone;
- in prod the data namespace and the StatefulSets are `protect`ed (Pulumi refuses to delete them:
  only tearing the whole cluster down would, p2a -> p1, and prod refuses that by design) and
  `retain_on_delete` (a deliberate unprotect still leaves them in the cluster).

The restore is a Job per store that depends on the store's VerifiedBackup resource and gets the
expected SHA-256 and size: its init container (scripts/restore-fetch.sh) refuses an object that
differs from what was verified, its restore container (scripts/restore-<store>.sh) never writes
over data it did not restore itself. The objects are what scripts/compose-backup.sh writes:
`pg_dump -Fc` (pg_restore into a staging database, swapped in with its marker in one
transaction), the Redis RDB (loaded by a throwaway redis-server
in the Job and MIGRATEd into the live one), Qdrant's full-storage snapshot (its collection
snapshots uploaded one by one, then its aliases). The Jobs carry the label `gpu-platform/restore=true`; the
exit check `restore-jobs-complete` waits for every Job with it to complete.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s
from pydantic import InstanceOf, field_validator, model_validator

from components import HOST_SCRIPT_DIR
from components.catalog import versions
from components.catalog.services import STORES, SecretEnv, Store
from components.core.errors import ConfigError
from components.core.model import Args
from components.handles import ClusterHandle, VerifiedBackup
from components.platform.kube import (
    USES_LABEL,
    container_security,
    k8s_opts,
    labels,
    pod_security,
    secret_env,
    selector,
)

SCRIPTS = HOST_SCRIPT_DIR
STORAGE_CLASS = "platform-retain"
# What the checks helper lists to find the restore Jobs (namespace: the data namespace).
RESTORE_LABEL = "gpu-platform/restore"
RESTORE_SELECTOR = f"{RESTORE_LABEL}=true"
RESTORE_OF_LABEL = "gpu-platform/restore-of"  # on restore pods; the store's NetworkPolicy admits it
# On the scheduled backups' pods (scheduled_backups.py), which the store's NetworkPolicy admits.
BACKUP_LABEL = "gpu-platform/backup"
STORE_LABEL = "gpu-platform/store"
DATA_SECRET = "store-credentials"  # in the data namespace: the stores' own passwords
BACKUP_READER_SECRET = "backup-reader"  # in the data namespace: read-only keys for the bucket
POSTGRES_DATABASE = "platform"  # the Compose stack's database; DATABASE_URL points at it


@dataclass(frozen=True)
class StoreSpec:
    name: Store
    image: str
    ports: Mapping[str, int]  # name -> port; the first is the clients' port
    run_as_user: int
    data_path: str
    storage: Mapping[str, str]  # per environment
    cpu: tuple[str, str]
    memory: tuple[str, str]
    restore_image: str  # the image whose tools restore this store
    scratch_paths: tuple[str, ...] = ("/tmp",)  # writable emptyDirs under a read-only root

    @property
    def port(self) -> int:
        return next(iter(self.ports.values()))


STORE_SPECS: Mapping[Store, StoreSpec] = {
    "postgres": StoreSpec(
        name="postgres",
        image=versions.POSTGRES_IMAGE,
        ports={"postgres": 5432},
        run_as_user=999,  # the image's postgres user
        data_path="/var/lib/postgresql",  # Postgres 18 keeps PGDATA in <this>/18/docker
        storage={"dev": "20Gi", "prod": "200Gi"},
        cpu=("500m", "2"),
        memory=("1Gi", "4Gi"),
        restore_image=versions.POSTGRES_IMAGE,
        scratch_paths=("/tmp", "/var/run/postgresql"),
    ),
    "redis": StoreSpec(
        name="redis",
        image=versions.REDIS_IMAGE,
        ports={"redis": 6379},
        run_as_user=999,  # the image's redis user
        data_path="/data",
        storage={"dev": "5Gi", "prod": "20Gi"},
        cpu=("250m", "1"),
        memory=("512Mi", "2Gi"),
        restore_image=versions.REDIS_IMAGE,
    ),
    "qdrant": StoreSpec(
        name="qdrant",
        image=versions.QDRANT_IMAGE,
        ports={"http": 6333, "grpc": 6334},
        run_as_user=1000,  # the -unprivileged image's user
        data_path="/qdrant/storage",
        storage={"dev": "20Gi", "prod": "200Gi"},
        cpu=("500m", "4"),
        memory=("2Gi", "8Gi"),
        restore_image=versions.RESTORE_FETCH_IMAGE,
        # Qdrant writes its init marker and snapshots outside the storage dir.
        scratch_paths=("/tmp", "/qdrant/snapshots", "/qdrant/init"),
    ),
}


def store_host(store: Store, namespace: str) -> str:
    return f"{store}.{namespace}.svc.cluster.local"


def script(name: str) -> str:
    path = SCRIPTS / name
    try:
        return path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read restore script ({exc.strerror})") from None


def bucket_keys_secret(
    resource_name: str,
    *,
    secret_name: str,
    namespace: str,
    secret_labels: Mapping[str, str],
    access_key_id: str | pulumi.Output[str],
    secret_access_key: str | pulumi.Output[str],
    opts: pulumi.ResourceOptions,
) -> pulumi.Resource:
    """The backup bucket's keys as a Secret the Jobs' pods read (access-key-id, secret-access-key):
    the restore Jobs' and the scheduled backups' (scheduled_backups.py), one way for both."""
    return k8s.core.v1.Secret(
        resource_name,
        metadata={"name": secret_name, "namespace": namespace, "labels": dict(secret_labels)},
        type="Opaque",
        string_data={
            "access-key-id": pulumi.Output.secret(access_key_id),
            "secret-access-key": pulumi.Output.secret(secret_access_key),
        },
        opts=opts,
    )


def storage_class(name: str, parent: pulumi.Resource, cluster: ClusterHandle) -> pulumi.Resource:
    """The Retain class for the databases' volumes (phase p2a, platform.retainStorage).

    Not protected: a StorageClass holds no data, and deleting one never touches the volumes it
    made; its fields are immutable, so a change would replace it, which is equally harmless.
    """
    return k8s.storage.v1.StorageClass(
        f"{name}-storage-class",
        metadata={"name": STORAGE_CLASS, "labels": labels(STORAGE_CLASS, "storage")},
        provisioner="rancher.io/local-path",
        # K3s's local-path class has Delete: a deleted claim would take the data with it.
        reclaim_policy="Retain",
        # Bind where the pod is scheduled: a local volume exists on one node only.
        volume_binding_mode="WaitForFirstConsumer",
        allow_volume_expansion=False,  # local-path cannot grow a volume
        opts=k8s_opts(parent, cluster),
    )


class BucketTarget(Args):
    """The backup bucket and the stack's keys for it: what the restore Jobs read and the scheduled
    backups (scheduled_backups.py) write."""

    bucket: str | pulumi.Output[str]
    endpoint: str | None
    region: str
    access_key_id: str | pulumi.Output[str]  # secret
    secret_access_key: str | pulumi.Output[str]  # secret


class RestoreSource(BucketTarget):
    """Where the verified backups are and how to read them."""

    verified: Mapping[str, InstanceOf[VerifiedBackup]]

    @model_validator(mode="after")
    def _every_store(self) -> RestoreSource:
        missing = [s for s in STORES if s not in self.verified]
        if missing:
            raise ConfigError(
                f"platform.restoreFromBackup: no verified backup of {missing} from the Compose host; "
                "backups.composeData must verify qdrant, redis and postgres first"
            )
        return self


class DataStoresArgs(Args):
    cluster: InstanceOf[ClusterHandle]
    namespace: str  # the data namespace (created, and protected in prod, by the caller)
    clients_namespace: str  # where the services that use the stores run
    environment: Literal["dev", "prod"]
    protect: bool  # prod: protect + retain_on_delete on the StatefulSets
    passwords: Mapping[Store, str | pulumi.Output[str]]  # secret; one per store (Qdrant: its API key)
    # The StatefulSets exist from p2a (platform.retainStorage) with 0 replicas and run from
    # platform.servicesStateful on: rolling back past p2b-services scales them to 0, it never
    # deletes them (see components/stack.py, the platform block).
    running: bool = False
    restore: RestoreSource | None = None
    depends_on: Sequence[InstanceOf[pulumi.Resource]] = ()

    # Before the Literal check, so a wrong environment is a ConfigError like the checks below.
    @field_validator("environment", mode="before")
    @classmethod
    def _environment(cls, v: object) -> object:
        if v not in ("dev", "prod"):
            raise ConfigError(f"DataStores: environment {v!r}; expected dev or prod")
        return v

    @model_validator(mode="after")
    def _complete(self) -> DataStoresArgs:
        missing = [s for s in STORES if s not in self.passwords]
        if missing:
            raise ConfigError(f"DataStores: no password for {missing}")
        if self.restore is not None and not self.running:
            raise ConfigError("platform.restoreFromBackup needs platform.servicesStateful (nothing to restore into)")
        return self


class DataStores(pulumi.ComponentResource):
    """One StatefulSet per store, its Services and NetworkPolicies, and the restore Jobs."""

    stateful_sets: dict[str, pulumi.Resource]
    restore_jobs: dict[str, pulumi.Resource]

    def __init__(self, name: str, args: DataStoresArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gpu-platform:datastores:DataStores", name, None, opts)

        ns = args.namespace
        self.stateful_sets = {}
        self.restore_jobs = {}

        redis_conf = pulumi.Output.from_input(args.passwords["redis"]).apply(_redis_conf)
        credentials = k8s.core.v1.Secret(
            f"{name}-credentials",
            metadata={"name": DATA_SECRET, "namespace": ns, "labels": labels("datastores", "credentials")},
            type="Opaque",
            string_data={
                "postgres-password": args.passwords["postgres"],
                "redis-password": args.passwords["redis"],
                "qdrant-api-key": args.passwords["qdrant"],
                # The password lives in the config file, so it never appears in redis-server's argv.
                "redis.conf": redis_conf,
            },
            opts=k8s_opts(self, args.cluster, depends_on=args.depends_on),
        )

        for store in STORES:
            spec = STORE_SPECS[store]
            self.stateful_sets[store] = self._store(name, args, spec, credentials)

        self._network_policies(name, args)
        if args.restore is not None:
            self.restore_jobs = self._restore(name, args, args.restore, credentials, self.stateful_sets)
        self.register_outputs({"statefulSets": sorted(self.stateful_sets), "restoreJobs": sorted(self.restore_jobs)})

    def _store(self, name: str, args: DataStoresArgs, spec: StoreSpec, credentials: pulumi.Resource) -> pulumi.Resource:
        """The store's two Services (clients', headless) and its StatefulSet, whose claim keeps the data."""
        ns = args.namespace
        for suffix, headless in (("", False), ("-headless", True)):
            k8s.core.v1.Service(
                f"{name}-{spec.name}{suffix}-svc",
                metadata={"name": f"{spec.name}{suffix}", "namespace": ns, "labels": labels(spec.name, "datastore")},
                spec={
                    "type": "ClusterIP",
                    **({"cluster_ip": "None", "publish_not_ready_addresses": True} if headless else {}),
                    "selector": selector(spec.name),
                    "ports": [
                        {"name": port_name, "port": port, "target_port": port_name, "protocol": "TCP"}
                        for port_name, port in spec.ports.items()
                    ],
                },
                opts=k8s_opts(self, args.cluster, depends_on=args.depends_on),
            )
        protect = args.protect
        return k8s.apps.v1.StatefulSet(
            f"{name}-{spec.name}",
            metadata={"name": spec.name, "namespace": ns, "labels": labels(spec.name, "datastore")},
            spec={
                "service_name": f"{spec.name}-headless",
                "replicas": 1 if args.running else 0,
                "selector": {"match_labels": selector(spec.name)},
                # Deleting or scaling the StatefulSet down keeps its claims (and so the data).
                "persistent_volume_claim_retention_policy": {"when_deleted": "Retain", "when_scaled": "Retain"},
                "pod_management_policy": "OrderedReady",
                "update_strategy": {"type": "RollingUpdate"},
                "template": {"metadata": {"labels": labels(spec.name, "datastore")}, "spec": _store_pod_spec(spec)},
                "volume_claim_templates": [
                    {
                        "metadata": {"name": "data", "labels": labels(spec.name, "datastore")},
                        "spec": {
                            "access_modes": ["ReadWriteOnce"],
                            "storage_class_name": STORAGE_CLASS,
                            "resources": {"requests": {"storage": spec.storage[args.environment]}},
                        },
                    }
                ],
            },
            # prod: Pulumi refuses to delete a store (protect) and, if someone unprotects it on
            # purpose, leaves it running in the cluster (retain_on_delete): its volume is data.
            opts=k8s_opts(
                self,
                args.cluster,
                depends_on=[credentials, *args.depends_on],
                protect=protect,
                retain_on_delete=protect,
            ),
        )

    def _network_policies(self, name: str, args: DataStoresArgs) -> None:
        ns = args.namespace
        # (name, spec); Any because the SDK's NetworkPolicySpecArgsDict cannot be inferred from a table.
        policies: list[tuple[str, Any]] = [
            ("default-deny-ingress", {"pod_selector": {}, "policy_types": ["Ingress"]}),
        ]
        for store in STORES:
            spec = STORE_SPECS[store]
            policies.append(
                (
                    f"allow-{store}-clients",
                    {
                        "pod_selector": {"match_labels": selector(store)},
                        "policy_types": ["Ingress"],
                        "ingress": [
                            {
                                "from": [
                                    # Only the services whose table row lists this store...
                                    {
                                        "namespace_selector": {
                                            "match_labels": {"kubernetes.io/metadata.name": args.clients_namespace}
                                        },
                                        "pod_selector": {"match_labels": {USES_LABEL.format(store=store): "true"}},
                                    },
                                    # ...this store's own restore Job...
                                    {"pod_selector": {"match_labels": {RESTORE_OF_LABEL: store}}},
                                    # ...and its scheduled backups (scheduled_backups.py).
                                    {"pod_selector": {"match_labels": {BACKUP_LABEL: "true", STORE_LABEL: store}}},
                                ],
                                "ports": [{"port": p, "protocol": "TCP"} for p in spec.ports.values()],
                            }
                        ],
                    },
                )
            )
        for policy_name, spec_ in policies:
            k8s.networking.v1.NetworkPolicy(
                f"{name}-{policy_name}",
                metadata={"name": policy_name, "namespace": ns, "labels": labels("datastores", "network-policy")},
                spec=spec_,
                opts=k8s_opts(self, args.cluster, depends_on=args.depends_on),
            )

    def _restore(
        self,
        name: str,
        args: DataStoresArgs,
        source: RestoreSource,
        credentials: pulumi.Resource,
        stateful_sets: Mapping[str, pulumi.Resource],
    ) -> dict[str, pulumi.Resource]:
        """The restore scripts, the bucket's read-only keys, and one restore Job per store."""
        ns = args.namespace
        scripts = k8s.core.v1.ConfigMap(
            f"{name}-restore-scripts",
            metadata={"name": "restore-scripts", "namespace": ns, "labels": labels("restore", "restore")},
            data={
                f"restore-{part}.sh": script(f"restore-{part}.sh") for part in ("fetch", "postgres", "redis", "qdrant")
            },
            opts=k8s_opts(self, args.cluster, depends_on=args.depends_on),
        )
        reader = bucket_keys_secret(
            f"{name}-backup-reader",
            secret_name=BACKUP_READER_SECRET,
            namespace=ns,
            secret_labels=labels("restore", "credentials"),
            access_key_id=source.access_key_id,
            secret_access_key=source.secret_access_key,
            opts=k8s_opts(self, args.cluster, depends_on=args.depends_on),
        )
        return {
            store: self._restore_job(name, args, store, source, [stateful_sets[store], scripts, reader, credentials])
            for store in STORES
        }

    def _restore_job(
        self, name: str, args: DataStoresArgs, store: Store, source: RestoreSource, after: list[pulumi.Resource]
    ) -> pulumi.Resource:
        """Fetch and verify the store's backup object, then restore it; only after `after` exist."""
        backup = source.verified[store]
        job_labels = {**labels(f"restore-{store}", "restore"), RESTORE_LABEL: "true", STORE_LABEL: store}
        return k8s.batch.v1.Job(
            f"{name}-restore-{store}",
            metadata={
                "name": f"restore-{store}",
                "namespace": args.namespace,
                "labels": job_labels,
                # For people and the checks: which object this Job restores.
                "annotations": {"gpu-platform/backup-sha256": backup.sha256},
            },
            spec={
                # A pod that dies midway (a drained node, an OOM kill) is retried: each
                # script finishes or starts over what a killed run left, and never writes
                # over data it did not restore (tests/test_data_migration_*.py kill every
                # step). A refusal fails the same way on each try and then needs a person.
                "backoff_limit": 2,
                "active_deadline_seconds": 6 * 3600,
                "template": {
                    "metadata": {"labels": {**job_labels, RESTORE_OF_LABEL: store}},
                    "spec": _restore_pod_spec(store, args.namespace, _fetch_env(source, backup)),
                },
            },
            opts=k8s_opts(
                self,
                args.cluster,
                # Nothing is restored before the backup's verification resource exists.
                depends_on=[backup.resource, *after],
                # A large restore takes longer than the provider's default wait for a Job.
                custom_timeouts=pulumi.CustomTimeouts(create="6h", update="6h"),
                # The Job's name is fixed and its template immutable: a new backup replaces
                # it, and the old one must be gone first. The script then sees its marker.
                delete_before_replace=True,
            ),
        )


def _scratch(path: str) -> str:
    return "scratch" + path.replace("/", "-")


def _redis_conf(password: str) -> str:
    # Pure: renders the config file from the generated password.
    return "\n".join(
        [
            "bind * -::*",
            "port 6379",
            "dir /data",
            "appendonly yes",
            "appendfsync everysec",
            "save 3600 1 300 100 60 10000",
            f"requirepass {password}",
            "",
        ]
    )


def _store_container(spec: StoreSpec) -> dict[str, Any]:
    """Command, env and probes per store."""
    if spec.name == "postgres":
        probe = {"exec": {"command": ["pg_isready", "-U", "postgres", "-h", "127.0.0.1"]}, "period_seconds": 10}
        return {
            "env": [
                *secret_env((SecretEnv("POSTGRES_PASSWORD", DATA_SECRET, "postgres-password"),)),
                {"name": "POSTGRES_DB", "value": POSTGRES_DATABASE},
            ],
            "startup_probe": {**probe, "failure_threshold": 60},
            "readiness_probe": {**probe, "failure_threshold": 3},
            "liveness_probe": {**probe, "failure_threshold": 6},
        }
    if spec.name == "redis":
        probe = {"exec": {"command": ["sh", "-c", "redis-cli -h 127.0.0.1 ping | grep -q PONG"]}, "period_seconds": 10}
        return {
            "command": ["redis-server", "/etc/redis/redis.conf"],
            # redis-cli in the probes reads the password from here.
            "env": secret_env((SecretEnv("REDISCLI_AUTH", DATA_SECRET, "redis-password"),)),
            "startup_probe": {**probe, "failure_threshold": 60},
            "readiness_probe": {**probe, "failure_threshold": 3},
            "liveness_probe": {**probe, "failure_threshold": 6},
        }
    ready = {"http_get": {"path": "/readyz", "port": "http"}, "period_seconds": 10}
    return {
        "env": [
            *secret_env((SecretEnv("QDRANT__SERVICE__API_KEY", DATA_SECRET, "qdrant-api-key"),)),
            {"name": "QDRANT__STORAGE__SNAPSHOTS_PATH", "value": "/qdrant/snapshots"},
            # The marker file Qdrant writes at start-up; the root filesystem is read-only.
            {"name": "QDRANT_INIT_FILE_PATH", "value": "/qdrant/init/.qdrant-initialized"},
            {"name": "QDRANT__TELEMETRY_DISABLED", "value": "true"},
        ],
        "startup_probe": {**ready, "failure_threshold": 60},
        "readiness_probe": {**ready, "failure_threshold": 3},
        "liveness_probe": {
            "http_get": {"path": "/livez", "port": "http"},
            "period_seconds": 10,
            "failure_threshold": 6,
        },
    }


def _store_pod_spec(spec: StoreSpec) -> dict[str, Any]:
    """The store's pod: its one container, the data volume and scratch dirs under a read-only root."""
    container: dict[str, Any] = {
        "name": spec.name,
        "image": spec.image,
        "image_pull_policy": "IfNotPresent",
        "ports": [{"name": n, "container_port": p, "protocol": "TCP"} for n, p in spec.ports.items()],
        "resources": {
            "requests": {"cpu": spec.cpu[0], "memory": spec.memory[0]},
            "limits": {"cpu": spec.cpu[1], "memory": spec.memory[1]},
        },
        "security_context": container_security(),
        "volume_mounts": [
            {"name": "data", "mount_path": spec.data_path},
            *({"name": _scratch(p), "mount_path": p} for p in spec.scratch_paths),
        ],
        **_store_container(spec),
    }
    volumes: list[dict[str, Any]] = [{"name": _scratch(p), "empty_dir": {}} for p in spec.scratch_paths]
    if spec.name == "redis":
        volumes.append(
            {
                "name": "config",
                "secret": {"secret_name": DATA_SECRET, "items": [{"key": "redis.conf", "path": "redis.conf"}]},
            }
        )
        container["volume_mounts"].append({"name": "config", "mount_path": "/etc/redis", "read_only": True})
    return {
        "automount_service_account_token": False,
        "security_context": pod_security(spec.run_as_user),
        "termination_grace_period_seconds": 60,
        "containers": [container],
        "volumes": volumes,
    }


def _fetch_env(source: RestoreSource, backup: VerifiedBackup) -> list[dict[str, Any]]:
    """What scripts/restore-fetch.sh reads: the object, its verified SHA-256 and size, the bucket's keys."""
    return [
        {"name": "BACKUP_BUCKET", "value": source.bucket},
        {"name": "BACKUP_OBJECT", "value": backup.key},
        {"name": "BACKUP_SHA256", "value": backup.sha256},
        {"name": "BACKUP_SIZE", "value": pulumi.Output.from_input(backup.size).apply(str)},
        {"name": "S3_REGION", "value": source.region},
        *([{"name": "S3_ENDPOINT", "value": source.endpoint}] if source.endpoint else []),
        *secret_env(
            (
                SecretEnv("AWS_ACCESS_KEY_ID", BACKUP_READER_SECRET, "access-key-id"),
                SecretEnv("AWS_SECRET_ACCESS_KEY", BACKUP_READER_SECRET, "secret-access-key"),
            )
        ),
    ]


def _restore_pod_spec(store: Store, namespace: str, fetch_env: list[dict[str, Any]]) -> dict[str, Any]:
    """fetch-verify (init) downloads and checks the object; restore loads it into the running store."""
    spec = STORE_SPECS[store]
    mounts = [
        {"name": "backup", "mount_path": "/backup"},
        {"name": "scripts", "mount_path": "/scripts", "read_only": True},
        {"name": "tmp", "mount_path": "/tmp"},
    ]
    return {
        "restart_policy": "Never",
        "automount_service_account_token": False,
        "security_context": pod_security(spec.run_as_user),
        "init_containers": [
            {
                "name": "fetch-verify",
                "image": versions.RESTORE_FETCH_IMAGE,
                "command": ["/bin/sh", "/scripts/restore-fetch.sh"],
                "env": fetch_env,
                "security_context": container_security(),
                "resources": _job_resources(),
                "volume_mounts": mounts,
            }
        ],
        "containers": [
            {
                "name": "restore",
                "image": spec.restore_image,
                "command": ["/bin/sh", f"/scripts/restore-{store}.sh"],
                "env": client_env(store, namespace),
                "security_context": container_security(),
                "resources": _job_resources(),
                "volume_mounts": mounts,
            }
        ],
        "volumes": [
            {"name": "backup", "empty_dir": {}},
            {"name": "scripts", "config_map": {"name": "restore-scripts", "default_mode": 0o444}},
            {"name": "tmp", "empty_dir": {}},
        ],
    }


def client_env(store: Store, namespace: str) -> list[dict[str, Any]]:
    """How a Job's container reaches the live store: its address, and its password from the
    stores' Secret (the restore Jobs' and the scheduled backups' dump step)."""
    host = store_host(store, namespace)
    if store == "postgres":
        return [
            {"name": "PGHOST", "value": host},
            {"name": "PGDATABASE", "value": POSTGRES_DATABASE},
            *secret_env((SecretEnv("PGPASSWORD", DATA_SECRET, "postgres-password"),)),
        ]
    if store == "redis":
        return [
            {"name": "REDIS_HOST", "value": host},
            *secret_env((SecretEnv("REDIS_PASSWORD", DATA_SECRET, "redis-password"),)),
        ]
    return [
        {"name": "QDRANT_URL", "value": f"http://{host}:{STORE_SPECS['qdrant'].port}"},
        *secret_env((SecretEnv("QDRANT_API_KEY", DATA_SECRET, "qdrant-api-key"),)),
    ]


def _job_resources() -> dict[str, Any]:
    return {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "2", "memory": "4Gi"}}
