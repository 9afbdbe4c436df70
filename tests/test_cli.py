"""`python -m migrate plan|diff`: output, exit codes, JSON shape, speed."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.config.phases import phase_ids
from migrate import cli, harness
from tests.conftest import ROOT, recorded
from tests.test_plan_logic import plan as fake_plan
from tests.test_plan_logic import res
from tools import plan_imports


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "migrate", *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def cached_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let in-process CLI calls reuse the session's recorded plans."""

    def fake(stack: str, phase: str | None = None, stack_path: Path | None = None, **_: object) -> object:
        assert stack_path is None or stack_path == harness.stack_file(stack)
        return recorded(stack, phase or "")

    monkeypatch.setattr(harness, "record", fake)


def test_plan_prints_the_tree_counts_exit_criteria_and_critical_path() -> None:
    out = run("plan", "--stack", "dev", "--phase", "p2a-k3s")
    assert out.returncode == 0, out.stderr
    for fragment in ("Plan for stack dev at phase p2a-k3s", "Resources by type", "Critical path", "nvidia-smi-smoke"):
        assert fragment in out.stdout
    assert "offline-placeholder" not in out.stdout


def test_plan_json_has_every_field_a_reviewer_needs() -> None:
    out = run("plan", "--stack", "prod", "--phase", "p2b-services", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["stack"] == "prod" and doc["phase"] == "p2b-services"
    assert doc["exit_criteria"]["checks"] == ["backups-verified", "restore-jobs-complete", "public-routes-200"]
    assert doc["critical_path"]["length"] == len(doc["critical_path"]["urns"])
    for entry in doc["resources"]:
        for key in ("urn", "type", "name", "parent", "inputs", "protect", "retain_on_delete", "dependencies"):
            assert key in entry
        assert "secret_outputs" in entry


def test_plan_preview_shows_unknowns_in_the_tree_and_the_json() -> None:
    out = run("plan", "--stack", "prod", "--phase", "p2a-k3s", "--preview", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["view"] == "preview"
    provider = next(r for r in doc["resources"] if r["type"] == "pulumi:providers:kubernetes")
    # The kubeconfig comes from a command not yet run: unknown, and still never printed.
    assert provider["inputs"]["kubeconfig"] == "[unknown]" and provider["unknown_inputs"] == ["kubeconfig"]
    text = run("plan", "--stack", "prod", "--phase", "p2a-k3s", "--preview")
    assert "First preview:" in text.stdout and "[unknown]" in text.stdout


def test_bad_stack_file_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    doc["config"]["gpu-platform:adminCidrs"] = ["10.0.0.1/8"]
    proposed = tmp_path / "Pulumi.proposed.yaml"
    proposed.write_text(yaml.safe_dump(doc))
    out = run("plan", "--stack", "prod", "--stack-file", str(proposed))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: gpu-platform:adminCidrs[0]: not a valid CIDR such as 203.0.113.0/24 "
        "(host bits must be zero) (got '10.0.0.1/8')"
    ]
    assert "Traceback" not in out.stderr + out.stdout


def test_unknown_stack_and_unreadable_files_exit_2(tmp_path: Path) -> None:
    assert run("plan", "--stack", "staging").returncode == 2
    broken = tmp_path / "Pulumi.broken.yaml"
    broken.write_text("config: [unclosed")
    out = run("plan", "--stack", "dev", "--stack-file", str(broken))
    assert out.returncode == 2 and "not valid YAML" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_diff_runs_for_every_adjacent_pair_in_both_directions(
    stack: str, cached_record: None, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = phase_ids()
    for before, after in itertools.pairwise(ids):
        for a, b in ((before, after), (after, before)):
            code = cli.main(["diff", "--stack", stack, "--from", a, "--to", b, "--json"])
            doc = json.loads(capsys.readouterr().out)
            assert (doc["from"], doc["to"]) == (a, b)
            protected = [c for c in doc["changes"] if c["kind"] in ("delete", "replace") and c["protected"]]
            assert code == (3 if protected or doc["irreversible"] else 0), f"{stack} {a}->{b}"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_rolling_back_past_the_fly_destroy_is_refused_in_every_stack(
    stack: str, cached_record: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["diff", "--stack", stack, "--from", "p4-decommission", "--to", "p3-local-brain"])
    out = capsys.readouterr().out
    assert code == 3
    assert "p4-decommission did fly-destroy, which cannot be undone" in out
    # Pulumi itself refuses too, at preview, before an `up` restarts anything: the destroy steps
    # are protected even in dev, where nothing else is.
    destroys = [r for r in recorded(stack, "p4-decommission").resources if r.name.endswith("-destroy")]
    assert destroys and all(r.protect for r in destroys)


def test_diff_exits_3_when_a_protected_resource_would_go(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = res("backups", "aws:s3/bucketV2:BucketV2", protect=True, retain=True)
    plans = {"p0-baseline": fake_plan("p0-baseline", bucket), "p1-fly-freeze": fake_plan("p1-fly-freeze")}
    monkeypatch.setattr(harness, "record", lambda stack, phase=None, **_: plans[phase])
    assert cli.main(["diff", "--stack", "prod", "--from", "p0-baseline", "--to", "p1-fly-freeze"]) == 3
    out = capsys.readouterr().out
    assert "PROTECTED" in out and "refused" in out


def test_a_plan_imports_only_the_reviewed_packages_and_stays_fast() -> None:
    """Issue 2's budget (a plan under 3 s) guarded by what load cannot move: the imports.

    A plan's time is mostly importing provider SDKs, so the guard is the set of third-party
    packages `migrate plan --stack prod` at the last phase imports (tools/plan_imports.py),
    against the reviewed tools/plan_imports.txt: a new one fails naming it and its import cost.
    That holds on a busy host and a quiet one alike. The CPU time of the same run is only a
    loose backstop against a slowdown that is not an import (twice the 3 s budget: on the 2-core
    development VM the same commit measured 2.4-2.5 s of CPU quiet and up to 3.6 s busy, so a
    tight wall or CPU bound either flakes or lets a 0.8 s import regression through).
    """
    run = plan_imports.measure()
    found = plan_imports.problems(run, plan_imports.reviewed())
    print(f"{len(run.modules)} packages, cpu {run.cpu_seconds:.2f} s")
    assert not found, "\n".join(found)
    assert run.cpu_seconds < 6.0, f"cpu {run.cpu_seconds:.2f} s"


def test_the_import_guard_fails_on_an_added_heavy_import() -> None:
    # pulumi_gcp.compute is the import that once cost a plan 0.8 s (README); its package loads
    # its modules on first attribute access, hence `:Instance`. A cheaper phase
    # keeps this run short, and only the new-import lines matter here.
    run = plan_imports.measure(
        inject=("pulumi_gcp.compute:Instance",), plan_args=("plan", "--stack", "dev", "--phase", "p0-baseline")
    )
    new = [line for line in plan_imports.problems(run, plan_imports.reviewed()) if line.startswith("new import")]
    assert len(new) == 1 and new[0].startswith("new import: pulumi_gcp.compute ("), new
    cost_ms = float(new[0].split("(", 1)[1].split(" ms", 1)[0])
    assert cost_ms > 100, new[0]


def test_the_import_guard_groups_modules_and_names_both_directions() -> None:
    stderr = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:      1500 |       1500 |   json",
            "import time:       200 |        900 |     pulumi_aws.get_region",
            "import time:      7000 |       9000 |   pulumi_aws.s3.bucket",
            "import time:      2000 |       2000 |   pulumi_aws.s3",
            "import time:       300 |        300 | components.core.model",
            "import time:        50 |         50 | sitecustomize",
        ]
    )
    modules = plan_imports.parse_importtime(stderr)
    assert modules["pulumi_aws.s3.bucket"] == 7000
    grouped = plan_imports.groups(modules, startup={"sitecustomize"})
    assert grouped == {"pulumi_aws": 2200, "pulumi_aws.s3": 7000}
    found = plan_imports.problems(plan_imports.Run(grouped, 1.0), {"pulumi_aws", "rich"})
    assert found[0].startswith("new import: pulumi_aws.s3 (7.0 ms self time")
    assert found[1].startswith("no longer imported: rich;")
