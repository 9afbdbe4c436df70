"""Fly.io decommission as code: adopt the legacy apps, back them up, freeze them, destroy them.

Per app, by phase (`phase.state`):

- always: `FlyApp`, a read-only record of the app (machines, volumes). Adopting changes nothing and
  deleting the record leaves the app alone;
- `fly.snapshots` (p1): `FlyAppExport` raises each volume's snapshot retention, takes an on-demand
  snapshot and exports it to the backup bucket; a `BackupVerification` reads every object back;
- `legacy.flyApps` stopped or destroyed (p1 on): `FlyFreeze` stops every running machine and keeps
  their ids in its state; deleting it (rolling back to p0) starts exactly those again;
- `legacy.flyApps` destroyed (p4): `FlyDestroy` releases the IPs and destroys the machines, the
  volumes and the app. Irreversible: refused unless `flyAllowDestroy` lists the app (the program
  raises `ConfigError` before anything runs) and its backup verifies (the provider's `check`
  refuses a known-unverified backup at preview; `create` re-reads every object right before the
  first destructive call). Deleting the resource is refused, so a rollback past p4 stops there.

Export path. The Machines API has no "download snapshot" endpoint. The documented building blocks
are: create a volume from a snapshot (`POST /apps/{app}/volumes` with `snapshot_id`), run a machine
that mounts it (`POST /apps/{app}/machines`), and run a command in it (`POST .../exec`). The export
machine runs `tar | gzip | base64` over the restored copy and this process streams the answer into
the bucket, hashing every byte on the way; bucket credentials never enter Fly. The tarball is of the
snapshot (a consistent point in time), not of the live volume, and works for volumes of stopped
machines too. Base64 keeps the stream intact whether exec answers raw bytes (the published spec) or
JSON (the live service); the gzip stream is checked end to end before the upload completes. The
temporary machine and volume are destroyed afterwards.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import time
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

import pulumi
import pulumi.dynamic as dyn
from pydantic import InstanceOf, model_validator

from components import HOST_SCRIPT_DIR
from components.catalog import versions
from components.clouds.fly_api import (
    GONE_STATES,
    RUNNING_STATES,
    STOPPED_STATES,
    FlyApiError,
    FlyClient,
    FlyError,
    FlyNotFoundError,
    FlySettings,
)
from components.config.phases import FlyAppsState
from components.core.engine import changed, contains_unknown, credential, is_unknown, known_inputs
from components.core.errors import ConfigError
from components.core.model import Args
from components.handles import VerifiedBackup
from components.migration.backups import (
    BackupError,
    BackupTarget,
    BackupVerification,
    BucketLocation,
    ObjectRecord,
    bucket_client,
    upload_bytes,
    upload_stream,
    verified_backup,
    verify_objects,
)

EXPORT_MOUNT = "/export"  # where fly-volume-export.sh expects the restored volume
EXPORT_END = b"#FLY-EXPORT-OK"  # the last line fly-volume-export.sh prints after a clean tarball
EXPORT_SCRIPT_PATH = HOST_SCRIPT_DIR / "fly-volume-export.sh"
_STARTED = frozenset({"started"})


class BackupGateError(FlyError):
    """A stop or destroy refused because the app's backup is missing or does not verify."""


# --- decisions the program makes before any resource ---------------------------------------------


def check_decommission(apps: tuple[str, ...], allow_destroy: tuple[str, ...], fly_state: str, phase_id: str) -> None:
    """Refuse, before anything is registered, a phase that destroys apps nobody allowed."""
    if fly_state != "destroyed":
        return
    missing = [app for app in apps if app not in allow_destroy]
    if missing:
        raise ConfigError(
            f"gpu-platform:flyAllowDestroy: phase {phase_id} destroys the Fly apps (irreversible), but "
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not in flyAllowDestroy. Missing "
            f"condition: the owner's sign-off. Add each app to flyAllowDestroy once its backup is verified, "
            f"or stay at the phase before {phase_id}."
        )


