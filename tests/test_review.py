"""Issue 26: the review a platform engineer reads, in a terminal, a CI log and a pull request.

Nothing cut, nothing invented; `diff` marks and counts what cannot be undone; secrets and keys are
seen offline; `check` is quiet; one exit-code contract.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.config.load import SECRET_KEYS
from components.config.phases import load_phases, phase_ids, resolve
from components.core.errors import ConfigError
from components.platform import platform
from migrate import automation, cli, harness, output, policy_runner, render, review, stack_review
from migrate.affected import PhaseMove, affected, markdown, run_offline
from migrate.plan import diff_plans
from migrate.policy_runner import PhaseResult, Violation, _print_text
from tests.conftest import ROOT, STACKS, recorded, recorded_preview
from tests.test_policy_rules import fixture_files, violations_of

PHASES = phase_ids()


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "migrate", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def cached_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process CLI calls reuse the session's recorded plans (update and first preview)."""

    def fake(stack: str, phase: str | None = None, stack_path: Path | None = None, **kw: object) -> object:
        assert stack_path is None or stack_path == harness.stack_file(stack)
        return (recorded_preview if kw.get("preview") else recorded)(stack, phase or "")

    monkeypatch.setattr(harness, "record", fake)


def _plan_text(stack: str, phase: str, *, preview: bool = False) -> str:
    buffer = io.StringIO()  # not a terminal, as in a CI log
    plan = (recorded_preview if preview else recorded)(stack, phase)
    render.plan(output.console(buffer), plan, resolve(phase))
    return buffer.getvalue()


# --- 1. nothing cut, nothing invented -------------------------------------------------------------


@pytest.mark.parametrize("preview", [False, True], ids=["update", "preview"])
@pytest.mark.parametrize("stack", STACKS)
def test_piped_plan_keeps_every_line_whole_in_every_phase(stack: str, preview: bool) -> None:
    for phase in PHASES:
        text = _plan_text(stack, phase, preview=preview)
        body, outputs = text.split("\nOutputs (", 1)
        lines = body.splitlines()
        for res in (recorded_preview if preview else recorded)(stack, phase).resources:
            # The tree line ends with the safety flags: the name, type and every flag are on it.
            flags = [f for f, on in (("protect", res.protect), ("retain", res.retain_on_delete)) if on]
            if res.import_id:
                flags.append(f"import {res.import_id}")
            wanted = f"{res.name}  {res.type}" + (f"  [{', '.join(flags)}]" if flags else "")
            line = next((line for line in lines if wanted in line), None)
            assert line is not None, f"{stack} {phase}: {wanted!r} is cut"
            if res.unknown_inputs:  # a preview: which inputs wait for another resource, all of them
                unknown = sorted({p.split(".")[0].split("[")[0] for p in res.unknown_inputs})
                assert line.endswith(f"[unknown] {', '.join(unknown)}"), line
        for line in lines:
            assert line.count("[") == line.count("]"), f"{stack} {phase}: line ends inside a bracket: {line!r}"
            assert line.count("(") == line.count(")"), f"{stack} {phase}: line ends inside a bracket: {line!r}"
        # The outputs open a bracket at a line's end on purpose (`key: {`) and close it on a line of its own.
        for opening, closing in (("{", "}"), ("[", "]")):
            opened = sum(1 for line in outputs.splitlines() if line.endswith(f": {opening}"))
            closed = sum(1 for line in outputs.splitlines() if line.strip() == closing)
            assert opened == closed, f"{stack} {phase}: unbalanced {opening} in the outputs"


@pytest.mark.parametrize("stack", STACKS)
def test_outputs_are_nested_values_not_python_reprs(stack: str) -> None:
    for phase in PHASES:
        text = _plan_text(stack, phase)
        outputs = text[text.index("\nOutputs (") :]
        for repr_mark in ("{'", "': ", "['", "True", "False", "None"):
            assert repr_mark not in outputs, f"{stack} {phase}: a Python repr in the outputs ({repr_mark})"
        assert not re.search(r": -?\d+\.0(\s|$)", outputs, re.MULTILINE), f"{stack} {phase}: 1.0 for 1"


