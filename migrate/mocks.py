"""Realistic mock outputs for every resource type the program registers.

A rule takes the resource's name and (plain) inputs and returns the outputs a real provider would
report after create. A type without a rule raises `MissingMockRuleError`, so a new resource type can
never pass through the recorded plan unexamined. Outputs are deterministic (hashes of the URN
parts), so two recordings of one stack and phase are identical.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Callable
from typing import Any

from pulumi.runtime.mocks import MockCallArgs, MockResourceArgs
from pulumi.runtime.mocks import Mocks as _PulumiMocks

from components.core.engine import WIRE_UNKNOWN

Rule = Callable[[str, dict[str, Any]], dict[str, Any]]


class MissingMockRuleError(Exception):
    pass


def digest(*parts: str, length: int = 16) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


def fake_ip(*parts: str, net: str = "198.51.100") -> str:
    """A stable documentation-range address (RFC 5737) for a mocked resource."""
    return f"{net}.{int(digest(*parts, length=4), 16) % 200 + 20}"


def echo(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """Providers whose outputs are their inputs (plus what the engine adds)."""
    return dict(inputs)


RULES: dict[str, Rule] = {}
PREFIX_RULES: dict[str, Rule] = {}
CALL_RULES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def rule(*types: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        for t in types:
            RULES[t] = fn
        return fn

    return register


# --- Kubernetes: the API server echoes the object and fills metadata -----------------------------


def _k8s(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    out = dict(inputs)
    meta = dict(out.get("metadata") or {})
    meta.setdefault("name", name)
    meta.setdefault("uid", digest("uid", name, length=32))
    out["metadata"] = meta
    return out


# Every `kubernetes:<group>/<version>:<Kind>` type behaves alike (the API server stores what it is
# given), so one rule covers the family; helm releases and the provider have their own below.
PREFIX_RULES["kubernetes:"] = _k8s


@rule("kubernetes:helm.sh/v3:Release")
def _helm_release(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    out = dict(inputs)
    out.setdefault("name", name)
    out["status"] = {
        "name": inputs.get("name", name),
        "namespace": inputs.get("namespace", "default"),
        "chart": inputs.get("chart"),
        "version": inputs.get("version"),
        "revision": 1,
        "status": "deployed",
    }
    return out


@rule(
    "pulumi:providers:kubernetes",
    "pulumi:providers:command",
    "pulumi:providers:aws",
    "pulumi:providers:gcp",
    "pulumi:providers:docker",
    "pulumi:providers:random",
    "pulumi:providers:tls",
)
def _provider(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return dict(inputs)


def _k8s_preview(inputs: dict[str, Any], outputs: dict[str, Any]) -> dict[str, Any]:
    # The provider's Check auto-names an object before the preview, so metadata.name is known;
    # what the API server assigns (uid, status) is not.
    if "metadata" not in outputs:  # a Helm release: no object of its own
        return _planned(inputs, outputs)
    out = {k: outputs[k] for k in inputs if k in outputs}
    out["metadata"] = {**dict(outputs.get("metadata") or {}), "uid": WIRE_UNKNOWN}
    return out


def _planned(inputs: dict[str, Any], outputs: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if k in inputs else WIRE_UNKNOWN) for k, v in outputs.items()}


# What a provider's preview of a create reports differs from the default (inputs known, every
# computed output unknown) only where the provider itself computes something during Check.
PREVIEW_PREFIX_RULES: dict[str, Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]] = {
    "kubernetes:": _k8s_preview,
}


def preview_outputs(
    type_: str, inputs: dict[str, Any], outputs: dict[str, Any], *, provider_config_unknown: bool = False
) -> dict[str, Any]:
    """The outputs a first `pulumi preview` reports for a resource being created.

    As the engine does (pkg/resource/plugin/provider_plugin.go, Create with preview=true): a
    provider whose own configuration is not yet known answers nothing, so every output is unknown;
    one without preview support (every dynamic provider) answers its inputs; one with preview
    support answers its planned state, the inputs with each computed output unknown. `outputs`
    is what the update's mock rule reports; its keys that are not inputs are the computed ones.
    """
    if provider_config_unknown:
        return {}
    if type_.startswith("pulumi-python:dynamic"):
        return dict(inputs)
    special = next((fn for p, fn in PREVIEW_PREFIX_RULES.items() if type_.startswith(p)), _planned)
    return special(inputs, outputs)


class Mocks(_PulumiMocks):
    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        if not args.custom:
            return "", {}  # component resources have no provider and no outputs of their own
        fn = RULES.get(args.typ)
        if fn is None:
            fn = next((r for p, r in PREFIX_RULES.items() if args.typ.startswith(p)), None)
        if fn is None:
            raise MissingMockRuleError(
                f"no mock rule for resource type {args.typ!r} ({args.name}); add one to migrate/mocks.py"
            )
        outputs = fn(args.name, dict(args.inputs))
        return args.resource_id or f"{args.name}-{digest(args.typ, args.name, length=8)}", outputs

    def call(self, args: MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        fn = CALL_RULES.get(args.token)
        if fn is None:
            raise MissingMockRuleError(f"no mock rule for function {args.token!r}; add one to migrate/mocks.py")
        return fn(dict(args.args)), None


# --- K3s and NVIDIA (components/cluster/k3s.py, components/cluster/nvidia.py) -------------------------------------
# Remote commands echo their inputs and add stdout/stderr as the provider does. What a command
# prints depends on the script it runs: the first rule in COMMAND_STDOUT whose marker occurs in
# `create` decides; other areas may append their own (marker, fn(name, inputs) -> stdout).

MOCK_KUBECONFIG_CA = "TU9DSy1DQS1OT1QtQS1SRUFMLUNFUlRJRklDQVRF"  # base64("MOCK-CA-NOT-A-REAL-CERTIFICATE")


def _mock_kubeconfig(name: str, inputs: dict[str, Any]) -> str:
    # What K3s writes to /etc/rancher/k3s/k3s.yaml, with made-up credentials.
    return (
        "apiVersion: v1\n"
        "clusters:\n"
        "- cluster:\n"
        f"    certificate-authority-data: {MOCK_KUBECONFIG_CA}\n"
        "    server: https://127.0.0.1:6443\n"
        "  name: default\n"
        "contexts:\n"
        "- context:\n"
        "    cluster: default\n"
        "    user: default\n"
        "  name: default\n"
        "current-context: default\n"
        "kind: Config\n"
        "preferences: {}\n"
        "users:\n"
        "- name: default\n"
        "  user:\n"
        f"    client-certificate-data: {digest('cert', name, length=32)}\n"
        f"    client-key-data: {digest('key', name, length=32)}\n"
    )


def _mock_k3s_install(name: str, inputs: dict[str, Any]) -> str:
    create = str(inputs.get("create", ""))
    version = next((p.split("=", 1)[1] for p in create.split() if p.startswith("INSTALL_K3S_VERSION=")), "?")
    role = next((p.split("=", 1)[1] for p in create.split() if p.startswith("ROLE=")), "?")
    node = next((p.split("=", 1)[1] for p in create.split() if p.startswith("NODE_NAME=")), "?")
    return f"k3s-install: done: K3s {version} {role} {node} (installed)\n"


COMMAND_STDOUT: list[tuple[str, Callable[[str, dict[str, Any]], str]]] = [
    ("k3s-admin.sh kubeconfig", _mock_kubeconfig),
    ("k3s-install.sh", _mock_k3s_install),
    ("nvidia-toolkit.sh", lambda name, inputs: "nvidia-toolkit: driver OK: NVIDIA A10, 570.124.06\n"),
]


@rule("command:remote:Command")
def _command(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    create = str(inputs.get("create", ""))
    stdout = next((fn(name, inputs) for marker, fn in COMMAND_STDOUT if marker in create), "")
    return {**inputs, "stdout": stdout, "stderr": ""}


@rule("command:remote:CopyToRemote")
def _copy_to_remote(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return dict(inputs)


@rule("random:index/randomPassword:RandomPassword")
def _random_password(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    length = int(inputs.get("length", 16))
    # Deterministic and obviously fake; long enough for the requested length.
    result = (digest("password", name, length=64) * 2)[:length]
    return {**inputs, "result": result, "bcryptHash": f"$2a$10${digest('bcrypt', name, length=53)}"}


# --- local llama servers and router (components/llm/llama.py, components/llm/router.py) ----------------
# Docker on the workstation over SSH. The daemon reports content-addressed ids; the mocks derive
# stable fake ones from the resource name so two recordings are identical.


@rule("docker:index/remoteImage:RemoteImage")
def _docker_remote_image(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    image_id = f"sha256:{digest('image', name, length=64)}"
    repo_digest = str(inputs.get("name", "")).split("@", 1)
    return {**inputs, "imageId": image_id, "repoDigest": repo_digest[1] if len(repo_digest) == 2 else image_id}


@rule("docker:index/volume:Volume")
def _docker_volume(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    volume = str(inputs.get("name") or name)
    return {**inputs, "name": volume, "driver": "local", "mountpoint": f"/var/lib/docker/volumes/{volume}/_data"}


@rule("docker:index/container:Container")
def _docker_container(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return {
        **inputs,
        "hostname": digest("container", name, length=12),
        "exitCode": None,
        "networkDatas": [{"ipAddress": fake_ip("container", name, net="192.0.2"), "networkName": "bridge"}],
    }


# --- backups and the legacy estate (components/migration/backups.py, fly.py, legacy.py) ---------------------
# The bucket family echoes its inputs as the AWS/GCP providers do; dynamic resources report what
# their providers would after a clean run (backups verified, machines stopped, apps destroyed).


def _sha(*parts: str) -> str:
    return digest(*parts, length=64)


@rule(
    "aws:s3/bucketVersioning:BucketVersioning",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
)
def _s3_bucket_setting(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return dict(inputs)


@rule("aws:s3/bucket:Bucket")
def _s3_bucket(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    bucket = str(inputs.get("bucket") or f"{name}-{digest('bucket', name, length=7)}")
    return {
        **inputs,
        "bucket": bucket,
        "arn": f"arn:aws:s3:::{bucket}",
        "bucketDomainName": f"{bucket}.s3.amazonaws.com",
        "region": inputs.get("region", "us-east-1"),
    }


@rule("gcp:storage/bucket:Bucket")
def _gcs_bucket(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    bucket = str(inputs.get("name") or name)
    return {
        **inputs,
        "name": bucket,
        "url": f"gs://{bucket}",
        "selfLink": f"https://www.googleapis.com/storage/v1/b/{bucket}",
    }


@rule("gcp:compute/snapshot:Snapshot")
def _gcp_snapshot(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    project, snap = inputs.get("project", "project"), inputs.get("name", name)
    return {
        **inputs,
        "selfLink": f"https://www.googleapis.com/compute/v1/projects/{project}/global/snapshots/{snap}",
        "snapshotId": int(digest("snapshot", name, length=12), 16),
        "storageBytes": 21474836480,
        "diskSizeGb": 20,
    }


if "gcp:compute/instance:Instance" not in RULES:

    @rule("gcp:compute/instance:Instance")
    def _gcp_instance(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        project, zone, vm = inputs.get("project", "project"), inputs.get("zone", "zone"), inputs.get("name", name)
        status = "TERMINATED" if inputs.get("desiredStatus") == "TERMINATED" else "RUNNING"
        nics = [
            {
                **nic,
                "networkIp": f"10.128.0.{int(digest('nic', name, length=2), 16) % 200 + 2}",
                "accessConfigs": [{"natIp": fake_ip("gcp", name, net="203.0.113")}],
            }
            for nic in inputs.get("networkInterfaces") or [{}]
        ]
        return {
            **inputs,
            "networkInterfaces": nics,
            "selfLink": f"https://www.googleapis.com/compute/v1/projects/{project}/zones/{zone}/instances/{vm}",
            "instanceId": str(int(digest("instance", name, length=12), 16)),
            "currentStatus": status,
        }


def _fly_machines(app: str) -> list[dict[str, Any]]:
    return [
        {"id": digest("machine", app, str(i), length=14), "name": f"{app}-{i}", "state": "started", "region": "iad"}
        for i in range(2)
    ]


def _fly_volume(app: str) -> dict[str, Any]:
    return {
        "id": f"vol_{digest('volume', app, length=16)}",
        "name": "data",
        "region": "iad",
        "size_gb": 10,
        "snapshot_retention": 5,
    }


@rule("pulumi-python:dynamic/fly:FlyApp")
def _fly_app(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    app = str(inputs.get("app"))
    return {
        **inputs,
        "exists": True,
        "app_id": digest("app", app, length=14),
        "status": "deployed",
        "machines": _fly_machines(app),
        "volumes": [_fly_volume(app)],
    }


@rule("pulumi-python:dynamic/fly:FlyAppExport")
def _fly_app_export(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    app = str(inputs.get("app"))
    volume = _fly_volume(app)
    # The provider's keys carry the second and 48 random bits of the attempt (components/migration/fly.py).
    prefix = f"{inputs.get('prefix', 'fly')}/{app}/20250101T000000Z-{digest('attempt', app, length=12)}"
    manifest = {"key": f"{prefix}/manifest.json", "size": 2048, "sha256": _sha("manifest", app)}
    data = {"key": f"{prefix}/{volume['id']}.tar.gz", "size": 104857600, "sha256": _sha("volume", app)}
    return {
        **inputs,
        "manifest_key": manifest["key"],
        "volumes": [
            {
                **volume,
                "snapshot_id": f"vs_{digest('snap', app, length=16)}",
                "original_retention": 5,
                "retention": inputs.get("retention_days", 60),
                "object": data,
            }
        ],
        "objects": [manifest, data],
    }


@rule("pulumi-python:dynamic/backups:BackupVerification")
def _backup_verification(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return {**inputs, "verified": True, "problems": []}


@rule("pulumi-python:dynamic/fly:FlyFreeze")
def _fly_freeze(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    machines = _fly_machines(str(inputs.get("app")))
    return {
        **inputs,
        "was_running": [m["id"] for m in machines],
        "machine_states": {m["id"]: "stopped" for m in machines},
    }


@rule("pulumi-python:dynamic/fly:FlyDestroy")
def _fly_destroy(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    app = str(inputs.get("app"))
    return {
        **inputs,
        "released_ips": [fake_ip("fly", app, net="203.0.113")],
        "destroyed_machines": [m["id"] for m in _fly_machines(app)],
        "deleted_volumes": [_fly_volume(app)["id"]],
        "already_gone": False,
    }


def _mock_compose_backup(name: str, inputs: dict[str, Any]) -> str:
    # What compose-backup.sh prints last: the record of the dump it uploaded.
    words = str(inputs.get("create", "")).split()
    flag = {words[i]: words[i + 1] for i in range(len(words) - 1) if words[i].startswith("--")}
    service, prefix = flag.get("--service", "?"), flag.get("--prefix", "compose")
    ext = {"qdrant": "snapshot", "redis": "rdb", "postgres": "dump"}.get(service, "bin")
    key = f"{prefix}/{service}/20250101T000000Z-{digest('attempt', service, length=12)}.{ext}"
    return (
        f'{{"service":"{service}","key":"{key}","size":{int(digest("size", service, length=6), 16)},'
        f'"sha256":"{_sha("dump", service)}"}}\n'
    )


COMMAND_STDOUT.append(("compose-backup", _mock_compose_backup))


# --- GPU hosts (components/hosts/gpu_host.py, host_access.py, cluster_peers.py, lambda_cloud.py) -------
# Keys are made-up but well-formed (an ED25519 public key in SSH wire format), so code that parses
# them behaves as it would with real ones. Private keys and API keys come back marked secret, as
# the tls provider and the engine mark them.

_SECRET_WIRE = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270"}


def _secret_value(value: Any) -> dict[str, Any]:
    return {**_SECRET_WIRE, "value": value}


def _mock_ed25519(name: str) -> tuple[str, str]:
    """(public_key_openssh, private_key_openssh) of a fake ED25519 key named `name`."""
    raw = bytes.fromhex(digest("ed25519", name, length=64))
    kind = b"ssh-ed25519"
    wire = struct.pack(">I", len(kind)) + kind + struct.pack(">I", len(raw)) + raw
    public = f"ssh-ed25519 {base64.b64encode(wire).decode()}\n"
    body = base64.b64encode(b"openssh-key-v1\0" + wire + bytes.fromhex(digest("private", name, length=64))).decode()
    lines = "\n".join(body[i : i + 70] for i in range(0, len(body), 70))
    private = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{lines}\n-----END OPENSSH PRIVATE KEY-----\n"
    return public, private


@rule("tls:index/privateKey:PrivateKey")
def _tls_private_key(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    public, private = _mock_ed25519(name)
    fingerprint = digest("fingerprint", name, length=43)
    pem = private.replace("OPENSSH PRIVATE KEY", "PRIVATE KEY")
    return {
        **inputs,
        "publicKeyOpenssh": public,
        "publicKeyPem": f"-----BEGIN PUBLIC KEY-----\n{digest('pem', name, length=60)}\n-----END PUBLIC KEY-----\n",
        "publicKeyFingerprintSha256": f"SHA256:{fingerprint}",
        "publicKeyFingerprintMd5": ":".join(digest("md5", name, length=32)[i : i + 2] for i in range(0, 32, 2)),
        "privateKeyOpenssh": _secret_value(private),
        "privateKeyPem": _secret_value(pem),
        "privateKeyPemPkcs8": _secret_value(pem),
    }


def _lambda_common(inputs: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in inputs.items() if k not in ("user_data",)}
    if "api_key" in out:
        out["api_key"] = _secret_value(out["api_key"])
    return out


@rule("pulumi-python:dynamic/lambda_cloud:LambdaSshKey")
def _lambda_ssh_key(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return {**_lambda_common(inputs), "key_id": digest("lambda-ssh-key", name, length=32)}


@rule("pulumi-python:dynamic/lambda_cloud:LambdaFirewallRuleset")
def _lambda_ruleset(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return {**_lambda_common(inputs), "ruleset_id": digest("lambda-ruleset", name, length=32)}


@rule("pulumi-python:dynamic/lambda_cloud:LambdaFirewallRulesetRules")
def _lambda_ruleset_rules(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return _lambda_common(inputs)


@rule("pulumi-python:dynamic/lambda_cloud:LambdaInstance")
def _lambda_instance(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    first = (inputs.get("candidates") or [{}])[0]
    itype = str(first.get("instance_type", ""))
    gpu = itype.split("_", 2)[-1].upper() if itype else ""
    return {
        **_lambda_common(inputs),
        "user_data_sha256": digest("user-data", name, length=64),
        "spec": digest("spec", name, length=16),
        "instance_id": digest("lambda-instance", name, length=32),
        "region": first.get("region"),
        "instance_type": itype,
        "ip": fake_ip("lambda", name, net="198.51.100"),
        "private_ip": f"10.0.2.{int(digest('private', name, length=2), 16) % 200 + 20}",
        "status": "active",
        "gpu_description": gpu,
        "capacity_skipped": [],
    }


if "gcp:compute/firewall:Firewall" not in RULES:

    @rule("gcp:compute/firewall:Firewall")
    def _gcp_firewall(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        project, fw = inputs.get("project", "project"), inputs.get("name", name)
        return {
            **inputs,
            "name": fw,
            "selfLink": f"https://www.googleapis.com/compute/v1/projects/{project}/global/firewalls/{fw}",
            "creationTimestamp": "2025-01-01T00:00:00.000-08:00",
        }