# --- shared provider plumbing -------------------------------------------------------------------


FLY_TOKEN_ENV = "FLY_API_TOKEN"


def _public(props: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in props.items() if k != "__provider"}


class _FlyProvider(dyn.ResourceProvider):
    """Base: builds the API client from FLY_API_TOKEN (else the resource's stored token) and settings."""

    def __init__(self, settings: FlySettings | None = None) -> None:
        super().__init__()
        self._settings = settings

    def _client(self, props: Mapping[str, Any]) -> FlyClient:
        return FlyClient(credential(FLY_TOKEN_ENV, props.get("token")), self._settings or FlySettings.from_env())

    @staticmethod
    def _app(props: Mapping[str, Any]) -> str:
        app = props.get("app")
        if not isinstance(app, str) or not app:
            raise FlyError("a Fly resource needs an app name")
        return app


def require_verified_backup(props: Mapping[str, Any], action: str) -> list[ObjectRecord]:
    """Raise BackupGateError unless the app's backup is recorded, verified and reads back intact.

    Called by every provider step that stops or destroys, immediately before its first call to Fly.
    """
    app = str(props.get("app"))
    backup = props.get("backup")
    if not isinstance(backup, Mapping) or not backup.get("objects"):
        raise BackupGateError(f"Fly app {app}: refusing to {action}: no backup of it is recorded")
    if backup.get("verified") is not True:
        raise BackupGateError(f"Fly app {app}: refusing to {action}: its backup has not been verified")
    try:
        records = [ObjectRecord.from_dict(r, f"Fly app {app} backup") for r in backup["objects"]]
        client, location = bucket_client(props)
        problems = verify_objects(client, location, records)
    except BackupError as exc:
        raise BackupGateError(f"Fly app {app}: refusing to {action}: {exc}") from None
    if problems:
        raise BackupGateError(
            f"Fly app {app}: refusing to {action}: its backup does not verify:\n  " + "\n  ".join(problems)
        )
    return records


def backup_check_failures(news: Mapping[str, Any], action: str) -> list[dyn.CheckFailure]:
    """Preview-time refusal when the inputs already show the backup missing or unverified."""
    app = news.get("app")
    backup = news.get("backup")
    # Unknown parts are known once the verification has run (a first preview); create() and
    # update() check the backup again, object by object, before acting. Only what is known
    # already and wrong is refused here.
    if is_unknown(backup):
        return []
    objects = backup.get("objects") if isinstance(backup, Mapping) else None
    verified = backup.get("verified") if isinstance(backup, Mapping) else None
    if not is_unknown(objects) and not objects:
        return [dyn.CheckFailure("backup", f"Fly app {app}: {action} needs a verified backup; none is recorded")]
    if not is_unknown(verified) and verified is not True:
        return [
            dyn.CheckFailure("backup", f"Fly app {app}: {action} needs a verified backup; its backup is not verified")
        ]
    return []


def stop_machine(client: FlyClient, app: str, machine_id: str) -> str:
    """Stop one machine and wait; SIGKILL once if it ignores the first stop. Returns its final state."""
    if not client.stop_machine(app, machine_id):
        return "destroyed"
    done = STOPPED_STATES | GONE_STATES
    try:
        return client.wait_for_state(app, machine_id, done)
    except FlyApiError:
        raise  # the API failed; that is no reason to kill anything
    except FlyError:
        pass  # still running when the wait ran out: escalate, once
    client.stop_machine(app, machine_id, signal="SIGKILL")
    try:
        return client.wait_for_state(app, machine_id, done)
    except FlyError as exc:
        raise FlyError(f"Fly app {app}: machine {machine_id} did not stop, not even after SIGKILL ({exc})") from None


