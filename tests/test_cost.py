"""What each phase costs (issue 24): the catalog, the arithmetic, cost in review, the checks.

Every expected figure is computed here from the catalog entry and the stack file's assumptions,
not copied from the estimator's output, so a slip in policy/costing.py fails a test.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.catalog.gpus import LAMBDA_INSTANCE_TYPES
from components.catalog.prices import PRICES_FILE, load_catalog
from components.clouds.lambda_api import LambdaClient
from components.config.load import parse
from components.config.phases import load_phases, resolve
from components.core.errors import ConfigError
from migrate import affected, affected_cost, cost, cost_checks, harness, prices
from migrate.checks import CheckContext, run_check
from migrate.cli import main as cli_main
from migrate.policy_runner import evaluate
from tests.conftest import ROOT, recorded
from tests.fakes.lambda_server import FakeLambda, fake_lambda
from tests.real.tools import litellm_python


def price(key: str) -> float:
    entry = load_catalog().get(key)
    assert entry is not None and entry.usd is not None, key
    return entry.usd


def config(stack: str) -> Any:
    return parse(harness.read_stack_file(harness.stack_file(stack)))


def lines_of(plan: harness.RecordedPlan, name: str) -> dict[str, Any]:
    """The estimate's lines of resource `name`, keyed by catalog key."""
    return {line.price_key: line for line in cost.estimate(plan).lines if line.name == name}


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(list(argv))
    return code, out.getvalue(), err.getvalue()


def stack_file_with(tmp_path: Path, stack: str, edit: Any) -> Path:
    doc = yaml.safe_load(harness.stack_file(stack).read_text())
    edit(doc["config"])
    path = tmp_path / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


# --- the catalog -----------------------------------------------------------------------------------


def test_every_price_is_dated_and_sourced_and_every_gap_says_why() -> None:
    catalog = load_catalog()
    for entry in catalog.entries:
        assert entry.read <= catalog.updated, entry.key
        assert (entry.usd is not None and entry.source) or (entry.usd is None and entry.gap), entry.key


def test_the_catalog_prices_every_instance_type_and_machine_the_stacks_name() -> None:
    needed = set()
    for stack in ("dev", "prod"):
        cfg = config(stack)
        for host in cfg.hosts:
            if host.lambda_ is not None:
                needed |= {f"lambda/{c.instance_type}" for c in host.lambda_.candidates}
        needed.add(f"lambda/{cfg.cost.compose_host_instance_type}")
        needed.add(f"fly/{cfg.cost.fly.region}/{cfg.cost.fly.machine_size}")
        needed.add(f"llm/{cfg.router.cloud_model}/input")
    missing = sorted(k for k in needed if (e := load_catalog().get(k)) is None or e.usd is None)
    assert not missing


def litellm_cost_map() -> dict[str, Any]:
    venv = litellm_python().parent.parent
    (found,) = venv.glob(f"lib/python*/site-packages/litellm/{prices.LITELLM_MAP}")
    doc: dict[str, Any] = json.loads(found.read_text())
    return doc


def test_llm_token_prices_are_litellms_at_the_router_images_version() -> None:
    """Against the real package's bundled map (scripts/litellm-venv.sh installs the pinned version)."""
    cost_map = litellm_cost_map()
    for stack in ("dev", "prod"):
        model = config(stack).router.cloud_model
        for fresh in prices.llm_entries(model, cost_map, dt.date.today()):
            assert price(fresh["key"]) == fresh["usd"], fresh["key"]


def test_a_broken_catalog_names_the_file_and_the_entry(tmp_path: Path) -> None:
    doc = json.loads(PRICES_FILE.read_text())
    doc["entries"][0]["source"] = ""
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=r"prices.json: .*lambda/gpu_1x_a10: a price needs the document"):
        load_catalog.__wrapped__(path)


# --- the arithmetic, one line of each kind ------------------------------------------------------------


def test_one_lambda_host_is_its_type_price_times_the_hours() -> None:
    hours = config("prod").cost.hours_per_month
    (line,) = lines_of(recorded("prod", "p3-local-brain"), "server-1-instance").values()
    assert line.price_key == "lambda/gpu_1x_a10"
    assert line.monthly_usd == pytest.approx(price("lambda/gpu_1x_a10") * hours)


