"""Refresh the price catalog where the network and credentials exist: `python -m migrate.prices`.

    python -m migrate.prices show                          # the catalog's date, sources and gaps
    python -m migrate.prices refresh --stack prod          # Lambda live prices + LiteLLM's map, rewrite
    python -m migrate.prices refresh --stack prod --dry-run

`refresh` rewrites two groups of components/catalog/prices.json and nothing else:

- `lambda/<type>`: `price_cents_per_hour` of every instance type `GET /instance-types` lists, asked
  with the stack's Lambda key (LAMBDA_API_KEY, as the providers take it; LAMBDA_API_URL for another
  endpoint). A type the API no longer lists keeps its entry and its old date.
- `llm/<provider>/<model>/{input,output}`: `input_cost_per_token` / `output_cost_per_token` from
  LiteLLM's bundled `model_prices_and_context_window_backup.json` in the LiteLLM venv at the router
  image's version (`scripts/litellm-venv.sh`, what the router tests run), for the stack's cloud model.

Fly, GCP and S3 figures are read by hand from the pages each entry names (none of them has an
unauthenticated price API this project uses); their entries keep their dates.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from components.catalog import versions
from components.catalog.prices import PRICES_FILE, load_catalog, parse_catalog
from components.clouds.lambda_api import LambdaClient, LambdaError
from components.config.load import parse
from components.core.errors import ConfigError
from migrate import harness

LITELLM_MAP = "model_prices_and_context_window_backup.json"
LAMBDA_SOURCE = "Lambda Cloud API GET /instance-types, price_cents_per_hour (read with the stack's key)"


def litellm_version() -> str:
    return versions.LITELLM_IMAGE.rsplit(":v", 1)[-1]


def litellm_map_path() -> Path:
    """The cost map inside the LiteLLM venv at the router image's version (scripts/litellm-venv.sh)."""
    script = harness.ROOT / "scripts" / "litellm-venv.sh"
    done = subprocess.run([str(script), "--path"], capture_output=True, text=True, check=False)
    python = Path(done.stdout.strip())
    if done.returncode != 0 or not python.name:
        raise ConfigError(f"scripts/litellm-venv.sh --path failed: {done.stderr.strip()}")
    found = sorted(python.parent.parent.glob(f"lib/python*/site-packages/litellm/{LITELLM_MAP}"))
    if not found:
        raise ConfigError(f"no {LITELLM_MAP} under {python.parent.parent}; build the LiteLLM venv with `make litellm`")
    return found[0]


def llm_entries(model: str, cost_map: Mapping[str, Any], today: dt.date) -> list[dict[str, Any]]:
    """The catalog entries of `model` (LiteLLM's `provider/name`) from LiteLLM's cost map."""
    provider, _, name = model.partition("/")
    row = cost_map.get(model) or cost_map.get(name)
    if not isinstance(row, Mapping) or row.get("litellm_provider") != provider:
        raise ConfigError(f"{model}: not in LiteLLM {litellm_version()}'s {LITELLM_MAP} (as {model} or {name})")
    out = []
    for part in ("input", "output"):
        value = row.get(f"{part}_cost_per_token")
        if not isinstance(value, int | float):
            raise ConfigError(f"{model}: LiteLLM's map has no {part}_cost_per_token")
        out.append(
            {
                "key": f"llm/{model}/{part}",
                "item": f"{model} {part} tokens",
                "unit": "token",
                "usd": float(value),
                "source": f"litellm {litellm_version()} (the router image's version) litellm/{LITELLM_MAP}, "
                f"{name} {part}_cost_per_token",
                "read": today.isoformat(),
            }
        )
    return out


def lambda_entries(prices: Mapping[str, int], today: dt.date) -> list[dict[str, Any]]:
    return [
        {
            "key": f"lambda/{name}",
            "item": f"Lambda On-Demand {name}",
            "unit": "hour",
            "usd": cents / 100,
            "source": LAMBDA_SOURCE,
            "read": today.isoformat(),
        }
        for name, cents in sorted(prices.items())
    ]


def merged(doc: Mapping[str, Any], fresh: Sequence[Mapping[str, Any]], today: dt.date) -> dict[str, Any]:
    """The catalog with `fresh` entries replacing (or joining) those of the same key."""
    by_key = {e["key"]: dict(e) for e in doc["entries"]}
    for entry in fresh:
        old = by_key.get(entry["key"], {})
        # Keep a hand-written description; the figure, source and date are the refresh's.
        by_key[entry["key"]] = {**entry, "item": old.get("item", entry["item"])}
    return {**doc, "updated": today.isoformat(), "entries": list(by_key.values())}


def refresh(
    stack_path: Path,
    *,
    client: LambdaClient | None = None,
    cost_map: Mapping[str, Any] | None = None,
    catalog_path: Path = PRICES_FILE,
    today: dt.date | None = None,
    write: bool = True,
) -> list[str]:
    """Rewrite the Lambda and LLM entries of the catalog; return what changed, one line each."""
    today = today or dt.date.today()
    cfg = parse(harness.read_stack_file(stack_path))
    if client is None:
        key = os.environ.get("LAMBDA_API_KEY")
        if not key:
            raise ConfigError("LAMBDA_API_KEY is not set: the Lambda prices are read with the stack's API key")
        client = LambdaClient(key)
    try:
        lambda_prices = client.instance_type_prices()
    except LambdaError as exc:
        raise ConfigError(f"Lambda API: {exc}") from None
    if cost_map is None:
        cost_map = json.loads(litellm_map_path().read_text())
    fresh = lambda_entries(lambda_prices, today) + llm_entries(cfg.router.cloud_model, cost_map, today)
    doc = json.loads(catalog_path.read_text())
    old = {e["key"]: e.get("usd") for e in doc["entries"]}
    new_doc = merged(doc, fresh, today)
    parse_catalog(json.dumps(new_doc), str(catalog_path))  # what is written must load
    changes = [
        f"{e['key']}: {old.get(e['key'])} -> {e['usd']} {e['unit']}" for e in fresh if old.get(e["key"]) != e["usd"]
    ]
    if write:
        catalog_path.write_text(json.dumps(new_doc, indent=2) + "\n")
        load_catalog.cache_clear()
    return changes


def show() -> list[str]:
    catalog = load_catalog()
    oldest = catalog.oldest_read()
    out = [
        f"{PRICES_FILE.relative_to(harness.ROOT)}: updated {catalog.updated.isoformat()}, "
        f"{len(catalog.entries)} entries, oldest figure {oldest.key} read {oldest.read.isoformat()}"
    ]
    for e in catalog.entries:
        figure = f"${e.usd:g} per {e.unit}" if e.usd is not None else f"GAP: {e.gap}"
        out.append(f"  {e.key:<36} {figure}  (read {e.read.isoformat()})")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m migrate.prices", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("show", help="the catalog's date, figures and gaps")
    p_refresh = sub.add_parser("refresh", help="Lambda's live prices and LiteLLM's token prices into the catalog")
    p_refresh.add_argument("--stack", required=True, help="the stack whose cloud model (and Lambda key) to use")
    p_refresh.add_argument("--stack-file", help="any stack config file instead of Pulumi.<stack>.yaml")
    p_refresh.add_argument("--dry-run", action="store_true", help="print the changes, write nothing")
    args = parser.parse_args(argv)
    try:
        if args.command == "show":
            lines = show()
        else:
            path = Path(args.stack_file) if args.stack_file else harness.stack_file(args.stack)
            lines = refresh(path, write=not args.dry_run) or ["no price changed"]
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
