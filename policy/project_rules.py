"""Checks specific to this migration: K3s pins, SSH host keys, secrets, stateful data, backups first.

Resource checks take ResourceValidationArgs; stack checks take StackValidationArgs, whose
resources carry their dependencies, so a rule can follow the graph from a destructive step back
to the backup verification it must wait for.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import pulumi
from k8s_objects import manifests
from policy_support import (
    SECRET_MARKER,
    Report,
    config,
    dynamic_name,
    explain,
    get,
    is_secret,
    retain_on_delete,
    secret_paths,
    walk,
)
from workload_rules import DEFAULT_SECRET_WORDS, secret_like_name

COMMAND_TYPES = frozenset({"command:remote:Command", "command:local:Command"})
REMOTE_TYPES = frozenset({"command:remote:Command", "command:remote:CopyToRemote", "command:remote:CopyFile"})
STACK_TYPE = "pulumi:pulumi:Stack"


def _script_texts(props: Mapping[str, Any]) -> list[tuple[str, str]]:
    out = []
    for key in ("create", "update", "delete", "stdin"):
        value = get(props, key)
        if isinstance(value, str):
            out.append((key, value))
    return out


def _environment(props: Mapping[str, Any]) -> dict[str, Any]:
    env = get(props, "environment", default={})
    return {str(k): env[k] for k in env} if isinstance(env, Mapping) else {}


# --- K3s version -------------------------------------------------------------------------------------------

K3S_RELEASE = re.compile(r"^v[0-9]+\.[0-9]+\.[0-9]+\+k3s[0-9]+$")
# Running the upstream installer, any INSTALL_K3S_* setting, or executing a k3s-install script
# (writing the script to disk is not running it).
_INSTALLS = re.compile(r"get\.k3s\.io|INSTALL_K3S_|\b(ba)?sh\s+\S*k3s-install")
_ASSIGNED_VERSION = re.compile(r"INSTALL_K3S_VERSION=([\"']?)([^\s\"';]*)\1")
_K3S_WHY = (
    "a channel or an unpinned install resolves to whatever K3s released last, so nodes joined on "
    "different days run different Kubernetes versions and a rebuild is not the cluster that was tested"
)
_K3S_FIX = "pass INSTALL_K3S_VERSION=<components.versions.K3S_VERSION> (vX.Y.Z+k3sN) and no INSTALL_K3S_CHANNEL"


def _strip_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def check_k3s_version(args: Any, report: Report) -> None:
    rtype = args.resource_type
    if rtype == "kubernetes:upgrade.cattle.io/v1:Plan":
        if get(args.props, "spec", "channel") is not None:
            report(explain(f"system-upgrade Plan {args.name} follows a channel", _K3S_WHY, "set spec.version instead"))
        version = get(args.props, "spec", "version")
        if not (isinstance(version, str) and K3S_RELEASE.match(version)):
            report(explain(f"system-upgrade Plan {args.name} has version {version!r}", _K3S_WHY, _K3S_FIX))
        return
    if rtype in COMMAND_TYPES:
        texts = _script_texts(args.props)
        env = _environment(args.props)
    elif dynamic_name(rtype):
        texts = [(p, v) for p, v in walk(args.props) if isinstance(v, str)]
        env = {}
    else:
        return
    where = f"{rtype.rsplit(':', 1)[-1]} {args.name}"
    # Comments may name the channel variable to warn against it; only code counts.
    texts = [(key, _strip_comments(text)) for key, text in texts]
    if any("INSTALL_K3S_CHANNEL" in text for _, text in texts) or "INSTALL_K3S_CHANNEL" in env:
        report(explain(f"{where} sets INSTALL_K3S_CHANNEL", _K3S_WHY, _K3S_FIX))
    # What runs is create/update (with the environment); stdin may only ship a script that reads
    # the version from the environment of the command that runs it.
    running = [text for key, text in texts if key != "stdin"]
    installs = any(_INSTALLS.search(text) for text in running) or any(k.startswith("INSTALL_K3S_") for k in env)
    if not installs:
        return
    versions = [(f"environment.{k}", v) for k, v in env.items() if k.endswith("K3S_VERSION")]
    for key, text in texts:
        if key == "stdin":
            continue
        for match in _ASSIGNED_VERSION.finditer(text):
            if not match.group(2).startswith("$"):
                versions.append((key, match.group(2)))
    if not versions:
        report(explain(f"{where} installs K3s without a pinned INSTALL_K3S_VERSION", _K3S_WHY, _K3S_FIX))
    for key, value in versions:
        if not (isinstance(value, str) and K3S_RELEASE.match(value)):
            report(explain(f"{where}: {key} is {value!r}, not a release like v1.35.5+k3s1", _K3S_WHY, _K3S_FIX))


# --- SSH host keys -----------------------------------------------------------------------------------------

_HOSTKEY_WHY = (
    "without a pinned host key the first connection trusts whoever answers on that address, so a "
    "spoofed host receives the K3s join token and the kubeconfig"
)
_HOSTKEY_FIX = "build the connection with SshTarget.connection() (components/handles.py), which always sets host_key"


DOCKER_PROVIDER = "pulumi:providers:docker"
_HOST_KEY_TEXT = re.compile(r"\b(ssh-ed25519|ecdsa-sha2-nistp\d+|ssh-rsa) [A-Za-z0-9+/]{40,}")
_DOCKER_SSH_FIX = (
    "pass ssh_opts with StrictHostKeyChecking=yes and KnownHostsCommand=/bin/echo <host> <host key> "
    "(components/llm/llama.py does), so the system ssh that Docker runs checks the pinned key"
)


def _ssh_options(value: Any) -> list[str] | None:
    """The -o options of a Docker provider's sshOpts (a list, or the JSON text providers get)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, list):
        return None
    return [str(v) for v in value if isinstance(v, str) and "=" in v]