def test_one_fly_app_running_then_frozen_then_gone() -> None:
    cfg = config("prod").cost
    periods = cfg.hours_per_month / 720  # Fly prices a machine per 30 days of runtime
    machine_key = f"fly/{cfg.fly.region}/{cfg.fly.machine_size}"
    running = lines_of(recorded("prod", "p0-baseline"), "fly-dashboard")
    assert running[machine_key].monthly_usd == pytest.approx(price(machine_key) * cfg.fly.machines_per_app * periods)
    assert running["fly/volume"].monthly_usd == pytest.approx(price("fly/volume") * cfg.fly.volume_gb)
    frozen = lines_of(recorded("prod", "p1-fly-freeze"), "fly-dashboard")
    assert machine_key not in frozen
    rootfs = cfg.fly.rootfs_gb * cfg.fly.machines_per_app
    assert frozen["fly/stopped-rootfs"].monthly_usd == pytest.approx(price("fly/stopped-rootfs") * rootfs * periods)
    assert lines_of(recorded("prod", "p4-decommission"), "fly-dashboard") == {}


def test_the_gcp_gpu_vm_is_its_machine_and_its_disk() -> None:
    hours = config("prod").cost.hours_per_month
    lines = lines_of(recorded("prod", "p3-local-brain"), "gpu-agent-gcp-vm")
    # a2-highgpu-1g's price includes its A100: no separate GPU line.
    assert set(lines) == {"gcp/us-central1/a2-highgpu-1g", "gcp/us-central1/disk/pd-ssd"}
    assert lines["gcp/us-central1/a2-highgpu-1g"].monthly_usd == pytest.approx(3.673385 * hours)
    assert lines["gcp/us-central1/disk/pd-ssd"].monthly_usd == pytest.approx(price("gcp/us-central1/disk/pd-ssd") * 200)


def test_the_retired_legacy_vm_bills_its_disk_and_snapshot_only() -> None:
    disk = config("prod").cost.legacy_vm_disk
    p4 = recorded("prod", "p4-decommission")
    assert set(lines_of(p4, "legacy-gcp-vm")) == {f"gcp/us-central1/disk/{disk.type}"}
    (snapshot,) = lines_of(p4, "legacy-gcp-vm-final").values()
    assert snapshot.monthly_usd == pytest.approx(price("gcp/us-central1/snapshot") * disk.size_gb)


def test_the_bucket_is_the_backup_size_at_the_s3_price() -> None:
    cfg = config("prod")
    (line,) = lines_of(recorded("prod", "p0-baseline"), "backups-bucket").values()
    key = f"aws/{cfg.backups.region}/s3-standard"
    assert line.price_key == key
    assert line.monthly_usd == pytest.approx(price(key) * cfg.cost.backup_storage_gb)


def test_the_llm_line_is_the_cloud_share_of_the_requests_times_the_token_prices() -> None:
    cfg = config("prod")
    llm, model = cfg.cost.llm, cfg.router.cloud_model
    requests = llm.requests_per_day * cfg.cost.hours_per_month / 24
    per_request = llm.input_tokens * price(f"llm/{model}/input") + llm.output_tokens * price(f"llm/{model}/output")
    before = lines_of(recorded("prod", "p2a-k3s"), "gpu-platform-prod")  # no router yet: every request to the cloud
    assert sum(line.monthly_usd for line in before.values()) == pytest.approx(requests * per_request)
    after = lines_of(recorded("prod", "p3-local-brain"), "llm-router")
    cloud = requests * (1 - llm.local_share) * per_request
    assert sum(line.monthly_usd for line in after.values()) == pytest.approx(cloud)


def test_every_phase_of_both_stacks_has_a_cost_and_the_total_is_the_lines() -> None:
    for stack in ("dev", "prod"):
        for phase in load_phases():
            est = cost.estimate(recorded(stack, phase.id))
            assert est.monthly_usd > 0, (stack, phase.id)
            assert est.monthly_usd == pytest.approx(sum(line.monthly_usd for line in est.lines))
            assert sum(est.by_provider().values()) == pytest.approx(est.monthly_usd)


# --- a change moves the total by exactly the price times the hours -----------------------------------


