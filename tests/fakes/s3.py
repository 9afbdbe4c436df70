"""moto's S3 server on 127.0.0.1 (random free port), for tests of the backup path."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from moto.server import ThreadedMotoServer

from components.migration.backups import BucketLocation, s3_client

ACCESS_KEY = "AKIAEXAMPLEEXAMPLE00"  # moto accepts any key pair; these are obviously fake
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
