"""`migrate status|forward|rollback`: the decisions, with the Pulumi stack faked at its boundary.

`FakeStack` implements the methods of `pulumi.automation.Stack` that migrate/automation.py calls and
records every call in order, with the phase config as it was at that moment. `up` deploys what the
config says, as the engine would: the `phase` output becomes the configured phase.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from pulumi import automation as auto
from pulumi.automation import (
    CommandError,
    CommandResult,
    ConfigValue,
    OpType,
    OutputValue,
    PreviewResult,
    StackNotFoundError,
)
from rich.console import Console

from components.config.load import SECRET_KEYS
from components.config.phases import load_phases
from components.core.errors import ConfigError
from components.migration.backups import BACKUP_KEY_ENV
from migrate import automation, cli
from migrate.automation import PHASE_KEY, POLICY_PACK, Deps, Refused, plan_move
from migrate.checks import CheckResult
from tests.conftest import ROOT


def _cmd_error(stderr: str, cls: type[CommandError] = CommandError) -> CommandError:
    return cls(CommandResult(stdout="", stderr=stderr, code=255))


def _packs(kwargs: dict[str, Any]) -> tuple[str, ...]:
    # Every real run refreshes first (backups re-read), so the fake refuses one that does not.
    assert kwargs.get("refresh") is True, "preview and up must refresh"
    return (*kwargs["policy_packs"], *(kwargs.get("policy_pack_configs") or ()))


def _real(method: str, *args: Any, **kwargs: Any) -> None:
    """Bind a call to the real `pulumi.automation.Stack` method, so a misspelt keyword or a wrong
    argument fails here as it would against the real Automation API."""
    inspect.signature(getattr(auto.Stack, method)).bind(None, *args, **kwargs)


class FakeStack:
    def __init__(
        self,
        *,
        name: str = "dev",
        deployed: str | None = "p1-fly-freeze",
        configured: str | None = "p1-fly-freeze",
        preview_error: BaseException | None = None,
        up_error: BaseException | None = None,
        extra_outputs: Mapping[str, Any] | None = None,
        config: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.calls: list[tuple[Any, ...]] = []
        self.messages: list[str] = []  # the update messages `up` was given (the stack history)
        self.config: dict[str, str] = dict(config or {})
        if configured is not None:
            self.config[PHASE_KEY] = configured
        self._outputs: dict[str, OutputValue] = {}
        if deployed is not None:
            self._outputs["phase"] = OutputValue(deployed, False)
        self._preview_error = preview_error
        self._up_error = up_error
        self._extra = dict(extra_outputs or {})

    def get_config(self, key: str) -> ConfigValue:
        _real("get_config", key)
        self.calls.append(("get_config", key))
        if key not in self.config:
            raise _cmd_error(f"error: configuration key '{key}' not found for stack '{self.name}'")
        return ConfigValue(self.config[key])

    def set_config(self, key: str, value: ConfigValue) -> None:
        _real("set_config", key, value)
        assert isinstance(value, ConfigValue)
        self.calls.append(("set_config", key, value.value))
        self.config[key] = value.value

    def remove_config(self, key: str) -> None:
        _real("remove_config", key)
        self.calls.append(("remove_config", key))
        self.config.pop(key, None)

    def outputs(self) -> dict[str, OutputValue]:
        _real("outputs")
        self.calls.append(("outputs",))
        return dict(self._outputs)

    def preview(self, **kwargs: Any) -> PreviewResult:
        _real("preview", **kwargs)
        self.calls.append(("preview", _packs(kwargs), self.config.get(PHASE_KEY)))
        kwargs["on_output"]("Previewing update (dev):\n")
        if self._preview_error:
            raise self._preview_error
        return PreviewResult(stdout="", stderr="", change_summary={OpType.CREATE: 12, OpType.SAME: 40})

    def up(self, **kwargs: Any) -> SimpleNamespace:
        _real("up", **kwargs)
        self.calls.append(("up", _packs(kwargs), self.config.get(PHASE_KEY)))
        self.messages.append(kwargs.get("message") or "")
        kwargs["on_output"]("Updating (dev):\n")
        if self._up_error:
            raise self._up_error
        self._outputs = {"phase": OutputValue(self.config[PHASE_KEY], False)}
        self._outputs.update({k: OutputValue(v, k == "kubeconfig") for k, v in self._extra.items()})
        return SimpleNamespace(outputs=dict(self._outputs))

    def mutations(self) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] in ("set_config", "remove_config", "preview", "up")]


# The stack files the moves review (Deps.stack_file): the committed ones plus a `secure:` value for
# every secret key, as an operator's checkout holds them after `pulumi config set --secret`.
_STACK_FILES: dict[str, Path] = {}


def stack_file_with(folder: Path, name: str, **config: Any) -> Path:
    """Pulumi.<name>.yaml as committed, with `config` merged into it (None removes a key)."""
    doc = yaml.safe_load((ROOT / f"Pulumi.{name}.yaml").read_text())
    for key, value in config.items():
        if value is None:
            doc["config"].pop(key, None)
        else:
            doc["config"][key] = value
    path = folder / f"Pulumi.{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


SECURE = {f"gpu-platform:{name}": {"secure": "v1:AAAAplaceholder"} for name, _ in SECRET_KEYS}


@pytest.fixture(autouse=True, scope="module")
def _stack_files_with_secrets(tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("stacks")
    for name in ("dev", "prod"):
        (folder / name).mkdir()
        _STACK_FILES[name] = stack_file_with(folder / name, name, **SECURE)


class Harness:
    """Deps whose every boundary call is recorded."""

    def __init__(
        self,
        stack: FakeStack,
        *,
        interactive: bool = True,
        answer: bool = True,
        offline_code: int = 0,
        failing_checks: Sequence[str] = (),
        split: bool = False,
        stack_file: Path | None = None,
    ) -> None:
        self.stack = stack
        self.out = io.StringIO()
        # split: stderr on its own (`errors`); otherwise both in one buffer, in the order printed
        self.err_out = io.StringIO() if split else self.out
        self.opened: list[tuple[str, bool]] = []
        self.offline: list[tuple[str, str]] = []
        self.prompts: list[str] = []
        self.checked: list[tuple[list[str], dict[str, Any]]] = []
        self.thresholds: list[dict[str, Any]] = []
        self.failing = set(failing_checks)
        self.offline_code = offline_code

        def open_stack(name: str, create: bool) -> FakeStack:
            self.opened.append((name, create))
            return stack

        def offline_check(name: str, phase: str) -> int:
            self.offline.append((name, phase))
            return offline_code

        def exit_checks(
            names: Sequence[str],
            outputs: Mapping[str, Any],
            _stack: Any,
            _console: Any,
            thresholds: Mapping[str, Any] | None = None,
        ) -> list[Any]:
            self.checked.append((list(names), dict(outputs)))
            self.thresholds.append(dict(thresholds or {}))
            return [CheckResult(n, n not in self.failing, "fake") for n in names]

        def confirm(prompt: str) -> bool:
            self.prompts.append(prompt)
            return answer

        self.deps = Deps(
            open_stack=open_stack,
            offline_check=offline_check,
            exit_checks=exit_checks,
            cost_drift=lambda handle, phase: [f"cost drift (Lambda): {handle.name} at {phase}"],
            confirm=confirm,
            interactive=lambda: interactive,
            console=Console(file=self.out, width=200, color_system=None, force_terminal=False),
            err=Console(file=self.err_out, width=200, color_system=None, force_terminal=False),
            stack_file=lambda name: stack_file or _STACK_FILES[name],
        )

    @property
    def text(self) -> str:
        return self.out.getvalue()

    @property
    def errors(self) -> str:
        return self.err_out.getvalue()


# The pack and the stack's policy config, as `pulumi preview --policy-pack P --policy-pack-config C`.
PACKS = (str(POLICY_PACK), str(POLICY_PACK / "config.dev.json"))


# --- status -------------------------------------------------------------------------------------


def test_status_prints_deployed_previous_and_next_without_changing_anything() -> None:
    stack = FakeStack(deployed="p2a-k3s", configured="p2a-k3s")
    h = Harness(stack)
    assert automation.status("dev", deps=h.deps) == 0
    assert h.opened == [("dev", False)]  # status never creates a stack
    assert stack.mutations() == []
    assert "deployed: p2a-k3s - K3s on the GPU hosts" in h.text
    assert "previous: p1-fly-freeze" in h.text
    assert "next:     p2b-services" in h.text
    assert "nodes-ready-gpu, nvidia-smi-smoke" in h.text
    assert h.checked == []  # checks only on request
    assert "cost drift" not in h.text


def test_status_warns_when_config_points_elsewhere_and_flags_blocked_rollback() -> None:
    stack = FakeStack(deployed="p4-decommission", configured="p3-local-brain")
    h = Harness(stack)
    assert automation.status("prod", deps=h.deps) == 0
    assert "config says p3-local-brain" in h.text
    assert "rollback blocked: fly-destroy" in h.text
    assert "next:     none" in h.text


def test_status_of_a_stack_that_never_deployed() -> None:
    h = Harness(FakeStack(deployed=None, configured="p0-baseline"))
    assert automation.status("dev", deps=h.deps) == 0
    assert "deployed: nothing yet" in h.text
    assert "next:     p0-baseline" in h.text


def test_status_with_checks_runs_the_deployed_phases_checks_and_fails_on_one() -> None:
    stack = FakeStack(deployed="p2b-services", configured="p2b-services", extra_outputs={})
    stack._outputs["publicUrls"] = OutputValue(["https://app.example.com"], False)
    h = Harness(stack, failing_checks=["public-routes-200"])
    assert automation.status("dev", checks=True, deps=h.deps) == 1
    names, outputs = h.checked[0]
    assert names == ["backups-verified", "restore-jobs-complete", "public-routes-200"]
    assert outputs == {"phase": "p2b-services", "publicUrls": ["https://app.example.com"]}  # plain values
    assert "cost drift (Lambda): dev at p2b-services" in h.text  # issue 24: the estimate against what runs


def test_status_of_a_missing_stack_says_how_to_create_it() -> None:
    h = Harness(FakeStack())

    def missing(name: str, create: bool) -> Any:
        raise _cmd_error("error: no stack named 'dev' found", StackNotFoundError)

    h.deps.open_stack = missing
    assert automation.status("dev", deps=h.deps) == 2
    assert "does not exist" in h.text and "migrate forward --stack dev" in h.text


def test_unknown_deployed_phase_is_refused() -> None:
    stack = FakeStack(deployed="p9-gone", configured="p9-gone")
    h = Harness(stack)
    assert automation.forward("dev", yes=True, deps=h.deps) == 2
    assert "p9-gone" in h.text and "no file in stacks/" in h.text
    assert stack.mutations() == [] and h.offline == []


# --- forward ------------------------------------------------------------------------------------


def test_forward_sets_config_previews_with_policy_confirms_ups_then_runs_exit_checks_in_order() -> None:
    stack = FakeStack(deployed="p1-fly-freeze", configured="p1-fly-freeze", extra_outputs={"kubeconfig": "kc"})
    h = Harness(stack)
    assert automation.forward("dev", deps=h.deps) == 0
    assert h.opened == [("dev", True)]
    assert h.offline == [("dev", "p2a-k3s")]
    assert stack.mutations() == [
        ("set_config", PHASE_KEY, "p2a-k3s"),
        ("preview", PACKS, "p2a-k3s"),
        ("up", PACKS, "p2a-k3s"),
    ]
    assert h.prompts == ["Deploy p2a-k3s to stack dev?"]
    # The exit checks run on the outputs `up` returned, with secret values unwrapped.
    assert h.checked == [(["nodes-ready-gpu", "nvidia-smi-smoke"], {"phase": "p2a-k3s", "kubeconfig": "kc"})]
    assert stack.config[PHASE_KEY] == "p2a-k3s"
    assert re.search(r"create\s+│?\s*12", h.text) and re.search(r"same\s+│?\s*40", h.text)  # preview summary
    assert "Updating (dev):" in h.text  # streamed engine output
    assert "commit Pulumi.dev.yaml" in h.text


def test_offline_check_runs_before_anything_is_changed() -> None:
    stack = FakeStack()
    h = Harness(stack, offline_code=1)
    assert automation.forward("dev", yes=True, deps=h.deps) == 1
    assert h.offline == [("dev", "p2a-k3s")]
    assert stack.mutations() == []
    assert "nothing was changed" in h.text


def test_forward_with_yes_does_not_prompt_even_without_a_terminal() -> None:
    stack = FakeStack()
    h = Harness(stack, interactive=False)
    assert automation.forward("dev", yes=True, deps=h.deps) == 0
    assert h.prompts == []
    assert stack.config[PHASE_KEY] == "p2a-k3s"


def test_forward_without_terminal_and_without_yes_is_refused_before_any_change() -> None:
    stack = FakeStack()
    h = Harness(stack, interactive=False)
    assert automation.forward("dev", deps=h.deps) == 2
    assert "--yes" in h.text
    assert stack.mutations() == [] and h.offline == [] and h.prompts == []


def test_forward_refuses_to_skip_a_phase_without_allow_skip() -> None:
    stack = FakeStack()
    h = Harness(stack)
    assert automation.forward("dev", yes=True, to="p2b-services", deps=h.deps) == 2
    assert "skips p2a-k3s" in h.text and "--allow-skip" in h.text
    assert stack.mutations() == [] and h.offline == []


def test_forward_skips_with_to_and_allow_skip() -> None:
    stack = FakeStack()
    h = Harness(stack)
    assert automation.forward("dev", yes=True, to="p2b-services", allow_skip=True, deps=h.deps) == 0
    assert stack.mutations()[0] == ("set_config", PHASE_KEY, "p2b-services")
    assert h.checked[0][0] == ["backups-verified", "restore-jobs-complete", "public-routes-200"]


def test_forward_to_a_phase_behind_is_refused() -> None:
    stack = FakeStack(deployed="p2a-k3s", configured="p2a-k3s")
    h = Harness(stack)
    assert automation.forward("dev", yes=True, to="p1-fly-freeze", deps=h.deps) == 2
    assert "rollback --to p1-fly-freeze" in h.text
    assert stack.mutations() == []


def test_forward_at_the_last_phase_is_refused() -> None:
    stack = FakeStack(deployed="p4-decommission", configured="p4-decommission")
    h = Harness(stack)
    assert automation.forward("prod", yes=True, deps=h.deps) == 2
    assert "last phase" in h.text
    assert stack.mutations() == []


def test_forward_into_an_irreversible_phase_warns() -> None:
    stack = FakeStack(deployed="p3-local-brain", configured="p3-local-brain")
    h = Harness(stack)
    assert automation.forward("dev", yes=True, deps=h.deps) == 0
    assert "irreversible step(s): fly-destroy" in h.text


def test_first_forward_of_a_new_stack_deploys_the_first_phase() -> None:
    stack = FakeStack(deployed=None, configured="p0-baseline")
    h = Harness(stack)
    assert automation.forward("dev", yes=True, deps=h.deps) == 0
    assert h.opened == [("dev", True)]
    assert stack.mutations()[0] == ("set_config", PHASE_KEY, "p0-baseline")
    assert h.checked[0][0] == ["fly-apps-running"]


# --- failures after the config was set ----------------------------------------------------------


def test_declining_restores_the_deployed_phase_and_never_runs_up() -> None:
    stack = FakeStack()
    h = Harness(stack, answer=False)
    assert automation.forward("dev", deps=h.deps) == 1
    assert stack.mutations() == [
        ("set_config", PHASE_KEY, "p2a-k3s"),
        ("preview", PACKS, "p2a-k3s"),
        ("set_config", PHASE_KEY, "p1-fly-freeze"),
    ]
    assert stack.config[PHASE_KEY] == "p1-fly-freeze"
    assert h.checked == []


def test_preview_failure_restores_config() -> None:
    stack = FakeStack(preview_error=_cmd_error("mandatory policy violation: no-ingress-nginx"))
    h = Harness(stack)
    assert automation.forward("dev", yes=True, deps=h.deps) == 1
    assert [c[0] for c in stack.mutations()] == ["set_config", "preview", "set_config"]
    assert stack.config[PHASE_KEY] == "p1-fly-freeze"
    assert "no-ingress-nginx" in h.text
    assert h.checked == []


def test_up_failure_restores_config_to_the_deployed_phase_not_a_stale_config_value() -> None:
    # The config already pointed past the deployed phase (an earlier hand edit): restoring to that value
    # would leave config naming a phase that never deployed.
    stack = FakeStack(deployed="p1-fly-freeze", configured="p2b-services", up_error=_cmd_error("error: update failed"))
    h = Harness(stack)
    assert automation.forward("dev", yes=True, deps=h.deps) == 1
    assert stack.mutations() == [
        ("set_config", PHASE_KEY, "p2a-k3s"),
        ("preview", PACKS, "p2a-k3s"),
        ("up", PACKS, "p2a-k3s"),
        ("set_config", PHASE_KEY, "p1-fly-freeze"),
    ]
    assert "config said p2b-services" in h.text
    assert "update failed" in h.text and "tries again" in h.text


def test_failure_on_a_stack_that_never_deployed_and_had_no_phase_removes_the_key() -> None:
    stack = FakeStack(deployed=None, configured=None, up_error=_cmd_error("error: boom"))
    h = Harness(stack)
    assert automation.forward("dev", yes=True, deps=h.deps) == 1
    assert stack.mutations()[-1] == ("remove_config", PHASE_KEY)
    assert PHASE_KEY not in stack.config


def test_interrupt_during_up_restores_config_and_propagates() -> None:
    stack = FakeStack(up_error=KeyboardInterrupt())
    h = Harness(stack)
    with pytest.raises(KeyboardInterrupt):
        automation.forward("dev", yes=True, deps=h.deps)
    assert stack.mutations()[-1] == ("set_config", PHASE_KEY, "p1-fly-freeze")


def test_failed_exit_checks_keep_the_deployed_phase_and_fail() -> None:
    stack = FakeStack()
    h = Harness(stack, failing_checks=["nvidia-smi-smoke"])
    assert automation.forward("dev", yes=True, deps=h.deps) == 1
    assert stack.config[PHASE_KEY] == "p2a-k3s"  # it did deploy: config must say so
    assert [c[0] for c in stack.mutations()] == ["set_config", "preview", "up"]
    assert "exit check(s) failed: nvidia-smi-smoke" in h.text
    assert "migrate rollback --stack dev" in h.text


# --- rollback -----------------------------------------------------------------------------------


def test_rollback_moves_one_phase_back_and_runs_that_phases_checks() -> None:
    stack = FakeStack(deployed="p2a-k3s", configured="p2a-k3s")
    h = Harness(stack)
    assert automation.rollback("dev", yes=True, deps=h.deps) == 0
    assert h.opened == [("dev", False)]
    assert h.offline == [("dev", "p1-fly-freeze")]
    assert stack.mutations() == [
        ("set_config", PHASE_KEY, "p1-fly-freeze"),
        ("preview", PACKS, "p1-fly-freeze"),
        ("up", PACKS, "p1-fly-freeze"),
    ]
    assert h.checked[0][0] == ["backups-verified", "fly-machines-stopped"]
    assert "uninstalls K3s" in h.text  # the phase's rollback text is shown


def test_rollback_past_an_irreversible_step_is_refused_even_with_allow_skip() -> None:
    stack = FakeStack(deployed="p4-decommission", configured="p4-decommission")
    h = Harness(stack)
    # 3, the contract's "irreversible", as `migrate diff --from p4-decommission --to p3-local-brain` exits.
    assert automation.rollback("prod", yes=True, deps=h.deps) == 3
    assert "fly-destroy (in p4-decommission)" in h.text
    h2 = Harness(stack)
    assert automation.rollback("prod", yes=True, to="p0-baseline", allow_skip=True, deps=h2.deps) == 3
    assert stack.mutations() == [] and h.offline == [] and h2.offline == []


def test_rollback_skipping_phases_needs_allow_skip() -> None:
    stack = FakeStack(deployed="p3-local-brain", configured="p3-local-brain")
    h = Harness(stack)
    assert automation.rollback("dev", yes=True, to="p2b-services", deps=h.deps) == 2
    assert "skips p2b1-cutover-50, p2b2-cutover-100, p2c-optimize" in h.text
    assert stack.mutations() == []
    h2 = Harness(stack)
    assert automation.rollback("dev", yes=True, to="p2b-services", allow_skip=True, deps=h2.deps) == 0
    assert stack.config[PHASE_KEY] == "p2b-services"


def test_rollback_of_a_stack_that_never_deployed_is_refused() -> None:
    stack = FakeStack(deployed=None)
    h = Harness(stack)
    assert automation.rollback("dev", yes=True, deps=h.deps) == 2
    assert "nothing to roll back" in h.text
    assert stack.mutations() == []


def test_rollback_from_the_first_phase_is_refused() -> None:
    stack = FakeStack(deployed="p0-baseline", configured="p0-baseline")
    h = Harness(stack)
    assert automation.rollback("dev", yes=True, deps=h.deps) == 2
    assert "no earlier phase" in h.text
    assert stack.mutations() == []


# --- plan_move, the pure decision ---------------------------------------------------------------

PHASES = load_phases()
IDS = [p.id for p in PHASES]


@pytest.mark.parametrize(
    ("current", "direction", "to", "allow_skip", "expected"),
    [
        ("p0-baseline", "forward", None, False, "p1-fly-freeze"),
        ("p2b-services", "forward", None, False, "p2b1-cutover-50"),
        ("p2b-services", "forward", "p2b1-cutover-50", False, "p2b1-cutover-50"),  # adjacent: no skip
        ("p2b-services", "forward", "p3-local-brain", True, "p3-local-brain"),
        ("p2b-services", "rollback", None, False, "p2a-k3s"),
        ("p3-local-brain", "rollback", "p2c-optimize", False, "p2c-optimize"),
        (None, "forward", None, False, "p0-baseline"),
    ],
)
def test_plan_move_targets(
    current: str | None, direction: str, to: str | None, allow_skip: bool, expected: str
) -> None:
    cur = PHASES[IDS.index(current)] if current else None
    move = plan_move(PHASES, cur, direction=direction, to=to, allow_skip=allow_skip, stack="dev")
    assert move.target.id == expected


@pytest.mark.parametrize(
    ("current", "direction", "to", "allow_skip", "message"),
    [
        ("p0-baseline", "forward", "p2a-k3s", False, "skips p1-fly-freeze"),
        ("p0-baseline", "forward", None, True, None),  # allow_skip alone never skips
        ("p0-baseline", "forward", "p9-nope", True, "unknown phase"),
        ("p2a-k3s", "forward", "p2a-k3s", True, "not ahead"),
        ("p2a-k3s", "rollback", "p2a-k3s", True, "not behind"),
        ("p4-decommission", "rollback", "p3-local-brain", False, "irreversible"),
        (None, "forward", "p1-fly-freeze", False, "skips p0-baseline"),
    ],
)
def test_plan_move_refusals(
    current: str | None, direction: str, to: str | None, allow_skip: bool, message: str | None
) -> None:
    cur = PHASES[IDS.index(current)] if current else None
    if message is None:
        assert plan_move(PHASES, cur, direction=direction, to=to, allow_skip=allow_skip, stack="dev").target.id == (
            "p1-fly-freeze"
        )
        return
    with pytest.raises(Refused, match=message):
        plan_move(PHASES, cur, direction=direction, to=to, allow_skip=allow_skip, stack="dev")


# --- the real boundary: no CLI, no policy runner ------------------------------------------------


def _real_deps(out: io.StringIO) -> Deps:
    console = Console(file=out, width=200, color_system=None)
    return Deps(console=console, err=console, interactive=lambda: False)


def test_missing_pulumi_cli_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(automation.shutil, "which", lambda _name: None)
    for run in (
        lambda d: automation.status("dev", deps=d),
        lambda d: automation.forward("dev", yes=True, deps=d),
        lambda d: automation.rollback("dev", yes=True, deps=d),
    ):
        out = io.StringIO()
        assert run(_real_deps(out)) == 2
        text = out.getvalue()
        assert "Pulumi CLI is not installed" in text
        assert "curl -fsSL https://get.pulumi.com | sh" in text
        assert "https://www.pulumi.com/docs/install/" in text


def test_cli_vanishing_between_which_and_run_is_reported_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    # `which` finds something, but the automation API cannot execute `pulumi` (it raises FileNotFoundError).
    monkeypatch.setattr(automation.shutil, "which", lambda _name: "/nonexistent/bin/pulumi")
    monkeypatch.setenv("PATH", "/nonexistent/bin")
    out = io.StringIO()
    assert automation.status("dev", deps=_real_deps(out)) == 2
    assert "get.pulumi.com" in out.getvalue()


def test_missing_policy_runner_is_refused_with_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "migrate.policy_runner", None)  # import now raises ImportError
    stack = FakeStack()
    h = Harness(stack)
    h.deps.offline_check = automation.offline_check
    assert automation.forward("dev", yes=True, deps=h.deps) == 2
    assert "migrate/policy_runner.py" in h.text
    assert stack.mutations() == []


def test_exit_checks_take_the_fly_token_from_stack_config_when_the_env_has_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FLY_API_TOKEN", raising=False)
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    # No token anywhere: the Fly check fails on that, before any request.
    results = automation.exit_checks(["fly-apps-running"], {"flyApps": ["a"]}, FakeStack(), console)
    assert not results[0].ok and "no Fly API token" in results[0].detail
    assert "FAIL fly-apps-running" in out.getvalue()
    # A token in config is read (and the check goes on to the API; the test stops it at the output check).
    stack = FakeStack(config={"gpu-platform:flyApiToken": "t0ken"})
    results = automation.exit_checks(["fly-apps-running"], {}, stack, console)
    assert ("get_config", "gpu-platform:flyApiToken") in stack.calls
    assert "stack output 'flyApps' is missing" in results[0].detail


def test_exit_checks_read_fly_apps_and_backup_location_from_stack_config(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []

    def fake_run_check(name: str, ctx: Any) -> CheckResult:
        seen.append({"outputs": dict(ctx.outputs), "creds": ctx.s3_credentials, "fly": ctx.fly_api_url})
        return CheckResult(name, True, "ok")

    monkeypatch.setattr("migrate.checks.run_check", fake_run_check)
    monkeypatch.setenv("FLY_API_URL", "http://127.0.0.1:9/v1")
    for name in BACKUP_KEY_ENV:
        monkeypatch.delenv(name, raising=False)  # they would win over the stack's pair
    stack = FakeStack(
        config={
            "gpu-platform:flyApps": '["web", "jobs"]',
            "gpu-platform:backups": '{"bucket": "b", "region": "auto", "endpoint": "https://r2.example.com"}',
            "gpu-platform:backupAccessKeyId": "AKID",
            "gpu-platform:backupSecretAccessKey": "s3cr3t",
        }
    )
    console = Console(file=io.StringIO(), width=200, color_system=None)
    automation.exit_checks(["fly-apps-running"], {"phase": "p0-baseline", "backupRegion": "eu-west-1"}, stack, console)
    (got,) = seen
    assert got["outputs"] == {
        "phase": "p0-baseline",
        "flyApps": ["web", "jobs"],
        "backupRegion": "eu-west-1",  # an exported value wins over config
        "backupEndpoint": "https://r2.example.com",
        "stackName": "dev",  # cost-reduction records this stack's plans
    }
    assert got["creds"] == ("AKID", "s3cr3t")
    assert got["fly"] == "http://127.0.0.1:9/v1"


def test_exit_checks_read_the_bucket_with_the_environments_key_pair_over_the_stacks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The precedence of the providers (components/migration/backups.py, bucket_keys): after a
    rotation the stack still holds the old pair, which moto's S3 server rejects, and the new pair is
    in BACKUP_ACCESS_KEY_ID / BACKUP_SECRET_ACCESS_KEY."""
    from tests.fakes.s3 import moto_s3  # noqa: PLC0415 (loads moto.server: +0.37 s CPU for every importer)

    body = b"pg_dump custom format"
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    stale = FakeStack(
        config={
            "gpu-platform:backupAccessKeyId": "AKIASTALESTALESTALE0",
            "gpu-platform:backupSecretAccessKey": "the-pair-before-the-rotation",
        }
    )
    for name in BACKUP_KEY_ENV:
        monkeypatch.delenv(name, raising=False)
    with moto_s3() as s3:
        s3.make_bucket("backups")
        s3.client("backups").put_object(Bucket="backups", Key="postgres/app.dump", Body=body)
        outputs = {
            "backupBucket": "backups",
            "backupEndpoint": s3.endpoint,
            "backupObjects": [{"key": "postgres/app.dump", "sha256": hashlib.sha256(body).hexdigest()}],
        }
        rotated = s3.iam_key_pair("backups")
        with s3.signed_requests_only():
            # Only the stack's pair: the check reads with it, and moto refuses it.
            (refused,) = automation.exit_checks(["backups-verified"], outputs, stale, console)
            assert not refused.ok and "InvalidAccessKeyId" in refused.detail, refused.detail

            monkeypatch.setenv("BACKUP_ACCESS_KEY_ID", rotated[0])
            with pytest.raises(ConfigError, match="BACKUP_ACCESS_KEY_ID is set but BACKUP_SECRET_ACCESS_KEY is not"):
                automation.exit_checks(["backups-verified"], outputs, stale, console)

            monkeypatch.setenv("BACKUP_SECRET_ACCESS_KEY", rotated[1])
            (verified,) = automation.exit_checks(["backups-verified"], outputs, stale, console)
    assert verified.ok, verified.detail
    assert verified.detail == f"1 object(s), {len(body)} bytes in s3://backups match their recorded SHA-256"
    assert "PASS backups-verified" in out.getvalue()


