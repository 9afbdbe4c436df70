"""The backup path against moto's S3 server, and the bucket as the real program registers it."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from typing import Any

import pulumi
import pytest

from components.config.schema import Backups as BackupsConfig
from components.config.schema import ComposeHost
from components.core.errors import ConfigError
from components.handles import SshTarget
from components.migration.backups import (
    BackupError,
    BackupsArgs,
    BackupVerificationProvider,
    ComposeSource,
    ObjectRecord,
    compose_backup_command,
    parse_dump_record,
    upload_bytes,
    upload_stream,
    verify_objects,
)
from migrate import harness
from tests.conftest import recorded
from tests.fakes.s3 import FakeS3, moto_s3

BUCKET = "test-backups"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAeR38XS+/Ww7bePnY3qdCgRfdccbLQjbZTZ6zpUxS6P"


@pytest.fixture(scope="module")
def s3() -> Iterator[FakeS3]:
    with moto_s3() as fake:
        fake.make_bucket(BUCKET)
        yield fake


def _flip_one_byte(s3: FakeS3, key: str, at: int) -> None:
    client = s3.client(BUCKET)
    data = bytearray(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    data[at] ^= 0x01
    client.put_object(Bucket=BUCKET, Key=key, Body=bytes(data))


def _verify_props(s3: FakeS3, records: list[ObjectRecord]) -> dict[str, Any]:
    return {"label": "t", **s3.props(BUCKET), "objects": [r.to_dict() for r in records]}


# --- the storage path ---------------------------------------------------------------------------


@pytest.mark.network
def test_upload_records_exactly_the_bytes_written(s3: FakeS3) -> None:
    data = b"point-in-time dump " * 5000
    record = upload_stream(s3.client(BUCKET), s3.location(BUCKET), "t/stream.bin", io.BytesIO(data))

    assert record == ObjectRecord("t/stream.bin", len(data), hashlib.sha256(data).hexdigest())
    assert verify_objects(s3.client(BUCKET), s3.location(BUCKET), [record]) == []


@pytest.mark.network
def test_a_changed_byte_fails_verification(s3: FakeS3) -> None:
    record = upload_bytes(s3.client(BUCKET), s3.location(BUCKET), "t/flip.bin", bytes(range(256)) * 40)
    provider = BackupVerificationProvider()
    assert provider.create(_verify_props(s3, [record])).outs["verified"] is True

    _flip_one_byte(s3, record.key, at=4321)

    problems = verify_objects(s3.client(BUCKET), s3.location(BUCKET), [record])
    assert len(problems) == 1
    assert f"s3://{BUCKET}/t/flip.bin: sha256" in problems[0] and f"recorded {record.sha256}" in problems[0]
    with pytest.raises(BackupError, match=r"t: backup verification failed:\n  s3://test-backups/t/flip.bin: sha256"):
        provider.create(_verify_props(s3, [record]))


@pytest.mark.network
def test_missing_and_truncated_objects_fail_verification(s3: FakeS3) -> None:
    client, location = s3.client(BUCKET), s3.location(BUCKET)
    whole = upload_bytes(client, location, "t/whole.bin", b"x" * 1000)
    client.put_object(Bucket=BUCKET, Key="t/whole.bin", Body=b"x" * 999)
    gone = ObjectRecord("t/never-written.bin", 10, "0" * 64)

    problems = verify_objects(client, location, [whole, gone])

    assert problems == [
        f"s3://{BUCKET}/t/whole.bin: size 999 bytes, recorded 1000",
        f"s3://{BUCKET}/t/never-written.bin: missing (recorded 10 bytes, sha256 {'0' * 64})",
    ]
    assert verify_objects(client, location, []) == ["no backup objects recorded"]


@pytest.mark.network
def test_refresh_marks_a_corrupted_backup_unverified_and_the_next_up_re_verifies(s3: FakeS3) -> None:
    record = upload_bytes(s3.client(BUCKET), s3.location(BUCKET), "t/refresh.bin", b"abc" * 100)
    provider = BackupVerificationProvider()
    outs = provider.create(_verify_props(s3, [record])).outs
    assert provider.diff("id", outs, _verify_props(s3, [record])).changes is False

    _flip_one_byte(s3, record.key, at=0)
    refreshed = provider.read("id", outs).outs

    assert refreshed["verified"] is False and "sha256" in refreshed["problems"][0]
    assert provider.diff("id", refreshed, _verify_props(s3, [record])).changes is True
    with pytest.raises(BackupError, match=r"refresh\.bin"):
        provider.update("id", refreshed, _verify_props(s3, [record]))


def test_records_are_validated_and_name_the_object() -> None:
    assert ObjectRecord.from_dict({"key": "k", "size": 3.0, "sha256": "a" * 64}, "w").size == 3
    with pytest.raises(BackupError, match="w: backup record of k has no valid sha256"):
        ObjectRecord.from_dict({"key": "k", "size": 3, "sha256": "XYZ"}, "w")
    with pytest.raises(BackupError, match="w: backup record of k has no valid size"):
        ObjectRecord.from_dict({"key": "k", "size": -1, "sha256": "a" * 64}, "w")
    with pytest.raises(BackupError, match="w: backup record has no key"):
        ObjectRecord.from_dict({"size": 1, "sha256": "a" * 64}, "w")


def test_verification_check_refuses_an_empty_object_list() -> None:
    result = BackupVerificationProvider().check({}, {"label": "fly-x", "objects": []})
    assert [f.reason for f in result.failures] == ["fly-x: nothing to verify (no backup objects recorded)"]


def test_dump_record_is_the_last_json_line_of_the_script() -> None:
    out = 'noise\n{"service":"redis","key":"compose/redis/1.rdb","size":12,"sha256":"' + "b" * 64 + '"}\n'
    assert parse_dump_record(out, "redis") == {"key": "compose/redis/1.rdb", "size": 12, "sha256": "b" * 64}
    with pytest.raises(BackupError, match="compose redis backup printed no record"):
        parse_dump_record("\n", "redis")
    with pytest.raises(BackupError, match="record is for postgres"):
        parse_dump_record(out.replace('"redis"', '"postgres"'), "redis")


def test_backup_command_carries_no_secret_and_quotes_every_value() -> None:
    host = ComposeHost(address="192.0.2.10", host_key=HOST_KEY, compose_dir="/srv/my platform".replace(" ", "_"))
    cmd = compose_backup_command("postgres", host, FakeS3("http://127.0.0.1:9").location("b"))
    assert cmd.startswith("bash -c '#!/usr/bin/env bash")
    assert "--service postgres" in cmd and "--compose-dir /srv/my_platform" in cmd
    assert "--endpoint http://127.0.0.1:9" in cmd and "AWS_SECRET_ACCESS_KEY=" not in cmd


def test_args_refuse_half_a_key_pair_and_compose_dumps_without_keys() -> None:
    cfg = BackupsConfig(bucket="b-bucket")
    ssh = SshTarget(host="192.0.2.10", user="ubuntu", host_key=HOST_KEY, private_key="k")
    compose = ComposeSource(ssh=ssh, host=ComposeHost(address="192.0.2.10", host_key=HOST_KEY))
    # An Output that is never resolved (a real one outside a program would outlive the test): the
    # check only looks at which of the two keys is set.
    key_id: pulumi.Output[str] = object.__new__(pulumi.Output)
    with pytest.raises(ConfigError, match="set both or neither"):
        BackupsArgs(environment="dev", config=cfg, gcp_project="proj-1234", access_key_id=key_id)
    with pytest.raises(ConfigError, match="backupAccessKeyId: required from p2b-services on"):
        BackupsArgs(environment="dev", config=cfg, gcp_project="proj-1234", compose=compose)


# --- the bucket in the recorded plan --------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_bucket_is_versioned_encrypted_expiring_and_private(stack: str) -> None:
    plan = recorded(stack, "p0-baseline")
    bucket = plan.named("backups-bucket")
    provider = plan.named("backups-aws")
    assert bucket.provider == provider.urn
    assert plan.named("backups-versioning").inputs["versioningConfiguration"] == {"status": "Enabled"}
    sse = plan.named("backups-encryption").inputs["rules"][0]["applyServerSideEncryptionByDefault"]
    assert sse == {"sseAlgorithm": "AES256"}
    retention = 30 if stack == "dev" else 365
    rule = plan.named("backups-lifecycle").inputs["rules"][0]
    assert rule["expiration"] == {"days": retention}
    assert rule["noncurrentVersionExpiration"] == {"noncurrentDays": retention}
    pab = plan.named("backups-public-access").inputs
    assert all(
        pab[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    )
    assert bucket.retain_on_delete is True
    assert bucket.protect is (stack == "prod")


def test_custom_endpoint_goes_to_the_explicit_provider() -> None:
    plan = harness.record(
        "dev",
        phase="p0-baseline",
        overrides={
            "backups": {"bucket": "example-backups", "endpoint": "https://r2.example.com", "gcsBucket": "gcs-b"}
        },
    )
    provider = plan.named("backups-aws").inputs
    # Provider config reaches the engine as strings, structured values as JSON.
    assert json.loads(provider["endpoints"]) == [{"s3": "https://r2.example.com"}]
    assert provider["s3UsePathStyle"] == "true" and provider["skipCredentialsValidation"] == "true"
    assert provider["accessKey"] == "[secret]" and provider["secretKey"] == "[secret]"
    assert not plan.of_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    gcs = plan.named("backups-gcs")
    assert gcs.inputs["publicAccessPrevention"] == "enforced" and gcs.inputs["versioning"] == {"enabled": True}


def test_compose_dumps_start_in_p2b_and_each_is_verified_from_its_own_record() -> None:
    assert not [r for r in recorded("dev", "p2a-k3s").resources if r.name.startswith("backups-compose")]
    plan = recorded("dev", "p2b-services")
    for service in ("qdrant", "redis", "postgres"):
        dump = plan.named(f"backups-compose-{service}")
        verify = plan.named(f"backups-compose-{service}-verify")
        assert f"--service {service}" in dump.inputs["create"]
        assert "stdin" in dump.secret_inputs and "delete" not in dump.inputs
        assert dump.urn in verify.property_dependencies["objects"]
        [record] = verify.inputs["objects"]
        assert record["key"].startswith(f"compose/{service}/") and len(record["sha256"]) == 64
        assert plan.outputs["verifiedBackups"][service] == record["key"]


def test_no_secret_value_reaches_the_plan_in_clear() -> None:
    text = json.dumps(recorded("prod", "p4-decommission").to_json())
    assert "offline-placeholder" not in text


@pytest.mark.parametrize("phase", ["p1-fly-freeze", "p4-decommission"])
def test_the_exit_check_gets_every_verified_object_not_only_the_first(phase: str) -> None:
    # A Fly app's backup is a manifest plus one archive per volume; `backups-verified` must
    # re-read the archives too, so every object of every verification is in backupObjects.
    plan = recorded("prod", phase)
    exported = {(o["key"], o["sha256"], o["size"]) for o in plan.outputs["backupObjects"]}
    verified = [
        (o["key"], o["sha256"], int(o["size"]))
        for r in plan.of_type("pulumi-python:dynamic/backups:BackupVerification")
        for o in r.outputs["objects"]
    ]
    assert verified and set(verified) <= exported
    assert any(key.endswith(".tar.gz") for key, _, _ in exported), "no Fly volume archive is checked"
