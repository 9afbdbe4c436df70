"""Checks on Kubernetes objects: pod templates, Services, routes, namespaces, Helm releases.

Each `check_*` takes the SDK's ResourceValidationArgs and a report callback and reports one
message per problem. `policies.py` wraps them into policies with names, levels and config.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from k8s_objects import (
    CLUSTER_SCOPED,
    DEVICE_PLUGIN_DIR,
    RUN_TO_COMPLETION,
    Container,
    Manifest,
    all_containers,
    containers,
    image_repository,
    image_tag,
    manifests,
    path_within,
    pod_spec,
)
from policy_support import SECRET_MARKER, Report, config, explain, get, walk

HELM_TYPES = frozenset({"kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart"})
DOCKER_IMAGE_INPUTS = {"docker:index/remoteImage:RemoteImage": "name", "docker:index/container:Container": "image"}


# --- the named allowlist -------------------------------------------------------------------------


@dataclass(frozen=True)
class Allowance:
    """Exemptions a known system workload needs, matched on every container's image repository."""

    name: str
    images: tuple[str, ...]
    exempt_from: frozenset[str]
    why: str

    def covers_container(self, container: Container) -> bool:
        return image_repository(container.image) in self.images

    def covers_pod(self, spec: Mapping[str, Any]) -> bool:
        found = all_containers(spec)
        return bool(found) and all(self.covers_container(c) for c in found)


# The NVIDIA device plugin registers GPUs with the kubelet through a root-owned unix socket in
# /var/lib/kubelet/device-plugins, needs the nvidia runtime to load NVML, and must run on tainted
# GPU nodes without consuming a GPU itself (NVIDIA/k8s-device-plugin deployments/static manifest).
NVIDIA_DEVICE_PLUGIN = Allowance(
    name="nvidia-device-plugin",
    images=("nvcr.io/nvidia/k8s-device-plugin",),
    exempt_from=frozenset({"run-as-root", "capabilities", "nvidia-runtime", "gpu-toleration", "probes"}),
    why="the device plugin talks to the kubelet over a root-owned socket and to the GPU through NVML",
)
ALLOWLIST: tuple[Allowance, ...] = (NVIDIA_DEVICE_PLUGIN,)


def container_allowed(container: Container, exemption: str) -> bool:
    return any(a.covers_container(container) and exemption in a.exempt_from for a in ALLOWLIST)


def pod_allowed(spec: Mapping[str, Any], exemption: str) -> bool:
    return any(a.covers_pod(spec) and exemption in a.exempt_from for a in ALLOWLIST)


# --- iteration helpers -------------------------------------------------------------------------------


def _exempt(args: Any, manifest: Manifest) -> bool:
    return manifest.ident(args.name) in set(config(args, "exemptObjects", []))


def objects(args: Any) -> Iterator[Manifest]:
    for manifest in manifests(args.resource_type, args.props):
        if not _exempt(args, manifest):
            yield manifest


def workloads(args: Any) -> Iterator[tuple[Manifest, Mapping[str, Any]]]:
    for manifest in objects(args):
        spec = pod_spec(manifest)
        if spec is not None:
            yield manifest, spec


def _where(args: Any, manifest: Manifest, container: Container | None = None) -> str:
    text = manifest.label(args.name)
    if container is not None:
        text += f" {container.field[:-1] if container.field.endswith('s') else container.field} {container.name!r}"
    return text


# --- images ------------------------------------------------------------------------------------------

DEFAULT_MOVING_TAGS = ("latest", "stable", "main", "master", "edge", "nightly", "dev", "head", "canary")


def tag_problem(image: str, moving: Sequence[str], require_version: bool) -> str | None:
    if not image:
        return "has no image"
    if image.startswith("sha256:"):
        return None  # an image ID: content-addressed
    tag, digest = image_tag(image)
    if digest:
        return None
    if tag is None:
        return f"image {image!r} has no tag, so the runtime pulls ':latest'"
    if tag.lower() in {m.lower() for m in moving}:
        return f"image {image!r} uses the moving tag {tag!r}"
    if require_version and not re.search(r"[0-9]", tag):
        return f"image {image!r} has tag {tag!r}, which names no version (a moving tag)"
    return None


