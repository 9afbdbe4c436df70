"""`make upstream`: the upstream files the tests read, verified against tools/upstream.lock, into the cache.

The tests check chart values against the charts' own files, custom resources against their CRDs,
the fake cloud APIs against the published specs, and the dashboards against dcgm-exporter's metric
list, all at the pinned versions. tools/upstream.lock names each of those files: its path in the
mirror layout (`upstream/...`, `specs/...`), the URL of the raw file at the pinned tag, and its
sha256. This command fills `${XDG_CACHE_HOME:-~/.cache}/gpu-platform/upstream-<lock hash>/` with
exactly those files, taking each from the first of

    ../shared                   the project's own workplace, when it is there
    $GPU_PLATFORM_MIRROR        a directory laid out like ../shared (upstream/, specs/)
    the network                 the URL in the lock

that has it. Every file's sha256 is checked against the lock whatever its source; a mismatch
refuses the file, naming it. The tests read only this cache (`verified_root`), so a changed byte
in a mirror cannot reach them. Once the cache is complete a run only re-hashes it (well under a
second). Standard library only: `make` runs it before the virtualenv exists.
Usage: `python -m tools.fetch [--lock FILE]`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import queue
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "tools" / "upstream.lock"
MIRROR_VARIABLE = "GPU_PLATFORM_MIRROR"
# Per request: connect and each read. A host that drops packets costs this once, not once per file:
# the first download that fails ends the run.
TIMEOUT_S = 10.0
# The whole of one download, name resolution included (urllib's timeout does not bound
# getaddrinfo, which can hang where DNS is unreachable rather than refused).
DEADLINE_S = 30.0
WORKERS = 8


class FetchError(Exception):
    """A file that could not be had or was refused; the message is the one line to print."""


@dataclass(frozen=True)
class Entry:
    sha256: str
    path: str  # in the mirror layout: upstream/... or specs/...
    url: str


def read_lock(lock: Path = LOCK) -> tuple[Entry, ...]:
    entries = []
    for number, line in enumerate(lock.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 3 or len(fields[0]) != 64 or fields[1].startswith("/") or ".." in fields[1].split("/"):
            raise FetchError(f"{lock}:{number}: expected `<sha256> <path> <url>`, found {line.strip()!r}")
        entries.append(Entry(*fields))
    return tuple(entries)


def cache_root(lock: Path = LOCK) -> Path:
    """The cache folder of this lock: one per lock, so two checkouts at different pins do not mix."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    key = hashlib.sha256(lock.read_bytes()).hexdigest()[:12]
    return Path(base) / "gpu-platform" / f"upstream-{key}"


def mirrors() -> list[tuple[str, Path]]:
    """The offline sources, in the order they are tried: ../shared, then $GPU_PLATFORM_MIRROR."""
    found = []
    shared = ROOT.parent / "shared"
    # Only the project's own: a checkout may well sit beside some other folder called `shared`.
    if (shared / "upstream" / "SOURCES.tsv").is_file():
        found.append(("../shared", shared))
    named = os.environ.get(MIRROR_VARIABLE)
    if named:
        if not Path(named).is_dir():
            raise FetchError(f"{MIRROR_VARIABLE}={named} is not a directory (it should hold upstream/ and specs/)")
        found.append((MIRROR_VARIABLE, Path(named)))
    return found


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def _write(root: Path, entry: Entry, data: bytes) -> None:
    """Atomically: a test (or a second `make`) never reads half a file. The temporary file is beside
    the cache root, not in it, where a concurrent run's stray sweep would take it for a stray."""
    target = root / entry.path
    target.parent.mkdir(parents=True, exist_ok=True)
    spool = root.with_name(f".{root.name}.partial")
    spool.mkdir(exist_ok=True)
    temporary = spool / f"{os.getpid()}.{threading.get_ident()}"
    temporary.write_bytes(data)
    os.replace(temporary, target)


def _check(entry: Entry, data: bytes, source: str) -> bytes:
    found = hashlib.sha256(data).hexdigest()
    if found != entry.sha256:
        raise FetchError(
            f"refused {entry.path} from {source}: sha256 {found} is not the lock's {entry.sha256} "
            f"({entry.url}); fix the source, or refresh tools/upstream.lock if the pin moved (`make upstream-lock`)"
        )
    return data


def missing(root: Path, entries: tuple[Entry, ...]) -> list[Entry]:
    """The entries `root` lacks or holds with other bytes."""
    return [e for e in entries if _sha256(root / e.path) != e.sha256]


