"""How `python -m migrate` writes: one exit-code contract, whole lines, values not reprs.

- Exit codes, the same for every subcommand: 0 ok, 1 a check failed, 2 bad input, 3 the move would
  undo an irreversible step or delete or replace a protected resource.
- Piped (a CI log, `| cat`, `| less`) nothing is cut or wrapped: a line is as long as it needs to
  be, because the end of a line is where the safety flags are. In a terminal rich wraps at word
  boundaries instead of cropping.
- Resource names are never read as rich markup or emoji codes: `gpu-platform:llama:LlamaServer`
  holds `:llama:`, which rich would print as an emoji.
- A reader that closes the pipe early (`| head -1`) ends the command quietly with the shell's code
  for SIGPIPE (141), not a traceback and not "a check failed".
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterator
from typing import IO, Any

from rich.console import Console

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_PROTECTED = 0, 1, 2, 3
EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a writer killed by SIGPIPE

# Wide enough for any line a plan prints; rich needs a number, and piped output has no width.
UNLIMITED_WIDTH = 1_000_000

EXIT_CODES_HELP = """exit codes (every subcommand):
  0  ok
  1  a check failed (a mandatory policy, an exit check, a --fail-on condition, a failed deploy)
  2  bad input: config, stack file, arguments, unknown phase or stack, a missing tool
  3  the move would undo an irreversible step or delete or replace a protected resource
errors go to stderr; a closed pipe (`| head`) ends quietly with 141"""


class _Console(Console):
    def on_broken_pipe(self) -> None:
        # rich's own handler exits 1, which this contract reserves for a failed check.
        raise BrokenPipeError


def console(file: IO[str] | None = None) -> Console:
    """A rich console for the review: no markup, no emoji codes, full lines when not a terminal."""
    out = file if file is not None else sys.stdout
    terminal = bool(getattr(out, "isatty", lambda: False)())
    return _Console(
        file=out,
        highlight=False,
        markup=False,
        emoji=False,
        soft_wrap=False,
        width=None if terminal else UNLIMITED_WIDTH,
        force_terminal=None if terminal else False,
    )


def error(message: str, prefix: str = "error") -> None:
    print(f"{prefix}: {message}", file=sys.stderr)


def survive_closed_pipe(main: Callable[[], int]) -> int:
    """Run `main`; a reader that went away (`| head -1`) ends it with 141 and no traceback."""
    try:
        code = main()
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # Python would complain again when it flushes stdout at exit: point it at /dev/null.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


# --- values, nested the way `pulumi up` prints its outputs -----------------------------------------


def scalar(value: Any) -> str:
    """One leaf as a reviewer reads it: strings quoted as JSON does, 1.0 as 1, booleans lower-case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    if text in ("[secret]", "[unknown]"):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def nested(key: str, value: Any, indent: str = "    ", mark: Callable[[Any], str] = lambda _v: "") -> Iterator[str]:
    """`key: value` lines, objects as `key: {` ... `}` and lists as `[i]: value`, like `pulumi up`'s
    Outputs. `mark(leaf)` adds a note after a leaf (e.g. that an offline mock made it up)."""
    if isinstance(value, dict) and value:
        yield f"{indent}{key}: {{"
        for k, v in value.items():
            yield from nested(str(k), v, indent + "    ", mark)
        yield f"{indent}}}"
    elif isinstance(value, list) and value:
        yield f"{indent}{key}: ["
        for i, v in enumerate(value):
            yield from nested(f"[{i}]", v, indent + "    ", mark)
        yield f"{indent}]"
    elif isinstance(value, dict | list):
        yield f"{indent}{key}: {'{}' if isinstance(value, dict) else '[]'}"
    else:
        yield f"{indent}{key}: {scalar(value)}{mark(value)}"
