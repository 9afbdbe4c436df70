"""Weighted cutover: each public hostname is served by the legacy Compose host and by K3s.

K3s's own Traefik does the split (no ingress-nginx, which was retired upstream in March 2026):
per hostname a `TraefikService` with a weighted round robin over two backends,
  - the in-cluster service (weight = phase.state.traffic.k3sWeight), and
  - the Compose host (weight = 100 - k3sWeight),
and an `IngressRoute` on the `websecure` entry point with the cert-manager certificate.

Moving between p2b-services (10), p2b1-cutover-50 (50) and p2b2-cutover-100 (100), forward or
back, is a stack update that changes only the two `weight` inputs of each TraefikService: every
object, name and other field is the same in all three phases. At 100 the legacy backend stays in
the list with weight 0, so rolling back is again a weight change and nothing is re-created.

What Traefik needs to reach the Compose host: its CRD provider resolves a Service to endpoints
through EndpointSlices, so each hostname's legacy backend is a Service *without* a selector plus an
EndpointSlice we own (label `kubernetes.io/service-name`, a `managed-by` that is not the
EndpointSlice controller, so the controller leaves it alone; `ready: true` so Traefik uses it).
An ExternalName Service would need `allowExternalNameServices`, which K3s's Traefik leaves off,
and an IP in `externalName` is not a DNS name. Traefik speaks HTTPS to the Compose host's nginx
with SNI and certificate verification for the public hostname (a ServersTransport per hostname):
the Compose host keeps serving its own certificate for those names until it is stopped.

One legacy Service per hostname, not one shared by all: Traefik names a weighted backend after the
Kubernetes Service and port it points at (`<namespace>-<service>-<port>`, `fullServiceName` in
pkg/provider/kubernetes/crd/kubernetes_http.go, v3.6), and TraefikServices that share a backend
share that one entry, so the last one read would impose its ServersTransport (SNI) on every
hostname. The same name is the `service` label of Traefik's per-backend metrics
(`traefik_service_*`, recorded per load-balanced backend only, never for the weighted split itself),
which the cutover gate (`routes-slo`, migrate/checks.py) reads per route and per backend.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field, InstanceOf, model_validator

from components.catalog.services import SERVICES
from components.core.errors import ConfigError
from components.core.model import Args
from components.handles import ClusterHandle
from components.platform.kube import k8s_opts, labels

LEGACY_PREFIX = "legacy-"  # legacy-<host>: the Service, EndpointSlice and ServersTransport of one hostname
LEGACY_PORT = 443  # the Compose host's nginx terminates TLS for the public hostnames
TLS_SECRET = "public-tls"
# A client keeps the backend it first got for an hour: the two backends do not share sessions.
STICKY_COOKIE = {"name": "gp_backend", "secure": True, "httpOnly": True, "sameSite": "lax", "maxAge": 3600}


@dataclass(frozen=True)
class PublicRoute:
    host: str  # the label under the domain: "app" -> app.<domain>
    service: str  # the in-cluster Service
    port: int


def public_routes() -> tuple[PublicRoute, ...]:
    """Every service of the one table that has a public hostname."""
    return tuple(PublicRoute(s.public_host, s.name, s.port) for s in SERVICES if s.public_host)


def legacy_service(route: PublicRoute) -> str:
    """The selector-less Service (and ServersTransport) through which Traefik reaches the Compose host for `route`."""
    return f"{LEGACY_PREFIX}{route.host}"


def traefik_service(namespace: str, service: str, port: int) -> str:
    """Traefik's name for a weighted backend that is a Kubernetes Service: the `service` label of its metrics."""
    return f"{namespace}-{service}-{port}@kubernetescrd"


