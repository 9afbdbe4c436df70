"""The policy pack laid out and started as the Pulumi CLI starts it: from the virtualenv that
policy/PulumiPolicy.yaml declares, never with the project's own Python.

What the CLI does (pulumi/pulumi at v3.259, the source read here; the project pins the SDK 3.272):
- sdk/go/common/resource/plugin/analyzer_plugin.go, NewPolicyAnalyzer: a pack whose runtime has a
  language plugin (python has) runs through that plugin's RunPlugin, with the engine address as its
  one argument and the pack's directory as the program directory.
- sdk/python/cmd/pulumi-language-python/main.go, RunPlugin: reads the runtime options (toolchain,
  virtualenv) relative to the pack's root and, for an analyzer, runs
  `<python> -u -m pulumi.policy <engine address> <pack directory>` in the pack's directory.
- sdk/python/toolchain/pip.go: with `toolchain: pip` and `virtualenv: venv`, <python> is
  `<pack>/venv/bin/python` with the environment activated (ActivateVirtualEnv: the venv's bin first
  on PATH, VIRTUAL_ENV set, PYTHONHOME removed). `pulumi install` in the pack's directory
  (pkg/cmd/pulumi/install/install.go) makes that venv (InstallDependencies): `python3 -m venv`,
  with PULUMI_PYTHON_CMD, else python3, else python from PATH; `pip install --upgrade pip setuptools
  wheel`; `pip install -r requirements.txt` in the pack's directory.

Here the venv is made the same way, with two differences: pip, setuptools and wheel are not
upgraded (an unpinned download that changes nothing the pack imports), and the pack's requirements
are constrained to the versions the project's own venv resolved (policy/requirements.txt pins only
pulumi and pulumi-policy, and the CLI would take whatever the index serves that day). It is kept
outside the work tree under the cache dir, keyed by those requirements and the interpreter, and the
pack directory a test starts is a fresh directory of links to policy/'s files with `venv` linking to
it: the CLI's layout, without writing into policy/.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from migrate.policy_runner import POLICY_DIR

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gpu-platform"
REQUIREMENTS = POLICY_DIR / "requirements.txt"


def declared_virtualenv() -> str:
    """The `virtualenv` runtime option of policy/PulumiPolicy.yaml (relative to the pack, as the CLI reads it)."""
    runtime = yaml.safe_load((POLICY_DIR / "PulumiPolicy.yaml").read_text())["runtime"]
    options = runtime.get("options") or {}
    assert runtime.get("name") == "python" and options.get("toolchain", "pip") == "pip", (
        f"PulumiPolicy.yaml declares {runtime}; this harness starts a pip-toolchain Python pack only"
    )
    venv = options.get("virtualenv")
    assert isinstance(venv, str) and venv and not Path(venv).is_absolute(), (
        f"PulumiPolicy.yaml declares virtualenv {venv!r}; the pack's venv is a folder inside it"
    )
    return venv


def _pinned_closure(names: Iterable[str]) -> dict[str, str]:
    """The versions the project's venv has of `names` and everything they require."""
    found: dict[str, str] = {}
    todo = [canonicalize_name(n) for n in names]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # not installed here (an optional or other-platform dependency): left to pip
        found[name] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return found


def activated(environ: Mapping[str, str], venv: Path) -> dict[str, str]:
    """`environ` as the CLI's ActivateVirtualEnv leaves it for `venv`."""
    env = {k: v for k, v in environ.items() if k not in ("PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join(p for p in (str(venv / "bin"), environ.get("PATH", "")) if p)
    env["VIRTUAL_ENV"] = str(venv)
    return env


def _run(argv: list[str], what: str, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False, cwd=cwd, env=env)
    if result.returncode != 0:
        pytest.fail(
            f"{what} failed (exit {result.returncode}): {' '.join(argv)}\n{(result.stdout + result.stderr)[-3000:]}\n"
            "The Pulumi CLI needs the same venv (`pulumi install` in policy/); the package index must be reachable.",
            pytrace=False,
        )
    return str(result.stdout)


def pack_virtualenv() -> Path:
    """The pack's venv, made once per key as `pulumi install` makes it (see the module's docstring)."""
    python = os.environ.get("PULUMI_PYTHON_CMD") or shutil.which("python3") or shutil.which("python")
    assert python, "no python3 or python on PATH, which is where the Pulumi CLI looks for one"
    interpreter = _run([python, "-c", "import sys; print(sys.version)"], "asking the CLI's python its version")
    tops = re.findall(r"^([A-Za-z0-9_.-]+)==", REQUIREMENTS.read_text(), re.MULTILINE)
    constraints = "".join(f"{n}=={v}\n" for n, v in sorted(_pinned_closure(tops).items()))
    key = hashlib.sha256("\0".join((REQUIREMENTS.read_text(), constraints, interpreter)).encode()).hexdigest()[:12]
    venv = CACHE / f"policy-venv-{key}"
    stamp = venv / ".installed"
    if stamp.exists():
        return venv
    CACHE.mkdir(parents=True, exist_ok=True)
    # One maker per key: pytest-xdist workers and other checkouts share the cache.
    with (CACHE / f"policy-venv-{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists():
            shutil.rmtree(venv, ignore_errors=True)
            _run([python, "-m", "venv", str(venv)], "creating the policy pack's venv")
            (venv / "constraints.txt").write_text(constraints)
            pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            _run(
                [*pip, "-r", "requirements.txt", "-c", str(venv / "constraints.txt")],
                "installing policy/requirements.txt into the pack's venv",
                cwd=POLICY_DIR,
                env=activated(os.environ, venv),
            )
            stamp.touch()
    return venv


def pack_directory(parent: Path, venv: Path) -> Path:
    """A directory laid out as the CLI expects the pack: policy/'s files, and the declared venv in it."""
    name = declared_virtualenv()
    pack = parent / "policy"
    pack.mkdir()
    for item in POLICY_DIR.iterdir():
        if item.name not in (name, "__pycache__"):
            (pack / item.name).symlink_to(item)
    (pack / name).symlink_to(venv, target_is_directory=True)
    return pack
