"""`make test` runs pytest with `--dist loadgroup` so that the tests of one `xdist_group` share a
worker: the llm-real tests stop llama-server half-way, the datastore tests share their servers. The
pinned pytest and pytest-xdist must still do that (pytest 9.2 broke it, pytest-dev/pytest-xdist#1386):
two modules of one group and one ungrouped module, run the way the Makefile runs the suite."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

GROUPED = """
import pytest

pytestmark = [pytest.mark.xdist_group("shared")]


@pytest.mark.parametrize("i", range(4))
def test_it(i):
    pass
"""
LOOSE = """
def test_one():
    pass


def test_two():
    pass
"""


def test_one_group_runs_on_one_worker(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_a.py").write_text(GROUPED)
    (tmp_path / "test_b.py").write_text(GROUPED)
    (tmp_path / "test_c.py").write_text(LOOSE)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-vv", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    ran = re.findall(r"^\[(gw\d+)\] .*PASSED (test_\w)\.py::", run.stdout, re.MULTILINE)
    assert len(ran) == 10, run.stdout[-3000:]
    grouped = {worker for worker, module in ran if module in ("test_a", "test_b")}
    assert len(grouped) == 1, f"the group ran on {sorted(grouped)}:\n{run.stdout[-3000:]}"
