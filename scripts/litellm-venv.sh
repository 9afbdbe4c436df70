#!/usr/bin/env bash
# The real LiteLLM proxy for the router tests, in its own venv (its dependencies clash with the
# project's requirements.txt): ${XDG_CACHE_HOME:-$HOME/.cache}/gpu-platform/litellm/<version>/.
# The version is the router image's (components/catalog/versions.py LITELLM_IMAGE), so the tests run the
# proxy the cluster runs. Prints the venv's python.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
version="$(sed -n 's/^LITELLM_IMAGE.*litellm-non_root:v\([0-9][0-9.]*\)".*/\1/p' "$root/components/catalog/versions.py")"
if [ -z "$version" ]; then
  echo "litellm-venv: no LITELLM_IMAGE version in components/catalog/versions.py" >&2
  exit 2
fi
venv="${XDG_CACHE_HOME:-$HOME/.cache}/gpu-platform/litellm/$version"
constraints="$root/scripts/litellm-constraints.txt"
# Every dependency pinned too; a new constraints file reinstalls.
stamp="$venv/.installed-$(cksum "$constraints" | cut -d' ' -f1)"
if [ "${1:-}" = "--path" ]; then
  echo "$venv/bin/python"
  exit 0
fi
if [ "${1:-}" = "--stamp" ]; then
  echo "$stamp"
  exit 0
fi
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if [ ! -f "$stamp" ]; then
  "${PYTHON:-python3}" -m venv --clear "$venv"
  # prometheus_client: the router config's `callbacks: [prometheus]` needs it; the image ships it,
  # the proxy extra does not.
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -c "$constraints" \
    "litellm[proxy]==$version" prometheus_client >&2
  touch "$stamp"
fi
echo "$venv/bin/python"
