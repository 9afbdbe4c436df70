"""Migration phases as data: order, cumulative merge, invariants and exit criteria."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml

from components.config import phases
from components.core.errors import ConfigError

REQUIRED_PREFIXES = ("p0", "p1", "p2a", "p2b", "p2c", "p3", "p4")


def test_phases_cover_the_whole_migration_in_file_name_order() -> None:
    ids = phases.phase_ids()
    assert list(ids) == sorted(ids)
    for prefix in REQUIRED_PREFIXES:
        assert any(i.startswith(prefix + "-") or i.startswith(prefix) for i in ids), prefix
    assert ids[0] == "p0-baseline" and ids[-1].startswith("p4-")


def test_each_file_declares_only_its_delta_and_the_state_is_cumulative() -> None:
    loaded = phases.load_phases()
    k3s = phases.resolve("p2a-k3s")
    assert "k3s" in k3s.changes and "backups" not in k3s.changes
    assert k3s.state.backups.bucket, "p0's bucket is still there at p2a"
    assert k3s.state.legacy.fly_apps == "stopped", "p1's freeze is still in force at p2a"
    # Every later phase keeps everything an earlier phase switched on, unless it says otherwise.
    for earlier, later in itertools.pairwise(loaded):
        assert later.index == earlier.index + 1
        assert later.state.backups.bucket >= earlier.state.backups.bucket
        assert later.state.k3s.cluster >= earlier.state.k3s.cluster


def test_traffic_weights_step_up_through_the_p2b_sub_phases() -> None:
    weights = [phases.resolve(i).state.traffic.k3s_weight for i in phases.phase_ids() if i.startswith("p2b")]
    assert weights == [10, 50, 100]


def test_sub_phases_change_only_the_traffic_weight() -> None:
    for phase_id in phases.phase_ids():
        if phase_id.startswith("p2b") and phase_id != "p2b-services":
            assert phases.resolve(phase_id).changes == {"traffic": {"k3sWeight": int(phase_id.rsplit("-", 1)[1])}}


def test_every_phase_has_exit_criteria_with_known_checks() -> None:
    for phase in phases.load_phases():
        assert phase.exit_criteria.checklist
        assert set(phase.exit_criteria.checks) <= phases.CHECK_NAMES
        assert phase.rollback, f"{phase.id} must say how to roll back"


def test_only_decommission_is_irreversible() -> None:
    irreversible = {p.id: p.irreversible for p in phases.load_phases() if p.irreversible}
    assert irreversible == {"p4-decommission": ("fly-destroy",)}
    assert phases.irreversible_between("p4-decommission", "p3-local-brain") == [("p4-decommission", "fly-destroy")]
    assert phases.irreversible_between("p3-local-brain", "p0-baseline") == []
    assert phases.irreversible_between("p0-baseline", "p4-decommission") == []


def _write(tmp: Path, name: str, doc: dict) -> None:  # type: ignore[type-arg]
    (tmp / f"{name}.yaml").write_text(yaml.safe_dump(doc))


def _phase(pid: str, changes: dict, checks: list[str] | None = None) -> dict:  # type: ignore[type-arg]
    return {
        "id": pid,
        "title": pid,
        "summary": "s",
        "changes": changes,
        "rollback": "r",
        "exitCriteria": {"checklist": ["x"], "checks": checks or []},
    }


def test_a_phase_that_skips_a_prerequisite_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "p0-a", _phase("p0-a", {"backups": {"bucket": True}}))
    _write(tmp_path, "p1-b", _phase("p1-b", {"legacy": {"flyApps": "destroyed"}}))
    phases.load_phases.cache_clear()
    with pytest.raises(ConfigError, match=r"p1-b\.yaml: .*flyApps=destroyed needs fly\.snapshots"):
        phases.load_phases(tmp_path)


def test_unknown_check_and_mismatched_id_are_refused(tmp_path: Path) -> None:
    _write(tmp_path, "p0-a", _phase("p0-a", {}, checks=["vibes-ok"]))
    with pytest.raises(ConfigError, match=r"unknown machine check.*vibes-ok"):
        phases.load_phases(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _write(other, "p0-a", _phase("p0-b", {}))
    with pytest.raises(ConfigError, match=r"id 'p0-b' must equal the file name 'p0-a'"):
        phases.load_phases(other)


def test_typo_in_a_phase_change_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "p0-a", _phase("p0-a", {"k3s": {"clustr": True}}))
    with pytest.raises(ConfigError, match=r"p0-a\.yaml: changes\.k3s\.clustr: unknown key"):
        phases.load_phases(tmp_path)


def test_deep_merge_merges_mappings_and_replaces_the_rest() -> None:
    merged = phases.deep_merge({"a": {"x": 1, "y": [1]}, "b": 1}, {"a": {"y": [2]}, "c": 3})
    assert merged == {"a": {"x": 1, "y": [2]}, "b": 1, "c": 3}


# --- thresholds of the cutover gate's checks -------------------------------------------------------


def test_the_cutover_phases_gate_on_measurements_with_thresholds_from_their_files() -> None:
    for phase_id in ("p2b1-cutover-50", "p2b2-cutover-100"):
        criteria = phases.resolve(phase_id).exit_criteria
        assert criteria.measurements == ("routes-slo", "load-test")
        slo, load = criteria.thresholds_for("routes-slo"), criteria.thresholds_for("load-test")
        assert isinstance(slo, phases.RoutesSloThresholds) and isinstance(load, phases.LoadTestThresholds)
        assert (slo.max_p95_seconds, slo.max_error_ratio) == (2, 0.01)
        assert (load.users, load.max_p95_seconds, load.max_error_ratio) == (100, 2, 0.01)
        assert phases.resolve(phase_id).gated
    assert not phases.resolve("p2c-optimize").gated
    # A check that takes thresholds but whose phase states none runs with the defaults.
    bare = phases.ExitCriteria(checklist=("x",), checks=("load-test",))
    assert bare.thresholds_for("load-test") == phases.LoadTestThresholds()
    assert bare.thresholds_for("public-routes-200") is None


def test_check_thresholds_cover_every_check_that_takes_them() -> None:
    fields = {str(info.alias) for info in phases.CheckThresholds.model_fields.values()}
    assert fields == set(phases.CHECK_THRESHOLDS) <= phases.CHECK_NAMES


@pytest.mark.parametrize(
    ("thresholds", "error"),
    [
        ({"load-test": {"userz": 5}}, r"exitCriteria\.thresholds\.load-test\.userz: unknown key"),
        ({"load-test": {"users": 0}}, r"exitCriteria\.thresholds\.load-test\.users: Input should be greater"),
        (
            {"load-test": {"maxRequests": 10**9}},
            r"exitCriteria\.thresholds\.load-test\.maxRequests: Input should be less",
        ),
        (
            {"load-test": {"paths": ["https://elsewhere.example/"]}},
            r"exitCriteria\.thresholds\.load-test: paths must be absolute paths",
        ),
        ({"routes-slo": {"window": "1 day"}}, r"exitCriteria\.thresholds\.routes-slo\.window: String should match"),
        (
            {"routes-slo": {"maxErrorRatio": 5}},
            r"exitCriteria\.thresholds\.routes-slo\.maxErrorRatio: Input should be less",
        ),
        (
            {"routes-slo": {"maxP95Seconds": "fast"}},
            r"exitCriteria\.thresholds\.routes-slo\.maxP95Seconds: Input should be a valid",
        ),
        ({"routes-sloo": {}}, r"exitCriteria\.thresholds\.routes-sloo: unknown key"),
        ({"public-routes-200": {}}, r"exitCriteria\.thresholds\.public-routes-200: unknown key"),
        ({"routes-slo": {}}, r"exitCriteria: thresholds for \['routes-slo'\], which this phase's checks do not name"),
    ],
)
def test_bad_thresholds_are_refused_naming_the_key(tmp_path: Path, thresholds: dict, error: str) -> None:  # type: ignore[type-arg]
    doc = _phase("p0-a", {}, checks=["load-test"])
    doc["exitCriteria"]["thresholds"] = thresholds
    _write(tmp_path, "p0-a", doc)
    phases.load_phases.cache_clear()
    with pytest.raises(ConfigError, match=rf"p0-a\.yaml: {error}"):
        phases.load_phases(tmp_path)
