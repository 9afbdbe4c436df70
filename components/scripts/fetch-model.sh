#!/bin/sh
# Put a GGUF model on the model volume and refuse to go on unless its SHA-256 is the pinned one.
#
# Runs as the llama server's init container (Kubernetes) and in front of llama-server on the
# workstation (Docker: `fetch-model.sh -- /app/llama-server ARGS...` verifies, then execs the
# server). A file already on the volume is re-hashed on every start, so a truncated or tampered
# file is never served; a stale file (the pinned checksum changed) is replaced.
#
# Environment:
#   MODEL_URL     https URL of the .gguf file (pinned to a revision)
#   MODEL_SHA256  expected SHA-256, 64 lowercase hex digits
#   MODEL_PATH    where the verified file lives, e.g. /models/<file>.gguf
#   HF_TOKEN      optional, for gated Hugging Face repositories (never logged)
# Exit codes: 0 verified (or the exec'd command's own), 1 checksum mismatch, 2 bad input,
# 3 download failed.
set -eu

fail() {
	code=$1
	shift
	echo "fetch-model: $*" >&2
	exit "$code"
}

: "${MODEL_URL:?MODEL_URL is required}"
: "${MODEL_SHA256:?MODEL_SHA256 is required}"
: "${MODEL_PATH:?MODEL_PATH is required}"

case "$MODEL_URL" in
https://*) ;;
*) fail 2 "MODEL_URL must be https, got: $MODEL_URL" ;;
esac
if ! printf '%s' "$MODEL_SHA256" | grep -Eq '^[0-9a-f]{64}$'; then
	fail 2 "MODEL_SHA256 is not 64 lowercase hex digits"
fi

sha_of() {
	sha256sum "$1" | cut -d' ' -f1
}

dir=$(dirname "$MODEL_PATH")
mkdir -p "$dir"
partial="$MODEL_PATH.partial"

if [ -f "$MODEL_PATH" ]; then
	echo "fetch-model: verifying $MODEL_PATH"
	actual=$(sha_of "$MODEL_PATH")
	if [ "$actual" != "$MODEL_SHA256" ]; then
		echo "fetch-model: $MODEL_PATH has SHA-256 $actual, expected $MODEL_SHA256; downloading again" >&2
		rm -f "$MODEL_PATH"
	fi
fi

if [ ! -f "$MODEL_PATH" ]; then
	echo "fetch-model: downloading $MODEL_URL"
	# --continue-at - resumes a .partial left by a killed pod; the checksum below catches a bad
	# resume. https only, also across redirects (Hugging Face redirects to its CDN). A stalled
	# transfer (< 1 KiB/s for 60 s) aborts instead of hanging the init container forever.
	if [ -n "${HF_TOKEN:-}" ]; then
		auth_header="Authorization: Bearer $HF_TOKEN"
	else
		auth_header="X-No-Auth: 1"
	fi
	if ! curl --fail --location --silent --show-error \
		--proto '=https' --proto-redir '=https' \
		--retry 5 --retry-delay 10 --retry-all-errors \
		--speed-limit 1024 --speed-time 60 \
		--continue-at - \
		--header "$auth_header" \
		--output "$partial" "$MODEL_URL"; then
		fail 3 "download of $MODEL_URL failed"
	fi
	actual=$(sha_of "$partial")
	if [ "$actual" != "$MODEL_SHA256" ]; then
		rm -f "$partial"
		fail 1 "checksum mismatch for $MODEL_URL: got $actual, expected $MODEL_SHA256; refusing to serve it"
	fi
	mv "$partial" "$MODEL_PATH"
fi

echo "fetch-model: $MODEL_PATH verified ($MODEL_SHA256)"

if [ "${1:-}" = "--" ]; then
	shift
	[ "$#" -gt 0 ] || fail 2 "nothing to run after --"
	exec "$@"
fi