def start_machines(client: FlyClient, app: str, machine_ids: list[str]) -> tuple[list[str], list[str]]:
    """Start each machine and wait for it; returns (started, gone)."""
    started: list[str] = []
    gone: list[str] = []
    for machine_id in machine_ids:
        (started if client.start_machine(app, machine_id) else gone).append(machine_id)
    for machine_id in started:
        client.wait_for_state(app, machine_id, _STARTED)
    return started, gone


# --- FlyApp: the adopted app --------------------------------------------------------------------


def _summary(client: FlyClient, app: str) -> dict[str, Any]:
    machines = client.list_machines(app)
    volumes = client.list_volumes(app)
    return {
        "machines": [
            {"id": m["id"], "name": m.get("name", ""), "state": m.get("state", ""), "region": m.get("region", "")}
            for m in machines
        ],
        "volumes": [
            {
                "id": v["id"],
                "name": v.get("name", ""),
                "region": v.get("region", ""),
                "size_gb": v.get("size_gb", 0),
                "snapshot_retention": v.get("snapshot_retention"),
            }
            for v in volumes
        ],
    }


class FlyAppProvider(_FlyProvider):
    """Adoption: reads the app, changes nothing; delete forgets it and leaves the app running."""

    def _inventory(self, props: Mapping[str, Any], absent_ok: bool) -> dict[str, Any]:
        app, org = self._app(props), props.get("org")
        client = self._client(props)
        try:
            data = client.get_app(app)
        except FlyNotFoundError:
            if absent_ok:
                return {**_public(props), "exists": False, "machines": [], "volumes": []}
            raise FlyError(
                f"Fly app {app} does not exist (gpu-platform:flyApps lists it, org {org}); "
                "fix flyApps, or check that the token belongs to that org"
            ) from None
        slug = (data.get("organization") or {}).get("slug")
        if org and slug and slug != org:
            raise FlyError(f"Fly app {app} belongs to org {slug}, but gpu-platform:flyOrg is {org}")
        return {
            **_public(props),
            "exists": True,
            "app_id": data.get("id", ""),
            "status": data.get("status", ""),
            **_summary(client, app),
        }

    @known_inputs
    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        outs = self._inventory(props, absent_ok=bool(props.get("allow_absent")))
        return dyn.CreateResult(id_=self._app(props), outs=outs)

    def read(self, id_: str, props: dict[str, Any]) -> dyn.ReadResult:
        return dyn.ReadResult(id_, self._inventory(props, absent_ok=True))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        if changed(olds, news, "app"):
            return dyn.DiffResult(changes=True, replaces=["app"], delete_before_replace=False)
        return dyn.DiffResult(changes=changed(olds, news, "allow_absent") or changed(olds, news, "org"))

    @known_inputs
    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dyn.UpdateResult:
        return dyn.UpdateResult(outs=self._inventory(news, absent_ok=bool(news.get("allow_absent"))))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        # Forgetting an adopted app never touches it; destroying is FlyDestroy's job alone.
        return None


class FlyApp(dyn.Resource, module="fly", name="FlyApp"):
    exists: pulumi.Output[bool]
    machines: pulumi.Output[list[dict[str, Any]]]
    volumes: pulumi.Output[list[dict[str, Any]]]

    def __init__(
        self,
        name: str,
        *,
        app: str,
        org: str,
        token: pulumi.Input[str],
        allow_absent: bool,
        opts: pulumi.ResourceOptions,
    ) -> None:
        super().__init__(
            FlyAppProvider(),
            name,
            {
                "app": app,
                "org": org,
                "allow_absent": allow_absent,
                "token": pulumi.Output.secret(token),
                "exists": None,
                "app_id": None,
                "status": None,
                "machines": None,
                "volumes": None,
            },
            pulumi.ResourceOptions.merge(pulumi.ResourceOptions(additional_secret_outputs=["token"]), opts),
        )


# --- FlyAppExport: snapshots and the export to the bucket ----------------------------------------