def test_outputs_mark_what_the_mocks_made_up() -> None:
    text = _plan_text("prod", "p4-decommission")
    outputs = text[text.index("\nOutputs (") :].splitlines()
    api = next(line for line in outputs if line.strip().startswith("k3sApiUrl:"))
    assert api.endswith("# offline mock value"), api  # the address is the mock's, not the instance's
    env = next(line for line in outputs if line.strip().startswith("environment:"))
    assert env == '    environment: "prod"'  # from the stack file: real, unmarked
    # Nested like `pulumi up` prints them: one value per line, lists by index.
    assert "    gpuNodes: [" in outputs and '        [0]: "server-1"' in outputs
    doc_keys = render.mock_output_keys(recorded("prod", "p4-decommission"))
    assert "k3sApiUrl" in doc_keys and "environment" not in doc_keys


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_narrow_terminal_wraps_instead_of_cutting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    buffer = _Terminal()
    console = output.console(buffer)
    assert console.width == 60
    render.plan(console, recorded("prod", "p0-baseline"), resolve("p0-baseline"))
    lines = re.sub(r"\x1b\[[0-9;]*m", "", buffer.getvalue()).splitlines()  # a terminal gets colours
    assert max(len(line.rstrip()) for line in lines) <= 60
    text = " ".join(" ".join(line.strip(" │├└─") for line in lines).split())
    # The flags at the end of a line wrap onto the next one, whole.
    assert "backups-bucket aws:s3/bucket:Bucket [protect, retain]" in text


def test_names_are_not_read_as_markup_or_emoji() -> None:
    text = _plan_text("prod", "p3-local-brain")
    assert "gpu-platform:llama:LlamaServer" in text
    assert "\N{LLAMA}" not in text


def test_the_real_cli_piped_at_80_columns_cuts_nothing() -> None:
    out = run("plan", "--stack", "prod", "--phase", "p3-local-brain", env={"COLUMNS": "80"})
    assert out.returncode == 0, out.stderr
    assert "llama-cluster  gpu-platform:llama:LlamaServer" in out.stdout
    legacy = recorded("prod", "p3-local-brain").named("legacy-gcp-vm")
    assert f"[protect, retain, import {legacy.import_id}]" in out.stdout
    assert max(len(line) for line in out.stdout.splitlines()) > 80


