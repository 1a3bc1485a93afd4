"""Training and evaluation matrices read from the store.

Outcomes are long (one row per observed (prompt, model)); routers want prompts × models with NaN where a
pair was not observed. This module pivots them, joins the cached embeddings and returns a
:class:`~router.routers.base.RoutingData`. The model pool is the ``models`` table: a new model name in the
store is a new column, no code change.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import duckdb
import numpy as np
import polars as pl

from router.embeddings import stack
from router.prices import data_cut, load_prices, training_prices
from router.routers.base import RoutingData
from router.storage import execute, relation, scalar

log = logging.getLogger(__name__)


@dataclass
class Snapshot:
    """What a training run saw: row counts and the ingest runs behind them (logged with every model)."""

    outcomes: int
    prompts: int
    models: list[str]
    ingest_runs: list[str]
    cut: str | None = None  # newest request date of the outcomes (router.prices.data_cut), ISO; None: undated
    prices: dict[str, dict] | None = None  # each model's price in force at the cut (router.prices.training_prices)

    def as_params(self) -> dict[str, object]:
        return {"data.outcomes": self.outcomes, "data.prompts": self.prompts, "data.models": len(self.models),
                "data.ingest_runs": ",".join(self.ingest_runs), "data.cut": self.cut or "",
                "data.prices": json.dumps(self.prices or {}, sort_keys=True)}


def model_pool(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [row[0] for row in execute(con, "dataset/models")]


def routable_pool(con: duckdb.DuckDBPyConnection, min_outcomes: int) -> list[str]:
    """The store's models less those still awaiting outcomes: named only by production logs, with fewer than
    ``min_outcomes`` scored outcomes (``ROUTER_ONBOARD_MIN_OUTCOMES``). Training fits, and routing chooses, only
    these; a model awaiting outcomes gets traffic once it has enough and is onboarded or retrained in."""
    waiting = {row[0] for row in execute(con, "dataset/models_awaiting_outcomes", {"min_outcomes": min_outcomes})}
    return [m for m in model_pool(con) if m not in waiting]


def snapshot(con: duckdb.DuckDBPyConnection) -> Snapshot:
    outcomes, prompts = execute(con, "dataset/snapshot_counts")[0]
    runs = [row[0] for row in execute(con, "dataset/ingest_run_ids")]
    pool = model_pool(con)
    cut = data_cut(con)
    return Snapshot(int(outcomes), int(prompts), pool, runs, cut.isoformat() if cut else None,
                    training_prices(load_prices(con), pool, cut))


def load_routing_data(con: duckdb.DuckDBPyConnection, encoder: str, split: str | None = "train",
                      sources: list[str] | None = None, models: list[str] | None = None) -> RoutingData:
    """Prompts of ``split`` (None = all) with an embedding for ``encoder``, as a prompts × models matrix.

    A prompt observed several times with one model (e.g. repeated log requests) gets the mean quality/cost.
    ``sources`` restricts to some outcome sources (e.g. ``["routerbench"]`` for dense evaluation data).
    """
    pool = models or model_pool(con)
    params = {"split": split, "encoder": encoder, "sources": sources}
    long = relation(con, "dataset/observations", params).pl()
    prompts = relation(con, "dataset/prompt_vectors", params).pl()
    missing = scalar(con, "dataset/count_unembedded", params)
    if missing:
        log.warning("%d prompts of split %s have no %s embedding and are left out; run `routerctl embed`",
                    missing, split, encoder)
    n, m = prompts.height, len(pool)
    quality = np.full((n, m), np.nan, dtype=np.float32)
    cost = np.full((n, m), np.nan, dtype=np.float32)
    if n and long.height:
        row_of = pl.DataFrame({"prompt_id": prompts["prompt_id"], "_r": np.arange(n)})
        col_of = pl.DataFrame({"model": pool, "_c": np.arange(m)})
        cells = long.join(row_of, on="prompt_id").join(col_of, on="model")
        r, c = cells["_r"].to_numpy(), cells["_c"].to_numpy()
        quality[r, c] = cells["quality"].to_numpy().astype(np.float32)
        cost[r, c] = cells["cost_usd"].to_numpy().astype(np.float32)
    X = stack(prompts["vector"]) if n else np.zeros((0, 0), dtype=np.float32)
    return RoutingData(
        X=X, quality=quality, cost=cost, prompt_chars=prompts["n_chars"].to_numpy().astype(np.int64),
        models=list(pool), eval_names=prompts["task"].fill_null("").to_numpy().astype(object),
        prompt_ids=prompts["prompt_id"].to_list(),
        template_ids=prompts["template_id"].fill_null("").to_numpy().astype(object),
    )