def test_the_fake_stack_takes_only_what_the_real_stack_takes() -> None:
    stack = FakeStack()
    with pytest.raises(TypeError, match="refrsh"):
        stack.preview(policy_packs=["policy"], refrsh=True, on_output=print)
    with pytest.raises(TypeError):
        stack.set_config("gpu-platform:phase")  # the real one needs the value


def test_the_stack_protocol_matches_the_real_stack() -> None:
    """Every method migrate/automation.py declares it calls exists on pulumi.automation.Stack with
    the keywords it passes."""
    for name, declared in vars(automation.StackHandle).items():
        if name.startswith("_") or not callable(declared):
            continue
        real = inspect.signature(getattr(auto.Stack, name))
        for param in list(inspect.signature(declared).parameters)[1:]:
            assert param in real.parameters, f"Stack.{name} has no parameter {param!r}"


# --- the stack file, reviewed as `migrate check` reviews it ---------------------------------------


@pytest.mark.parametrize(
    ("config", "said"),
    [
        (
            {"gpu-platform:flyApiToken": "fo1_cleartext"},
            "gpu-platform:flyApiToken: a secret stored in clear text in Pulumi.dev.yaml",
        ),
        ({"gpu-platfrom:domain": "dev.example.com"}, "did you mean gpu-platform:domain?"),
        ({"gpu-platform:acmeEmial": "a@example.com"}, "did you mean gpu-platform:acmeEmail?"),
        ({"gpu-platform:environment": "prod"}, "did you mean --stack prod?"),
        ({"gpu-platform:phase": "p2-k3s"}, "gpu-platform:phase: unknown phase 'p2-k3s'"),
    ],
    ids=["clear-text-secret", "look-alike-namespace", "unknown-key", "another-stacks-file", "unknown-phase"],
)
@pytest.mark.parametrize("direction", ["forward", "rollback"])
def test_a_bad_stack_file_refuses_the_move_before_anything_else(
    tmp_path: Path, config: dict[str, Any], said: str, direction: str
) -> None:
    stack = FakeStack(deployed="p2a-k3s", configured="p2a-k3s")
    h = Harness(stack, split=True, stack_file=stack_file_with(tmp_path, "dev", **{**SECURE, **config}))
    move = automation.forward if direction == "forward" else automation.rollback
    assert move("dev", yes=True, deps=h.deps) == 2
    assert said in h.errors and h.errors.startswith("error: ")
    # Before anything else: the stack was not even opened, so nothing ran and nothing changed.
    assert h.opened == [] and stack.calls == [] and h.checked == [] and h.offline == [] and h.text == ""


