"""docs/: the generated runbooks agree with the phase files; the hand-written pages hold together."""

from __future__ import annotations

import itertools
import re
import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from components.config.phases import Phase, load_phases
from migrate import affected, cli, runbooks
from tests.conftest import recorded

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PHASES = load_phases()


def test_committed_runbooks_match_the_phase_files() -> None:
    pages = runbooks.render_all()
    for rel, text in pages.items():
        path = DOCS / rel
        assert path.is_file(), f"docs/{rel} is missing; run `python -m migrate.runbooks`"
        assert path.read_text() == text, f"docs/{rel} is out of date; run `python -m migrate.runbooks`"
    committed = {f"phases/{p.name}" for p in (DOCS / "phases").glob("*.md")}
    assert committed == {rel for rel in pages if rel.startswith("phases/")}
    assert runbooks.stale() == []


@pytest.mark.parametrize("phase", PHASES, ids=lambda p: p.id)
def test_each_page_says_what_its_phase_file_says(phase: Phase) -> None:
    page = (DOCS / "phases" / f"{phase.id}.md").read_text()
    assert page.splitlines()[2] == f"# {phase.id}: {phase.title}"
    flat = " ".join(page.split())
    assert " ".join(phase.summary.split()) in flat
    assert " ".join(phase.rollback.split()) in flat
    for item in phase.exit_criteria.checklist:
        assert f"- [ ] {' '.join(item.split())}" in page
    for check in phase.exit_criteria.checks:
        assert f"| `{check}` |" in page
    for key, value in runbooks._flatten(phase.changes):
        assert f"| `{key}` | {runbooks._value(value)} |" in page
    for step in phase.irreversible:
        assert f"- `{step}`" in page
    if phase.irreversible:
        assert "refuses to move this stack back" in page
    elif phase.index > 0:
        assert f"# back to {PHASES[phase.index - 1].id}" in page


def test_index_has_a_mermaid_diagram_of_every_phase() -> None:
    index = (DOCS / "index.md").read_text()
    block = re.search(r"```mermaid\n(.*?)```", index, re.DOTALL)
    assert block, "docs/index.md has no mermaid block"
    diagram = block.group(1)
    assert diagram.startswith("flowchart LR")
    for phase in PHASES:
        node = phase.id.replace("-", "_")
        assert f'{node}["{phase.id}<br/>{phase.title}"]' in diagram
        assert f"(phases/{phase.id}.md)" in index
    for before, after in itertools.pairwise(PHASES):
        a, b = before.id.replace("-", "_"), after.id.replace("-", "_")
        assert re.search(rf"^  {a} -->(\|[^|]*\|)? {b}$", diagram, re.MULTILINE)
        rollback_edge = f"  {b} -.->|rollback| {a}"
        assert (rollback_edge in diagram) == (not after.irreversible)
    assert '|"irreversible: fly-destroy"|' in diagram


def test_a_changed_phase_file_makes_its_page_stale(tmp_path: Path) -> None:
    stacks, docs = tmp_path / "stacks", tmp_path / "docs"
    shutil.copytree(ROOT / "stacks", stacks)
    runbooks.write(docs, stacks)
    assert runbooks.stale(docs, stacks) == []
    # Phase files are cached per directory, so the edited set lives in a directory of its own.
    edited = tmp_path / "edited"
    shutil.copytree(stacks, edited)
    raw = yaml.safe_load((edited / "p2a-k3s.yaml").read_text())
    raw["rollback"] = "Rolling back now needs a ritual."
    (edited / "p2a-k3s.yaml").write_text(yaml.safe_dump(raw))
    (docs / "phases" / "p9-orphan.md").write_text("old page\n")
    assert runbooks.stale(docs, edited) == [
        "phases/p2a-k3s.md: out of date",
        "phases/p9-orphan.md: no phase file stacks/p9-orphan.yaml",
    ]
    runbooks.write(docs, edited)
    assert "needs a ritual" in (docs / "phases" / "p2a-k3s.md").read_text()
    assert not (docs / "phases" / "p9-orphan.md").exists()
    assert runbooks.stale(docs, edited) == []


