"""The backup bucket, and what makes a backup count as verified.

A backup is *verified* when its object's size and SHA-256 were recorded while it was written and
a `BackupVerification` resource has read the object back and found the same two values. Every
step that stops or destroys something takes a verification's outputs as inputs, so the engine
cannot run it before the verification, and the providers of those steps check once more, right
before the destructive call (see `components/migration/fly.py`).

What lands in the bucket:
- `fly/<app>/<stamp>-<attempt>/…`: each Fly app's manifest (machine configs, volume list) and one tarball per
  volume, exported from an on-demand snapshot (p1-fly-freeze);
- `compose/<service>/<stamp>-<attempt>.<ext>`: the Compose host's Qdrant snapshot, Redis RDB and Postgres
  custom-format dump (p2b-services), which the restore Jobs in K3s read;
- `k3s/<store>/<stamp>-<random>.<ext>`: the K3s stores' scheduled backups (p2b-services on,
  components/platform/scheduled_backups.py), the only objects a lifecycle rule of their own
  expires early (backups.k3sRetentionDays); fly/ and compose/ keep the bucket's retention.

The bucket speaks S3: AWS itself, or any S3-compatible endpoint (GCS interoperability, R2, MinIO)
through `backups.endpoint`. Verification reads with boto3 against the same endpoint.

Every key carries the second it was taken at and 48 random bits of its own attempt: a retried
export or dump never lands on an object whose hash an earlier attempt recorded (a conditional put,
`If-None-Match: *`, would say the same only on stores that honour it).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal

import pulumi
import pulumi.dynamic as dyn
import pulumi_aws as aws
import pulumi_command as command
import pulumi_gcp as gcp
from pydantic import InstanceOf, model_validator

from components import HOST_SCRIPT_DIR
from components.catalog import versions
from components.config.schema import Backups as BackupsConfig
from components.config.schema import ComposeHost
from components.core.engine import changed, credential, known_inputs
from components.core.errors import ConfigError
from components.core.model import Args
from components.handles import BackupHandle, SshTarget, VerifiedBackup

SCRIPTS = HOST_SCRIPT_DIR
COMPOSE_SERVICES: tuple[Literal["qdrant", "redis", "postgres"], ...] = ("qdrant", "redis", "postgres")
_SHA256_HEX = frozenset("0123456789abcdef")


class BackupError(Exception):
    """A backup that is missing, unreadable or not what was recorded. The message names the object."""


# --- objects and their records ------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectRecord:
    """What was written: the key, its size in bytes and its SHA-256 (lower-case hex)."""

    key: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "size": self.size, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> ObjectRecord:
        if not isinstance(raw, Mapping):
            raise BackupError(f"{where}: a backup record must be a mapping with key, size and sha256")
        key, size, sha = raw.get("key"), raw.get("size"), raw.get("sha256")
        if not isinstance(key, str) or not key:
            raise BackupError(f"{where}: backup record has no key")
        if isinstance(size, float) and size.is_integer():
            size = int(size)  # the engine hands numbers back as floats
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BackupError(f"{where}: backup record of {key} has no valid size (got {size!r})")
        if not isinstance(sha, str) or len(sha) != 64 or not set(sha) <= _SHA256_HEX:
            raise BackupError(f"{where}: backup record of {key} has no valid sha256 (got {sha!r})")
        return cls(key=key, size=size, sha256=sha)


@dataclass(frozen=True)
class BucketLocation:
    bucket: str
    region: str
    endpoint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "region": self.region, "endpoint": self.endpoint}

    @classmethod
    def from_dict(cls, raw: Any) -> BucketLocation:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("bucket"), str):
            raise BackupError("backup location needs a bucket name")
        return cls(bucket=raw["bucket"], region=str(raw.get("region") or "us-east-1"), endpoint=raw.get("endpoint"))

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


def s3_client(location: BucketLocation, access_key_id: str | None = None, secret_access_key: str | None = None) -> Any:
    """A boto3 S3 client for the bucket; without keys boto3's default credential chain applies."""
    # Lazy: boto3 adds 0.1 s CPU (measured, best of 3) to every program run and provider-host
    # start, and only the providers' create/read (and migrate's checks) ever call it.
    import boto3  # noqa: PLC0415
    from botocore.config import Config  # noqa: PLC0415

    config = Config(
        retries={"max_attempts": 5, "mode": "standard"},
        # S3-compatible services (MinIO, R2, GCS interop) address buckets by path, not by host.
        s3={"addressing_style": "path"} if location.endpoint else {},
    )
    return boto3.client(
        "s3",
        region_name=location.region,
        endpoint_url=location.endpoint,
        aws_access_key_id=access_key_id or None,
        aws_secret_access_key=secret_access_key or None,
        config=config,
    )


