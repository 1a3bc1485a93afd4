"""Prices that change: the factor each model's predicted cost is rescaled by when routing.

The champion's cost head learned the costs of its training data, at the prices in force then. When a model's
price changes, routing multiplies that model's predicted costs by

    factor = price in force on the routing day / price in force in the training data

so a price cut moves traffic the night it takes effect, without retraining. The prices come from the ``prices``
table (``routerctl ingest prices FILE``; migration 009); a price is in force from its ``effective_from`` date
(UTC) until the model's next one, so a price dated in the future is not applied yet.

* **Unit price.** ``per_call``: the price of a call. ``per_token``: a blended price per 1,000 tokens,
  :data:`BLEND_INPUT` × input + :data:`BLEND_OUTPUT` × output (three input tokens to one output token). A
  factor compares two unit prices of the same pricing; a model whose pricing changed kind gets factor 1 and a
  warning (a price per call and one per token cannot be compared).
* **Training price.** The data cut of a training run is the newest request date (``ts``, UTC) of its outcomes
  (:func:`data_cut`); the training price of a model is its price in force on that date. Outcomes without a
  timestamp (RouterBench) carry no date: a store with none dated has no cut, and the training price is then the
  model's earliest price on record (the costs it was trained on predate every price change stored). The
  training prices (and the cut) are recorded with the registered version (MLflow params ``data.cut``,
  ``data.prices``); a model the version recorded no price for is looked up in the table at the version's cut.
* **Factor 1** for a model without a current price, without a training price (a warning: a new price for a
  model the training data had no price for), or whose prices cannot be compared; with no price table at all
  every factor is 1 and routing is exactly what it was without prices.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

import duckdb
import numpy as np
import polars as pl

from router.storage import relation, scalar

log = logging.getLogger(__name__)

__all__ = ["BLEND_INPUT", "BLEND_OUTPUT", "Factor", "PriceFactors", "data_cut", "factors", "in_force", "load_prices",
           "training_prices"]

#: Weights of the input and output per-1k-token prices in a per-token model's blended price (3 : 1).
BLEND_INPUT, BLEND_OUTPUT = 0.75, 0.25
#: The migration that created the prices table (a store below it has no prices: every factor is 1).
SCHEMA_VERSION = 9


def load_prices(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Every stored price (``prices/all``): model, effective_from, pricing, input/output per 1k, per_call."""
    return relation(con, "prices/all").pl()


def data_cut(con: duckdb.DuckDBPyConnection) -> date | None:
    """The newest request date (UTC) among the stored outcomes; None when no outcome has a timestamp."""
    return scalar(con, "prices/data_cut")


def unit_price(row: Mapping[str, Any]) -> float:
    """A price row's unit price: per call, or blended per 1,000 tokens (see the module docstring)."""
    if row["pricing"] == "per_call":
        return float(row["per_call"])
    return BLEND_INPUT * float(row["input_per_1k"]) + BLEND_OUTPUT * float(row["output_per_1k"])


def in_force(prices: pl.DataFrame, model: str, on: date | None) -> dict[str, Any] | None:
    """The price of ``model`` in force on ``on`` (the latest ``effective_from`` ≤ ``on``), or its earliest price
    when ``on`` is None; None when there is none."""
    rows = prices.filter(pl.col("model") == model)
    if on is not None:
        rows = rows.filter(pl.col("effective_from") <= on)
    if rows.height == 0:
        return None
    row = rows.sort("effective_from").row(-1 if on is not None else 0, named=True)
    return {"effective_from": row["effective_from"].isoformat(), "pricing": row["pricing"],
            "unit_price": unit_price(row)}


def training_prices(prices: pl.DataFrame, models: Sequence[str], cut: date | None) -> dict[str, dict[str, Any]]:
    """The price in force at ``cut`` (earliest when None) of every model that has one: recorded with a version."""
    out = {}
    for model in models:
        price = in_force(prices, model, cut)
        if price is not None:
            out[model] = price
    return out


@dataclass(frozen=True)
class Factor:
    model: str
    factor: float
    current: dict[str, Any] | None  # effective_from, pricing, unit_price in force on the routing day
    training: dict[str, Any] | None  # the same in force in the training data
    note: str = ""  # why the factor is 1 when a price exists


@dataclass(frozen=True)
class PriceFactors:
    """The factors of one routing run, in the pool's order."""

    day: date
    cut: date | None
    factors: list[Factor] = field(default_factory=list)

    def vector(self, models: Sequence[str]) -> np.ndarray:
        by = {f.model: f.factor for f in self.factors}
        return np.asarray([by.get(m, 1.0) for m in models], dtype=np.float64)

    def changed(self) -> dict[str, float]:
        """The factors that are not 1, by model (what the decisions' policy key records)."""
        return {f.model: f.factor for f in self.factors if not math.isclose(f.factor, 1.0, rel_tol=1e-12)}

    def label(self, models: Collection[str] | None = None) -> str:
        """``<model>:<factor>,...`` of the factors that are not 1 (sorted by model; of ``models`` only, when
        given: a served model refuses a model outside its pool); "" when none."""
        return ",".join(f"{m}:{v:.6g}" for m, v in sorted(self.changed().items()) if models is None or m in models)

    def as_dict(self) -> dict[str, Any]:
        return {"day": self.day.isoformat(), "training_cut": self.cut.isoformat() if self.cut else None,
                "factors": [asdict(f) for f in self.factors]}


def _parse_cut(raw: str | date | None) -> date | None:
    if raw is None or isinstance(raw, date):
        return raw
    raw = raw.strip()
    return date.fromisoformat(raw) if raw and raw.lower() not in ("none", "null") else None


def factors(prices: pl.DataFrame, models: Sequence[str], *, day: date, cut: str | date | None,
            recorded: Mapping[str, Mapping[str, Any]] | None = None) -> PriceFactors:
    """Every model's factor on ``day`` for a version trained with data cut ``cut`` and ``recorded`` training
    prices (its ``data.prices``; a model missing there is looked up in ``prices`` at ``cut``)."""
    cut = _parse_cut(cut)
    recorded = recorded or {}
    out = []
    for model in models:
        current = in_force(prices, model, day)
        training = dict(recorded[model]) if model in recorded else in_force(prices, model, cut)
        note = ""
        if current is None:
            note = "no price in force" if training is not None or model in set(prices["model"]) else ""
        elif training is None:
            note = "no price in force in the training data"
        elif current["pricing"] != training["pricing"]:
            note = f"pricing changed from {training['pricing']} to {current['pricing']}: not comparable"
        elif not training["unit_price"] > 0:
            note = "the training price is 0"
        if current is not None and training is not None and not note:
            value = current["unit_price"] / training["unit_price"]
        else:
            value = 1.0
            if current is not None:
                log.warning("price factor 1 for %s: %s", model, note)
        out.append(Factor(model, float(value), current, training, note))
    return PriceFactors(day, cut, out)


def recorded_prices(raw: str | None) -> dict[str, dict[str, Any]]:
    """A version's ``data.prices`` param (JSON), or {} when it has none."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        log.warning("ignoring a version's unreadable data.prices param")
        return {}
    return value if isinstance(value, dict) else {}


def for_version(con: duckdb.DuckDBPyConnection, models: Sequence[str], loaded: Any, day: date) -> PriceFactors:
    """The factors for a loaded registered version (:class:`router.registry.promotion.LoadedVersion`) on ``day``."""
    return factors(load_prices(con), models, day=day, cut=getattr(loaded, "data_cut", None),
                   recorded=recorded_prices(getattr(loaded, "training_prices", None)))
