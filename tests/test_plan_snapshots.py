"""Every recorded plan of every phase of both stacks matches its committed fingerprint.

A layout change (a module moved, a function split) must leave these untouched; see
tests/plan_snapshots.py for what a fingerprint covers and how to rewrite them on purpose.
"""

from __future__ import annotations

import json

import pytest

from migrate.harness import RecordedPlan
from tests import plan_snapshots
from tests.conftest import recorded, recorded_preview


def _cached(stack: str, phase: str, view: str) -> RecordedPlan:
    # The session's recordings: other tests of the same worker have usually made them already.
    return recorded_preview(stack, phase) if view == "preview" else recorded(stack, phase)


@pytest.mark.parametrize("view", plan_snapshots.VIEWS)
@pytest.mark.parametrize("stack", plan_snapshots.STACKS)
def test_recorded_plans_match_their_fingerprints(stack: str, view: str) -> None:
    expected = json.loads(plan_snapshots.path(stack, view).read_text())
    actual = plan_snapshots.take(stack, view, _cached)
    problems = plan_snapshots.differences(expected, actual)
    assert not problems, (
        f"{stack} {view}: {len(problems)} difference(s) from tests/plans/ "
        "(rewrite with `python -m tests.plan_snapshots write` only if the change is meant):\n"
        + "\n".join(problems[:40])
    )


def test_a_changed_resource_is_named() -> None:
    expected = {"p0": {"outputs": "a", "resources": {"urn:x": "1", "urn:y": "2"}}, "p1": {"refused": "no"}}
    actual = {
        "p0": {"outputs": "a", "resources": {"urn:x": "9", "urn:z": "3"}},
        "p1": {"outputs": "b", "resources": {}},
    }
    assert plan_snapshots.differences(expected, actual) == [
        "p0: added urn:z",
        "p0: removed urn:y",
        "p0: changed urn:x",
        "p1: was {'refused': 'no'}, now planned",
    ]


def test_dependencies_compare_as_sets() -> None:
    one = {"dependencies": ["b", "a"], "property_dependencies": {"k": ["d", "c"]}}
    two = {"dependencies": ["a", "b"], "property_dependencies": {"k": ["c", "d"]}}
    assert plan_snapshots._digest(plan_snapshots._canonical(one)) == plan_snapshots._digest(
        plan_snapshots._canonical(two)
    )
