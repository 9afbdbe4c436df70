"""What an offline review can say about a stack file's keys and secrets before anything is recorded.

Offline there is nothing to decrypt `secure:` values with, so the harness hands the program a
placeholder for every secret key and a plan alone cannot tell a stack that holds its secrets from
one that does not. This module reads the stack file itself:

- which secret keys the phase needs (the same conditions under which the program calls
  `require_secret` or refuses to plan: components/config/load.py, components/stack.py,
  components/platform/platform.py) and which of them the file does not hold as `secure:` values;
- a secret key stored in clear text is an error (it would be committed and printed);
- a key Pulumi.yaml does not declare, in the project's namespace or in one that resembles it
  (`gpu-platfrom:domain`), is refused with the nearest declared key: Pulumi would pass it on and the
  program would silently use the default;
- a `Pulumi.<name>.yaml` or an `environment` that names another stack than `--stack` is refused.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.catalog.services import app_secret_keys
from components.config.load import SECRET_ENV, SECRET_KEYS
from components.config.phases import Phase, resolve
from components.config.schema import NAMESPACE
from components.core.errors import ConfigError
from migrate import harness

ROOT = Path(__file__).resolve().parent.parent

# App Secret keys of the platform's services -> the stack config key that fills each; the same
# table as components/platform/platform.py, whose private copy tests/test_stack_review.py compares.
APP_SECRET_CONFIG = {
    "lambda-api-key": "lambdaApiKey",
    "github-token": "githubToken",
    "hubspot-access-token": "hubspotAccessToken",
    "llm-api-key": "cloudLlmApiKey",
}


@functools.cache
def declared_keys(project_file: Path = ROOT / "Pulumi.yaml") -> dict[str, bool]:
    """Every config key Pulumi.yaml declares -> whether it is `secret: true`. The source of truth."""
    doc = yaml.safe_load(project_file.read_text())
    config = doc.get("config") or {}
    return {key: bool(isinstance(spec, dict) and spec.get("secret")) for key, spec in config.items()}


def needed_secrets(phase: Phase, raw: Mapping[str, Any]) -> dict[str, str]:
    """Secret key -> why the phase needs it."""
    state = phase.state
    needed = {name: "every phase" for name, required in SECRET_KEYS if required}
    router = raw.get("router")
    if isinstance(router, dict) and router.get("cloudFallback") is True:
        needed["cloudLlmApiKey"] = "router.cloudFallback is true"
    if state.backups.compose_data or state.legacy.compose == "stopped":
        needed["composeSshPrivateKey"] = f"{phase.id} logs in to the Compose host"
    if state.platform.services_stateless:
        for key, required in app_secret_keys().items():
            if required and key in APP_SECRET_CONFIG:
                needed.setdefault(APP_SECRET_CONFIG[key], "platform.servicesStateless: a service's app Secret")
    if state.platform.restore_from_backup:
        for name in ("backupAccessKeyId", "backupSecretAccessKey"):
            needed[name] = "platform.restoreFromBackup: the restore Jobs read the bucket"
    elif state.platform.services_stateful:
        for name in ("backupAccessKeyId", "backupSecretAccessKey"):
            needed[name] = "platform.servicesStateful: the scheduled backups write the bucket"
    return needed


@dataclass(frozen=True)
class StackReview:
    path: Path
    secure: frozenset[str]  # secret keys the file holds as `secure:` values
    needed: dict[str, str]  # secret key -> why this phase needs it
    phase_id: str = ""  # the phase reviewed
    # The file imports Pulumi ESC environments (its top-level `environment:`), which may hold the
    # secrets: offline nothing can read them, so a missing `secure:` value is no proof of absence.
    imports_environments: bool = False

    @property
    def missing(self) -> list[str]:
        return [name for name in self.needed if name not in self.secure]

    def unprovided(self, environ: Mapping[str, str]) -> list[str]:
        """The missing secrets that the environment does not stand in for either (SECRET_ENV): the
        program would refuse to run without them."""
        return [name for name in self.missing if not environ.get(SECRET_ENV.get(name, ""))]

    def missing_lines(self, environ: Mapping[str, str]) -> list[str]:
        lines = []
        for name in self.missing:
            env = SECRET_ENV.get(name)
            from_env = f"; {env} is set, which the program takes instead" if env and environ.get(env) else ""
            lines.append(
                f"{NAMESPACE}:{name} (needed: {self.needed[name]}): no secure: value in {self.path.name}{from_env}"
            )
        return lines

    def to_json(self) -> dict[str, Any]:
        return {"needed": self.needed, "present": sorted(self.secure & set(self.needed)), "missing": self.missing}


def _nearest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {NAMESPACE}:{close[0]}?" if close else ""


def _resembles_namespace(ns: str) -> bool:
    return ns != NAMESPACE and difflib.SequenceMatcher(None, ns.lower(), NAMESPACE).ratio() >= 0.75


def problems(stack: str, path: Path, config: Mapping[Any, Any], explicit_file: bool) -> list[str]:
    """Everything wrong with the keys of a stack file, one line each."""
    found: list[str] = []
    declared = declared_keys()
    names = sorted(declared)
    file_stack = re.fullmatch(r"Pulumi\.(.+)\.yaml", path.name)
    known = {p.name for p in ROOT.glob("Pulumi.*.yaml")}  # a proposed file may have any other name
    if explicit_file and file_stack and path.name in known and file_stack.group(1) != stack:
        found.append(
            f"{path.name}: the file of stack {file_stack.group(1)}, reviewed as --stack {stack}; "
            f"did you mean --stack {file_stack.group(1)}?"
        )
    environment = config.get(f"{NAMESPACE}:environment")
    if isinstance(environment, str) and stack in ("dev", "prod") and environment != stack:
        found.append(
            f"{NAMESPACE}:environment: {environment!r} in {path.name}, reviewed as --stack {stack}; "
            f"did you mean --stack {environment}?"
        )
    for key, value in config.items():
        if not isinstance(key, str) or ":" not in key:
            continue  # harness.read_stack_file names these
        ns, _, name = key.partition(":")
        if _resembles_namespace(ns):
            hint = f"; did you mean {NAMESPACE}:{name}?" if name in declared else _nearest(name, names)
            found.append(f"{key}: unknown namespace {ns!r}, so the program would never read it{hint}")
        elif ns == NAMESPACE and name.split(".")[0] not in declared:
            found.append(f"{key}: not a key Pulumi.yaml declares{_nearest(name, names)}")
        elif ns == NAMESPACE and declared.get(name) and not (isinstance(value, dict) and "secure" in value):
            found.append(
                f"{key}: a secret stored in clear text in {path.name}; remove it, rotate it, and set it with "
                f"`pulumi config set --secret {name}`"
            )
    return found


def review(stack: str, path: Path, phase: Phase, *, explicit_file: bool) -> StackReview:
    """Refuse a stack file with bad keys (ConfigError naming each); otherwise what it holds and needs."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        doc = None  # harness.read_stack_file reports an unreadable file with the reason
    config = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(config, dict):
        return StackReview(path, frozenset(), {})
    found = problems(stack, path, config, explicit_file)
    if found:
        raise ConfigError("; ".join(found) if len(found) == 1 else f"{path.name}:\n  " + "\n  ".join(found))
    prefix = f"{NAMESPACE}:"
    secure = frozenset(
        k[len(prefix) :]
        for k, v in config.items()
        if isinstance(k, str) and k.startswith(prefix) and isinstance(v, dict) and "secure" in v
    )
    raw = {k[len(prefix) :]: v for k, v in config.items() if isinstance(k, str) and k.startswith(prefix)}
    esc = bool(doc.get("environment"))
    return StackReview(path, secure, needed_secrets(phase, raw), phase.id, imports_environments=esc)


