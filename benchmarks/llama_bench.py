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
    served locally (router)     share >= --local-share-target  (default 0.9; needs --router-config)
    failed requests             0

"Served locally" is what the router says, not what the client asked for: the LiteLLM proxy names
the model group that answered in the `x-litellm-model-group` response header (the fallback group
when it fell back), and an answer counts as local when that group is one of the local groups of
the rendered router config (`--router-config`, the router-config ConfigMap's config.yaml): every
group that is not a fallback target. An answer without the header is not counted as local.

With `--direct-url` it also sends the same requests straight to llama-server and reports what the
router adds: p50/p95 of the extra time per request (pairs sent one after the other, so both see
the same load) and the ratio of aggregate tokens/s through the router to direct. With
`--router-pid` (Linux, the router on this machine) it also reads the CPU time the router's process
and its children (the proxy's workers) spent while it streamed the parallel run, from
/proc/<pid>/stat, and prints it per streamed chunk: the figure the router's sizing rule
(components/config/router_sizing.py) takes.

Only the standard library (PyYAML, if installed, for a YAML --router-config; JSON always works):
it runs on any machine that reaches the server. Exit code 0, or 1 with --strict when a target is
missed; 2 for bad arguments or a server that cannot be reached at all.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import ssl
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# The response header in which the LiteLLM proxy names the model group that served the request.
GROUP_HEADER = "x-litellm-model-group"

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
    chunks: int = 0  # streamed chunks that carried content (llama-server sends one per token)
    model: str = ""
    group: str = ""  # the router's x-litellm-model-group header; "" when absent (llama-server direct)
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
    overhead: Overhead | None = None

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


@dataclass(frozen=True)
class Endpoint:
    """Where requests go: a base URL, its bearer key, and what a non-default route needs."""

    url: str
    api_key: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)  # e.g. X-Api-Key through a proxy
    ssl_context: ssl.SSLContext | None = None  # e.g. a Kubernetes API server's CA and client cert


def stream_once(
    url: str | Endpoint, api_key: str = "", *, model: str, prompt: str, max_tokens: int, timeout: float
) -> Result:
    """One streaming chat completion, timed. Never raises: failures come back as Result(ok=False)."""
    endpoint = url if isinstance(url, Endpoint) else Endpoint(url, api_key)
    url, api_key = endpoint.url, endpoint.api_key
    parts = urlsplit(url)
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
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream", **endpoint.headers}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(
            parts.hostname or "127.0.0.1", parts.port, timeout=timeout, context=endpoint.ssl_context
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    start = time.perf_counter()
    result = Result(ok=False)
    counted = 0
    usage_tokens: int | None = None
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        result.group = resp.getheader(GROUP_HEADER) or ""
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
        result.chunks = counted
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
    url: str | Endpoint,
    api_key: str = "",
    *,
    model: str,
    prompt: str,
    max_tokens: int,
    clients: int,
    requests: int,
    timeout: float,
) -> tuple[list[Result], float]:
    """`requests` completions spread over `clients` threads; returns the results and the wall time."""
    endpoint = url if isinstance(url, Endpoint) else Endpoint(url, api_key)
    results: list[Result] = []
    lock = threading.Lock()
    remaining = [requests]

    def worker() -> None:
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            r = stream_once(endpoint, model=model, prompt=prompt, max_tokens=max_tokens, timeout=timeout)
            with lock:
                results.append(r)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, min(clients, requests)))]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout * requests + 5)
    return results, time.perf_counter() - start


@dataclass
class Overhead:
    """What the router adds to the same requests sent straight to llama-server."""

    added: list[float]  # per pair: router total - direct total (seconds)
    added_ttft: list[float]  # per pair: router TTFT - direct TTFT
    direct_tps: float  # aggregate tokens/s, `clients` in parallel, straight to llama-server
    router_tps: float  # the same through the router
    failed: int = 0
    router_cpu_s: float = math.nan  # CPU the router's processes used over the parallel run (--router-pid)
    router_chunks: int = 0  # the chunks it streamed in that run

    @property
    def cpu_per_chunk_s(self) -> float:
        return self.router_cpu_s / self.router_chunks if self.router_chunks else math.nan

    @property
    def throughput_ratio(self) -> float:
        return self.router_tps / self.direct_tps if self.direct_tps > 0 else math.nan


