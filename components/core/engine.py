"""What the Pulumi engine hands our code, in one place: unknowns and secrets as they really arrive.

During a preview, an input whose value depends on a resource not yet created is *unknown*. The
engine sends it over gRPC as the string sentinel `pulumi.runtime.rpc.UNKNOWN`; the dynamic
provider host (`python -m pulumi.dynamic`) deserializes `check`/`diff` inputs with
`keep_unknowns=True`, which turns that sentinel into the `pulumi.output.UNKNOWN` object (an
instance of `pulumi.output.Unknown`). A container (a list or map) holding one is itself only
partly known. Secrets travel wrapped as `{"4dabf18193072939515e22adb298388d":
"1b47061264138c4ac30d75fd1eb44270", "value": ...}` and policies see them unwrapped.

Every dynamic provider and the policy support ask these functions, never `== UNKNOWN` on their
own, so a test that feeds the host's object and one that feeds the wire string exercise the same
code path.

What the engine promises a dynamic provider, and what the providers here rely on:
- `check` and `diff` may see unknowns (during a preview); `create`, `update`, `read` and `delete`
  never do (`known_inputs` asserts it for create and update);
- secrets arrive plain: the host answers Configure with `acceptSecrets: false`, so the engine
  strips the secret wrappers before it calls the provider (and keeps them in state itself);
- credentials: the `pulumi` process's environment reaches the provider host, and what is stored in
  state may be stale after a rotation; `credential` makes the environment win for every provider.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pulumi.output import Unknown
from pulumi.runtime.rpc import UNKNOWN as WIRE_UNKNOWN
from pulumi.runtime.rpc import is_rpc_secret, unwrap_rpc_secret

__all__ = [
    "WIRE_UNKNOWN",
    "changed",
    "contains_unknown",
    "credential",
    "is_secret",
    "is_unknown",
    "known_inputs",
    "unknown_paths",
    "unwrap_secrets",
]

_Method = TypeVar("_Method", bound=Callable[..., Any])


def is_unknown(value: Any) -> bool:
    """True for the engine's unknown, in either form it arrives in (object or wire sentinel)."""
    return isinstance(value, Unknown) or (isinstance(value, str) and value == WIRE_UNKNOWN)


def contains_unknown(value: Any) -> bool:
    """True when `value` is unknown or holds an unknown anywhere inside it (secrets included)."""
    if is_unknown(value):
        return True
    if isinstance(value, Mapping):
        return any(contains_unknown(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(contains_unknown(v) for v in value)
    return False


def unknown_paths(value: Any, path: str = "") -> list[str]:
    """Dotted paths of every unknown inside `value` (the value itself is "" when unknown)."""
    if is_unknown(value):
        return [path]
    if isinstance(value, Mapping):
        return [p for k, v in value.items() for p in unknown_paths(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list | tuple):
        return [p for i, v in enumerate(value) for p in unknown_paths(v, f"{path}[{i}]")]
    return []


def changed(olds: Mapping[str, Any], news: Mapping[str, Any], key: str) -> bool:
    """Whether input `key` may differ from the old value: an unknown new value is a possible change."""
    return contains_unknown(news.get(key)) or olds.get(key) != news.get(key)


def known_inputs(method: _Method) -> _Method:
    """Decorates a provider's create/update: fail loudly if the engine ever hands it an unknown.

    The engine resolves every input before it creates or updates a resource, so an unknown here is
    a broken promise, not bad input; acting on it (e.g. launching with a placeholder) would be worse
    than stopping. (Today's provider host deserializes Create/Update properties without keeping
    unknowns, so one would arrive there as a missing key instead; this guards direct calls and any
    host that keeps them.)
    """

    @functools.wraps(method)
    def guarded(self: Any, *args: Any) -> Any:
        for arg in args:
            paths = unknown_paths(arg) if isinstance(arg, Mapping) else []
            if paths:
                raise AssertionError(
                    f"{type(self).__name__}.{method.__name__} got unknown inputs ({', '.join(paths)}); "
                    "the engine only calls it with known values"
                )
        return method(self, *args)

    return guarded  # type: ignore[return-value]


def credential(env_var: str, stored: Any) -> str:
    """The credential a provider calls with: `env_var` when set, else the value stored in state.

    The environment wins for every provider: the copy in state is whatever the last `up` wrote and
    is stale after a rotation, while `pulumi refresh` and `pulumi destroy` must still work with
    the new key.
    """
    return (os.environ.get(env_var) or (stored if isinstance(stored, str) else "") or "").strip()


def is_secret(value: Any) -> bool:
    """True for a value in the engine's secret wrapper."""
    return is_rpc_secret(value)


def unwrap_secrets(value: Any) -> Any:
    """The value with every secret wrapper inside it removed (the plain view policies get)."""
    value = unwrap_rpc_secret(value)
    if isinstance(value, Mapping):
        return {k: unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [unwrap_secrets(v) for v in value]
    return value
