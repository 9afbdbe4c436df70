"""Every dynamic provider pickles for real, and carries no credential into the state file.

The recording harness replaces dill with the provider's class name to keep offline plans fast
(migrate/harness.py); this test is what keeps that shortcut honest.
"""

from __future__ import annotations

import base64
import importlib
import inspect
import pkgutil

import dill
import pytest
from pulumi.dynamic import ResourceProvider
from pulumi.dynamic.dynamic import serialize_provider

import components

SENTINELS = {"LAMBDA_API_KEY": "sentinel-lambda-key-6f1d", "FLY_API_TOKEN": "sentinel-fly-token-90ab"}


def _providers() -> list[type[ResourceProvider]]:
    found: dict[str, type[ResourceProvider]] = {}
    for info in pkgutil.iter_modules(components.__path__):
        module = importlib.import_module(f"components.{info.name}")
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