_IMAGE_WHY = (
    "a moving tag makes two nodes, or a restart tomorrow, run different code than the plan reviewed, "
    "and a rollback cannot return to the old image"
)
_IMAGE_FIX = "pin the image to a release tag or digest in components/catalog/versions.py and reference that constant"


def check_image_pinned(args: Any, report: Report) -> None:
    moving = config(args, "movingTags", DEFAULT_MOVING_TAGS)
    require_version = bool(config(args, "requireVersionInTag", True))
    for manifest, spec in workloads(args):
        for c in all_containers(spec):
            problem = tag_problem(c.image, moving, require_version)
            if problem:
                report(explain(f"{_where(args, manifest, c)}: {problem}", _IMAGE_WHY, _IMAGE_FIX))
    if args.resource_type in DOCKER_IMAGE_INPUTS:
        image = get(args.props, DOCKER_IMAGE_INPUTS[args.resource_type], default="")
        problem = tag_problem(image if isinstance(image, str) else "", moving, require_version)
        if problem:
            report(explain(f"{args.resource_type.rsplit(':', 1)[-1]} {args.name}: {problem}", _IMAGE_WHY, _IMAGE_FIX))
    if args.resource_type in HELM_TYPES:
        for path, value in walk(get(args.props, "values", default={}), "values"):
            bad = None
            if isinstance(value, Mapping) and isinstance(value.get("tag"), str):
                if value["tag"].lower() in {m.lower() for m in moving}:
                    bad = f"{path}.tag is the moving tag {value['tag']!r}"
            elif isinstance(value, str) and path.lower().endswith("image") and ":" in value:
                problem = tag_problem(value, moving, False)
                bad = f"{path}: {problem}" if problem else None
            if bad:
                report(explain(f"Helm release {args.name}: {bad}", _IMAGE_WHY, _IMAGE_FIX))


_DIGEST_WHY = (
    "a tag is a name the registry owner can point at other bytes (a rebuilt base image, a compromised "
    "account); a digest is the content itself, so what runs is what was reviewed"
)
_DIGEST_FIX = (
    "append the digest to the pin in components/catalog/versions.py (`make digests` resolves it), or, where it "
    "cannot be resolved yet, add the repository to versions.DIGEST_PENDING with the reason and to this "
    "policy's `digestPending` in policy/config.<stack>.json"
)


# The platform's own services (components/catalog/services.py labels their workloads so) run
# `<serviceImages.registry>/<name>:<tag>`, pinned per image in stack config, not in versions.py.
_OWN_DIGEST_FIX = (
    "this is one of the platform's own images: set its digest in the stack's "
    "`gpu-platform:serviceImages.digests` ({name: sha256:...}, what the tag resolved to when the release was cut)"
)


def _digest_fix(manifest: Manifest) -> str:
    labels = get(manifest.obj, "metadata", "labels", default={}) or {}
    own = isinstance(labels, Mapping) and labels.get("app.kubernetes.io/part-of") == "gpu-platform"
    return _OWN_DIGEST_FIX if own and labels.get("app.kubernetes.io/component") == "service" else _DIGEST_FIX


def digest_problem(image: str, pending: Sequence[str]) -> str | None:
    """Why `image` is not pinned by digest, or None (a missing tag is k8s-image-pinned's concern)."""
    if not image or image.startswith("sha256:") or image_tag(image)[1]:
        return None
    repository = image_repository(image)
    if any(repository == p or (p.endswith("/") and repository.startswith(p)) for p in pending):
        return None
    return f"image {image!r} is pinned by tag only, with no digest"


