"""The Fly dynamic providers against the fake Fly API (checked against the spec) and moto's S3.

What must hold, asserted on what the fake server actually received:
- nothing stops or destroys an app whose backup is missing, unverified or corrupt;
- rolling the freeze back starts exactly the machines that ran before it;
- destroy needs the allow flag and a verified backup, and cannot be rolled back.
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import tarfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pulumi.output import Unknown

from components.clouds.fly_api import FlyError, FlySettings
from components.migration import fly as fly_module
from components.migration.backups import BackupError, BackupVerificationProvider, ObjectRecord, verify_objects
from components.migration.fly import (
    EXPORT_SCRIPT_PATH,
    BackupGateError,
    ExportStream,
    FlyAppExportProvider,
    FlyAppProvider,
    FlyDestroyProvider,
    FlyFreezeProvider,
)
from tests.fakes.fly_server import FakeFly, fake_fly
from tests.fakes.s3 import FakeS3, moto_s3

pytestmark = pytest.mark.network

BUCKET = "fly-backups"
TOKEN = "fake-fly-token"
FILES = {"db/app.sqlite": b"SQLite format 3\x00" + bytes(range(256)) * 64, "uploads/a.txt": b"hello fly\n"}


@pytest.fixture(scope="module")
def s3() -> Iterator[FakeS3]:
    with moto_s3() as fake:
        fake.make_bucket(BUCKET)
        yield fake


@pytest.fixture
def fly() -> Iterator[FakeFly]:
    with fake_fly(token=TOKEN) as fake:
        yield fake
        assert fake.violations == []


@pytest.fixture
def settings(fly: FakeFly) -> FlySettings:
    return FlySettings(
        api_url=fly.api_url,
        graphql_url=fly.graphql_url,
        min_interval=0,
        max_attempts=4,
        backoff_base=0.001,
        backoff_max=0.01,
        poll_interval=0.005,
        state_timeout=0.1,
        exec_timeout=30,
    )


def _props(s3: FakeS3, app: str, **extra: Any) -> dict[str, Any]:
    return {"app": app, "org": "example", "token": TOKEN, **s3.props(BUCKET), **extra}


def _backed_up(s3: FakeS3, settings: FlySettings, app: str) -> dict[str, Any]:
    """Export and verify `app` the way p1 does; returns the `backup` input the gates receive."""
    exported = FlyAppExportProvider(settings).create(_props(s3, app, retention_days=60, prefix="fly")).outs
    verified = (
        BackupVerificationProvider()
        .create({"label": f"fly-{app}", **s3.props(BUCKET), "objects": exported["objects"]})
        .outs
    )
    return {"verified": verified["verified"], "objects": verified["objects"]}


def _flip_byte(s3: FakeS3, key: str) -> None:
    client = s3.client(BUCKET)
    data = bytearray(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0xFF
    client.put_object(Bucket=BUCKET, Key=key, Body=bytes(data))


# --- export -------------------------------------------------------------------------------------


def test_export_snapshots_every_volume_and_uploads_a_verifiable_tarball(
    s3: FakeS3, fly: FakeFly, settings: FlySettings
) -> None:
    ids = fly.add_app("exp", machines=("started", "stopped"), volume_files=FILES, retention=5)
    outs = FlyAppExportProvider(settings).create(_props(s3, "exp", retention_days=60, prefix="fly")).outs

    [volume] = outs["volumes"]
    assert volume["id"] == ids["volumes"][0] and volume["original_retention"] == 5 and volume["retention"] == 60
    assert fly.volumes["exp"][volume["id"]]["snapshot_retention"] == 60
    assert volume["snapshot_id"] in {s["id"] for s in fly.snapshots[volume["id"]]}
    manifest_rec, data_rec = outs["objects"]
    client = s3.client(BUCKET)
    manifest = json.loads(client.get_object(Bucket=BUCKET, Key=manifest_rec["key"])["Body"].read())
    assert [m["id"] for m in manifest["machines"]] == ids["machines"] and manifest["volumes"][0]["object"] == data_rec
    blob = client.get_object(Bucket=BUCKET, Key=data_rec["key"])["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        got = {m.name.removeprefix("./"): tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    assert got == FILES
    # The borrowed machine and restored volume are gone; the app's own are untouched.
    assert set(fly.machines["exp"]) == set(ids["machines"]) and set(fly.volumes["exp"]) == set(ids["volumes"])
    touched = {r.path.split("/")[4] for r in fly.requests if r.method != "GET" and "/machines/" in r.path}
    assert touched and not touched & set(ids["machines"])  # only the borrowed export machine was driven
    assert BackupVerificationProvider().create({"label": "x", **s3.props(BUCKET), "objects": outs["objects"]})


def test_rolling_back_the_export_gives_volumes_their_retention_back(
    s3: FakeS3, fly: FakeFly, settings: FlySettings
) -> None:
    ids = fly.add_app("ret", volume_files={"f": b"1"}, retention=5)
    provider = FlyAppExportProvider(settings)
    outs = provider.create(_props(s3, "ret", retention_days=60, prefix="fly")).outs
    provider.delete("id", outs)
    assert fly.volumes["ret"][ids["volumes"][0]]["snapshot_retention"] == 5
    objects = outs["objects"]
    assert BackupVerificationProvider().create({"label": "x", **s3.props(BUCKET), "objects": objects})


def test_a_truncated_export_leaves_no_object_and_no_borrowed_resources(
    s3: FakeS3, fly: FakeFly, settings: FlySettings
) -> None:
    ids = fly.add_app("cut", volume_files=FILES)
    fly.faults.truncate_export = True
    with pytest.raises(BackupError, match=r"Fly app cut volume .* (end marker|truncated|not valid)"):
        FlyAppExportProvider(settings).create(_props(s3, "cut", retention_days=60, prefix="fly"))
    listed = s3.client(BUCKET).list_objects_v2(Bucket=BUCKET, Prefix="fly/cut/")
    assert listed.get("KeyCount", 0) == 0
    assert set(fly.machines["cut"]) == set(ids["machines"]) and set(fly.volumes["cut"]) == set(ids["volumes"])


def test_a_retried_export_in_the_same_second_never_overwrites_what_the_first_recorded(
    s3: FakeS3, fly: FakeFly, settings: FlySettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 27: keys named by the second alone let a retried create (the engine runs it again after
    a crash) overwrite objects whose hashes the first attempt had recorded. A fixed clock makes
    both attempts fall in the same second; the app keeps writing in between."""

    class FixedClock:
        strftime = staticmethod(time.strftime)

        @staticmethod
        def gmtime(_secs: float | None = None) -> time.struct_time:
            return time.gmtime(1767225600)  # 2026-01-01T00:00:00Z, every call

    monkeypatch.setattr(fly_module, "time", FixedClock)
    ids = fly.add_app("retry", volume_files=FILES)
    provider = FlyAppExportProvider(settings)
    first = provider.create(_props(s3, "retry", retention_days=60, prefix="fly"))
    fly.volumes["retry"][ids["volumes"][0]]["_files"] = {**FILES, "uploads/b.txt": b"written after the first try\n"}
    second = provider.create(_props(s3, "retry", retention_days=60, prefix="fly"))

    # Both attempts' records still hold: nothing the first one wrote was replaced.
    client = s3.client(BUCKET)
    for attempt in (first, second):
        records = [ObjectRecord.from_dict(o, "retry") for o in attempt.outs["objects"]]
        assert verify_objects(client, s3.location(BUCKET), records) == []
    keys = [[o["key"] for o in attempt.outs["objects"]] for attempt in (first, second)]
    assert not set(keys[0]) & set(keys[1]) and first.id != second.id
    assert all(k.startswith("fly/retry/20260101T000000Z-") for k in keys[0] + keys[1])


