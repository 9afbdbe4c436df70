"""Errors a user can cause, and how they are reported.

`ConfigError` subclasses `pulumi.RunError`, which the Pulumi language host prints as a plain
message with a non-zero exit and no Python traceback; `python -m migrate` prints it the same way
with exit code 2.
"""

from __future__ import annotations

from typing import Any

from pulumi import RunError
from pydantic import ValidationError


class ConfigError(RunError):
    """A mistake in stack config, a phase file or another user input. The message names the key."""


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """One line per problem: `<prefix><key path>: <what is wrong> (got <value>)`."""
    errors = []
    for err in exc.errors(include_url=False):
        # pydantic reports union/model wrapper locations such as 'function-after[...]'; drop them.
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        errors.append((loc, err))
    # A container that fails because an item failed adds nothing: keep the deepest locations.
    locs = [loc for loc, _ in errors]
    lines = []
    for loc, err in errors:
        if any(len(other) > len(loc) and other[: len(loc)] == loc for other in locs):
            continue
        message = str(err["msg"]).removeprefix("Value error, ")
        where = f"{prefix}{_path(loc)}" if loc else prefix.rstrip(". :")
        if err["type"] == "missing":
            lines.append(f"{where}: required key is missing")
        elif err["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key (check the spelling; keys are camelCase)")
        else:
            lines.append(f"{where}: {message} (got {_short(err['input'])})")
    return "\n".join(lines)
