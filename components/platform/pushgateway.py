"""The Pushgateway: where the platform's batch Jobs leave their outcome for Prometheus.

A Job ends before Prometheus can scrape it, so the scheduled backups (the case the Pushgateway
exists for: a service-level batch job's result) push theirs here, and Prometheus scrapes it with
honorLabels so the pushed {job, source} survive. Only pods labelled `PUSHER_LABEL` may push.

Lifecycle, like the data stores' (components/platform/datastores.py): the component exists from the
phase that has monitoring and the Retain storage (p2a), its Deployment at 0 replicas until the
stores run (p2b, `serving`). Its claim holds the last outcome of every backup (`--persistence.file`),
so a restarted Pushgateway still shows when each store was last verified. It uses the stores' Retain
class, which exists from p2a as this claim does; in prod it is protected like every claim, and
rolling back p2b -> p2a is a replica change, never the claim's delete.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field, InstanceOf

from components.catalog import versions
from components.core.model import Args
from components.handles import ClusterHandle
from components.platform.kube import container_security, k8s_opts, labels, pod_security, selector

SERVICE: Final = "pushgateway"
PORT: Final = 9091
# On the pods allowed to push (the Pushgateway's NetworkPolicy admits them, from any namespace).
PUSHER_LABEL: Final = "gpu-platform/pushes-metrics"
# The image's user (the Dockerfile at v1.11.3: USER 65534, nobody).
RUN_AS_USER: Final = 65534
DATA_DIR: Final = "/pushgateway/data"
# kube-prometheus-stack 86.3.2 templates/prometheus/service.yaml (and networkpolicy.yaml): the label its
# Prometheus pods carry, the peer allowed to scrape.
PROMETHEUS_POD_LABELS: Final = {"app.kubernetes.io/name": "prometheus"}
LABELS: Final = labels(SERVICE, "metrics")
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"  # a namespace's or storage class's name


def push_url(namespace: str) -> str:
    """The in-cluster URL the Jobs push to; the Pushgateway runs in the monitoring namespace."""
    return f"http://{SERVICE}.{namespace}.svc.cluster.local:{PORT}"


# The persistence file is rewritten at most once per interval (default 5m) and on a clean
# shutdown; 1m bounds what a killed pod can lose to the last minute's pushes.
ARGS: Final = (f"--web.listen-address=:{PORT}", f"--persistence.file={DATA_DIR}/metrics", "--persistence.interval=1m")


class PushgatewayArgs(Args):
    cluster: InstanceOf[ClusterHandle]
    namespace: str = Field(pattern=_DNS_LABEL)  # the monitoring namespace (created by the monitoring chart's step)
    storage_class: str = Field(pattern=_DNS_LABEL)  # the Retain class the data stores use
    serving: bool  # the stores run, so their backups push: 1 replica, else 0
    protect: bool  # prod: protect + retain_on_delete on the claim
    # The monitoring release (the ServiceMonitor CRD, the namespace) and the storage class.
    depends_on: Sequence[InstanceOf[pulumi.Resource]] = ()


class Pushgateway(pulumi.ComponentResource):
    """Deployment, claim, Service, ServiceMonitor and NetworkPolicy of the Pushgateway."""

    url: str  # where the Jobs push (push_url)
    replicas: int

    def __init__(self, name: str, args: PushgatewayArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gpu-platform:pushgateway:Pushgateway", name, None, opts)
        self.url, self.replicas = push_url(args.namespace), 1 if args.serving else 0
        deps = list(args.depends_on)
        meta = {"namespace": args.namespace, "labels": LABELS}
        claim = k8s.core.v1.PersistentVolumeClaim(
            f"{name}-data",
            metadata={"name": f"{SERVICE}-data", **meta},
            # A few kB per pushed group (local-path does not enforce the size).
            spec={
                "access_modes": ["ReadWriteOnce"],
                "storage_class_name": args.storage_class,
                "resources": {"requests": {"storage": "64Mi"}},
            },
            opts=k8s_opts(self, args.cluster, depends_on=deps, protect=args.protect, retain_on_delete=args.protect),
        )
        k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata={"name": SERVICE, **meta},
            spec={
                "replicas": self.replicas,
                "selector": {"match_labels": selector(SERVICE)},
                # One writer of the persistence file on a ReadWriteOnce claim: the old pod goes first.
                "strategy": {"type": "Recreate"},
                "template": {
                    "metadata": {"labels": LABELS},
                    "spec": _pod_spec(),
                },
            },
            opts=k8s_opts(self, args.cluster, depends_on=[claim, *deps]),
        )
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata={"name": SERVICE, **meta},
            spec={
                "type": "ClusterIP",
                "selector": selector(SERVICE),
                "ports": [{"name": "http", "port": PORT, "target_port": "http", "protocol": "TCP"}],
            },
            opts=k8s_opts(self, args.cluster, depends_on=deps),
        )
        k8s.apiextensions.CustomResource(
            f"{name}-monitor",
            api_version="monitoring.coreos.com/v1",
            kind="ServiceMonitor",
            metadata={"name": SERVICE, **meta},
            spec=monitor_spec(),
            opts=k8s_opts(self, args.cluster, depends_on=[service, *deps]),
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-ingress",
            metadata={"name": f"{SERVICE}-ingress", **meta},
            spec=_ingress_spec(args.namespace),
            opts=k8s_opts(self, args.cluster, depends_on=deps),
        )
        self.register_outputs({"url": self.url, "replicas": self.replicas})


def monitor_spec() -> dict[str, Any]:
    """The ServiceMonitor's spec (tests/real/test_observability.py scrapes the real Pushgateway with its
    endpoint's settings)."""
    return {
        "selector": {"matchLabels": selector(SERVICE)},
        # The pushed {job, source} must win over the target's job (the Service's name); the
        # Pushgateway's own series keep job="pushgateway", which PushgatewayDown reads.
        "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s", "honorLabels": True}],
    }


def _pod_spec() -> dict[str, Any]:
    probe = {"period_seconds": 10, "timeout_seconds": 3}
    container = {
        "name": SERVICE,
        "image": versions.PUSHGATEWAY_IMAGE,
        "args": list(ARGS),
        "ports": [{"name": "http", "container_port": PORT, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}},
        "readiness_probe": {**probe, "http_get": {"path": "/-/ready", "port": "http"}, "failure_threshold": 3},
        "liveness_probe": {**probe, "http_get": {"path": "/-/healthy", "port": "http"}, "failure_threshold": 6},
        "security_context": container_security(),
        "volume_mounts": [{"name": "data", "mount_path": DATA_DIR}],
    }
    return {
        "automount_service_account_token": False,
        "security_context": pod_security(RUN_AS_USER),
        "containers": [container],
        "volumes": [{"name": "data", "persistent_volume_claim": {"claim_name": f"{SERVICE}-data"}}],
    }


def _ingress_spec(namespace: str) -> dict[str, Any]:
    """Pushes only from the pods that carry PUSHER_LABEL (the backup Jobs, any namespace), scrapes
    only from Prometheus: nothing else may rewrite what the alerts read."""
    return {
        "pod_selector": {"match_labels": selector(SERVICE)},
        "policy_types": ["Ingress"],
        "ingress": [
            {
                "from": [
                    {"namespace_selector": {}, "pod_selector": {"match_labels": {PUSHER_LABEL: "true"}}},
                    {
                        "namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": namespace}},
                        "pod_selector": {"match_labels": dict(PROMETHEUS_POD_LABELS)},
                    },
                ],
                "ports": [{"port": "http", "protocol": "TCP"}],
            }
        ],
    }
