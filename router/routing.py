"""Batch routing of the stored backlog.

Every backlog query whose newest decision was not made by the given model version under the given policy is
routed and stored in ``routing_decisions``. A decision is keyed by (query_id, model_version, policy), so re-running
adds nothing, a new champion decides the backlog again, and another policy (``quality_target=0.95`` after
``quality_target=1``) keeps its own set beside the first (:func:`policy_label`). Routing a policy again after
another one (the nightly's after a what-if run, a price back at an earlier level) decides the backlog again and
replaces that policy's earlier rows, so the newest decision of every query is the policy routed last.

How it scales (``docs/performance.md``):

* the pending set is computed **once** per run (one pass, ``routing/stage_pending``) into a temporary
  table, instead of one anti-join per batch;
* queries sharing a prompt (and task) are predicted **once**: the unit of work is the distinct
  (prompt_id, task) pair, weighted by its number of queries;
* the units' keys are read first (no vectors: small); their vectors are read as a **stream of Arrow
  batches** (``routing/pending_vectors``, embeddings on the probe side of a semi-join) and joined to the keys
  per batch; vectors are never held beyond one batch, and DuckDB's buffer pool is capped at 512 MB
  meanwhile (``routing/limit_memory``); what is kept per unit is its decision (a few numbers), or with a
  budget its predictions (2 × models float64), so memory grows with the backlog by bytes per unit, not by
  the 1.5 KB of its vector;
* choosing, the budget grid and the summary are vectorised (no Python loop per row); the budget grid is
  evaluated on the kept predictions (2 × models float64 per unit), so the backlog is predicted once, not twice;
* decisions are written by joining the unit decisions back to the pending queries inside DuckDB, in
  transactions of at most ``batch_size`` units.

The same pieces run distributed (``flows/scale.py``): :func:`stage_pending` and :func:`read_units` in the
flow's process (DuckDB has one writer), :func:`predict_units` on the workers, :class:`Decisions` back in the
flow's process. With a budget, a first pass predicts the backlog's total spend for a fine grid of reward
parameters and picks the one with the best predicted quality whose predicted spend fits the budget.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from router.errors import RouterError
from router.prices import PriceFactors
from router.progress import Progress
from router.rewards import Reward, get_reward
from router.storage import execute, relation, transaction

log = logging.getLogger(__name__)
BUDGET_GRID = 257  # reward parameters tried when fitting a budget
GRID_ROWS = 32_768  # rows per chunk when evaluating the budget grid (bounds the temporaries)


class Predictor(Protocol):
    models: list[str]

    def predict(self, X: np.ndarray, prompt_chars: np.ndarray, tasks: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]: ...


class BudgetError(RouterError, ValueError):
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
    policy: str = ""  # how the parameter was chosen: quality_target=<t> | lambda=<λ> | budget=<usd>
    reference_model: str | None = None  # the best single model the night's savings are stated against
    reference_spend_usd: float | None = None  # predicted spend had every routed query gone to it (same cost head)
    price_factors: dict[str, float] = field(default_factory=dict)  # cost rescaling by model, where not 1 (router.prices)
    mix_param: float | None = None  # a mixed policy's dearer parameter, for the prompts below ``mix_share``
    mix_share: float = 0.0


@dataclass
class Units:
    """A batch of distinct (prompt, task) units to predict: keys, query counts and predictor inputs."""

    prompt_id: pl.Series
    task: pl.Series
    n_queries: np.ndarray  # int64 (n,)
    X: np.ndarray  # float32 (n, dim)
    chars: np.ndarray  # int64 (n,)

    @property
    def n(self) -> int:
        return len(self.n_queries)

    @property
    def tasks(self) -> np.ndarray:
        return self.task.to_numpy()


# ------------------------------------------------------------------------------------------ hash ranges
def hash_ranges(n: int) -> list[tuple[str | None, str | None]]:
    """``n`` half-open ranges ``[lo, hi)`` of prompt_id (hex of sha256) covering every id, about equal in size.

    The first range has ``lo=None`` and the last ``hi=None`` (unbounded)."""
    if n < 1:
        raise ValueError("need at least one range")
    bounds = [f"{(k << 32) // n:08x}" for k in range(1, n)]
    return list(zip([None, *bounds], [*bounds, None], strict=True))


# --------------------------------------------------------------------------------------------- reading
@contextmanager
def bounded_memory(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Cap DuckDB's buffer pool (512 MB) while routing; the connection's limit is reset to DuckDB's default after."""
    execute(con, "routing/limit_memory")
    try:
        yield
    finally:
        execute(con, "routing/reset_memory")


