"""The p3-local-brain exit checks (llama-bench-targets, router-local-share) against programmable
servers: the in-cluster routes through the API server's proxies, and the errors a user sees. The
same checks run against the real llama-server and LiteLLM proxy in tests/real/test_router.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from components.config.phases import ExitCriteria, LlamaBenchThresholds, RouterLocalShareThresholds, load_phases
from migrate.checks import run_check
from tests.test_checks import Pki, Request, _ctx, _kubeconfig, _server_tls, pki, serve

__all__ = ["pki"]  # the fixture, shared with tests/test_checks.py
SERVICE = "/api/v1/namespaces/llm/services/llama:8080/proxy/v1/chat/completions"
PODS = "/api/v1/namespaces/llm/pods"


def _p3_thresholds() -> dict[str, Any]:
    (p3,) = [p for p in load_phases() if p.id == "p3-local-brain"]
    return {name: p3.exit_criteria.thresholds_for(name) for name in p3.exit_criteria.measurements}


def _stream(tokens: int) -> str:
    chunks = [{"model": "m", "choices": [{"index": 0, "delta": {"content": f"t{i} "}}]} for i in range(tokens)]
    chunks.append({"model": "m", "choices": [], "usage": {"completion_tokens": tokens}})
    return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"


def test_the_phase_file_names_both_checks_with_their_thresholds() -> None:
    (p3,) = [p for p in load_phases() if p.id == "p3-local-brain"]
    assert {"llama-bench-targets", "router-local-share"} <= set(p3.exit_criteria.checks)
    given = p3.exit_criteria.thresholds.model_dump(by_alias=True, exclude_none=True)
    assert given["llama-bench-targets"]["maxTokens"] == 100
    assert given["llama-bench-targets"]["latencyP95Seconds"] == 5.0
    assert given["llama-bench-targets"]["decodeTokensPerSecond"] == 40
    assert given["router-local-share"]["minShare"] == 0.9
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
        }
        result = run_check("llama-bench-targets", _ctx(outputs, timeout=30, thresholds=_p3_thresholds()))
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
        }
        result = run_check("llama-bench-targets", _ctx(outputs, timeout=30, thresholds=_p3_thresholds()))
    assert not result.ok
    assert result.detail.startswith("llamaWorkstation: missed") and "HTTP 503" in result.detail


def test_the_thresholds_are_checked_when_the_phase_file_is_read() -> None:
    checks = ("llama-bench-targets", "router-local-share")
    with pytest.raises(ValidationError, match="maxTokenz"):
        ExitCriteria.model_validate(
            {"checklist": ["x"], "checks": checks, "thresholds": {"llama-bench-targets": {"maxTokenz": 5}}}
        )
    with pytest.raises(ValidationError, match="minShare"):
        ExitCriteria.model_validate(
            {"checklist": ["x"], "checks": checks, "thresholds": {"router-local-share": {"minShare": 1.5}}}
        )
    # Without an entry a check runs with its model's defaults: p3's own targets.
    bare = ExitCriteria.model_validate({"checklist": ["x"], "checks": checks})
    assert bare.thresholds_for("llama-bench-targets") == LlamaBenchThresholds()
    assert bare.thresholds_for("router-local-share") == RouterLocalShareThresholds()
    assert _p3_thresholds() == {
        "llama-bench-targets": LlamaBenchThresholds(),
        "router-local-share": RouterLocalShareThresholds(),
    }


def test_router_local_share_refuses_a_window_longer_than_its_deadline() -> None:
    outputs = {"router": {"url": "http://127.0.0.1:1", "aliases": ["local"]}, "routerMasterKey": "sk-m"}
    result = run_check("router-local-share", _ctx(outputs, timeout=30))  # the default window: 240 s
    assert not result.ok and "the window (240s) is longer than the check's deadline (30s)" in result.detail


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
        }
        ctx = _ctx(outputs, timeout=300, sleep=slept.append, thresholds=_p3_thresholds())
        result = run_check("router-local-share", ctx)
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
        }
        limits = {"router-local-share": RouterLocalShareThresholds(min_share=0.9, window_seconds=5, min_requests=10)}
        low = run_check("router-local-share", _ctx(outputs, timeout=30, sleep=lambda _s: None, thresholds=limits))
        idle = run_check("router-local-share", _ctx(outputs, timeout=30, sleep=lambda _s: None, thresholds=limits))
    assert not low.ok and low.detail.startswith("10% of 20 request(s)") and "target is at least 90%" in low.detail
    assert not idle.ok and "3 request(s) in the last 5s, fewer than the 10 needed" in idle.detail