def check_image_digest(args: Any, report: Report) -> None:
    pending = [str(p) for p in config(args, "digestPending", [])]
    for manifest, spec in workloads(args):
        for c in all_containers(spec):
            problem = digest_problem(c.image, pending)
            if problem:
                report(explain(f"{_where(args, manifest, c)}: {problem}", _DIGEST_WHY, _digest_fix(manifest)))
    if args.resource_type in DOCKER_IMAGE_INPUTS:
        image = get(args.props, DOCKER_IMAGE_INPUTS[args.resource_type], default="")
        problem = digest_problem(image if isinstance(image, str) else "", pending)
        if problem:
            report(explain(f"{args.resource_type.rsplit(':', 1)[-1]} {args.name}: {problem}", _DIGEST_WHY, _DIGEST_FIX))
    if args.resource_type in HELM_TYPES:
        for path, value in walk(get(args.props, "values", default={}), "values"):
            if isinstance(value, str) and path.lower().endswith("image") and ":" in value:
                problem = digest_problem(value, pending)
                if problem:
                    report(explain(f"Helm release {args.name}: {path}: {problem}", _DIGEST_WHY, _DIGEST_FIX))


# --- resources and probes ------------------------------------------------------------------------------


def check_resources(args: Any, report: Report) -> None:
    require_cpu_limit = bool(config(args, "requireCpuLimit", False))
    cpu_exempt = set(config(args, "cpuLimitExempt", []))
    for manifest, spec in workloads(args):
        needs_cpu_limit = require_cpu_limit and manifest.ident(args.name) not in cpu_exempt
        for c in containers(spec):
            requests = get(c.spec, "resources", "requests", default={})
            limits = get(c.spec, "resources", "limits", default={})
            missing = []
            # The API server copies a limit into an unset request, so a limit alone also sets it.
            for key in ("cpu", "memory"):
                if get(requests, key) is None and get(limits, key) is None:
                    missing.append(f"requests.{key}")
            if get(limits, "memory") is None:
                missing.append("limits.memory")
            if needs_cpu_limit and get(limits, "cpu") is None:
                missing.append("limits.cpu")
            if missing:
                report(
                    explain(
                        f"{_where(args, manifest, c)} sets no {', '.join(missing)}",
                        "without requests the scheduler packs GPU nodes blindly, and without a memory limit "
                        "one leaking container can push the node into OOM and evict its neighbours",
                        "set " + ", ".join(f"resources.{key}" for key in missing),
                    )
                )


def check_probes(args: Any, report: Report) -> None:
    for manifest, spec in workloads(args):
        if manifest.kind in RUN_TO_COMPLETION:
            continue
        if manifest.kind == "Pod" and get(spec, "restartPolicy") in ("Never", "OnFailure"):
            continue
        if pod_allowed(spec, "probes"):
            continue
        for c in containers(spec, ("containers",)):
            missing = []
            if get(c.spec, "readinessProbe") is None:
                missing.append("readinessProbe")
            if get(c.spec, "livenessProbe") is None and get(c.spec, "startupProbe") is None:
                missing.append("livenessProbe or startupProbe")
            if missing:
                report(
                    explain(
                        f"{_where(args, manifest, c)} has no {' and no '.join(missing)}",
                        "without a readiness probe traffic reaches a pod before it can answer (a model still "
                        "loading), and without a liveness probe a hung server is never restarted",
                        "add a readinessProbe and a livenessProbe (or a startupProbe for slow starts)",
                    )
                )


# --- pod security ---------------------------------------------------------------------------------------


def _sc(obj: Mapping[str, Any], key: str) -> Any:
    return get(obj, "securityContext", key)


def check_run_as_non_root(args: Any, report: Report) -> None:
    for manifest, spec in workloads(args):
        for c in all_containers(spec):
            if container_allowed(c, "run-as-root"):
                continue
            non_root = _sc(c.spec, "runAsNonRoot")
            if non_root is None:
                non_root = _sc(spec, "runAsNonRoot")
            user = _sc(c.spec, "runAsUser")
            if user is None:
                user = _sc(spec, "runAsUser")
            if user is not None and user == 0:
                problem = "runs as user 0 (root)"
            elif non_root is not True:
                problem = "does not set runAsNonRoot: true (pod or container securityContext)"
            else:
                continue
            report(
                explain(
                    f"{_where(args, manifest, c)} {problem}",
                    "a process running as root turns any container escape or writable hostPath into root on "
                    "a GPU node that holds other tenants' models and data",
                    "set securityContext.runAsNonRoot: true and a non-zero runAsUser (pod or container level)",
                )
            )


