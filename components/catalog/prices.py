"""The price catalog: what each thing the stacks create or adopt costs, dated and sourced.

The figures live in `prices.json` beside this module, one entry per price with the document it was
read from and the date it was read; an entry without a figure is a known gap (`usd: null` with the
reason), which an estimate that needs it reports as an error, never as zero. `python -m
migrate.prices refresh` rewrites the Lambda entries from the Lambda API's instance types and the
LLM entries from LiteLLM's bundled model cost map at the router image's version.

Keys: `lambda/<instance type>`, `fly/<region>/<machine size>`, `fly/volume`, `fly/stopped-rootfs`,
`gcp/<region>/<machine type>`, `gcp/<region>/disk/<disk type>`, `gcp/<region>/snapshot`,
`aws/<region>/s3-standard`, `llm/<provider>/<model>/{input,output}`.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from pathlib import Path
from typing import Literal

from pydantic import ValidationError, model_validator

from components.core.errors import ConfigError, format_validation_error
from components.core.model import Frozen

PRICES_FILE = Path(__file__).resolve().with_name("prices.json")


class PriceEntry(Frozen):
    key: str
    item: str
    unit: str
    usd: float | None
    source: str = ""
    gap: str = ""
    read: dt.date
    # GCP A2/A3 machine types come with their GPUs: the machine's price is the pair's.
    includes_accelerators: bool = False

    @model_validator(mode="after")
    def _sourced(self) -> PriceEntry:
        if self.usd is not None and not self.source:
            raise ValueError(f"{self.key}: a price needs the document it was read from (source)")
        if self.usd is None and not self.gap:
            raise ValueError(f"{self.key}: an entry without a price says why (gap)")
        return self


class PriceCatalog(Frozen):
    updated: dt.date
    currency: Literal["USD"]
    note: str = ""
    entries: tuple[PriceEntry, ...]

    @model_validator(mode="after")
    def _unique(self) -> PriceCatalog:
        keys = [e.key for e in self.entries]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"entries: duplicate keys {dupes}")
        return self

    def get(self, key: str) -> PriceEntry | None:
        return next((e for e in self.entries if e.key == key), None)

    def age_days(self, today: dt.date) -> int:
        return (today - self.updated).days

    def oldest_read(self) -> PriceEntry:
        return min(self.entries, key=lambda e: e.read)

    def as_basis(self) -> dict[str, dict[str, object]]:
        """key -> the figure and its unit (or the gap): what the stack's costBasis output carries."""
        return {
            e.key: {"usd": e.usd, "unit": e.unit, **({"gap": e.gap} if e.usd is None else {})} for e in self.entries
        }


def parse_catalog(text: str, where: str) -> PriceCatalog:
    try:
        return PriceCatalog.model_validate(json.loads(text))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except ValidationError as exc:
        raise ConfigError(f"{where}: " + format_validation_error(exc)) from None


@functools.cache
def load_catalog(path: Path = PRICES_FILE) -> PriceCatalog:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the price catalog ({exc.strerror})") from None
    return parse_catalog(text, str(path))
