"""Servers and processes the tests start on this machine, started and stopped one way."""

from __future__ import annotations

import os
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@contextmanager
def serve_http(
    handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None
) -> Iterator[ThreadingHTTPServer]:
    """`handler` on 127.0.0.1 at an ephemeral port, over TLS when given a context, until the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if tls is not None:
        # Each connection's handshake in its own handler thread, not serially in accept().
        server.socket = tls.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def port(server: ThreadingHTTPServer) -> int:
    return int(server.server_address[1])


def stop(proc: subprocess.Popen[bytes] | None, timeout: float = 10) -> None:
    """Terminate `proc` and reap it, killing it when it does not exit within `timeout` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def as_root(needs: str) -> list[str]:
    """The prefix that runs a command as root, for `needs` (a namespace): none for root; `sudo -n` for
    anyone else (a GitHub runner's user has passwordless sudo), failing the test with the fix when
    sudo would ask for a password. Ubuntu 24.04 (GitHub's ubuntu-24.04) denies what these need in an
    unprivileged user namespace through AppArmor (actions/runner-images#10443), so `unshare -r` is no
    alternative there."""
    if os.geteuid() == 0:
        return []
    probe = subprocess.run(["sudo", "-n", "true"], capture_output=True, text=True, timeout=30, check=False)
    if probe.returncode != 0:
        pytest.fail(
            f"{needs} needs root: run the tests as root or give this user passwordless sudo "
            f"(`sudo -n true` said: {probe.stderr.strip() or probe.returncode})"
        )
    return ["sudo", "-n", "--"]


def as_caller() -> list[str]:
    """After `as_root()`: back to this user's uid and gid (util-linux's setpriv); nothing for root."""
    if os.geteuid() == 0:
        return []
    return ["setpriv", f"--reuid={os.getuid()}", f"--regid={os.getgid()}", "--clear-groups"]