def check_no_privilege(args: Any, report: Report) -> None:
    allowed_add = {c.upper() for c in config(args, "allowedCapabilities", [])}
    why = (
        "privileged containers, privilege escalation and Linux capabilities give a process in the "
        "container control over the node"
    )
    for manifest, spec in workloads(args):
        for c in all_containers(spec):
            where = _where(args, manifest, c)
            if _sc(c.spec, "privileged") is True:
                report(explain(f"{where} is privileged", why, "remove securityContext.privileged"))
            if _sc(c.spec, "allowPrivilegeEscalation") is not False:
                report(
                    explain(
                        f"{where} does not set allowPrivilegeEscalation: false",
                        why + "; the default lets setuid binaries gain root",
                        "set securityContext.allowPrivilegeEscalation: false",
                    )
                )
            caps = get(c.spec, "securityContext", "capabilities", default={})
            drop = {str(x).upper() for x in get(caps, "drop", default=[])}
            added = {str(x).upper() for x in get(caps, "add", default=[])} - allowed_add
            exempt = container_allowed(c, "capabilities")
            if "ALL" not in drop and not exempt:
                report(
                    explain(
                        f"{where} does not drop all capabilities",
                        why + "; the runtime's default set includes NET_RAW and CHOWN",
                        'set securityContext.capabilities.drop: ["ALL"] and add back only what is needed',
                    )
                )
            if added and not exempt:
                report(
                    explain(
                        f"{where} adds capabilities {sorted(added)}",
                        why,
                        "remove them, or list a needed one in this policy's allowedCapabilities config",
                    )
                )


def check_host_path(args: Any, report: Report) -> None:
    allowed = list(config(args, "allowedPaths", [DEVICE_PLUGIN_DIR]))
    why = "a hostPath mount exposes the node's filesystem to the pod: other pods' data, kubelet credentials"
    fix = (
        f"use a PersistentVolumeClaim; the only hostPath allowed is the kubelet's device-plugin "
        f"directory {DEVICE_PLUGIN_DIR}"
    )
    for manifest in objects(args):
        if manifest.kind == "PersistentVolume":
            path = get(manifest.obj, "spec", "hostPath", "path")
            if path is not None and not any(path_within(str(path), a) for a in allowed):
                report(explain(f"{manifest.label(args.name)} is a hostPath volume on {path!r}", why, fix))
        spec = pod_spec(manifest)
        if spec is None:
            continue
        for vol in get(spec, "volumes", default=[]):
            path = get(vol, "hostPath", "path")
            if path is None:
                continue
            if not any(path_within(str(path), a) for a in allowed):
                name = get(vol, "name", default="?")
                report(explain(f"{manifest.label(args.name)} mounts hostPath {path!r} (volume {name!r})", why, fix))


def check_host_namespaces(args: Any, report: Report) -> None:
    why = (
        "sharing the node's network, PID or IPC namespace, or binding a host port, lets the pod see and "
        "reach everything on the node and bypasses Services and network policy"
    )
    for manifest, spec in workloads(args):
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            if get(spec, key) is True:
                report(explain(f"{manifest.label(args.name)} sets {key}: true", why, f"remove {key}"))
        for c in all_containers(spec):
            for port in get(c.spec, "ports", default=[]):
                host_port = get(port, "hostPort")
                if host_port:
                    report(
                        explain(
                            f"{_where(args, manifest, c)} binds hostPort {int(host_port)}",
                            why,
                            "expose the port through a ClusterIP Service and a TLS route instead",
                        )
                    )


