#!/usr/bin/env bash
# The workstation key for a CI job: from p2a on, the Docker provider of the llama server reaches the
# workstation with the system ssh through an agent (components/llm/llama.py), so a job that runs
# `pulumi preview` or `pulumi up` on a stack with a workstation loads the stack's admin key into an
# ssh-agent first, and stops that agent when the job ends.
#
# usage: workstation-agent.sh start STACK   a step before the first `pulumi preview`/`up` of STACK
#        workstation-agent.sh stop          the job's last step, with `if: always()`
#
# start reads the key from the stack's own secret output (`pulumi stack output adminPrivateKey
# --show-secrets`), with the backend credentials the Pulumi step has, so there is no second copy of
# it to rotate or leak. It needs the `pulumi` CLI on PATH and GITHUB_ENV: the agent's SSH_AUTH_SOCK
# and SSH_AGENT_PID go there for the later steps. The key is held in a shell variable and handed to
# ssh-add on a pipe by printf (a builtin, so never on a command line); it is never written to a
# file, and under GitHub Actions each line of it is masked before anything runs that could print it.
# A stack without the output yet (before its first phase with GPU hosts) gets no agent.
# stop ends the agent start left (its pid from SSH_AGENT_PID); nothing to stop is fine.
set -euo pipefail

# Longer than the longest job (deploy prod: 120 minutes), so the key never expires mid-update; the
# stop step removes it long before on a job that ends normally.
LIFETIME=3h

log() { printf 'workstation-agent: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

start() {
  local stack="$1" outputs key
  [ -n "${GITHUB_ENV:-}" ] || die "GITHUB_ENV is not set: this runs as a step of a GitHub Actions job"
  command -v pulumi >/dev/null || die "pulumi is not on PATH: install it in an earlier step (pulumi/actions without a command)"
  # An empty variable (an environment without PULUMI_BACKEND_URL) would name no backend at all.
  [ -n "${PULUMI_BACKEND_URL:-}" ] || unset PULUMI_BACKEND_URL
  outputs="$(pulumi stack output --stack "$stack" --json)" || die "cannot read the outputs of stack $stack"
  case "$outputs" in
    *'"adminPrivateKey"'*) ;;
    *)
      log "stack $stack has no adminPrivateKey output yet (no phase with GPU hosts deployed): no key to load"
      return 0
      ;;
  esac
  key="$(pulumi stack output adminPrivateKey --stack "$stack" --show-secrets)" ||
    die "cannot read the adminPrivateKey output of stack $stack"
  [ -n "$key" ] || die "the adminPrivateKey output of stack $stack is empty"
  if [ "${GITHUB_ACTIONS:-}" = true ]; then
    printf '%s\n' "$key" | while IFS= read -r line; do
      case "$line" in "" | -----*) ;; *) printf '::add-mask::%s\n' "$line" ;; esac
    done
  fi
  eval "$(ssh-agent -s)" >/dev/null
  if ! printf '%s\n' "$key" | ssh-add -q -t "$LIFETIME" - 2>/dev/null; then
    ssh-agent -k >/dev/null
    die "ssh-add refused the adminPrivateKey output of stack $stack (not an OpenSSH private key)"
  fi
  printf 'SSH_AUTH_SOCK=%s\nSSH_AGENT_PID=%s\n' "$SSH_AUTH_SOCK" "$SSH_AGENT_PID" >>"$GITHUB_ENV"
  log "the admin key of stack $stack is in ssh-agent $SSH_AGENT_PID for $LIFETIME: $(ssh-add -l)"
}

stop() {
  if [ -z "${SSH_AGENT_PID:-}" ]; then
    log "no ssh-agent was started: nothing to stop"
    return 0
  fi
  if ssh-agent -k >/dev/null 2>&1; then
    log "stopped ssh-agent $SSH_AGENT_PID; the key is gone with it"
  else
    log "ssh-agent $SSH_AGENT_PID was not running any more"
  fi
}

case "${1:-}" in
  start)
    [ "$#" -eq 2 ] && [ -n "$2" ] || die "usage: $0 start STACK"
    start "$2"
    ;;
  stop)
    [ "$#" -eq 1 ] || die "usage: $0 stop"
    stop
    ;;
  *) die "usage: $0 start STACK | stop" ;;
esac