def _check_docker_ssh(args: Any, report: Report) -> None:
    host = get(args.props, "host")
    if not (isinstance(host, str) and host.startswith("ssh://")):
        return  # a local socket or TCP daemon: no SSH involved
    where = f"Docker provider {args.name} ({host})"
    raw = get(args.props, "sshOpts")
    if raw == SECRET_MARKER:
        report(
            explain(
                f"{where}: sshOpts is one opaque secret; its host key checking cannot be seen",
                _HOSTKEY_WHY,
                _DOCKER_SSH_FIX,
            )
        )
        return
    options = _ssh_options(raw) or []
    if "StrictHostKeyChecking=yes" not in options:
        report(explain(f"{where}: ssh does not run with StrictHostKeyChecking=yes", _HOSTKEY_WHY, _DOCKER_SSH_FIX))
    known = [o for o in options if o.startswith("KnownHostsCommand=")]
    if not any(_HOST_KEY_TEXT.search(o) for o in known):
        report(explain(f"{where}: no KnownHostsCommand hands ssh the pinned host key", _HOSTKEY_WHY, _DOCKER_SSH_FIX))


def check_host_key(args: Any, report: Report) -> None:
    if args.resource_type == DOCKER_PROVIDER:
        _check_docker_ssh(args, report)
        return
    if args.resource_type not in REMOTE_TYPES:
        return
    where = f"{args.resource_type.rsplit(':', 1)[-1]} {args.name}"
    connection = get(args.props, "connection")
    if connection == SECRET_MARKER:
        report(
            explain(
                f"{where}: the connection is recorded as one opaque secret, so its hostKey cannot be checked",
                _HOSTKEY_WHY,
                "record secret objects with their keys visible (migrate/harness.py keeps the shape and "
                "hides the leaves), then re-run the check",
            )
        )
        return
    if not isinstance(connection, Mapping):
        report(explain(f"{where} has no connection", _HOSTKEY_WHY, _HOSTKEY_FIX))
        return
    hops = [("connection", connection)]
    proxy = get(connection, "proxy")
    if isinstance(proxy, Mapping):
        hops.append(("connection.proxy", proxy))
    for label, hop in hops:
        key = get(hop, "hostKey")
        if not (isinstance(key, str) and key.strip()):
            report(explain(f"{where}: {label}.hostKey is not set", _HOSTKEY_WHY, _HOSTKEY_FIX))