@pytest.mark.parametrize(
    "argv",
    [
        ("plan", "--stack", "prod", "--json"),
        ("diff", "--stack", "prod", "--from", "p0-baseline", "--to", "p4-decommission"),
    ],
    ids=["plan-json", "diff-text"],
)
def test_output_into_a_closed_pipe_ends_quietly(argv: tuple[str, ...]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "migrate", *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    # One page of pipe (the child is still importing): its output outgrows it, so the writer does meet
    # the closed pipe, as a long plan does in `| head -1`.
    fcntl.fcntl(proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, 4096)
    assert proc.stdout.readline().strip() in ("{", "Diff for stack prod: p0-baseline -> p4-decommission")
    proc.stdout.close()  # what `| head -1` does
    err = proc.stderr.read()
    code = proc.wait(timeout=120)
    assert code in (0, output.EXIT_BROKEN_PIPE), err
    assert "Traceback" not in err and "BrokenPipeError" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ("migrate.affected", "--files", "README.md", "components/config/load.py"),
        ("migrate.scan", "--only", "actionlint"),
    ],
    ids=["affected", "scan"],
)
def test_the_other_commands_end_quietly_on_a_closed_pipe(argv: tuple[str, ...]) -> None:
    """`python -m migrate.affected` and `python -m migrate.scan` keep the same contract: their output
    is short, so the reader here is gone before they write, and every write meets the closed pipe."""
    proc = subprocess.Popen(
        [sys.executable, "-m", *argv], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # what `| head -0` does, before the first line
    err = proc.stderr.read()
    code = proc.wait(timeout=120)
    assert code == output.EXIT_BROKEN_PIPE, err
    assert "Traceback" not in err and "BrokenPipeError" not in err


# --- 2. diff as a review --------------------------------------------------------------------------


def _review(stack: str, before: str, after: str) -> review.DiffReview:
    return review.review(stack, diff_plans(recorded(stack, before), recorded(stack, after)))


def _text(r: review.DiffReview) -> str:
    buffer = io.StringIO()
    review.render_text(output.console(buffer), r)
    return buffer.getvalue()


@pytest.mark.parametrize("stack", STACKS)
def test_diff_into_p4_marks_and_counts_the_irreversible_steps(stack: str) -> None:
    r = _review(stack, "p3-local-brain", "p4-decommission")
    destroys = [c for c in r.diff.changes if c.type == "pulumi-python:dynamic/fly:FlyDestroy"]
    allowed = len(recorded(stack, "p4-decommission").of_type("pulumi-python:dynamic/fly:FlyDestroy"))
    assert destroys and len(destroys) == allowed
    assert set(r.irreversible) == {c.urn for c in destroys}
    text = _text(r)
    lines = text.splitlines()
    assert lines[1].startswith(f"!! IRREVERSIBLE: {len(destroys)} step(s) of fly-destroy (p4-decommission)")
    for c in destroys:
        assert any(c.name in line and "!! IRREVERSIBLE (fly-destroy, p4-decommission)" in line for line in lines)
    assert f"review: {len(destroys)} irreversible," in text
    # migrate forward's last gate (components/config/phases.py forward_gate) is named before the move.
    assert lines[2].startswith(
        f"gate: leaving p3-local-brain (p4-decommission has irreversible step(s): fly-destroy): `migrate forward` "
        f"first runs {', '.join(resolve('p3-local-brain').exit_criteria.checks)}"
    )
    doc = r.to_json()
    assert doc["summary"]["irreversible"] == len(destroys)
    assert {s["urn"] for s in doc["irreversibleSteps"]} == {c.urn for c in destroys}
    assert r.exit_code() == output.EXIT_OK  # forward: allowed, but marked
    assert r.exit_code(("irreversible",)) == output.EXIT_PROTECTED


def test_every_irreversible_step_in_the_phase_files_is_mapped_to_resources() -> None:
    for phase in load_phases():
        for step in phase.irreversible:
            types = review.STEP_TYPES.get(step)
            assert types, f"{phase.id}: irreversible step {step!r} has no entry in migrate/review.py STEP_TYPES"
            plan = recorded("prod", phase.id)
            assert all(plan.of_type(t) for t in types), f"{phase.id}: {step} resources not in its plan"


def test_diff_across_phases_names_the_skipped_phases_and_gates() -> None:
    r = _review("prod", "p0-baseline", "p4-decommission")
    assert [p.id for p in r.skipped] == list(PHASES[1:-1])
    gated = [p.id for p in load_phases() if p.gated and p.id in PHASES[1:-1]]
    assert [p.id for p in r.skipped_gates] == gated and len(gated) == 3
    text = _text(r)
    assert f"!! SKIPS {len(PHASES) - 2} phase(s): {', '.join(PHASES[1:-1])}" in text
    assert "3 cutover gate(s) (p2b-services, p2b1-cutover-50, p2b2-cutover-100)" in text
    assert "--to p4-decommission --allow-skip" in text
    assert r.counts()["skipped"] == 7 and r.counts()["skippedGates"] == 3
    assert r.exit_code(("skipped",)) == output.EXIT_FAILED
    assert r.exit_code(("skipped", "irreversible")) == output.EXIT_PROTECTED
    assert _review("prod", "p2b-services", "p2b1-cutover-50").skipped == ()


def test_diff_shows_the_traffic_weights_moving(cached_record: None, capsys: pytest.CaptureFixture[str]) -> None:
    text = _text(_review("prod", "p2b-services", "p2b1-cutover-50"))
    for route in ("api", "app"):
        block = text[text.index(f"platform-traffic-{route}-split") :]
        assert "spec.weighted.services[0].weight: 10 -> 50" in block.splitlines()[1]
        assert "spec.weighted.services[1].weight: 90 -> 50" in block.splitlines()[2]
    assert cli.main(["diff", "--stack", "prod", "--from", "p2b-services", "--to", "p2b1-cutover-50", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    split = next(c for c in doc["changes"] if c["name"] == "platform-traffic-api-split")
    weights = {v["path"]: (v["old"], v["new"]) for v in split["values"]}
    assert weights == {"spec.weighted.services[0].weight": (10, 50), "spec.weighted.services[1].weight": (90, 50)}


def test_diff_values_keep_secrets_secret_and_summarise_long_values() -> None:
    r = _review("prod", "p2a-k3s", "p2b-services")
    values = [v for c in r.diff.changes for v in c.values]
    assert values
    text = _text(r)
    assert "offline-placeholder" not in text and "offline-placeholder" not in json.dumps(r.to_json())
    for line in text.splitlines():
        if " -> " in line:
            old, new = line.split(": ", 1)[1].split(" -> ", 1)
            assert len(old) <= 100 and len(new) <= 100, line


def test_fail_on_makes_ci_fail(cached_record: None, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["diff", "--stack", "dev", "--from", "p3-local-brain", "--to", "p4-decommission"]
    assert cli.main(argv) == 0
    assert cli.main([*argv, "--fail-on", "irreversible,protected,skipped"]) == 3
    err = capsys.readouterr().err
    assert "failed: --fail-on irreversible,protected,skipped:" in err and "irreversible" in err
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, "--fail-on", "irreversable"])
    assert exc.value.code == 2


def test_rollback_past_p4_exits_3_from_diff_and_from_rollback(
    cached_record: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["diff", "--stack", "prod", "--from", "p4-decommission", "--to", "p3-local-brain"]) == 3
    # The program's own warnings come first when the plans are recorded afresh (not from the test cache).
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("warning: ")]
    protected = _review("prod", "p4-decommission", "p3-local-brain").diff.deletes_protected
    assert protected and err == [
        "refused: p4-decommission -> p3-local-brain would undo fly-destroy (p4-decommission)",
        f"refused: {len(protected)} protected resource(s) would be deleted or replaced",
    ]
    # migrate rollback's refusal (tests/test_automation.py drives it against a fake stack, exit 3) is
    # the same verdict.
    with pytest.raises(automation.IrreversibleRefused):
        automation.plan_move(
            load_phases(),
            resolve("p4-decommission"),
            direction="rollback",
            to=None,
            allow_skip=False,
            stack="prod",
        )


# --- 3. secrets and keys, offline -----------------------------------------------------------------


def _stack_file(tmp_path: Path, name: str, edit: dict[str, object], drop: tuple[str, ...] = ()) -> Path:
    doc = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    for key in drop:
        del doc["config"][key]
    doc["config"].update(edit)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_secret_in_clear_text_is_refused(tmp_path: Path) -> None:
    path = _stack_file(tmp_path, "proposed.yaml", {"gpu-platform:lambdaApiKey": "sk-live-PLAINTEXT"})
    out = run("plan", "--stack", "prod", "--stack-file", str(path))
    assert out.returncode == 2 and out.stdout == ""
    assert "gpu-platform:lambdaApiKey: a secret stored in clear text" in out.stderr
    assert "sk-live-PLAINTEXT" not in out.stderr and "Traceback" not in out.stderr


def test_a_misspelt_namespace_or_key_is_refused_with_the_nearest(tmp_path: Path) -> None:
    path = _stack_file(
        tmp_path,
        "proposed.yaml",
        {"gpu-platfrom:domain": "example.org", "gpu-platform:acmeEmial": "x@example.com"},
    )
    with pytest.raises(ConfigError) as exc:
        stack_review.review("prod", path, resolve("p0-baseline"), explicit_file=True)
    message = str(exc.value)
    assert "gpu-platfrom:domain: unknown namespace 'gpu-platfrom'" in message
    assert "did you mean gpu-platform:domain?" in message
    assert "gpu-platform:acmeEmial: not a key Pulumi.yaml declares; did you mean gpu-platform:acmeEmail?" in message
    # Other providers' namespaces are theirs.
    fine = _stack_file(tmp_path, "other.yaml", {"aws:region": "us-east-1", "kubernetes:context": "x"})
    stack_review.review("prod", fine, resolve("p0-baseline"), explicit_file=True)


def test_another_stacks_file_is_refused(tmp_path: Path) -> None:
    out = run("plan", "--stack", "prod", "--stack-file", "Pulumi.dev.yaml")
    assert out.returncode == 2 and "did you mean --stack dev?" in out.stderr
    path = _stack_file(tmp_path, "proposed.yaml", {"gpu-platform:environment": "dev"})
    with pytest.raises(ConfigError, match=re.escape("'dev' in proposed.yaml, reviewed as --stack prod")):
        stack_review.review("prod", path, resolve("p0-baseline"), explicit_file=True)


def test_missing_secrets_are_named_per_phase(tmp_path: Path) -> None:
    committed = stack_review.review("prod", ROOT / "Pulumi.prod.yaml", resolve("p2b-services"), explicit_file=False)
    assert "lambdaApiKey" in committed.missing and "composeSshPrivateKey" in committed.missing
    early = stack_review.review("prod", ROOT / "Pulumi.prod.yaml", resolve("p0-baseline"), explicit_file=False)
    assert "composeSshPrivateKey" not in early.needed and "githubToken" not in early.needed
    secure = {f"gpu-platform:{k}": {"secure": "v1:abc"} for k in committed.needed}
    full = _stack_file(tmp_path, "proposed.yaml", secure)
    assert stack_review.review("prod", full, resolve("p2b-services"), explicit_file=True).missing == []
    # cloudFallback on (prod) needs cloudLlmApiKey; a stack without it is told so.
    assert committed.needed["cloudLlmApiKey"] == "router.cloudFallback is true"


def test_plan_says_which_secrets_are_missing(cached_record: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plan", "--stack", "prod", "--phase", "p2b-services"]) == 0
    text = capsys.readouterr().out
    assert "Secrets: 0 of 8 this phase needs are in Pulumi.prod.yaml" in text
    assert "missing  gpu-platform:composeSshPrivateKey (needed: p2b-services logs in to the Compose host)" in text


def test_every_secret_key_the_program_reads_is_declared_secret_in_pulumi_yaml() -> None:
    declared = stack_review.declared_keys()
    assert {name for name, _ in SECRET_KEYS} == {k for k, secret in declared.items() if secret}
    assert stack_review.APP_SECRET_CONFIG == platform._APP_SECRET_CONFIG


def test_an_unknown_phase_offers_the_nearest() -> None:
    out = run("plan", "--stack", "prod", "--phase", "p2b-service")
    assert out.returncode == 2 and out.stdout == ""
    assert "unknown phase 'p2b-service'; did you mean p2b-services?" in out.stderr


# --- 4. check is quiet ----------------------------------------------------------------------------


def test_check_all_phases_preview_is_short(cached_record: None) -> None:
    buffer = io.StringIO()
    code = policy_runner.run_check("prod", list(PHASES), False, None, out=buffer, preview=True)
    lines = buffer.getvalue().splitlines()
    assert code == 0 and len(lines) < 100, len(lines)
    assert not any(line.lstrip().startswith("urn:") for line in lines)
    assert any("can't run during preview on" in line and "--verbose lists them" in line for line in lines)
    verbose = io.StringIO()
    policy_runner.run_check("prod", ["p2a-k3s"], False, None, out=verbose, preview=True, verbose=True)
    assert "urn:pulumi:prod::" in verbose.getvalue()


def test_a_failing_policy_explains_once_then_names_each_resource() -> None:
    why = "Why: a tag moves. Fix: pin it."
    found = [
        Violation("image-digest-pinned", "mandatory", f"urn:a{i}", f"image 'x{i}' is tag only. {why}") for i in range(9)
    ]
    buffer = io.StringIO()
    _print_text("prod", "cfg", [PhaseResult("p2b-services", "violations", 9, found)], 1, buffer, preview=False)
    text = buffer.getvalue()
    assert text.count(why) == 1
    for i in range(9):
        assert f"urn:a{i}: image 'x{i}' is tag only" in text


def test_the_platforms_own_images_get_the_stack_config_fix() -> None:
    cases = fixture_files()["image-digest-pinned"]["fail"]
    own = next(c for c in cases if c["case"].startswith("one of the platform's own images"))
    [found] = violations_of("image-digest-pinned", own)
    assert "gpu-platform:serviceImages.digests" in found.message and "versions.py" not in found.message
    third = next(c for c in cases if c["case"].startswith("a third-party image"))
    [found] = violations_of("image-digest-pinned", third)
    assert "serviceImages" not in found.message


def test_the_pull_request_report_shows_the_diffs_marks_and_counts(cached_record: None) -> None:
    found = affected([], ["prod"], load_phases())
    found.moves.append(PhaseMove("prod", "p3-local-brain", "p4-decommission"))
    outcomes = run_offline(found, load_phases())
    [move] = outcomes
    assert move.code == 0 and "!! IRREVERSIBLE: 8 step(s) of fly-destroy (p4-decommission)" in move.output
    text = markdown(found, outcomes)
    row = next(
        line for line in text.splitlines() if line.startswith("| ✅ | prod: move p3-local-brain -> p4-decommission")
    )
    assert "**IRREVERSIBLE: 8 step(s) of fly-destroy (p4-decommission) cannot be undone**" in row
    assert "8 irreversible, " in row


def test_the_programs_warnings_are_said_once_per_command(capsys: pytest.CaptureFixture[str]) -> None:
    """dev's placeholder registry is warned about by every phase that runs the services; `check`
    records several phases in one process and says it once, as a warning, on stderr."""
    assert cli.main(["check", "--stack", "dev", "--phase", "p2b-services", "--phase", "p2c-optimize"]) == 0
    err = capsys.readouterr().err.splitlines()
    placeholder = [line for line in err if "is the placeholder 'ghcr.io/example-org'" in line]
    assert placeholder == [
        "warning: gpu-platform:serviceImages.registry is the placeholder 'ghcr.io/example-org': the platform's "
        "pods will not pull their images until it names your registry"
    ]
    # The next command says it again: each keeps its own output (migrate.affected runs several in one process).
    assert cli.main(["check", "--stack", "dev", "--phase", "p2b-services"]) == 0
    assert sum("is the placeholder" in line for line in capsys.readouterr().err.splitlines()) == 1


def test_check_names_the_missing_secrets_in_one_line_per_stack(
    cached_record: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make check` on the committed stack files (which never hold secrets): one warning line per
    stack, every missing secret under the first phase that needs it, with why; on stderr."""
    monkeypatch.delenv("LAMBDA_API_KEY", raising=False)
    monkeypatch.delenv("FLY_API_TOKEN", raising=False)
    assert cli.main(["check", "--stack", "prod", "--all-phases"]) == 0
    captured = capsys.readouterr()
    (warning,) = [line for line in captured.err.splitlines() if "secure:" in line]
    assert warning.startswith("warning: Pulumi.prod.yaml holds no secure: value for 8 secret(s) the checked phases")
    assert "from p0-baseline: lambdaApiKey, flyApiToken (every phase), cloudLlmApiKey (router.cloudFallback" in warning
    assert "; from p2b-services: composeSshPrivateKey (p2b-services logs in to the Compose host), " in warning
    assert "backupAccessKeyId, backupSecretAccessKey (platform.restoreFromBackup: " in warning
    assert "secure:" not in captured.out

    # A variable the program takes instead stands in for its key; a single phase names only its own.
    monkeypatch.setenv("LAMBDA_API_KEY", "from-the-environment")
    assert cli.main(["check", "--stack", "prod", "--phase", "p0-baseline"]) == 0
    (warning,) = [line for line in capsys.readouterr().err.splitlines() if "secure:" in line]
    assert "for 2 secret(s)" in warning and "from p0-baseline: flyApiToken (every phase), cloudLlmApiKey" in warning
    assert "lambdaApiKey" not in warning and "composeSshPrivateKey" not in warning