def aggregate_tps(results: Sequence[Result], wall: float) -> float:
    return sum(r.tokens for r in results if r.ok) / wall if wall > 0 else math.nan


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, utime + stime in clock ticks) of `pid`; None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; the fields after it are plain.
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])


def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by `pid` and every live descendant of it."""
    stats = {int(p.name): st for p in Path("/proc").iterdir() if p.name.isdigit() and (st := _proc_stat(int(p.name)))}
    if pid not in stats:
        raise ProcessLookupError(f"--router-pid {pid}: no such process")
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, (ppid, _) in stats.items() if ppid == parent and p not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(stats[p][1] for p in tree) / os.sysconf("SC_CLK_TCK")


def measure_overhead(
    direct: Endpoint,
    router: Endpoint,
    *,
    model: str,
    prompt: str,
    max_tokens: int,
    clients: int,
    requests: int,
    timeout: float,
    router_pid: int | None = None,
) -> Overhead:
    """`requests` pairs, one after the other (direct, then the router), for the added latency;
    then `requests` through each with `clients` in parallel for the throughput ratio, and with
    `router_pid` the router's CPU over its parallel run."""
    added: list[float] = []
    added_ttft: list[float] = []
    failed = 0
    for _ in range(requests):
        a = stream_once(direct, model=model, prompt=prompt, max_tokens=max_tokens, timeout=timeout)
        b = stream_once(router, model=model, prompt=prompt, max_tokens=max_tokens, timeout=timeout)
        if a.ok and b.ok and a.tokens == b.tokens:
            added.append(b.total - a.total)
            added_ttft.append(b.ttft - a.ttft)
        else:
            failed += 1
    rates = []
    cpu, chunks = math.nan, 0
    for endpoint in (direct, router):
        before = process_tree_cpu(router_pid) if router_pid and endpoint is router else math.nan
        results, wall = run(
            endpoint,
            model=model,
            prompt=prompt,
            max_tokens=max_tokens,
            clients=clients,
            requests=requests,
            timeout=timeout,
        )
        failed += sum(1 for r in results if not r.ok)
        rates.append(aggregate_tps(results, wall))
        if router_pid and endpoint is router:
            cpu, chunks = process_tree_cpu(router_pid) - before, sum(r.chunks for r in results)
    return Overhead(added, added_ttft, rates[0], rates[1], failed, cpu, chunks)


class RouterConfigError(ValueError):
    """The router config cannot be read or has no model groups."""