# --- GPUs -------------------------------------------------------------------------------------------------

DEFAULT_GPU_RESOURCES = ("nvidia.com/gpu", "nvidia.com/gpu.shared")


def _count(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and re.fullmatch(r"[0-9]+", value):
        return float(value)
    return None


def check_gpu(args: Any, report: Report) -> None:
    resources = list(config(args, "gpuResources", DEFAULT_GPU_RESOURCES))
    runtime_class = str(config(args, "runtimeClass", "nvidia"))
    taint_key = str(config(args, "gpuTaintKey", "nvidia.com/gpu"))
    why = (
        "a GPU pod needs all three to work: the nvidia.com/gpu limit reserves the device, the nvidia "
        "runtime class injects the driver, and the toleration lets it onto tainted GPU nodes; the "
        "runtime class or toleration without the limit lets a pod use or squat on GPUs it did not reserve"
    )
    for manifest, spec in workloads(args):
        where = manifest.label(args.name)
        uses_gpu = False
        for c in all_containers(spec):
            limits = get(c.spec, "resources", "limits", default={})
            requests = get(c.spec, "resources", "requests", default={})
            for res in resources:
                limit, request = get(limits, res), get(requests, res)
                if request is not None and limit is None:
                    report(
                        explain(
                            f"{_where(args, manifest, c)} requests {res} without a limit",
                            "extended resources are allocated by their limit; a request alone is rejected",
                            f"set resources.limits.{res} (requests may be left out)",
                        )
                    )
                if limit is None:
                    continue
                n = _count(limit)
                if n is None or n < 1 or n != int(n):
                    report(
                        explain(
                            f"{_where(args, manifest, c)} sets {res} limit {limit!r}",
                            "GPUs are whole devices; a fraction or zero is rejected by the device plugin",
                            "use a positive whole number",
                        )
                    )
                uses_gpu = True
        runtime = get(spec, "runtimeClassName")
        tolerations = [t for t in get(spec, "tolerations", default=[]) if isinstance(t, Mapping)]
        keyed = any(get(t, "key") == taint_key for t in tolerations)
        blanket = any(get(t, "key") in (None, "") and get(t, "operator") == "Exists" for t in tolerations)
        if uses_gpu:
            if runtime != runtime_class:
                report(
                    explain(
                        f"{where} requests a GPU but runtimeClassName is {runtime!r}",
                        why,
                        f"set spec.runtimeClassName: {runtime_class}",
                    )
                )
            if not (keyed or blanket):
                report(
                    explain(
                        f"{where} requests a GPU but does not tolerate the {taint_key} taint",
                        why,
                        f"add a toleration {{key: {taint_key}, operator: Exists, effect: NoSchedule}}",
                    )
                )
        else:
            if runtime == runtime_class and not pod_allowed(spec, "nvidia-runtime"):
                report(
                    explain(
                        f"{where} uses runtimeClassName {runtime_class} without a GPU limit",
                        why,
                        f"add resources.limits.nvidia.com/gpu, or remove runtimeClassName {runtime_class}",
                    )
                )
            if keyed and not pod_allowed(spec, "gpu-toleration"):
                report(
                    explain(
                        f"{where} tolerates the {taint_key} taint without a GPU limit",
                        why,
                        "remove the toleration so CPU work stays off the GPU nodes, or request a GPU",
                    )
                )


# --- exposure -----------------------------------------------------------------------------------------------


def check_service_type(args: Any, report: Report) -> None:
    for manifest in objects(args):
        if manifest.kind != "Service":
            continue
        kind = get(manifest.obj, "spec", "type", default="ClusterIP")
        why = (
            "a NodePort or LoadBalancer Service (or externalIPs) opens the port on every node's public "
            "address, around the TLS routes and the firewall's admin CIDRs"
        )
        fix = "use a ClusterIP Service behind a TLS Ingress/IngressRoute/HTTPRoute"
        if kind in ("NodePort", "LoadBalancer"):
            report(explain(f"{manifest.label(args.name)} has type {kind}", why, fix))
        if get(manifest.obj, "spec", "externalIPs", default=[]):
            report(explain(f"{manifest.label(args.name)} sets externalIPs", why, fix))


def _host_covered(host: str, tls_hosts: Sequence[str]) -> bool:
    for pattern in tls_hosts:
        if pattern == host:
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]) and host.count(".") == pattern.count("."):
            return True
    return False


