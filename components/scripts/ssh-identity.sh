#!/bin/sh
# Remove the workstation login key file that earlier versions of the llama block wrote.
#
# components/llama.py used to write the admin key to ~/$IDENTITY_FILE for the system ssh; it now
# logs in through the operator's SSH agent and writes nothing. Stacks deployed before that still
# hold the local command that wrote the file, and Pulumi runs its delete command, recorded in the
# state as `sh components/scripts/ssh-identity.sh remove`, when it drops that resource: this
# script must stay for that delete to succeed, and it takes the key off the machine.
#
#   ssh-identity.sh remove           delete ~/$IDENTITY_FILE
set -eu

: "${IDENTITY_FILE:?IDENTITY_FILE is required (a path under the home directory)}"
case "$IDENTITY_FILE" in
/* | *..*) echo "ssh-identity: IDENTITY_FILE must be relative to \$HOME, without '..'" >&2 && exit 2 ;;
*) ;;
esac

case "${1:-}" in
remove)
	rm -f "$HOME/$IDENTITY_FILE"
	echo "ssh-identity: removed ~/$IDENTITY_FILE"
	;;
*)
	echo "usage: ssh-identity.sh remove" >&2
	exit 2
	;;
esac
