"""A small stand-in for llama-server (and the router in front of it) on 127.0.0.1, for tests.

Real HTTP on a free port, the OpenAI streaming shape llama-server sends: `data: {chunk}` lines
with `choices[0].delta.content`, a last chunk with `usage.completion_tokens`, then `data: [DONE]`;
a plain chat.completion object when the request does not stream. `/health` answers like
llama-server's. Delays are parameters (seconds, kept tiny in tests); every request is bounded by
its token count, and `stop()` shuts the server down.

`router=True` answers as the LiteLLM proxy does (tests/real/test_router.py checks this against the
real proxy): the `x-litellm-model-group` header names the model group that served the request,
and so does every chunk's `model`; every `cloud_every`-th answer comes from `fallback_group`.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeLlamaServer:
    def __init__(
        self,
        *,
        api_key: str = "test-key",
        model: str = "fake-llama",
        first_token_delay: float = 0.0,
        token_interval: float = 0.0,
        router: bool = False,  # answer as the LiteLLM proxy does (see the module docstring)
        cloud_every: int = 0,  # with router: every n-th answer comes from the fallback group (0: never)
        fallback_group: str = "cloud-fallback",
        fail_every: int = 0,  # every n-th request answers 503 (0: never)
        max_tokens_cap: int = 1000,
    ) -> None:
        self.api_key = api_key
        self.model = model
        self.first_token_delay = first_token_delay
        self.token_interval = token_interval
        self.router = router
        self.cloud_every = cloud_every
        self.fallback_group = fallback_group
        self.fail_every = fail_every
        self.max_tokens_cap = max_tokens_cap
        self.requests: list[dict[str, Any]] = []
        self._count = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeLlamaServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeLlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next(self) -> int:
        with self._lock:
            self._count += 1
            return self._count

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path in ("/health", "/v1/health"):
                    self._json(200, {"status": "ok"})
                else:
                    self._json(404, {"error": {"code": 404, "message": "File Not Found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake._lock:
                    fake.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                if self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    self._json(401, {"error": {"code": 401, "message": "Invalid API Key"}})
                    return
                if self.path != "/v1/chat/completions":
                    self._json(404, {"error": {"code": 404, "message": "File Not Found"}})
                    return
                n = fake._next()
                if fake.fail_every and n % fake.fail_every == 0:
                    self._json(503, {"error": {"code": 503, "message": "Loading model"}})
                    return
                group = str(body.get("model") or "")
                if fake.cloud_every and n % fake.cloud_every == 0:
                    group = fake.fallback_group
                model = group if fake.router else fake.model
                tokens = min(int(body.get("max_tokens") or 16), fake.max_tokens_cap)
                usage = {"completion_tokens": tokens, "prompt_tokens": 12, "total_tokens": tokens + 12}
                extra = {"x-litellm-model-group": group} if fake.router else {}
                if not body.get("stream"):
                    time.sleep(fake.first_token_delay + fake.token_interval * max(0, tokens - 1))
                    text = "".join(f"t{i} " for i in range(tokens))
                    message = {"role": "assistant", "content": text}
                    choice = {"index": 0, "message": message, "finish_reason": "length"}
                    self._json(
                        200,
                        {"id": "chatcmpl-fake", "object": "chat.completion", "model": model,
                         "choices": [choice], "usage": usage},
                        extra,
                    )  # fmt: skip
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                time.sleep(fake.first_token_delay)
                for i in range(tokens):
                    if i:
                        time.sleep(fake.token_interval)
                    self._chunk({"model": model, "choices": [{"index": 0, "delta": {"content": f"t{i} "}}]})
                self._chunk(
                    {"model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}], "usage": usage}
                )
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

            def _chunk(self, payload: dict[str, Any]) -> None:
                payload = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", **payload}
                self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
                self.wfile.flush()

        return Handler
