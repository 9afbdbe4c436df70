"""The p3-local-brain exit checks (llama-bench-targets, router-local-share) against programmable
servers: the in-cluster routes through the API server's proxies, and the errors a user sees. The
same checks run against the real llama-server and LiteLLM proxy in tests/real/test_router.py."""

from __future__ import annotations

import json
from typing import Any

from components.phases import load_phases
from migrate.checks import OUT_EXIT_TARGETS, run_check
from tests.test_checks import Pki, Request, _ctx, _kubeconfig, _server_tls, pki, serve

__all__ = ["pki"]  # the fixture, shared with tests/test_checks.py
SERVICE = "/api/v1/namespaces/llm/services/llama:8080/proxy/v1/chat/completions"
PODS = "/api/v1/namespaces/llm/pods"


def _p3_targets() -> dict[str, Any]:
    (p3,) = [p for p in load_phases() if p.id == "p3-local-brain"]
    return {name: dict(v) for name, v in p3.exit_criteria.targets.items()}


def _stream(tokens: int) -> str:
    chunks = [{"model": "m", "choices": [{"index": 0, "delta": {"content": f"t{i} "}}]} for i in range(tokens)]
    chunks.append({"model": "m", "choices": [], "usage": {"completion_tokens": tokens}})
    return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"


def test_the_phase_file_names_both_checks_with_their_thresholds() -> None:
    (p3,) = [p for p in load_phases() if p.id == "p3-local-brain"]
    assert {"llama-bench-targets", "router-local-share"} <= set(p3.exit_criteria.checks)
    targets = _p3_targets()
    assert targets["llama-bench-targets"]["maxTokens"] == 100
    assert targets["llama-bench-targets"]["latencyP95Seconds"] == 5.0
    assert targets["llama-bench-targets"]["decodeTokensPerSecond"] == 40
    assert targets["router-local-share"]["minShare"] == 0.9
    # No performance or local-share line is left to a human.
    assert not [line for line in p3.exit_criteria.checklist if "token" in line or "%" in line]


def test_llama_bench_targets_reach_the_cluster_server_through_the_api_proxy(pki: Pki) -> None:
    def answer(req: Request) -> tuple[int, Any]:
        ok = req.headers.get("X-Api-Key") == "llama-key" and req.body["max_tokens"] == 100 and req.body["stream"]
        return (200, _stream(100)) if ok else (401, {"error": "Invalid API Key"})

    with serve({("POST", SERVICE): answer}, _server_tls(pki, True)) as api:
        outputs = {
            "kubeconfig": _kubeconfig(api.url, pki),
            "llamaCluster": {"url": "http://llama.llm.svc.cluster.local:8080"},
            "llamaClusterApiKey": "llama-key",
            OUT_EXIT_TARGETS: _p3_targets(),
        }
        result = run_check("llama-bench-targets", _ctx(outputs, timeout=30))
    assert result.ok, result.line
    assert result.detail.startswith("16 requests x 100 tokens, 4 clients: llamaCluster: ttft p95")
    assert len(api.requests) == 16 and {r.peer_cn for r in api.requests} == {"system:admin"}
    # The Authorization header is the API server's: the llama key travels in X-Api-Key only.
    assert not [r for r in api.requests if "Authorization" in r.headers]


def test_llama_bench_targets_fail_with_what_was_missed() -> None:
    with serve({("POST", "/v1/chat/completions"): lambda _r: (503, {"error": {"message": "Loading model"}})}) as llama:
        outputs = {
            "llamaWorkstation": {"url": llama.url},
            "llamaWorkstationApiKey": "k",
            OUT_EXIT_TARGETS: _p3_targets(),
        }
        result = run_check("llama-bench-targets", _ctx(outputs, timeout=30))
    assert not result.ok
    assert result.detail.startswith("llamaWorkstation: missed") and "HTTP 503" in result.detail


def test_the_checks_refuse_to_run_without_the_phase_thresholds() -> None:
    outputs = {"llamaWorkstation": {"url": "http://127.0.0.1:1"}, "llamaWorkstationApiKey": "k"}
    for name in ("llama-bench-targets", "router-local-share"):
        result = run_check(name, _ctx(outputs))
        assert not result.ok and f"{OUT_EXIT_TARGETS}.{name} is missing" in result.detail


def _metrics(local: float, cloud: float, failed: float) -> str:
    return (
        "# TYPE litellm_deployment_success_responses_total counter\n"
        f'litellm_deployment_success_responses_total{{model_group="local",api_base="x"}} {local}\n'
        f'litellm_deployment_success_responses_total{{model_group="cloud-fallback",api_base="y"}} {cloud}\n'
        f'litellm_proxy_failed_requests_metric_total{{requested_model="local-private"}} {failed}\n'
    )


def test_router_local_share_sums_every_router_pod_over_the_window(pki: Pki) -> None:
    scrapes = {"a": [_metrics(10, 0, 0), _metrics(28, 1, 0)], "b": [_metrics(5, 0, 0), _metrics(21, 0, 1)]}

    def pod(name: str) -> Any:
        return lambda req: (200, scrapes[name].pop(0)) if req.headers.get("x-litellm-api-key") == "sk-m" else (401, "")

    pods = {"items": [{"metadata": {"name": n}, "status": {"phase": "Running"}} for n in ("a", "b")]}
    routes = {("GET", PODS): lambda _r: (200, pods)}
    routes |= {("GET", f"{PODS}/{n}:4000/proxy/metrics"): pod(n) for n in ("a", "b")}
    slept: list[float] = []
    with serve(routes, _server_tls(pki, True)) as api:
        outputs = {
            "kubeconfig": _kubeconfig(api.url, pki),
            "router": {"url": "http://router.llm.svc.cluster.local:4000", "aliases": ["local", "local-private"]},
            "routerMasterKey": "sk-m",
            OUT_EXIT_TARGETS: {"router-local-share": {"minShare": 0.9, "windowSeconds": 240, "minRequests": 20}},
        }
        result = run_check("router-local-share", _ctx(outputs, timeout=300, sleep=slept.append))
    # In the window: local 18 + 16, cloud 1, one failed request: 34 of 36.
    assert result.ok, result.line
    assert result.detail.startswith("94% of 36 request(s) in the last 240s served by local groups")
    assert slept == [240]
    assert [r.query for r in api.requests if r.path == PODS] == [
        "labelSelector=app.kubernetes.io%2Fname%3Dllm-router"
    ] * 2


def test_router_local_share_fails_below_the_target_and_without_traffic() -> None:
    counts = [_metrics(10, 0, 0), _metrics(12, 18, 0), _metrics(0, 0, 0), _metrics(3, 0, 0)]
    with serve({("GET", "/metrics"): lambda _r: (200, counts.pop(0))}) as router:
        outputs = {
            "router": {"url": router.url, "aliases": ["local"]},
            "routerMasterKey": "sk-m",
            OUT_EXIT_TARGETS: {"router-local-share": {"minShare": 0.9, "windowSeconds": 5, "minRequests": 10}},
        }
        low = run_check("router-local-share", _ctx(outputs, timeout=30, sleep=lambda _s: None))
        idle = run_check("router-local-share", _ctx(outputs, timeout=30, sleep=lambda _s: None))
    assert not low.ok and low.detail.startswith("10% of 20 request(s)") and "target is at least 90%" in low.detail
    assert not idle.ok and "3 request(s) in the last 5s, fewer than the 10 needed" in idle.detail
