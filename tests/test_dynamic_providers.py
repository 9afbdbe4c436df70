"""Every dynamic provider pickles for real, by reference, and carries no credential into state.

The recording harness replaces dill with the provider's class name to keep offline plans fast
(migrate/harness.py); this test is what keeps that shortcut honest.
"""

from __future__ import annotations

import base64
import importlib
import inspect
import io
import pkgutil
from typing import Any

import dill
import pytest
from pulumi.dynamic import ResourceProvider
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.output import Unknown

import components

SENTINELS = {"LAMBDA_API_KEY": "sentinel-lambda-key-6f1d", "FLY_API_TOKEN": "sentinel-fly-token-90ab"}


def _providers() -> list[type[ResourceProvider]]:
    found: dict[str, type[ResourceProvider]] = {}
    for info in pkgutil.walk_packages(components.__path__, prefix="components."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(cls, ResourceProvider)
                and cls.__module__ == module.__name__
                and not cls.__name__.startswith("_")
            ):
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return [found[k] for k in sorted(found)]


PROVIDERS = _providers()


def test_the_project_has_dynamic_providers() -> None:
    names = {p.__name__ for p in PROVIDERS}
    assert {"LambdaInstanceProvider", "BackupVerificationProvider"} <= names


@pytest.mark.parametrize("cls", PROVIDERS, ids=lambda c: c.__name__)
def test_provider_serialises_without_credentials(cls: type[ResourceProvider], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SENTINELS.items():
        monkeypatch.setenv(name, value)
    blob = base64.b64decode(serialize_provider(cls()))
    for value in SENTINELS.values():
        assert value.encode() not in blob, f"{cls.__name__} pickles a credential from the environment"
    restored = dill.loads(blob)
    assert type(restored).__name__ == cls.__name__


# Where the program pickles its providers now (see the test below before changing this list).
STATE_PATHS = {
    ("components.migration.backups", "BackupVerificationProvider"),
    ("components.migration.fly", "FlyAppExportProvider"),
    ("components.migration.fly", "FlyAppProvider"),
    ("components.migration.fly", "FlyDestroyProvider"),
    ("components.migration.fly", "FlyFreezeProvider"),
    ("components.clouds.lambda_cloud", "LambdaFirewallRulesetProvider"),
    ("components.clouds.lambda_cloud", "LambdaFirewallRulesetRulesProvider"),
    ("components.clouds.lambda_cloud", "LambdaInstanceProvider"),
    ("components.clouds.lambda_cloud", "LambdaSshKeyProvider"),
}

# Where stacks created before the layout move (issue 18) still find them: the shims at the old
# paths. A path leaves this list only when no stack's state can name it any more.
LEGACY_STATE_PATHS = {
    ("components.backups", "BackupVerificationProvider"),
    ("components.fly", "FlyAppExportProvider"),
    ("components.fly", "FlyAppProvider"),
    ("components.fly", "FlyDestroyProvider"),
    ("components.fly", "FlyFreezeProvider"),
    ("components.lambda_cloud", "LambdaFirewallRulesetProvider"),
    ("components.lambda_cloud", "LambdaFirewallRulesetRulesProvider"),
    ("components.lambda_cloud", "LambdaInstanceProvider"),
    ("components.lambda_cloud", "LambdaSshKeyProvider"),
}


def pickled_globals(blob: bytes) -> set[tuple[str, str]]:
    """Every (module, name) the pickle makes the provider host import to load it."""
    found: set[tuple[str, str]] = set()

    class Recording(dill.Unpickler):  # type: ignore[misc]
        def find_class(self, module: str, name: str) -> Any:
            found.add((module, name))
            return super().find_class(module, name)

    Recording(io.BytesIO(blob)).load()
    return found


def test_provider_module_paths_in_state_are_pinned() -> None:
    """Dynamic providers are pickled by reference: these paths are in every stack's state.

    Each resource's `__provider` (in state, and in every Check/Diff/.../Delete the engine sends)
    is a dill pickle that names the provider's class by module path; the provider host imports
    that path to load it, for refresh and destroy too. Moving or renaming a provider class (or
    its module) therefore breaks every existing stack unless the old path keeps working: leave a
    shim at the old path (`from components.new_home import LambdaInstanceProvider` in the old
    module) for as long as any stack may still hold the old pickle, and add the new path here.
    A provider that pickles anything else by path (a helper object in its state) pins that too.
    """
    found = set()
    for cls in PROVIDERS:
        blob = base64.b64decode(serialize_provider(cls()))  # as the program constructs them
        found |= pickled_globals(blob)
    assert found == STATE_PATHS


def legacy_pickle(cls: type[ResourceProvider]) -> bytes:
    """`cls` pickled as the program did before the move: by its old module path."""
    (old_module,) = {m for m, name in LEGACY_STATE_PATHS if name == cls.__name__}
    new_module = cls.__module__
    cls.__module__ = old_module  # dill pickles a class by reference as module + qualified name
    try:
        return base64.b64decode(serialize_provider(cls()))
    finally:
        cls.__module__ = new_module


@pytest.mark.parametrize("cls", PROVIDERS, ids=lambda c: c.__name__)
def test_a_pickle_from_before_the_move_still_loads(cls: type[ResourceProvider]) -> None:
    blob = legacy_pickle(cls)
    assert pickled_globals(blob) <= LEGACY_STATE_PATHS  # it names the old path, and only that
    restored = dill.loads(blob)
    assert type(restored) is cls  # the shim hands back the class the program uses now


def test_every_legacy_path_has_a_provider() -> None:
    assert {name for _, name in LEGACY_STATE_PATHS} == {cls.__name__ for cls in PROVIDERS}
    for module, name in sorted(LEGACY_STATE_PATHS):
        assert getattr(importlib.import_module(module), name) in PROVIDERS


@pytest.mark.parametrize("cls", PROVIDERS, ids=lambda c: c.__name__)
def test_create_and_update_refuse_unknown_inputs(cls: type[ResourceProvider]) -> None:
    # The engine resolves every input before create/update; an unknown there must stop the call
    # before any API request rather than act on a placeholder.
    provider = cls()
    with pytest.raises(AssertionError, match=r"create got unknown inputs \(name\)"):
        provider.create({"name": Unknown(), "app": "x"})
    if cls.update is not ResourceProvider.update:  # Export and Destroy never update
        with pytest.raises(AssertionError, match=r"update got unknown inputs \(rules\[0\]\)"):
            provider.update("id", {}, {"rules": [Unknown()]})