def _agent(config_map: dict[str, Any]) -> None:
    config_map["gpu-platform:hosts"].insert(
        1,
        {
            "name": "dev-agent-2",
            "role": "agent",
            "source": "lambda",
            "lambda": {"candidates": [{"region": "us-east-1", "instanceType": "gpu_1x_a10"}]},
        },
    )


def _bigger_server(config_map: dict[str, Any]) -> None:
    for candidate in config_map["gpu-platform:hosts"][0]["lambda"]["candidates"]:
        candidate["instanceType"] = "gpu_1x_h100_pcie"


@pytest.mark.parametrize(
    ("edit", "delta_key", "resource"),
    [
        (_agent, ("lambda/gpu_1x_a10", None), "dev-agent-2-instance"),
        (_bigger_server, ("lambda/gpu_1x_h100_pcie", "lambda/gpu_1x_a10"), "dev-gpu-1-instance"),
    ],
    ids=["add-an-agent", "change-an-instance-type"],
)
def test_a_stack_file_change_moves_the_total_by_the_price_times_the_hours(
    tmp_path: Path, edit: Any, delta_key: tuple[str, str | None], resource: str
) -> None:
    hours = config("dev").cost.hours_per_month
    added, removed = delta_key
    expected = (price(added) - (price(removed) if removed else 0.0)) * hours
    changed = stack_file_with(tmp_path, "dev", edit)
    before = recorded("dev", "p2a-k3s")
    after = harness.record("dev", phase="p2a-k3s", stack_path=changed)
    assert cost.estimate(after).monthly_usd - cost.estimate(before).monthly_usd == pytest.approx(expected)
    text = "\n".join(cost.change_lines(before, after))
    assert f"+{cost.usd(expected)}" in text.splitlines()[0]
    assert resource in text and added in text

    summary = affected_cost.cost_markdown(
        {"dev": ["p2a-k3s"]},
        [],
        base_text=lambda _: harness.stack_file("dev").read_text(),
        head_text=lambda _: changed.read_text(),
    )
    assert f"| +{cost.usd(expected)} |" in summary
    assert resource in summary


def test_the_pull_request_summary_prices_a_phase_move_and_leaves_unchanged_stack_files_out() -> None:
    found = affected.Affected(pairs={"dev": ["p2a-k3s"]}, moves=[affected.PhaseMove("dev", "p1-fly-freeze", "p2a-k3s")])
    same = harness.stack_file("dev").read_text()
    summary = affected.cost_section(found, lambda _: same, lambda _: same)
    before = cost.estimate(recorded("dev", "p1-fly-freeze")).monthly_usd
    after = cost.estimate(recorded("dev", "p2a-k3s")).monthly_usd
    rows = [line for line in summary.splitlines() if line.startswith("| dev |")]
    change = f"+{cost.usd(after - before)}"
    assert rows == [f"| dev | move p1-fly-freeze -> p2a-k3s | {cost.usd(before)} | {cost.usd(after)} | {change} |"]
    assert "dev-gpu-1-instance" in summary
    assert affected.cost_section(affected.Affected(pairs={"dev": ["p2a-k3s"]}), lambda _: same, lambda _: same) == ""


# --- cost in review ----------------------------------------------------------------------------------


def test_plan_shows_the_phase_total_and_diff_the_change_per_resource() -> None:
    code, out, _ = run_cli("plan", "--stack", "dev", "--phase", "p2a-k3s")
    total = cost.estimate(recorded("dev", "p2a-k3s")).monthly_usd
    assert code == 0 and f"Monthly cost (estimate): {cost.usd(total)}" in out
    code, out, _ = run_cli("diff", "--stack", "dev", "--from", "p1-fly-freeze", "--to", "p2a-k3s")
    assert code == 0
    assert "Monthly cost: " in out and "dev-gpu-1-instance" in out and "lambda/gpu_1x_a10" in out