def test_check_mode_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert runbooks.main(["--check"]) == 0
    assert capsys.readouterr().err == ""


# --- hand-written pages -------------------------------------------------------------------------


def _slug(heading: str) -> str:
    # GitHub's anchor: lower case, punctuation except hyphens and spaces dropped, spaces to hyphens.
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", path.read_text(), re.MULTILINE)}


def test_every_troubleshooting_link_points_at_a_heading() -> None:
    anchors = _anchors(DOCS / "troubleshooting.md")
    sources = [*DOCS.rglob("*.md"), *(ROOT / ".github" / "workflows").glob("*.yml")]
    linked = 0
    for path in sources:
        for anchor in re.findall(r"troubleshooting\.md#([\w-]+)", path.read_text()):
            linked += 1
            assert anchor in anchors, f"{path.relative_to(ROOT)} links troubleshooting.md#{anchor}, no such heading"
    assert linked >= 5


def test_relative_links_in_docs_resolve() -> None:
    for page in DOCS.rglob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).resolve().exists(), f"{page.relative_to(ROOT)} links {target}"


@pytest.mark.parametrize(
    "needle",
    [
        "pending-install",
        "pending-upgrade",
        "helm history",
        "helm rollback",
        "skipAwait",
        "pulumi refresh",
        "journalctl -u k3s-agent",
        "6443",
        "node-ip",
        "token",
        "clock",
        "Failed to initialize NVML: Unknown Error",
        "could not load NVML",
        "runtimeClassName: nvidia",
    ],
)
def test_troubleshooting_covers_the_common_k3s_helm_and_nvml_cases(needle: str) -> None:
    assert needle in (DOCS / "troubleshooting.md").read_text()


def test_state_backends_documents_both_backends() -> None:
    text = (DOCS / "state-backends.md").read_text()
    for needle in ("## Pulumi Cloud", "PULUMI_ACCESS_TOKEN", "s3://", "PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE"):
        assert needle in text


# --- README: where a newcomer starts (issue 26) ----------------------------------------------------

README = ROOT / "README.md"


def test_readme_starts_with_what_the_project_does_then_phases_review_deploy_testing() -> None:
    text = README.read_text()
    first = text.split("\n## ", 1)[0]
    assert "moves an AI platform, one phase at a time" in first
    assert "make test" not in first  # testing comes last, with what it really needs
    order = ["## The phases", "## Reviewing a change offline", "## Deploying for real", "## Testing"]
    positions = [text.index(heading) for heading in order]
    assert positions == sorted(positions), order
    for link in ("(docs/index.md)", "(docs/troubleshooting.md)"):
        assert link in first
    testing = text[text.index("## Testing") :]
    for need in ("apt-get", "llama-server", "cmake"):
        assert need in testing.split("\n## ")[0]


def test_readme_phase_table_counts_are_the_plans_counts() -> None:
    rows = re.findall(r"^\| `(p[^`]+)` \| .+ \| (\d+) \| (\d+) \|$", README.read_text(), re.MULTILINE)
    assert [phase for phase, _, _ in rows] == [p.id for p in PHASES]
    for phase, dev, prod in rows:
        counted = (len(recorded("dev", phase).resources), len(recorded("prod", phase).resources))
        assert (int(dev), int(prod)) == counted, f"README: {phase} has {counted} resources (dev, prod)"


def test_every_review_command_in_the_readme_parses() -> None:
    found = 0
    for line in README.read_text().splitlines():
        match = re.match(r"^\.venv/bin/python -m (migrate(?:\.affected)?) (.+?)(?:\s+#.*)?$", line)
        if not match:
            continue
        parser = affected.build_parser() if match.group(1) == "migrate.affected" else cli.build_parser()
        parser.parse_args(shlex.split(match.group(2)))  # exits 2 on an unknown flag or phase-less command
        found += 1
    assert found >= 10