class HashingReader:
    """Wraps a readable stream; counts and hashes every byte the uploader reads."""

    def __init__(self, source: Any) -> None:
        self._source = source
        self._sha = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        chunk = self._source.read(n)
        if chunk:
            self._sha.update(chunk)
            self.size += len(chunk)
        return bytes(chunk or b"")

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


def upload_stream(client: Any, location: BucketLocation, key: str, source: BinaryIO | Any) -> ObjectRecord:
    """Stream `source` into the bucket; the record is of exactly the bytes that were sent."""
    reader = HashingReader(source)
    try:
        client.upload_fileobj(reader, location.bucket, key)
    except BackupError:
        raise
    except Exception as exc:  # botocore/s3transfer raise many types; the caller needs one
        raise BackupError(f"{location.url(key)}: upload failed ({type(exc).__name__}: {exc})") from None
    return ObjectRecord(key=key, size=reader.size, sha256=reader.sha256)


def upload_bytes(client: Any, location: BucketLocation, key: str, data: bytes) -> ObjectRecord:
    return upload_stream(client, location, key, io.BytesIO(data))


def check_object(client: Any, location: BucketLocation, record: ObjectRecord) -> str | None:
    """Read the object back; None if it matches the record, else what is wrong (naming the object)."""
    url = location.url(record.key)
    try:
        response = client.get_object(Bucket=location.bucket, Key=record.key)
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
        if code in ("NoSuchKey", "404", "NotFound"):
            return f"{url}: missing (recorded {record.size} bytes, sha256 {record.sha256})"
        return f"{url}: cannot be read ({code})"
    sha = hashlib.sha256()
    size = 0
    body = response["Body"]
    try:
        for chunk in iter(lambda: body.read(1024 * 1024), b""):
            sha.update(chunk)
            size += len(chunk)
    finally:
        body.close()
    if size != record.size:
        return f"{url}: size {size} bytes, recorded {record.size}"
    if sha.hexdigest() != record.sha256:
        return f"{url}: sha256 {sha.hexdigest()}, recorded {record.sha256}"
    return None


def verify_objects(client: Any, location: BucketLocation, records: Iterable[ObjectRecord]) -> list[str]:
    """Every problem with `records`, one line each; [] when every object matches its record."""
    records = list(records)
    if not records:
        return ["no backup objects recorded"]
    return [problem for r in records if (problem := check_object(client, location, r)) is not None]


# --- the verification resource -----------------------------------------------------------------


# The bucket's key pair in the environment of the `pulumi` process. Like LAMBDA_API_KEY and
# FLY_API_TOKEN for their providers, it wins over the pair in state, which is whatever the last
# `up` wrote and is stale after a rotation, while `pulumi refresh` and `pulumi destroy` must still
# reach the bucket. Its own names, not AWS_ACCESS_KEY_ID: in CI those are the state backend's.
BACKUP_KEY_ENV = ("BACKUP_ACCESS_KEY_ID", "BACKUP_SECRET_ACCESS_KEY")