_TLS_WHY = "a route without TLS serves logins, API keys and model traffic in clear text on the internet"


def check_route_tls(args: Any, report: Report) -> None:
    allow_http_listeners = bool(config(args, "allowHttpListeners", False))
    for manifest in objects(args):
        where = manifest.label(args.name)
        group = manifest.api_version.split("/")[0]
        if manifest.kind == "Ingress":
            tls = [t for t in get(manifest.obj, "spec", "tls", default=[]) if isinstance(t, Mapping)]
            if not tls:
                report(explain(f"{where} has no spec.tls", _TLS_WHY, "add spec.tls with the hosts and a secretName"))
                continue
            tls_hosts = [str(h) for t in tls for h in get(t, "hosts", default=[])]
            for rule in get(manifest.obj, "spec", "rules", default=[]):
                host = get(rule, "host")
                if not host:
                    report(
                        explain(
                            f"{where} has a rule without a host",
                            _TLS_WHY + "; a host-less rule cannot be matched to a certificate",
                            "give every rule a host listed in spec.tls",
                        )
                    )
                elif not _host_covered(str(host), tls_hosts):
                    report(explain(f"{where}: host {host!r} is not in spec.tls", _TLS_WHY, "add the host to spec.tls"))
        elif manifest.kind == "IngressRoute" and group in ("traefik.io", "traefik.containo.us"):
            tls = get(manifest.obj, "spec", "tls")
            if not isinstance(tls, Mapping):
                report(
                    explain(f"{where} has no spec.tls", _TLS_WHY, "add spec.tls.secretName or spec.tls.certResolver")
                )
            elif not (get(tls, "secretName") or get(tls, "certResolver")):
                report(
                    explain(
                        f"{where}: spec.tls names no certificate",
                        _TLS_WHY + "; Traefik falls back to its self-signed default certificate",
                        "set spec.tls.secretName (a cert-manager Certificate) or spec.tls.certResolver",
                    )
                )
        elif manifest.kind == "Gateway" and group == "gateway.networking.k8s.io":
            for i, listener in enumerate(get(manifest.obj, "spec", "listeners", default=[])):
                name = get(listener, "name", default=f"listeners[{i}]")
                protocol = str(get(listener, "protocol", default=""))
                mode = get(listener, "tls", "mode", default="Terminate")
                refs = get(listener, "tls", "certificateRefs", default=[])
                if protocol == "HTTP" and allow_http_listeners:
                    continue
                if protocol not in ("HTTPS", "TLS"):
                    report(
                        explain(
                            f"{where}: listener {name!r} speaks {protocol or 'no protocol'}",
                            _TLS_WHY,
                            "use protocol HTTPS with tls.certificateRefs (redirect HTTP at the entry point)",
                        )
                    )
                elif mode == "Terminate" and not refs:
                    report(
                        explain(
                            f"{where}: listener {name!r} terminates TLS without tls.certificateRefs",
                            _TLS_WHY,
                            "reference the cert-manager certificate secret in tls.certificateRefs",
                        )
                    )
        elif manifest.kind == "HTTPRoute" and group == "gateway.networking.k8s.io":
            for ref in get(manifest.obj, "spec", "parentRefs", default=[]):
                if not get(ref, "sectionName") and get(ref, "port") != 443:
                    report(
                        explain(
                            f"{where}: parentRef {get(ref, 'name', default='?')!r} names no listener",
                            _TLS_WHY + "; without sectionName the route also attaches to plain-HTTP listeners",
                            "set parentRefs[].sectionName to the Gateway's HTTPS listener",
                        )
                    )


