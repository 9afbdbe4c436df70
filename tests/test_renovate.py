"""renovate.json: every pin of components/catalog/versions.py and of the workflows is one Renovate can bump.

Renovate itself does not run here (it needs the registries); what is checked is what decides
whether a pin is ever bumped: that the custom managers' regexes (RE2 syntax, the subset Python's
`re` shares) find each pin with the value the program really uses, and that each lands in a group.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from components.catalog import versions

ROOT = Path(__file__).resolve().parent.parent
CONFIG = json.loads((ROOT / "renovate.json").read_text())
VERSIONS = ROOT / "components" / "catalog" / "versions.py"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))

# Constants of versions.py that are not bumped on their own, and why.
NOT_RENOVATED = {
    # What K3S_VERSION ships or bundles: bumped in the k3s group's pull request (see its packageRule).
    "KUBERNETES_VERSION": "the Kubernetes minor of K3S_VERSION",
    "K3S_TRAEFIK_CHART_VERSION": "the Traefik chart K3S_VERSION bundles",
    "K3S_HELM_CONTROLLER_VERSION": "the helm-controller K3S_VERSION embeds",
    # The organisation's own images: the registry is stack config, the tag its release process's.
    "PLATFORM_IMAGE_REGISTRY": "not a version",
    "DOCUMENTATION_IMAGE_REGISTRY": "not a version",
    # The reviewed list of images without a digest: `make digests` empties it, not Renovate.
    "DIGEST_PENDING": "not a version",
    "PLATFORM_RELEASE": "the platform repository's own release",
    # The llama.cpp source the tests build for LLAMA_CPP_SERVER_IMAGE: a llama-cpp-python sdist that
    # vendors that build's commit, moved by hand in the "llama and router" pull request (see its rule).
    "LLAMA_CPP_TEST_SOURCE": "follows LLAMA_CPP_SERVER_IMAGE",
    # Read by the NVIDIA chart manager together with NVIDIA_DEVICE_PLUGIN_CHART_REPO.
    "NVIDIA_DEVICE_PLUGIN_CHART": "part of the device plugin chart's match",
    "NVIDIA_DEVICE_PLUGIN_VERSION": "part of the device plugin chart's match",
}


def _python(pattern: str) -> re.Pattern[str]:
    """A Renovate (RE2, JavaScript named groups) pattern as a Python one."""
    return re.compile(pattern.replace("(?<", "(?P<"))


def _managers(path: str) -> list[dict[str, Any]]:
    out = []
    for manager in CONFIG["customManagers"]:
        patterns = [p.strip("/") for p in manager["managerFilePatterns"]]
        if any(re.search(p, path) for p in patterns):
            out.append(manager)
    return out


def _matches(path: Path) -> list[tuple[dict[str, Any], re.Match[str]]]:
    text = path.read_text()
    rel = str(path.relative_to(ROOT))
    return [(m, found) for m in _managers(rel) for s in m["matchStrings"] for found in _python(s).finditer(text)]


def _constant_at(text: str, offset: int) -> str:
    line = text[offset:].split("\n", 1)[0]
    match = re.match(r"([A-Z0-9_]+): Final", line)
    assert match, f"a match starts inside a line that declares no pin: {line!r}"
    return match.group(1)


def _pins() -> list[str]:
    return re.findall(r"^([A-Z0-9_]+): Final", VERSIONS.read_text(), flags=re.MULTILINE)


def test_every_pin_of_versions_py_is_matched_with_its_real_value() -> None:
    text = VERSIONS.read_text()
    matched: dict[str, dict[str, str]] = {}
    for _, found in _matches(VERSIONS):
        name = _constant_at(text, found.start())
        assert name not in matched, f"{name} is matched twice"
        matched[name] = {k: v for k, v in found.groupdict().items() if v is not None}
    missing = [p for p in _pins() if p not in matched and p not in NOT_RENOVATED]
    assert not missing, f"pins no Renovate manager finds: {missing}"
    assert not set(matched) & set(NOT_RENOVATED)
    for name, groups in matched.items():
        value: Any = getattr(versions, name)
        if name.endswith("_IMAGE"):
            reference = f"{groups['depName']}:{groups['currentValue']}"
            digest = f"@{groups['currentDigest']}" if "currentDigest" in groups else ""
            assert value == reference + digest, name
        elif isinstance(value, tuple):
            assert value == (groups["registryUrl"], groups["depName"], groups["currentValue"]), name
        elif name == "NVIDIA_DEVICE_PLUGIN_CHART_REPO":
            assert (groups["registryUrl"], groups["depName"], groups["currentValue"]) == (
                versions.NVIDIA_DEVICE_PLUGIN_CHART_REPO,
                versions.NVIDIA_DEVICE_PLUGIN_CHART,
                versions.NVIDIA_DEVICE_PLUGIN_VERSION,
            )
        else:
            assert value.startswith(groups["currentValue"]), name


@pytest.mark.parametrize(
    "line",
    [
        'REDIS_IMAGE: Final = "docker.io/library/redis:8.6.3@sha256:' + "a" * 64 + '"',
        'REDIS_IMAGE: Final = (\n    "docker.io/library/redis:8.6.3"\n    "@sha256:' + "b" * 64 + '"\n)',
        'REDIS_IMAGE: Final = "registry.example.com:5000/library/redis:8.6.3"',
    ],
)
def test_the_image_regex_takes_digests_on_one_or_two_lines(line: str) -> None:
    (manager,) = [m for m in CONFIG["customManagers"] if m["datasourceTemplate"] == "docker"]
    found = _python(manager["matchStrings"][0]).search(line)
    assert found and found.group("currentValue") == "8.6.3"
    assert found.group("depName").endswith("/library/redis")
    assert ("@sha256" in line) == (found.group("currentDigest") is not None)


def test_the_workflows_pulumi_cli_is_matched_and_matches_the_sdk() -> None:
    sdk = re.search(r"^pulumi==(\S+)$", (ROOT / "requirements.txt").read_text(), flags=re.MULTILINE)
    assert sdk
    for workflow in WORKFLOWS:
        if "PULUMI_VERSION:" in workflow.read_text():
            found = [f.group("currentValue") for _, f in _matches(workflow)]
            assert found == [sdk.group(1)], workflow.name


def test_custom_versionings_accept_the_current_pins() -> None:
    k3s = next(m for m in CONFIG["customManagers"] if m.get("depNameTemplate") == "k3s-io/k3s")
    assert _python(k3s["versioningTemplate"].removeprefix("regex:")).fullmatch(versions.K3S_VERSION)
    llama = next(r for r in CONFIG["packageRules"] if "versioning" in r)
    tag = versions.LLAMA_CPP_SERVER_IMAGE.split("@")[0].rsplit(":", 1)[1]
    assert _python(llama["versioning"].removeprefix("regex:")).fullmatch(tag)


def test_every_matched_dependency_lands_in_a_group() -> None:
    grouped = {d for rule in CONFIG["packageRules"] if "groupName" in rule for d in rule.get("matchDepNames", [])}
    for _, found in _matches(VERSIONS):
        groups = found.groupdict()
        dep = groups.get("depName") or ""
        if not dep:  # a templated depName (k3s, the toolkit)
            continue
        assert dep in grouped, f"{dep} is in no Renovate group"
    templated = {m["depNameTemplate"] for m in CONFIG["customManagers"] if "depNameTemplate" in m}
    assert templated <= grouped, templated - grouped