def bucket_keys(props: Mapping[str, Any]) -> tuple[str, str]:
    """The key pair a provider reads or writes the bucket with: the environment's pair when set,
    else the stored one ("" for none: boto3's default chain)."""
    id_env, secret_env = BACKUP_KEY_ENV
    given = [name for name in BACKUP_KEY_ENV if os.environ.get(name, "").strip()]
    if len(given) == 1:
        # Half a rotated pair with half a stale one can only fail, and would fail as "access denied".
        (missing,) = set(BACKUP_KEY_ENV) - set(given)
        raise BackupError(f"{given[0]} is set but {missing} is not: set both (the rotated pair) or neither")
    return credential(id_env, props.get("access_key_id")), credential(secret_env, props.get("secret_access_key"))


def bucket_client(props: Mapping[str, Any]) -> tuple[Any, BucketLocation]:
    """An S3 client for the bucket a provider's props name, with `bucket_keys`."""
    location = BucketLocation.from_dict(props.get("location"))
    return s3_client(location, *bucket_keys(props)), location


def _records(props: Mapping[str, Any], where: str) -> list[ObjectRecord]:
    raw = props.get("objects")
    if not isinstance(raw, list | tuple):
        raise BackupError(f"{where}: objects must be a list of backup records")
    return [ObjectRecord.from_dict(r, where) for r in raw]


