"""tools/upstream.lock, `make upstream` (tools/fetch.py) and `make upstream-lock` (tools/upstream.py).

What is proven here: the lock follows the pins in components/catalog/versions.py (a bumped pin without
a fresh lock fails); it covers every file the tests' readers open, and they open them only from
the verified cache; the fetch command itself, run as `make upstream` runs it from a copy of the
project with no ../shared beside it, takes the files from $GPU_PLATFORM_MIRROR or from the lock's
URLs (served from 127.0.0.1), refuses a changed byte whatever its source, and without either source
fails at once with one line. GitHub and the API publishers are not reachable here: that the lock's
URLs serve these bytes is what the mirror's SOURCES.tsv states, not checked (README, "Testing").
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from components.catalog import versions
from tests import test_chart_values, test_manifests
from tests.conftest import upstream_root
from tests.fakes import fly_server, lambda_server
from tests.fakes.fly_server import FakeFly
from tests.fakes.lambda_server import FakeLambda
from tests.local import port, serve_http
from tools import fetch, upstream

ROOT = Path(__file__).resolve().parent.parent

# What the pins in components/catalog/versions.py must expand to (repository, tag and path facts:
# ../shared/upstream/SOURCES.tsv; its cert-manager folder holds tag v1.21.1's files, see its README).
EXPECTED = {
    ("nvidia-device-plugin-0.19.3", "NVIDIA/k8s-device-plugin", "v0.19.3", "deployments/helm/nvidia-device-plugin"),
    ("cert-manager-v1.21.2", "cert-manager/cert-manager", "v1.21.1", "deploy/charts/cert-manager"),
    (
        "kube-prometheus-stack-86.3.2",
        "prometheus-community/helm-charts",
        "kube-prometheus-stack-86.3.2",
        "charts/kube-prometheus-stack",
    ),
    ("loki-6.56.1", "grafana-community/helm-charts", "loki-6.56.1", "charts/loki"),
    ("alloy-1.5.1", "grafana/alloy", "helm-chart/1.5.1", "operations/helm/charts/alloy"),
    ("traefik-39.0.8", "traefik/traefik-helm-chart", "v39.0.8", "traefik"),
    ("dcgm-exporter-4.8.2", "NVIDIA/dcgm-exporter", "4.5.3-4.8.2", "deployment"),
    (
        "metrics/dcgm-exporter-4.5.3-4.8.2-default-counters.csv",
        "NVIDIA/dcgm-exporter",
        "4.5.3-4.8.2",
        "etc/default-counters.csv",
    ),
    (
        "cert-manager.io/Certificate",
        "cert-manager/cert-manager",
        "v1.21.1",
        "deploy/crds/cert-manager.io_certificates.yaml",
    ),
    (
        "cert-manager.io/ClusterIssuer",
        "cert-manager/cert-manager",
        "v1.21.1",
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
    monkeypatch.setattr(versions, "CERT_MANAGER_CHART", (versions.CERT_MANAGER_CHART[0], "cert-manager", "v1.21.3"))
    rows = _rows(upstream.sources())
    assert ("loki-6.57.0", "grafana-community/helm-charts", "loki-6.57.0", "charts/loki") in rows
    assert {r[2] for r in rows if r[1] == "traefik/traefik-helm-chart"} == {"v40.0.0"}
    # The v1.21.1 stand-in was for v1.21.2 only.
    assert {r[2] for r in rows if r[1] == "cert-manager/cert-manager"} == {"v1.21.3"}


def test_subcharts_come_at_the_version_their_parent_pins() -> None:
    assert _rows(upstream.subchart_sources(upstream_root())) == {
        ("grafana-12.4.8", "grafana-community/helm-charts", "grafana-12.4.8", "charts/grafana")
    }


# --- the lock against the pins and the readers ------------------------------------------------------


def test_the_lock_agrees_with_the_pins() -> None:
    entries = fetch.read_lock()
    assert upstream.problems(entries, upstream_root()) == []
    assert len({e.path for e in entries}) == len(entries)


def test_a_pin_bumped_without_a_fresh_lock_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(versions, "LOKI_CHART", (versions.LOKI_CHART[0], "loki", "6.57.0"))
    found = upstream.problems(fetch.read_lock(), upstream_root())
    assert "no Chart.yaml and values.yaml of loki-6.57.0 (grafana-community/helm-charts@loki-6.57.0)" in found
    assert any(p.startswith("upstream/charts/loki-6.56.1/values.yaml belongs to no pinned source") for p in found)


def test_the_lock_is_what_the_mirror_gives() -> None:
    """`make upstream-lock --check`: the mirror's files (all of each chart's templates, say) are all locked.

    Against ../shared or $GPU_PLATFORM_MIRROR; with neither (the lock's files came from the network),
    against the verified cache, with a SOURCES.tsv written from the pins as the network path trusts them.
    """
    found = fetch.mirrors()
    if found:
        mirror = found[0][1]
        assert upstream.main(["--mirror", str(mirror), "--check"]) == 0
    else:
        pinned = {s.what: s for s in upstream.all_sources(upstream_root())}
        entries = upstream.entries_from(fetch.verified_root(), pinned)
        assert upstream.render(entries) == fetch.LOCK.read_text()


def _mirror_with_sources(tmp_path: Path, rows: list[upstream.Source]) -> Path:
    """The verified files as a mirror, with a SOURCES.tsv of `rows`."""
    mirror = tmp_path / "mirror"
    shutil.copytree(fetch.verified_root(), mirror)
    lines = ["what\trepository\ttag\tpath"] + [f"{r.what}\t{r.repository}\t{r.tag}\t{r.path}" for r in rows]
    (mirror / "upstream" / "SOURCES.tsv").write_text("\n".join(lines) + "\n")
    return mirror


def test_the_lock_command_checks_the_mirror_against_the_pins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = list(upstream.all_sources(upstream_root()))
    mirror = _mirror_with_sources(tmp_path, rows)
    written = tmp_path / "upstream.lock"
    assert upstream.main(["--mirror", str(mirror), "--lock", str(written)]) == 0
    assert written.read_text() == fetch.LOCK.read_text()

    # A mirror whose loki files are another tag's than the pin's.
    loki = next(r for r in rows if r.what.startswith("loki-"))
    wrong = [r if r != loki else upstream.Source(r.what, r.repository, "loki-6.55.0", r.path) for r in rows]
    _mirror_with_sources(tmp_path / "b", wrong)
    assert upstream.main(["--mirror", str(tmp_path / "b" / "mirror"), "--lock", str(written)]) == 1
    assert f"has {loki.what} from " in capsys.readouterr().err

    # A file the lock names that the mirror lacks; and a mirror file the committed lock lacks.
    (mirror / "upstream/crds/traefik.io/IngressRoute.yaml").unlink()
    assert upstream.main(["--mirror", str(mirror), "--check"]) == 1
    assert "upstream/crds/traefik.io/IngressRoute.yaml is missing from the mirror" in capsys.readouterr().err
    shutil.copy(
        mirror / "upstream/crds/traefik.io/TraefikService.yaml", mirror / "upstream/crds/traefik.io/IngressRoute.yaml"
    )
    (mirror / "upstream/charts/loki-6.56.1/templates/new.yaml").write_text("kind: New\n")
    assert upstream.main(["--mirror", str(mirror), "--check"]) == 1
    err = capsys.readouterr().err
    assert "is out of date for 2 files" in err and "run `make upstream-lock`" in err


@pytest.fixture
def opened() -> Iterator[list[Path]]:
    """Every file opened while the fixture is in use (an audit hook cannot be removed, so it is switched)."""
    files: list[Path] = []
    active = [True]

    def hook(event: str, args: tuple[object, ...]) -> None:
        if active[0] and event == "open" and isinstance(args[0], str):
            files.append(Path(args[0]))

    sys.addaudithook(hook)
    try:
        yield files
    finally:
        active[0] = False


def test_the_lock_covers_every_file_the_readers_open(opened: list[Path]) -> None:
    """The tests' own readers, run afresh: every upstream file they open is a locked file of the verified cache."""
    for name, version in upstream.pinned_charts().items():
        test_chart_values.chart.__wrapped__(name, version)
    for kind in (*upstream.CHART_CRDS, "helm.cattle.io/HelmChartConfig"):
        group, _, name = kind.partition("/")
        with pytest.raises(AssertionError, match="is not a served version"):
            test_manifests.crd_validator.__wrapped__(f"{group}/v0", name)  # opens the file, then refuses v0
    opened += [fetch.spec_file(lambda_server.SPEC_NAME), fetch.spec_file(fly_server.SPEC_NAME)]

    root = fetch.verified_root()
    mirrors = [folder.resolve() for _name, folder in fetch.mirrors()]
    upstream_files = {p for p in opened if root in p.parents or any(m in p.resolve().parents for m in mirrors)}
    locked = {root / e.path for e in fetch.read_lock()}
    assert upstream_files <= locked, sorted(upstream_files - locked)[:5]
    # They did read: every chart's templates, every CRD, both specs.
    assert {p.relative_to(root).parts[2] for p in upstream_files if p.parts[-2] == "templates"} >= {
        f"{n}-{v}" for n, v in upstream.pinned_charts().items()
    }
    assert sum(1 for p in upstream_files if p.relative_to(root).parts[1] == "crds") == len(upstream.CHART_CRDS) + 1
    assert {p.name for p in upstream_files if p.parent.name == "specs"} == {
        lambda_server.SPEC_NAME,
        fly_server.SPEC_NAME,
    }


def test_the_spec_names_are_the_ones_the_fakes_read() -> None:
    assert {s.name for s in upstream.SPECS} == {lambda_server.SPEC_NAME, fly_server.SPEC_NAME}
    assert all(s.url.startswith("https://") for s in upstream.SPECS)


# --- the fetch command, from a copy of the project with no ../shared beside it ----------------------


def _project(tmp_path: Path, urls: str | None = None) -> Path:
    """tools/fetch.py and the lock in `tmp_path/repo` (`urls`: a base that replaces each URL's scheme and host)."""
    repo = tmp_path / "repo"
    (repo / "tools").mkdir(parents=True, exist_ok=True)
    for name in ("__init__.py", "fetch.py"):
        shutil.copy(ROOT / "tools" / name, repo / "tools" / name)
    text = fetch.LOCK.read_text()
    if urls is not None:
        for entry in fetch.read_lock():
            text = text.replace(f"  {entry.url}\n", f"  {_moved(entry.url, urls)}\n")
    (repo / "tools" / "upstream.lock").write_text(text)
    return repo


def _moved(url: str, base: str) -> str:
    parts = urlsplit(url)
    return f"{base}/{parts.netloc}{parts.path}"


def _run(
    repo: Path,
    tmp_path: Path,
    mirror: Path | None = None,
    command: tuple[str, ...] = (sys.executable, "-m", "tools.fetch"),
) -> subprocess.CompletedProcess[str]:
    """`make upstream`'s command (or `command`), with HOME and the cache in tmp_path."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    if mirror is not None:
        env[fetch.MIRROR_VARIABLE] = str(mirror)
    return subprocess.run(
        command,
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def _cache(repo: Path, tmp_path: Path) -> Path:
    lock = repo / "tools" / "upstream.lock"
    return tmp_path / "cache" / "gpu-platform" / f"upstream-{hashlib.sha256(lock.read_bytes()).hexdigest()[:12]}"


def test_a_mirror_fills_the_cache_and_a_changed_byte_is_refused(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    shutil.copytree(fetch.verified_root(), mirror)
    repo = _project(tmp_path)
    done = _run(repo, tmp_path, mirror)
    assert done.returncode == 0, done.stderr
    assert f"{len(fetch.read_lock())} from GPU_PLATFORM_MIRROR" in done.stdout
    cache = _cache(repo, tmp_path)
    assert fetch.missing(cache, fetch.read_lock()) == []

    # One byte flipped in the mirror, the cached copy gone: the mirror's file is refused, by name.
    victim = "upstream/charts/loki-6.56.1/values.yaml"
    data = bytearray((mirror / victim).read_bytes())
    data[100] ^= 0x01
    (mirror / victim).write_bytes(bytes(data))
    (cache / victim).unlink()
    (cache / "upstream/charts/loki-6.56.1/templates/dropped-in.yaml").write_text("kind: Stray\n")
    refused = _run(repo, tmp_path, mirror)
    assert refused.returncode == 1
    (line,) = refused.stderr.splitlines()
    assert line.startswith(f"make upstream: refused {victim} from GPU_PLATFORM_MIRROR ({mirror / victim}): sha256 ")
    assert not (cache / victim).exists(), "the refused bytes never reach the cache the tests read"

    # A changed byte in the cache itself is not trusted either: the good mirror replaces it, strays go.
    (mirror / victim).write_bytes((fetch.verified_root() / victim).read_bytes())
    (cache / "specs/fly-machines-openapi.yaml").write_text("openapi: 3.0.0\n")
    repaired = _run(repo, tmp_path, mirror)
    assert repaired.returncode == 0, repaired.stderr
    assert "2 from GPU_PLATFORM_MIRROR" in repaired.stdout
    assert fetch.missing(cache, fetch.read_lock()) == []
    assert not (cache / "upstream/charts/loki-6.56.1/templates/dropped-in.yaml").exists()

    # Complete: a no-op that writes nothing and says nothing.
    started = time.monotonic()
    again = _run(repo, tmp_path, mirror)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    assert time.monotonic() - started < 10  # generous: measured figures are in the README


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_no_mirror_and_no_network_fails_at_once_with_one_line(tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{_closed_port()}"
    repo = _project(tmp_path, urls=base)
    started = time.monotonic()
    failed = _run(repo, tmp_path)
    elapsed = time.monotonic() - started
    first = fetch.read_lock()[0]
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert failed.stderr.splitlines() == [
        f"make upstream: {first.path} is missing: no mirror has it and {_moved(first.url, base)} failed "
        "([Errno 111] Connection refused); set GPU_PLATFORM_MIRROR to a directory laid out like ../shared "
        "(upstream/, specs/)"
    ]
    assert elapsed < 60


def test_make_test_stops_before_anything_else_runs(tmp_path: Path) -> None:
    """`make test` in a copy of the checkout, no ../shared, no mirror, no network: the one line, nothing ran."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(".git", ".venv", ".*_cache", "__pycache__"))
    base = f"http://127.0.0.1:{_closed_port()}"
    _project(tmp_path, urls=base)  # the lock in the copy, its URLs on a closed port
    started = time.monotonic()
    stopped = _run(repo, tmp_path, command=("make", "test", f"PYTHON={sys.executable}"))
    assert time.monotonic() - started < 60
    assert stopped.returncode == 2
    first = fetch.read_lock()[0]
    ours, makes = stopped.stderr.splitlines()
    assert ours.startswith(f"make upstream: {first.path} is missing: no mirror has it and {_moved(first.url, base)}")
    assert makes.startswith("make: *** [Makefile:") and makes.endswith(": upstream] Error 1")
    assert stopped.stdout == "", "no other step printed anything: none ran"
    assert not (repo / ".venv").exists()


def test_a_host_that_never_answers_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A listener that accepts and stays silent (a dropped route looks the same once connected)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        repo = _project(tmp_path, urls=f"http://127.0.0.1:{silent.getsockname()[1]}")
        monkeypatch.setattr(fetch, "ROOT", repo)
        monkeypatch.setattr(fetch, "TIMEOUT_S", 0.5)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        monkeypatch.delenv(fetch.MIRROR_VARIABLE, raising=False)
        started = time.monotonic()
        with pytest.raises(fetch.FetchError, match=r"is missing: no mirror has it and .* failed \(timed out\)"):
            fetch.fetch(repo / "tools" / "upstream.lock")
        assert time.monotonic() - started < 5


def test_a_resolver_that_never_answers_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib's timeout does not cover name resolution; the per-download deadline does (a stuck getaddrinfo)."""
    stuck = threading.Event()
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: stuck.wait())
    repo = _project(tmp_path, urls="http://upstream.invalid")
    monkeypatch.setattr(fetch, "ROOT", repo)
    monkeypatch.setattr(fetch, "DEADLINE_S", 0.5)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(fetch.MIRROR_VARIABLE, raising=False)
    started = time.monotonic()
    try:
        with pytest.raises(
            fetch.FetchError, match=r"is missing: no mirror has it and .* failed \(no answer within 0.5 s\)"
        ):
            fetch.fetch(repo / "tools" / "upstream.lock")
    finally:
        stuck.set()
    assert time.monotonic() - started < 5


