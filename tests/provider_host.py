"""Pulumi's dynamic provider host, started and driven the way the engine drives it.

The engine runs a Python dynamic resource's provider as a plugin: `python -m pulumi.dynamic` in
the project directory, with the `pulumi` process's environment; the host prints its gRPC port as
its first line of stdout. The engine then sends Configure once and Check/Diff/Create/Read/Update/
Delete per resource, each carrying the provider (`__provider`, the SDK's `serialize_provider`
output: dill, by reference to the class) among the properties.

What travels on the wire is reproduced from the SDK and the engine, not from our beliefs:
- properties are serialized with the SDK's `rpc.serialize_properties`, so an unknown is the wire
  sentinel `rpc.UNKNOWN` inside the Struct, exactly what the engine's MarshalProperties writes
  with KeepUnknowns (previews only: the engine never sends one to Create/Update/Read/Delete);
- secrets travel wrapped only when the host's ConfigureResponse says `acceptSecrets` (the engine's
  MarshalOptions.KeepSecrets is that flag); the host says false, so the engine strips them;
- Diff gets the old outputs as `olds` and the old inputs as `old_inputs`, Update the same, Read
  and Delete the old outputs as `properties`.
A provider error comes back as the host reports it to the engine: gRPC status UNKNOWN with the
provider's traceback as details (`ProviderError`).
"""

from __future__ import annotations

import asyncio
import os
import select
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import struct_pb2
from pulumi.dynamic import ResourceProvider
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import rpc
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

from components.migration.backups import BACKUP_KEY_ENV
from tests.local import stop

ROOT = Path(__file__).resolve().parent.parent
PROVIDER_KEY = "__provider"
STACK = "test"
PROJECT = "gpu-platform"
# Credentials the providers also take from the environment: a host started for a test sees only
# the ones that test passes, never the developer's own.
CREDENTIAL_ENV = ("LAMBDA_API_KEY", "FLY_API_TOKEN", *BACKUP_KEY_ENV)
START_TIMEOUT_S = 60.0
CALL_TIMEOUT_S = 120.0


class ProviderError(Exception):
    """The host answered a call with an error (the provider raised); the text is its traceback."""


@dataclass(frozen=True)
class Checked:
    inputs: dict[str, Any]  # deserialized as the engine reads them back (unknowns kept)
    failures: list[tuple[str, str]]  # (property, reason)


@dataclass(frozen=True)
class Diffed:
    changes: int  # provider_pb2.DiffResponse.DIFF_NONE / DIFF_SOME / DIFF_UNKNOWN
    replaces: list[str]
    delete_before_replace: bool


def with_provider(provider: ResourceProvider, props: Mapping[str, Any]) -> dict[str, Any]:
    """`props` plus `__provider` as `pulumi.dynamic.Resource` sets it (the SDK's own serializer)."""
    return {**props, PROVIDER_KEY: serialize_provider(provider)}


def urn_of(type_: str, name: str) -> str:
    return f"urn:pulumi:{STACK}::{PROJECT}::{type_}::{name}"


