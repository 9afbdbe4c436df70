"""`make upstream` and `make specs` (tools/), and the tests' refusal to run without their files.

The scripts download from GitHub and the API publishers, which this machine cannot reach; what is
tested here is everything up to the network: that the list of sources follows components/catalog/versions.py
exactly, that the download of a repository tarball keeps exactly the files the tests read, in the
layout of ../shared/upstream (served from 127.0.0.1), and that a missing file fails with the command.
"""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from components.catalog import versions
from tests.conftest import upstream_root
from tests.fakes import fly_server, lambda_server
from tests.fakes.fly_server import FakeFly
from tests.fakes.lambda_server import FakeLambda
from tests.local import port, serve_http
from tools import specs, upstream

# What the pins in components/catalog/versions.py must expand to (repository and path facts: SOURCES.tsv of
# ../shared/upstream, whose cert-manager folder holds tag v1.21.1's files, see its README).
EXPECTED = {
    ("nvidia-device-plugin-0.19.3", "NVIDIA/k8s-device-plugin", "v0.19.3", "deployments/helm/nvidia-device-plugin"),
    ("cert-manager-v1.21.2", "cert-manager/cert-manager", "v1.21.2", "deploy/charts/cert-manager"),
    (
        "kube-prometheus-stack-86.3.2",
        "prometheus-community/helm-charts",
        "kube-prometheus-stack-86.3.2",
        "charts/kube-prometheus-stack",
    ),
    ("loki-6.56.1", "grafana-community/helm-charts", "loki-6.56.1", "charts/loki"),
    ("alloy-1.5.1", "grafana/alloy", "helm-chart/1.5.1", "operations/helm/charts/alloy"),
    ("traefik-39.0.8", "traefik/traefik-helm-chart", "v39.0.8", "traefik"),
    # The tag carries the DCGM release the image pin names, then the chart's version.
    ("dcgm-exporter-4.8.2", "NVIDIA/dcgm-exporter", "4.5.3-4.8.2", "deployment"),
    (
        "cert-manager.io/Certificate",
        "cert-manager/cert-manager",
        "v1.21.2",
        "deploy/crds/cert-manager.io_certificates.yaml",
    ),
    (
        "cert-manager.io/ClusterIssuer",
        "cert-manager/cert-manager",
        "v1.21.2",
        "deploy/crds/cert-manager.io_clusterissuers.yaml",
    ),
    (
        "monitoring.coreos.com/PrometheusRule",
        "prometheus-community/helm-charts",
        "kube-prometheus-stack-86.3.2",
        "charts/kube-prometheus-stack/charts/crds/crds/crd-prometheusrules.yaml",
    ),
    (
        "monitoring.coreos.com/ServiceMonitor",
        "prometheus-community/helm-charts",
        "kube-prometheus-stack-86.3.2",
        "charts/kube-prometheus-stack/charts/crds/crds/crd-servicemonitors.yaml",
    ),
    ("traefik.io/IngressRoute", "traefik/traefik-helm-chart", "v39.0.8", "traefik/crds/traefik.io_ingressroutes.yaml"),
    (
        "traefik.io/TraefikService",
        "traefik/traefik-helm-chart",
        "v39.0.8",
        "traefik/crds/traefik.io_traefikservices.yaml",
    ),
    (
        "traefik.io/ServersTransport",
        "traefik/traefik-helm-chart",
        "v39.0.8",
        "traefik/crds/traefik.io_serverstransports.yaml",
    ),
    (
        "helm.cattle.io/HelmChartConfig",
        "k3s-io/helm-controller",
        "v0.16.26",
        "pkg/crds/yaml/generated/helm.cattle.io_helmchartconfigs.yaml",
    ),
}


def _rows(found: tuple[upstream.Source, ...]) -> set[tuple[str, str, str, str]]:
    return {(s.what, s.repository, s.tag, s.path) for s in found}


def test_the_sources_follow_the_pins_exactly() -> None:
    assert _rows(upstream.sources()) == EXPECTED


def test_a_bumped_pin_moves_its_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(versions, "LOKI_CHART", (versions.LOKI_CHART[0], "loki", "6.57.0"))
    monkeypatch.setattr(versions, "K3S_TRAEFIK_CHART_VERSION", "40.0.0")
    rows = _rows(upstream.sources())
    assert ("loki-6.57.0", "grafana-community/helm-charts", "loki-6.57.0", "charts/loki") in rows
    assert {r[2] for r in rows if r[1] == "traefik/traefik-helm-chart"} == {"v40.0.0"}


