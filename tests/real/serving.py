"""llama-server started for real from what the program renders, against the tiny GGUF.

The recorded plan (tests/fakes/llama_recording.py, the real program's llama block) gives the
container's command line, probes and model environment; `Rendered.remapped` changes only what
cannot run as written on this machine, and nothing else:

- `/models/...` (the model volume) -> a temporary directory;
- `/app/llama-server` (the image's binary) -> the one built from source (scripts/build-llama-server.sh);
- `/scripts/fetch-model.sh` (the ConfigMap / upload) -> components/scripts/fetch-model.sh itself;
- `--host 0.0.0.0 --port 8080` -> 127.0.0.1 and a free port: other people run tests here;
- `--n-gpu-layers N` -> 0: this build has no GPU backend;
- MODEL_URL / MODEL_SHA256 -> the tiny model, served over HTTPS from 127.0.0.1 with a CA made here
  (curl finds it through CURL_CA_BUNDLE), so fetch-model.sh downloads and verifies it for real;
- LLAMA_API_KEY (a Secret / a pulumi_random password) -> a fixed test key.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from components.catalog.gguf import MODELS
from components.llm import llama
from migrate.harness import RecordedPlan
from tests.fakes import tiny_gguf
from tests.real.tools import ROOT, Process, free_port

FETCH_SCRIPT = ROOT / "components" / "scripts" / "fetch-model.sh"
IMAGE_BINARY = "/app/llama-server"
IMAGE_SCRIPT = "/scripts/fetch-model.sh"


class ModelHost:
    """The tiny GGUF over HTTPS on 127.0.0.1, as Hugging Face would serve a model."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory / "www"
        self.directory.mkdir()
        self.file_name = "tiny-llama.gguf"
        self.sha256 = tiny_gguf.write(self.directory / self.file_name)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=6))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256())
        )
        self.ca = directory / "ca.pem"
        self.ca.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file = directory / "key.pem"
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.ca, key_file)

        class Quiet(SimpleHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(self.directory)))
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}/{self.file_name}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Rendered:
    """One llama-server container as the program renders it."""

    label: str  # e.g. "prod cluster"
    served_name: str
    prepare: list[str]  # what runs before the server (the init container), or []
    argv: list[str]  # the server's command line, binary first
    env: dict[str, str]  # plain environment (the model's); the key comes from a Secret
    probe_paths: list[str] = field(default_factory=list)  # HTTP paths the probes GET on the `http` port
    healthcheck: list[str] = field(default_factory=list)  # Docker's CMD healthcheck

    def remapped(self, *, binary: Path, models: Path, host: ModelHost, key: str, port: int) -> Rendered:
        def one(arg: str) -> str:
            if arg == IMAGE_BINARY:
                return str(binary)
            if arg == IMAGE_SCRIPT:
                return str(FETCH_SCRIPT)
            if arg.startswith(llama.MODELS_DIR + "/"):
                return str(models / host.file_name)
            return arg

        def flags(argv: list[str]) -> list[str]:
            out = [one(a) for a in argv]
            for flag, value in (("--host", "127.0.0.1"), ("--port", str(port)), ("--n-gpu-layers", "0")):
                if flag in out:
                    out[out.index(flag) + 1] = value
            return out

        env = {
            **self.env,
            "MODEL_URL": host.url,
            "MODEL_SHA256": host.sha256,
            "MODEL_PATH": str(models / host.file_name),
            "LLAMA_API_KEY": key,
            "CURL_CA_BUNDLE": str(host.ca),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(models),
        }
        health = [a.replace(f":{llama.PORT}/", f":{port}/") for a in self.healthcheck]
        return Rendered(
            self.label, self.served_name, flags(self.prepare), flags(self.argv), env, self.probe_paths, health
        )

    def start(self, log: Path) -> Process:
        """Run the init container's command to completion (its output opens the log), then the server."""
        if self.prepare:
            done = subprocess.run(
                self.prepare, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120, check=False
            )
            log.write_bytes(done.stdout)
            assert done.returncode == 0, f"{self.label} init container failed:\n{done.stdout.decode()}"
        return Process(self.argv, self.env, log)


def _model_of(argv: list[str]) -> str:
    return argv[argv.index("--model") + 1].rsplit("/", 1)[-1]


def cluster_server(plan: RecordedPlan, stack: str) -> Rendered:
    pod = plan.named("llama-cluster-deployment").inputs["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    (server,) = pod["containers"]
    assert [p["containerPort"] for p in server["ports"] if p["name"] == "http"] == [llama.PORT]
    probes = [server[k]["httpGet"] for k in ("startupProbe", "readinessProbe", "livenessProbe")]
    assert all(p["port"] == "http" for p in probes)
    env = {e["name"]: e["value"] for e in init["env"]}
    args = list(server["args"])
    return Rendered(
        f"{stack} cluster",
        args[args.index("--alias") + 1],
        [*init["command"]],
        [IMAGE_BINARY, *args],
        env,
        [p["path"] for p in probes],
    )


def workstation_server(plan: RecordedPlan, stack: str) -> Rendered:
    container = plan.named("llama-workstation-container").inputs
    command = list(container["command"])
    # The container's envs are secret in the plan (they carry the key); their model part is
    # components/llm/llama.py's model_env for the model the command line names.
    (model,) = [m for m in MODELS.values() if m.file_name == _model_of(command)]
    return Rendered(
        f"{stack} workstation",
        command[command.index("--alias") + 1],
        [],
        [*container["entrypoints"], *command],
        llama.model_env(model),
        [],
        list(container["healthcheck"]["tests"][1:]),
    )


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def start_llama(rendered: Rendered, *, binary: Path, tmp: Path, host: ModelHost, key: str) -> tuple[Process, str]:
    """Start `rendered`, remapped, and return the process and its base URL (not yet waited for)."""
    port = free_port()
    models = tmp / "models"
    models.mkdir(exist_ok=True)
    run = rendered.remapped(binary=binary, models=models, host=host, key=key, port=port)
    return run.start(tmp / f"{rendered.label.replace(' ', '-')}.log"), f"http://127.0.0.1:{port}"