class ExportStream:
    """Reads the export machine's output: base64 text, then the end marker; yields the gzip bytes.

    Raises BackupError (which aborts the upload, so no partial object is left) when the marker is
    missing, the base64 is broken, or the gzip stream is not complete and valid.
    """

    def __init__(self, chunks: Iterator[bytes], what: str) -> None:
        self._chunks = iter(chunks)
        self._what = what
        self._pending = b""
        self._out = bytearray()
        self._finished = False
        self._inflate = zlib.decompressobj(wbits=31)  # gzip framing; checks the CRC and length
        self.uncompressed_size = 0

    def _feed(self, data: bytes) -> None:
        try:
            self.uncompressed_size += len(self._inflate.decompress(data))
        except zlib.error as exc:
            raise BackupError(f"{self._what}: the exported tarball is not valid gzip ({exc})") from None
        self._out += data

    def _pull(self) -> bool:
        if self._finished:
            return False
        chunk = next(self._chunks, None)
        if chunk is None:
            raise BackupError(
                f"{self._what}: the export ended without its end marker (tar or gzip failed in the machine)"
            )
        end = chunk.find(b"#")
        if end >= 0:
            trailer = chunk[end:] + b"".join(self._chunks)
            if not trailer.strip().startswith(EXPORT_END):
                raise BackupError(f"{self._what}: unexpected text after the export: {trailer[:60]!r}")
            chunk, self._finished = chunk[:end], True
        text = self._pending + chunk.translate(None, b" \t\r\n")
        cut = len(text) if self._finished else len(text) - len(text) % 4
        try:
            data = base64.b64decode(text[:cut], validate=True)
        except ValueError:
            raise BackupError(f"{self._what}: the export is not valid base64") from None
        self._pending = text[cut:]
        self._feed(data)
        if self._finished and not self._inflate.eof:
            raise BackupError(f"{self._what}: the exported gzip stream is truncated")
        return True

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self._out) < n) and self._pull():
            pass
        size = len(self._out) if n < 0 else min(n, len(self._out))
        data = bytes(self._out[:size])
        del self._out[:size]
        return data


def destroy_machine(client: FlyClient, app: str, machine_id: str) -> None:
    stop_machine(client, app, machine_id)
    client.delete_machine(app, machine_id)
    client.wait_for_state(app, machine_id, GONE_STATES)


def export_volume(
    client: FlyClient,
    s3: Any,
    *,
    location: BucketLocation,
    app: str,
    volume: Mapping[str, Any],
    snapshot_id: str,
    key: str,
) -> ObjectRecord:
    """Restore `snapshot_id` into a temporary volume, tar it out through a one-off machine, upload."""
    volume_id = str(volume["id"])
    what = f"Fly app {app} volume {volume_id} (snapshot {snapshot_id})"
    temp = client.create_volume(
        app,
        {
            "name": "gp_export",
            "region": volume.get("region", ""),
            "size_gb": int(volume.get("size_gb") or 1),
            "snapshot_id": snapshot_id,
            "require_unique_zone": False,
        },
    )
    machine_id: str | None = None

    def clean_up() -> list[str]:
        leftovers = []
        try:
            if machine_id is not None:
                destroy_machine(client, app, machine_id)
        except FlyError as exc:
            leftovers.append(f"machine {machine_id} ({exc})")
        try:
            client.delete_volume(app, str(temp["id"]))
        except FlyError as exc:
            leftovers.append(f"volume {temp['id']} ({exc})")
        return leftovers

    try:
        machine = client.create_machine(
            app,
            {
                "name": f"gp-export-{volume_id.replace('_', '-')}"[:63],
                "region": volume.get("region", ""),
                "skip_service_registration": True,
                "config": {
                    "image": versions.FLY_EXPORT_IMAGE,
                    "init": {"cmd": ["sleep", "86400"]},
                    "mounts": [{"volume": temp["id"], "path": EXPORT_MOUNT}],
                    "auto_destroy": True,
                    "restart": {"policy": "no"},
                    "guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256},
                    "metadata": {"gpu-platform": "volume-export"},
                },
            },
        )
        machine_id = str(machine["id"])
        client.wait_for_state(app, machine_id, _STARTED)
        script = EXPORT_SCRIPT_PATH.read_text()
        output = client.exec_output(app, machine_id, ["sh", "-c", script], client.settings.exec_timeout)
        record = upload_stream(s3, location, key, ExportStream(output, what))
    except Exception as exc:
        leftovers = clean_up()
        if leftovers:
            exc.add_note(f"{what}: clean-up failed too; delete by hand: {'; '.join(leftovers)}")
        raise
    leftovers = clean_up()
    if leftovers:
        # The export is in the bucket, but what it borrowed still costs money: say what to delete.
        raise FlyError(f"{what}: exported, but clean-up failed; delete by hand: {'; '.join(leftovers)}")
    return record


