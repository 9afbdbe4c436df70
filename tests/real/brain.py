"""The p3 brain for real: llama-server (prod cluster command line) and the LiteLLM proxy as rendered.

The LiteLLM proxy at the router image's version (scripts/litellm-venv.sh) with the ConfigMap's
config.yaml and the Deployment's command line and environment from the recorded prod plan, in
front of the real llama-server (tests/real/serving.py) and a stand-in for the cloud (an
OpenAI-compatible stub on 127.0.0.1). tests/real/test_router.py runs its tests against it and
tests/real/router_bench.py the router benchmark.

Remapped to run here, nothing else: the local group's api_base (the Service's DNS name -> the
llama-server's 127.0.0.1 port), the config path and port, `--host 127.0.0.1`, OPENAI_API_BASE
(where LiteLLM's `openai/` provider sends the cloud model: the stub instead of api.openai.com) and
the keys the Secrets hold.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from components.llm.router import CLOUD_GROUP, ENV_CLOUD_KEY, ENV_LOCAL_KEY, ENV_MASTER_KEY
from tests.fakes.llama_recording import brain
from tests.fakes.llama_server import FakeLlamaServer
from tests.real import serving
from tests.real.tools import Process, free_port, litellm_python, llama_server_binary, read_only_root

LLAMA_KEY = "test-llama-key-0123456789"
MASTER_KEY = "sk-test-master-key"
CLOUD_KEY = "test-cloud-key"
CONFIG_AT = "/mnt"  # where the config is mounted read-only in the router's mount namespace


@dataclass
class Brain:
    llama: Process
    llama_url: str
    cloud: FakeLlamaServer
    router: Process
    router_url: str
    config: dict[str, Any]
    config_path: Path  # the rendered config.yaml, as the ConfigMap holds it
    served_name: str


def ask(
    url: str, model: str, *, stream: bool, max_tokens: int = 8
) -> tuple[requests.Response, list[dict[str, Any]], float]:
    started = time.monotonic()
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens}
    if stream:
        body["stream"] = True
    response = requests.post(
        f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER_KEY}"}, json=body, timeout=60
    )
    chunks = [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data: {")]
    return response, chunks, time.monotonic() - started


@contextmanager
def running_brain(tmp: Path, stack: str = "prod") -> Iterator[Brain]:
    """`stack`'s llama-server, the cloud stub and the router, up and answering; all stopped on exit."""
    binary, python = llama_server_binary(), litellm_python()
    host = serving.ModelHost(tmp)
    plan = brain(stack)
    spec = serving.cluster_server(plan, stack)
    llama, llama_url = serving.start_llama(spec, binary=binary, tmp=tmp, host=host, key=LLAMA_KEY)
    cloud = FakeLlamaServer(api_key=CLOUD_KEY, model="gpt-4o-mini").start()
    router = None
    try:
        llama.wait_http(f"{llama_url}/health", 60, lambda r: r.status_code == 200)
        text = plan.named("llm-router-config").inputs["data"]["config.yaml"]
        (tmp / "rendered.yaml").write_text(text)
        config = yaml.safe_load(text)
        for entry in config["model_list"]:
            if entry["model_name"] != CLOUD_GROUP:
                entry["litellm_params"]["api_base"] = f"{llama_url}/v1"
        # The pod's filesystem: a read-only root, the config read-only at CONFIG_AT, /tmp its emptyDir.
        etc, scratch = tmp / "pod-etc", tmp / "pod-tmp"
        (etc / "app").mkdir(parents=True)
        scratch.mkdir()
        (etc / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        (container,) = plan.named("llm-router-deployment").inputs["spec"]["template"]["spec"]["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        args = [f"{CONFIG_AT}/config.yaml" if a.endswith("config.yaml") else a for a in container["args"]]
        port = free_port()
        args[args.index("--port") + 1] = str(port)
        secrets = {ENV_MASTER_KEY: MASTER_KEY, ENV_LOCAL_KEY: LLAMA_KEY, ENV_CLOUD_KEY: CLOUD_KEY}
        env = {e["name"]: e["value"] if "value" in e else secrets[e["name"]] for e in container["env"]}
        # HOME: the image's (/app), on its read-only root.
        env |= {"OPENAI_API_BASE": f"{cloud.url}/v1", "PATH": os.environ["PATH"], "HOME": f"{CONFIG_AT}/app"}
        argv = [str(python.parent / "litellm"), *args, "--host", "127.0.0.1"]
        router = Process(
            read_only_root(
                argv, env=env, scratch=scratch, config_dir=etc, config_at=CONFIG_AT, keep=[python.parent.parent]
            ),
            env,
            tmp / "litellm.log",
        )
        router_url = f"http://127.0.0.1:{port}"
        # The probes the Deployment declares: startup and liveness, then readiness.
        for probe in ("startupProbe", "readinessProbe"):
            router.wait_http(router_url + container[probe]["httpGet"]["path"], 180, lambda r: r.status_code == 200)
        ask(router_url, "local", stream=False)  # the first call sets up clients; not timed
        yield Brain(llama, llama_url, cloud, router, router_url, config, tmp / "rendered.yaml", spec.served_name)
    finally:
        if router is not None:
            router.stop()
        llama.stop()
        cloud.stop()
        host.stop()
