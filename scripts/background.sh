#!/usr/bin/env bash
# Start a long job (a build, a venv install) in the background and leave its state where the tests
# read it: ${XDG_CACHE_HOME:-$HOME/.cache}/gpu-platform/jobs/<name>.{pid,log,rc}.
#
#   scripts/background.sh NAME COMMAND [ARGS...]
#
# `make test` starts the llama-server build and the LiteLLM install this way before lint and the
# fast tests, so they run while the CPU is otherwise waiting; tests/real/tools.py waits (bounded)
# for the result and fails with the log and the command to rerun. A job of the same name that is
# still running is left alone.
set -euo pipefail

name=$1
shift
jobs="${XDG_CACHE_HOME:-$HOME/.cache}/gpu-platform/jobs"
mkdir -p "$jobs"
if [ -f "$jobs/$name.pid" ] && kill -0 "$(cat "$jobs/$name.pid")" 2>/dev/null; then
  echo "$name: already running (log: $jobs/$name.log)"
  exit 0
fi
rm -f "$jobs/$name.rc"
# setsid: the job outlives make; its exit status lands in <name>.rc. The inner script is quoted on
# purpose: bash -c expands it, with $0 the job's path prefix and $@ the command.
# shellcheck disable=SC2016
setsid nohup bash -c '"$@" > "$0.log" 2>&1; echo $? > "$0.rc.tmp"; mv "$0.rc.tmp" "$0.rc"' \
  "$jobs/$name" "$@" < /dev/null > /dev/null 2>&1 &
echo $! > "$jobs/$name.pid"
echo "$name: started in the background (log: $jobs/$name.log)"