def route_backends(namespace: str, domain: str, routes: Sequence[PublicRoute]) -> list[dict[str, str]]:
    """Per public hostname, the Traefik service names of its K3s and legacy backends (a stack output)."""
    return [
        {
            "hostname": f"{route.host}.{domain}",
            "k3sService": traefik_service(namespace, route.service, route.port),
            "legacyService": traefik_service(namespace, legacy_service(route), LEGACY_PORT),
        }
        for route in routes
    ]


def weights(k3s_weight: int) -> tuple[int, int]:
    """(in-cluster, legacy) weights of one hostname; they always add up to 100."""
    if not 0 <= k3s_weight <= 100:
        raise ConfigError(f"traffic.k3sWeight: {k3s_weight} is not a percentage (0-100)")
    return k3s_weight, 100 - k3s_weight


class TrafficSplitArgs(Args):
    cluster: InstanceOf[ClusterHandle]
    namespace: str
    domain: str
    k3s_weight: int
    legacy_address: str
    cluster_issuer: str
    routes: tuple[InstanceOf[PublicRoute], ...] = Field(default_factory=public_routes)
    depends_on: Sequence[InstanceOf[pulumi.Resource]] = ()

    @model_validator(mode="after")
    def _routable(self) -> TrafficSplitArgs:
        if not 1 <= self.k3s_weight <= 100:
            raise ConfigError(
                f"traffic.k3sWeight: {self.k3s_weight}; public routes exist only for 1-100 (0 means none at all)"
            )
        try:
            ipaddress.ip_address(self.legacy_address)
        except ValueError:
            raise ConfigError(f"composeHost.address: {self.legacy_address!r} is not an IP address") from None
        hosts = [r.host for r in self.routes]
        if not hosts or len(set(hosts)) != len(hosts):
            raise ConfigError(f"TrafficSplit: public hosts must be unique and not empty (got {hosts})")
        return self

    def fqdn(self, route: PublicRoute) -> str:
        return f"{route.host}.{self.domain}"


