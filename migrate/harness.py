"""The recording harness: the real program under Pulumi mocks, every registration captured.

`record(stack, phase)` runs `__main__.py` exactly as `pulumi up` would run it, but against a
`CapturingMonitor` instead of the engine. Every `RegisterResource` request is kept with what the
engine would see: type, name, URN, parent, inputs (secrets marked), dependencies, provider and the
resource options that matter for safety. Mock outputs come from `migrate.mocks`, which fails loudly
on a resource type it has no rule for.

Two views of one phase: `record(...)` is the update (`dry_run=False`, every output known), and
`record(..., preview=True)` is a stack's first `pulumi preview` (`dry_run=True`): the mocks answer
as a provider's preview of a create does (inputs known, computed outputs unknown; nothing known at
all where the provider's own configuration is still unknown), so the program's applies on those
outputs do not run and unknowns reach later resources the way they do under the engine. In both
views a resource constructed inside an `apply` fails the recording: the preview would not show it.

Tests, `python -m migrate plan|diff|check` and the offline policy runner all use this one harness;
nothing else in the project describes the resources a second time.

The program's warnings (`pulumi.log.warn`, which `pulumi up` prints as `warning: ...`) are kept on
the plan (`RecordedPlan.warnings`) and printed the same way on stderr, each once per stream: a `diff`
that records two phases does not repeat them, and each command `migrate.affected` runs in-process
(its stderr captured apart) shows its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import json
import logging
import runpy
import sys
import types
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi import Output, Resource
from pulumi.dynamic import dynamic
from pulumi.runtime import rpc
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime import stack as runtime_stack
from pulumi.runtime.mocks import MockEngine, MockMonitor, MockResourceArgs, MockSettings
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.stack import run_in_stack
from pulumi.runtime.sync_await import _sync_await

from components.config.load import SECRET_KEYS
from components.config.schema import NAMESPACE
from components.core.engine import WIRE_UNKNOWN, contains_unknown, is_unknown
from components.core.errors import ConfigError
from migrate import mocks

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "gpu-platform"
SECRET = "[secret]"
UNKNOWN = "[unknown]"

# Pulumi's wire markers (sdk/python/lib/pulumi/runtime/rpc.py).
_SIG = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


class ResourceInApplyError(Exception):
    """The program constructed a resource inside an `Output.apply` callback.

    During a preview an apply on an unknown value never runs, so such a resource is missing from
    `pulumi preview` (and from the policy pack's view of it) and appears only during `pulumi up`.
    """


@dataclass(frozen=True)
class RecordedResource:
    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    inputs: dict[str, Any]  # secret leaves replaced by "[secret]"
    secret_inputs: tuple[str, ...]  # dotted paths of the inputs that were secret
    dependencies: tuple[str, ...]
    property_dependencies: dict[str, tuple[str, ...]]
    provider: str  # URN of the explicit provider, "" for the default one
    protect: bool
    retain_on_delete: bool
    ignore_changes: tuple[str, ...]
    delete_before_replace: bool
    replace_on_changes: tuple[str, ...]
    additional_secret_outputs: tuple[str, ...]
    deleted_with: str
    aliases: tuple[str, ...]
    custom_timeouts: dict[str, str]
    import_id: str
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: tuple[str, ...] = ()
    version: str = ""  # the provider plugin version the resource asks the engine for
    # The properties as the engine marshals them for the policy pack's Analyzer (secrets in their
    # wire wrapper with the real, offline-placeholder value; unknowns as the wire sentinel). Only
    # the parity test reads them; they are never printed (not in to_json, not in repr).
    wire_inputs: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    wire_outputs: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def unknown_inputs(self) -> tuple[str, ...]:
        """Paths of the inputs that are unknown in this view (a preview's; none in an update)."""
        return tuple(unknown_paths(self.inputs))

    @property
    def unknown_outputs(self) -> tuple[str, ...]:
        return tuple(unknown_paths(self.outputs))

    def to_json(self) -> dict[str, Any]:
        return {
            "urn": self.urn,
            "type": self.type,
            "name": self.name,
            "parent": self.parent,
            "custom": self.custom,
            "inputs": self.inputs,
            "secret_inputs": list(self.secret_inputs),
            "protect": self.protect,
            "retain_on_delete": self.retain_on_delete,
            "ignore_changes": list(self.ignore_changes),
            "delete_before_replace": self.delete_before_replace,
            "replace_on_changes": list(self.replace_on_changes),
            "additional_secret_outputs": list(self.additional_secret_outputs),
            "dependencies": list(self.dependencies),
            "property_dependencies": {k: list(v) for k, v in self.property_dependencies.items()},
            "provider": self.provider,
            "deleted_with": self.deleted_with,
            "aliases": list(self.aliases),
            "custom_timeouts": self.custom_timeouts,
            "import_id": self.import_id,
            "secret_outputs": list(self.secret_outputs),
            "unknown_inputs": list(self.unknown_inputs),
            "unknown_outputs": list(self.unknown_outputs),
            "version": self.version,
        }


@dataclass(frozen=True)
class RecordedPlan:
    stack: str
    phase: str
    resources: tuple[RecordedResource, ...]
    outputs: dict[str, Any]
    secret_stack_outputs: tuple[str, ...]
    preview: bool = False  # True: a first `pulumi preview` (dry_run); False: the update
    wire_outputs: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    warnings: tuple[str, ...] = ()  # what the program passed to pulumi.log.warn, in order

    def by_urn(self) -> dict[str, RecordedResource]:
        return {r.urn: r for r in self.resources}

    def of_type(self, type_: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type == type_]

    def named(self, name: str) -> RecordedResource:
        matches = [r for r in self.resources if r.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources named {name!r}")
        return matches[0]

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "phase": self.phase,
            "view": "preview" if self.preview else "update",
            "resources": [r.to_json() for r in self.resources],
            "outputs": self.outputs,
            "secret_outputs": list(self.secret_stack_outputs),
        }


# --- value normalisation ------------------------------------------------------------------------


def _clean(value: Any, path: str, secrets: list[str]) -> Any:
    """Plain JSON-able data from a deserialised property value, noting where secrets were."""
    if isinstance(value, Mapping):
        if value.get(_SIG) == _SECRET_SIG:
            secrets.append(path)
            return _masked(value.get("value"))
        return {str(k): _clean(v, f"{path}.{k}" if path else str(k), secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v, f"{path}[{i}]", secrets) for i, v in enumerate(value)]
    if isinstance(value, Resource):
        return getattr(value, "_recorded_urn", None) or f"<resource {type(value).__name__}>"
    if is_unknown(value):
        return UNKNOWN
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return repr(value)


def _masked(value: Any) -> Any:
    """A secret's shape without its values.

    The SDK marks a whole property secret when any part of it is (pulumi-command does so for
    `connection` because of its private key). Keeping the keys, with every present value shown as
    "[secret]", lets a reviewer and the policies see that e.g. `connection.hostKey` is set without
    seeing any value; a missing or null field stays visibly missing.
    """
    if isinstance(value, Mapping):
        if value.get(_SIG) == _SECRET_SIG:
            return _masked(value.get("value"))
        return {str(k): _masked(v) for k, v in value.items()}
    if value is None:
        return None
    return UNKNOWN if is_unknown(value) else SECRET


def _plain(value: Any) -> Any:
    """The value with secret wrappers removed and unknowns as the wire sentinel, for the mocks."""
    if isinstance(value, Mapping):
        if value.get(_SIG) == _SECRET_SIG:
            return _plain(value.get("value"))
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return WIRE_UNKNOWN if is_unknown(value) else value


def _wire(value: Any) -> Any:
    """The value as the engine marshals it for an analyzer: secrets wrapped (real value inside),
    unknowns as the wire sentinel, resource references as their URN, plain JSON otherwise."""
    if isinstance(value, Mapping):
        return {str(k): _wire(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_wire(v) for v in value]
    if isinstance(value, Resource):
        return getattr(value, "_recorded_urn", None) or ""
    if is_unknown(value):
        return WIRE_UNKNOWN
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return repr(value)


def unknown_paths(value: Any, path: str = "") -> list[str]:
    """Dotted paths of the recorded "[unknown]" markers in `value`."""
    if value == UNKNOWN:
        return [path]
    if isinstance(value, Mapping):
        return [p for k, v in value.items() for p in unknown_paths(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in unknown_paths(v, f"{path}[{i}]")]
    return []


def _alias(alias: Any) -> str:
    if alias.urn:
        return str(alias.urn)
    spec = alias.spec
    parts = [f"name={spec.name}" if spec.name else "", f"type={spec.type}" if spec.type else ""]
    parts.append("no-parent" if spec.noParent else (f"parent={spec.parentUrn}" if spec.parentUrn else ""))
    return " ".join(p for p in parts if p)


def _provider_urn(ref: str) -> str:
    # A provider reference is "<urn>::<id>"; the URN itself contains "::" separators.
    return ref.rsplit("::", 1)[0] if ref else ""


# --- the monitor --------------------------------------------------------------------------------


class CapturingMonitor(MockMonitor):
    """A MockMonitor that keeps every registration request, in order."""

    def __init__(self, rules: mocks.Mocks, preview: bool) -> None:
        super().__init__(rules)
        self.preview = preview
        self.recorded: dict[str, RecordedResource] = {}
        self.stack_outputs: dict[str, Any] = {}
        self.stack_wire_outputs: dict[str, Any] = {}
        self.secret_stack_outputs: list[str] = []

    def _provider_config_unknown(self, provider_ref: str) -> bool:
        provider = self.recorded.get(_provider_urn(provider_ref))
        return provider is not None and contains_unknown(provider.wire_inputs)

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        if request.type == "pulumi:pulumi:Stack":
            return super().RegisterResource(request)
        raw = rpc.deserialize_properties(request.object, keep_unknowns=True)
        raw.pop("__provider", None)  # the engine's analyzers skip internal keys too
        secret_paths: list[str] = []
        inputs = _clean(raw, "", secret_paths)
        urn = self.make_urn(request.parent, request.type, request.name)
        id_, state = self._mock_state(request, _plain(raw))
        obj_proto = _sync_await(rpc.serialize_properties(state, {}))
        self.resources[urn] = MockMonitor.ResourceRegistration(urn, id_, state)
        self.recorded[urn] = _recorded_resource(
            request, urn, raw=raw, inputs=inputs, secret_paths=secret_paths, state=state
        )
        return resource_pb2.RegisterResourceResponse(urn=urn, id=id_, object=obj_proto)

    def _mock_state(self, request: Any, plain_inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The id and output state the mocks give the resource in this view."""
        args = MockResourceArgs(
            typ=request.type,
            name=request.name,
            inputs=plain_inputs,
            provider=request.provider,
            resource_id=request.importId,
            custom=request.custom or False,
        )
        id_, state = self.mocks.new_resource(args)
        id_ = id_ or ""
        # A preview's create answers with inputs and unknown computed outputs; an import reads
        # the real object even in a preview, so its outputs stay known.
        if self.preview and request.custom and not request.importId:
            unknown_config = self._provider_config_unknown(request.provider)
            state = mocks.preview_outputs(request.type, plain_inputs, state, provider_config_unknown=unknown_config)
            id_ = ""
        return id_, state

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802
        if "::pulumi:pulumi:Stack::" in request.urn:
            raw = rpc.deserialize_properties(request.outputs, keep_unknowns=True)
            secrets: list[str] = []
            self.stack_outputs = _clean(raw, "", secrets)
            self.stack_wire_outputs = _wire(raw)
            self.secret_stack_outputs = sorted({s.split(".")[0].split("[")[0] for s in secrets})
        return super().RegisterResourceOutputs(request)


def _recorded_resource(
    request: Any, urn: str, *, raw: dict[str, Any], inputs: Any, secret_paths: list[str], state: dict[str, Any]
) -> RecordedResource:
    """What the engine would see of one RegisterResource request, given the mocks' answer `state`."""
    out_secrets: list[str] = []
    outputs = _clean(state, "", out_secrets)
    secret_top = {p.split(".")[0].split("[")[0] for p in secret_paths + out_secrets}
    secret_top |= set(request.additionalSecretOutputs)
    timeouts = request.customTimeouts
    return RecordedResource(
        urn=urn,
        type=request.type,
        name=request.name,
        parent=request.parent,
        custom=bool(request.custom),
        inputs=inputs,
        secret_inputs=tuple(secret_paths),
        # The SDK gathers dependencies in sets; sorted, two recordings compare equal.
        dependencies=tuple(sorted(request.dependencies)),
        property_dependencies={
            k: tuple(sorted(v.urns)) for k, v in sorted(request.propertyDependencies.items()) if k != "__provider"
        },
        provider=_provider_urn(request.provider),
        protect=bool(request.protect),
        retain_on_delete=bool(request.retainOnDelete),
        ignore_changes=tuple(request.ignoreChanges),
        delete_before_replace=bool(request.deleteBeforeReplace),
        replace_on_changes=tuple(request.replaceOnChanges),
        additional_secret_outputs=tuple(request.additionalSecretOutputs),
        deleted_with=request.deletedWith,
        aliases=tuple(_alias(a) for a in request.aliases),
        custom_timeouts={k: getattr(timeouts, k) for k in ("create", "update", "delete") if getattr(timeouts, k, "")},
        import_id=request.importId,
        outputs=outputs if request.custom else {},
        secret_outputs=tuple(sorted(secret_top)) if request.custom else (),
        version=request.version,
        wire_inputs=_wire(raw),
        wire_outputs=_wire(state) if request.custom else {},
    )


# --- reading stack files ------------------------------------------------------------------------


def stack_file(stack: str) -> Path:
    return ROOT / f"Pulumi.{stack}.yaml"


def read_stack_file(path: Path) -> dict[str, Any]:
    """The `gpu-platform:*` config of a stack settings file, keys without the namespace."""
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read stack file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})".replace("\n", " ")) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        raise ConfigError(f"{path}: a stack file needs a top-level 'config:' mapping")
    prefix = f"{NAMESPACE}:"
    out: dict[str, Any] = {}
    for key, value in doc["config"].items():
        if not isinstance(key, str):
            raise ConfigError(f"{path}: config key {key!r} is not a string")
        if key.startswith(prefix):
            out[key[len(prefix) :]] = value
        elif ":" not in key:
            raise ConfigError(f"{path}: config key {key!r} needs a namespace, e.g. {prefix}{key}")
    return out


def _as_config_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _engine_config(raw: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """What the engine would hand the program: every value a string, secrets filled offline."""
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    secret_names = {name for name, _ in SECRET_KEYS}
    for key, value in raw.items():
        if key in secret_names:
            continue
        config[f"{NAMESPACE}:{key}"] = _as_config_string(value)
    for name, _required in SECRET_KEYS:
        full = f"{NAMESPACE}:{name}"
        # Offline there is nothing to decrypt `secure:` values with, so every secret key gets a
        # placeholder; the plan shows it as [secret] and a test proves it never leaks.
        config[full] = f"offline-placeholder-{name}"
        secret_keys.append(full)
    return config, secret_keys


# --- running ------------------------------------------------------------------------------------


# The two stand-ins below replace pulumi internals, not public API. They were written against
# this pulumi release; any other fails every recording until someone re-checks them (and the
# upstream issue behind the second) and moves the pin.
PATCHED_PULUMI = "3.272.0"


def _require_patched_pulumi() -> None:
    found = metadata.version("pulumi")
    if found != PATCHED_PULUMI:
        raise RuntimeError(
            f"migrate/harness.py replaces pulumi internals written against pulumi {PATCHED_PULUMI}, but "
            f"pulumi {found} is installed. Check that pulumi.dynamic.dynamic.serialize_provider and "
            "pulumi.runtime.stack.wait_for_rpcs' asyncio.wait(FIRST_COMPLETED) loop still look as "
            "_cheap_dynamic_provider_serialisation and _drain_outputs_all_at_once expect (the loop is "
            "pulumi/pulumi#22411: drop that stand-in once it is fixed), then set PATCHED_PULUMI"
        )


@contextlib.contextmanager
def _cheap_dynamic_provider_serialisation() -> Iterator[None]:
    """Stand in for dill while recording: the harness drops `__provider` anyway.

    A dynamic resource pickles its provider with `dill.dumps(recurse=True)` on every
    construction, which costs tens of milliseconds each and dominates an offline plan. The
    recorded plan never shows that blob, so the harness replaces it with the provider's class
    name. `tests/test_dynamic_providers.py` pickles every provider for real, so a provider that
    cannot be serialised, or that would carry a plain secret into state, still fails a test.
    """

    def by_name(provider: object) -> str:
        return f"{type(provider).__module__}.{type(provider).__qualname__}"

    real = dynamic.serialize_provider
    setattr(dynamic, "serialize_provider", by_name)  # noqa: B010 - mypy rejects assigning to a def
    try:
        yield
    finally:
        dynamic.serialize_provider = real


@contextlib.contextmanager
def _drain_outputs_all_at_once() -> Iterator[None]:
    """Let Pulumi's quiescence loop wait for all pending outputs at once while recording.

    `pulumi.runtime.stack.wait_for_rpcs` drains pending outputs with `asyncio.wait(...,
    FIRST_COMPLETED)` in a loop (pulumi/pulumi#22411). Each call re-arms a done callback on every
    pending output, so a program with a few thousand outputs pays O(n^2) (python/cpython#74741);
    here that was a third of an offline plan. Waiting with ALL_COMPLETED waits for the very same
    set of outputs, picks up new ones on the next pass, and still awaits each task so its
    exception surfaces; only the moment the first failure is noticed changes, which an offline
    recording does not depend on.
    """
    real_asyncio = runtime_stack.asyncio

    async def wait_for_all(tasks: Any, *, return_when: str = asyncio.ALL_COMPLETED) -> Any:
        del return_when  # the point: FIRST_COMPLETED is what makes the loop quadratic
        return await asyncio.wait(tasks, return_when=asyncio.ALL_COMPLETED)

    patched = types.ModuleType("asyncio_for_recording")
    patched.__dict__.update(real_asyncio.__dict__)
    patched.wait = wait_for_all  # type: ignore[attr-defined]
    runtime_stack.asyncio = patched
    try:
        yield
    finally:
        runtime_stack.asyncio = real_asyncio


def _apply_callback_code() -> Any:
    """The code object of the coroutine in which `Output.apply` calls the program's callback."""
    found = [c for c in Output.apply.__code__.co_consts if getattr(c, "co_name", "") == "run"]
    if len(found) != 1:
        raise RuntimeError(
            "pulumi.Output.apply no longer runs its callback in a nested `run` coroutine; "
            "update migrate/harness.py's resource-in-apply check for this pulumi version"
        )
    return found[0]


def _note_resources_in_applies(found: list[str]) -> None:
    """Note every resource the program constructs inside an `Output.apply` callback in `found`.

    A stack transformation (public API) runs synchronously in every Resource constructor, so the
    Python call stack at that moment shows whether an apply's callback is constructing it. The
    recording fails afterwards (raising here would only fail that apply's Output).
    """
    run_code = _apply_callback_code()

    def check(args: pulumi.ResourceTransformationArgs) -> None:
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_code is run_code:
                found.append(f"{args.type_} {args.name!r}")
                return
            frame = frame.f_back  # type: ignore[assignment]

    pulumi.runtime.register_stack_transformation(check)


# The warnings already printed on each stderr stream (sys.stderr as it is at the time).
_PRINTED_WARNINGS: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


def new_command() -> None:
    """Forget which warnings were printed: each command of `migrate` says the program's warnings
    once, even when several run in one process on one stderr (a test, `migrate.affected`)."""
    _PRINTED_WARNINGS.clear()


class _Warnings(logging.Handler):
    """The mock engine's log: WARNING and above kept for the plan and printed once on stderr."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.kept: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.kept.append(message)
        printed = _PRINTED_WARNINGS.setdefault(sys.stderr, set())
        if message not in printed:
            printed.add(message)
            print(f"{record.levelname.lower()}: {message}", file=sys.stderr)


def _engine_log() -> tuple[logging.Logger, _Warnings]:
    logger = logging.getLogger("migrate.harness.program")
    logger.propagate = False
    for old in list(logger.handlers):
        logger.removeHandler(old)
    handler = _Warnings()
    logger.addHandler(handler)
    return logger, handler


def _run(
    stack: str, config: dict[str, str], secret_keys: list[str], phase: str, program_path: Path, *, preview: bool
) -> RecordedPlan:
    # Looked up at each run, not bound at import: tests/test_k3s_plan.py swaps in a subclass.
    monitor = CapturingMonitor(mocks.Mocks(), preview)
    logger, warnings = _engine_log()
    runtime_settings.ROOT.set(None)
    runtime_settings.configure(
        MockSettings(
            monitor=monitor,
            monitor_features=set(monitor.GetDeploymentInfo(None).supportedFeatures),
            engine=MockEngine(logger),
            project=PROJECT,
            stack=stack,
            dry_run=preview,
            organization="organization",
            callbacks=None,
        )
    )
    pulumi.runtime.set_all_config(config, secret_keys)

    in_applies: list[str] = []

    def program() -> None:
        _note_resources_in_applies(in_applies)
        runpy.run_path(str(program_path), run_name="__main__")

    _require_patched_pulumi()
    asyncio.set_event_loop(asyncio.new_event_loop())
    try:
        with _cheap_dynamic_provider_serialisation(), _drain_outputs_all_at_once():
            _sync_await(run_in_stack(program))
    except ConfigError as exc:
        # Config is validated before the first resource; if anything was registered first, that
        # ordering broke and the error says so rather than hiding a half-built plan.
        if monitor.recorded:
            raise ConfigError(f"{exc} (after {len(monitor.recorded)} resources were already registered)") from None
        raise
    finally:
        asyncio.get_event_loop().close()
        runtime_settings.ROOT.set(None)
    if in_applies:
        raise ResourceInApplyError(
            f"{', '.join(in_applies)} constructed inside an Output.apply callback: a preview does not run "
            "applies on unknown values, so `pulumi preview` and the policy pack would not see it. Build the "
            "resource outside the apply and pass the Output as its input"
        )
    return RecordedPlan(
        stack=stack,
        phase=phase,
        # Registration order depends on which Outputs resolve first; URN order does not.
        resources=tuple(sorted(monitor.recorded.values(), key=lambda r: r.urn)),
        outputs=monitor.stack_outputs,
        secret_stack_outputs=tuple(monitor.secret_stack_outputs),
        preview=preview,
        wire_outputs=monitor.stack_wire_outputs,
        warnings=tuple(warnings.kept),
    )


def record(
    stack: str,
    phase: str | None = None,
    stack_path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    program: Path | None = None,
    *,
    preview: bool = False,
) -> RecordedPlan:
    """Run the program for `stack` (optionally at `phase`, from another file, with overrides).

    `preview=True` records the stack's first `pulumi preview` instead of the update (see the
    module docstring). Raises ConfigError for bad config before the program registers anything,
    and ResourceInApplyError when the program builds a resource inside an apply.
    """
    raw = read_stack_file(stack_path or stack_file(stack))
    raw.update(overrides or {})
    if phase is not None:
        raw["phase"] = phase
    config, secret_keys = _engine_config(raw)
    chosen = str(raw.get("phase", ""))
    # Each run gets a fresh context: Pulumi keeps its runtime state in ContextVars.
    run = functools.partial(_run, preview=preview)
    return contextvars.Context().run(run, stack, config, secret_keys, chosen, program or ROOT / "__main__.py")