def policy_label(reward_param: float | None, budget: float | None, quality_target: float | None = None,
                 exclude: Sequence[str] = (), prices: str = "", reward: str = "linear") -> str:
    """The ``policy`` key of decisions: ``quality_target=<t>``, else ``budget=<usd>``, else ``lambda=<λ>``; then
    ``;reward=<name>`` for a reward other than ``linear`` (the same parameter chooses otherwise under another
    reward), ``;exclude=<a>,<b>`` when models were left out of the pool (the decisions record the pool they were
    made with), and ``;prices=<model>:<factor>,...`` when predicted costs were rescaled by price changes
    (:meth:`router.prices.PriceFactors.label`: only factors other than 1)."""
    if quality_target is not None:
        label = f"quality_target={quality_target:g}"
    elif budget is not None:
        label = f"budget={budget:g}"
    else:
        label = f"lambda={reward_param:g}"
    label += f";reward={reward}" if reward != "linear" else ""
    label += f";exclude={','.join(sorted(set(exclude)))}" if exclude else ""
    return label + (f";prices={prices}" if prices else "")


class PoolError(RouterError, ValueError):
    """A pool exclusion that cannot be applied: an unknown model, or every model left out."""


def available(models: Sequence[str], exclude: Sequence[str] = ()) -> np.ndarray:
    """Column indices of ``models`` left after ``exclude`` (``ROUTER_POOL_EXCLUDE`` / ``--exclude-model``): a
    retired or unavailable model is never chosen, without retraining. Unknown names and an empty pool are errors."""
    unknown = sorted(set(exclude) - set(models))
    if unknown:
        raise PoolError(f"cannot exclude {unknown}: not in the champion's pool {list(models)}")
    keep = np.array([j for j, m in enumerate(models) if m not in set(exclude)], dtype=np.int64)
    if keep.size == 0:
        raise PoolError(f"excluding every model of the pool {list(models)} leaves nothing to route to")
    return keep


def stage_pending(con: duckdb.DuckDBPyConnection, encoder: str, version: str, policy: str | None = None
                  ) -> tuple[int, int]:
    """Compute the pending queries of ``version`` under ``policy`` once (temp table): those whose newest decision
    is another version's or another policy's (``None``: those ``version`` has not decided under any policy);
    returns (pending, pending unembedded)."""
    execute(con, "routing/stage_pending", {"encoder": encoder, "version": version, "policy": policy})
    pending, unembedded = execute(con, "routing/pending_counts")[0]
    return int(pending), int(unembedded)