def load_router_config(path: str | Path) -> dict[str, Any]:
    """The rendered LiteLLM config.yaml (or the same as JSON)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise RouterConfigError(f"--router-config {path}: {exc.strerror}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        try:
            import yaml  # noqa: PLC0415 (optional: the benchmark is stdlib-only and runs where PyYAML may be missing)
        except ImportError:
            raise RouterConfigError(f"--router-config {path}: not JSON, and PyYAML is not installed") from None
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RouterConfigError(f"--router-config {path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise RouterConfigError(f"--router-config {path}: not a LiteLLM config mapping")
    return doc


def router_groups(config: Mapping[str, Any]) -> tuple[frozenset[str], frozenset[str]]:
    """(local, fallback) model group names of a LiteLLM config: a group some other group falls
    back to (`router_settings.fallbacks`) is a fallback group; every other group is local."""
    groups = {
        str(entry["model_name"])
        for entry in config.get("model_list") or []
        if isinstance(entry, Mapping) and entry.get("model_name")
    }
    if not groups:
        raise RouterConfigError("the router config has no model_list groups")
    fallback: set[str] = set()
    for rule in (config.get("router_settings") or {}).get("fallbacks") or []:
        if isinstance(rule, Mapping):
            for targets in rule.values():
                fallback.update(str(t) for t in targets or [])
    return frozenset(groups - fallback), frozenset(fallback)


def local_share(results: Sequence[Result], local_groups: frozenset[str]) -> float:
    """Share of `results` the router says a local group served; NaN for no results."""
    if not results:
        return math.nan
    return sum(1 for r in results if r.group in local_groups) / len(results)


def evaluate(results: list[Result], wall: float, args: argparse.Namespace, overhead: Overhead | None = None) -> Report:
    report = Report(results=results, wall=wall, overhead=overhead)
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
    if args.router_config:
        local_groups = router_groups(load_router_config(args.router_config))[0]
        share = local_share(good, local_groups)
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
    if overhead is not None:
        p50, p95 = percentile(overhead.added, 50), percentile(overhead.added, 95)
        target = args.overhead_target_ms / 1000
        report.rows.append(
            (
                "router adds per request",
                "-" if math.isnan(p50) else f"{p50 * 1000:.1f} ms",
                "-" if math.isnan(p95) else f"{p95 * 1000:.1f} ms",
                f"p50 <= {args.overhead_target_ms:g} ms",
                not math.isnan(p50) and p50 <= target,
            )
        )
        ratio = overhead.throughput_ratio
        report.rows.append(
            (
                "router/direct tokens/s",
                "-" if math.isnan(ratio) else f"{ratio:.2f}",
                "-",
                f">= {args.throughput_ratio_target:g}",
                not math.isnan(ratio) and ratio >= args.throughput_ratio_target,
            )
        )
        failed += overhead.failed
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
    if report.overhead is not None and report.overhead.router_chunks:
        o = report.overhead
        out.append(
            f"router CPU: {o.cpu_per_chunk_s * 1000:.3f} ms per streamed chunk "
            f"({o.router_cpu_s:.2f} s over {o.router_chunks} chunks at {o.router_tps:.0f} tokens/s, "
            f"pid {args.router_pid} and its children)"
        )
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
    p.add_argument(
        "--router-config",
        default="",
        help="the router's rendered LiteLLM config (config.yaml); answers whose x-litellm-model-group is "
        "one of its local groups count as served locally",
    )
    p.add_argument("--direct-url", default="", help="llama-server itself: measure what the router (--url) adds")
    p.add_argument("--direct-api-key", default=os.environ.get("LLAMA_API_KEY", ""), help="its key (env LLAMA_API_KEY)")
    p.add_argument("--overhead-target-ms", type=float, default=15.0, help="what the router may add at p50")
    p.add_argument("--throughput-ratio-target", type=float, default=0.9, help="router tokens/s over direct")
    p.add_argument(
        "--router-pid",
        type=int,
        default=0,
        help="with --direct-url, the router's process on this machine: print its CPU per streamed chunk",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--json", action="store_true", help="print the raw results as JSON after the table")
    args = p.parse_args(argv)
    for name in ("max_tokens", "clients", "requests"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("url", "direct_url"):
        value = getattr(args, name)
        if value and urlsplit(value).scheme not in ("http", "https"):
            p.error(f"--{name.replace('_', '-')} must be http(s)://host:port, got {value!r}")
    if args.router_pid and not args.direct_url:
        p.error("--router-pid needs --direct-url (the CPU is read over the overhead run)")
    if args.router_pid and not Path(f"/proc/{args.router_pid}/stat").exists():
        p.error(f"--router-pid {args.router_pid}: no such process on this machine")
    if args.router_config:
        try:
            router_groups(load_router_config(args.router_config))
        except RouterConfigError as exc:
            p.error(str(exc))
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
    overhead = None
    if args.direct_url:
        overhead = measure_overhead(
            Endpoint(args.direct_url, args.direct_api_key),
            Endpoint(args.url, args.api_key),
            model=args.model,
            prompt=args.prompt,
            max_tokens=args.max_tokens,
            clients=args.clients,
            requests=args.requests,
            timeout=args.timeout,
            router_pid=args.router_pid or None,
        )
    report = evaluate(results, wall, args, overhead)
    print(render(report, args))
    if args.json:
        print(json.dumps([r.__dict__ for r in results], default=str))
    if results and not any(r.ok for r in results) and all("Error" in r.error for r in results):
        return 2  # nothing answered at all: a wrong URL, not a slow server
    return 1 if args.strict and not report.passed else 0


if __name__ == "__main__":
    sys.exit(main())