def _download(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "gpu-platform-fetch"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        return bytes(response.read())


def _download_all(entries: list[Entry]) -> dict[Entry, bytes]:
    """Each entry's bytes from its URL, WORKERS at a time; the first failure (in lock order) ends it.

    The workers are daemon threads and the main thread waits at most DEADLINE_S for each answer,
    so a resolver or host that never answers ends the run in bounded time.
    """
    todo: queue.Queue[Entry] = queue.Queue()
    done: queue.Queue[tuple[Entry, bytes | BaseException]] = queue.Queue()
    for entry in entries:
        todo.put(entry)

    def work() -> None:
        while True:
            try:
                entry = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((entry, _download(entry.url)))
            except Exception as exc:  # reported to the main thread, which names the file
                done.put((entry, exc))

    for _ in range(min(WORKERS, len(entries))):
        threading.Thread(target=work, daemon=True).start()
    got: dict[Entry, bytes] = {}
    failed: dict[Entry, str] = {}
    while len(got) + len(failed) < len(entries):
        try:
            entry, result = done.get(timeout=DEADLINE_S)
        except queue.Empty:
            pending = [e for e in entries if e not in got and e not in failed]
            failed[pending[0]] = f"no answer within {DEADLINE_S:g} s"
            break
        if isinstance(result, BaseException):
            failed[entry] = _reason(result)
            break
        got[entry] = _check(entry, result, entry.url)
    if failed:
        first = next(e for e in entries if e in failed)
        raise FetchError(
            f"{first.path} is missing: no mirror has it and {first.url} failed ({failed[first]}); "
            f"set {MIRROR_VARIABLE} to a directory laid out like ../shared (upstream/, specs/)"
        )
    return got


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


def fetch(lock: Path = LOCK) -> tuple[Path, dict[str, int]]:
    """Make the cache hold exactly the lock's files. Returns the cache root and a count per source."""
    entries = read_lock(lock)
    root = cache_root(lock)
    wanted = missing(root, entries)
    counts = {"cache": len(entries) - len(wanted)}
    offline = mirrors() if wanted else []
    network: list[Entry] = []
    for entry in wanted:
        for name, folder in offline:
            data = _read(folder / entry.path)
            if data is not None:
                _write(root, entry, _check(entry, data, f"{name} ({folder / entry.path})"))
                counts[name] = counts.get(name, 0) + 1
                break
        else:
            network.append(entry)
    # The first file alone: without a network it is the one the error names, and nothing else is tried.
    for batch in (network[:1], network[1:]):
        for entry, data in _download_all(batch).items():
            _write(root, entry, data)
    if network:
        counts["the network"] = len(network)
    _remove_strays(root, {e.path for e in entries})
    return root, counts


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _remove_strays(root: Path, keep: set[str]) -> None:
    """Anything else in the cache (a file dropped there by hand) would be read by a test's glob."""
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            if path.relative_to(root).as_posix() not in keep:
                path.unlink()


def verified_root(lock: Path = LOCK) -> Path:
    """The cache root, once every file in it matches the lock; LookupError names the first gap and the fix."""
    root = cache_root(lock)
    if (lock, root) not in _VERIFIED:
        entries = read_lock(lock)
        lacking = missing(root, entries)
        if lacking:
            raise LookupError(
                f"{root / lacking[0].path} is missing or differs from tools/upstream.lock "
                f"({len(lacking)} of {len(entries)} files); run `make upstream`"
            )
        _VERIFIED.add((lock, root))
    return root


_VERIFIED: set[tuple[Path, Path]] = set()  # checked once per process: the fakes ask for their spec per instance


def spec_file(name: str) -> Path:
    """The published API spec `name` (specs/ of the lock) from the verified cache; FileNotFoundError names the fix."""
    if f"specs/{name}" not in {e.path for e in read_lock()}:
        raise FileNotFoundError(
            f"the API spec {name} is not in tools/upstream.lock; add it to SPECS in tools/upstream.py"
        )
    try:
        return verified_root() / "specs" / name
    except LookupError as exc:
        raise FileNotFoundError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.fetch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--lock", type=Path, default=LOCK, help="the lock file (default: %(default)s)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        root, counts = fetch(args.lock)
    except FetchError as exc:
        print(f"make upstream: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"make upstream: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    fetched = ", ".join(f"{n} from {source}" for source, n in counts.items() if source != "cache" and n)
    if fetched:
        elapsed = time.monotonic() - started
        print(f"upstream files: {fetched}, {counts['cache']} already cached, in {root} ({elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
