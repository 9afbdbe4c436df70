"""What a plan imports, against the reviewed list: `python -m tools.plan_imports [--write]`.

A plan's time is mostly imports (README, "Looking before you leap"): importing `pulumi_gcp.compute`
alone once added 0.8 s to a 2.5 s plan. Wall and CPU time move with the host's load, so the guard
in tests/test_cli.py checks something that does not: the set of third-party packages (and their
subpackages: `pulumi_kubernetes.core`, `pulumi_aws.s3`) that `migrate plan --stack prod` at the
last phase imports, against `tools/plan_imports.txt`. A package not on the list fails with what it
cost in that same run (`python -X importtime`, the self time of every module under it); a package
on the list that the plan no longer imports fails too, so the list stays the truth.

The run is `python -X importtime -m tools.plan_imports --run [--inject MOD]... -- <migrate args>`:
it imports the injected modules first (`module` or `module:attribute`, so the test can prove
the guard fails on a new import),
then runs `migrate` as `python -m migrate` would. Modules the interpreter imports before any code
runs (site, sitecustomize, setuptools' `.pth` hook) come from a `-c pass` run and are left out;
so are the standard library and the project's own packages, whose cost is their imports.

`--write` rewrites the list from a run; review the diff like code.
"""

from __future__ import annotations

import argparse
import importlib
import re
import runpy
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REVIEWED = ROOT / "tools" / "plan_imports.txt"
LAST_PHASE = "p4-decommission"
PLAN_ARGS = ("plan", "--stack", "prod", "--phase", LAST_PHASE)
PROJECT = frozenset({"components", "migrate", "policy", "tools", "tests", "benchmarks", "__main__"})
DEPTH = 2
# `import time: self [us] | cumulative | <indent>name`, one line per module executed.
_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|\s*(\S+)\s*$")


class GuardError(Exception):
    """The plan subprocess failed; the message carries its stderr."""


@dataclass(frozen=True)
class Run:
    """One plan: self time in microseconds per imported module, in import order, and the CPU it took."""

    modules: dict[str, int]
    cpu_seconds: float


def parse_importtime(stderr: str) -> dict[str, int]:
    modules: dict[str, int] = {}
    for line in stderr.splitlines():
        if m := _LINE.match(line):
            modules[m.group(3)] = modules.get(m.group(3), 0) + int(m.group(1))
    return modules


def group(module: str) -> str | None:
    """The reviewed-list entry `module` falls under, or None for the stdlib and the project."""
    parts = module.split(".")
    if parts[0] in sys.stdlib_module_names or parts[0] in PROJECT or parts[0].startswith("_sysconfigdata"):
        return None
    # A subpackage's modules count under it (pulumi_aws.s3.bucket -> pulumi_aws.s3); a package's own
    # top-level modules (pulumi_aws.get_region, rich.console) under the package.
    return ".".join(parts[:DEPTH]) if len(parts) > DEPTH else parts[0]


def groups(modules: dict[str, int], startup: set[str]) -> dict[str, int]:
    """Entry -> summed self time (us) of its modules, leaving out what the interpreter imports alone."""
    out: dict[str, int] = defaultdict(int)
    for module, self_us in modules.items():
        if module not in startup and (entry := group(module)) is not None:
            out[entry] += self_us
    return dict(out)


def _importtime(args: list[str]) -> tuple[dict[str, int], float]:
    import resource  # noqa: PLC0415 - Unix-only; a plan never loads this module

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        tail = "\n".join(line for line in proc.stderr.splitlines() if not line.startswith("import time:"))
        raise GuardError(f"python {' '.join(args)} exited {proc.returncode}:\n{tail[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return parse_importtime(proc.stderr), cpu


def measure(inject: tuple[str, ...] = (), plan_args: tuple[str, ...] = PLAN_ARGS) -> Run:
    """Run the plan in a fresh interpreter under `-X importtime`; the startup imports left out."""
    startup, _ = _importtime(["-c", "pass"])
    injected = [arg for mod in inject for arg in ("--inject", mod)]
    modules, cpu = _importtime(["-m", "tools.plan_imports", "--run", *injected, "--", *plan_args])
    return Run(groups(modules, set(startup)), cpu)


def reviewed(path: Path = REVIEWED) -> set[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return {line for line in lines if line}


def problems(run: Run, allowed: set[str]) -> list[str]:
    """One line per difference between what the plan imported and the reviewed list; empty when equal."""
    new = sorted(set(run.modules) - allowed, key=lambda m: (-run.modules[m], m))
    gone = sorted(allowed - set(run.modules))
    lines = [
        f"new import: {m} ({run.modules[m] / 1000:.1f} ms self time in this run, python -X importtime); "
        f"import it lazily where it is used, or add it to {REVIEWED.relative_to(ROOT)} after review"
        for m in new
    ]
    lines += [f"no longer imported: {m}; remove it from {REVIEWED.relative_to(ROOT)}" for m in gone]
    return lines


def _run_migrate(inject: list[str], argv: list[str]) -> None:
    for spec in inject:
        # `module:attribute` touches the attribute too: the provider SDKs load lazily on access.
        module, _, attribute = spec.partition(":")
        loaded = importlib.import_module(module)
        if attribute:
            getattr(loaded, attribute)
    sys.argv = ["migrate", *argv]
    runpy.run_module("migrate", run_name="__main__", alter_sys=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.plan_imports", description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite {REVIEWED.name} from a run")
    parser.add_argument("--run", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--inject", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        _run_migrate(args.inject, args.rest)  # exits with migrate's code
        return 0
    try:
        run = measure()
    except GuardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.write:
        header = "# Third-party packages `migrate plan --stack prod` imports (tools/plan_imports.py); reviewed.\n"
        REVIEWED.write_text(header + "".join(f"{m}\n" for m in sorted(run.modules)))
        print(f"wrote {len(run.modules)} entries to {REVIEWED.relative_to(ROOT)}")
        return 0
    found = problems(run, reviewed())
    for line in found:
        print(line)
    total = sum(run.modules.values()) / 1e6
    print(f"{len(run.modules)} packages, {total:.2f} s self time, {run.cpu_seconds:.2f} s CPU for the whole plan")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