def test_cost_json_has_the_total_and_each_line_with_urn_price_unit_quantity_and_source() -> None:
    code, out, _ = run_cli("cost", "--stack", "prod", "--phase", "p0-baseline", "--json")
    doc = json.loads(out)
    assert code == 0
    assert doc["monthlyUsd"] == pytest.approx(sum(line["monthlyUsd"] for line in doc["lines"]), abs=0.05)
    for line in doc["lines"]:
        assert {"monthlyUsd", "urn", "unitPriceUsd", "unit", "quantity", "source"} <= set(line)
        assert line["urn"].startswith("urn:pulumi:prod::gpu-platform::")
        assert line["source"] == load_catalog().get(line["priceKey"]).source  # type: ignore[union-attr]
        assert line["monthlyUsd"] == pytest.approx(line["unitPriceUsd"] * line["quantity"], abs=0.01)


def test_a_missing_price_is_an_error_naming_it_never_zero(tmp_path: Path) -> None:
    def gap(config_map: dict[str, Any]) -> None:
        config_map["gpu-platform:cost"]["composeHostInstanceType"] = "gpu_1x_a100"  # a known gap

    path = stack_file_with(tmp_path, "prod", gap)
    code, out, err = run_cli("cost", "--stack", "prod", "--phase", "p0-baseline", "--stack-file", str(path))
    assert code == 2 and out == ""
    assert "no price for lambda/gpu_1x_a100, needed by legacy" in err and "Traceback" not in err


def test_the_window_prices_legacy_beside_k3s_over_the_runbooks_days() -> None:
    window = cost.window_cost("prod", harness.stack_file("prod"))
    planned = [p for p in load_phases() if p.state.k3s.gpu_hosts and p.state.legacy.fly_apps != "destroyed"]
    assert [p.phase for p in window.phases] == [p.id for p in planned]
    assert window.days == sum(p.expected_days or 0 for p in planned) > 0
    hours = config("prod").cost.hours_per_month
    expected = sum(p.legacy_usd * (p.days or 0) * 24 / hours for p in window.phases)
    assert window.legacy_usd == pytest.approx(expected) and window.legacy_usd > 0
    assert f"legacy kept running beside K3s costs {cost.usd(window.legacy_usd)}" in window.lines()[0]


def test_a_plan_warns_when_the_catalog_is_older_than_the_stacks_limit() -> None:
    plan = recorded("dev", "p0-baseline")
    max_age = config("dev").cost.catalog_max_age_days
    fresh = load_catalog().updated + dt.timedelta(days=max_age)
    assert cost.catalog_warning(plan, fresh) is None
    stale = cost.catalog_warning(plan, fresh + dt.timedelta(days=1))
    assert stale is not None and "python -m migrate.prices refresh --stack dev" in stale


# --- the budget --------------------------------------------------------------------------------------


def test_the_budget_fails_a_phase_over_it_and_passes_one_under_it() -> None:
    total = cost.estimate(recorded("prod", "p2a-k3s")).monthly_usd
    for budget, failing in ((total + 1, False), (total - 1, True)):
        plan = harness.record("prod", phase="p2a-k3s", overrides={"budget": {"monthlyUsd": budget}})
        found = [
            v
            for v in evaluate(plan, json.loads((ROOT / "policy/config.prod.json").read_text()))
            if v.policy == "budget"
        ]
        assert bool(found) is failing
        if failing:
            (v,) = found
            assert v.level == "mandatory" and cost.usd(total) in v.message and "gpu-agent-gcp-vm" in v.message


# --- the checks ----------------------------------------------------------------------------------------


def _reduction(outputs: dict[str, Any], stack_file: Path | None = None) -> Any:
    ctx = CheckContext(
        outputs=outputs,
        thresholds={"cost-reduction": resolve("p4-decommission").exit_criteria.thresholds_for("cost-reduction")},
        overrides={"stack_file": str(stack_file)} if stack_file else {},
    )
    return run_check("cost-reduction", ctx)


def test_cost_reduction_reports_p4_against_p0_with_the_phase_files_threshold(tmp_path: Path) -> None:
    result = _reduction({"stackName": "prod", "phase": "p4-decommission"})
    p0 = cost.estimate(recorded("prod", "p0-baseline")).monthly_usd
    p4 = cost.estimate(recorded("prod", "p4-decommission")).monthly_usd
    assert f"p4-decommission {cost.usd(p4)}/month against p0-baseline {cost.usd(p0)}/month" in result.detail
    assert "needs at least 27%" in result.detail
    assert result.ok is (1 - p4 / p0 >= 0.27)

    def busy(config_map: dict[str, Any]) -> None:  # a platform whose cloud LLM bill dwarfs the GPUs
        config_map["gpu-platform:cost"]["llm"]["requestsPerDay"] = 2_000_000

    passing = _reduction({"stackName": "prod", "phase": "p4-decommission"}, stack_file_with(tmp_path, "prod", busy))
    assert passing.ok, passing.detail