class FlyAppExportProvider(_FlyProvider):
    """Raise snapshot retention, snapshot every volume, export each and write the app's manifest."""

    @known_inputs
    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        app = self._app(props)
        client = self._client(props)
        s3, location = bucket_client(props)
        retention = int(props.get("retention_days") or 60)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        # The second alone is not unique: a create the engine runs again (after a crash, or a
        # failed volume halfway) can start within the same second and would overwrite objects
        # whose hashes an earlier attempt recorded. 48 random bits make every attempt's keys its own.
        attempt = f"{stamp}-{secrets.token_hex(6)}"
        prefix = f"{props.get('prefix') or 'fly'}/{app}/{attempt}"
        machines = client.list_machines(app)
        exported: list[dict[str, Any]] = []
        records: list[ObjectRecord] = []
        for volume in client.list_volumes(app):
            volume_id = str(volume["id"])
            original = volume.get("snapshot_retention")
            if not isinstance(original, int) or original < retention:
                client.set_snapshot_retention(app, volume_id, retention)
            snapshot = client.create_snapshot(app, volume_id)
            record = export_volume(
                client,
                s3,
                location=location,
                app=app,
                volume=volume,
                snapshot_id=str(snapshot["id"]),
                key=f"{prefix}/{volume_id}.tar.gz",
            )
            records.append(record)
            exported.append(
                {
                    "id": volume_id,
                    "name": volume.get("name", ""),
                    "region": volume.get("region", ""),
                    "size_gb": volume.get("size_gb", 0),
                    "snapshot_id": snapshot["id"],
                    "original_retention": original if isinstance(original, int) else None,
                    "retention": max(retention, original) if isinstance(original, int) else retention,
                    "object": record.to_dict(),
                }
            )
        manifest = {
            "format": 1,
            "app": app,
            "org": props.get("org"),
            "taken_at": stamp,
            # Machine configs are what it takes to recreate the app elsewhere; Fly secrets are not in them.
            "machines": [{k: m.get(k) for k in ("id", "name", "region", "state", "config")} for m in machines],
            "volumes": exported,
        }
        manifest_record = upload_bytes(s3, location, f"{prefix}/manifest.json", json.dumps(manifest, indent=2).encode())
        outs = {
            **_public(props),
            "manifest_key": manifest_record.key,
            "volumes": exported,
            "objects": [manifest_record.to_dict(), *(r.to_dict() for r in records)],
        }
        return dyn.CreateResult(id_=f"{app}-{attempt}", outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        # Only another app is a new export; a token or bucket-key rotation changes nothing taken.
        if changed(olds, news, "app") or changed(olds, news, "location"):
            return dyn.DiffResult(changes=True, replaces=["app"], delete_before_replace=False)
        return dyn.DiffResult(changes=False)

    def read(self, id_: str, props: dict[str, Any]) -> dyn.ReadResult:
        return dyn.ReadResult(id_, props)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        # Rolling back p1: give each volume its snapshot retention back. The exported objects stay
        # in the bucket (versioned, expired by its lifecycle rule), and Fly expires the snapshots.
        app = self._app(props)
        client = self._client(props)
        for volume in props.get("volumes") or []:
            original = volume.get("original_retention")
            if isinstance(original, float):
                original = int(original)
            if isinstance(original, int) and 1 <= original < int(volume.get("retention") or 0):
                with contextlib.suppress(FlyNotFoundError):  # volume or app gone: nothing left to restore
                    client.set_snapshot_retention(app, str(volume["id"]), original)


class FlyAppExport(dyn.Resource, module="fly", name="FlyAppExport"):
    objects: pulumi.Output[list[dict[str, Any]]]
    manifest_key: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        app: str,
        org: str,
        token: pulumi.Input[str],
        target: BackupTarget,
        retention_days: int,
        opts: pulumi.ResourceOptions,
    ) -> None:
        super().__init__(
            FlyAppExportProvider(),
            name,
            {
                "app": app,
                "org": org,
                "token": pulumi.Output.secret(token),
                "location": target.location(),
                **target.credential_inputs(),
                "retention_days": retention_days,
                "prefix": "fly",
                "manifest_key": None,
                "volumes": None,
                "objects": None,
            },
            pulumi.ResourceOptions.merge(
                pulumi.ResourceOptions(
                    depends_on=list(target.ready),
                    additional_secret_outputs=["token", "access_key_id", "secret_access_key"],
                ),
                opts,
            ),
        )