# --- the backup gate: no stop, no destroy without a verified backup --------------------------------


@pytest.mark.parametrize("damage", ["corrupt", "missing", "unverified", "none"])
def test_freeze_and_destroy_never_reach_fly_without_a_verified_backup(
    s3: FakeS3, fly: FakeFly, settings: FlySettings, damage: str
) -> None:
    app = f"gate-{damage}"
    fly.add_app(app, machines=("started", "started"), volume_files=FILES)
    backup = _backed_up(s3, settings, app)
    if damage == "corrupt":
        _flip_byte(s3, backup["objects"][1]["key"])
        expected = "its backup does not verify"
    elif damage == "missing":
        s3.client(BUCKET).delete_object(Bucket=BUCKET, Key=backup["objects"][0]["key"])
        expected = "its backup does not verify"
    elif damage == "unverified":
        backup = {**backup, "verified": False}
        expected = "its backup has not been verified"
    else:
        backup = {"verified": True, "objects": []}
        expected = "no backup of it is recorded"
    before = len(fly.requests)  # the export itself stops and deletes the machine it borrowed

    with pytest.raises(BackupGateError, match=f"Fly app {app}: refusing to stop its machines: {expected}"):
        FlyFreezeProvider(settings).create(_props(s3, app, backup=backup))
    with pytest.raises(BackupGateError, match=f"Fly app {app}: refusing to destroy it: {expected}"):
        FlyDestroyProvider(settings).create(_props(s3, app, backup=backup, allow_destroy=True))

    assert fly.destructive_calls(app, since=before) == []
    assert all(m["state"] == "started" for m in fly.machines[app].values())


