"""The GitHub workflows: they parse, trigger when they should, and run only what this repository has.

Every `run:` step is split into commands; each must be a Makefile target, a `python -m migrate`
subcommand whose arguments that subcommand's parser accepts, a `python -m migrate.<tool>` whose
parser accepts them, a script in the repository, or a shell builtin. A workflow that calls something
the repository does not have fails here instead of on GitHub.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.catalog import versions
from tools import fetch

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
BUILTINS = {"echo", "test", "true", "printf"}


def _load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(doc, dict), name
    # YAML 1.1 reads the bare key `on` as the boolean True.
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def _all() -> dict[str, dict[str, Any]]:
    return {path.name: _load(path.name) for path in sorted(WORKFLOWS.glob("*.yml"))}


def _steps(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for job_name, job in doc["jobs"].items():
        for step in job.get("steps", []):
            yield job_name, step


def _uses(doc: dict[str, Any], action: str) -> list[tuple[str, dict[str, Any]]]:
    return [(job, step) for job, step in _steps(doc) if str(step.get("uses", "")).split("@")[0] == action]


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return {m.group(1) for m in re.finditer(r"^([A-Za-z0-9_.-]+):(?!=)", text, re.MULTILINE)}


def _parser_for(module: str) -> argparse.ArgumentParser:
    mod = importlib.import_module(module)
    builder = getattr(mod, "build_parser", None)
    assert builder is not None, f"{module} has no build_parser(); the workflow test cannot check its arguments"
    parser: argparse.ArgumentParser = builder()
    return parser


def _parses(parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    try:
        parser.parse_args(argv)
    except SystemExit:
        return f"{parser.prog} rejects {argv}"
    return None


def _commands(script: str) -> Iterator[list[str]]:
    # Expressions are filled in by GitHub before the shell runs; a placeholder word stands in.
    script = re.sub(r"\$\{\{[^}]*\}\}", "EXPR", script)
    for line in script.replace("\\\n", " ").splitlines():
        for part in re.split(r"&&|\|\||;|\|", line):
            words = shlex.split(part, comments=True)
            # Redirections and their targets are not commands.
            cleaned: list[str] = []
            skip = False
            for word in words:
                if skip:
                    skip = False
                    continue
                if word in (">", ">>", "2>", "<"):
                    skip = True
                    continue
                if word.startswith((">", "2>")):
                    continue
                cleaned.append(word)
            if cleaned:
                yield cleaned


def problems_of(argv: list[str]) -> str | None:
    """Why `argv` is not a command this repository provides, or None."""
    head, rest = argv[0], argv[1:]
    if head in BUILTINS:
        return None
    if head == "make":
        missing = [t for t in rest if not t.startswith("-") and "=" not in t and t not in make_targets()]
        return f"make targets not in the Makefile: {missing}" if missing else None
    if head in ("python", "python3", ".venv/bin/python"):
        if rest[:1] != ["-m"] or len(rest) < 2:
            return f"python without -m: {argv}"
        module, args = rest[1], rest[2:]
        if module == "migrate":
            return _parses(_parser_for("migrate.cli"), args)
        if module.startswith("migrate."):
            if not (ROOT / (module.replace(".", "/") + ".py")).is_file():
                return f"no module {module}"
            return _parses(_parser_for(module), args)
        return f"python -m {module} is not part of this repository"
    if "/" in head:
        path = ROOT / head
        return None if path.is_file() else f"no script {head}"
    return f"{head} is not a command this repository provides"


# --- the whole set ------------------------------------------------------------------------------


def test_the_three_workflows_exist_and_parse() -> None:
    docs = _all()
    assert set(docs) >= {"ci.yml", "deploy.yml", "drift.yml"}
    for name, doc in docs.items():
        assert doc["on"], f"{name}: no trigger"
        assert doc["jobs"], f"{name}: no jobs"
        # The token starts with nothing; each job asks for what it uses.
        assert doc.get("permissions") == {}, f"{name}: permissions: {{}} at the top, per job below"
        for job_name, job in doc["jobs"].items():
            if (name, job_name) == ("ci.yml", "preview"):
                # Only the PR preview writes anything: its comment on the pull request.
                assert job["permissions"] == {"contents": "read", "pull-requests": "write"}
            else:
                assert job.get("permissions") == {"contents": "read"}, f"{name}: {job_name} widens the token"


def test_every_run_step_uses_only_what_this_repository_has() -> None:
    seen = 0
    for name, doc in _all().items():
        for job, step in _steps(doc):
            if "run" not in step:
                continue
            for argv in _commands(step["run"]):
                seen += 1
                problem = problems_of(argv)
                assert problem is None, f"{name} job {job} step {step.get('name')!r}: {problem}"
    assert seen >= 6


_PINNED = re.compile(r"^\s*(?:-\s+)?uses:\s*([\w.-]+/[\w.-]+(?:/[\w.-]+)?)@([0-9a-f]{40}) # (v\d+\.\d+\.\d+)\s*$")


def test_every_action_is_pinned_by_commit_sha_with_its_version_in_a_comment() -> None:
    """`owner/repo@<40-hex sha> # vX.Y.Z`: the form Renovate and Dependabot keep current. One action
    is pinned to one commit everywhere."""
    seen: dict[str, tuple[str, str]] = {}
    count = 0
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for line in path.read_text().splitlines():
            if "uses:" not in line:
                continue
            m = _PINNED.match(line)
            assert m, f"{path.name}: {line.strip()!r} is not pinned by commit SHA with a # vX.Y.Z comment"
            action, sha, version = m.groups()
            assert seen.setdefault(action, (sha, version)) == (sha, version), f"{action} pinned two ways"
            count += 1
    assert count >= 10 and set(seen) == {
        "actions/checkout", "actions/setup-python", "pulumi/actions", "actions/cache/restore", "actions/cache/save"
    }  # fmt: skip
    # restore and save are two entries of one repository, pinned to one release.
    assert seen["actions/cache/restore"] == seen["actions/cache/save"]


def test_no_checkout_keeps_the_token_in_the_git_config() -> None:
    for name, doc in _all().items():
        checkouts = _uses(doc, "actions/checkout")
        assert checkouts, name
        for job, step in checkouts:
            # Nothing here pushes; a persisted token would be readable by every later step.
            assert step.get("with", {}).get("persist-credentials") is False, f"{name} {job}"


def test_pulumi_cli_version_matches_the_sdk_pin() -> None:
    pin = re.search(r"^pulumi==([\d.]+)$", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert pin
    for name, doc in _all().items():
        if _uses(doc, "pulumi/actions"):
            assert doc["env"]["PULUMI_VERSION"] == pin.group(1), name
            for _job, step in _uses(doc, "pulumi/actions"):
                assert step["with"]["pulumi-version"] == "${{ env.PULUMI_VERSION }}"


def test_every_secret_and_variable_is_documented() -> None:
    doc = (ROOT / "docs" / "state-backends.md").read_text()
    for path in WORKFLOWS.glob("*.yml"):
        for kind, name in re.findall(r"\$\{\{\s*(secrets|vars)\.([A-Z0-9_]+)", path.read_text()):
            assert f"`{name}`" in doc, f"{path.name}: {kind}.{name} is not in docs/state-backends.md"


# --- ci -----------------------------------------------------------------------------------------


def test_ci_runs_tests_and_the_offline_checks_on_pull_requests() -> None:
    ci = _load("ci.yml")
    assert "pull_request" in ci["on"]
    runs = {job: [s.get("run", "") for s in spec["steps"]] for job, spec in ci["jobs"].items()}
    assert "make test" in runs["test"]
    affected = next(r for r in runs["offline"] if "migrate.affected" in r)
    assert "--run" in affected and '--summary "$GITHUB_STEP_SUMMARY"' in affected
    # Issue 8: the policy pack on every phase of both stacks, on every pull request.
    assert "make check" in runs["offline"]
    checkout = next(s for s in ci["jobs"]["offline"]["steps"] if str(s.get("uses", "")).startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0  # the base branch must be there to diff against


def test_ci_preview_runs_with_the_policy_pack_only_when_credentials_exist() -> None:
    ci = _load("ci.yml")
    job = ci["jobs"]["preview"]
    flag = job["env"]["HAS_PULUMI_BACKEND"]
    assert "secrets.PULUMI_ACCESS_TOKEN" in flag and "vars.PULUMI_BACKEND_URL" in flag
    (_, step), *_ = _uses(ci, "pulumi/actions")
    assert step["with"]["command"] == "preview"
    assert step["with"]["policyPacks"] == "policy"
    assert step["with"]["policyPackConfigs"] == "policy/config.${{ matrix.stack }}.json"
    assert step["with"]["comment-on-pr"] is True
    assert (ROOT / "policy").is_dir()
    for s in job["steps"]:
        assert "if" in s, f"preview step {s.get('name') or s.get('uses')} runs even without credentials"
    assert job["strategy"]["matrix"]["stack"] == ["dev"]  # a PR's code never gets prod credentials


# --- the tool cache -------------------------------------------------------------------------------
#
# Pull requests read the built tools from GitHub's cache; only tools-cache.yml, which runs main's
# code, writes them. A cache a pull request's code could write would hand whatever that code built
# to the next run as a trusted tool.

CACHE_RESTORE, CACHE_SAVE = "actions/cache/restore", "actions/cache/save"
# Each cached build and the files whose hash its key must carry: what the Makefile recipe installs
# (`-r FILE`) or the build script and the repository files it reads. Pins read from
# components/catalog/versions.py enter the key as a version (`versioned`), not as that file's hash,
# which every other pin would change.
BUILDS: dict[str, set[str]] = {
    "pip": {"requirements.txt"},
    "scanners": {"security/scanners.txt"},
    "actionlint": {"security/actionlint.txt"},
    "datastore-tools": {"tests/realdb/requirements.txt"},
    "llama-server": {"scripts/build-llama-server.sh"},
    "litellm": {"scripts/litellm-venv.sh", "scripts/litellm-constraints.txt"},
    # Every file checked against its sha256 in the lock (tools/fetch.py), so the lock decides all.
    "upstream": {"tools/upstream.lock"},
}
STAMPS = {
    "pip": "STAMP",
    "scanners": "SCAN_STAMP",
    "actionlint": "ACTIONLINT_STAMP",
    "datastore-tools": "DATASTORE_STAMP",
}
SCRIPTS = {"llama-server": "scripts/build-llama-server.sh", "litellm": "scripts/litellm-venv.sh"}
_HASHFILES = re.compile(r"hashFiles\(([^)]*)\)")
_OUTPUT = re.compile(r"steps\.keys\.outputs\.([\w-]+)")


@dataclass(frozen=True)
class CacheStep:
    label: str  # workflow/job
    action: str
    name: str  # the build: the key's first word
    path: str
    key: str
    condition: str


def cache_steps() -> list[CacheStep]:
    out = []
    for name, doc in _all().items():
        for job_name, step in _steps(doc):
            action = str(step.get("uses", "")).split("@")[0]
            if action.startswith("actions/cache"):
                key = str(step["with"]["key"])
                label = f"{name.removesuffix('.yml')}/{job_name}"
                build = key.split("-${{", maxsplit=1)[0]
                out.append(CacheStep(label, action, build, str(step["with"]["path"]), key, str(step.get("if", ""))))
    return out


def _saves_a_cache(step: dict[str, Any]) -> bool:
    action = str(step.get("uses", "")).split("@")[0]
    # actions/cache saves in its post step; setup-python/-node/... save with `cache:`.
    return action in (CACHE_SAVE, "actions/cache") or (
        action.startswith("actions/setup-") and "cache" in step.get("with", {})
    )


def test_no_job_a_pull_request_reaches_writes_a_cache() -> None:
    reachable = {a.label for a in access() if a.triggers & PR_TRIGGERS}
    assert reachable
    writers = set()
    for name, doc in _all().items():
        for job, step in _steps(doc):
            if _saves_a_cache(step):
                writers.add(f"{name.removesuffix('.yml')}/{job}")
                assert not _triggers(doc) & PR_TRIGGERS, f"{name} {job}: a pull request's run saves a cache"
    assert writers == {"tools-cache/build"}
    cache = _load("tools-cache.yml")
    # Only main's code: pushes to main and the schedule (which runs the default branch), and the job
    # refuses anything else; no workflow_dispatch, which could name any branch.
    assert set(cache["on"]) == {"push", "schedule"} and cache["on"]["push"] == {"branches": ["main"]}
    assert cache["jobs"]["build"]["if"] == "github.ref == 'refs/heads/main'"
    # The job that reads the cache restores only; restore-only steps never write.
    assert {s.action for s in cache_steps() if s.label in reachable} == {CACHE_RESTORE}


def test_every_saved_tool_is_what_a_pull_request_restores() -> None:
    steps = cache_steps()
    saved = {(s.name, s.path, s.key) for s in steps if s.action == CACHE_SAVE}
    restored_by_test = {(s.name, s.path, s.key) for s in steps if s.label == "ci/test"}
    assert saved == restored_by_test
    assert {name for name, _, _ in saved} == set(BUILDS)
    for s in steps:
        if s.action == CACHE_SAVE:
            # Built and saved only where nothing was restored: an entry is never overwritten.
            assert s.condition == f"steps.{s.name}.outputs.cache-hit != 'true'", s
            assert any(r.name == s.name and r.label == s.label and r.action == CACHE_RESTORE for r in steps)


def test_each_cache_key_hashes_the_files_that_decide_its_build() -> None:
    for s in cache_steps():
        (args,) = _HASHFILES.findall(s.key)
        hashed = {a.strip().strip("'\"") for a in args.split(",")}
        assert hashed == BUILDS[s.name], f"{s.label} {s.name}: key hashes {hashed}"
        assert all((ROOT / f).is_file() for f in hashed)
        outputs = set(_OUTPUT.findall(s.key))
        # The runner image always; the Python for everything but the llama-server binary (no venv).
        # The runner image and the Python the venvs link to; the upstream files depend on neither.
        assert ("image" in outputs) == (s.name != "upstream"), s
        assert ("python" in outputs) == (s.name not in ("llama-server", "upstream")), s
        assert s.path == f"${{{{ steps.keys.outputs.{s.name} }}}}" + ("/bin" if s.name == "llama-server" else "")


def test_the_hashed_files_are_the_ones_the_builds_read() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for build, stamp in STAMPS.items():
        rule = re.search(rf"^\$\({stamp}\):.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
        assert rule, f"no rule for $({stamp}) in the Makefile"
        assert set(re.findall(r"-r (\S+)", rule.group(1))) == BUILDS[build], build
    versioned = {"components/catalog/versions.py"}
    for build, script in SCRIPTS.items():
        text = (ROOT / script).read_text()
        read = set(re.findall(r"\$(?:ROOT|root)/([\w./-]+)", text)) - {"components/catalog/versions.py"}
        assert read | {script} == BUILDS[build], build
        assert versioned <= set(re.findall(r"\$(?:ROOT|root)/([\w./-]+)", text)), build
        keys = [s.key for s in cache_steps() if s.name == build]
        assert keys and all(f"steps.keys.outputs.{build}-version" in k for k in keys), build


def test_the_keys_step_prints_every_output_the_keys_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = subprocess.run(
        ["make", "-s", "--no-print-directory", "tool-cache-keys"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
        env={**{k: v for k, v in os.environ.items() if k != "PIP_CACHE_DIR"}, "XDG_CACHE_HOME": str(tmp_path)},
    )  # fmt: skip
    printed = dict(line.split("=", 1) for line in out.stdout.splitlines())
    used = {o for s in cache_steps() for o in _OUTPUT.findall(f"{s.key} {s.path}")}
    assert used <= set(printed), used - set(printed)
    assert all(printed[o] for o in used)
    # The folders are the ones the tools are built into (XDG_CACHE_HOME respected, as the builds do).
    for name in ("scanners", "actionlint", "datastore-tools", "llama-server", "litellm", "upstream"):
        assert printed[name].startswith(f"{tmp_path}/gpu-platform/"), (name, printed[name])
    assert printed["pip"] == f"{tmp_path}/pip"  # pip's own default on Linux
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert printed["upstream"] == str(fetch.cache_root())
    assert printed["llama-server-version"] == versions.LLAMA_CPP_TEST_SOURCE["sdist"].split("==")[1]
    for name, doc in _all().items():
        for job, step in _steps(doc):
            if step.get("id") == "keys":
                assert step["run"] == 'make -s --no-print-directory tool-cache-keys >> "$GITHUB_OUTPUT"', (name, job)


# --- deploy -------------------------------------------------------------------------------------


def test_deploy_ups_dev_on_merge_then_prod_behind_the_production_environment() -> None:
    deploy = _load("deploy.yml")
    assert deploy["on"]["push"]["branches"] == ["main"]
    dev, prod = deploy["jobs"]["dev"], deploy["jobs"]["prod"]
    assert prod["needs"] == "dev"
    assert prod["environment"] == "production"
    assert dev["environment"] != "production"
    for job, stack in ((dev, "dev"), (prod, "prod")):
        ups = [s for s in job["steps"] if s.get("with", {}).get("command") == "up"]
        assert len(ups) == 1 and ups[0]["with"]["stack-name"] == stack
        assert ups[0]["with"]["policyPacks"] == "policy"
        assert ups[0]["with"]["refresh"] is True  # backups re-read before anything depends on them
        # The real run enforces the levels `migrate check` enforces offline.
        config = ups[0]["with"]["policyPackConfigs"]
        assert config == f"policy/config.{stack}.json" and (ROOT / config).is_file()
        assert job["concurrency"] == {"group": f"pulumi-{stack}", "cancel-in-progress": False}
    commands = [s.get("with", {}).get("command") for s in prod["steps"]]
    assert commands.index("preview") < commands.index("up")


# --- drift --------------------------------------------------------------------------------------


def test_drift_refreshes_nightly_and_expects_no_changes() -> None:
    drift = _load("drift.yml")
    assert drift["on"]["schedule"][0]["cron"]
    (_, step), *_ = [(job, s) for job, s in _uses(drift, "pulumi/actions") if "command" in s["with"]]
    assert step["with"]["command"] == "preview"
    assert step["with"]["refresh"] is True
    assert step["with"]["expect-no-changes"] is True
    job = drift["jobs"]["drift"]
    assert [e["stack"] for e in job["strategy"]["matrix"]["include"]] == ["dev", "prod"]
    assert job["concurrency"]["group"] == "pulumi-${{ matrix.stack }}"  # the deploy lock


# --- credentials: which job can read which secret ------------------------------------------------
#
# Every credential lives in a GitHub environment (docs/state-backends.md): a job reads an
# environment's secrets only when it names that environment, and there are no repository-level
# secrets, so the workflow files alone say which job can read which credential. The same secret
# names hold different values per environment; "a prod credential" is one of a prod environment.

PR_TRIGGERS = {"pull_request", "pull_request_target"}
ENV_TABLE = re.compile(r"^\|\s*`([\w-]+)`\s*\|\s*(\w+)\s*\|([^|]*)\|([^|]*)\|([^|]*)\|\s*$", re.MULTILINE)
_SECRET = re.compile(r"\$\{\{[^}]*\bsecrets\.([A-Za-z0-9_]+)")


@dataclass(frozen=True)
class Access:
    """What one job of one workflow can read."""

    label: str  # workflow/job
    triggers: frozenset[str]
    environments: dict[str, set[str]]  # environment -> the stacks the job targets with it
    secrets: frozenset[str]
    condition: str


def _triggers(doc: dict[str, Any]) -> frozenset[str]:
    on = doc["on"]
    return frozenset([on] if isinstance(on, str) else on)


def _stacks(job: dict[str, Any], matrix_values: dict[str, Any]) -> set[str]:
    names = {
        str(s["with"]["stack-name"])
        for s in job.get("steps", [])
        if str(s.get("uses", "")).startswith("pulumi/actions@") and "stack-name" in s["with"]  # not an install
    }
    out = set()
    for n in names:
        m = re.fullmatch(r"\$\{\{\s*matrix\.(\w+)\s*\}\}", n)
        if m:
            value = matrix_values[m.group(1)]
            out |= set(value) if isinstance(value, list) else {value}
        else:
            out.add(n)
    return out


def access() -> list[Access]:
    out = []
    for name, doc in _all().items():
        for job_name, job in doc["jobs"].items():
            env = job.get("environment")
            env = env.get("name") if isinstance(env, dict) else env
            matrix = job.get("strategy", {}).get("matrix", {})
            environments: dict[str, set[str]] = {}
            m = re.fullmatch(r"\$\{\{\s*matrix\.(\w+)\s*\}\}", str(env or ""))
            if m:
                for entry in matrix["include"]:
                    environments.setdefault(entry[m.group(1)], set()).update(_stacks(job, entry))
            elif env:
                environments[env] = _stacks(job, matrix)
            secrets = frozenset(_SECRET.findall(yaml.safe_dump(job))) - {"GITHUB_TOKEN"}
            label = f"{name.removesuffix('.yml')}/{job_name}"
            out.append(Access(label, _triggers(doc), environments, secrets, str(job.get("if", ""))))
    return out


def documented_environments() -> dict[str, dict[str, Any]]:
    text = (ROOT / "docs" / "state-backends.md").read_text()
    return {
        env: {"stack": stack, "protection": protection, "jobs": set(re.findall(r"`([\w-]+/[\w-]+)`", jobs))}
        for env, stack, _credentials, protection, jobs in ENV_TABLE.findall(text)
    }


def test_secrets_are_read_only_through_environments() -> None:
    for name, doc in _all().items():
        assert not _SECRET.findall(yaml.safe_dump(doc.get("env", {}))), f"{name}: a secret in the workflow-wide env"
        assert not _triggers(doc) & {"pull_request_target", "workflow_run"}, f"{name}: runs PR code with secrets"
    readers = [a for a in access() if a.secrets]
    assert {a.label for a in readers} >= {"ci/preview", "deploy/dev", "deploy/prod", "drift/drift"}
    for a in readers:
        assert a.environments, f"{a.label} reads {sorted(a.secrets)} without an environment (repository secrets)"


def test_no_job_reachable_from_a_pull_request_can_read_a_prod_credential() -> None:
    envs = documented_environments()
    reachable = [a for a in access() if a.triggers & PR_TRIGGERS]
    assert {a.label for a in reachable} == {"ci/test", "ci/offline", "ci/preview"}
    for a in reachable:
        for env, stacks in a.environments.items():
            assert envs[env]["stack"] == "dev", f"{a.label} runs pull-request code with {env}'s credentials"
            assert stacks == {"dev"}, f"{a.label} points dev credentials at {stacks}"
    preview = next(a for a in reachable if a.label == "ci/preview")
    assert preview.environments == {"dev-preview": {"dev"}} and "PULUMI_ACCESS_TOKEN" in preview.secrets


def test_prod_credentials_need_an_approval_or_the_default_branch() -> None:
    envs = documented_environments()
    prod = {e for e, d in envs.items() if d["stack"] == "prod"}
    assert prod == {"production", "prod-drift"}
    users = [a for a in access() if set(a.environments) & prod]
    assert {a.label for a in users} == {"deploy/prod", "drift/drift"}
    for a in users:
        assert not a.triggers & PR_TRIGGERS, a.label
        # workflow_dispatch can name any branch: the job itself refuses anything but main, and the
        # environment's deployment-branch rule says the same on GitHub's side.
        assert a.condition == "github.ref == 'refs/heads/main'", a.label
        for env in set(a.environments) & prod:
            assert "deployment branches: `main`" in envs[env]["protection"], env
            assert a.environments[env] == {"prod"}, f"{a.label}: {env} used against {a.environments[env]}"
    # Changing prod needs a reviewer; reading it (drift) needs the default branch.
    assert "required reviewers" in envs["production"]["protection"]
    deploy = _load("deploy.yml")["jobs"]["prod"]
    assert deploy["needs"] == "dev" and deploy["environment"] == "production"


def test_the_environment_table_in_the_docs_matches_the_workflows() -> None:
    documented = documented_environments()
    found: dict[str, set[str]] = {}
    for a in access():
        for env, stacks in a.environments.items():
            found.setdefault(env, set()).add(a.label)
            assert stacks == {documented[env]["stack"]}, f"{a.label}: {env} is documented for another stack"
    assert {e: d["jobs"] for e, d in documented.items()} == found


# --- the checker itself -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "problem"),
    [
        ("make no-such-target", "make targets not in the Makefile"),
        (".venv/bin/python -m migrate nosuch --stack dev", "rejects"),
        (".venv/bin/python -m migrate plan --stack dev --bogus", "rejects"),
        (".venv/bin/python -m migrate.nosuch", "no module"),
        ("python -m pip install x", "not part of this repository"),
        ("kubectl get nodes", "not a command this repository provides"),
        ("./scripts/nope.sh", "no script"),
    ],
)
def test_the_checker_rejects_what_the_repository_does_not_have(script: str, problem: str) -> None:
    (argv,) = list(_commands(script))
    found = problems_of(argv)
    assert found is not None and problem in found


def test_the_checker_accepts_real_commands_and_ignores_redirections() -> None:
    script = 'make venv && echo "x" >> "$GITHUB_STEP_SUMMARY"\n.venv/bin/python -m migrate status --stack ${{ x }}'
    commands = list(_commands(script))
    assert commands == [
        ["make", "venv"],
        ["echo", "x"],
        [".venv/bin/python", "-m", "migrate", "status", "--stack", "EXPR"],
    ]
    assert all(problems_of(c) is None for c in commands)


# --- the workstation key (issue 27) ----------------------------------------------------------------
#
# From p2a on, the Docker provider of the llama server reaches a stack's workstation over SSH through
# an agent (components/llm/llama.py). A job that previews or updates such a stack loads the stack's
# admin key into an ssh-agent first (scripts/workstation-agent.sh start, tests/test_workstation_agent.py)
# and stops the agent in a last `if: always()` step; a job a pull request can reach never loads it,
# whatever it previews, because a pull request's code runs with whatever that job holds.

AGENT = "scripts/workstation-agent.sh"
PULUMI_COMMANDS = {"up", "preview", "refresh", "destroy"}
# What the agent step may read: the backend and its secrets provider, nothing of the clouds.
AGENT_SECRETS = {"PULUMI_ACCESS_TOKEN", "PULUMI_CONFIG_PASSPHRASE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def workstation_stacks() -> set[str]:
    """The stacks whose config has a host with `role: workstation`."""
    found = set()
    for path in ROOT.glob("Pulumi.*.yaml"):
        hosts = yaml.safe_load(path.read_text())["config"].get("gpu-platform:hosts", [])
        if any(h.get("role") == "workstation" for h in hosts):
            found.add(path.name.split(".")[1])
    return found


def _matrix_entries(job: dict[str, Any]) -> list[dict[str, Any]]:
    matrix = job.get("strategy", {}).get("matrix", {})
    if "include" in matrix:
        return list(matrix["include"])
    entries: list[dict[str, Any]] = [{}]
    for key, values in matrix.items():
        entries = [{**e, key: v} for e in entries for v in values]
    return entries


def _resolve(value: Any, entry: dict[str, Any]) -> str:
    m = re.fullmatch(r"\$\{\{\s*matrix\.(\w+)\s*\}\}", str(value))
    return str(entry[m.group(1)]) if m else str(value)


def agent_problems(workflow: str, doc: dict[str, Any]) -> list[str]:
    """Every job of `doc` that reaches a workstation without the agent, or holds the key where a pull
    request can reach it; one line each."""
    problems = []
    reachable = bool(_triggers(doc) & PR_TRIGGERS)
    workstations = workstation_stacks()
    for job_name, job in doc["jobs"].items():
        label, steps = f"{workflow.removesuffix('.yml')}/{job_name}", job.get("steps", [])
        starts = [i for i, s in enumerate(steps) if f"{AGENT} start" in str(s.get("run", ""))]
        stops = [i for i, s in enumerate(steps) if f"{AGENT} stop" in str(s.get("run", ""))]
        if reachable:
            if starts or stops or "adminPrivateKey" in yaml.safe_dump(job):
                problems.append(f"{label}: a pull request can reach this job, and it loads the workstation key")
            continue
        runs = [(i, s["with"]) for i, s in enumerate(steps) if s.get("with", {}).get("command") in PULUMI_COMMANDS]
        for entry in _matrix_entries(job):
            reaching = [(i, w, _resolve(w["stack-name"], entry)) for i, w in runs]
            reaching = [(i, w, stack) for i, w, stack in reaching if stack in workstations]
            if not reaching:
                continue
            first, with_, stack = reaching[0]
            loaded = [i for i in starts if i < first and _resolve(steps[i].get("env", {}).get("STACK"), entry) == stack]
            if not loaded:
                problems.append(
                    f"{label}: `pulumi {with_['command']}` of {stack}, a stack with a workstation, "
                    f"without `{AGENT} start` for {stack} before it"
                )
            if not [i for i in stops if i > reaching[-1][0] and "always()" in str(steps[i].get("if", ""))]:
                problems.append(f"{label}: no `{AGENT} stop` step with `if: always()` after its last Pulumi step")
    return problems


def test_every_job_that_reaches_a_workstation_loads_the_key_first_and_no_pull_request_job_does() -> None:
    assert workstation_stacks() == {"dev", "prod"}  # so the rule below binds every stack
    docs = _all()
    assert [p for name, doc in docs.items() for p in agent_problems(name, doc)] == []
    loading = {
        f"{name.removesuffix('.yml')}/{job_name}"
        for name, doc in docs.items()
        for job_name, job in doc["jobs"].items()
        if any(f"{AGENT} start" in str(s.get("run", "")) for s in job.get("steps", []))
    }
    assert loading == {"deploy/dev", "deploy/prod", "drift/drift"}


def test_the_agent_step_reads_only_the_backend_credentials() -> None:
    seen = 0
    for name, doc in _all().items():
        for job, step in _steps(doc):
            if f"{AGENT} start" not in str(step.get("run", "")):
                continue
            seen += 1
            secrets = set(_SECRET.findall(yaml.safe_dump(step.get("env", {}))))
            assert secrets <= AGENT_SECRETS, f"{name} {job}: the agent step also gets {sorted(secrets - AGENT_SECRETS)}"
            assert "${{" not in step["run"], f"{name} {job}: an expression in the script (template injection)"
    assert seen == 3


def _without(doc: dict[str, Any], job: str, marker: str) -> dict[str, Any]:
    changed = copy.deepcopy(doc)
    changed["jobs"][job]["steps"] = [s for s in changed["jobs"][job]["steps"] if marker not in str(s.get("run", ""))]
    return changed


def test_the_agent_checker_catches_a_missing_late_or_leaked_key() -> None:
    deploy, drift, ci = _load("deploy.yml"), _load("drift.yml"), _load("ci.yml")
    missing = _without(deploy, "prod", f"{AGENT} start")
    assert any("deploy/prod: `pulumi preview` of prod" in p for p in agent_problems("deploy.yml", missing))

    late = copy.deepcopy(deploy)
    steps = late["jobs"]["prod"]["steps"]
    start = next(s for s in steps if f"{AGENT} start" in str(s.get("run", "")))
    steps.remove(start)
    steps.insert(next(i for i, s in enumerate(steps) if s.get("with", {}).get("command") == "preview") + 1, start)
    assert any("without `scripts/workstation-agent.sh start` for prod" in p for p in agent_problems("deploy.yml", late))

    wrong_stack = copy.deepcopy(drift)
    for step in wrong_stack["jobs"]["drift"]["steps"]:
        if "env" in step and "STACK" in step["env"]:
            step["env"]["STACK"] = "dev"
    assert any("of prod" in p for p in agent_problems("drift.yml", wrong_stack))

    unstopped = _without(drift, "drift", f"{AGENT} stop")
    assert any("no `scripts/workstation-agent.sh stop`" in p for p in agent_problems("drift.yml", unstopped))

    leaked = copy.deepcopy(ci)
    leaked["jobs"]["preview"]["steps"].insert(0, {"run": f'{AGENT} start "$STACK"', "env": {"STACK": "dev"}})
    assert agent_problems("ci.yml", leaked) == [
        "ci/preview: a pull request can reach this job, and it loads the workstation key"
    ]
