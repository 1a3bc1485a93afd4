"""What-if routing scenarios for analysts: the champion's predicted spend, quality and model mix over the sweep.

For the pending backlog (queries the champion has not decided), or every backlog query when none is pending,
the champion predicts every (query, model) pair once; then for every value of the reward's sweep the reward
chooses a model per query, and the predicted total spend, mean predicted quality and share of each model are
stored in ``routing_scenarios`` / ``routing_scenario_mix`` (migration 006, view ``latest_scenarios``, Parquet
snapshot ``latest_scenarios.parquet``). Two more points are stored: ``policy`` (the parameter the default
quality-target policy would route with, ``router.policy``; for a mixed policy, the expectation of its two
parameters' points weighted by their shares, stored under the cheaper parameter) and ``reference`` (every query to the best single
model; ``reward_param`` 0). A PNG plots spend against expected quality with both marked. No decision is written.
The predicted costs are rescaled by the price factors in force (``router.prices``), and models left out of the
pool (``ROUTER_POOL_EXCLUDE``, ``--exclude-model``) are never chosen, as batch routing does; the reference point
is the best single model whatever the exclusions (what the routing is compared with).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl

from router.prices import PriceFactors
from router.rewards import Reward, get_reward
from router.routing import Predictor, available, iter_units, predict_units, stage_pending
from router.storage import execute, transaction

log = logging.getLogger(__name__)

__all__ = ["ScenarioRun", "scenario_points", "plot_scenarios", "run_scenarios"]


@dataclass
class ScenarioRun:
    run_id: str
    model_version: str
    backlog: str  # pending | all
    queries: int
    reward: str
    points: pl.DataFrame  # point, reward_param, reference_model, predicted_spend_usd, predicted_quality
    mix: pl.DataFrame  # point, reward_param, model, queries, share
    plot: Path | None = None
    notes: list[str] = field(default_factory=list)
    prices: str = ""  # the price factors other than 1 the costs were rescaled by (PriceFactors.label())
    excluded: str = ""  # models left out of the pool, sorted, comma-separated ('' when none)

    def summary(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "model_version": self.model_version, "backlog": self.backlog,
                "queries": self.queries, "reward": self.reward, "points": self.points.height,
                "plot": str(self.plot) if self.plot else None, "prices": self.prices, "excluded": self.excluded}


def scenario_points(reward: Reward, params: np.ndarray, q: np.ndarray, c: np.ndarray, weights: np.ndarray,
                    keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted ``(spend (P,), mean quality (P,), queries per model (P, m))`` of the reward's choices at every
    value of ``params`` (``reward.choose`` per value: ties to the cheaper predicted cost), among the columns
    ``keep`` (default: every model; ``router.routing.available``)."""
    w = np.asarray(weights, dtype=np.float64)
    rows = np.arange(q.shape[0])
    keep = np.arange(q.shape[1]) if keep is None else np.asarray(keep)
    spend, quality = np.zeros(params.size), np.zeros(params.size)
    counts = np.zeros((params.size, q.shape[1]))
    total = max(float(w.sum()), 1.0)
    for k, param in enumerate(params):
        chosen = keep[reward.choose(q[:, keep], c[:, keep], float(param))]
        spend[k] = w @ c[rows, chosen]
        quality[k] = (w @ q[rows, chosen]) / total
        counts[k] = np.bincount(chosen, weights=w, minlength=q.shape[1])
    return spend, quality, counts


def _frames(models: list[str], labels: list[str], params: np.ndarray, spend: np.ndarray, quality: np.ndarray,
            counts: np.ndarray, reference: str | None) -> tuple[pl.DataFrame, pl.DataFrame]:
    points = pl.DataFrame({"point": labels, "reward_param": params.astype(np.float64),
                           "reference_model": [reference if lab == "reference" else None for lab in labels],
                           "predicted_spend_usd": spend, "predicted_quality": quality},
                          schema_overrides={"reference_model": pl.String})
    total = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)
    k, j = np.nonzero(counts)
    mix = pl.DataFrame({"point": [labels[i] for i in k], "reward_param": params[k].astype(np.float64),
                        "model": [models[i] for i in j], "queries": counts[k, j].round().astype(np.int64),
                        "share": share[k, j]}, schema_overrides={"point": pl.String, "model": pl.String})
    return points, mix


