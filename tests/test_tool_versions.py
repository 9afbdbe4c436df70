"""The outside tools' version gate (tests/tool_versions.py) on the real binaries and on stand-ins.

A stand-in prints exactly what the installed binary prints for its version, with only the number
changed: one release older than the minimum is refused with the reason and the command that fixes
it, a newer major is accepted. The README's table lists every tool with its minimum.
"""

from __future__ import annotations

import re
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, shellcheck
from tests.realdb.tools import tools
from tests.tool_versions import TOOLS, UnfitToolError, Version, found_version, require, shown


def installed(name: str) -> str:
    """The binary the tests use: a pinned tool where its pin puts it, a system tool on PATH."""
    if name == "pg_restore":
        return str(tools().pg_bin / "pg_restore")
    if name == "shellcheck":
        return shellcheck()
    return require(name)


def stand_in(tmp_path: Path, name: str, version: str) -> Path:
    """A script that prints what the installed `name` prints for its version, with `version` in it."""
    tool = TOOLS[name]
    real = installed(name)
    out = subprocess.run([real, *tool.version_argv], capture_output=True, text=True, timeout=60, check=False)
    text = out.stdout + out.stderr
    found = re.search(tool.pattern, text, re.MULTILINE)
    assert found, f"{name}: the pattern no longer finds the version in {text[:200]!r}"
    script = tmp_path / f"{name}-{version}" / name
    script.parent.mkdir(parents=True)
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{text[: found.start(1)]}{version}{text[found.end(1) :]}EOF\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def older(minimum: Version) -> str:
    return shown((*minimum[:-1], minimum[-1] - 1))


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_the_installed_tool_is_fit(name: str) -> None:
    assert found_version(name, installed(name)) >= TOOLS[name].minimum


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_an_older_release_is_refused_with_the_reason_and_the_fix(tmp_path: Path, name: str) -> None:
    tool = TOOLS[name]
    old = stand_in(tmp_path, name, older(tool.minimum))
    with pytest.raises(UnfitToolError) as refused:
        require(name, old)
    message = str(refused.value)
    assert f"{name} {older(tool.minimum)} at {old} is older than {shown(tool.minimum)}" in message
    assert tool.why in message and f"`{tool.fix}`" in message
    newer = stand_in(tmp_path, name, f"{tool.minimum[0] + 1}.0.0")
    assert require(name, newer) == str(newer)


def test_a_missing_or_unreadable_tool_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UnfitToolError, match=r"promtool is missing; run `make tools-validators`"):
        require("promtool")
    garbled = tmp_path / "curl"
    garbled.write_text("#!/bin/sh\necho 'curl, but not as you know it'\n")
    garbled.chmod(0o755)
    with pytest.raises(
        UnfitToolError, match=r"cannot read the version of .*curl.*7\.75 or newer.*make tools-datastores"
    ):
        require("curl")


def test_the_readme_lists_every_tool_with_its_minimum() -> None:
    readme = (ROOT / "README.md").read_text()
    for name, tool in TOOLS.items():
        row = re.search(rf"^\| `{re.escape(name)}` \|(.*)$", readme, re.MULTILINE)
        assert row, f"README.md's outside-tools table has no row for {name}"
        cells = [c.strip() for c in row.group(1).split("|")]
        assert shown(tool.minimum) in cells, f"README.md gives {name} another minimum than {shown(tool.minimum)}"