# --- secrets -----------------------------------------------------------------------------------------------

SECRET_LAST_WORDS = frozenset({"token", "password", "passwd", "passphrase", "secret", "kubeconfig", "credentials"})
# A bare "key" is an S3 object key, a toleration key, a label key; these qualifiers make it a credential.
SECRET_KEY_QUALIFIERS = frozenset({"api", "private", "secret", "access", "ssh", "encryption", "signing", "license"})
# hostKey and publicKey are public by design; existingSecret (a Helm convention) names a Secret.
NOT_SECRET_WORDS = frozenset({"host", "public", "existing"})
# A script whose text names one of these prints a credential to stdout. A word only counts on its
# own: K3s's config file sets `write-kubeconfig-mode`, which reads nothing (under the engine a
# policy sees that file's real text where `migrate check` sees "[secret]").
SECRET_SOURCES = re.compile(
    r"k3s\.yaml|node-token|/server/token|(?<![\w-])kubeconfig(?![\w-])|(?<![\w-])join-token(?![\w-])"
)
_SECRET_WHY = (
    "a credential that is not a Pulumi secret is stored in plain text in the state file and printed in "
    "`pulumi preview`, CI logs and `pulumi stack output`"
)


def _words(key: str) -> list[str]:
    return [w.lower() for w in re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", key)]


def secret_like_key(key: str) -> bool:
    """`apiKey`, `api_key`, `joinToken`, `kubeconfig`, `secretAccessKey` yes; `hostKey`,
    `adminPublicKey`, `key` (an object or toleration key), `tokenRef`, `existingSecret` no."""
    words = _words(key)
    if not words or NOT_SECRET_WORDS & set(words):
        return False
    if words[-1] == "key":
        return len(words) > 1 and words[-2] in SECRET_KEY_QUALIFIERS
    return words[-1] in SECRET_LAST_WORDS


def _leaf_key(path: str) -> str:
    return re.sub(r"\[[0-9]+\]$", "", path).rsplit(".", 1)[-1]


def _unsecret_leaves(props: Mapping[str, Any], paths: Sequence[str], root: str = "") -> Iterator[str]:
    for path, value in walk(props, root):
        if not path or not isinstance(value, str) or value in ("", SECRET_MARKER):
            continue
        if secret_like_key(_leaf_key(path)) and not is_secret(path, paths):
            yield path


def check_secrets(args: Any, report: Report) -> None:
    rtype = args.resource_type
    paths = secret_paths(args)
    where = f"{rtype.rsplit(':', 1)[-1]} {args.name}"
    if rtype in COMMAND_TYPES:
        reads = [m.group(0) for _, text in _script_texts(args.props) for m in [SECRET_SOURCES.search(text)] if m]
        if reads:
            if "stdout" not in set(args.opts.additional_secret_outputs or []):
                report(
                    explain(
                        f"{where} reads {reads[0]} but stdout is not a secret output",
                        _SECRET_WHY,
                        'add ResourceOptions(additional_secret_outputs=["stdout"])',
                    )
                )
            logging = get(args.props, "logging", default="stdoutAndStderr")
            if logging not in ("stderr", "none"):
                report(
                    explain(
                        f"{where} reads {reads[0]} with logging {logging!r}",
                        _SECRET_WHY + "; pulumi-command logs stdout even when the output is secret",
                        'set logging="stderr" (or "none")',
                    )
                )
        if paths is not None:
            for name in _environment(args.props):
                if secret_like_name(name, DEFAULT_SECRET_WORDS) and not is_secret(f"environment.{name}", paths):
                    report(
                        explain(
                            f"{where}: environment {name} is not a secret",
                            _SECRET_WHY,
                            "pass it as a pulumi.Output marked secret (config.require_secret)",
                        )
                    )
    if paths is None:
        return  # under the engine the SDK has already unwrapped secrets; nothing more is visible
    if rtype == "pulumi:providers:kubernetes":
        if get(args.props, "kubeconfig") is not None and not is_secret("kubeconfig", paths):
            report(
                explain(f"{where}: kubeconfig is not a secret", _SECRET_WHY, "pass the kubeconfig as a secret Output")
            )
        return
    if rtype == "kubernetes:core/v1:Secret":
        for key in ("data", "stringData"):
            leaves = [p for p, v in walk(get(args.props, key, default={}), key) if isinstance(v, str)]
            if any(not is_secret(p, paths) for p in leaves):
                report(
                    explain(
                        f"{where}: {key} is given as plain values",
                        _SECRET_WHY,
                        "build the Secret's data from secret Outputs (config.require_secret, random/tls outputs)",
                    )
                )
        return
    if rtype == "docker:index/container:Container":
        for i, entry in enumerate(get(args.props, "envs", default=[])):
            name = str(entry).split("=", 1)[0]
            if secret_like_name(name, DEFAULT_SECRET_WORDS) and not is_secret(f"envs[{i}]", paths):
                report(
                    explain(f"{where}: env {name} is not a secret", _SECRET_WHY, "build the entry from a secret Output")
                )
        return
    if rtype in ("kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart"):
        for path in _unsecret_leaves(get(args.props, "values", default={}), paths, "values"):
            report(
                explain(
                    f"Helm release {args.name}: {path} is a plain value",
                    _SECRET_WHY,
                    "reference an existing Kubernetes Secret from the chart values, or pass a secret Output",
                )
            )
        return
    if rtype in COMMAND_TYPES or rtype.startswith("pulumi:providers:") or dynamic_name(rtype):
        for path in _unsecret_leaves(args.props, paths):
            if path.startswith("environment."):
                continue  # reported above with the env-name rule
            report(explain(f"{where}: input {path} is not a secret", _SECRET_WHY, "pass it as a secret Output"))


def check_secret_stack_outputs(args: Any, report: Report) -> None:
    for res in args.resources:
        if res.resource_type != STACK_TYPE:
            continue
        paths = getattr(res, "secret_paths", None)
        if paths is None:
            return  # the engine does not tell a Python policy which outputs are secret
        for name in res.props:
            if secret_like_key(str(name)) and not is_secret(str(name), paths):
                report(
                    explain(
                        f"stack output {name!r} is not a secret",
                        _SECRET_WHY,
                        "export it with pulumi.Output.secret(...) (or from an Output that is already secret)",
                    ),
                    res.urn,
                )


# --- stateful resources in prod -------------------------------------------------------------------------

DEFAULT_STATEFUL_TYPES = (
    "kubernetes:apps/v1:StatefulSet",
    "kubernetes:core/v1:PersistentVolumeClaim",
    "kubernetes:core/v1:PersistentVolume",
    "aws:s3/bucket:Bucket",
    "aws:s3/bucketV2:BucketV2",
    "gcp:storage/bucket:Bucket",
    "gcp:compute/disk:Disk",
    "docker:index/volume:Volume",  # the workstation's model volume
)
DEFAULT_STATEFUL_CHARTS = (
    "postgresql",
    "postgres",
    "redis",
    "valkey",
    "qdrant",
    "mysql",
    "mariadb",
    "mongodb",
    "minio",
)
DEFAULT_STATEFUL_DYNAMIC = r"(Bucket|Volume|Database|Disk)$"


def _environment_of(args: Any) -> str:
    """dev or prod: policy config, else the stack's `environment` output, else the stack name."""
    configured = str(config(args, "environment", "auto"))
    if configured != "auto":
        return configured
    stack = ""
    for res in args.resources:
        if res.resource_type == STACK_TYPE:
            env = get(res.props, "environment")
            if isinstance(env, str) and env:
                return env
            stack = str(res.name or "")
    if not stack:
        try:
            stack = pulumi.get_stack()
        except Exception:  # no runtime settings: the name is unknown, which counts as prod below
            stack = ""
    # The root resource is named <project>-<stack>; the project name itself has dashes.
    stack = stack.removeprefix("gpu-platform-")
    if stack.startswith("prod"):
        return "prod"
    if stack.startswith("dev"):
        return "dev"
    return "unknown"


def is_component(res: Any) -> bool:
    custom = getattr(res, "custom", None)
    if custom is not None:
        return not custom
    # Under the engine every custom resource has a provider (the default one if none was given).
    return res.provider is None


def _stateful_reason(res: Any, types: set[str], charts: set[str], dynamic_pattern: str) -> str | None:
    rtype = res.resource_type
    if is_component(res):
        return None
    if rtype in types:
        return rtype.rsplit(":", 1)[-1]
    if rtype in ("kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart"):
        chart = str(get(res.props, "chart", default="")).rstrip("/").rsplit("/", 1)[-1]
        return f"Helm release of the {chart} chart" if chart in charts else None
    name = dynamic_name(rtype)
    if name and re.search(dynamic_pattern, name):
        return name
    kinds = {m.kind for m in manifests(rtype, res.props)} & {"StatefulSet", "PersistentVolumeClaim", "PersistentVolume"}
    if rtype.startswith("kubernetes:yaml") and kinds:
        return f"ConfigGroup with {', '.join(sorted(kinds))}"
    return None


def check_stateful_protected(args: Any, report: Report) -> None:
    env = _environment_of(args)
    if env == "dev":
        return
    types = set(config(args, "statefulTypes", DEFAULT_STATEFUL_TYPES))
    charts = set(config(args, "statefulCharts", DEFAULT_STATEFUL_CHARTS))
    pattern = str(config(args, "statefulDynamicPattern", DEFAULT_STATEFUL_DYNAMIC))
    why = (
        "in prod a delete or replace of this resource loses data: `protect` makes Pulumi refuse the "
        "delete, `retain_on_delete` leaves the data in place if the resource is ever removed from the program"
    )
    for res in args.resources:
        reason = _stateful_reason(res, types, charts, pattern)
        if reason is None:
            continue
        missing = []
        if not res.opts.protect:
            missing.append("protect")
        if retain_on_delete(res.opts) is False:
            missing.append("retain_on_delete")
        if missing:
            env_note = "" if env == "prod" else f" (environment {env!r} is treated as prod)"
            report(
                explain(
                    f"{reason} {res.name} lacks {' and '.join(missing)}{env_note}",
                    why,
                    "set ResourceOptions(protect=True, retain_on_delete=True) with a comment saying why",
                ),
                res.urn,
            )


# --- destructive steps wait for verified backups --------------------------------------------------------

DEFAULT_VERIFICATION_PATTERN = r"(?i)verif"
DEFAULT_DESTRUCTIVE_WORDS = ("destroy", "decommission", "stop", "freeze", "retire", "restore", "teardown")
DESTRUCTIVE_STATES = frozenset({"stopped", "destroyed", "deleted", "retired", "terminated", "suspended"})
# A disk snapshot is the backup a retired VM keeps: the provider's create returns only once GCP
# reports it READY, and the VM is only stopped, its disks kept. Not a re-read checksum like the
# bucket objects; GCP checks its own snapshots.
DEFAULT_VERIFICATION_TYPES = ("gcp:compute/snapshot:Snapshot",)
DESTRUCTIVE_SCRIPT = re.compile(
    r"(fly(ctl)?\s+(apps?\s+destroy|machines?\s+(stop|destroy))"
    r"|docker\s+compose\s+(down|stop|rm)"
    r"|gcloud\s+compute\s+instances\s+(stop|delete))"
)


def _label(res: Any) -> str:
    return f"{res.resource_type.rsplit(':', 1)[-1]} {res.name}"


def _is_verification(res: Any, pattern: str, types: Sequence[str] = DEFAULT_VERIFICATION_TYPES) -> bool:
    if is_component(res):
        return False
    if res.resource_type in types:
        return True
    return bool(re.search(pattern, dynamic_name(res.resource_type) or "") or re.search(pattern, res.name))


def _destructive_reason(res: Any, words: Sequence[str]) -> str | None:
    if is_component(res) or res.resource_type == STACK_TYPE:
        return None
    rtype = res.resource_type
    for key in ("state", "desiredState", "desiredStatus"):
        value = get(res.props, key)
        if isinstance(value, str) and value.lower() in DESTRUCTIVE_STATES:
            return f"sets {key}={value}"
    if rtype == "kubernetes:batch/v1:Job":
        name = str(get(res.props, "metadata", "name", default=res.name))
        return "is a restore Job" if "restore" in name.lower() or "restore" in res.name.lower() else None
    if rtype in COMMAND_TYPES:
        for key, text in _script_texts(res.props):
            if key != "delete" and DESTRUCTIVE_SCRIPT.search(text):
                return f"runs `{DESTRUCTIVE_SCRIPT.search(text).group(0)}`"  # type: ignore[union-attr]
        return None
    name = dynamic_name(rtype)
    if name and (set(name_words(name)) | set(name_words(res.name))) & set(words):
        return "is a destructive step"
    return None


def name_words(text: str) -> list[str]:
    """`VmRetire` -> [vm, retire]; `fly-dashboard-stop` -> [fly, dashboard, stop]."""
    return [w.lower() for part in re.split(r"[^A-Za-z0-9]+", text) for w in _words(part)]


def dependency_closure(start: Any, resources: Iterable[Any]) -> dict[str, Any]:
    """Every resource `start` waits for, transitively: dependencies, property dependencies and the
    provider; depending on a component means waiting for everything under it."""
    by_urn = {r.urn: r for r in resources}
    children: dict[str, list[Any]] = {}
    for r in by_urn.values():
        if r.parent is not None:
            children.setdefault(r.parent.urn, []).append(r)

    def direct(r: Any) -> list[Any]:
        out = list(r.dependencies or [])
        for deps in (r.property_dependencies or {}).values():
            out.extend(deps)
        provider = getattr(r, "provider", None)
        if provider is not None and provider.urn in by_urn:
            out.append(by_urn[provider.urn])
        return out

    seen: dict[str, Any] = {}
    stack = direct(start)
    while stack:
        r = stack.pop()
        if r.urn in seen:
            continue
        seen[r.urn] = r
        stack.extend(direct(r))
        stack.extend(children.get(r.urn, []))
    return seen


def check_backup_before_destroy(args: Any, report: Report) -> None:
    verification = str(config(args, "verificationPattern", DEFAULT_VERIFICATION_PATTERN))
    destructive = [str(w).lower() for w in config(args, "destructiveWords", DEFAULT_DESTRUCTIVE_WORDS)]
    types = list(config(args, "verificationTypes", DEFAULT_VERIFICATION_TYPES))
    resources = list(args.resources)
    for res in resources:
        if _is_verification(res, verification, types):
            continue
        reason = _destructive_reason(res, destructive)
        if reason is None:
            continue
        waits = dependency_closure(res, resources)
        if not any(_is_verification(dep, verification, types) for dep in waits.values()):
            report(
                explain(
                    f"{_label(res)} {reason} but does not depend on a backup verification",
                    "stopping, destroying or overwriting data is only safe once a backup of it has been "
                    "read back and its checksum matched; without the dependency Pulumi may run this step "
                    "first or in parallel",
                    "add depends_on=[<VerifiedBackup>.resource] (components/handles.py) for the data this step "
                    "stops, destroys or restores",
                ),
                res.urn,
            )


# --- irreversible steps need their allow flag ------------------------------------------------------------

DEFAULT_ALLOW_FLAGS = ("allowDestroy", "allow_destroy", "allowIrreversible", "allow_irreversible")
IRREVERSIBLE_STATES = frozenset({"destroyed", "deleted"})
IRREVERSIBLE_WORDS = frozenset({"destroy", "decommission"})


def check_irreversible_allowed(args: Any, report: Report) -> None:
    flags = list(config(args, "allowFlags", DEFAULT_ALLOW_FLAGS))
    irreversible = None
    for key in ("state", "desiredState"):
        value = get(args.props, key)
        if isinstance(value, str) and value.lower() in IRREVERSIBLE_STATES:
            irreversible = f"{key}={value}"
    if get(args.props, "destroy") is True:
        irreversible = "destroy=true"
    if IRREVERSIBLE_WORDS & set(name_words(dynamic_name(args.resource_type))):
        irreversible = f"a {dynamic_name(args.resource_type)}"
    if args.resource_type in COMMAND_TYPES:
        for key, text in _script_texts(args.props):
            match = re.search(r"fly(ctl)?\s+apps?\s+destroy|gcloud\s+compute\s+instances\s+delete", text)
            if key != "delete" and match:
                irreversible = f"`{match.group(0)}`"
    if irreversible is None:
        return
    allowed = any(get(args.props, f) is True for f in flags) or any(
        str(_environment(args.props).get(f, "")).lower() == "true" for f in ("ALLOW_DESTROY", "ALLOW_IRREVERSIBLE")
    )
    if not allowed:
        report(
            explain(
                f"{args.resource_type.rsplit(':', 1)[-1]} {args.name} performs {irreversible} without an allow flag",
                "destroying a legacy app cannot be undone; the stack must name it in flyAllowDestroy after its owner "
                "signed off, and the step must carry that decision",
                "set the step's allow flag (allow_destroy=True) only for apps listed in gpu-platform:flyAllowDestroy",
            )
        )


# --- Gateway API routes attach to TLS listeners ------------------------------------------------------------


def check_route_listeners(args: Any, report: Report) -> None:
    gateways: dict[tuple[str, str], Mapping[str, Any]] = {}
    routes = []
    for res in args.resources:
        for m in manifests(res.resource_type, res.props):
            if m.api_version.startswith("gateway.networking.k8s.io/"):
                if m.kind == "Gateway":
                    gateways[(m.namespace or "", m.name)] = m.obj
                elif m.kind == "HTTPRoute":
                    routes.append((res, m))
    for res, route in routes:
        for ref in get(route.obj, "spec", "parentRefs", default=[]):
            key = (str(get(ref, "namespace", default=route.namespace or "")), str(get(ref, "name", default="")))
            gateway = gateways.get(key)
            section = get(ref, "sectionName")
            if gateway is None or section is None:
                continue  # a Gateway outside this stack; check_route_tls requires sectionName
            listener = next(
                (li for li in get(gateway, "spec", "listeners", default=[]) if get(li, "name") == section), None
            )
            protocol = get(listener, "protocol") if listener is not None else None
            if protocol not in ("HTTPS", "TLS"):
                report(
                    explain(
                        f"{route.label(res.name)} attaches to listener {section!r} of Gateway {key[1]}, "
                        f"which is {protocol or 'not defined'}",
                        _TLS_ROUTE_WHY,
                        "attach the route to the Gateway's HTTPS listener",
                    ),
                    res.urn,
                )


_TLS_ROUTE_WHY = "a route on a plain-HTTP listener serves logins, API keys and model traffic in clear text"