class TrafficSplit(pulumi.ComponentResource):
    """The legacy backend, the certificate and, per hostname, the weighted route."""

    hostnames: list[str]
    backends: list[dict[str, str]]  # route_backends(): per hostname, its two Traefik service names

    def __init__(self, name: str, args: TrafficSplitArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gpu-platform:traffic:TrafficSplit", name, None, opts)
        k3s, legacy = weights(args.k3s_weight)
        self.hostnames = [args.fqdn(r) for r in args.routes]
        self.backends = route_backends(args.namespace, args.domain, args.routes)

        certificate = k8s.apiextensions.CustomResource(
            f"{name}-certificate",
            api_version="cert-manager.io/v1",
            kind="Certificate",
            metadata={"name": TLS_SECRET, "namespace": args.namespace, "labels": labels(TLS_SECRET, "tls")},
            spec={
                "secretName": TLS_SECRET,
                "dnsNames": self.hostnames,
                "issuerRef": {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": args.cluster_issuer},
                "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            },
            opts=k8s_opts(self, args.cluster, depends_on=args.depends_on),
        )
        for route in args.routes:
            legacy_backend = self._legacy_backend(name, args, route)
            split = self._split(name, args, route, (k3s, legacy), legacy_backend)
            self._ingress_route(name, args, route, split, certificate)

        self.register_outputs({"hostnames": self.hostnames, "k3sWeight": k3s})

    def _legacy_backend(self, name: str, args: TrafficSplitArgs, route: PublicRoute) -> list[pulumi.Resource]:
        """The Compose host as a Traefik backend: a selector-less Service, its EndpointSlice, a ServersTransport.

        Returns what the weighted split must wait for (the Service and the ServersTransport).
        """
        ns = args.namespace
        legacy_name = legacy_service(route)
        family = "IPv6" if ipaddress.ip_address(args.legacy_address).version == 6 else "IPv4"
        legacy_svc = k8s.core.v1.Service(
            f"{name}-{route.host}-legacy",
            metadata={"name": legacy_name, "namespace": ns, "labels": labels(legacy_name, "legacy")},
            # No selector: the endpoints are the EndpointSlice below, not pods.
            spec={"type": "ClusterIP", "ports": [{"name": "https", "port": LEGACY_PORT, "protocol": "TCP"}]},
            opts=k8s_opts(self, args.cluster, depends_on=args.depends_on),
        )
        k8s.discovery.v1.EndpointSlice(
            f"{name}-{route.host}-legacy-endpoints",
            metadata={
                "name": f"{legacy_name}-{family.lower()}",
                "namespace": ns,
                "labels": {
                    **labels(legacy_name, "legacy"),
                    "kubernetes.io/service-name": legacy_name,
                    "endpointslice.kubernetes.io/managed-by": "pulumi.gpu-platform",
                },
            },
            address_type=family,
            endpoints=[
                {
                    "addresses": [args.legacy_address],
                    "conditions": {"ready": True, "serving": True, "terminating": False},
                }
            ],
            ports=[{"name": "https", "port": LEGACY_PORT, "protocol": "TCP"}],
            opts=k8s_opts(self, args.cluster, depends_on=[legacy_svc]),
        )
        transport = k8s.apiextensions.CustomResource(
            f"{name}-{route.host}-legacy-transport",
            api_version="traefik.io/v1alpha1",
            kind="ServersTransport",
            metadata={"name": legacy_name, "namespace": ns, "labels": labels(route.host, "legacy")},
            # SNI and certificate check for the public name the Compose host serves.
            spec={"serverName": args.fqdn(route), "insecureSkipVerify": False},
            opts=k8s_opts(self, args.cluster, depends_on=args.depends_on),
        )
        return [legacy_svc, transport]

    def _split(
        self,
        name: str,
        args: TrafficSplitArgs,
        route: PublicRoute,
        split_weights: tuple[int, int],
        legacy_backend: list[pulumi.Resource],
    ) -> pulumi.Resource:
        """The weighted round robin (in-cluster, legacy) behind one hostname, sticky per client."""
        k3s, legacy = split_weights
        legacy_name = legacy_service(route)
        return k8s.apiextensions.CustomResource(
            f"{name}-{route.host}-split",
            api_version="traefik.io/v1alpha1",
            kind="TraefikService",
            metadata={
                "name": f"{route.host}-split",
                "namespace": args.namespace,
                "labels": labels(route.host, "traffic"),
            },
            spec={
                "weighted": {
                    "services": [
                        {"name": route.service, "port": route.port, "weight": k3s},
                        {
                            "name": legacy_name,
                            "port": LEGACY_PORT,
                            "weight": legacy,
                            "scheme": "https",
                            "serversTransport": legacy_name,
                        },
                    ],
                    "sticky": {"cookie": dict(STICKY_COOKIE)},
                }
            },
            opts=k8s_opts(self, args.cluster, depends_on=[*legacy_backend, *args.depends_on]),
        )

    def _ingress_route(
        self,
        name: str,
        args: TrafficSplitArgs,
        route: PublicRoute,
        split: pulumi.Resource,
        certificate: pulumi.Resource,
    ) -> None:
        """The hostname's route on `websecure`, to its split, with the shared certificate."""
        route_spec: dict[str, Any] = {
            "entryPoints": ["websecure"],
            "routes": [
                {
                    "kind": "Rule",
                    "match": f"Host(`{args.fqdn(route)}`)",
                    "services": [{"name": f"{route.host}-split", "kind": "TraefikService"}],
                }
            ],
            "tls": {"secretName": TLS_SECRET},
        }
        k8s.apiextensions.CustomResource(
            f"{name}-{route.host}-route",
            api_version="traefik.io/v1alpha1",
            kind="IngressRoute",
            metadata={"name": route.host, "namespace": args.namespace, "labels": labels(route.host, "traffic")},
            spec=route_spec,
            opts=k8s_opts(self, args.cluster, depends_on=[split, certificate]),
        )
