"""Recorded plans of tests/fakes/llama_program.py, once per stack per test session."""

from __future__ import annotations

import functools
from pathlib import Path

from migrate.harness import RecordedPlan, record

PROGRAM = Path(__file__).resolve().parent / "llama_program.py"
# What the program passes for the platform's Retain StorageClass and the Prometheus selector.
STORAGE_CLASS = "test-retain"
MONITOR_LABELS = {"release": "test-monitoring"}


@functools.lru_cache(maxsize=4)
def brain(stack: str) -> RecordedPlan:
    """The llama servers and router for `stack` at p3-local-brain, against stand-in handles."""
    return record(stack, phase="p3-local-brain", program=PROGRAM)
