"""Batch routing of the stored backlog.

Every backlog query not yet decided by the given model version is routed, in batches streamed from the
store (memory is bounded by the batch size however large the backlog), and each batch's decisions are
committed in one transaction. A decision is keyed by (query_id, model_version), so re-running adds nothing
and a new champion decides the backlog again.

With a budget, a first pass predicts the backlog's total spend for a fine grid of reward parameters and
picks the one with the best predicted quality whose predicted spend fits the budget; the second pass routes.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import duckdb
import numpy as np
import polars as pl

from router.embeddings import stack
from router.rewards import Reward, get_reward
from router.storage import execute, relation, transaction

log = logging.getLogger(__name__)
BUDGET_GRID = 257  # reward parameters tried when fitting a budget


class Predictor(Protocol):
    models: list[str]

    def predict(self, X: np.ndarray, prompt_chars: np.ndarray, tasks: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]: ...


class BudgetError(ValueError):
    """The budget cannot be met even by always choosing the cheapest predicted model."""


@dataclass
class RoutingSummary:
    model_version: str
    reward: str
    reward_param: float
    routed: int = 0
    skipped_unembedded: int = 0
    predicted_spend_usd: float = 0.0
    predicted_quality: float = float("nan")  # mean over the routed queries
    budget_usd: float | None = None
    model_mix: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _batches(con: duckdb.DuckDBPyConnection, encoder: str, version: str, size: int) -> Iterator[pl.DataFrame]:
    after = ""
    while True:
        batch = relation(con, "routing/pending_batch",
                         {"encoder": encoder, "version": version, "after": after, "limit": size}).pl()
        if batch.height == 0:
            return
        yield batch
        after = batch["query_id"][-1]


def _predict(predictor: Predictor, batch: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    X = stack(batch["vector"])
    return predictor.predict(X, batch["n_chars"].to_numpy(), batch["task"].fill_null("").to_numpy())


def fit_budget(con: duckdb.DuckDBPyConnection, predictor: Predictor, reward: Reward, budget: float, *,
               encoder: str, version: str, batch_size: int) -> tuple[float, float, float]:
    """(param, predicted spend, predicted mean quality) of the best parameter whose spend fits ``budget``."""
    sweep = reward.sweep()
    grid = np.geomspace(sweep.min(), sweep.max(), BUDGET_GRID)
    spend = np.zeros(grid.size)
    quality = np.zeros(grid.size)
    n = 0
    for batch in _batches(con, encoder, version, batch_size):
        q, c = _predict(predictor, batch)
        rows = np.arange(q.shape[0])
        for i, param in enumerate(grid):
            chosen = reward.choose(q, c, float(param))
            spend[i] += c[rows, chosen].sum()
            quality[i] += q[rows, chosen].sum()
        n += q.shape[0]
    if n == 0:
        return float(grid[-1]), 0.0, float("nan")
    fits = spend <= budget
    if not fits.any():
        raise BudgetError(f"budget ${budget:.4f} is below the cheapest predicted routing of the backlog "
                          f"(${spend.min():.4f} for {n} queries)")
    best = int(np.flatnonzero(fits)[np.argmax(quality[fits])])
    return float(grid[best]), float(spend[best]), float(quality[best] / n)


def route_backlog(con: duckdb.DuckDBPyConnection, predictor: Predictor, *, model_version: str, router_name: str,
                  encoder: str, reward_name: str = "linear", reward_param: float | None = None,
                  budget: float | None = None, batch_size: int = 50_000, flow_run_id: str | None = None,
                  progress: Callable[[int, int], None] | None = None) -> RoutingSummary:
    """Route every pending backlog query with ``predictor`` and store the decisions."""
    start = time.perf_counter()
    reward = get_reward(reward_name)
    pending, unembedded = execute(con, "routing/count_pending", {"encoder": encoder, "version": model_version})[0]
    if unembedded:
        log.warning("%d pending backlog queries have no %s embedding yet and are left for the next run "
                    "(run `routerctl embed`)", unembedded, encoder)
    if budget is not None:
        reward_param, spend, quality = fit_budget(con, predictor, reward, budget, encoder=encoder,
                                                  version=model_version, batch_size=batch_size)
        log.info("budget $%.4f: %s parameter %.4g, predicted spend $%.4f, predicted quality %.4f",
                 budget, reward_name, reward_param, spend, quality)
    elif reward_param is None:
        reward_param = float(reward.sweep()[-1])  # the quality end of the sweep
    summary = RoutingSummary(model_version, reward_name, float(reward_param), budget_usd=budget,
                             skipped_unembedded=int(unembedded))
    mix: Counter[str] = Counter()
    quality_sum = 0.0
    models = np.asarray(predictor.models, dtype=object)
    for batch in _batches(con, encoder, model_version, batch_size):
        q, c = _predict(predictor, batch)
        chosen = reward.choose(q, c, float(reward_param))
        rows = np.arange(q.shape[0])
        value = reward.score(q, c, float(reward_param))[rows, chosen]
        decisions = pl.DataFrame({
            "query_id": batch["query_id"],
            "chosen_model": pl.Series(models[chosen].tolist(), dtype=pl.String),
            "predicted_quality": q[rows, chosen].astype(np.float64),
            "predicted_cost_usd": c[rows, chosen].astype(np.float64),
            "reward_value": value.astype(np.float64),
        })
        with transaction(con):
            con.register("staged_decisions", decisions)
            execute(con, "routing/insert_decisions", {
                "version": model_version, "router": router_name, "reward": reward_name,
                "reward_param": float(reward_param), "budget": budget, "flow_run_id": flow_run_id,
                "now": datetime.now(UTC).replace(tzinfo=None),
            })
            con.unregister("staged_decisions")
        summary.routed += batch.height
        summary.predicted_spend_usd += float(decisions["predicted_cost_usd"].sum())
        quality_sum += float(decisions["predicted_quality"].sum())
        mix.update(dict(decisions["chosen_model"].value_counts().iter_rows()))
        if progress:
            progress(summary.routed, int(pending))
    summary.predicted_quality = quality_sum / summary.routed if summary.routed else float("nan")
    summary.model_mix = dict(mix.most_common())
    summary.seconds = time.perf_counter() - start
    return summary


def pool_matches(stored: Sequence[str], model_pool: Sequence[str]) -> bool:
    return sorted(stored) == sorted(model_pool)
