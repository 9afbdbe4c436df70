"""Images by digest: the pins, the reviewed pending list, what the plan says, and `make digests`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import requests

from components.catalog import versions
from components.catalog.images import ImagePin, digest_pending_reason, pinned_images
from components.catalog.services import own_image_names
from components.config.phases import phase_ids
from migrate import digests, harness
from migrate.cli import main
from migrate.harness import record
from migrate.plan import images
from migrate.policy_runner import POLICY_DIR, evaluate, read_policy_config
from migrate.scan import every_plan
from tests.conftest import recorded
from tests.local import port, serve_http

ROOT = Path(__file__).resolve().parent.parent
DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32


def _prod_plans() -> Iterator[Any]:
    # A phase that refuses to plan fails these tests (scan.every_plan): its images would go unchecked.
    yield from every_plan(("prod",), recorded)


# --- the pins ----------------------------------------------------------------------------------


def test_every_pin_has_a_digest_or_a_reason_and_never_both() -> None:
    pins = pinned_images()
    assert "LLAMA_CPP_SERVER_IMAGE" in pins and "LITELLM_IMAGE" in pins
    # A digest ends the wait: the same reference with one is no longer pending, whatever the list says.
    llama = pins["LLAMA_CPP_SERVER_IMAGE"]
    assert llama.pending == versions.DIGEST_PENDING["ghcr.io/ggml-org/llama.cpp"]
    assert ImagePin.parse(f"{llama.ref}@{DIGEST}").pending is None
    for name, pin in pins.items():
        reason = digest_pending_reason(pin.repository)
        if pin.digest:
            assert pin.repository not in versions.DIGEST_PENDING, f"{name} has a digest; drop its pending entry"
        else:
            assert reason, f"{name} ({pin.ref}) has no digest and no reason in versions.DIGEST_PENDING"


def test_every_pending_entry_is_used_and_reasoned() -> None:
    repositories = {p.repository for p in pinned_images().values()}
    repositories |= {
        ImagePin.parse(u.ref).repository
        for stack in ("dev", "prod")
        for u in images(recorded(stack, phase_ids()[-2]))
        if not u.ref.startswith("sha256:")
    }
    for key, reason in versions.DIGEST_PENDING.items():
        assert len(reason) > 40, f"{key}: say why it has no digest yet"
        covered = [r for r in repositories if r == key or (key.endswith("/") and r.startswith(key))]
        assert covered, f"DIGEST_PENDING[{key!r}] matches no image this project runs: remove it"


def test_the_prod_policy_config_lists_exactly_the_pending_repositories() -> None:
    prod = json.loads((POLICY_DIR / "config.prod.json").read_text())["image-digest-pinned"]
    assert prod["enforcementLevel"] == "mandatory"
    assert prod["digestPending"] == sorted(versions.DIGEST_PENDING)
    # dev keeps the policy advisory: a tag-only image off the list is reported, nothing is blocked.
    dev = json.loads((POLICY_DIR / "config.dev.json").read_text())["image-digest-pinned"]
    assert "enforcementLevel" not in dev and dev["digestPending"] == prod["digestPending"]


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("docker.io/library/redis:8.6.3", ImagePin("docker.io/library/redis", "8.6.3", None)),
        (f"registry.example.com:5000/a/b:1.0@{DIGEST}", ImagePin("registry.example.com:5000/a/b", "1.0", DIGEST)),
    ],
)
def test_image_pins_parse_and_print_back(ref: str, expected: ImagePin) -> None:
    assert ImagePin.parse(ref) == expected and expected.ref == ref


@pytest.mark.parametrize(
    ("ref", "message"),
    [("registry.example.com:5000/a/b", "has no tag"), ("a/b:1@sha256:12", "is not a sha256 digest")],
)
def test_bad_image_references_are_refused_by_name(ref: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        ImagePin.parse(ref)
    assert ref in str(err.value)


# --- every prod plan ---------------------------------------------------------------------------


def test_every_image_of_every_prod_plan_has_a_digest_or_says_why_not() -> None:
    seen = 0
    for plan in _prod_plans():
        for use in images(plan):
            seen += 1
            assert use.digest or use.pending_reason, f"prod {plan.phase}: {use.ref} ({use.resources}) has no digest"
    assert seen > 10


def test_the_prod_policy_refuses_a_tag_only_image_that_is_not_on_the_reviewed_list() -> None:
    plan = recorded("prod", "p3-local-brain")
    config = read_policy_config(POLICY_DIR / "config.prod.json")
    assert not [v for v in evaluate(plan, config) if v.policy == "image-digest-pinned"]
    pending = [p for p in config["image-digest-pinned"]["digestPending"] if p != "ghcr.io/berriai/litellm-non_root"]
    config["image-digest-pinned"] = {**config["image-digest-pinned"], "digestPending": pending}
    found = [v for v in evaluate(plan, config) if v.policy == "image-digest-pinned"]
    assert found and {v.level for v in found} == {"mandatory"}
    assert all(versions.LITELLM_IMAGE in v.message for v in found)


def test_plan_json_lists_the_pending_images_with_their_reasons(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The session's recording of the same plan: what the CLI prints is under test, not the harness.
    monkeypatch.setattr(harness, "record", lambda stack, phase=None, **_: recorded(stack, phase))
    assert main(["plan", "--stack", "prod", "--phase", "p3-local-brain", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    pending = {p["image"]: p["reason"] for p in doc["digestPending"]}
    assert pending[versions.LITELLM_IMAGE] == versions.DIGEST_PENDING["ghcr.io/berriai/litellm-non_root"]
    assert pending[versions.LLAMA_CPP_SERVER_IMAGE] == versions.DIGEST_PENDING["ghcr.io/ggml-org/llama.cpp"]


# --- make digests, against a registry on 127.0.0.1 ------------------------------------------------


class _Registry(BaseHTTPRequestHandler):
    """The distribution API as Docker Hub and GHCR answer it: 401 with a bearer challenge, a token
    endpoint, then the manifest's digest in Docker-Content-Digest."""

    tags: dict[str, str] = {"library/redis:8.6.3": DIGEST, "org/app:1.0": OTHER}
    accepts: list[str] = []

    def log_message(self, *_args: Any) -> None:
        pass

    def do_GET(self) -> None:  # the token endpoint
        body = json.dumps({"token": "t0k3n"}).encode()
        self.send_response(200 if self.path.startswith("/token?") and "scope=repository" in self.path else 400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        host = f"http://127.0.0.1:{self.server.server_address[1]}"
        if self.headers.get("Authorization") != "Bearer t0k3n":
            self.send_response(401)
            self.send_header("WWW-Authenticate", f'Bearer realm="{host}/token",service="test"')
            self.end_headers()
            return
        type(self).accepts.append(self.headers.get("Accept", ""))
        name, _, tag = self.path.removeprefix("/v2/").partition("/manifests/")
        digest = self.tags.get(f"{name}:{tag}")
        self.send_response(200 if digest else 404)
        if digest:
            self.send_header("Docker-Content-Digest", digest)
        self.end_headers()


@pytest.fixture
def registry() -> Iterator[str]:
    with serve_http(_Registry) as server:
        yield f"http://127.0.0.1:{port(server)}"


def test_digests_resolves_moved_tags_and_refusals(registry: str) -> None:
    pins = {
        "REDIS_IMAGE": ImagePin.parse("docker.io/library/redis:8.6.3"),
        "APP_IMAGE": ImagePin.parse(f"registry.example.com/org/app:1.0@{DIGEST}"),
        "GONE_IMAGE": ImagePin.parse("registry.example.com/org/gone:2.0"),
    }
    with requests.Session() as session:
        outcomes = {o.name: o for o in digests.check_all(pins, session, base_url=lambda _host: registry)}
    assert outcomes["REDIS_IMAGE"].digest == DIGEST and not outcomes["REDIS_IMAGE"].problem
    assert outcomes["APP_IMAGE"].moved and "moved" in outcomes["APP_IMAGE"].problem
    assert outcomes["GONE_IMAGE"].digest is None and "404" in outcomes["GONE_IMAGE"].problem
    # The index media types are asked for first: the digest every architecture shares.
    assert _Registry.accepts and all(a.startswith("application/vnd.oci.image.index.v1+json") for a in _Registry.accepts)

    text = 'REDIS_IMAGE: Final = "docker.io/library/redis:8.6.3"\n'
    written, skipped = digests.write_digests(text, list(outcomes.values()))
    assert written == f'REDIS_IMAGE: Final = "docker.io/library/redis:8.6.3@{DIGEST}"\n'
    assert skipped == []


def test_docker_hub_short_names_and_hosts_map_to_their_api() -> None:
    assert digests.registry_url("docker.io") == "https://registry-1.docker.io"
    assert digests.registry_url("ghcr.io") == "https://ghcr.io"
    assert digests._split("docker.io/library/redis") == ("docker.io", "library/redis")
    assert digests._split("nvcr.io/nvidia/cuda") == ("nvcr.io", "nvidia/cuda")


def test_a_real_registry_runs_by_digest_and_passes_the_prod_policy_only_with_digests() -> None:
    """A prod stack on its own registry is off the pending list: every own image needs its digest."""
    config = read_policy_config(POLICY_DIR / "config.prod.json")
    registry = {"registry": "cr.internal.example/platform"}

    bare = record("prod", "p2b-services", overrides={"serviceImages": registry})
    refused = [v for v in evaluate(bare, config) if v.policy == "image-digest-pinned"]
    assert refused and all(v.level == "mandatory" for v in refused)

    digests = {name: "sha256:" + f"{i:02x}" * 32 for i, name in enumerate(own_image_names())}
    pinned = record("prod", "p2b-services", overrides={"serviceImages": {**registry, "digests": digests}})
    refs = {u.ref for u in images(pinned)}
    for name, digest in digests.items():
        assert any(r.startswith(f"cr.internal.example/platform/{name}:") and r.endswith(f"@{digest}") for r in refs)
    assert not [v for v in evaluate(pinned, config) if v.policy == "image-digest-pinned"]
