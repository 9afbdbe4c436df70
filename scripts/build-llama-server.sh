#!/usr/bin/env bash
# Builds llama-server (CPU only) from the llama.cpp source vendored in the llama-cpp-python sdist, once per
# source version, into ${XDG_CACHE_HOME:-$HOME/.cache}/gpu-platform/llama-server/<version>/.
#
# The sdist is the only llama.cpp source the package index serves; its CHANGELOG names the upstream commit it
# vendors, checked below against components/catalog/versions.py LLAMA_CPP_TEST_SOURCE (the server image is that
# commit's build). ccache keeps a rebuild after a cache wipe short. The binary is never written into the work
# tree. Measured cold (empty ccache) on the 2-core development machine on 2026-12-06, shared with seven
# other checkouts at work: 32 minutes (the background job's llama-server.pid written at
# 01:42:26, its .rc at 02:14:27). An unloaded or larger machine takes less; that was not measured here.
#
# Usage: scripts/build-llama-server.sh            build (no-op when the binary exists), print its path
#        scripts/build-llama-server.sh --path     print where the binary is (or will be), build nothing
#
# Environment: LLAMA_CUDA_ARCH=90 builds with CUDA for that one compute capability only (nvcc compiles
# each kernel once instead of for every architecture, which is what keeps a GPU build to minutes; the
# CUDA toolkit must be installed), into <version>-cuda<arch>/. LLAMA_SDIST=<path> uses that
# llama_cpp_python sdist (checked against the same sha256) instead of downloading it, for a host
# without network. BUILD_JOBS sets the parallel compile jobs (default 2).
set -euo pipefail
# The whole script is one block, read before it runs: an edit to this file during a build (which
# takes long) cannot change what the running build does next.
{

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SDIST_VERSION="$(sed -n 's/^LLAMA_CPP_TEST_SOURCE.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' "$ROOT/components/catalog/versions.py")"
COMMIT="$(sed -n 's/^LLAMA_CPP_TEST_SOURCE.*"commit": "\([0-9a-f]*\)".*/\1/p' "$ROOT/components/catalog/versions.py")"
# sha256 of llama_cpp_python-0.3.36.tar.gz as published on PyPI; a new version needs its own.
SDIST_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
CUDA_ARCH="${LLAMA_CUDA_ARCH:-}"
case "$CUDA_ARCH" in
  "" | [0-9][0-9] | [0-9][0-9][0-9] | [0-9][0-9]a | [0-9][0-9][0-9]a) ;;
  *) echo "build-llama-server: LLAMA_CUDA_ARCH must be a compute capability such as 90 (got '$CUDA_ARCH')" >&2; exit 2 ;;
esac
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/gpu-platform/llama-server/${SDIST_VERSION}${CUDA_ARCH:+-cuda$CUDA_ARCH}"
BINARY="$CACHE/bin/llama-server"
PYTHON="${PYTHON:-python3}"

if [ "${1:-}" = "--path" ]; then
  echo "$BINARY"
  exit 0
fi
if [ -x "$BINARY" ]; then
  echo "$BINARY"
  exit 0
fi
mkdir -p "$CACHE"
# One build at a time (two checkouts on one machine share the cache); the second finds the binary.
exec 9>"$CACHE/.lock"
flock 9
if [ -x "$BINARY" ]; then
  echo "$BINARY"
  exit 0
fi

# `make tools-llm` (a step of `make llama-server` and `make test`) installs these from Debian.
need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "build-llama-server: $1 is missing; \`make tools-llm\` installs it (Debian package $2)" >&2
  exit 1
}
need cmake cmake
need g++ g++
need ccache ccache
if [ -n "$CUDA_ARCH" ] && ! command -v nvcc >/dev/null 2>&1; then
  echo "build-llama-server: LLAMA_CUDA_ARCH=$CUDA_ARCH needs nvcc (the CUDA toolkit) on PATH" >&2
  exit 1
fi

# A fixed build directory (under the lock): ccache keys on the compiler's arguments, paths included.
work="$CACHE/.build"
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT

sdist="$work/llama_cpp_python-${SDIST_VERSION}.tar.gz"
if [ -n "${LLAMA_SDIST:-}" ]; then
  cp "$LLAMA_SDIST" "$sdist"
else
  "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    "llama-cpp-python==${SDIST_VERSION}" -d "$work" >&2
fi
echo "${SDIST_SHA256}  ${sdist}" | sha256sum --check --quiet -
tar -xzf "$sdist" -C "$work" "llama_cpp_python-${SDIST_VERSION}/vendor/llama.cpp" \
  "llama_cpp_python-${SDIST_VERSION}/CHANGELOG.md"
changelog="$work/llama_cpp_python-${SDIST_VERSION}/CHANGELOG.md"
# The first release section names the vendored commit: "update llama.cpp to ggml-org/llama.cpp@<commit>".
vendored="$(awk '/^## \[[0-9]/ { release = 1 }
  release && match($0, /llama\.cpp@[0-9a-f]+/) { print substr($0, RSTART + 10, RLENGTH - 10); exit }' "$changelog")"
if [ "$vendored" != "$COMMIT" ]; then
  echo "build-llama-server: the sdist vendors llama.cpp@${vendored}, components/catalog/versions.py says ${COMMIT}" >&2
  exit 1
fi
src="$work/llama_cpp_python-${SDIST_VERSION}/vendor/llama.cpp"

export CCACHE_DIR="${CCACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gpu-platform/ccache}"
export CCACHE_BASEDIR="$work" CCACHE_NOHASHDIR=1
nice -n 10 cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
  -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DGGML_NATIVE=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF \
  ${CUDA_ARCH:+-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCH} >&2
nice -n 10 cmake --build "$work/build" --target llama-server -j "${BUILD_JOBS:-2}" >&2

mkdir -p "$CACHE/bin"
cp "$work/build/bin/llama-server" "$BINARY.tmp"
mv "$BINARY.tmp" "$BINARY"
echo "$BINARY"
exit 0
}