def test_destroy_without_the_allow_flag_is_refused_before_any_call(
    s3: FakeS3, fly: FakeFly, settings: FlySettings
) -> None:
    fly.add_app("keep", volume_files=FILES)
    backup = _backed_up(s3, settings, "keep")
    before = len(fly.requests)
    with pytest.raises(
        FlyError, match="Fly app keep: destroying it needs its owner's sign-off in gpu-platform:flyAllowDestroy"
    ):
        FlyDestroyProvider(settings).create(_props(s3, "keep", backup=backup, allow_destroy=False))
    assert fly.requests[before:] == [] and "keep" in fly.apps


def test_preview_check_names_the_app_and_the_missing_condition() -> None:
    destroy, freeze = FlyDestroyProvider(), FlyFreezeProvider()
    ok_backup = {"verified": True, "objects": [{"key": "k", "size": 1, "sha256": "a" * 64}]}

    reasons = [
        f.reason for f in destroy.check({}, {"app": "jobs", "allow_destroy": False, "backup": ok_backup}).failures
    ]
    assert reasons == [
        "Fly app jobs: destroying it needs its owner's sign-off in gpu-platform:flyAllowDestroy, "
        "and it is not listed there"
    ]
    reasons = [
        f.reason
        for f in destroy.check(
            {}, {"app": "jobs", "allow_destroy": True, "backup": {**ok_backup, "verified": False}}
        ).failures
    ]
    assert reasons == ["Fly app jobs: destroying it needs a verified backup; its backup is not verified"]
    reasons = [
        f.reason for f in freeze.check({}, {"app": "jobs", "backup": {"verified": True, "objects": []}}).failures
    ]
    assert reasons == ["Fly app jobs: stopping its machines needs a verified backup; none is recorded"]
    # During a first preview the verification has not run yet: its outputs are unknown, not missing.
    # The provider host hands check the engine's unknowns as `Unknown` objects.
    assert destroy.check({}, {"app": "jobs", "allow_destroy": True, "backup": Unknown()}).failures == []
    assert freeze.check({}, {"app": "jobs", "backup": Unknown()}).failures == []
    assert (
        destroy.check(
            {}, {"app": "jobs", "allow_destroy": True, "backup": {"verified": Unknown(), "objects": Unknown()}}
        ).failures
        == []
    )
    # What is known already still counts: an unverified backup is refused even if its objects are not known.
    reasons = [
        f.reason
        for f in freeze.check({}, {"app": "jobs", "backup": {"verified": False, "objects": Unknown()}}).failures
    ]
    assert reasons == ["Fly app jobs: stopping its machines needs a verified backup; its backup is not verified"]
    assert destroy.check({}, {"app": "jobs", "allow_destroy": True, "backup": ok_backup}).failures == []


