"""scripts/find-python.sh and the Makefile: the supported Pythons are found, anything else stops make with one line.

The probe itself runs on the interpreter running these tests (a supported one); the others are
stand-ins that answer the probe as an old or a venv-less Python would, or do not run at all (a pyenv
shim for a version that is not selected), since which real interpreters exist differs per machine.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "find-python.sh"


def _stand_in(folder: Path, name: str, answer: str | None) -> Path:
    """An executable `name` that prints `answer` whatever it is asked, or fails as a broken shim does."""
    path = folder / name
    body = f"echo '{answer}'" if answer is not None else "echo 'pyenv: python3.12: command not found' >&2; exit 127"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def _find(*candidates: str, path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{path}:/usr/bin:/bin" if path else os.environ["PATH"]}
    return subprocess.run(
        ["bash", str(SCRIPT), *candidates], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_a_supported_interpreter_is_printed_as_itself() -> None:
    found = _find(sys.executable)
    assert found.returncode == 0, found.stdout
    assert found.stdout.strip() == sys.executable


def test_unsupported_and_broken_ones_are_passed_over_for_the_next(tmp_path: Path) -> None:
    _stand_in(tmp_path, "python3.11", "is cpython 3.10.13")
    _stand_in(tmp_path, "python3.12", None)
    found = _find("python3.11", "python3.12", sys.executable, path=tmp_path)
    assert (found.returncode, found.stdout.strip()) == (0, sys.executable)


def test_none_supported_is_one_line_with_what_to_install(tmp_path: Path) -> None:
    _stand_in(tmp_path, "python3.11", "is 3.11.2 without the venv module (apt-get install python3.11-venv)")
    _stand_in(tmp_path, "python3", "is cpython 3.10.13")
    found = _find("python3.11", "python3.12", "python3", path=tmp_path)
    assert found.returncode == 1
    assert found.stdout.splitlines() == [
        "no supported Python (python3.11 is 3.11.2 without the venv module (apt-get install python3.11-venv); "
        "python3 is cpython 3.10.13): the project needs CPython 3.11, 3.12 or 3.13 with its venv module; "
        "install one (Debian 12: apt-get install python3.11-venv; Ubuntu 24.04: apt-get install python3.12-venv) "
        "or run make PYTHON=/path/to/python3.12"
    ]


def test_make_stops_before_anything_runs_on_an_unsupported_python(tmp_path: Path) -> None:
    old = _stand_in(tmp_path, "python3.10", "is cpython 3.10.13")
    # -n: were the check to let it through, make would only print the commands, and exit 0.
    # Run from `make test` itself, this make would inherit MAKELEVEL and print make[1]'s
    # "Entering directory" line: the user's own top-level make is what is tested.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")}
    stopped = subprocess.run(
        ["make", "-n", "test", f"PYTHON={old}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert stopped.returncode == 2
    assert stopped.stdout == ""
    (line,) = stopped.stderr.splitlines()
    assert re.match(
        rf"Makefile:\d+: \*\*\* no supported Python \({re.escape(str(old))} is cpython 3\.10\.13\): ", line
    ), line