def plot_scenarios(run: ScenarioRun, path: Path) -> Path:
    """Predicted spend vs mean predicted quality over the sweep; the policy's point and the best single model
    marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    pts = run.points
    sweep = pts.filter(pl.col("point") == "sweep").sort("reward_param")
    ax.plot(sweep["predicted_spend_usd"], sweep["predicted_quality"], "o-", ms=4, label=f"{run.reward} sweep")
    for label, style in (("policy", dict(marker="*", s=260, color="gold", edgecolors="black")),
                         ("reference", dict(marker="o", s=120, facecolors="none", edgecolors="red"))):
        row = pts.filter(pl.col("point") == label)
        if row.height:
            name = (f"default policy ({run.reward} parameter {row['reward_param'][0]:.4g})" if label == "policy"
                    else f"best single model: {row['reference_model'][0]}")
            ax.scatter(row["predicted_spend_usd"], row["predicted_quality"], zorder=5, label=name, **style)
    if (pts["predicted_spend_usd"] > 0).all():
        ax.set_xscale("log")
    which = "pending backlog" if run.backlog == "pending" else "whole backlog"
    ax.set_xlabel(f"predicted spend of the {which} ($, {run.queries} queries)")
    ax.set_ylabel("mean predicted quality")
    ax.set_title(f"What-if routing scenarios, champion v{run.model_version}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def run_scenarios(con: duckdb.DuckDBPyConnection, predictor: Predictor, *, model_version: str, encoder: str,
                  reward_name: str, policy_param: float | None, reference_model: str | None,
                  batch_size: int = 50_000, out_dir: Path | None = None,
                  price_factors: PriceFactors | None = None,
                  policy_mix: tuple[float, float] | None = None, exclude: Sequence[str] = ()) -> ScenarioRun:
    """Predict the pending (else the whole) backlog once and store its scenarios; returns what was stored.
    ``price_factors`` rescale the predicted costs of each model (:class:`router.prices.PriceFactors`); the models
    ``exclude`` names are never chosen (an unknown name or an empty pool is a :class:`router.routing.PoolError`)."""
    reward = get_reward(reward_name)
    keep = available(predictor.models, exclude)
    pending, unembedded = stage_pending(con, encoder, model_version)
    backlog = "pending"
    if pending - unembedded == 0:
        execute(con, "scenarios/stage_all", {"encoder": encoder})
        backlog = "all"
    qs, cs, ws = [], [], []
    scale = price_factors.vector(predictor.models) if price_factors is not None else 1.0
    for units in iter_units(con, encoder, batch_size):
        q, c = predict_units(predictor, units)
        qs.append(np.asarray(q, dtype=np.float64))
        cs.append(np.asarray(c, dtype=np.float64) * scale)
        ws.append(units.n_queries.astype(np.float64))
    execute(con, "routing/drop_pending")
    models = list(predictor.models)
    m = len(models)
    q = np.concatenate(qs) if qs else np.zeros((0, m))
    c = np.concatenate(cs) if cs else np.zeros((0, m))
    w = np.concatenate(ws) if ws else np.zeros(0)
    params = reward.sweep()
    labels = ["sweep"] * params.size
    if policy_param is not None:
        params, labels = np.append(params, policy_param), [*labels, "policy"]
    spend, quality, counts = scenario_points(reward, params, q, c, w, keep)
    if policy_param is not None and policy_mix is not None:  # the mix's expectation (its share of each parameter)
        dear_spend, dear_quality, dear_counts = scenario_points(reward, np.array([policy_mix[0]]), q, c, w, keep)
        share = float(policy_mix[1])
        spend[-1] = (1.0 - share) * spend[-1] + share * dear_spend[0]
        quality[-1] = (1.0 - share) * quality[-1] + share * dear_quality[0]
        counts = counts.astype(np.float64)
        counts[-1] = (1.0 - share) * counts[-1] + share * dear_counts[0]
    if reference_model in models:
        j = models.index(reference_model)
        total = max(float(w.sum()), 1.0)
        params, labels = np.append(params, 0.0), [*labels, "reference"]
        spend = np.append(spend, w @ c[:, j])
        quality = np.append(quality, (w @ q[:, j]) / total)
        counts = np.vstack([counts, np.eye(m)[j] * w.sum()])
    points, mix = _frames(models, labels, params, spend, quality, counts, reference_model)
    run = ScenarioRun(datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6], model_version,
                      backlog, int(w.sum()), reward_name, points, mix,
                      prices=price_factors.label() if price_factors is not None else "",
                      excluded=",".join(sorted(set(exclude))))
    params_sql = {"run_id": run.run_id, "now": datetime.now(UTC).replace(tzinfo=None), "version": model_version,
                  "backlog": backlog, "queries": run.queries, "reward": reward_name, "prices": run.prices,
                  "excluded": run.excluded}
    with transaction(con):
        con.register("staged_points", points.to_arrow())
        con.register("staged_mix", mix.to_arrow())
        try:
            execute(con, "scenarios/insert_points", params_sql)
            execute(con, "scenarios/insert_mix", params_sql)
        finally:
            con.unregister("staged_points")
            con.unregister("staged_mix")
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        run.plot = plot_scenarios(run, out_dir / f"scenarios_{run.run_id}.png")
    log.info("scenario run %s: %d points for %s", run.run_id, points.height, backlog_queries(run.queries, backlog))
    return run


def backlog_queries(queries: int, backlog: str) -> str:
    """``all 953 backlog queries`` or ``12 pending backlog queries``: the part of the backlog a scenario run read."""
    return f"all {queries} backlog queries" if backlog == "all" else f"{queries} {backlog} backlog queries"


def scenarios_step(settings: Any, *, reward: str | None = None, exclude: Sequence[str] | None = None
                   ) -> dict[str, Any]:
    """The nightly/CLI step: the champion's scenarios for the pending (else whole) backlog, the policy point at
    ``ROUTER_ROUTE_QUALITY_TARGET``, without the models ``exclude`` names (default ``ROUTER_POOL_EXCLUDE``); the
    PNG goes to ``reports/scenarios/`` (and ``latest.png``)."""
    import shutil

    from router import champion
    from router.nightly import open_store

    plan = champion.plan(settings, reward=reward, from_settings=False)  # the quality target's point
    if plan is None:
        return {"model_version": None, "reason": "no champion"}
    out_dir = settings.reports / "scenarios"
    with open_store(settings) as con:
        run = run_scenarios(con, plan.router, model_version=plan.version, encoder=settings.encoder,
                            reward_name=plan.reward, policy_param=plan.reward_param,
                            reference_model=plan.reference_model, batch_size=settings.route_batch_size,
                            out_dir=out_dir, price_factors=plan.price_factors(con), policy_mix=plan.mix,
                            exclude=settings.pool_exclude if exclude is None else exclude)
    if run.plot is not None:
        shutil.copy2(run.plot, out_dir / "latest.png")
    return run.summary()
