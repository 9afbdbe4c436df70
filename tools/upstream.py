"""`make upstream`: the charts' and CRDs' own files at the pinned versions, for the tests.

The tests check every chart value against the chart's `values.yaml`, `values.schema.json` and
`templates/`, and every custom resource against its CRD's `openAPIV3Schema`. In the project's own
workplace those files sit in `../shared/upstream/`; anywhere else (a user's CI) this script
downloads the same files from the charts' public GitHub repositories, at the tags that match the
pins in components/catalog/versions.py, into `${XDG_CACHE_HOME:-~/.cache}/gpu-platform/upstream/`, in the
same layout:

    charts/<chart>-<version>/   Chart.yaml, values.yaml, values.schema.json, templates/, crds/
    crds/<group>/<Kind>.yaml    the CustomResourceDefinition of each custom kind the program creates

Each repository is read once per tag, as GitHub's source tarball, streamed; only those paths are
kept. Subcharts whose values the program sets (kube-prometheus-stack's `grafana`) are fetched at
the version the parent's Chart.yaml pins. Usage: `python -m tools.upstream [--dest DIR]`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

from components.catalog import versions

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "upstream"
CODELOAD = "https://codeload.github.com"
CHART_FILES = ("Chart.yaml", "values.yaml", "values.schema.json", "templates", "crds")

# Chart name -> (GitHub repository, tag format, the chart's folder at that tag).
CHART_REPOSITORIES: dict[str, tuple[str, str, str]] = {
    "nvidia-device-plugin": ("NVIDIA/k8s-device-plugin", "v{version}", "deployments/helm/nvidia-device-plugin"),
    "cert-manager": ("cert-manager/cert-manager", "{version}", "deploy/charts/cert-manager"),
    "kube-prometheus-stack": (
        "prometheus-community/helm-charts",
        "kube-prometheus-stack-{version}",
        "charts/kube-prometheus-stack",
    ),
    "loki": ("grafana-community/helm-charts", "loki-{version}", "charts/loki"),
    "alloy": ("grafana/alloy", "helm-chart/{version}", "operations/helm/charts/alloy"),
    "grafana": ("grafana-community/helm-charts", "grafana-{version}", "charts/grafana"),
    "traefik": ("traefik/traefik-helm-chart", "v{version}", "traefik"),
    # The chart's tag names the DCGM release too (4.5.3-4.8.2); the image pin carries that prefix.
    "dcgm-exporter": ("NVIDIA/dcgm-exporter", "{dcgm}-{version}", "deployment"),
}
# Subcharts the program gives values to: parent chart -> dependency names (read from its Chart.yaml).
SUBCHARTS: dict[str, tuple[str, ...]] = {"kube-prometheus-stack": ("grafana",)}
# Custom kind -> (the chart whose repository and tag carry its CRD, the file at that tag).
CHART_CRDS: dict[str, tuple[str, str]] = {
    "cert-manager.io/Certificate": ("cert-manager", "deploy/crds/cert-manager.io_certificates.yaml"),
    "cert-manager.io/ClusterIssuer": ("cert-manager", "deploy/crds/cert-manager.io_clusterissuers.yaml"),
    "monitoring.coreos.com/PrometheusRule": (
        "kube-prometheus-stack",
        "charts/kube-prometheus-stack/charts/crds/crds/crd-prometheusrules.yaml",
    ),
    "monitoring.coreos.com/ServiceMonitor": (
        "kube-prometheus-stack",
        "charts/kube-prometheus-stack/charts/crds/crds/crd-servicemonitors.yaml",
    ),
    "traefik.io/IngressRoute": ("traefik", "traefik/crds/traefik.io_ingressroutes.yaml"),
    "traefik.io/TraefikService": ("traefik", "traefik/crds/traefik.io_traefikservices.yaml"),
    "traefik.io/ServersTransport": ("traefik", "traefik/crds/traefik.io_serverstransports.yaml"),
}
HELM_CONTROLLER = ("k3s-io/helm-controller", "pkg/crds/yaml/generated/helm.cattle.io_helmchartconfigs.yaml")


@dataclass(frozen=True)
class Source:
    """One folder of the upstream tree: a chart (`<chart>-<version>`) or a CRD (`<group>/<Kind>`)."""

    what: str
    repository: str
    tag: str
    path: str  # the chart's folder, or the CRD's file, inside the repository at `tag`

    @property
    def is_chart(self) -> bool:
        return "/" not in self.what

    def target(self, root: Path) -> Path:
        """Where it lives under an upstream root; a chart is there once its values.yaml is."""
        return root / "charts" / self.what / "values.yaml" if self.is_chart else root / "crds" / f"{self.what}.yaml"


def pinned_charts() -> dict[str, str]:
    """Chart name -> the version the program installs (K3s's Traefik: the one K3S_VERSION bundles)."""
    return {
        versions.NVIDIA_DEVICE_PLUGIN_CHART: versions.NVIDIA_DEVICE_PLUGIN_VERSION,
        **{chart[1]: chart[2] for chart in _releases()},
        "traefik": versions.K3S_TRAEFIK_CHART_VERSION,
    }


def _releases() -> tuple[tuple[str, str, str], ...]:
    return (
        versions.CERT_MANAGER_CHART,
        versions.KUBE_PROMETHEUS_STACK_CHART,
        versions.LOKI_CHART,
        versions.ALLOY_CHART,
        versions.DCGM_EXPORTER_CHART,
    )


def chart_source(chart: str, version: str) -> Source:
    repository, tag, path = CHART_REPOSITORIES[chart]
    # dcgm-exporter's tags are `<DCGM release>-<chart version>`: the DCGM release is the image pin's prefix.
    dcgm = versions.DCGM_EXPORTER_IMAGE.rsplit(":", 1)[1].split("-", 1)[0]
    return Source(f"{chart}-{version}", repository, tag.format(version=version, dcgm=dcgm), path)


def sources() -> tuple[Source, ...]:
    """Everything derived from components/catalog/versions.py alone (subcharts need the parent's Chart.yaml)."""
    pins = pinned_charts()
    out = [chart_source(chart, version) for chart, version in pins.items()]
    for kind, (chart, path) in CHART_CRDS.items():
        parent = chart_source(chart, pins[chart])
        out.append(Source(kind, parent.repository, parent.tag, path))
    out.append(
        Source(
            "helm.cattle.io/HelmChartConfig",
            HELM_CONTROLLER[0],
            versions.K3S_HELM_CONTROLLER_VERSION,
            HELM_CONTROLLER[1],
        )
    )
    return tuple(out)


def subchart_sources(root: Path) -> tuple[Source, ...]:
    """The subcharts of SUBCHARTS at the versions their parents' Chart.yaml (under `root`) pin."""
    pins = pinned_charts()
    out = []
    for parent, names in SUBCHARTS.items():
        chart_yaml = root / "charts" / f"{parent}-{pins[parent]}" / "Chart.yaml"
        deps = {d["name"]: str(d["version"]) for d in yaml.safe_load(chart_yaml.read_text()).get("dependencies", [])}
        for name in names:
            out.append(chart_source(name, deps[name]))
    return tuple(out)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gpu-platform" / "upstream"


def missing(root: Path) -> list[str]:
    """What `root` lacks of the pinned versions' files; empty when it has everything."""
    absent = [s.what for s in sources() if not s.target(root).is_file()]
    if not absent:
        absent = [s.what for s in subchart_sources(root) if not s.target(root).is_file()]
    return absent


def locate() -> Path:
    """The upstream root to read: ../shared/upstream, else the cache. Raises LookupError with the fix."""
    tried = []
    for root in (SHARED, cache_dir()):
        lacking = missing(root)
        if not lacking:
            return root
        tried.append(f"{root} lacks {', '.join(lacking)}")
    raise LookupError(
        "the charts' and CRDs' own files at the pinned versions are missing ("
        + "; ".join(tried)
        + "); run `make upstream` to download them"
    )


# --- downloading -------------------------------------------------------------------------------


def _member_path(name: str) -> PurePosixPath | None:
    """A tarball member's path inside the repository (GitHub puts everything under `<repo>-<tag>/`)."""
    parts = PurePosixPath(name).parts
    if len(parts) < 2 or any(p in ("..", "") for p in parts) or name.startswith("/"):
        return None
    return PurePosixPath(*parts[1:])


def _destination(source: Source, path: PurePosixPath, dest: Path) -> Path | None:
    if not source.is_chart:
        return dest / "crds" / f"{source.what}.yaml" if str(path) == source.path else None
    try:
        rel = path.relative_to(source.path)
    except ValueError:
        return None
    if not rel.parts or rel.parts[0] not in CHART_FILES:
        return None
    return dest / "charts" / source.what / rel


def _extract(url: str, wanted: Iterable[Source], dest: Path) -> set[str]:
    """Stream the tarball at `url`; write the members `wanted` needs under `dest`. Returns what was found."""
    wanted = tuple(wanted)
    found: set[str] = set()
    with urllib.request.urlopen(url, timeout=120) as response, tarfile.open(fileobj=response, mode="r|gz") as tar:
        for member in tar:
            path = _member_path(member.name)
            if path is None or not member.isfile():
                continue
            # One file may serve two sources: Traefik's CRDs sit in its chart's crds/ folder.
            targets = [(s, out) for s in wanted if (out := _destination(s, path, dest)) is not None]
            if not targets:
                continue
            data = tar.extractfile(member)
            assert data is not None  # a regular file
            content = data.read()
            for source, out in targets:
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(content)
                found.add(source.what)
    return found


def fetch(dest: Path, base_url: str = CODELOAD) -> list[Source]:
    """Download every source into `dest` (replaced only once everything arrived). Returns the sources."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".upstream-", dir=dest.parent))
    try:
        done: list[Source] = []
        for batch in (sources, lambda: subchart_sources(work)):
            todo = batch()
            by_tarball: dict[tuple[str, str], list[Source]] = {}
            for source in todo:
                by_tarball.setdefault((source.repository, source.tag), []).append(source)
            for (repository, tag), group in by_tarball.items():
                url = f"{base_url}/{repository}/tar.gz/refs/tags/{tag}"
                print(f"{repository}@{tag}: {', '.join(s.what for s in group)}", file=sys.stderr)
                found = _extract(url, group, work)
                lacking = [s.what for s in group if s.what not in found]
                if lacking:
                    raise RuntimeError(f"{url} has no {', '.join(lacking)} at the expected paths")
            done += todo
        if dest.exists():
            shutil.rmtree(dest)
        work.rename(dest)
        return done
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.upstream", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=cache_dir(), help="where to write (default: %(default)s)")
    parser.add_argument("--base-url", default=CODELOAD, help="where the source tarballs come from")
    args = parser.parse_args(argv)
    try:
        fetched = fetch(args.dest, args.base_url)
    except (OSError, RuntimeError, tarfile.TarError) as exc:
        print(f"make upstream: {exc}", file=sys.stderr)
        return 1
    print(f"{len(fetched)} upstream sources in {args.dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