# --- freeze and its rollback --------------------------------------------------------------------------


def test_rollback_restarts_exactly_the_machines_that_were_running(
    s3: FakeS3, fly: FakeFly, settings: FlySettings
) -> None:
    ids = fly.add_app("frz", machines=("started", "stopped", "started", "suspended"), volume_files=FILES)
    m_run1, m_stopped, m_run2, m_suspended = ids["machines"]
    backup = _backed_up(s3, settings, "frz")
    provider = FlyFreezeProvider(settings)
    before = len(fly.requests)

    outs = provider.create(_props(s3, "frz", backup=backup)).outs

    assert outs["was_running"] == [m_run1, m_run2]
    assert {fly.state_of("frz", m) for m in ids["machines"]} <= {"stopped", "suspended"}
    stops = fly.calls("POST", "/apps/frz/machines/[^/]+/stop", since=before)
    assert [r.path.split("/")[-2] for r in stops] == [m_run1, m_run2]

    provider.delete("freeze-frz", outs)

    started = [r.path.split("/")[-2] for r in fly.calls("POST", "/apps/frz/machines/[^/]+/start", since=before)]
    assert started == [m_run1, m_run2]
    assert fly.state_of("frz", m_run1) == fly.state_of("frz", m_run2) == "started"
    assert fly.state_of("frz", m_stopped) == "stopped" and fly.state_of("frz", m_suspended) == "suspended"


def test_a_machine_that_will_not_stop_fails_the_freeze_and_undoes_it(
    s3: FakeS3, fly: FakeFly, settings: FlySettings
) -> None:
    ids = fly.add_app("stuck", machines=("started", "started"), volume_files=FILES)
    backup = _backed_up(s3, settings, "stuck")
    fly.faults.wont_stop.add(ids["machines"][1])

    with pytest.raises(
        FlyError, match=f"Fly app stuck: machine {ids['machines'][1]} did not stop, not even after SIGKILL"
    ):
        FlyFreezeProvider(settings).create(_props(s3, "stuck", backup=backup))

    kill = [r for r in fly.calls("POST", f"/apps/stuck/machines/{ids['machines'][1]}/stop") if r.body]
    assert kill and kill[0].body == {"signal": "SIGKILL"}
    assert fly.state_of("stuck", ids["machines"][0]) == "started"  # stopped, then started again


def test_freeze_rides_out_rate_limits_and_server_errors(s3: FakeS3, fly: FakeFly, settings: FlySettings) -> None:
    ids = fly.add_app("flaky", machines=("started",), volume_files=FILES)
    backup = _backed_up(s3, settings, "flaky")
    before = len(fly.requests)
    fly.faults.rate_limited = ["0", None]
    fly.faults.server_errors = {"POST /v1/apps/flaky/machines/[^/]+/stop": 2}

    outs = FlyFreezeProvider(settings).create(_props(s3, "flaky", backup=backup)).outs

    assert outs["was_running"] == ids["machines"]
    assert [r.status for r in fly.requests[before : before + 2]] == [429, 429]
    assert [r.status for r in fly.calls("POST", "/apps/flaky/machines/[^/]+/stop", since=before)] == [500, 500, 200]
    assert fly.state_of("flaky", ids["machines"][0]) == "stopped"


def test_refresh_sees_a_restarted_machine_and_the_next_up_stops_it_again(
    s3: FakeS3, fly: FakeFly, settings: FlySettings
) -> None:
    ids = fly.add_app("drift", machines=("started", "stopped"), volume_files=FILES)
    backup = _backed_up(s3, settings, "drift")
    provider = FlyFreezeProvider(settings)
    outs = provider.create(_props(s3, "drift", backup=backup)).outs
    news = _props(s3, "drift", backup=backup)
    assert provider.diff("id", outs, news).changes is False

    fly.machines["drift"][ids["machines"][1]]["state"] = "started"  # someone ran `fly machine start`
    refreshed = provider.read("id", outs).outs
    assert refreshed["machine_states"][ids["machines"][1]] == "started"
    assert provider.diff("id", refreshed, news).changes is True

    updated = provider.update("id", refreshed, news).outs
    assert updated["was_running"] == ids["machines"]  # a rollback now starts both
    assert fly.state_of("drift", ids["machines"][1]) == "stopped"


