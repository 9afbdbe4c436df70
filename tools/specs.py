"""`make specs`: the published Lambda Cloud and Fly Machines API specs, for the contract tests.

The fake Lambda and Fly servers (tests/fakes/) validate every request they receive and every
response they send against these documents. In the project's own workplace they sit in
`../shared/specs/`; anywhere else (a user's CI) this script downloads them from where each API
publishes its spec into `${XDG_CACHE_HOME:-~/.cache}/gpu-platform/specs/`, under the names the
fakes look for. The Lambda spec must be the version the client and the fake are written against
(SPECS below); a newer published version is refused with a message, not silently used: review
the changes, then bump the version here and in the fake.

The URLs can be overridden (LAMBDA_OPENAPI_URL, FLY_OPENAPI_URL) where a mirror is used.
Usage: `python -m tools.specs [--dest DIR]`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "specs"


@dataclass(frozen=True)
class Spec:
    name: str  # the file name the fakes read
    url: str
    env: str  # the variable that overrides url
    version: str | None  # info.version the file must carry; None when the publisher does not version it


SPECS: tuple[Spec, ...] = (
    Spec(
        "lambda-cloud-openapi-1.8.3.json", "https://cloud.lambda.ai/api/v1/openapi.json", "LAMBDA_OPENAPI_URL", "1.8.3"
    ),
    Spec("fly-machines-openapi.yaml", "https://docs.machines.dev/spec/openapi3.json", "FLY_OPENAPI_URL", None),
)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gpu-platform" / "specs"


def spec_file(name: str) -> Path:
    """The spec `name` from ../shared/specs, else the cache; FileNotFoundError names the fix."""
    for folder in (SHARED, cache_dir()):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(
        f"the published API spec {name} is in neither {SHARED} nor {cache_dir()}; run `make specs` to "
        "download it (the fake servers validate every request and response against it)"
    )


def fetch(dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in SPECS:
        url = os.environ.get(spec.env) or spec.url
        with urllib.request.urlopen(url, timeout=60) as response:
            data = response.read()
        doc = json.loads(data) if data.lstrip()[:1] == b"{" else yaml.safe_load(data)
        if not isinstance(doc, dict) or "openapi" not in doc or "paths" not in doc:
            raise RuntimeError(f"{url} is not an OpenAPI document")
        found = str(doc.get("info", {}).get("version", ""))
        if spec.version is not None and found != spec.version:
            raise RuntimeError(
                f"{url} publishes version {found!r}; the client and fake are written against {spec.version}: "
                f"review the changes, then bump {spec.name} in tools/specs.py and the fake"
            )
        (dest / spec.name).write_bytes(data)
        written.append(dest / spec.name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.specs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=cache_dir(), help="where to write (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        written = fetch(args.dest)
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"make specs: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
