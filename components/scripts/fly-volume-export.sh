#!/bin/sh
# shellcheck shell=busybox
# Runs inside the one-off Fly export machine (busybox sh), over a volume restored from a snapshot
# and mounted at /export: stream the volume's files as a gzip'd tarball, base64-encoded so the exec
# endpoint carries it intact, then the end marker the reader requires.
#
# usage (through POST /apps/{app}/machines/{id}/exec): sh -c "<this file>"
# stdout: base64 text, then a line `#FLY-EXPORT-OK`. If tar or gzip fails, pipefail skips the
# marker and the reader aborts the upload, so a partial tarball never becomes a backup.
set -eu
set -o pipefail
tar -C /export -cf - . | gzip -c | base64
echo '#FLY-EXPORT-OK'
