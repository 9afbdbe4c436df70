#!/usr/bin/env bash
# Proves `make test` as a user meets it on a fresh machine: not root, passwordless sudo (as on
# GitHub's runners), an empty tool cache, a clone of the committed state with no ../shared beside it,
# the upstream files from a mirror named by GPU_PLATFORM_MIRROR.
#
#   sudo scripts/test-as-user.sh [--with-shared] [--shared DIR] [--keep-log FILE] [--warm]
#
# Creates the user gpu-platform-test (refuses if it exists, so no real account is ever touched) with
# a sudoers entry, clones this repository's HEAD into its home, copies DIR (default: ../shared) to
# ~/mirror, runs `make test` there as that user and prints the exit status and the wall time. The
# user, its home (clone, mirror, cache) and the sudoers entry are removed on exit, however it exits.
# --with-shared puts a `shared` link to the mirror beside the clone instead of setting
# GPU_PLATFORM_MIRROR (the layout this machine's CI has). The full log goes to --keep-log FILE
# (default: /tmp/gpu-platform-test-as-user.log), outside the home that is removed. --warm runs make
# test a second time when the first passed, with everything built, and times that too. PYTHON, when set,
# is passed to make (the interpreter the venvs are built from; it must be readable by that user).
set -euo pipefail

user=gpu-platform-test
repo="$(cd "$(dirname "$0")/.." && pwd)"
shared="$repo/../shared"
beside=0
warm=0
log=/tmp/gpu-platform-test-as-user.log
while [ $# -gt 0 ]; do
  case "$1" in
    --with-shared) beside=1 ;;
    --warm) warm=1 ;;
    --shared) shared="$2"; shift ;;
    --keep-log) log="$2"; shift ;;
    *) echo "test-as-user: unknown argument $1 (see the comment at the top of $0)" >&2; exit 2 ;;
  esac
  shift
done

if [ "$(id -u)" != 0 ]; then
  echo "test-as-user: run it as root (it creates and removes a user): sudo $0" >&2
  exit 2
fi
if id -u "$user" >/dev/null 2>&1; then
  echo "test-as-user: the user $user exists already; remove it first (userdel -r $user) if it is a leftover" >&2
  exit 2
fi
for folder in upstream specs; do
  if [ ! -d "$shared/$folder" ]; then
    echo "test-as-user: $shared/$folder is missing; name the mirror with --shared DIR" >&2
    exit 2
  fi
done
command -v sudo >/dev/null || {
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends sudo
}

sudoers="/etc/sudoers.d/$user"
# shellcheck disable=SC2329  # the EXIT trap below runs it
cleanup() {
  status=$?
  # The background builds' logs (the llama-server build, the LiteLLM install) go beside the log.
  if [ -n "${home:-}" ] && [ -d "$home/.cache/gpu-platform/jobs" ]; then
    mkdir -p "${log%.log}-jobs"
    cp "$home/.cache/gpu-platform/jobs/"*.log "${log%.log}-jobs/" 2>/dev/null || true
  fi
  # Everything still running as the user (the background llama-server build that make test starts
  # outlives make by design), by process id, then the user and its home.
  for _ in 1 2 3; do
    pids="$(pgrep -u "$user" || true)"
    [ -z "$pids" ] && break
    # shellcheck disable=SC2086  # one word per process id
    kill $pids 2>/dev/null || true
    sleep 2
  done
  pids="$(pgrep -u "$user" || true)"
  # shellcheck disable=SC2086
  [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
  rm -f "$sudoers"
  find /tmp -maxdepth 1 -user "$user" -exec rm -rf {} +
  userdel -r "$user" 2>/dev/null || echo "test-as-user: could not remove $user; run: userdel -r $user" >&2
  exit "$status"
}
trap cleanup EXIT
# A signal ends the script through exit, so the EXIT trap cleans up then too.
trap 'exit 130' INT
trap 'exit 143' TERM
useradd --create-home --shell /bin/bash "$user"
echo "$user ALL=(ALL) NOPASSWD:ALL" > "$sudoers.tmp"
chmod 0440 "$sudoers.tmp"
visudo -cq -f "$sudoers.tmp"
mv "$sudoers.tmp" "$sudoers"
home="$(getent passwd "$user" | cut -d: -f6)"

commit="$(git -C "$repo" rev-parse HEAD)"
git -c advice.detachedHead=false clone --quiet --no-hardlinks "$repo" "$home/gpu-platform"
git -C "$home/gpu-platform" -c advice.detachedHead=false checkout --quiet --detach "$commit"
cp -R "$shared" "$home/mirror"
# PYTHONUNBUFFERED: pytest's progress reaches the log as it happens, not when a buffer fills.
make_env=("GPU_PLATFORM_MIRROR=$home/mirror" PYTHONUNBUFFERED=1)
[ -n "${PYTHON:-}" ] && make_env+=("PYTHON=$PYTHON")
if [ "$beside" = 1 ]; then
  ln -s mirror "$home/shared"
  unset 'make_env[0]'
fi
chown -R "$user:" "$home"

where="GPU_PLATFORM_MIRROR=$home/mirror, no ../shared"
[ "$beside" = 1 ] && where="../shared -> $home/mirror"
echo "test-as-user: make test as $user (uid $(id -u "$user"), passwordless sudo) in a clone of ${commit:0:12}, $where"
run_make_test() {
  local what=$1 start rc elapsed
  echo "test-as-user: $what make test; load before: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores; log: $log"
  start=$(date +%s)
  set +e
  # The inner shell expands $HOME: the user's own.
  # shellcheck disable=SC2016
  runuser -u "$user" -- env -i HOME="$home" USER="$user" LOGNAME="$user" SHELL=/bin/bash LANG=C.UTF-8 \
    PATH=/usr/local/bin:/usr/bin:/bin "${make_env[@]}" \
    bash -c 'cd "$HOME/gpu-platform" && make test' 2>&1 | tee -a "$log"
  rc=${PIPESTATUS[0]}
  set -e
  elapsed=$(($(date +%s) - start))
  echo "test-as-user: $what make test as $user exited $rc after $((elapsed / 60)) min $((elapsed % 60)) s" \
    "(load after: $(cut -d' ' -f1-3 /proc/loadavg))"
  return "$rc"
}

: > "$log"
run_make_test cold
if [ "$warm" = 1 ]; then
  run_make_test warm
fi