def stack_path(stack: str, stack_file: str | None = None) -> Path:
    """The stack file to review: `stack_file` when given, else the stack's own Pulumi.<stack>.yaml."""
    if stack_file:
        path = Path(stack_file)
        if not path.is_file():
            raise ConfigError(f"--stack-file {stack_file}: no such file")
        return path
    path = harness.stack_file(stack)
    if not path.is_file():
        known = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in path.parent.glob("Pulumi.*.yaml"))
        raise ConfigError(f"--stack {stack}: no Pulumi.{stack}.yaml; known stacks: {', '.join(known)}")
    return path


def review_stack(stack: str, path: Path, phase_id: str | None, *, explicit_file: bool = False) -> StackReview:
    """The review every command runs before anything else (plan, diff, check, forward, rollback): the
    file must read, its keys must be declared and its secrets not in clear text, and the phase
    (`phase_id`, else the file's `gpu-platform:phase`) must exist; ConfigError names each fault."""
    raw = harness.read_stack_file(path)
    phase = resolve(phase_id or str(raw.get("phase", "")))
    return review(stack, path, phase, explicit_file=explicit_file)


def missing_summary(reviews: Sequence[StackReview], environ: Mapping[str, str]) -> str | None:
    """One line for the secrets that the reviewed phases need and the file holds no `secure:` value
    for, each under the first phase that needs it, with why; None when nothing is missing. A
    committed stack file never holds them (operators set them with `pulumi config set --secret`),
    so this is one line per stack, not one per secret."""
    first: dict[str, tuple[str, str]] = {}  # secret -> (first phase, why)
    path_name = ""
    for sr in reviews:
        path_name = sr.path.name
        for name in sr.unprovided(environ):
            first.setdefault(name, (sr.phase_id, sr.needed[name]))
    if not first:
        return None
    groups: dict[str, dict[str, list[str]]] = {}  # phase -> why -> secrets, in order of appearance
    for name, (phase_id, why) in first.items():
        groups.setdefault(phase_id, {}).setdefault(why, []).append(name)
    parts = [
        f"from {phase_id}: " + ", ".join(f"{', '.join(names)} ({why})" for why, names in whys.items())
        for phase_id, whys in groups.items()
    ]
    return (
        f"{path_name} holds no secure: value for {len(first)} secret(s) the checked phases need, so the "
        f"policy pack saw placeholders for them: {'; '.join(parts)}. `pulumi up` (and `migrate forward`) "
        "refuses the phase until they are set with `pulumi config set --secret <key>`"
    )