def _vectors(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A list<float> Arrow column of equal-length vectors → (n, dim) float32, without a Python loop."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(arr)
    if n == 0:
        return np.zeros((0, 0), dtype=np.float32)
    if isinstance(arr.type, pa.FixedSizeListType):
        dim = arr.type.list_size
        flat = arr.flatten()
    else:
        offsets = arr.offsets.to_numpy()
        lengths = np.diff(offsets)
        dim = int(lengths[0])
        if (lengths != dim).any():
            raise ValueError("embedding vectors of different lengths in one batch")
        flat = arr.flatten()
    return flat.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(n, dim)


def _join_vectors(keys: pl.DataFrame, batch: pa.RecordBatch | pa.Table) -> Units:
    """The units whose prompt is in ``batch`` (prompt_id, vector), with their vectors, joined vectorised."""
    X = _vectors(batch.column("vector"))
    ids = pl.DataFrame({"prompt_id": pl.Series("prompt_id", batch.column("prompt_id"), dtype=pl.String),
                        "_r": np.arange(batch.num_rows, dtype=np.int64)})
    units = keys.join(ids, on="prompt_id", how="inner")
    return Units(prompt_id=units["prompt_id"], task=units["task"],
                 n_queries=units["n_queries"].to_numpy().astype(np.int64),
                 X=X[units["_r"].to_numpy()], chars=units["n_chars"].to_numpy().astype(np.int64))


def _unit_keys(con: duckdb.DuckDBPyConnection, lo: str | None, hi: str | None) -> pl.DataFrame:
    return relation(con, "routing/pending_unit_keys", {"lo": lo, "hi": hi}).pl().with_columns(
        pl.col("task").cast(pl.String), pl.col("n_queries").cast(pl.Int64), pl.col("n_chars").cast(pl.Int64))


def iter_units(con: duckdb.DuckDBPyConnection, encoder: str, batch_size: int,
               lo: str | None = None, hi: str | None = None) -> Iterator[Units]:
    """Stream the pending units (after :func:`stage_pending`): their keys are read first (small), their
    vectors as a stream of Arrow batches of ≤ ``batch_size`` prompts.

    The stream holds ``con`` until exhausted: write only afterwards."""
    keys = _unit_keys(con, lo, hi)
    if keys.height == 0:
        return
    rel = relation(con, "routing/pending_vectors", {"encoder": encoder, "lo": lo, "hi": hi})
    for batch in rel.to_arrow_reader(batch_size):
        if batch.num_rows:
            yield _join_vectors(keys, batch)


def read_units(con: duckdb.DuckDBPyConnection, encoder: str, lo: str | None, hi: str | None) -> Units:
    """All pending units of one hash range, materialised (what a distributed chunk ships to a worker)."""
    keys = _unit_keys(con, lo, hi)
    table = relation(con, "routing/pending_vectors", {"encoder": encoder, "lo": lo, "hi": hi}).to_arrow_table()
    return _join_vectors(keys, table)


def predict_units(predictor: Predictor, units: Units) -> tuple[np.ndarray, np.ndarray]:
    """(q_hat, c_hat) (n, models) of a unit batch: the compute a worker does."""
    if units.n == 0:
        m = len(predictor.models)
        return np.zeros((0, m)), np.zeros((0, m))
    q, c = predictor.predict(units.X, units.chars, units.tasks)
    return np.asarray(q), np.asarray(c)


#: How the pending units (after :func:`stage_pending`) are predicted: ``(con, predictor, encoder, batch_size)`` →
#: batches of ``(units, q_hat, c_hat)``; every pending unit once. The stream may hold ``con`` until exhausted.
Predictions = Callable[[duckdb.DuckDBPyConnection, Predictor, str, int],
                       Iterator[tuple[Units, np.ndarray, np.ndarray]]]


def in_process(con: duckdb.DuckDBPyConnection, predictor: Predictor, encoder: str, batch_size: int
               ) -> Iterator[tuple[Units, np.ndarray, np.ndarray]]:
    """:data:`Predictions` in this process: the pending units streamed in batches of ≤ ``batch_size`` prompts."""
    for units in iter_units(con, encoder, batch_size):
        yield units, *predict_units(predictor, units)


# -------------------------------------------------------------------------------------------- deciding
def budget_grid(reward: Reward) -> np.ndarray:
    sweep = reward.sweep()
    return np.geomspace(sweep.min(), sweep.max(), BUDGET_GRID)


def grid_totals(reward: Reward, grid: np.ndarray, q: np.ndarray, c: np.ndarray, weights: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Weighted total predicted (spend, quality) of the choices at every grid value, vectorised over rows.

    Same choices as ``reward.choose`` per value (ties to the cheaper predicted cost, then the lower column):
    the per-row cost ordering is computed once per chunk of rows, and each grid value is one argmax."""
    spend = np.zeros(grid.size)
    quality = np.zeros(grid.size)
    w = np.asarray(weights, dtype=np.float64)
    for start in range(0, q.shape[0], GRID_ROWS):
        qs = np.asarray(q[start:start + GRID_ROWS], dtype=np.float64)
        cs = np.asarray(c[start:start + GRID_ROWS], dtype=np.float64)
        ws = w[start:start + GRID_ROWS]
        order = np.argsort(cs, axis=1, kind="stable")
        q_sorted = np.take_along_axis(qs, order, axis=1)
        c_sorted = np.take_along_axis(cs, order, axis=1)
        rows = np.arange(qs.shape[0])
        for i, param in enumerate(grid):  # ≤ 257 values; each is one vectorised argmax over the chunk
            best = np.argmax(reward.score(q_sorted, c_sorted, float(param)), axis=1)
            spend[i] += ws @ c_sorted[rows, best]
            quality[i] += ws @ q_sorted[rows, best]
    return spend, quality


def pick_budget_param(grid: np.ndarray, spend: np.ndarray, quality: np.ndarray, n: int, budget: float
                      ) -> tuple[float, float, float]:
    """(param, predicted spend, predicted mean quality) of the best grid value whose spend fits ``budget``."""
    if n == 0:
        return float(grid[-1]), 0.0, float("nan")
    fits = spend <= budget
    if not fits.any():
        raise BudgetError(f"budget ${budget:.4f} is below the cheapest predicted routing of the backlog "
                          f"(${spend.min():.4f} for {n} queries)")
    best = int(np.flatnonzero(fits)[np.argmax(quality[fits])])
    return float(grid[best]), float(spend[best]), float(quality[best] / n)


class Decisions:
    """Unit decisions accumulated in the flow's process, then written in one pass per ``batch_size`` units.

    Without a budget each batch is decided as it arrives and only its decision is kept; with a budget the
    predictions are kept until the parameter is fitted on all of them. ``price_factors`` (one per model, in
    ``models`` order: :meth:`router.prices.PriceFactors.vector`) rescale the predicted costs before anything is
    chosen or summed (the reference model's cost included)."""

    def __init__(self, models: Sequence[str], reward: Reward, reward_param: float | None, budget: float | None,
                 reference_model: str | None = None, exclude: Sequence[str] = (),
                 price_factors: np.ndarray | None = None, mix: tuple[float, float] | None = None):
        self.keep = available(models, exclude)
        self.price_factors = None if price_factors is None else np.asarray(price_factors, dtype=np.float64)
        self.models = [models[j] for j in self.keep]  # what decisions can choose (``chosen`` indexes this list)
        self.reference = list(models).index(reference_model) if reference_model in models else None
        self.reward = reward
        self.reward_param = reward_param
        self.budget = budget
        self.mix = mix  # (dearer parameter, share of prompts routed with it): router.policy's mixed policy
        self.keys: list[pl.DataFrame] = []
        self.kept: list[tuple[np.ndarray, np.ndarray]] = []
        self.decided: list[pl.DataFrame] = []

    def add(self, units: Units, q: np.ndarray, c: np.ndarray) -> None:
        if units.n == 0:
            return
        if self.price_factors is not None:
            c = np.asarray(c, dtype=np.float64) * self.price_factors
        reference = (np.asarray(c[:, self.reference], dtype=np.float64) if self.reference is not None
                     else np.full(units.n, np.nan))  # the reference model's cost, available or not
        keys = pl.DataFrame([units.prompt_id, units.task, pl.Series("n_queries", units.n_queries),
                             pl.Series("reference_cost_usd", reference)])
        q, c = np.asarray(q)[:, self.keep], np.asarray(c)[:, self.keep]
        if self.budget is None:
            from router.policy import mixed_params

            params = mixed_params(units.prompt_id.to_list(), self.reward_param, self.mix)
            self.decided.append(self._decide(keys, q, c, params))
        else:
            self.keys.append(keys)
            self.kept.append((np.asarray(q), np.asarray(c)))

    def _decide(self, keys: pl.DataFrame, q: np.ndarray, c: np.ndarray, params: np.ndarray) -> pl.DataFrame:
        """Decide each unit with its own parameter (``params`` per row: one value, or a mix's two)."""
        q, c = np.asarray(q, dtype=np.float64), np.asarray(c, dtype=np.float64)
        chosen = np.empty(len(params), dtype=np.int64)
        value = np.empty(len(params), dtype=np.float64)
        for param in np.unique(params):
            at = np.flatnonzero(params == param)
            chosen[at] = self.reward.choose(q[at], c[at], float(param))
            value[at] = self.reward.score(q[at], c[at], float(param))[np.arange(at.size), chosen[at]]
        rows = np.arange(chosen.size)
        return keys.with_columns(
            pl.Series("chosen", chosen.astype(np.int32)),
            pl.Series("predicted_quality", np.asarray(q[rows, chosen], dtype=np.float64)),
            pl.Series("predicted_cost_usd", np.asarray(c[rows, chosen], dtype=np.float64)),
            pl.Series("reward_value", value.astype(np.float64)),
            pl.Series("reward_param", np.asarray(params, dtype=np.float64)),
        )

    def fit_budget(self) -> tuple[float, float, float]:
        grid = budget_grid(self.reward)
        if not self.kept:
            return pick_budget_param(grid, np.zeros(grid.size), np.zeros(grid.size), 0, float(self.budget))
        q = np.concatenate([k[0] for k in self.kept])
        c = np.concatenate([k[1] for k in self.kept])
        weights = np.concatenate([k["n_queries"].to_numpy() for k in self.keys])
        spend, quality = grid_totals(self.reward, grid, q, c, weights)
        param, spend_at, quality_at = pick_budget_param(grid, spend, quality, int(weights.sum()),
                                                        float(self.budget))
        self.reward_param = param
        self.decided = [self._decide(k, kq, kc, np.full(k.height, param))
                        for k, (kq, kc) in zip(self.keys, self.kept, strict=True)]
        self.keys, self.kept = [], []
        return param, spend_at, quality_at

    def frame(self) -> pl.DataFrame:
        schema = {"prompt_id": pl.String, "task": pl.String, "n_queries": pl.Int64, "reference_cost_usd": pl.Float64,
                  "chosen": pl.Int32, "predicted_quality": pl.Float64, "predicted_cost_usd": pl.Float64,
                  "reward_value": pl.Float64, "reward_param": pl.Float64}
        return pl.concat(self.decided) if self.decided else pl.DataFrame(schema=schema)


def write_decisions(con: duckdb.DuckDBPyConnection, decided: pl.DataFrame, models: Sequence[str], *,
                    summary: RoutingSummary, router_name: str, flow_run_id: str | None, batch_size: int,
                    pending: int, progress: Callable[[int, int], None] | None = None) -> RoutingSummary:
    """Store the decisions of every pending query (joined from its unit's decision) and fill ``summary``."""
    staged_models = pl.DataFrame({"idx": np.arange(len(models), dtype=np.int32), "name": list(models)})
    params = {"version": summary.model_version, "router": router_name, "reward": summary.reward,
              "policy": summary.policy or policy_label(summary.reward_param, summary.budget_usd,
                                                        reward=summary.reward),
              "budget": summary.budget_usd,
              "flow_run_id": flow_run_id}
    con.register("staged_models", staged_models)
    try:
        for start in range(0, decided.height, batch_size):
            chunk = decided.slice(start, batch_size)
            with transaction(con):
                con.register("staged_decisions", chunk)
                execute(con, "routing/insert_unit_decisions",
                        {**params, "now": datetime.now(UTC).replace(tzinfo=None)})
                con.unregister("staged_decisions")
            summary.routed += int(chunk["n_queries"].sum())
            if progress:
                progress(summary.routed, pending)
    finally:
        con.unregister("staged_models")
    if decided.height:
        w = decided["n_queries"].to_numpy().astype(np.float64)
        summary.predicted_spend_usd = float(w @ decided["predicted_cost_usd"].to_numpy())
        summary.predicted_quality = float(w @ decided["predicted_quality"].to_numpy()) / float(w.sum())
        counts = np.bincount(decided["chosen"].to_numpy(), weights=w, minlength=len(models))
        mix = sorted(((models[i], int(n)) for i, n in enumerate(counts) if n > 0), key=lambda kv: -kv[1])
        summary.model_mix = dict(mix)
        if summary.reference_model:
            summary.reference_spend_usd = float(w @ decided["reference_cost_usd"].to_numpy())
    return summary


# ---------------------------------------------------------------------------------------------- routing
def start_summary(reward_name: str, reward_param: float | None, budget: float | None, version: str,
                  unembedded: int) -> tuple[Reward, RoutingSummary]:
    reward = get_reward(reward_name)
    if unembedded:
        log.warning("%d pending backlog queries have no embedding yet and are left for the next run "
                    "(run `routerctl embed`)", unembedded)
    if budget is None and reward_param is None:
        reward_param = float(reward.sweep()[-1])  # the quality end of the sweep
    summary = RoutingSummary(version, reward_name, float("nan") if reward_param is None else float(reward_param),
                             budget_usd=budget, skipped_unembedded=int(unembedded))
    return reward, summary


def finish(con: duckdb.DuckDBPyConnection, decisions: Decisions, summary: RoutingSummary, *, router_name: str,
           flow_run_id: str | None, batch_size: int, pending: int,
           progress: Callable[[int, int], None] | None = None) -> RoutingSummary:
    """Fit the budget (if any), write every decision, drop the pending table."""
    if decisions.budget is not None:
        param, spend, quality = decisions.fit_budget()
        summary.reward_param = param
        log.info("budget $%.4f: %s parameter %.4g, predicted spend $%.4f, predicted quality %.4f",
                 decisions.budget, summary.reward, param, spend, quality)
    write_decisions(con, decisions.frame(), decisions.models, summary=summary, router_name=router_name,
                    flow_run_id=flow_run_id, batch_size=batch_size, pending=pending, progress=progress)
    execute(con, "routing/drop_pending")
    return summary


def route_backlog(con: duckdb.DuckDBPyConnection, predictor: Predictor, *, model_version: str, router_name: str,
                  encoder: str, reward_name: str = "linear", reward_param: float | None = None,
                  budget: float | None = None, batch_size: int = 50_000, flow_run_id: str | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  reference_model: str | None = None, quality_target: float | None = None,
                  exclude: Sequence[str] = (), price_factors: PriceFactors | None = None,
                  mix: tuple[float, float] | None = None, predictions: Predictions | None = None
                  ) -> RoutingSummary:
    """Route every pending backlog query with ``predictor`` and store the decisions.

    ``exclude`` names models of the predictor's pool that are never chosen (:func:`available`); the policy key
    records them, so decisions made without a model sit beside those made with the whole pool.

    With a ``reference_model`` (one of the predictor's models), the summary also gives the predicted spend had
    every routed query gone to it (``reference_spend_usd``, from the same cost predictions). ``quality_target``
    names the policy that chose ``reward_param`` (the decisions' ``policy`` key, :func:`policy_label`).
    ``price_factors`` rescale the predicted costs (:class:`Decisions`); those other than 1 are part of the policy
    key, so decisions made at other prices sit beside these. ``mix`` (dearer parameter, share) routes the prompts
    whose share key (``router.policy.share_keys``) is below the share with the dearer parameter (the quality
    target's mixed policy; each decision stores its own parameter). ``predictions`` computes the pending units'
    predictions (default :func:`in_process`; ``flows.scale`` predicts hash ranges on a Dask cluster)."""
    start = time.perf_counter()
    with bounded_memory(con):
        reward = get_reward(reward_name)
        param = reward_param if reward_param is not None or budget is not None else float(reward.sweep()[-1])
        prices = price_factors.label() if price_factors is not None else ""
        label = policy_label(param, budget, quality_target, exclude, prices, reward_name)
        available(predictor.models, exclude)  # refuse a bad exclusion before anything is staged
        pending, unembedded = stage_pending(con, encoder, model_version, label)
        reward, summary = start_summary(reward_name, reward_param, budget, model_version, unembedded)
        summary.policy = label
        vector = price_factors.vector(predictor.models) if prices else None
        mix = mix if budget is None else None
        decisions = Decisions(predictor.models, reward, summary.reward_param if budget is None else None, budget,
                              reference_model, exclude, price_factors=vector, mix=mix)
        summary.price_factors = price_factors.changed() if prices else {}
        if mix is not None:
            summary.mix_param, summary.mix_share = float(mix[0]), float(mix[1])
        if decisions.reference is not None:
            summary.reference_model = reference_model
        if pending > unembedded:
            predicted = Progress(log, f"routing with v{model_version}: predicted", unit="distinct prompts")
            for units, q_hat, c_hat in (predictions or in_process)(con, predictor, encoder, batch_size):
                decisions.add(units, q_hat, c_hat)
                predicted.advance(units.n)
        stored = Progress(log, f"routing with v{model_version}: decisions stored", pending, "queries")
        finish(con, decisions, summary, router_name=router_name, flow_run_id=flow_run_id, batch_size=batch_size,
               pending=pending, progress=progress or stored.update)
    summary.seconds = time.perf_counter() - start
    return summary


def pool_matches(stored: Sequence[str], model_pool: Sequence[str]) -> bool:
    return sorted(stored) == sorted(model_pool)