# --- destroy ------------------------------------------------------------------------------------------


def test_destroy_releases_ips_and_removes_machines_volumes_and_app(
    s3: FakeS3, fly: FakeFly, settings: FlySettings
) -> None:
    ids = fly.add_app("bye", machines=("started", "stopped"), volume_files=FILES, ips=("203.0.113.7", "203.0.113.8"))
    backup = _backed_up(s3, settings, "bye")
    provider = FlyDestroyProvider(settings)
    before = len(fly.requests)

    outs = provider.create(_props(s3, "bye", backup=backup, allow_destroy=True)).outs

    assert outs["released_ips"] == ["203.0.113.7", "203.0.113.8"] and outs["already_gone"] is False
    assert outs["destroyed_machines"] == ids["machines"] and outs["deleted_volumes"] == ids["volumes"]
    assert "bye" not in fly.apps
    assert [r.status for r in fly.requests[before:] if r.method == "DELETE"] == [200, 200, 200, 202]

    again = provider.create(_props(s3, "bye", backup=backup, allow_destroy=True)).outs
    assert again["already_gone"] is True
    assert provider.read("x", again).outs["app_present"] is False

    with pytest.raises(
        FlyError,
        match=r"Fly app bye was destroyed in p4-decommission; rolling back cannot bring it back"
        r".* s3://fly-backups/fly/bye/",
    ):
        provider.delete("destroyed-bye", outs)


def test_adoption_reads_only_and_checks_the_org(s3: FakeS3, fly: FakeFly, settings: FlySettings) -> None:
    ids = fly.add_app("adopt", org="example", machines=("started", "stopped"), volume_files=FILES)
    provider = FlyAppProvider(settings)
    outs = provider.create({"app": "adopt", "org": "example", "token": TOKEN, "allow_absent": False}).outs
    assert [m["id"] for m in outs["machines"]] == ids["machines"] and outs["exists"] is True
    assert {r.method for r in fly.requests} == {"GET"}
    provider.delete("adopt", outs)
    assert "adopt" in fly.apps

    with pytest.raises(FlyError, match="Fly app adopt belongs to org example, but gpu-platform:flyOrg is other"):
        provider.create({"app": "adopt", "org": "other", "token": TOKEN, "allow_absent": False})
    with pytest.raises(FlyError, match="Fly app ghost does not exist"):
        provider.create({"app": "ghost", "org": "example", "token": TOKEN, "allow_absent": False})
    gone = provider.create({"app": "ghost", "org": "example", "token": TOKEN, "allow_absent": True}).outs
    assert gone["exists"] is False


# --- the export script itself, run by a real shell, read back by the real reader --------------------


def _run_export_script(root: str) -> list[bytes]:
    script = EXPORT_SCRIPT_PATH.read_text().replace("/export", root)
    out = subprocess.run(["bash", "-c", script], capture_output=True, timeout=30, check=False).stdout
    return [out[i : i + 1000] for i in range(0, len(out), 1000)]  # arrives in pieces, as over HTTP


def test_export_script_output_reads_back_to_the_volume_files(tmp_path: Any) -> None:
    for name, data in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    stream = ExportStream(iter(_run_export_script(str(tmp_path))), "vol")
    blob = stream.read()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        got = {m.name.removeprefix("./"): tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    assert got == FILES and stream.uncompressed_size > sum(len(d) for d in FILES.values())


def test_a_failing_tar_never_yields_a_backup(tmp_path: Any) -> None:
    chunks = _run_export_script(str(tmp_path / "no-such-volume"))
    with pytest.raises(BackupError, match="vol: the export ended without its end marker"):
        ExportStream(iter(chunks), "vol").read()