# --- FlyFreeze: stop, and remember what ran -------------------------------------------------------


class FlyFreezeProvider(_FlyProvider):
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> dyn.CheckResult:
        return dyn.CheckResult(news, backup_check_failures(news, "stopping its machines"))

    def _freeze(self, props: Mapping[str, Any], already: list[str]) -> dict[str, Any]:
        app = self._app(props)
        require_verified_backup(props, "stop its machines")
        client = self._client(props)
        try:
            machines = client.list_machines(app)
        except FlyNotFoundError:
            return {**_public(props), "was_running": already, "machine_states": {}}
        running = [str(m["id"]) for m in machines if m.get("state") in RUNNING_STATES]
        stopped: list[str] = []
        try:
            for machine_id in running:
                stop_machine(client, app, machine_id)
                stopped.append(machine_id)
        except FlyError as exc:
            # All or nothing: a half-frozen app would be recorded nowhere, so start what we stopped.
            restarted, _ = start_machines(client, app, stopped)
            raise FlyError(f"{exc}; freeze of {app} undone (started again: {', '.join(restarted) or 'none'})") from None
        states = {str(m["id"]): str(m.get("state", "")) for m in client.list_machines(app)}
        was_running = already + [m for m in running if m not in already]
        return {**_public(props), "was_running": was_running, "machine_states": states}

    @known_inputs
    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        return dyn.CreateResult(id_=f"freeze-{self._app(props)}", outs=self._freeze(props, []))

    @known_inputs
    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.UpdateResult:
        # Drift (someone started a machine) is stopped again; it joins the ones a rollback restarts.
        return dyn.UpdateResult(outs=self._freeze(news, list(olds.get("was_running") or [])))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        if changed(olds, news, "app"):
            return dyn.DiffResult(changes=True, replaces=["app"], delete_before_replace=True)
        # After a refresh, machine_states says what runs now; anything running is drift to stop.
        states = olds.get("machine_states") or {}
        drift = any(state in RUNNING_STATES for state in states.values())
        # A new backup (token, bucket keys) is no reason to restart and re-stop anything.
        return dyn.DiffResult(changes=drift)

    def read(self, id_: str, props: dict[str, Any]) -> dyn.ReadResult:
        app = self._app(props)
        try:
            machines = self._client(props).list_machines(app)
        except FlyNotFoundError:
            machines = []
        states = {str(m["id"]): str(m.get("state", "")) for m in machines}
        return dyn.ReadResult(id_, {**props, "machine_states": states})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        # Rolling back the freeze: start exactly the machines that ran before it, nothing else.
        app = self._app(props)
        was_running = [str(m) for m in props.get("was_running") or []]
        if was_running:
            start_machines(self._client(props), app, was_running)


