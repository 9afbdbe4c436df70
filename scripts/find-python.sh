#!/usr/bin/env bash
# The Python `make` builds the virtualenvs with: the first of the arguments (default: python3.11,
# python3.12, python3.13, python3) that is CPython 3.11, 3.12 or 3.13 and can create a venv with
# pip, printed as the interpreter's own path. The pins in requirements.txt, security/*.txt, tests/realdb/requirements.txt
# and scripts/litellm-constraints.txt install on each of them (README, "Testing"), Debian 12's 3.11.2
# and Ubuntu 24.04's 3.12 included. A name that is on PATH but does not run (a pyenv shim for a
# version that is not selected) is passed over. With none suitable: one line on stdout naming what
# was found and what to install, and exit 1 (the Makefile turns it into its error).
set -uo pipefail

if [ "$#" -eq 0 ]; then
  set -- python3.11 python3.12 python3.13 python3
fi
# Prints "ok" or why not; ensurepip is what `python -m venv` needs for pip (Debian splits it off).
probe='import sys
v = sys.version_info
if sys.implementation.name != "cpython" or v[:2] not in ((3, 11), (3, 12), (3, 13)):
    print(f"is {sys.implementation.name} {v.major}.{v.minor}.{v.micro}")
else:
    try:
        import ensurepip, venv  # noqa: F401
        print("ok", sys.executable)
    except ImportError:
        print(f"is {v.major}.{v.minor}.{v.micro} without the venv module (apt-get install python3.{v.minor}-venv)")'

found=()
for candidate in "$@"; do
  path="$(command -v "$candidate" 2>/dev/null)" || continue
  verdict="$("$path" -c "$probe" 2>/dev/null)" || continue
  if [ "${verdict%% *}" = "ok" ]; then
    # The interpreter itself, not a shim in front of it: each later use skips the shim's start-up.
    echo "${verdict#ok }"
    exit 0
  fi
  found+=("$candidate $verdict")
done
if [ "${#found[@]}" -eq 0 ]; then
  found=("none of $* runs")
fi
summary="$(printf '%s; ' "${found[@]}")"
echo "no supported Python (${summary%; }): the project needs CPython 3.11, 3.12 or 3.13 with its venv module; install one (Debian 12: apt-get install python3.11-venv; Ubuntu 24.04: apt-get install python3.12-venv) or run make PYTHON=/path/to/python3.12"
exit 1