@pytest.fixture
def lambda_api() -> Any:
    with fake_lambda(api_key="k") as fake:
        fake.ssh_keys["key"] = {"id": "key", "name": "admin", "public_key": "ssh-ed25519 AAAA"}
        yield fake
        assert fake.violations == [], "\n".join(fake.violations)


def _launch(fake: FakeLambda, host: str, itype: str, stack: str = "prod") -> None:
    tags = [
        {"key": "gpu-platform-stack", "value": f"gpu-platform-{stack}"},
        {"key": "gpu-platform-resource", "value": host},
    ]
    body = {
        "region_name": "us-east-1",
        "instance_type_name": itype,
        "ssh_key_names": ["admin"],
        "name": host,
        "tags": tags,
    }
    LambdaClient("k", fake.base_url).launch(body)


@pytest.mark.network
def test_drift_compares_the_running_instances_at_the_apis_prices_with_the_estimate(lambda_api: FakeLambda) -> None:
    hours = config("prod").cost.hours_per_month
    for host in ("server-1", "server-2", "server-3", "gpu-agent-2"):
        _launch(lambda_api, host, "gpu_1x_a10" if host.startswith("server") else "gpu_1x_h100_pcie")
    _launch(lambda_api, "gpu-agent-1", "gpu_1x_h100_sxm5")  # fell back to the third candidate
    _launch(lambda_api, "someone-else", "gpu_1x_a10", stack="dev")  # another stack's: not counted
    instances = LambdaClient("k", lambda_api.base_url).list_instances()
    est = cost.estimate(recorded("prod", "p3-local-brain"))
    drift = cost_checks.lambda_drift(est, instances, "prod")
    assert drift.delta_usd == pytest.approx(
        (price("lambda/gpu_1x_h100_sxm5") - price("lambda/gpu_1x_h100_pcie")) * hours
    )
    assert drift.lines == (
        f"gpu-agent-1: planned lambda/gpu_1x_h100_pcie {cost.usd(price('lambda/gpu_1x_h100_pcie') * hours)}/month, "
        f"running gpu_1x_h100_sxm5 {cost.usd(price('lambda/gpu_1x_h100_sxm5') * hours)}/month",
    )


@pytest.mark.network
def test_the_fake_lambda_serves_the_catalogs_prices(lambda_api: FakeLambda) -> None:
    served = LambdaClient("k", lambda_api.base_url).instance_type_prices()
    assert served["gpu_1x_a10"] == round(price("lambda/gpu_1x_a10") * 100)
    assert set(served) <= set(LAMBDA_INSTANCE_TYPES)


@pytest.mark.network
def test_refresh_rewrites_lambda_and_llm_prices_from_their_sources(lambda_api: FakeLambda, tmp_path: Path) -> None:
    catalog = tmp_path / "prices.json"
    doc = json.loads(PRICES_FILE.read_text())
    for entry in doc["entries"]:
        if entry["key"] == "lambda/gpu_1x_a10":
            entry["usd"] = 9.99  # stale
    catalog.write_text(json.dumps(doc))
    today = dt.date(2027, 1, 15)
    changes = prices.refresh(
        harness.stack_file("prod"),
        client=LambdaClient("k", lambda_api.base_url),
        cost_map=litellm_cost_map(),
        catalog_path=catalog,
        today=today,
    )
    assert changes == [f"lambda/gpu_1x_a10: 9.99 -> {price('lambda/gpu_1x_a10')} hour"]
    fresh = load_catalog.__wrapped__(catalog)
    assert fresh.updated == today
    assert fresh.get("lambda/gpu_1x_a10").read == today  # type: ignore[union-attr]
    assert fresh.get("fly/volume").read == load_catalog().get("fly/volume").read  # type: ignore[union-attr]