def test_forward_refuses_a_target_phase_whose_secrets_the_stack_file_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A checkout with the secrets p2a needs, and none of those p2b-services adds.
    later = ("composeSshPrivateKey", "githubToken", "hubspotAccessToken", "backupAccessKeyId", "backupSecretAccessKey")
    early = stack_file_with(tmp_path, "dev", **{**SECURE, **{f"gpu-platform:{k}": None for k in later}})
    monkeypatch.delenv("LAMBDA_API_KEY", raising=False)
    stack = FakeStack(deployed="p2a-k3s", configured="p2a-k3s")
    h = Harness(stack, split=True, stack_file=early)
    assert automation.forward("dev", yes=True, deps=h.deps) == 2
    assert "p2b-services needs 5 secret(s) that Pulumi.dev.yaml holds no secure: value for: " in h.errors
    assert "gpu-platform:composeSshPrivateKey (p2b-services logs in to the Compose host)" in h.errors
    assert "`pulumi config set --secret <key> --stack dev`" in h.errors
    assert stack.mutations() == [] and h.checked == [] and h.offline == []

    # The same file is enough to stay where it is (p2a needs none of them): rollback moves.
    back = FakeStack(deployed="p2a-k3s", configured="p2a-k3s")
    assert automation.rollback("dev", yes=True, deps=Harness(back, stack_file=early).deps) == 0

    # An environment variable the program takes instead (LAMBDA_API_KEY) stands in for its key.
    no_lambda = stack_file_with(tmp_path, "dev", **{**SECURE, "gpu-platform:lambdaApiKey": None})
    refused = Harness(FakeStack(), split=True, stack_file=no_lambda)
    assert automation.forward("dev", yes=True, deps=refused.deps) == 2
    assert "gpu-platform:lambdaApiKey (every phase)" in refused.errors
    monkeypatch.setenv("LAMBDA_API_KEY", "from-the-environment")
    assert automation.forward("dev", yes=True, deps=Harness(FakeStack(), stack_file=no_lambda).deps) == 0