class FlyFreeze(dyn.Resource, module="fly", name="FlyFreeze"):
    was_running: pulumi.Output[list[str]]

    def __init__(
        self,
        name: str,
        *,
        app: str,
        token: pulumi.Input[str],
        target: BackupTarget,
        backup: pulumi.Input[dict[str, Any]],
        opts: pulumi.ResourceOptions,
    ) -> None:
        super().__init__(
            FlyFreezeProvider(),
            name,
            {
                "app": app,
                "token": pulumi.Output.secret(token),
                "location": target.location(),
                **target.credential_inputs(),
                "backup": backup,
                "was_running": None,
                "machine_states": None,
            },
            pulumi.ResourceOptions.merge(
                pulumi.ResourceOptions(additional_secret_outputs=["token", "access_key_id", "secret_access_key"]),
                opts,
            ),
        )


# --- FlyDestroy: the irreversible step ------------------------------------------------------------


def _allow_failure(news: Mapping[str, Any]) -> list[dyn.CheckFailure]:
    allow = news.get("allow_destroy")
    if allow is True or contains_unknown(allow):
        return []  # unknown only in a preview; create() refuses again unless it is known and true
    return [
        dyn.CheckFailure(
            "allow_destroy",
            f"Fly app {news.get('app')}: destroying it needs its owner's sign-off in gpu-platform:flyAllowDestroy, "
            "and it is not listed there",
        )
    ]


class FlyDestroyProvider(_FlyProvider):
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> dyn.CheckResult:
        return dyn.CheckResult(news, _allow_failure(news) + backup_check_failures(news, "destroying it"))

    @known_inputs
    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        app = self._app(props)
        failures = _allow_failure(props)
        if failures:
            raise FlyError(failures[0].reason)
        require_verified_backup(props, "destroy it")
        client = self._client(props)
        outs: dict[str, Any] = {**_public(props), "released_ips": [], "destroyed_machines": [], "deleted_volumes": []}
        try:
            client.get_app(app)
        except FlyNotFoundError:
            return dyn.CreateResult(id_=f"destroyed-{app}", outs={**outs, "already_gone": True})
        for ip in client.list_ips(app):
            if client.release_ip(app, str(ip["id"])):
                outs["released_ips"].append(ip.get("address", ip["id"]))
        for machine in client.list_machines(app):
            destroy_machine(client, app, str(machine["id"]))
            outs["destroyed_machines"].append(machine["id"])
        for volume in client.list_volumes(app):
            if client.delete_volume(app, str(volume["id"])):
                outs["deleted_volumes"].append(volume["id"])
        client.delete_app(app)
        return dyn.CreateResult(id_=f"destroyed-{app}", outs={**outs, "already_gone": False})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        if changed(olds, news, "app"):
            return dyn.DiffResult(changes=True, replaces=["app"])
        return dyn.DiffResult(changes=False)

    def read(self, id_: str, props: dict[str, Any]) -> dyn.ReadResult:
        # Refresh reports an app of the same name that exists again; it is never destroyed on sight.
        app = self._app(props)
        try:
            self._client(props).get_app(app)
            present = True
        except FlyNotFoundError:
            present = False
        return dyn.ReadResult(id_, {**props, "app_present": present})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        app = props.get("app")
        location = props.get("location") or {}
        manifest = ((props.get("backup") or {}).get("objects") or [{}])[0].get("key", "?")
        raise FlyError(
            f"Fly app {app} was destroyed in p4-decommission; rolling back cannot bring it back. Its data is in "
            f"s3://{location.get('bucket', '?')}/{manifest}: restore from there. To drop this record without "
            f"changing anything, run `pulumi state delete` on the FlyDestroy resource of {app}."
        )


