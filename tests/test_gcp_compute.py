"""components/clouds/gcp_compute.py registers exactly what the generated pulumi_gcp classes would.

The project registers its three GCP Compute resources without importing `pulumi_gcp.compute`
(see that module for why). These tests record each one next to its generated twin
(tests/fixtures/gcp_twins) and compare every part of the registration the engine sees, so a
`pulumi-gcp` bump that changes a token, a property name, the plugin version or a secret output
fails here instead of drifting silently.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from components.clouds import gcp_compute
from migrate.harness import RecordedPlan, record

ROOT = Path(__file__).resolve().parent.parent
TWINS = Path(__file__).parent / "fixtures" / "gcp_twins" / "__main__.py"
# Everything but identity: the names (and so the URNs) differ by design, and the mocks derive
# their made-up outputs (ids, default names) from the name.
# wire_inputs/wire_outputs: the same inputs and outputs again, as the engine marshals them.
IDENTITY = {"urn", "name", "outputs", "wire_inputs", "wire_outputs"}


@pytest.fixture(scope="module")
def twins() -> RecordedPlan:
    return record("dev", program=TWINS)


@pytest.mark.parametrize("role", ["vm", "fw", "snap"])
def test_registration_matches_the_generated_class(twins: RecordedPlan, role: str) -> None:
    gen, ours = twins.named(f"gen-{role}"), twins.named(f"ours-{role}")
    gen_fields = {k: v for k, v in dataclasses.asdict(gen).items() if k not in IDENTITY}
    ours_fields = {k: v for k, v in dataclasses.asdict(ours).items() if k not in IDENTITY}
    assert ours_fields == gen_fields
    assert ours.outputs.keys() == gen.outputs.keys()


def test_the_provider_plugin_is_the_pinned_one(twins: RecordedPlan) -> None:
    pinned = importlib.metadata.version("pulumi-gcp")
    assert pinned == gcp_compute.PLUGIN_VERSION
    assert twins.named("ours-vm").version == pinned == twins.named("gen-vm").version


def test_secret_metadata_and_label_outputs_stay_secret(twins: RecordedPlan) -> None:
    vm = twins.named("ours-vm")
    assert vm.secret_inputs == ("metadata",)
    assert {"effectiveLabels", "pulumiLabels"} <= set(vm.additional_secret_outputs)


def test_output_attributes_resolve_like_the_generated_ones(twins: RecordedPlan) -> None:
    outputs = twins.outputs
    for key in ("vm-self-link", "vm-status", "snap-self-link"):
        assert outputs[f"ours-{key}"] == outputs[f"gen-{key}"], key
    for key in ("vm-id", "fw-self-link", "fw-name", "snap-id"):  # made up from the resource name
        assert outputs[f"ours-{key}"] and type(outputs[f"ours-{key}"]) is type(outputs[f"gen-{key}"]), key
    # The nested shape the project reads (networkInterfaces[].accessConfigs[].natIp) is the same.
    assert outputs["ours-vm-nat-ip"].startswith("203.0.113.") and outputs["gen-vm-nat-ip"].startswith("203.0.113.")


def test_the_prod_plan_never_loads_the_generated_compute_package() -> None:
    # The reason this module exists; a stray `gcp.compute.X` anywhere in the program undoes it.
    probe = (
        "import sys\n"
        "from migrate.harness import record\n"
        "record('prod', phase='p4-decommission')\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('pulumi_gcp.compute.'))\n"
        "print(loaded)\n"
        "sys.exit(1 if loaded else 0)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