# --- secrets in env -------------------------------------------------------------------------------------------

DEFAULT_SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIALS", "APIKEY")


def secret_like_name(name: str, words: Sequence[str], allow: Sequence[str] = ()) -> bool:
    """`OPENAI_API_KEY`, `HF_TOKEN`, `DB_PASSWORD` yes; `TOKENIZERS_PARALLELISM`, `KEYCLOAK_URL` no."""
    if name in allow:
        return False
    segments = [s for s in re.split(r"[^A-Za-z0-9]+", name.upper()) if s]
    return any(seg == w or seg.endswith(w) for seg in segments for w in (x.upper() for x in words))


def _env_problem(entry: Mapping[str, Any]) -> str | None:
    value = get(entry, "value")
    if value not in (None, ""):
        return "is set to a literal value"
    value_from = get(entry, "valueFrom")
    if value_from is not None and get(value_from, "secretKeyRef") is None:
        return f"is read from {', '.join(value_from)} instead of a Secret"
    return None


_ENV_WHY = (
    "a literal in the pod spec is stored in plain text in the Deployment, in etcd, in Pulumi state and "
    "in `kubectl describe` output"
)
_ENV_FIX = "put the value in a Kubernetes Secret and use env[].valueFrom.secretKeyRef"


def check_secret_env(args: Any, report: Report) -> None:
    words = list(config(args, "secretWords", DEFAULT_SECRET_WORDS))
    allow = list(config(args, "allowNames", []))
    for manifest, spec in workloads(args):
        for c in all_containers(spec):
            for entry in get(c.spec, "env", default=[]):
                name = str(get(entry, "name", default=""))
                if get(entry, "value") == SECRET_MARKER and name not in allow:
                    # Whatever its name (DATABASE_URL): the program marked the value secret.
                    what = f"{_where(args, manifest, c)}: env {name} holds a Pulumi secret as a literal value"
                    report(explain(what, _ENV_WHY, _ENV_FIX))
                    continue
                if not secret_like_name(name, words, allow):
                    continue
                problem = _env_problem(entry)
                if problem:
                    report(explain(f"{_where(args, manifest, c)}: env {name} {problem}", _ENV_WHY, _ENV_FIX))
    if args.resource_type in HELM_TYPES:
        for path, value in walk(get(args.props, "values", default={}), "values"):
            if isinstance(value, Mapping) and "name" in value and ("value" in value or "valueFrom" in value):
                name = str(value["name"])
                if secret_like_name(name, words, allow):
                    problem = _env_problem(value)
                    if problem:
                        report(explain(f"Helm release {args.name}: {path} ({name}) {problem}", _ENV_WHY, _ENV_FIX))


# --- namespaces ------------------------------------------------------------------------------------------------


def check_namespace(args: Any, report: Report) -> None:
    cluster_scoped = CLUSTER_SCOPED | set(config(args, "clusterScopedKinds", []))
    why = (
        "objects in 'default' share one ServiceAccount, quota and network policy with anything else "
        "dropped there, and a namespace-less object lands wherever the kubeconfig's context points"
    )
    provider_ns = None
    if args.provider is not None:
        provider_ns = get(args.provider.props, "namespace")
    if args.resource_type in HELM_TYPES:
        ns = get(args.props, "namespace")
        if ns in (None, "", "default"):
            report(
                explain(
                    f"Helm release {args.name} installs into {ns or 'no namespace (default)'!s}",
                    why,
                    "set namespace to the component's own namespace",
                )
            )
        return
    for manifest in objects(args):
        if manifest.kind in cluster_scoped:
            continue
        ns = manifest.namespace
        if ns is None and provider_ns not in (None, "", "default"):
            continue
        if ns in (None, "", "default"):
            report(
                explain(
                    f"{manifest.label(args.name)} is in {'the default namespace' if ns else 'no namespace'}",
                    why,
                    "set metadata.namespace to the component's own namespace",
                )
            )