def test_subcharts_come_at_the_version_their_parent_pins() -> None:
    assert _rows(upstream.subchart_sources(upstream_root())) == {
        ("grafana-12.4.8", "grafana-community/helm-charts", "grafana-12.4.8", "charts/grafana")
    }


# --- the download, against tarballs built from ../shared/upstream and served on 127.0.0.1 ---------


def _tarballs(root: Path) -> dict[str, bytes]:
    """URL path -> a GitHub-style source tarball holding each source's files at its repository path."""
    groups: dict[tuple[str, str], list[upstream.Source]] = {}
    for source in (*upstream.sources(), *upstream.subchart_sources(root)):
        groups.setdefault((source.repository, source.tag), []).append(source)
    out = {}
    for (repository, tag), group in groups.items():
        raw = io.BytesIO()
        prefix = f"{repository.split('/')[1]}-{tag.replace('/', '-')}"
        with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=1) as tar:
            tar.add(__file__, arcname=f"{prefix}/README.md")  # a file nobody wants
            for source in group:
                if source.is_chart:
                    tar.add(root / "charts" / source.what, arcname=f"{prefix}/{source.path}")
                else:
                    tar.add(root / "crds" / f"{source.what}.yaml", arcname=f"{prefix}/{source.path}")
        out[f"/{repository}/tar.gz/refs/tags/{tag}"] = raw.getvalue()
    return out


@pytest.fixture
def codeload() -> Iterator[str]:
    tarballs = _tarballs(upstream_root())

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = tarballs.get(self.path)
            self.send_response(200 if body else 404)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    with serve_http(Handler) as server:
        yield f"http://127.0.0.1:{port(server)}"


def _files(folder: Path) -> dict[str, bytes]:
    """The files of a chart folder the tests read (a parent's own charts/ folder is not among them)."""
    return {
        str(f.relative_to(folder)): f.read_bytes()
        for f in folder.rglob("*")
        if f.is_file() and f.relative_to(folder).parts[0] in upstream.CHART_FILES
    }


@pytest.mark.network
def test_fetch_writes_the_layout_the_tests_read(codeload: str, tmp_path: Path) -> None:
    dest = tmp_path / "upstream"
    fetched = upstream.fetch(dest, base_url=codeload)
    assert len(fetched) == len(EXPECTED) + 1  # and grafana
    assert upstream.missing(dest) == []
    shared = upstream_root()
    for source in fetched:
        if source.is_chart:
            want, got = _files(shared / "charts" / source.what), _files(dest / "charts" / source.what)
            assert want.keys() == got.keys(), source.what
            assert all(want[k] == got[k] for k in want), source.what
        else:
            assert source.target(dest).read_bytes() == source.target(shared).read_bytes()
    assert not (dest / "charts" / "README.md").exists()


@pytest.mark.network
def test_fetch_fails_on_a_tag_without_the_files(codeload: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(versions, "ALLOY_CHART", (versions.ALLOY_CHART[0], "alloy", "9.9.9"))
    with pytest.raises(OSError, match="404"):
        upstream.fetch(tmp_path / "upstream", base_url=codeload)
    assert not (tmp_path / "upstream").exists(), "nothing half-fetched is left where the tests look"


# --- nothing found: fail with the command ---------------------------------------------------------


def test_no_upstream_files_fail_with_make_upstream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upstream, "SHARED", tmp_path / "shared")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(LookupError, match=re.escape("run `make upstream`")):
        upstream.locate()


@pytest.mark.parametrize("fake", [FakeLambda, FakeFly])
def test_a_fake_without_its_spec_fails_with_make_specs(
    fake: type[FakeLambda] | type[FakeFly], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(specs, "SHARED", tmp_path / "shared")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match=re.escape("run `make specs`")):
        fake()


def test_the_spec_names_are_the_ones_the_fakes_read() -> None:
    assert {s.name for s in specs.SPECS} == {lambda_server.SPEC_NAME, fly_server.SPEC_NAME}
    assert all(s.url.startswith("https://") for s in specs.SPECS)