@pytest.fixture
def raw_files() -> Iterator[tuple[str, dict[str, bytes]]]:
    """The verified files served on 127.0.0.1 under `/<host>/<path>` of their URLs, as GitHub's raw host would."""
    root = fetch.verified_root()
    files = {_moved(e.url, ""): (root / e.path).read_bytes() for e in fetch.read_lock()}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    with serve_http(Handler) as server:
        yield f"http://127.0.0.1:{port(server)}", files


@pytest.mark.network
def test_the_network_path_fetches_and_checks_every_file(
    tmp_path: Path, raw_files: tuple[str, dict[str, bytes]]
) -> None:
    base, files = raw_files
    repo = _project(tmp_path, urls=base)
    done = _run(repo, tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"{len(fetch.read_lock())} from the network" in done.stdout  # three URLs serve two paths each
    cache = _cache(repo, tmp_path)
    root = fetch.verified_root()
    assert all((cache / e.path).read_bytes() == (root / e.path).read_bytes() for e in fetch.read_lock())

    # What the host serves is checked like a mirror's bytes.
    entry = fetch.read_lock()[-1]
    files[_moved(entry.url, "")] = files[_moved(entry.url, "")] + b"\n"
    (cache / entry.path).unlink()
    refused = _run(repo, tmp_path)
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"make upstream: refused {entry.path} from {_moved(entry.url, base)}: sha256 ")
    # And a tag that does not have the file.
    del files[_moved(entry.url, "")]
    gone = _run(repo, tmp_path)
    assert f"{entry.path} is missing: no mirror has it and {_moved(entry.url, base)} failed (HTTP 404)" in gone.stderr


# --- nothing fetched: the tests fail with the command ---------------------------------------------


def test_an_empty_cache_fails_with_make_upstream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(LookupError, match=r"run `make upstream`"):
        fetch.verified_root()


@pytest.mark.parametrize("fake", [FakeLambda, FakeFly])
def test_a_fake_without_its_spec_fails_with_make_upstream(
    fake: type[FakeLambda] | type[FakeFly], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match=r"run `make upstream`"):
        fake()


def test_a_malformed_lock_line_is_named(tmp_path: Path) -> None:
    lock = tmp_path / "upstream.lock"
    lock.write_text("# header\nabc upstream/x\n")
    with pytest.raises(fetch.FetchError, match=r"upstream.lock:2: expected `<sha256> <path> <url>`"):
        fetch.read_lock(lock)
