#!/bin/sh
# Keep the SSH login key for the workstation's Docker daemon where the system `ssh` can use it.
#
# Docker's ssh:// transport runs the system ssh client, which cannot take a key from Pulumi; so the
# llama block (components/llama.py) writes the admin key it holds to a file readable by the
# operator alone, and points ssh at it with IdentityFile. Runs where Pulumi runs.
#
#   ssh-identity.sh write  < key     write IDENTITY_FILE (relative to $HOME) with mode 0600
#   ssh-identity.sh remove           delete it
# The key comes on standard input, never in the environment or the arguments.
set -eu

: "${IDENTITY_FILE:?IDENTITY_FILE is required (a path under the home directory)}"
case "$IDENTITY_FILE" in
/* | *..*) echo "ssh-identity: IDENTITY_FILE must be relative to \$HOME, without '..'" >&2 && exit 2 ;;
*) ;;
esac
path="$HOME/$IDENTITY_FILE"

case "${1:-}" in
write)
	umask 077
	mkdir -p "$(dirname "$path")"
	tmp="$path.tmp.$$"
	cat >"$tmp"
	if ! grep -q "PRIVATE KEY" "$tmp"; then
		rm -f "$tmp"
		echo "ssh-identity: standard input is not a private key" >&2
		exit 2
	fi
	chmod 600 "$tmp"
	mv "$tmp" "$path"
	echo "ssh-identity: wrote ~/$IDENTITY_FILE"
	;;
remove)
	rm -f "$path"
	echo "ssh-identity: removed ~/$IDENTITY_FILE"
	;;
*)
	echo "usage: ssh-identity.sh write|remove" >&2
	exit 2
	;;
esac
