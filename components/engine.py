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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pulumi.output import Unknown
from pulumi.runtime.rpc import UNKNOWN as WIRE_UNKNOWN
from pulumi.runtime.rpc import is_rpc_secret, unwrap_rpc_secret

__all__ = ["WIRE_UNKNOWN", "contains_unknown", "is_secret", "is_unknown", "unwrap_secrets"]


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
