"""A minimal RESP2 client: the tests read Redis byte for byte without redis-cli (which the script uses)."""

from __future__ import annotations

import socket
from typing import Any


class RedisError(Exception):
    pass


class Resp:
    def __init__(self, port: int, password: str | None = None, db: int = 0) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self._buf = self._sock.makefile("rb")
        if password:
            self.call("AUTH", password)
        if db:
            self.call("SELECT", db)

    def __enter__(self) -> Resp:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._buf.close()
        self._sock.close()

    def call(self, *args: Any) -> Any:
        parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        out = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        self._sock.sendall(out)
        return self._read()

    def _read(self) -> Any:
        line = self._buf.readline()
        if not line:
            raise OSError("connection closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RedisError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self._buf.read(n + 2)
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise OSError(f"unexpected reply {line!r}")