# --- Helm ---------------------------------------------------------------------------------------------------------

_EXACT_VERSION = re.compile(r"^v?[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?$")


def check_helm_version(args: Any, report: Report) -> None:
    if args.resource_type not in HELM_TYPES:
        return
    chart = str(get(args.props, "chart", default=""))
    if chart.startswith(("./", "../", "/")):
        return  # a chart in this repository: its version is the file under review
    version = get(args.props, "version")
    if not isinstance(version, str) or not _EXACT_VERSION.match(version):
        report(
            explain(
                f"Helm release {args.name} (chart {chart!r}) has version {version!r}",
                "without an exact version every `pulumi up` may install whatever the repository "
                "published last, so dev and prod, or today and the rollback, run different charts",
                "set version to an exact chart version from components/catalog/versions.py",
            )
        )


# --- ingress-nginx --------------------------------------------------------------------------------------------

NGINX_CHARTS = frozenset({"ingress-nginx", "nginx-ingress-controller"})
NGINX_REPOS = ("kubernetes.github.io/ingress-nginx",)
NGINX_IMAGES = ("ingress-nginx/controller", "bitnami/nginx-ingress-controller", "ingress-nginx/kube-webhook")
NGINX_CONTROLLER = "k8s.io/ingress-nginx"

_NGINX_WHY = (
    "the house rule is to never run ingress-nginx: the project is retired upstream and has had "
    "critical unauthenticated RCEs (CVE-2025-1974); K3s ships Traefik, which this platform uses"
)
_NGINX_FIX = "route through K3s's Traefik (Ingress with ingressClassName traefik, IngressRoute or HTTPRoute)"


def check_no_ingress_nginx(args: Any, report: Report) -> None:
    found: list[str] = []
    if args.resource_type in HELM_TYPES:
        chart = str(get(args.props, "chart", default=""))
        repo = str(get(args.props, "repositoryOpts", "repo", default=""))
        if chart.rstrip("/").rsplit("/", 1)[-1] in NGINX_CHARTS or any(r in repo or r in chart for r in NGINX_REPOS):
            found.append(f"Helm release {args.name} installs chart {chart!r}")
        for path, value in walk(get(args.props, "values", default={}), "values"):
            key = path.rsplit(".", 1)[-1]
            if isinstance(value, str) and (
                any(img in value for img in NGINX_IMAGES)
                or (key in ("ingressClassName", "className", "ingressClass") and value == "nginx")
            ):
                found.append(f"Helm release {args.name}: {path} is {value!r}")
    for manifest in objects(args):
        where = manifest.label(args.name)
        spec = pod_spec(manifest)
        for c in all_containers(spec) if spec is not None else []:
            if any(img in image_repository(c.image) for img in NGINX_IMAGES):
                found.append(f"{where} runs the ingress-nginx image {c.image!r}")
        if manifest.kind == "IngressClass" and get(manifest.obj, "spec", "controller") == NGINX_CONTROLLER:
            found.append(f"{where} is the ingress-nginx controller class")
        if manifest.kind == "Ingress":
            annotations = get(manifest.obj, "metadata", "annotations", default={})
            if get(manifest.obj, "spec", "ingressClassName") == "nginx":
                found.append(f"{where} uses ingressClassName nginx")
            if get(annotations, "kubernetes.io/ingress.class") == "nginx":
                found.append(f"{where} uses the nginx ingress class annotation")
            nginx_keys = [k for k in annotations if str(k).startswith("nginx.ingress.kubernetes.io/")]
            if nginx_keys:
                found.append(f"{where} carries ingress-nginx annotations {sorted(nginx_keys)}")
    if args.resource_type.startswith("command:"):
        for key in ("create", "update"):
            text = get(args.props, key)
            if isinstance(text, str) and "ingress-nginx" in text:
                found.append(f"command {args.name} {key} script installs or configures ingress-nginx")
    for item in found:
        report(explain(item, _NGINX_WHY, _NGINX_FIX))
