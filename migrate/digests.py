"""`python -m migrate.digests` (`make digests`): resolve each pinned image's digest from its registry.

For every `*_IMAGE` pin in components/catalog/versions.py it asks the image's registry, over the OCI
distribution API (`HEAD /v2/<name>/manifests/<tag>`, with the anonymous bearer token the registry's
challenge names), which digest the tag points at now: the multi-arch index where there is one, so
every node pulls the same content whatever its architecture. Then:

- a pin without a digest: prints the reference with its digest; `--write` puts it into
  components/catalog/versions.py (and the repository's DIGEST_PENDING entry has to go, by hand, with
  its line in policy/config.prod.json: the tests say which);
- a pin with a digest: checks that the tag still points at it. A tag that moved is reported, never
  silently followed: someone decides whether the new content is the release that was reviewed.

Exit codes: 0 every pin resolved (and, with digests, unchanged); 1 a tag moved or a registry
refused; 2 bad input. Needs the network; nothing else in the project does.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests

from components.catalog.images import ImagePin, pinned_images

VERSIONS = Path(__file__).resolve().parent.parent / "components" / "catalog" / "versions.py"
# The index (multi-arch) media types first: its digest is the one a node's runtime resolves too.
ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
TIMEOUT = 20


class RegistryError(Exception):
    """A registry refused or answered something that is not a digest."""


def registry_url(host: str) -> str:
    """The API endpoint of an image's registry host (Docker Hub serves docker.io elsewhere)."""
    return "https://registry-1.docker.io" if host == "docker.io" else f"https://{host}"


def _split(repository: str) -> tuple[str, str]:
    host, _, name = repository.partition("/")
    if "." not in host and ":" not in host and host != "localhost":
        host, name = "docker.io", repository  # a Docker Hub short name
    return host, name


def _token(session: requests.Session, challenge: str, name: str) -> str:
    scheme, _, params = challenge.partition(" ")
    if scheme.lower() != "bearer":
        raise RegistryError(f"unsupported authentication challenge {challenge!r}")
    fields = dict(_CHALLENGE.findall(params))
    if "realm" not in fields:
        raise RegistryError(f"authentication challenge without a realm: {challenge!r}")
    query = {"service": fields.get("service", ""), "scope": fields.get("scope", f"repository:{name}:pull")}
    answer = session.get(fields["realm"], params=query, timeout=TIMEOUT)
    if answer.status_code != 200:
        raise RegistryError(f"token endpoint {fields['realm']} answered {answer.status_code}")
    body = answer.json()
    token = body.get("token") or body.get("access_token")
    if not isinstance(token, str) or not token:
        raise RegistryError(f"token endpoint {fields['realm']} returned no token")
    return token


def resolve(pin: ImagePin, session: requests.Session, base_url: Callable[[str], str] = registry_url) -> str:
    """The digest `pin`'s tag points at now, as `sha256:<hex>`."""
    host, name = _split(pin.repository)
    url = f"{base_url(host)}/v2/{name}/manifests/{pin.tag}"
    headers = {"Accept": ACCEPT}
    answer = session.head(url, headers=headers, timeout=TIMEOUT)
    if answer.status_code == 401 and "WWW-Authenticate" in answer.headers:
        headers["Authorization"] = f"Bearer {_token(session, answer.headers['WWW-Authenticate'], name)}"
        answer = session.head(url, headers=headers, timeout=TIMEOUT)
    if answer.status_code != 200:
        raise RegistryError(f"{pin.repository}:{pin.tag}: {url} answered {answer.status_code}")
    digest = answer.headers.get("Docker-Content-Digest", "")
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise RegistryError(f"{pin.repository}:{pin.tag}: no sha256 Docker-Content-Digest header (got {digest!r})")
    return digest


@dataclass(frozen=True)
class Outcome:
    name: str  # the versions.py constant
    pin: ImagePin
    digest: str | None  # None: the registry could not say
    problem: str  # "" when fine

    @property
    def moved(self) -> bool:
        return bool(self.pin.digest and self.digest and self.digest != self.pin.digest)


def check_all(
    pins: dict[str, ImagePin], session: requests.Session, base_url: Callable[[str], str] = registry_url
) -> list[Outcome]:
    out = []
    for name, pin in sorted(pins.items()):
        try:
            digest: str | None = resolve(pin, session, base_url)
        except (RegistryError, requests.RequestException, ValueError) as exc:
            out.append(Outcome(name, pin, None, str(exc)))
            continue
        problem = ""
        if pin.digest and digest != pin.digest:
            problem = f"the tag {pin.tag} moved: pinned {pin.digest}, the registry now says {digest}"
        out.append(Outcome(name, pin, digest, problem))
    return out


def write_digests(text: str, outcomes: Sequence[Outcome]) -> tuple[str, list[str]]:
    """versions.py with each newly resolved digest appended to its literal; the names it could not."""
    skipped = []
    for o in outcomes:
        if o.pin.digest or not o.digest:
            continue
        literal = f'"{o.pin.repository}:{o.pin.tag}"'
        if text.count(literal) != 1:
            skipped.append(o.name)  # composed from other constants, or written twice: by hand
            continue
        text = text.replace(literal, f'"{o.pin.repository}:{o.pin.tag}@{o.digest}"')
    return text, skipped


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m migrate.digests", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--write", action="store_true", help="append resolved digests to components/catalog/versions.py"
    )
    parser.add_argument("--only", action="append", metavar="CONSTANT", help="only this versions.py constant")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    pins = pinned_images()
    if args.only:
        unknown = sorted(set(args.only) - set(pins))
        if unknown:
            print(f"--only: not an image pin in components/catalog/versions.py: {', '.join(unknown)}", file=sys.stderr)
            return 2
        pins = {k: v for k, v in pins.items() if k in args.only}
    with requests.Session() as session:
        outcomes = check_all(pins, session)
    for o in outcomes:
        if o.problem:
            print(f"{o.name}: {o.problem}")
        elif o.pin.digest:
            print(f"{o.name}: {o.pin.ref} (unchanged)")
        else:
            print(f"{o.name}: {o.pin.ref}@{o.digest}")
    if args.write:
        text, skipped = write_digests(VERSIONS.read_text(), outcomes)
        VERSIONS.write_text(text)
        for name in skipped:
            print(f"{name}: not written (its reference is composed or repeated in versions.py); add the digest by hand")
    return 1 if any(o.problem for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