class BackupVerificationProvider(dyn.ResourceProvider):
    """Reads every recorded object back and compares size and SHA-256. Never writes or deletes."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> dyn.CheckResult:
        failures = []
        label = news.get("label", "backup")
        objects = news.get("objects")
        if isinstance(objects, list) and not objects:
            failures.append(dyn.CheckFailure("objects", f"{label}: nothing to verify (no backup objects recorded)"))
        return dyn.CheckResult(news, failures)

    def _verify(self, props: dict[str, Any]) -> dict[str, Any]:
        label = str(props.get("label", "backup"))
        client, location = bucket_client(props)
        problems = verify_objects(client, location, _records(props, label))
        if problems:
            raise BackupError(f"{label}: backup verification failed:\n  " + "\n  ".join(problems))
        return {**props, "verified": True, "problems": []}

    @known_inputs
    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        outs = self._verify(props)
        return dyn.CreateResult(id_=f"verify-{props.get('label', 'backup')}", outs=outs)

    def read(self, id_: str, props: dict[str, Any]) -> dyn.ReadResult:
        # A refresh re-reads the objects: a deleted or changed object shows up as verified=false,
        # and the next `up` re-verifies (and fails) before anything that depends on it runs.
        client, location = bucket_client(props)
        problems = verify_objects(client, location, _records(props, str(props.get("label", "backup"))))
        return dyn.ReadResult(id_, {**props, "verified": not problems, "problems": problems})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        if changed(olds, news, "objects") or changed(olds, news, "location"):
            return dyn.DiffResult(changes=True, replaces=["objects"], delete_before_replace=False)
        if olds.get("verified") is not True:
            return dyn.DiffResult(changes=True)
        return dyn.DiffResult(changes=False)

    @known_inputs
    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dyn.UpdateResult:
        return dyn.UpdateResult(outs=self._verify(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        # Verifying is read-only; removing the record leaves the objects (and their versions) in place.
        return None


@dataclass(frozen=True)
class BackupTarget:
    """Where backups go, as the steps that write or check them need it. Keys stay secret Outputs."""

    bucket: pulumi.Output[str]  # the bucket resource's name: depending on it orders after the bucket
    region: str
    endpoint: str | None
    access_key_id: pulumi.Output[str] | None = None
    secret_access_key: pulumi.Output[str] | None = None
    ready: tuple[pulumi.Resource, ...] = ()

    def location(self) -> pulumi.Output[dict[str, Any]]:
        return self.bucket.apply(lambda b: BucketLocation(b, self.region, self.endpoint).to_dict())

    def credential_inputs(self) -> dict[str, Any]:
        return {
            "access_key_id": pulumi.Output.secret(self.access_key_id) if self.access_key_id is not None else None,
            "secret_access_key": (
                pulumi.Output.secret(self.secret_access_key) if self.secret_access_key is not None else None
            ),
        }


class BackupVerification(dyn.Resource, module="backups", name="BackupVerification"):
    """Outputs `verified` (bool) and `objects` (the records it checked); fails to create on mismatch."""

    verified: pulumi.Output[bool]
    objects: pulumi.Output[list[dict[str, Any]]]
    location: pulumi.Output[dict[str, Any]]

    def __init__(
        self,
        name: str,
        target: BackupTarget,
        objects: pulumi.Input[list[dict[str, Any]]],
        label: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            BackupVerificationProvider(),
            name,
            {
                "label": label,
                "location": target.location(),
                "objects": objects,
                "verified": None,
                "problems": None,
                **target.credential_inputs(),
            },
            pulumi.ResourceOptions.merge(
                pulumi.ResourceOptions(
                    depends_on=list(target.ready), additional_secret_outputs=["access_key_id", "secret_access_key"]
                ),
                opts,
            ),
        )


def verified_backup(name: str, verification: BackupVerification) -> VerifiedBackup:
    """The handle other components consume: the first object (a dump, or an app's manifest) and all."""
    first = verification.objects.apply(lambda objs: dict(objs[0]) if objs else {})
    return VerifiedBackup(
        name=name,
        key=first.apply(lambda o: str(o.get("key", ""))),
        sha256=first.apply(lambda o: str(o.get("sha256", ""))),
        size=first.apply(lambda o: int(o.get("size", 0))),
        resource=verification,
        objects=verification.objects.apply(lambda objs: [_object_record(o) for o in objs or []]),
    )


def _object_record(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {"key": str(raw.get("key", "")), "sha256": str(raw.get("sha256", "")), "size": int(raw.get("size", 0))}


# --- Compose host dumps -------------------------------------------------------------------------


def parse_dump_record(stdout: str, service: str) -> dict[str, Any]:
    """The JSON line `compose-backup.sh` prints last: {"service", "key", "size", "sha256"}."""
    lines = [line for line in (stdout or "").strip().splitlines() if line.strip()]
    if not lines:
        raise BackupError(f"compose {service} backup printed no record")
    try:
        raw = json.loads(lines[-1])
    except json.JSONDecodeError:
        raise BackupError(f"compose {service} backup: last line is not a JSON record: {lines[-1][:120]!r}") from None
    other = raw.get("service") if isinstance(raw, dict) else raw
    if other != service:
        raise BackupError(f"compose {service} backup: the record is for {other}, not {service}")
    return ObjectRecord.from_dict(raw, f"compose {service} backup").to_dict()


def _dump_records(service: str, stdout: str) -> list[dict[str, Any]]:
    return [parse_dump_record(stdout, service)]


def compose_backup_command(service: str, host: ComposeHost, location: BucketLocation, prefix: str = "compose") -> str:
    """The remote command line: the script file's text run by bash with its flags (no secrets)."""
    script = (SCRIPTS / "compose-backup.sh").read_text()
    flags = [
        ("--service", service),
        ("--compose-dir", host.compose_dir),
        ("--bucket", location.bucket),
        ("--region", location.region),
        ("--endpoint", location.endpoint or ""),
        ("--prefix", prefix),
        ("--image", versions.AWS_CLI_IMAGE),
        ("--qdrant-url", host.qdrant_url.rstrip("/")),
        ("--redis-service", host.redis_service),
        ("--postgres-service", host.postgres_service),
        ("--postgres-user", host.postgres_user),
        ("--postgres-db", host.postgres_database),
    ]
    args = " ".join(f"{flag} {shlex.quote(value)}" for flag, value in flags)
    return f"bash -c {shlex.quote(script)} compose-backup {args}"


# --- the component ------------------------------------------------------------------------------


class ComposeSource(Args):
    """The legacy Compose host whose data services are dumped (p2b-services)."""

    ssh: InstanceOf[SshTarget]
    host: ComposeHost


class BackupsArgs(Args):
    environment: Literal["dev", "prod"]
    config: BackupsConfig
    gcp_project: str  # owns the optional GCS bucket
    access_key_id: pulumi.Output[str] | None = None
    secret_access_key: pulumi.Output[str] | None = None
    # Set when this phase dumps the Compose host's data (state.backups.composeData).
    compose: ComposeSource | None = None
    # The K3s stores' scheduled backups write k3s/ (platform.servicesStateful): expire those
    # after backups.k3sRetentionDays.
    k3s_backups: bool = False

    @model_validator(mode="after")
    def _keys(self) -> BackupsArgs:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ConfigError(
                "gpu-platform:backupAccessKeyId / backupSecretAccessKey: set both or neither "
                "(one without the other cannot sign a request)"
            )
        if self.compose is not None and self.access_key_id is None:
            raise ConfigError(
                "gpu-platform:backupAccessKeyId: required from p2b-services on; the Compose host is outside "
                "your cloud account and uploads its dumps with this key (scope it to the backup bucket)"
            )
        return self


class Backups(pulumi.ComponentResource):
    """The backup bucket (and optional GCS mirror bucket); in p2b, verified dumps of the Compose data."""

    bucket_name: pulumi.Output[str]
    target: BackupTarget
    verified: dict[str, VerifiedBackup]

    def __init__(self, name: str, args: BackupsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gpu-platform:backups:Backups", name, None, opts)
        cfg = args.config
        prod = args.environment == "prod"
        on_aws = pulumi.ResourceOptions(parent=self, provider=self._aws_provider(name, args))
        bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket=cfg.bucket,
            force_destroy=False,
            tags={"gpu-platform": "backups", "environment": args.environment},
            # After p4-decommission this bucket holds the only copy of the Fly apps' data, and the
            # restore Jobs read the Compose dumps from it: prod never deletes it, not even on
            # `pulumi destroy`. Dev keeps it on destroy too, but can be removed on purpose.
            opts=pulumi.ResourceOptions.merge(on_aws, pulumi.ResourceOptions(protect=prod, retain_on_delete=True)),
        )
        ready = [bucket, *self._bucket_settings(name, bucket, cfg, on_aws, k3s_backups=args.k3s_backups)]
        if cfg.gcs_bucket:
            self._gcs_bucket(name, args, prod)

        self.bucket_name = bucket.bucket
        self.target = BackupTarget(
            bucket=bucket.bucket,
            region=cfg.region,
            endpoint=cfg.endpoint,
            access_key_id=args.access_key_id,
            secret_access_key=args.secret_access_key,
            ready=tuple(ready),
        )
        self.verified = {}
        if args.compose is not None:
            for service in COMPOSE_SERVICES:
                self.verified[service] = self._compose_dump(name, service, args.compose, cfg)
        self.register_outputs({"bucket": self.bucket_name, "verified": {k: v.key for k, v in self.verified.items()}})

    def _aws_provider(self, name: str, args: BackupsArgs) -> aws.Provider:
        cfg = args.config
        custom_endpoint = cfg.endpoint is not None
        return aws.Provider(
            f"{name}-aws",
            region=cfg.region,
            access_key=args.access_key_id,
            secret_key=args.secret_access_key,
            endpoints=[aws.ProviderEndpointArgs(s3=cfg.endpoint)] if custom_endpoint else None,
            # Non-AWS endpoints have no STS, no account id and no instance metadata to ask.
            s3_use_path_style=True if custom_endpoint else None,
            skip_credentials_validation=True if custom_endpoint else None,
            skip_requesting_account_id=True if custom_endpoint else None,
            skip_metadata_api_check=True if custom_endpoint else None,
            skip_region_validation=True if custom_endpoint else None,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _bucket_settings(
        self,
        name: str,
        bucket: aws.s3.Bucket,
        cfg: BackupsConfig,
        on_aws: pulumi.ResourceOptions,
        *,
        k3s_backups: bool = False,
    ) -> list[pulumi.Resource]:
        """Versioning, encryption, expiry and (on AWS) the public access block: what writes wait for."""
        versioning = aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=on_aws,
        )
        encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
            opts=on_aws,
        )
        lifecycle = aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket.id,
            rules=[
                {
                    "id": "expire-backups",
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "expiration": {"days": cfg.retention_days},
                    "noncurrent_version_expiration": {"noncurrent_days": cfg.retention_days},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
                },
                # A scheduled backup a day makes k3s/ the bulk of the bucket; only that prefix
                # expires early, the migration's own records (fly/, compose/) never before the rule above.
                *(
                    [
                        {
                            "id": "expire-k3s-backups",
                            "status": "Enabled",
                            "filter": {"prefix": "k3s/"},
                            "expiration": {"days": cfg.k3s_retention_days},
                            "noncurrent_version_expiration": {"noncurrent_days": 1},
                        }
                    ]
                    if k3s_backups
                    else []
                ),
            ],
            # S3 rejects lifecycle rules on versions until versioning is on.
            opts=pulumi.ResourceOptions.merge(on_aws, pulumi.ResourceOptions(depends_on=[versioning])),
        )
        settings: list[pulumi.Resource] = [versioning, encryption, lifecycle]
        if cfg.endpoint is None:
            # Public access blocks are an AWS feature; R2, MinIO and GCS interop buckets are private
            # unless a policy says otherwise and reject the call.
            settings.append(
                aws.s3.BucketPublicAccessBlock(
                    f"{name}-public-access",
                    bucket=bucket.id,
                    block_public_acls=True,
                    block_public_policy=True,
                    ignore_public_acls=True,
                    restrict_public_buckets=True,
                    opts=on_aws,
                )
            )
        return settings

    def _gcs_bucket(self, name: str, args: BackupsArgs, prod: bool) -> None:
        cfg = args.config
        provider = gcp.Provider(f"{name}-gcp", project=args.gcp_project, opts=pulumi.ResourceOptions(parent=self))
        gcp.storage.Bucket(
            f"{name}-gcs",
            name=cfg.gcs_bucket,
            project=args.gcp_project,
            location=cfg.gcs_location,
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            versioning={"enabled": True},
            lifecycle_rules=[
                {"action": {"type": "Delete"}, "condition": {"age": cfg.retention_days}},
                {"action": {"type": "Delete"}, "condition": {"days_since_noncurrent_time": cfg.retention_days}},
            ],
            force_destroy=False,
            labels={"gpu-platform": "backups", "environment": args.environment},
            # Same reason as the S3 bucket: it holds backups that outlive the legacy estate.
            opts=pulumi.ResourceOptions(parent=self, provider=provider, protect=prod, retain_on_delete=True),
        )

    def _compose_dump(self, name: str, service: str, source: ComposeSource, cfg: BackupsConfig) -> VerifiedBackup:
        location = BucketLocation(cfg.bucket, cfg.region, cfg.endpoint)
        assert self.target.access_key_id is not None and self.target.secret_access_key is not None
        # The keys reach the script on stdin, never on a command line or in the environment
        # (SSH servers drop environment variables that sshd_config does not AcceptEnv).
        keys: pulumi.Output[str] = pulumi.Output.format(
            "{0}\n{1}\n", self.target.access_key_id, self.target.secret_access_key
        )
        stdin: pulumi.Output[str] = pulumi.Output.secret(keys)
        dump = command.remote.Command(
            f"{name}-compose-{service}",
            connection=source.ssh.connection(),
            create=compose_backup_command(service, source.host, location),
            stdin=stdin,
            # The source is left untouched: no delete command, and a dump is never repeated by an
            # update; a new dump is a replacement (new key), so restores always read a whole one.
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(self.target.ready)),
        )
        record = dump.stdout.apply(functools.partial(_dump_records, service))
        verification = BackupVerification(
            f"{name}-compose-{service}-verify",
            self.target,
            record,
            label=f"compose-{service}",
            opts=pulumi.ResourceOptions(parent=self),
        )
        return verified_backup(service, verification)

    def handle(self, extra: Mapping[str, VerifiedBackup] | None = None) -> BackupHandle:
        return BackupHandle(
            bucket=self.bucket_name,
            endpoint=self.target.endpoint,
            region=self.target.region,
            verified={**self.verified, **(extra or {})},
            ready=self.target.ready,
        )