class FlyDestroy(dyn.Resource, module="fly", name="FlyDestroy"):
    def __init__(
        self,
        name: str,
        *,
        app: str,
        allow_destroy: bool,
        token: pulumi.Input[str],
        target: BackupTarget,
        backup: pulumi.Input[dict[str, Any]],
        opts: pulumi.ResourceOptions,
    ) -> None:
        super().__init__(
            FlyDestroyProvider(),
            name,
            {
                "app": app,
                "allow_destroy": allow_destroy,
                "token": pulumi.Output.secret(token),
                "location": target.location(),
                **target.credential_inputs(),
                "backup": backup,
                "released_ips": None,
                "destroyed_machines": None,
                "deleted_volumes": None,
                "already_gone": None,
            },
            pulumi.ResourceOptions.merge(
                pulumi.ResourceOptions(additional_secret_outputs=["token", "access_key_id", "secret_access_key"]),
                opts,
            ),
        )


# --- the component ----------------------------------------------------------------------------------


class FlyAppsArgs(Args):
    org: str
    apps: tuple[str, ...]
    allow_destroy: tuple[str, ...]
    apps_state: FlyAppsState
    snapshots: bool
    phase_id: str
    token: pulumi.Output[str]
    target: InstanceOf[BackupTarget]
    snapshot_retention_days: int = 60

    @model_validator(mode="after")
    def _phase(self) -> FlyAppsArgs:
        if not self.apps:
            raise ConfigError("gpu-platform:flyApps: no apps listed")
        if self.apps_state != "running" and not self.snapshots:
            raise ConfigError(f"phase {self.phase_id}: legacy.flyApps={self.apps_state} needs fly.snapshots")
        if not 1 <= self.snapshot_retention_days <= 60:
            raise ConfigError("gpu-platform:backups.flySnapshotRetentionDays: must be 1..60")
        check_decommission(self.apps, self.allow_destroy, self.apps_state, self.phase_id)
        return self


class FlyApps(pulumi.ComponentResource):
    """The legacy Fly apps through the migration; `verified` holds each app's verified backup."""

    verified: dict[str, VerifiedBackup]

    def __init__(self, name: str, args: FlyAppsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gpu-platform:fly:FlyApps", name, None, opts)
        self.verified = {}
        child = pulumi.ResourceOptions(parent=self)
        destroyed = args.apps_state == "destroyed"
        for app in args.apps:
            record = FlyApp(
                f"{name}-{app}", app=app, org=args.org, token=args.token, allow_absent=destroyed, opts=child
            )
            if not args.snapshots:
                continue
            export = FlyAppExport(
                f"{name}-{app}-export",
                app=app,
                org=args.org,
                token=args.token,
                target=args.target,
                retention_days=args.snapshot_retention_days,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[record]),
            )
            verification = BackupVerification(
                f"{name}-{app}-verify", args.target, export.objects, label=f"fly-{app}", opts=child
            )
            self.verified[f"fly-{app}"] = verified_backup(f"fly-{app}", verification)
            if args.apps_state == "running":
                continue
            # The verification's own outputs are the gate's input: no verified backup, no stop.
            backup = pulumi.Output.all(verification.verified, verification.objects).apply(
                lambda vo: {"verified": vo[0], "objects": vo[1]}
            )
            freeze = FlyFreeze(
                f"{name}-{app}-freeze", app=app, token=args.token, target=args.target, backup=backup, opts=child
            )
            if destroyed:
                FlyDestroy(
                    f"{name}-{app}-destroy",
                    app=app,
                    allow_destroy=app in args.allow_destroy,
                    token=args.token,
                    target=args.target,
                    backup=backup,
                    # Protected in every stack: a destroyed app cannot come back, so rolling back
                    # past p4 must stop at preview (Pulumi refuses to delete a protected resource)
                    # rather than midway through an `up` that has already restarted the Compose
                    # services when this resource's delete refuses.
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[freeze], protect=True),
                )
        self.register_outputs({"verified": {k: v.key for k, v in self.verified.items()}})
