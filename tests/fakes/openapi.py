"""What the fake API servers share to check traffic against a published OpenAPI document.

openapi-core validates request and response objects through small protocols; these adapters
present what the fake server received or is about to send, as if it had gone to `host_url` (the
spec's own server), so paths match the spec's.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import yaml
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

from tools.fetch import spec_file

__all__ = ["OpenApiRequest", "OpenApiResponse", "describe", "load_spec", "spec_file"]


@functools.lru_cache(maxsize=4)
def load_spec(path: str) -> tuple[Any, dict[str, Any]]:
    """(openapi-core OpenAPI, raw document) for a JSON or YAML spec; loading takes seconds, so once."""
    text = Path(path).read_text()
    raw = yaml.safe_load(text) if path.endswith((".yaml", ".yml")) else json.loads(text)
    return OpenAPI.from_dict(raw), raw


class OpenApiRequest:
    def __init__(
        self, host_url: str, method: str, path: str, query: str, *, headers: dict[str, str], body: bytes | None
    ) -> None:
        self.host_url = host_url
        self.path = path
        self.method = method.lower()
        self.body = body or None
        self.content_type = headers.get("Content-Type") or "application/json"
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qs(query)), header=Headers(headers), cookie=ImmutableMultiDict({})
        )


class OpenApiResponse:
    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.status_code = status
        self.data = body
        self.content_type = headers.get("Content-Type", "")
        self.headers = Headers(headers)


def describe(exc: BaseException) -> str:
    """An openapi-core validation error with its causes and schema errors, on one line."""
    parts = [f"{type(exc).__name__}: {exc}"]
    cause = exc.__cause__
    while cause is not None:
        parts.append(f"{type(cause).__name__}: {cause}")
        for sub in getattr(cause, "schema_errors", ()) or ():
            parts.append(f"  {sub.message}")
        cause = cause.__cause__
    return " <- ".join(parts)
