"""moto's S3 server on 127.0.0.1 (random free port), for tests of the backup path."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import requests
from moto.server import ThreadedMotoServer

from components.migration.backups import BucketLocation, s3_client

ACCESS_KEY = "AKIAEXAMPLEEXAMPLE00"  # moto accepts any key pair unless told not to (below)
SECRET_KEY = "fake-secret-access-key-for-moto-only"


@dataclass(frozen=True)
class FakeS3:
    endpoint: str

    def location(self, bucket: str) -> BucketLocation:
        return BucketLocation(bucket=bucket, region="us-east-1", endpoint=self.endpoint)

    def client(self, bucket: str) -> Any:
        return s3_client(self.location(bucket), ACCESS_KEY, SECRET_KEY)

    def make_bucket(self, bucket: str) -> BucketLocation:
        self.client(bucket).create_bucket(Bucket=bucket)
        return self.location(bucket)

    def iam(self, key_pair: tuple[str, str] = (ACCESS_KEY, SECRET_KEY)) -> Any:
        """A client of the server's own IAM, signing with `key_pair`."""
        return boto3.client(
            "iam",
            region_name="us-east-1",
            endpoint_url=self.endpoint,
            aws_access_key_id=key_pair[0],
            aws_secret_access_key=key_pair[1],
        )

    def iam_key_pair(self, user: str) -> tuple[str, str]:
        """A new key pair of an IAM user that may do anything: once `signed_requests_only` is on,
        only such pairs, while they exist, are accepted."""
        iam = self.iam()
        if user not in {u["UserName"] for u in iam.list_users()["Users"]}:
            iam.create_user(UserName=user)
            policy = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}'
            iam.put_user_policy(UserName=user, PolicyName="all", PolicyDocument=policy)
        key = iam.create_access_key(UserName=user)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    @contextmanager
    def signed_requests_only(self) -> Iterator[None]:
        """moto checks every request's signature against its IAM keys (its `reset-auth` API sets how
        many requests go unchecked: none), then accepts anything again."""
        requests.post(f"{self.endpoint}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
        try:
            yield
        finally:
            requests.post(f"{self.endpoint}/moto-api/reset-auth", data=b"inf", timeout=10).raise_for_status()

    def props(self, bucket: str) -> dict[str, Any]:
        """The location and key inputs a backup-reading provider gets."""
        return {
            "location": self.location(bucket).to_dict(),
            "access_key_id": ACCESS_KEY,
            "secret_access_key": SECRET_KEY,
        }


@contextmanager
def moto_s3() -> Iterator[FakeS3]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield FakeS3(endpoint=f"http://{host}:{port}")
    finally:
        server.stop()
