"""`make upstream-lock`: write tools/upstream.lock from a mirror, checked against the pins.

The lock names every upstream file the tests read (tools/fetch.py fetches and verifies them):

    upstream/charts/<chart>-<version>/   Chart.yaml, values.yaml, values.schema.json, templates/, crds/
    upstream/crds/<group>/<Kind>.yaml    the CustomResourceDefinition of each custom kind the program creates
    upstream/metrics/<name>.csv          dcgm-exporter's default metric list
    specs/<name>                         the published Lambda Cloud and Fly Machines API specs

Which charts and CRDs, at which versions, follows from components/catalog/versions.py (`sources`);
subcharts whose values the program sets (kube-prometheus-stack's `grafana`) at the version their
parent's Chart.yaml pins. The mirror (../shared, else $GPU_PLATFORM_MIRROR) holds the repositories'
files at the tags its upstream/SOURCES.tsv names; each must agree with the repository, tag and path
derived here, so a pin bumped without its files and a fresh lock fails here and in
tests/test_upstream_tools.py. Each file's URL is the raw file at that tag on GitHub (the specs: where
each API publishes it), its sha256 the mirror's bytes.
Usage: `python -m tools.upstream [--mirror DIR] [--check]`.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from components.catalog import versions
from tools.fetch import LOCK, Entry, FetchError, mirrors, read_lock

RAW = "https://raw.githubusercontent.com"
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
    "dcgm-exporter": ("NVIDIA/dcgm-exporter", "{app}", "deployment"),
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
# dcgm-exporter's metric list: the fields the exporter collects by default, at the chart's tag.
DCGM_METRICS = "etc/default-counters.csv"
# Where the files at a pin come from another tag. cert-manager v1.21.2 was released after the
# mirror's source snapshot; its files are tag v1.21.1's (../shared/upstream/README.md), and
# cert-manager's patch releases do not change chart values or CRDs. Re-check when refreshing.
FILES_TAG: dict[tuple[str, str], str] = {("cert-manager/cert-manager", "v1.21.2"): "v1.21.1"}


@dataclass(frozen=True)
class Spec:
    name: str  # the file name the fakes read (tests/fakes/*_server.py SPEC_NAME)
    url: str  # where the API publishes it


SPECS: tuple[Spec, ...] = (
    Spec("lambda-cloud-openapi-1.8.3.json", "https://cloud.lambda.ai/api/v1/openapi.json"),
    Spec("fly-machines-openapi.yaml", "https://docs.machines.dev/spec/openapi3.json"),
)


@dataclass(frozen=True)
class Source:
    """One row of SOURCES.tsv: a chart (`<chart>-<version>`), a CRD (`<group>/<Kind>`) or a file (`metrics/...`)."""

    what: str
    repository: str
    tag: str  # the tag whose files these are
    path: str  # the chart's folder, or the file, inside the repository at `tag`

    @property
    def is_chart(self) -> bool:
        return "/" not in self.what

    @property
    def mirror_path(self) -> str:
        """Its folder (a chart) or file in the mirror layout."""
        if self.is_chart:
            return f"upstream/charts/{self.what}"
        if self.what.startswith("metrics/"):
            return f"upstream/{self.what}"
        return f"upstream/crds/{self.what}.yaml"

    def url(self, rel: str = "") -> str:
        """The raw file at the tag (`rel`: a file inside a chart's folder)."""
        return f"{RAW}/{self.repository}/refs/tags/{self.tag}/{self.path}{'/' + rel if rel else ''}"


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


def _app_tags() -> dict[str, str]:
    """The `{app}` of a chart's tag format: dcgm-exporter tags its repository `<DCGM>-<exporter>`
    (4.5.3-4.8.2), which is its image pin's tag without the `-distroless` variant."""
    return {"dcgm-exporter": versions.DCGM_EXPORTER_IMAGE.rsplit(":", 1)[1].removesuffix("-distroless")}


def _source(what: str, repository: str, tag: str, path: str) -> Source:
    return Source(what, repository, FILES_TAG.get((repository, tag), tag), path)


def chart_source(chart: str, version: str, app: str = "") -> Source:
    repository, tag, path = CHART_REPOSITORIES[chart]
    return _source(f"{chart}-{version}", repository, tag.format(version=version, app=app), path)


def sources() -> tuple[Source, ...]:
    """Everything derived from components/catalog/versions.py alone (subcharts need the parent's Chart.yaml)."""
    pins = pinned_charts()
    out = [chart_source(chart, version, _app_tags().get(chart, "")) for chart, version in pins.items()]
    for kind, (chart, path) in CHART_CRDS.items():
        parent = chart_source(chart, pins[chart])
        out.append(Source(kind, parent.repository, parent.tag, path))
    out.append(
        _source(
            "helm.cattle.io/HelmChartConfig",
            HELM_CONTROLLER[0],
            versions.K3S_HELM_CONTROLLER_VERSION,
            HELM_CONTROLLER[1],
        )
    )
    dcgm = chart_source("dcgm-exporter", pins["dcgm-exporter"], _app_tags()["dcgm-exporter"])
    out.append(
        Source(f"metrics/dcgm-exporter-{dcgm.tag}-default-counters.csv", dcgm.repository, dcgm.tag, DCGM_METRICS)
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


def all_sources(upstream_root: Path) -> tuple[Source, ...]:
    """sources() and the subcharts, their Chart.yaml read under `upstream_root` (a mirror's upstream/)."""
    return (*sources(), *subchart_sources(upstream_root))


# --- the lock ----------------------------------------------------------------------------------

HEADER = """\
# The upstream files the tests read, at the pinned versions: sha256, path in the mirror layout
# (../shared, $GPU_PLATFORM_MIRROR, the cache), URL of the raw file. `make upstream` (tools/fetch.py)
# refuses any file whose bytes differ. Generated by `make upstream-lock` (tools/upstream.py) from the
# mirror and checked against components/catalog/versions.py: refresh it with a pin, never by hand.
"""


class LockError(Exception):
    """The mirror or the lock disagrees with the pins; the message says where."""


def read_sources_tsv(mirror: Path) -> dict[str, Source]:
    table = mirror / "upstream" / "SOURCES.tsv"
    with table.open(newline="") as handle:
        return {
            row["what"]: Source(row["what"], row["repository"], row["tag"], row["path"])
            for row in csv.DictReader(handle, delimiter="\t")
        }


def _chart_files(folder: Path) -> list[str]:
    """The files of a chart folder the tests read (a parent's own charts/ folder is not among them)."""
    return sorted(
        f.relative_to(folder).as_posix()
        for f in folder.rglob("*")
        if f.is_file() and f.relative_to(folder).parts[0] in CHART_FILES
    )


def entries_from(mirror: Path, listed: dict[str, Source] | None = None) -> list[Entry]:
    """The lock's entries, hashed from `mirror`, after checking its SOURCES.tsv (or `listed`) against the pins."""
    listed = read_sources_tsv(mirror) if listed is None else listed
    out = []
    for source in all_sources(mirror / "upstream"):
        row = listed.get(source.what)
        if row is None:
            raise LockError(
                f"{mirror}/upstream/SOURCES.tsv has no {source.what} (the pins want {source.repository}@{source.tag}); "
                "add its files to the mirror first"
            )
        if row != source:
            raise LockError(f"{mirror}/upstream/SOURCES.tsv has {source.what} from {row}, the pins derive {source}")
        target = mirror / source.mirror_path
        if source.is_chart:
            files = _chart_files(target)
            if "Chart.yaml" not in files or "values.yaml" not in files:
                raise LockError(f"{target} lacks Chart.yaml or values.yaml")
            out += [_entry(mirror, f"{source.mirror_path}/{rel}", source.url(rel)) for rel in files]
        else:
            out.append(_entry(mirror, source.mirror_path, source.url()))
    out += [_entry(mirror, f"specs/{spec.name}", spec.url) for spec in SPECS]
    return sorted(out, key=lambda e: e.path)


def _entry(mirror: Path, path: str, url: str) -> Entry:
    try:
        data = (mirror / path).read_bytes()
    except FileNotFoundError:
        raise LockError(f"{mirror / path} is missing from the mirror") from None
    return Entry(hashlib.sha256(data).hexdigest(), path, url)


def render(entries: list[Entry]) -> str:
    return HEADER + "".join(f"{e.sha256}  {e.path}  {e.url}\n" for e in entries)


def problems(entries: tuple[Entry, ...], upstream_root: Path) -> list[str]:
    """Where the lock and the pins disagree: a source without its files, a file without its source or URL.

    `upstream_root` holds the parents' Chart.yaml that name the subcharts (the verified cache will do).
    """
    expected: dict[str, str] = {f"specs/{s.name}": s.url for s in SPECS}
    found = []
    by_path = {e.path: e for e in entries}
    for source in all_sources(upstream_root):
        if source.is_chart:
            prefix = source.mirror_path + "/"
            mine = [p for p in by_path if p.startswith(prefix)]
            if not {prefix + "Chart.yaml", prefix + "values.yaml"} <= set(mine):
                found.append(f"no Chart.yaml and values.yaml of {source.what} ({source.repository}@{source.tag})")
            expected.update({p: source.url(p.removeprefix(prefix)) for p in mine})
        else:
            expected[source.mirror_path] = source.url()
    for path, url in expected.items():
        entry = by_path.get(path)
        if entry is None:
            found.append(f"no entry for {path}")
        elif entry.url != url:
            found.append(f"{path} comes from {entry.url}, the pins say {url}")
    found += [f"{path} belongs to no pinned source" for path in by_path if path not in expected]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.upstream", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--mirror", type=Path, help="laid out like ../shared (default: ../shared, else $GPU_PLATFORM_MIRROR)"
    )
    parser.add_argument("--lock", type=Path, default=LOCK, help="the lock to write or check (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="only compare the lock with what the mirror gives")
    args = parser.parse_args(argv)
    try:
        mirror = args.mirror or next((folder for _name, folder in mirrors()), None)
        if mirror is None:
            raise LockError("no mirror: neither ../shared nor $GPU_PLATFORM_MIRROR; pass --mirror DIR")
        text = render(entries_from(mirror))
        if args.check:
            current = args.lock.read_text() if args.lock.is_file() else ""
            if current != text:
                old, new = set(current.splitlines()), set(text.splitlines())
                changed = sorted({line.split()[1] for line in old ^ new if line and not line.startswith("#")})
                raise LockError(
                    f"{args.lock} is out of date for {len(changed)} files (first: {changed[:1]}); "
                    "run `make upstream-lock`"
                )
            return 0
        args.lock.write_text(text)
        print(f"{args.lock}: {len(read_lock(args.lock))} files from {mirror}")
    except (LockError, FetchError, OSError, yaml.YAMLError) as exc:
        print(f"make upstream-lock: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
