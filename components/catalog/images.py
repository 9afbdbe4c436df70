"""Image references as typed pins: repository, tag and digest, and whether the digest is pending.

components/catalog/versions.py writes every image as one string (`repository:tag@sha256:...`), the form
Renovate and Dependabot keep current; `ImagePin.parse` reads it back for the plan, the tests and
`make digests`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from components.catalog import versions

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class ImagePin:
    repository: str  # registry host and path, no tag: docker.io/library/postgres
    tag: str
    digest: str | None  # "sha256:<64 hex>"

    @classmethod
    def parse(cls, ref: str) -> ImagePin:
        """`repo:tag` or `repo:tag@sha256:...`; anything else is a ValueError naming the reference."""
        name, _, digest = ref.partition("@")
        last = name.rsplit("/", 1)[-1]
        if ":" not in last:
            raise ValueError(f"image {ref!r} has no tag: pin a release tag (and its digest)")
        repository, tag = name[: len(name) - len(last)] + last.split(":", 1)[0], last.split(":", 1)[1]
        if digest and not _DIGEST.match(digest):
            raise ValueError(f"image {ref!r}: {digest!r} is not a sha256 digest")
        return cls(repository, tag, digest or None)

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}" + (f"@{self.digest}" if self.digest else "")

    @property
    def pending(self) -> str | None:
        """Why this image has no digest yet (versions.DIGEST_PENDING), or None."""
        return digest_pending_reason(self.repository) if self.digest is None else None


def digest_pending_reason(repository: str) -> str | None:
    for key, reason in versions.DIGEST_PENDING.items():
        if repository == key or (key.endswith("/") and repository.startswith(key)):
            return reason
    return None


def pinned_images() -> dict[str, ImagePin]:
    """Every `*_IMAGE` constant of components/catalog/versions.py, parsed."""
    return {
        name: ImagePin.parse(value)
        for name, value in vars(versions).items()
        if name.endswith("_IMAGE") and isinstance(value, str)
    }