def test_a_stack_file_that_imports_esc_environments_is_only_warned_about(tmp_path: Path) -> None:
    """Secrets may come from the Pulumi ESC environments the file imports, which offline cannot read."""
    path = stack_file_with(tmp_path, "dev", **{**SECURE, "gpu-platform:composeSshPrivateKey": None})
    doc = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({"environment": ["gpu-platform/dev"], **doc}, sort_keys=False))
    stack = FakeStack(deployed="p2a-k3s", configured="p2a-k3s")
    h = Harness(stack, split=True, stack_file=path)
    assert automation.forward("dev", yes=True, deps=h.deps) == 0
    assert h.errors.startswith("warning: p2b-services needs 1 secret(s) with no secure: value in Pulumi.dev.yaml")
    assert "its ESC environments must provide them: gpu-platform:composeSshPrivateKey" in h.errors


# --- the cutover gate ----------------------------------------------------------------------------


def test_forward_refuses_to_leave_a_traffic_phase_whose_checks_fail() -> None:
    stack = FakeStack(deployed="p2b1-cutover-50", configured="p2b1-cutover-50")
    h = Harness(stack, failing_checks=["routes-slo"])
    assert automation.forward("dev", yes=True, deps=h.deps) == 1
    # The gate ran the deployed phase's checks, with the thresholds its file states, and nothing moved.
    assert h.checked[0][0] == ["public-routes-200", "routes-slo", "load-test"]
    slo = h.thresholds[0]["routes-slo"]
    assert (slo.window, slo.max_p95_seconds, slo.max_error_ratio, slo.min_requests) == ("8h", 2, 0.01, 500)
    assert h.thresholds[0]["load-test"].users == 100
    assert "gate closed" in h.text and "routes-slo" in h.text and "--override-gate" in h.text
    assert stack.mutations() == [] and h.offline == []


