"""RouterBench's evaluation protocol (quality–cost curves and AIQ), in pure numpy.

For every evaluation set (``eval_name``) of the test split and every router:

1. **Curve.** For each value of the router's reward sweep (``router.rewards``), the reward picks one model per
   prompt from the router's *predictions*; the point is ``(cost, perf)`` with ``perf`` = mean *true* score of the
   chosen models and ``cost`` = *sum* of their true costs (dollars for the whole eval set).
2. **Hull.** The non-decreasing upper concave hull of those points (:func:`nondecreasing_hull`): the upper
   convex hull sorted by cost, cut at its first highest point. Dominated, collinear and below-hull points go.
3. **AIQ.** Area under the hull, from the curve's own cheapest point to ``max_cost``, extended flat at the hull's
   last (highest) perf, divided by ``max_cost`` (:func:`aiq`). ``max_cost`` is per eval: the highest cost among the
   raw points of every compared curve (all routers, single models and the oracle).
4. **Max perf.** The best perf over the sweep, ties to the lower cost, with that cost.

A router's overall AIQ, max perf and cost at max perf are unweighted means over eval sets. Two reference routers
are always added: ``zero_router`` (the hull of the single models' points: the best one can do by mixing fixed
models at random, without looking at the prompt) and ``oracle`` (per prompt the model with the best true score,
ties to the cheapest true cost: one point per eval). Each single model ("always pick model j") is one point; the
best one (highest mean-over-evals perf, ties to lower mean cost) is reported as ``best_single_model``.

Missing data: a NaN true score counts as 0 (an unobserved answer is a failed answer). A NaN true cost cannot be
imputed: if a curve (router, single model or oracle) picks a (prompt, model) pair whose true cost is NaN,
:func:`evaluate` raises ``ValueError`` naming that curve and eval. Since every single model is evaluated, any NaN in
``cost_true`` raises: evaluation data must have dense costs. Costs must be ``>= 0``.

Deliberate differences from RouterBench's code (https://github.com/withmartian/routerbench, ``evaluation/AIQ.py``,
``evaluate_routers.py``, ``utils.py``, ``routers/knn_router.py``):

* **Hull.** RouterBench's ``get_non_descreasing_convex_hull_of`` is an O(p³) chord test that keeps every raw
  cost and lifts below-chord perfs onto the chord, then deletes points lower than their predecessor (it also
  fails on two-point inputs). Here it is an exact monotone-chain upper hull cut at the first maximum. The area is
  the same on well-formed inputs; the vertex list is smaller (no collinear or lifted points), and among points of
  equal cost the highest perf is used (RouterBench takes whichever sorts first).
* **max_cost.** RouterBench takes the largest cost among the hulls passed to one ``calc_AIQ`` call; here it is
  the largest cost among *all raw points* of all compared curves, single models and oracle included, so the
  denominator is fixed per eval and reported (``aiq_max_cost``). In practice it is the most expensive model's cost.
* **Oracle.** RouterBench reads a precomputed ``oracle_model_to_route_to`` column and charges 0 for prompts no
  model solves (``no_model_correct``); here the oracle picks the best true score with ties to the cheapest true
  cost, so an unsolved prompt costs the cheapest model's price.
* **Max perf ties.** RouterBench keeps the first strictly better perf in ascending willingness-to-pay order; here
  ties go to the lower cost.
* **NaN scores** count as 0 here; pandas' ``mean`` in RouterBench would skip them.
* **Zero router.** Defined in the RouterBench paper but not computed by its code; computed here.
* **Degenerate x-range.** If every cost of an eval is 0 (``max_cost == 0``) the AIQ is defined as the hull's
  highest perf (the limit of the normalised area); RouterBench would divide by zero.

**Pooled evaluation** (beside the per-eval protocol, which it leaves unchanged): the whole test split is one
backlog. Each curve's points are ``perf`` = mean true score over *all* test prompts (NaN = 0) and ``cost`` = sum
of true costs over all of them, for the same rewards and sweeps; hull and AIQ follow the same rules, with
``max_cost`` the largest total cost of any raw point of any curve on the pooled set. The best single model is the
one with the highest pooled perf (ties to the lower cost). From each router's pooled hull (vertices joined
linearly) come the figures people judge a router by: the cheapest hull cost reaching the best single model's
pooled perf (and 0.95 × it) as a fraction of that model's cost, and the hull perf at half its cost
(:func:`hull_cost_at`, :func:`hull_perf_at`).

The reward-side differences (per-prompt predicted dollar cost instead of a per-token price, ties to the cheaper
predicted cost) are documented in ``router.rewards``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from router.rewards import Reward, get_reward

__all__ = [
    "NOISE_LEVEL",
    "NOISE_Z",
    "ORACLE",
    "ZERO_ROUTER",
    "Curve",
    "EvaluationResult",
    "aiq",
    "evaluate",
    "hull_cost_at",
    "hull_perf_at",
    "max_perf_point",
    "noise_z",
    "nondecreasing_hull",
    "oracle_choice",
    "paired_aiq_se",
]

ORACLE = "oracle"
ZERO_ROUTER = "zero_router"
#: ``eval_name`` of the pooled curves (the whole test split as one backlog).
POOLED = "(pooled)"
#: Quality fractions of the best single model's pooled perf reported as cost ratios.
POOLED_TARGETS = {"cost_ratio_at_best_quality": 1.0, "cost_ratio_at_95": 0.95}
#: The one-sided level at which a shortfall stops counting as noise.
NOISE_LEVEL = 0.05


def noise_z(comparisons: int = 1) -> float:
    """Standard errors within which a shortfall counts as noise, at :data:`NOISE_LEVEL` over ``comparisons``
    one-sided comparisons made on the same rows (Bonferroni: each at ``NOISE_LEVEL / comparisons``), to three
    decimals: 1.645 for one, 2.326 for five."""
    if comparisons < 1:
        raise ValueError(f"comparisons must be >= 1, got {comparisons}")
    return round(NormalDist().inv_cdf(1.0 - NOISE_LEVEL / comparisons), 3)


#: :func:`noise_z` of one comparison (1.645). A calibrated quality ratio within it of the target reaches the target
#: (``router.policy``, docs/rewards.md); the gate's bar for a first version uses :func:`noise_z` of the number of
#: baselines it is the best of (``router.registry.gate``, docs/registry.md).
NOISE_Z = noise_z(1)
#: Relative tolerance when a hull "reaches" a target perf (float sums of the same scores differ in the last bits).
_REACH_RTOL = 1e-9

#: ``(q_hat, c_hat, reward)`` of one router on the test rows: two ``(n, m)`` arrays and a ``REWARDS`` key (or a
#: :class:`~router.rewards.Reward` instance, e.g. one with another sweep grid).
Prediction = tuple[np.ndarray, np.ndarray, str | Reward]


# --------------------------------------------------------------------------------------------------- primitives


def nondecreasing_hull(points: np.ndarray) -> np.ndarray:
    """Non-decreasing upper concave hull of ``(cost, perf)`` points.

    Among points of equal cost only the highest perf is kept; the upper convex hull is built left to right
    (Andrew's monotone chain, collinear points dropped), then cut after its first highest point. The result is
    strictly increasing in both cost and perf, with non-increasing slopes (concave), and starts at the cheapest
    point.

    Args:
        points: ``(p, 2)`` array of ``(cost, perf)``, ``p >= 1``, finite.

    Returns:
        ``(h, 2)`` float64 array of hull vertices sorted by cost, ``1 <= h <= p``.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] == 0:
        raise ValueError(f"points must be a non-empty (p, 2) array, got shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError("points must be finite")
    # Sort by cost ascending, perf descending; keep the first (highest-perf) point of each cost.
    pts = pts[np.lexsort((-pts[:, 1], pts[:, 0]))]
    keep = np.ones(len(pts), dtype=bool)
    keep[1:] = pts[1:, 0] != pts[:-1, 0]
    pts = pts[keep]

    hull: list[int] = []
    for k in range(len(pts)):  # O(p) over a curve's few dozen points
        x, y = pts[k]
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = pts[hull[-2]], pts[hull[-1]]
            # Cross product of (p1→p2, p1→p): >= 0 means p2 lies on or below the chord p1→p: not an upper vertex.
            if (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1) >= 0:
                hull.pop()
            else:
                break
        hull.append(k)
    out = pts[hull]
    return out[: int(np.argmax(out[:, 1])) + 1]  # first maximum: drop the decreasing tail


def aiq(hull: np.ndarray, max_cost: float) -> float:
    """Average improvement in quality: normalised area under a hull, extended flat to ``max_cost``.

    ``AIQ = [trapezoid area of the hull from its first to its last vertex + last_perf · (max_cost − last_cost)]
    / max_cost``. The stretch from cost 0 to the hull's cheapest point contributes nothing (as in RouterBench).
    If ``max_cost == 0`` (all costs zero) the AIQ is the hull's last perf.

    Args:
        hull: ``(h, 2)`` output of :func:`nondecreasing_hull`.
        max_cost: right end of the x-range, ``>=`` the hull's last cost.
    """
    h = np.asarray(hull, dtype=np.float64)
    x, y = h[:, 0], h[:, 1]
    if max_cost < x[-1]:
        raise ValueError(f"max_cost {max_cost} is below the hull's last cost {x[-1]}")
    if max_cost <= 0.0:
        return float(y[-1])
    area = float(np.sum(np.diff(x) * (y[1:] + y[:-1])) / 2.0) + float(y[-1]) * (max_cost - float(x[-1]))
    return area / max_cost


def max_perf_point(points: np.ndarray) -> tuple[float, float]:
    """``(perf, cost)`` of the best-performing point; ties go to the lower cost."""
    pts = np.asarray(points, dtype=np.float64)
    best = np.lexsort((pts[:, 0], -pts[:, 1]))[0]  # primary: perf descending; secondary: cost ascending
    return float(pts[best, 1]), float(pts[best, 0])


def hull_cost_at(hull: np.ndarray, target: float) -> float | None:
    """Cheapest cost at which a hull (vertices joined linearly) reaches ``perf >= target``; ``None`` if never.

    A target at or below the hull's first perf costs its first (cheapest) vertex; a target within
    ``1e-9`` (relative) of a vertex's perf counts as reached there.
    """
    h = np.asarray(hull, dtype=np.float64)
    x, y = h[:, 0], h[:, 1]
    tol = _REACH_RTOL * max(abs(float(target)), 1.0)
    reached = np.flatnonzero(y >= target - tol)
    if reached.size == 0:
        return None
    k = int(reached[0])
    if k == 0 or y[k] - tol <= target:  # the first vertex, or the target is (numerically) this vertex's perf
        return float(x[k])
    return float(x[k - 1] + (target - y[k - 1]) * (x[k] - x[k - 1]) / (y[k] - y[k - 1]))


def hull_perf_at(hull: np.ndarray, cost: float) -> float | None:
    """Perf of a hull (vertices joined linearly, flat after its last vertex) at ``cost``; ``None`` below its
    cheapest vertex (nothing on the curve costs that little)."""
    h = np.asarray(hull, dtype=np.float64)
    x, y = h[:, 0], h[:, 1]
    if cost < x[0]:
        return None
    return float(np.interp(cost, x, y))  # flat beyond the last vertex, like the AIQ's extension


def oracle_choice(quality_true: np.ndarray, cost_true: np.ndarray) -> np.ndarray:
    """Per row, the model with the highest true score (NaN = 0), ties to the cheapest true cost, then lowest index.

    A NaN cost among tied models never wins a tie (it is treated as +inf here; :func:`evaluate` then raises if
    it is chosen anyway because every tied model has a NaN cost).
    """
    s = np.nan_to_num(np.asarray(quality_true, dtype=np.float64), nan=0.0)
    c = np.asarray(cost_true, dtype=np.float64)
    tied = s == s.max(axis=1, keepdims=True)
    c_tied = np.where(tied & ~np.isnan(c), c, np.inf)
    choice = np.argmin(c_tied, axis=1)  # first minimum = lowest index among equal costs
    all_nan = ~np.isfinite(c_tied).any(axis=1)
    choice[all_nan] = np.argmax(tied[all_nan], axis=1)
    return choice.astype(np.int64, copy=False)


# ------------------------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class Curve:
    """One router's quality–cost curve on one eval set.

    ``points`` are the raw ``(cost, perf)`` points in sweep order (``params[k]`` produced ``points[k]``; ``params``
    is NaN for curves without a sweep: single models, zero router (points in model order) and oracle).
    """

    name: str
    eval_name: str
    points: np.ndarray  # (p, 2) raw (cost, perf)
    params: np.ndarray  # (p,) sweep value per point, or NaN
    hull: np.ndarray  # (h, 2) non-decreasing concave hull, sorted by cost
    aiq: float
    max_perf: float
    max_perf_cost: float

    def metrics(self) -> dict[str, float]:
        return {"aiq": self.aiq, "max_perf": self.max_perf, "max_perf_cost": self.max_perf_cost}


@dataclass(frozen=True)
class EvaluationResult:
    """Everything :func:`evaluate` computed.

    Attributes:
        metrics: the JSON-ready summary (see :func:`evaluate`).
        curves: ``curves[eval_name][router]`` for every prediction, ``zero_router`` and ``oracle``.
        single_models: ``single_models[eval_name][model]``: one-point curves of "always pick this model".
        eval_names: eval sets in the order used everywhere (sorted).
        models: model names (column order).
        rewards: reward name of every prediction router.
        pooled: ``pooled[router]``: curves on the whole test split as one backlog (``eval_name`` ``(pooled)``).
        pooled_single_models: ``pooled_single_models[model]``: one-point pooled curves of every single model.
    """

    metrics: dict[str, Any]
    curves: dict[str, dict[str, Curve]]
    single_models: dict[str, dict[str, Curve]]
    eval_names: tuple[str, ...]
    models: tuple[str, ...]
    rewards: dict[str, str] = field(default_factory=dict)
    pooled: dict[str, Curve] = field(default_factory=dict)
    pooled_single_models: dict[str, Curve] = field(default_factory=dict)

    @property
    def router_names(self) -> list[str]:
        """Prediction routers (in input order), then ``zero_router`` and ``oracle``."""
        return list(self.metrics["routers"])


# --------------------------------------------------------------------------------------------------- evaluation


class _Aggregator:
    """Per-eval mean true score and summed true cost of chosen models, vectorised over sweep values."""

    def __init__(
        self, scores: np.ndarray, costs: np.ndarray, eval_idx: np.ndarray, eval_names: Sequence[str]
    ) -> None:
        self.scores, self.costs, self.eval_idx, self.eval_names = scores, costs, eval_idx, eval_names
        n_evals = len(eval_names)
        self.onehot = (eval_idx[None, :] == np.arange(n_evals)[:, None]).astype(np.float64)  # (E, n)
        self.counts = self.onehot.sum(axis=1)
        self.rows = np.arange(scores.shape[0])

    def __call__(self, choices: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``choices`` ``(p, n)`` model indices → ``(perf, cost)``, each ``(p, E)``."""
        s = self.scores[self.rows, choices]
        c = self.costs[self.rows, choices]
        nan = np.isnan(c)
        if nan.any():
            bad = sorted({self.eval_names[e] for e in self.eval_idx[np.nonzero(nan.any(axis=0))[0]]})
            raise ValueError(
                f"{name!r} chose (prompt, model) pairs whose true cost is NaN on eval(s) {bad}: "
                "evaluation needs dense true costs"
            )
        return (s @ self.onehot.T) / self.counts, c @ self.onehot.T


def _reward(reward: str | Reward) -> Reward:
    return reward if isinstance(reward, Reward) else get_reward(reward)


def _curve(name: str, eval_name: str, points: np.ndarray, params: np.ndarray, max_cost: float) -> Curve:
    hull = nondecreasing_hull(points)
    perf, cost = max_perf_point(points)
    return Curve(name, eval_name, points, params, hull, aiq(hull, max_cost), perf, cost)


def _mean_metrics(curves: Sequence[Curve]) -> dict[str, float]:
    return {
        "aiq": float(np.mean([c.aiq for c in curves])),
        "max_perf": float(np.mean([c.max_perf for c in curves])),
        "max_perf_cost": float(np.mean([c.max_perf_cost for c in curves])),
    }


def _pooled(
    q_true: np.ndarray,
    c_true: np.ndarray,
    raw_choices: Mapping[str, tuple[np.ndarray, np.ndarray]],
    oracle: np.ndarray,
    models: Sequence[str],
) -> tuple[dict[str, Any], dict[str, Curve], dict[str, Curve]]:
    """The pooled block of the metrics, the pooled curves and the pooled single-model curves.

    ``raw_choices``: router name → (``(p, n)`` choices over its sweep, ``(p,)`` sweep values)."""
    n, m = q_true.shape
    agg = _Aggregator(np.nan_to_num(q_true, nan=0.0), c_true, np.zeros(n, dtype=np.int64), [POOLED])
    points: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, (choices, params) in raw_choices.items():
        perf, cost = agg(choices, name)
        points[name] = (np.column_stack([cost[:, 0], perf[:, 0]]), params)
    single = np.vstack([np.column_stack(agg(np.full((1, n), j), models[j]))[:, ::-1] for j in range(m)])
    oracle_perf, oracle_cost = agg(oracle[None, :], ORACLE)
    points[ZERO_ROUTER] = (single, np.full(m, np.nan))
    points[ORACLE] = (np.array([[oracle_cost[0, 0], oracle_perf[0, 0]]]), np.full(1, np.nan))
    max_cost = float(max(p[:, 0].max() for p, _ in points.values()))

    curves = {name: _curve(name, POOLED, pts, params, max_cost) for name, (pts, params) in points.items()}
    singles = {model: _curve(model, POOLED, single[j : j + 1], np.full(1, np.nan), max_cost)
               for j, model in enumerate(models)}
    best = int(np.lexsort((np.arange(m), single[:, 0], -single[:, 1]))[0])  # perf desc, cost asc, index
    best_cost, best_perf = float(single[best, 0]), float(single[best, 1])

    def ratio(cost: float | None) -> float | None:
        if cost is None:
            return None
        return cost / best_cost if best_cost > 0 else (0.0 if cost == 0 else None)

    routers: dict[str, dict[str, float | None]] = {}
    for name, curve in curves.items():
        routers[name] = {
            **curve.metrics(),
            **{key: ratio(hull_cost_at(curve.hull, frac * best_perf)) for key, frac in POOLED_TARGETS.items()},
            "quality_at_half_cost": hull_perf_at(curve.hull, 0.5 * best_cost),
        }
    block = {
        "aiq_max_cost": max_cost,
        "best_single_model": {"name": models[best], "perf": best_perf, "cost": best_cost},
        "routers": routers,
    }
    return block, curves, singles


def evaluate(
    predictions: Mapping[str, Prediction],
    quality_true: np.ndarray,
    cost_true: np.ndarray,
    eval_names: np.ndarray | Sequence[str],
    models: Sequence[str],
    *,
    dataset: str = "",
    n_train: int = 0,
    n_test: int | None = None,
) -> EvaluationResult:
    """Evaluate routers' predictions on the test rows with RouterBench's protocol (see the module docstring).

    Args:
        predictions: router name → ``(q_hat, c_hat, reward_name)``, ``q_hat``/``c_hat`` ``(n, m)`` predictions on
            the test rows, ``reward_name`` a key of ``router.rewards.REWARDS``. Names ``zero_router`` and
            ``oracle`` are reserved.
        quality_true: ``(n, m)`` true scores in [0, 1]; NaN counts as 0.
        cost_true: ``(n, m)`` true costs in dollars, ``>= 0``; a chosen NaN cost raises ``ValueError``.
        eval_names: ``(n,)`` eval set of each row.
        models: the ``m`` model names (column order).
        dataset, n_train, n_test: copied into the metrics; ``n_test`` defaults to ``n``.

    Returns:
        An :class:`EvaluationResult` whose ``metrics`` is::

            {"dataset": str, "n_train": int, "n_test": int,
             "routers": {name: {"aiq", "max_perf", "max_perf_cost"}},          # predictions + zero_router + oracle
             "per_eval": {eval: {name: {"aiq", "max_perf", "max_perf_cost"}}},
             "aiq_max_cost": {eval: float},
             "best_single_model": {"name": str, "perf": float, "cost": float},
             "pooled": {"aiq_max_cost": float,                                   # the whole test split
                        "best_single_model": {"name", "perf", "cost"},
                        "routers": {name: {"aiq", "max_perf", "max_perf_cost",
                                           "cost_ratio_at_best_quality", "cost_ratio_at_95",  # or None
                                           "quality_at_half_cost"}}}}                         # or None
    """
    q_true = np.asarray(quality_true, dtype=np.float64)
    c_true = np.asarray(cost_true, dtype=np.float64)
    evals_arr = np.asarray(eval_names).astype(str)
    models = [str(m) for m in models]
    if q_true.ndim != 2 or c_true.shape != q_true.shape:
        raise ValueError(f"quality_true and cost_true must be (n, m) of one shape, got {q_true.shape}, {c_true.shape}")
    n, m = q_true.shape
    if n == 0 or m == 0:
        raise ValueError("nothing to evaluate: no test rows or no models")
    if evals_arr.shape != (n,):
        raise ValueError(f"eval_names must have shape ({n},), got {evals_arr.shape}")
    if len(models) != m:
        raise ValueError(f"{len(models)} model names for {m} columns")
    if (c_true < 0).any():
        raise ValueError("true costs must be >= 0")
    for reserved in (ZERO_ROUTER, ORACLE):
        if reserved in predictions:
            raise ValueError(f"router name {reserved!r} is reserved")
    rewards = {name: _reward(pred[2]).name for name, pred in predictions.items()}  # fail fast on bad names
    for name, (q_hat, c_hat, _) in predictions.items():
        if np.shape(q_hat) != (n, m) or np.shape(c_hat) != (n, m):
            raise ValueError(
                f"router {name!r}: predictions must be ({n}, {m}), got {np.shape(q_hat)} and {np.shape(c_hat)}"
            )

    evals, eval_idx = np.unique(evals_arr, return_inverse=True)
    evals_list = [str(e) for e in evals]
    agg = _Aggregator(np.nan_to_num(q_true, nan=0.0), c_true, eval_idx, evals_list)

    # (perf, cost) as (p, E) arrays, and the sweep value of each of the p points.
    raw: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    raw_choices: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, (q_hat, c_hat, reward_name) in predictions.items():
        reward = _reward(reward_name)
        raw_choices[name] = (reward.choose_sweep(q_hat, c_hat), reward.sweep())
        perf, cost = agg(raw_choices[name][0], name)
        raw[name] = (perf, cost, raw_choices[name][1])
    single_choices = np.broadcast_to(np.arange(m)[:, None], (m, n))
    single_perf = np.empty((m, len(evals_list)))
    single_cost = np.empty((m, len(evals_list)))
    for j in range(m):  # one model at a time, so a NaN cost error names the model
        perf_j, cost_j = agg(single_choices[j : j + 1], models[j])
        single_perf[j], single_cost[j] = perf_j[0], cost_j[0]
    oracle = oracle_choice(q_true, c_true)
    oracle_perf, oracle_cost = agg(oracle[None, :], ORACLE)

    no_params = np.full(m, np.nan)
    all_costs = np.vstack([single_cost, oracle_cost, *(c for _, c, _ in raw.values())])  # (P, E)
    max_costs = all_costs.max(axis=0)

    curves: dict[str, dict[str, Curve]] = {}
    singles: dict[str, dict[str, Curve]] = {}
    for e, ev in enumerate(evals_list):
        mc = float(max_costs[e])
        curves[ev] = {
            name: _curve(name, ev, np.column_stack([cost[:, e], perf[:, e]]), params, mc)
            for name, (perf, cost, params) in raw.items()
        }
        single_pts = np.column_stack([single_cost[:, e], single_perf[:, e]])
        curves[ev][ZERO_ROUTER] = _curve(ZERO_ROUTER, ev, single_pts, no_params, mc)
        oracle_pt = np.array([[oracle_cost[0, e], oracle_perf[0, e]]])
        curves[ev][ORACLE] = _curve(ORACLE, ev, oracle_pt, np.full(1, np.nan), mc)
        singles[ev] = {
            model: _curve(model, ev, single_pts[j : j + 1], np.full(1, np.nan), mc) for j, model in enumerate(models)
        }

    names = [*predictions, ZERO_ROUTER, ORACLE]
    mean_perf, mean_cost = single_perf.mean(axis=1), single_cost.mean(axis=1)
    best = int(np.lexsort((np.arange(m), mean_cost, -mean_perf))[0])  # perf desc, then cost asc, then index
    metrics: dict[str, Any] = {
        "dataset": str(dataset),
        "n_train": int(n_train),
        "n_test": int(n if n_test is None else n_test),
        "routers": {name: _mean_metrics([curves[ev][name] for ev in evals_list]) for name in names},
        "per_eval": {ev: {name: curves[ev][name].metrics() for name in names} for ev in evals_list},
        "aiq_max_cost": {ev: float(max_costs[e]) for e, ev in enumerate(evals_list)},
        "best_single_model": {"name": models[best], "perf": float(mean_perf[best]), "cost": float(mean_cost[best])},
    }
    metrics["pooled"], pooled, pooled_singles = _pooled(q_true, c_true, raw_choices, oracle, models)
    return EvaluationResult(metrics, curves, singles, tuple(evals_list), tuple(models), rewards, pooled,
                            pooled_singles)


# ------------------------------------------------------------------------------------------------------ noise


def paired_aiq_se(first: Prediction, second: Prediction, quality_true: np.ndarray, cost_true: np.ndarray,
                  eval_names: np.ndarray | Sequence[str], *, replicates: int = 200, seed: int = 0) -> float:
    """Standard error of ``AIQ(first) − AIQ(second)`` (mean over eval sets, as :func:`evaluate` scores them) on
    these test rows: the standard deviation of the difference over ``replicates`` paired bootstrap resamples of
    the rows, drawn within each eval set (so every resample keeps the evals' sizes), both routers scored on the
    same resample. Each router keeps the choices its predictions make on the rows; in a resample an eval's
    ``max_cost`` is the largest cost of any raw point of the two curves, of any single model or of the oracle on it
    (the evaluation's, but for other routers' points; in practice the dearest model's cost).
    Deterministic for a ``seed``. The data must be as :func:`evaluate` accepts it (dense costs)."""
    q_true = np.nan_to_num(np.asarray(quality_true, dtype=np.float64), nan=0.0)
    c_true = np.asarray(cost_true, dtype=np.float64)
    evals_arr = np.asarray(eval_names).astype(str)
    choices = [_reward(pred[2]).choose_sweep(pred[0], pred[1]) for pred in (first, second)]  # (p, n) each
    oracle = oracle_choice(q_true, c_true)
    rng = np.random.default_rng(seed)
    evals = np.unique(evals_arr)
    difference = np.zeros(replicates)
    for ev in evals:
        rows = np.flatnonzero(evals_arr == ev)
        draws = rng.integers(0, rows.size, size=(replicates, rows.size))
        weights = np.stack([np.bincount(d, minlength=rows.size) for d in draws]).astype(np.float64)  # (B, n_e)
        curves = []
        for chosen in choices:
            picked = chosen[:, rows]  # (p, n_e)
            local = np.arange(rows.size)[None, :]
            scores, costs = q_true[rows][local, picked], c_true[rows][local, picked]
            curves.append((weights @ scores.T / rows.size, weights @ costs.T))  # perf, cost: (B, p)
        references = [(weights @ c_true[rows]).max(axis=1), weights @ c_true[rows, oracle[rows]]]
        max_cost = np.max([*references, *(cost.max(axis=1) for _, cost in curves)], axis=0)
        for b in range(replicates):
            a, z = (aiq(nondecreasing_hull(np.column_stack([cost[b], perf[b]])), float(max_cost[b]))
                    for perf, cost in curves)
            difference[b] += (a - z) / evals.size
    return float(np.std(difference, ddof=1)) if replicates > 1 else 0.0