class ProviderHost:
    """One `python -m pulumi.dynamic` process and a gRPC client to it, configured like the engine does."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, stderr_path: Path) -> None:
        self.process = process
        self.stderr_path = stderr_path
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = provider_pb2_grpc.ResourceProviderStub(self.channel)
        configured = self.stub.Configure(
            provider_pb2.ConfigureRequest(
                variables={},
                args=struct_pb2.Struct(),
                acceptSecrets=True,
                acceptResources=True,
                sends_old_inputs=True,
                sends_old_inputs_to_delete=True,
            ),
            timeout=CALL_TIMEOUT_S,
        )
        self.accept_secrets = configured.acceptSecrets
        self.supports_preview = configured.supportsPreview
        self.calls = 0

    # --- the wire ---------------------------------------------------------------------------

    def _wire(self, props: Mapping[str, Any], secrets: frozenset[str]) -> struct_pb2.Struct:
        """`props` as the engine marshals them for this host: secrets wrapped only if it accepts them."""
        plain = {k: rpc.unwrap_rpc_secret(v) for k, v in props.items()}
        if self.accept_secrets:
            plain = {k: rpc.wrap_rpc_secret(v) if k in secrets else v for k, v in plain.items()}

        async def serialize() -> struct_pb2.Struct:
            return await rpc.serialize_properties(plain, {})

        return asyncio.run(serialize())

    def _call(self, method: str, request: Any) -> Any:
        self.calls += 1
        try:
            return getattr(self.stub, method)(request, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as exc:
            raise ProviderError(f"{method}: {exc.details()}") from None  # type: ignore[attr-defined]

    @staticmethod
    def _request(type_: str, name: str) -> dict[str, str]:
        return {"urn": urn_of(type_, name), "type": type_, "name": name}

    def _change(  # noqa: PLR0917 - private; the public calls take these by keyword
        self,
        type_: str,
        name: str,
        id_: str,
        old_outputs: Mapping[str, Any],
        news: Mapping[str, Any],
        old_inputs: Mapping[str, Any] | None,
        secrets: frozenset[str],
    ) -> dict[str, Any]:
        """Diff and Update carry the same fields: the old outputs as `olds`, the new inputs, the old inputs."""
        return {
            **self._request(type_, name),
            "id": id_,
            "olds": self._wire(old_outputs, secrets),
            "news": self._wire(news, secrets),
            "old_inputs": self._wire(old_inputs or {}, secrets),
        }

    # --- the calls ----------------------------------------------------------------------------

    def check(
        self,
        type_: str,
        name: str,
        news: Mapping[str, Any],
        olds: Mapping[str, Any] | None = None,
        secrets: frozenset[str] = frozenset(),
    ) -> Checked:
        response = self._call(
            "Check",
            provider_pb2.CheckRequest(
                **self._request(type_, name),
                olds=self._wire(olds or {}, secrets),
                news=self._wire(news, secrets),
            ),
        )
        return Checked(
            inputs=rpc.deserialize_properties(response.inputs, keep_unknowns=True),
            failures=[(f.property, f.reason) for f in response.failures],
        )

    def diff(
        self,
        type_: str,
        name: str,
        id_: str,
        *,
        old_outputs: Mapping[str, Any],
        news: Mapping[str, Any],
        old_inputs: Mapping[str, Any] | None = None,
        secrets: frozenset[str] = frozenset(),
    ) -> Diffed:
        fields = self._change(type_, name, id_, old_outputs, news, old_inputs, secrets)
        response = self._call("Diff", provider_pb2.DiffRequest(**fields))
        return Diffed(response.changes, list(response.replaces), response.deleteBeforeReplace)

    def create(
        self, type_: str, name: str, props: Mapping[str, Any], secrets: frozenset[str] = frozenset()
    ) -> tuple[str, dict[str, Any]]:
        response = self._call(
            "Create", provider_pb2.CreateRequest(**self._request(type_, name), properties=self._wire(props, secrets))
        )
        return response.id, rpc.deserialize_properties(response.properties)

    def read(
        self,
        type_: str,
        name: str,
        id_: str,
        *,
        outputs: Mapping[str, Any],
        inputs: Mapping[str, Any],
        secrets: frozenset[str] = frozenset(),
    ) -> tuple[str, dict[str, Any]]:
        response = self._call(
            "Read",
            provider_pb2.ReadRequest(
                **self._request(type_, name),
                id=id_,
                properties=self._wire(outputs, secrets),
                inputs=self._wire(inputs, secrets),
            ),
        )
        return response.id, rpc.deserialize_properties(response.properties)

    def update(
        self,
        type_: str,
        name: str,
        id_: str,
        *,
        old_outputs: Mapping[str, Any],
        news: Mapping[str, Any],
        old_inputs: Mapping[str, Any] | None = None,
        secrets: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        fields = self._change(type_, name, id_, old_outputs, news, old_inputs, secrets)
        response = self._call("Update", provider_pb2.UpdateRequest(**fields))
        return rpc.deserialize_properties(response.properties)

    def delete(
        self,
        type_: str,
        name: str,
        id_: str,
        *,
        outputs: Mapping[str, Any],
        old_inputs: Mapping[str, Any] | None = None,
        secrets: frozenset[str] = frozenset(),
    ) -> None:
        self._call(
            "Delete",
            provider_pb2.DeleteRequest(
                **self._request(type_, name),
                id=id_,
                properties=self._wire(outputs, secrets),
                old_inputs=self._wire(old_inputs or {}, secrets),
            ),
        )

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


@contextmanager
def provider_host(env: Mapping[str, str] | None = None) -> Iterator[ProviderHost]:
    """Start the host as the engine does (cwd = project root, port from its first stdout line)."""
    environ = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_ENV}
    environ.update(env or {})
    with tempfile.TemporaryDirectory(prefix="provider-host-") as tmp:
        stderr_path = Path(tmp) / "stderr"
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-u", "-m", "pulumi.dynamic"],
                cwd=ROOT,
                env=environ,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        try:
            assert process.stdout is not None
            ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT_S)
            line = process.stdout.readline() if ready else b""
            if not line.strip().isdigit():
                raise RuntimeError(
                    f"python -m pulumi.dynamic did not print its port within {START_TIMEOUT_S:g}s "
                    f"(got {line!r}); its stderr:\n{stderr_path.read_text(errors='replace')}"
                )
            host = ProviderHost(process, int(line), stderr_path)
            try:
                yield host
            finally:
                host.channel.close()
        finally:
            stop(process)
