"""`python -m migrate.affected`: which phases a change touches, and the offline runs CI does for them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from components.config.phases import load_phases
from migrate import affected as aff
from migrate.affected import Affected, Outcome, PhaseMove, affected, check_move, markdown, run_offline
from migrate.cli import build_parser

PHASES = load_phases()
IDS = [p.id for p in PHASES]
STACKS = ["dev", "prod"]


def _stack_file(phase: str) -> str:
    return f"config:\n  gpu-platform:phase: {phase}\n  gpu-platform:environment: dev\n"


def test_a_phase_file_touches_that_phase_and_every_later_one() -> None:
    found = affected(["stacks/p2b1-cutover-50.yaml"], STACKS, PHASES)
    later = IDS[IDS.index("p2b1-cutover-50") :]
    assert found.pairs == {"dev": later, "prod": later}
    assert "p2b1-cutover-50 and the 4 phase(s) after it" in found.reasons["stacks/p2b1-cutover-50.yaml"]


@pytest.mark.parametrize(
    "path", ["components/k3s.py", "components/scripts/k3s-agent.sh", "__main__.py", "policy/workload_rules.py"]
)
def test_the_program_touches_every_phase_of_every_stack(path: str) -> None:
    assert affected([path], STACKS, PHASES).pairs == {"dev": IDS, "prod": IDS}


@pytest.mark.parametrize("path", ["docs/index.md", "tests/test_k3s.py", ".github/workflows/ci.yml", "README.md"])
def test_docs_tests_and_workflows_touch_no_phase(path: str) -> None:
    found = affected([path], STACKS, PHASES)
    assert found.empty and found.pairs == {}
    assert found.reasons[path] == "no phase (covered by make test)"


def test_a_stack_file_touches_only_its_stack_and_records_a_phase_move() -> None:
    found = affected(
        ["Pulumi.dev.yaml"],
        STACKS,
        PHASES,
        base_text=lambda _p: _stack_file("p1-fly-freeze"),
        head_text=lambda _p: _stack_file("p2a-k3s"),
    )
    assert found.pairs == {"dev": IDS}
    assert found.moves == [PhaseMove("dev", "p1-fly-freeze", "p2a-k3s")]


def test_a_removed_phase_file_touches_every_phase() -> None:
    found = affected(["stacks/p9-gone.yaml"], STACKS, PHASES)
    assert found.pairs == {"dev": IDS, "prod": IDS}


@pytest.mark.parametrize(
    ("before", "after", "message"),
    [
        ("p1-fly-freeze", "p2a-k3s", None),
        ("p2a-k3s", "p1-fly-freeze", None),
        ("p1-fly-freeze", "p2b-services", "skips p2a-k3s"),
        ("p4-decommission", "p3-local-brain", "irreversible"),
        ("p1-fly-freeze", "p7-nope", "is not a phase"),
    ],
)
def test_check_move_applies_the_forward_and_rollback_rules(before: str, after: str, message: str | None) -> None:
    problem = check_move(PhaseMove("prod", before, after), PHASES)
    if message is None:
        assert problem is None
    else:
        assert problem is not None and message in problem


class Runner:
    def __init__(self, codes: dict[str, int] | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.codes = codes or {}

    def __call__(self, argv: Sequence[str]) -> tuple[int, str]:
        self.calls.append(tuple(argv))
        return self.codes.get(argv[0], 0), f"output of {' '.join(argv)}"


def test_run_offline_plans_diffs_from_the_previous_phase_and_checks() -> None:
    found = Affected()
    found.add("dev", ["p0-baseline", "p2a-k3s"], IDS)
    runner = Runner({"check": 1})
    outcomes = run_offline(found, PHASES, runner)
    assert runner.calls == [
        ("plan", "--stack", "dev", "--phase", "p0-baseline"),
        ("check", "--stack", "dev", "--phase", "p0-baseline"),  # the first phase has nothing to diff from
        ("plan", "--stack", "dev", "--phase", "p2a-k3s"),
        ("diff", "--stack", "dev", "--from", "p1-fly-freeze", "--to", "p2a-k3s"),
        ("check", "--stack", "dev", "--phase", "p2a-k3s"),
    ]
    assert [o.ok for o in outcomes] == [True, False, True, True, False]


def test_a_refused_move_fails_without_running_anything_and_an_allowed_one_is_diffed() -> None:
    found = Affected(
        moves=[PhaseMove("prod", "p4-decommission", "p3-local-brain"), PhaseMove("dev", "p0-baseline", "p1-fly-freeze")]
    )
    runner = Runner()
    outcomes = run_offline(found, PHASES, runner)
    assert runner.calls == [("diff", "--stack", "dev", "--from", "p0-baseline", "--to", "p1-fly-freeze")]
    assert not outcomes[0].ok and "irreversible" in outcomes[0].output
    assert outcomes[1].ok


def test_markdown_report_has_a_table_and_folds_outputs() -> None:
    found = affected(["stacks/p4-decommission.yaml"], ["dev"], PHASES)
    long = "\n".join(f"line {i}" for i in range(aff.MAX_OUTPUT_LINES + 10)) + "\n```"
    outcomes = [
        Outcome("dev p4-decommission plan", ("plan", "--stack", "dev"), 0, long),
        Outcome("dev p4-decommission check", ("check", "--stack", "dev"), 1, "violation"),
    ]
    text = markdown(found, outcomes)
    assert "| `stacks/p4-decommission.yaml` |" in text
    assert "**1 of 2 passed.**" in text
    assert "| ✅ | dev p4-decommission plan | `python -m migrate plan --stack dev` | 0 |" in text
    assert "| ❌ | dev p4-decommission check |" in text
    assert "<details open><summary>dev p4-decommission check</summary>" in text  # failures unfolded
    assert "... 11 more line(s)" in text
    assert text.count("```") % 2 == 0  # output cannot break out of its code block


def test_markdown_for_a_change_that_touches_nothing() -> None:
    text = markdown(affected(["docs/index.md"], STACKS, PHASES), [])
    assert "No phase is touched by this change" in text


def test_subcommands_it_runs_exist_in_the_cli() -> None:
    choices = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert choices is not None
    missing = [name for name in aff.SUBCOMMANDS if name not in choices]
    assert not missing, f"python -m migrate has no {missing}; migrate.affected runs them in CI"


def test_run_cli_runs_the_real_cli_in_process() -> None:
    code, output = aff.run_cli(["plan", "--stack", "dev", "--phase", "p0-baseline"])
    assert code == 0 and "p0-baseline" in output
    code, output = aff.run_cli(["no-such-command"])
    assert code == 2 and "invalid choice" in output


def test_main_writes_the_summary_and_lists_the_phases(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = tmp_path / "summary.md"
    assert aff.main(["--files", "stacks/p3-local-brain.yaml", "--summary", str(summary)]) == 0
    out = capsys.readouterr().out
    assert "dev: p3-local-brain p4-decommission" in out
    assert "`stacks/p3-local-brain.yaml`" in summary.read_text()


def test_main_with_an_unknown_base_is_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert aff.main(["--base", "no-such-revision-anywhere"]) == 2
    assert "fetch-depth: 0" in capsys.readouterr().err
