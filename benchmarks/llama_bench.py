#!/usr/bin/env python3
"""Measure a running llama server (or the router in front of it) against the p3-local-brain targets.

    python benchmarks/llama_bench.py --url http://127.0.0.1:8080 --api-key "$LLAMA_API_KEY"

Sends streaming `/v1/chat/completions` requests (OpenAI API, as llama-server and the LiteLLM router
serve it) from N parallel clients and times each one: time to the first token, the whole answer,
and the decode rate (tokens after the first, over the time after the first). Prints p50/p95 and a
PASS/FAIL table against the targets:

    time to first token         p95 <= --ttft-target s          (default 1.0)
    answer of --max-tokens      p95 <= --latency-target s       (default 5.0, for 100 tokens)
    decode tokens/s per request p50 >= --tps-target             (default 40; 60 once tuned)
    served locally (router)     share >= --local-share-target  (default 0.9; needs --cloud-model)
    failed requests             0

Only the standard library: it runs on any machine that reaches the server. Exit code 0, or 1 with
--strict when a target is missed; 2 for bad arguments or a server that cannot be reached at all.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DEFAULT_PROMPT = (
    "Write a detailed, step by step explanation of how a hash table handles collisions. "
    "Keep going until you are stopped."
)


@dataclass
class Result:
    ok: bool
    ttft: float = math.nan  # seconds from sending to the first content token
    total: float = math.nan  # seconds from sending to the end of the stream
    tokens: int = 0
    model: str = ""
    error: str = ""

    @property
    def decode_tps(self) -> float:
        decode_time = self.total - self.ttft
        if self.tokens < 2 or not decode_time > 0:
            return math.nan
        return (self.tokens - 1) / decode_time


@dataclass
class Target:
    name: str
    stat: str  # which figure is compared: p50, p95 or share
    value: float
    higher_is_better: bool
    unit: str = ""


@dataclass
class Report:
    results: list[Result]
    wall: float
    rows: list[tuple[str, str, str, str, bool]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(ok for *_, ok in self.rows)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    clean = sorted(v for v in values if not math.isnan(v))
    if not clean:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(clean)))
    return clean[rank - 1]


def stream_once(url: str, api_key: str, *, model: str, prompt: str, max_tokens: int, timeout: float) -> Result:
    """One streaming chat completion, timed. Never raises: failures come back as Result(ok=False)."""
    parts = urlsplit(url)
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    base = parts.path.rstrip("/")
    path = f"{base}/chat/completions" if base.endswith("/v1") else f"{base}/v1/chat/completions"
    body = json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": 0,
        }
    )
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    conn = conn_cls(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    start = time.perf_counter()
    result = Result(ok=False)
    counted = 0
    usage_tokens: int | None = None
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        if resp.status != 200:
            detail = resp.read(300).decode("utf-8", "replace").strip()
            result.error = f"HTTP {resp.status}: {detail}"
            return result
        while True:
            raw = resp.readline()
            if not raw:
                break
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            try:
                chunk = json.loads(data)
            except json.JSONDecodeError:
                result.error = f"not JSON in the stream: {data[:80]}"
                return result
            result.model = chunk.get("model") or result.model
            usage = chunk.get("usage")
            if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
                usage_tokens = usage["completion_tokens"]
            for choice in chunk.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    if counted == 0:
                        result.ttft = time.perf_counter() - start
                    counted += 1
        result.total = time.perf_counter() - start
        # The server's own count when it sends one; a streamed chunk may carry more than a token.
        result.tokens = usage_tokens if usage_tokens is not None else counted
        result.ok = counted > 0
        if not result.ok:
            result.error = "the stream ended without a token"
        return result
    except (OSError, http.client.HTTPException) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        return result
    finally:
        conn.close()


def run(
    url: str,
    api_key: str,
    *,
    model: str,
    prompt: str,
    max_tokens: int,
    clients: int,
    requests: int,
    timeout: float,
) -> tuple[list[Result], float]:
    """`requests` completions spread over `clients` threads; returns the results and the wall time."""
    results: list[Result] = []
    lock = threading.Lock()
    remaining = [requests]

    def worker() -> None:
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            r = stream_once(url, api_key, model=model, prompt=prompt, max_tokens=max_tokens, timeout=timeout)
            with lock:
                results.append(r)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, min(clients, requests)))]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout * requests + 5)
    return results, time.perf_counter() - start


def evaluate(results: list[Result], wall: float, args: argparse.Namespace) -> Report:
    report = Report(results=results, wall=wall)
    good = [r for r in results if r.ok]

    def fmt(v: float, unit: str) -> str:
        return "-" if math.isnan(v) else f"{v:.2f}{unit}"

    def row(name: str, values: list[float], target: Target) -> None:
        p50, p95 = percentile(values, 50), percentile(values, 95)
        figure = p95 if target.stat == "p95" else p50
        ok = not math.isnan(figure) and (figure >= target.value if target.higher_is_better else figure <= target.value)
        sign = ">=" if target.higher_is_better else "<="
        report.rows.append(
            (
                name,
                fmt(p50, target.unit),
                fmt(p95, target.unit),
                f"{target.stat} {sign} {target.value:g}{target.unit}",
                ok,
            )
        )

    row("time to first token", [r.ttft for r in good], Target("ttft", "p95", args.ttft_target, False, " s"))
    row(
        f"answer of {args.max_tokens} tokens",
        [r.total for r in good],
        Target("latency", "p95", args.latency_target, False, " s"),
    )
    row("decode tokens/s per request", [r.decode_tps for r in good], Target("tps", "p50", args.tps_target, True))
    if args.cloud_model:
        local = sum(1 for r in good if args.cloud_model not in r.model)
        share = local / len(good) if good else math.nan
        ok = not math.isnan(share) and share >= args.local_share_target
        report.rows.append(
            (
                "served locally",
                "-" if math.isnan(share) else f"{share:.0%}",
                "-",
                f">= {args.local_share_target:.0%}",
                ok,
            )
        )
    failed = len(results) - len(good)
    report.rows.append(("failed requests", str(failed), "-", "0", failed == 0 and len(results) > 0))
    return report


def render(report: Report, args: argparse.Namespace) -> str:
    tokens = sum(r.tokens for r in report.results if r.ok)
    header = (
        f"{args.url}  model={args.model}  clients={args.clients}  requests={len(report.results)}  "
        f"wall={report.wall:.2f} s  aggregate={tokens / report.wall if report.wall > 0 else 0:.1f} tokens/s"
    )
    cols = ("metric", "p50", "p95", "target", "result")
    table = [(name, p50, p95, target, "PASS" if ok else "FAIL") for name, p50, p95, target, ok in report.rows]
    widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(cols)]
    line = "  ".join("-" * w for w in widths)
    out = [header, "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)), line]
    out += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in table]
    errors = sorted({r.error for r in report.results if not r.ok})
    out += [f"error: {e}" for e in errors[:5]]
    out.append("all targets met" if report.passed else "targets missed")
    return "\n".join(out)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8080 (a /v1 suffix is fine)")
    p.add_argument("--api-key", default=os.environ.get("LLAMA_API_KEY", ""), help="bearer key (env LLAMA_API_KEY)")
    p.add_argument("--model", default="local", help="model name to ask for (llama-server accepts any)")
    p.add_argument("--prompt", default=DEFAULT_PROMPT)
    p.add_argument("--max-tokens", type=int, default=100)
    p.add_argument("--clients", type=int, default=4, help="parallel clients")
    p.add_argument("--requests", type=int, default=16, help="requests in all")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    p.add_argument("--ttft-target", type=float, default=1.0)
    p.add_argument("--latency-target", type=float, default=5.0)
    p.add_argument("--tps-target", type=float, default=40.0, help="40 for the 70B model; 60 once tuned")
    p.add_argument("--local-share-target", type=float, default=0.9)
    p.add_argument("--cloud-model", default="", help="answers whose model contains this count as cloud")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--json", action="store_true", help="print the raw results as JSON after the table")
    args = p.parse_args(argv)
    for name in ("max_tokens", "clients", "requests"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if urlsplit(args.url).scheme not in ("http", "https"):
        p.error(f"--url must be http(s)://host:port, got {args.url!r}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results, wall = run(
        args.url,
        args.api_key,
        model=args.model,
        prompt=args.prompt,
        max_tokens=args.max_tokens,
        clients=args.clients,
        requests=args.requests,
        timeout=args.timeout,
    )
    report = evaluate(results, wall, args)
    print(render(report, args))
    if args.json:
        print(json.dumps([r.__dict__ for r in results], default=str))
    if results and not any(r.ok for r in results) and all("Error" in r.error for r in results):
        return 2  # nothing answered at all: a wrong URL, not a slow server
    return 1 if args.strict and not report.passed else 0


if __name__ == "__main__":
    sys.exit(main())
