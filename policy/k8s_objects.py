"""Kubernetes objects as a policy sees them: manifests in a resource, pod templates in a manifest.

A Kubernetes resource registered through pulumi_kubernetes carries its manifest as inputs
(`apiVersion`, `kind`, `metadata`, `spec`, camelCase). `yaml/v2` ConfigGroups carry a list of
manifests (`objs`) or YAML text (`yaml`); the rules read those too, so a manifest cannot slip past
the pack by being declared in YAML.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from policy_support import get

# Pod templates: where each workload kind keeps its pod spec.
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
# Workloads that run to completion: a probe on them checks nothing anyone waits for.
RUN_TO_COMPLETION = frozenset({"Job", "CronJob"})

# Kinds with no namespace. A custom kind not listed here is treated as namespaced.
CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "Node",
        "PersistentVolume",
        "StorageClass",
        "CSIDriver",
        "CSINode",
        "VolumeAttachment",
        "RuntimeClass",
        "PriorityClass",
        "IngressClass",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "APIService",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ClusterIssuer",  # cert-manager
        "GatewayClass",  # Gateway API
        "ClusterPolicy",  # NVIDIA GPU operator
        "FlowSchema",
        "PriorityLevelConfiguration",
        "CertificateSigningRequest",
    }
)

# Resource types that hold several manifests rather than being one.
MULTI_MANIFEST_TYPES = frozenset(
    {"kubernetes:yaml/v2:ConfigGroup", "kubernetes:yaml:ConfigGroup", "kubernetes:core/v1:List"}
)
# pulumi_kubernetes types that are not an object in the cluster.
NOT_OBJECTS = ("kubernetes:helm.sh/", "kubernetes:yaml", "kubernetes:kustomize", "pulumi:providers:")

# The kubelet's device-plugin socket directory: the one hostPath a GPU node needs.
DEVICE_PLUGIN_DIR = "/var/lib/kubelet/device-plugins"


@dataclass(frozen=True)
class Manifest:
    kind: str
    api_version: str
    obj: Mapping[str, Any]
    where: str  # "" for the resource itself, "objs[2]" / "yaml[0]" inside a ConfigGroup
    # A server-side-apply patch (NodePatch, DeploymentPatch) states only the fields it changes, so
    # rules about what a pod template must contain do not apply to it.
    patch: bool = False

    @property
    def name(self) -> str:
        return str(get(self.obj, "metadata", "name", default="") or "")

    @property
    def namespace(self) -> str | None:
        ns = get(self.obj, "metadata", "namespace")
        return None if ns is None else str(ns)

    def label(self, resource_name: str = "") -> str:
        """`Deployment llm/router` for messages."""
        name = self.name or resource_name or "?"
        ns = self.namespace
        ident = f"{ns}/{name}" if ns else name
        return f"{self.kind} {ident}" + (f" (in {self.where})" if self.where else "")

    def ident(self, resource_name: str = "") -> str:
        """`namespace/name` for allowlists (`name` for cluster-scoped or namespace-less objects)."""
        name = self.name or resource_name
        return f"{self.namespace}/{name}" if self.namespace else name


def kind_of_type(resource_type: str) -> tuple[str, str] | None:
    """`kubernetes:apps/v1:Deployment` -> ("apps/v1", "Deployment"); core/v1 -> "v1"."""
    if not resource_type.startswith("kubernetes:") or resource_type.startswith(NOT_OBJECTS):
        return None
    parts = resource_type.split(":")
    if len(parts) != 3:
        return None
    group_version, kind = parts[1], parts[2]
    if kind.endswith("Patch") and len(kind) > len("Patch"):
        kind = kind[: -len("Patch")]  # NodePatch, DeploymentPatch: a partial object of that kind
    if group_version.startswith("core/"):
        group_version = group_version[len("core/") :]
    return group_version, kind


def _from_yaml(text: str, where: str) -> Iterator[Manifest]:
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError:
        return
    for i, doc in enumerate(docs):
        if isinstance(doc, Mapping) and doc.get("kind"):
            yield Manifest(str(doc["kind"]), str(doc.get("apiVersion", "")), doc, f"{where}[{i}]")


def manifests(resource_type: str, props: Mapping[str, Any]) -> list[Manifest]:
    """Every Kubernetes manifest a resource declares."""
    if resource_type in MULTI_MANIFEST_TYPES:
        out: list[Manifest] = []
        objs = get(props, "objs", default=None) or get(props, "items", default=None) or []
        for i, obj in enumerate(objs if isinstance(objs, Sequence) and not isinstance(objs, str) else []):
            if isinstance(obj, Mapping) and obj.get("kind"):
                out.append(Manifest(str(obj["kind"]), str(obj.get("apiVersion", "")), obj, f"objs[{i}]"))
        texts = get(props, "yaml", default=None)
        if isinstance(texts, str):
            texts = [texts]
        for i, text in enumerate(texts if isinstance(texts, Sequence) else []):
            if isinstance(text, str):
                out.extend(_from_yaml(text, f"yaml[{i}]"))
        return out
    kind = kind_of_type(resource_type)
    if kind is None:
        return []
    return [Manifest(kind[1], kind[0], props, "", patch=resource_type.endswith("Patch"))]


@dataclass(frozen=True)
class Container:
    field: str  # containers | initContainers | ephemeralContainers
    index: int
    spec: Mapping[str, Any]

    @property
    def name(self) -> str:
        return str(get(self.spec, "name", default="") or f"{self.field}[{self.index}]")

    @property
    def image(self) -> str:
        value = get(self.spec, "image", default="")
        return value if isinstance(value, str) else ""


def pod_spec(manifest: Manifest) -> Mapping[str, Any] | None:
    path = POD_SPEC_PATHS.get(manifest.kind)
    if path is None or manifest.patch:
        return None
    spec = get(manifest.obj, *path)
    return spec if isinstance(spec, Mapping) else None


def containers(spec: Mapping[str, Any], fields: Sequence[str] = ("initContainers", "containers")) -> list[Container]:
    out: list[Container] = []
    for field in fields:
        items = get(spec, field, default=[])
        if isinstance(items, Sequence) and not isinstance(items, str):
            out.extend(Container(field, i, c) for i, c in enumerate(items) if isinstance(c, Mapping))
    return out


def all_containers(spec: Mapping[str, Any]) -> list[Container]:
    return containers(spec, ("initContainers", "containers", "ephemeralContainers"))


def image_repository(image: str) -> str:
    """`nvcr.io/nvidia/k8s-device-plugin:v0.17.1` -> `nvcr.io/nvidia/k8s-device-plugin`."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        ref = ref[: len(ref) - len(last)] + last.split(":", 1)[0]
    return ref


def image_tag(image: str) -> tuple[str | None, str | None]:
    """(tag, digest) of an image reference; either may be None."""
    ref, _, digest = image.partition("@")
    last = ref.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else None
    return tag, (digest or None)


def normalised_path(path: str) -> str:
    return posixpath.normpath("/" + path.lstrip("/")) if path else ""


def path_within(path: str, allowed: str) -> bool:
    p, a = normalised_path(path), normalised_path(allowed)
    return p == a or p.startswith(a.rstrip("/") + "/")