def test_a_passing_gate_lets_the_move_go_on() -> None:
    stack = FakeStack(deployed="p2b1-cutover-50", configured="p2b1-cutover-50")
    h = Harness(stack)
    assert automation.forward("dev", yes=True, deps=h.deps) == 0
    assert stack.config[PHASE_KEY] == "p2b2-cutover-100"
    # After the update only the immediate checks run: the measurements wait for p2b2's own traffic.
    assert h.checked[1][0] == ["public-routes-200"]
    assert "run when the stack leaves p2b2-cutover-100" in h.text
    assert stack.messages == ["migrate forward: p2b1-cutover-50 -> p2b2-cutover-100"]


def test_override_gate_moves_anyway_and_records_the_reason_in_the_stack_history(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stack = FakeStack(deployed="p2b2-cutover-100", configured="p2b2-cutover-100")
    h = Harness(stack, failing_checks=["load-test"])
    with caplog.at_level("WARNING", logger="gpu-platform.migrate"):
        code = automation.forward("dev", yes=True, deps=h.deps, override_gate="INC-42: load test host down")
    assert code == 0 and stack.config[PHASE_KEY] == "p2c-optimize"
    (message,) = stack.messages
    assert "gate overridden by" in message and "INC-42: load test host down" in message and "load-test" in message
    assert "INC-42" in caplog.text and "INC-42" in h.text


def test_forward_reports_on_stdout_and_gives_its_verdicts_on_stderr(caplog: pytest.LogCaptureFixture) -> None:
    """The exit-code contract (migrate/output.py): the move and its checks are the report, on stdout;
    a refusal goes to stderr with a non-zero exit, and so does an override's warning."""
    closed = Harness(
        FakeStack(deployed="p2b1-cutover-50", configured="p2b1-cutover-50"), failing_checks=["routes-slo"], split=True
    )
    assert automation.forward("dev", yes=True, deps=closed.deps) == 1
    assert "forward dev: p2b1-cutover-50 → p2b2-cutover-100" in closed.text
    assert "the exit checks of p2b1-cutover-50 must pass first" in closed.text
    assert closed.errors.startswith("refused: gate closed: exit check(s) of p2b1-cutover-50 failed: routes-slo.")
    assert "gate closed" not in closed.text and "--override-gate" not in closed.text

    overridden = Harness(
        FakeStack(deployed="p2b1-cutover-50", configured="p2b1-cutover-50"), failing_checks=["routes-slo"], split=True
    )
    with caplog.at_level("WARNING", logger="gpu-platform.migrate"):
        assert automation.forward("dev", yes=True, deps=overridden.deps, override_gate="INC-9: probe down") == 0
    assert overridden.errors.startswith("warning: gate overridden by ")
    assert "INC-9: probe down (exit check(s) of p2b1-cutover-50 failed: routes-slo)" in overridden.errors
    assert "gate overridden" not in overridden.text and "1/4 offline check of p2b2-cutover-100" in overridden.text

    offline = Harness(FakeStack(), offline_code=1, split=True)
    assert automation.forward("dev", yes=True, deps=offline.deps) == 1
    assert offline.errors == "refused: the offline check of p2a-k3s failed (exit 1); nothing was changed\n"
    assert "1/4 offline check of p2a-k3s" in offline.text and "refused" not in offline.text


def test_override_gate_needs_a_reason() -> None:
    stack = FakeStack(deployed="p2b1-cutover-50", configured="p2b1-cutover-50")
    h = Harness(stack, failing_checks=["routes-slo"])
    assert automation.forward("dev", yes=True, deps=h.deps, override_gate="  ") == 2
    assert "needs a reason" in h.text and stack.mutations() == [] and h.checked == []


@pytest.mark.parametrize(
    ("deployed", "to", "said"),
    [
        ("p2a-k3s", "p2c-optimize", "never measured: p2b-services, p2b1-cutover-50, p2b2-cutover-100"),
        # Issue 27: the phases skipped on the way into the irreversible one were never checked either.
        ("p2c-optimize", "p4-decommission", "never checked before the irreversible p4-decommission: p3-local-brain"),
    ],
)
def test_skipping_past_a_gated_phase_is_gated(deployed: str, to: str, said: str) -> None:
    stack = FakeStack(deployed=deployed, configured=deployed)
    h = Harness(stack)
    assert automation.forward("dev", yes=True, to=to, allow_skip=True, deps=h.deps) == 1
    assert said in h.text
    assert stack.mutations() == []


def test_rollback_from_a_cutover_phase_needs_no_gate() -> None:
    stack = FakeStack(deployed="p2b2-cutover-100", configured="p2b2-cutover-100")
    h = Harness(stack, failing_checks=["routes-slo", "load-test"])
    assert automation.rollback("dev", yes=True, deps=h.deps) == 0
    assert stack.config[PHASE_KEY] == "p2b1-cutover-50"
    # Only p2b1's immediate check ran after the rollback: no gate before it, no load test after it.
    assert [names for names, _ in h.checked] == [["public-routes-200"]]


def test_leaving_a_phase_that_moves_no_traffic_is_not_gated() -> None:
    stack = FakeStack(deployed="p2a-k3s", configured="p2a-k3s")
    h = Harness(stack, failing_checks=["nodes-ready-gpu"])
    assert automation.forward("dev", yes=True, deps=h.deps) == 0  # p2b-services' checks pass
    assert h.checked[0][0] == ["backups-verified", "restore-jobs-complete", "public-routes-200"]


def test_the_cli_passes_override_gate_to_forward_only(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(automation, "forward", lambda stack, **kw: seen.update(stack=stack, **kw) or 0)
    assert cli.main(["forward", "--stack", "prod", "--yes", "--override-gate", "INC-7: legacy host gone"]) == 0
    assert seen["stack"] == "prod" and seen["override_gate"] == "INC-7: legacy host gone"
    with pytest.raises(SystemExit) as exc:
        cli.main(["rollback", "--stack", "prod", "--override-gate", "no gate to override"])
    assert exc.value.code == 2


# --- the last gate: into a phase with irreversible steps (issue 27) -----------------------------


P3_CHECKS = ["llama-health", "nodes-ready-gpu", "llama-bench-targets", "router-local-share"]


def test_forward_from_p3_into_the_irreversible_phase_stops_when_router_local_share_fails() -> None:
    stack = FakeStack(deployed="p3-local-brain", configured="p3-local-brain")
    h = Harness(stack, failing_checks=["router-local-share"])
    assert automation.forward("prod", yes=True, deps=h.deps) == 1
    # p3's own checks ran with p3's thresholds, and nothing moved: no config change, no preview, no up.
    assert h.checked[0][0] == P3_CHECKS
    assert h.thresholds[0]["router-local-share"].min_share == 0.9
    assert "p4-decommission has irreversible step(s): fly-destroy" in h.text
    assert "gate closed" in h.text and "router-local-share" in h.text and "--override-gate" in h.text
    assert stack.mutations() == [] and h.offline == [] and stack.config[PHASE_KEY] == "p3-local-brain"


def test_forward_from_p3_with_an_override_moves_and_records_the_reason(caplog: pytest.LogCaptureFixture) -> None:
    stack = FakeStack(deployed="p3-local-brain", configured="p3-local-brain")
    h = Harness(stack, failing_checks=["router-local-share"])
    with caplog.at_level("WARNING", logger="gpu-platform.migrate"):
        code = automation.forward("prod", yes=True, deps=h.deps, override_gate="CHG-9: router metrics down")
    assert code == 0 and stack.config[PHASE_KEY] == "p4-decommission"
    (message,) = stack.messages
    assert message.startswith("migrate forward: p3-local-brain -> p4-decommission; gate overridden by")
    assert "CHG-9: router metrics down" in message and "router-local-share" in message
    assert "CHG-9" in caplog.text and "CHG-9" in h.text


def test_forward_from_p3_with_passing_checks_needs_no_override() -> None:
    stack = FakeStack(deployed="p3-local-brain", configured="p3-local-brain")
    h = Harness(stack)
    assert automation.forward("prod", yes=True, deps=h.deps) == 0
    assert h.checked[0][0] == P3_CHECKS  # the gate, then p4's checks after the update
    assert stack.messages == ["migrate forward: p3-local-brain -> p4-decommission"]


def test_status_at_p3_says_forward_is_gated() -> None:
    stack = FakeStack(deployed="p3-local-brain", configured="p3-local-brain")
    h = Harness(stack)
    assert automation.status("prod", deps=h.deps) == 0
    assert "gate:     `forward` runs these checks first and stops if one fails (p4-decommission" in h.text
