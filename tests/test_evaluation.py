"""RouterBench evaluation protocol on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from router.evaluation import (
    EvaluationResult,
    aiq,
    evaluate,
    hull_cost_at,
    hull_perf_at,
    max_perf_point,
    nondecreasing_hull,
    oracle_choice,
    paired_aiq_se,
)
from router.rewards import EXPONENTIAL_TAUS, ExponentialReward

# ------------------------------------------------------------------------------------------------------- hull


def test_hull_drops_dominated_and_non_concave_points() -> None:
    points = np.array([[1, 0.2], [2, 0.5], [2.5, 0.3], [3, 0.55], [4, 0.9], [5, 0.6], [2, 0.1]])
    # (2.5, .3) and (2, .1) are dominated by (2, .5); (3, .55) lies below the chord (2, .5)→(4, .9) (0.7 at x=3);
    # (5, .6) is after the maximum.
    np.testing.assert_allclose(nondecreasing_hull(points), [[1, 0.2], [2, 0.5], [4, 0.9]])


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        ([[0, 0.0], [1, 0.5], [2, 1.0]], [[0, 0.0], [2, 1.0]]),  # collinear middle point dropped
        ([[3, 0.7]], [[3, 0.7]]),  # single point
        ([[1, 0.5], [2, 0.5]], [[1, 0.5]]),  # flat: the cheaper one
        ([[1, 0.6], [2, 0.5]], [[1, 0.6]]),  # decreasing (RouterBench's version crashes on this)
        ([[2, 0.9], [1, 0.2]], [[1, 0.2], [2, 0.9]]),  # unsorted input; cheapest point kept though lowest
        ([[1, 0.2], [1, 0.4], [3, 0.5]], [[1, 0.4], [3, 0.5]]),  # equal costs: highest perf
    ],
)
def test_hull_small_cases(points: list[list[float]], expected: list[list[float]]) -> None:
    np.testing.assert_allclose(nondecreasing_hull(np.array(points, dtype=float)), expected)


def test_hull_properties_on_random_points() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        pts = np.column_stack([rng.random(30) * 10, rng.random(30)])
        hull = nondecreasing_hull(pts)
        assert np.all(np.diff(hull[:, 0]) > 0) and np.all(np.diff(hull[:, 1]) > 0)
        slopes = np.diff(hull[:, 1]) / np.diff(hull[:, 0])
        assert np.all(np.diff(slopes) < 0)  # strictly concave
        assert hull[0, 0] == pts[:, 0].min() and hull[-1, 1] == pts[:, 1].max()
        inside = pts[:, 0] <= hull[-1, 0]
        assert np.all(pts[inside, 1] <= np.interp(pts[inside, 0], hull[:, 0], hull[:, 1]) + 1e-12)


# -------------------------------------------------------------------------------------------------------- AIQ


def test_aiq_trapezoids_plus_flat_extension() -> None:
    hull = np.array([[1, 0.2], [2, 0.5], [4, 0.9]])
    # (2−1)·(0.2+0.5)/2 = 0.35;  (4−2)·(0.5+0.9)/2 = 1.4;  flat 0.9·(10−4) = 5.4;  (0.35+1.4+5.4)/10 = 0.715
    assert aiq(hull, 10.0) == pytest.approx(0.715)
    # Single point: 0.8·(5−3)/5 = 0.32 (nothing counted before the curve's cheapest point).
    assert aiq(np.array([[3, 0.8]]), 5.0) == pytest.approx(0.32)
    assert aiq(np.array([[0.0, 0.6]]), 0.0) == 0.6  # degenerate all-zero costs
    with pytest.raises(ValueError, match="below"):
        aiq(hull, 3.0)


def test_max_perf_ties_go_to_lower_cost() -> None:
    assert max_perf_point(np.array([[3, 0.8], [1, 0.8], [2, 0.5], [0.5, 0.79]])) == (0.8, 1.0)


def test_oracle_best_true_score_ties_to_cheapest() -> None:
    q = np.array([[1, 1, 0], [0, 0, 0], [0.5, np.nan, 0.7], [np.nan, 0.0, np.nan]])
    c = np.array([[3, 2, 1], [5, 4, 6], [1, 1, 1], [1, 2, 0.5]])
    # row 3: NaN scores count as 0, so all three tie at 0 → cheapest (0.5) is model 2.
    np.testing.assert_array_equal(oracle_choice(q, c), [1, 1, 2, 2])


# --------------------------------------------------------------------------------------------- full protocol
#
# Models A (cheap), B, C (expensive); evals "x" (prompts p0, p1) and "y" (p2); rows interleaved p0, p2, p1.
#   p0 (x): quality A=1 B=1   C=1   cost 1, 2, 4
#   p1 (x): quality A=0 B=NaN C=1   cost 1, 2, 4      (NaN counts as 0)
#   p2 (y): quality A=0 B=1   C=1   cost 0.5, 1, 3
# Single models, (cost, perf): x: A (2, .5), B (4, .5), C (8, 1);   y: A (.5, 0), B (1, 1), C (3, 1).
# Oracle: x: p0 all tie → A (cost 1), p1 → C (4): (5, 1);   y: B/C tie → B: (1, 1).
# max_cost: x = 8 (C), y = 3 (C).
# Router "r" (linear, c_hat = true costs):
#   p0 q_hat .9 .5 .5 → A for every λ.
#   p1 q_hat .1 .2 .8 → C beats A when .7λ > 3 (λ > 4.29), beats B when .6λ > 2:
#     A for λ ≤ 2, C for λ ≥ 10.
#   p2 q_hat .3 .6 .9 → B beats A when λ > 1.67, C beats B when λ > 6.67:
#     A for λ ≤ 1.5, B for λ = 2, C for λ ≥ 10.
#   x points (2, .5), (5, 1): AIQ = [(5−2)(.5+1)/2 + 1·(8−5)]/8 = (2.25+3)/8 = 0.65625; max perf 1 at 5.
#   y points (.5, 0), (1, 1), (3, 1): hull (.5, 0)→(1, 1); AIQ = [(1−.5)(0+1)/2 + 1·(3−1)]/3 = 2.25/3 = 0.75;
#     max perf 1, tie between costs 1 and 3 → 1.
# Zero router: x hull (2, .5)→(8, 1) ((4, .5) is dominated): AIQ = (8−2)(.5+1)/2 / 8 = 0.5625, max perf 1 at 8;
#   y hull (.5, 0)→(1, 1): AIQ 0.75, max perf 1 at 1 (C also 1 but costs 3).
# Oracle AIQ: x 1·(8−5)/8 = 0.375; y 1·(3−1)/3 = 2/3.
# Best single model (mean over evals): A .25, B .75, C 1.0 → C, cost (8+3)/2 = 5.5.

MODELS = ["A", "B", "C"]
EVALS = np.array(["x", "y", "x"], dtype=object)
Q_TRUE = np.array([[1, 1, 1], [0, 1, 1], [0, np.nan, 1]], dtype=float)
C_TRUE = np.array([[1, 2, 4], [0.5, 1, 3], [1, 2, 4]], dtype=float)
Q_HAT = np.array([[0.9, 0.5, 0.5], [0.3, 0.6, 0.9], [0.1, 0.2, 0.8]])


def _evaluate(c_true: np.ndarray = C_TRUE, **predictions: tuple[np.ndarray, np.ndarray, str]) -> EvaluationResult:
    preds = predictions or {"r": (Q_HAT, C_TRUE.copy(), "linear")}
    return evaluate(preds, Q_TRUE, c_true, EVALS, MODELS, dataset="toy", n_train=7)


def test_metrics_json_shape() -> None:
    metrics = _evaluate().metrics
    assert list(metrics) == [
        "dataset", "n_train", "n_test", "routers", "per_eval", "aiq_max_cost", "best_single_model", "pooled",
    ]
    assert (metrics["dataset"], metrics["n_train"], metrics["n_test"]) == ("toy", 7, 3)
    assert list(metrics["routers"]) == ["r", "zero_router", "oracle"]
    assert list(metrics["per_eval"]) == ["x", "y"]
    for per_router in [metrics["routers"], *metrics["per_eval"].values()]:
        for values in per_router.values():
            assert list(values) == ["aiq", "max_perf", "max_perf_cost"]
            assert all(type(v) is float for v in values.values())
    assert set(metrics["best_single_model"]) == {"name", "perf", "cost"}


def test_router_curves_and_aiq() -> None:
    result = _evaluate()
    per_eval = result.metrics["per_eval"]
    assert result.metrics["aiq_max_cost"] == {"x": 8.0, "y": 3.0}
    assert per_eval["x"]["r"] == pytest.approx({"aiq": 0.65625, "max_perf": 1.0, "max_perf_cost": 5.0})
    assert per_eval["y"]["r"] == pytest.approx({"aiq": 0.75, "max_perf": 1.0, "max_perf_cost": 1.0})
    assert result.metrics["routers"]["r"] == pytest.approx({"aiq": 0.703125, "max_perf": 1.0, "max_perf_cost": 3.0})

    x = result.curves["x"]["r"]
    assert x.points.shape == (32, 2)
    np.testing.assert_array_equal(x.params, np.sort(x.params))
    np.testing.assert_allclose(x.points[x.params <= 2.0], [[2, 0.5]] * 15)  # λ ≤ 2: A on p1
    np.testing.assert_allclose(x.points[x.params >= 10.0], [[5, 1.0]] * 17)  # λ ≥ 10: C on p1
    np.testing.assert_allclose(x.hull, [[2, 0.5], [5, 1.0]])
    np.testing.assert_allclose(result.curves["y"]["r"].hull, [[0.5, 0.0], [1, 1.0]])


def test_zero_router_oracle_and_single_models() -> None:
    result = _evaluate()
    per_eval, routers = result.metrics["per_eval"], result.metrics["routers"]
    assert per_eval["x"]["zero_router"] == pytest.approx({"aiq": 0.5625, "max_perf": 1.0, "max_perf_cost": 8.0})
    assert per_eval["y"]["zero_router"] == pytest.approx({"aiq": 0.75, "max_perf": 1.0, "max_perf_cost": 1.0})
    np.testing.assert_allclose(result.curves["x"]["zero_router"].hull, [[2, 0.5], [8, 1.0]])
    assert routers["zero_router"] == pytest.approx({"aiq": 0.65625, "max_perf": 1.0, "max_perf_cost": 4.5})

    assert per_eval["x"]["oracle"] == pytest.approx({"aiq": 0.375, "max_perf": 1.0, "max_perf_cost": 5.0})
    assert per_eval["y"]["oracle"] == pytest.approx({"aiq": 2 / 3, "max_perf": 1.0, "max_perf_cost": 1.0})

    # NaN score counts as 0: B on x is (1 + 0) / 2 = 0.5, not the 1.0 a NaN-skipping mean would give.
    b_x = result.single_models["x"]["B"]
    assert (b_x.max_perf, b_x.max_perf_cost) == (0.5, 4.0)
    assert result.metrics["best_single_model"] == pytest.approx({"name": "C", "perf": 1.0, "cost": 5.5})


def test_exponential_router_is_evaluated_with_its_own_sweep() -> None:
    result = _evaluate(e=(Q_HAT, C_TRUE, "exponential"))
    curve = result.curves["y"]["e"]
    assert curve.points.shape == (len(EXPONENTIAL_TAUS), 2)
    # p2 (y) log q_hat − c/τ: A→B when τ > 0.5/ln 2 ≈ 0.72, B→C when τ > 2/ln 1.5 ≈ 4.93.
    np.testing.assert_allclose(curve.points[curve.params < 0.7], [[0.5, 0.0]] * int((curve.params < 0.7).sum()))
    np.testing.assert_allclose(curve.points[(curve.params > 0.75) & (curve.params < 4.9)][:, 0], 1.0)
    np.testing.assert_allclose(curve.points[curve.params > 5.0], [[3.0, 1.0]] * int((curve.params > 5.0).sum()))
    assert result.rewards == {"e": "exponential"}
    # A Reward instance with its own grid is evaluated on that grid (bench.tuning scores τ grids this way).
    coarse = _evaluate(e=(Q_HAT, C_TRUE, ExponentialReward(taus=(0.5, 2.0, 10.0)))).curves["y"]["e"]
    np.testing.assert_array_equal(coarse.params, [0.5, 2.0, 10.0])
    np.testing.assert_allclose(coarse.points, [[0.5, 0.0], [1.0, 1.0], [3.0, 1.0]])


def test_nan_cost_raises_naming_router_and_eval() -> None:
    c = C_TRUE.copy()
    c[2, 2] = np.nan  # p1 (eval x), model C: chosen by router r at large λ
    with pytest.raises(ValueError, match=r"'r'.*\['x'\]"):
        _evaluate(c_true=c)
    c = C_TRUE.copy()
    c[1, 0] = np.nan  # p2 (eval y), model A: also chosen by r (small λ)
    with pytest.raises(ValueError, match=r"'r'.*\['y'\]"):
        _evaluate(c_true=c)
    c = C_TRUE.copy()
    c[0, 1] = np.nan  # p0 (x), model B: no router or oracle picks it, the single model B does
    with pytest.raises(ValueError, match=r"'B'.*\['x'\]"):
        _evaluate(c_true=c)


def test_invalid_inputs_raise() -> None:
    with pytest.raises(ValueError, match="reserved"):
        _evaluate(oracle=(Q_HAT, C_TRUE, "linear"))
    with pytest.raises(ValueError, match="valid names"):
        _evaluate(r=(Q_HAT, C_TRUE, "quadratic"))
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        _evaluate(r=(Q_HAT[:2], C_TRUE[:2], "linear"))
    with pytest.raises(ValueError, match=">= 0"):
        _evaluate(c_true=-C_TRUE)


# ------------------------------------------------------------------------------------------------ pooled block
#
# Same toy data, the three test prompts as one backlog (rows p0, p2, p1):
#   single models (cost, perf): A (1+.5+1, (1+0+0)/3) = (2.5, 1/3); B (5, 2/3) (NaN = 0); C (11, 1) → best: C.
#   oracle: p0 → A (1), p2 → B (1), p1 → C (4): (6, 1).   max_cost = 11 (C).
#   router r: λ ≤ 1.5 A A A (2.5, 1/3); λ = 2 A B A (3, 2/3); λ ≥ 10 A C C (8, 1).
#   zero_router hull (2.5, 1/3) → (5, 2/3) → (11, 1): AIQ = [2.5·1/2 + 6·(5/3)/2] / 11 = 6.25/11;
#     reaches 1 at 11 (ratio 1), 0.95 at 5 + (0.95 − 2/3)·18 = 10.1; at cost 5.5: 2/3 + 0.5/18.
#   oracle AIQ = 1·(11 − 6)/11; ratios 6/11; nothing costs 5.5 or less → quality at half cost None.
#   r hull (2.5, 1/3) → (3, 2/3) → (8, 1): AIQ = [0.5·1/2 + 5·(5/3)/2 + 3] / 11 = (0.25 + 25/6 + 3)/11;
#     reaches 1 at 8, 0.95 at 3 + (0.95 − 2/3)·15 = 7.25; at 5.5: 2/3 + 2.5/15.


def test_pooled_block_by_hand() -> None:
    pooled = _evaluate().metrics["pooled"]
    assert list(pooled) == ["aiq_max_cost", "best_single_model", "routers"]
    assert pooled["aiq_max_cost"] == pytest.approx(11.0)
    assert pooled["best_single_model"] == pytest.approx({"name": "C", "perf": 1.0, "cost": 11.0})
    assert list(pooled["routers"]) == ["r", "zero_router", "oracle"]
    keys = ["aiq", "max_perf", "max_perf_cost", "cost_ratio_at_best_quality", "cost_ratio_at_95",
            "quality_at_half_cost"]
    assert all(list(v) == keys for v in pooled["routers"].values())
    assert pooled["routers"]["zero_router"] == pytest.approx({
        "aiq": 6.25 / 11, "max_perf": 1.0, "max_perf_cost": 11.0, "cost_ratio_at_best_quality": 1.0,
        "cost_ratio_at_95": 10.1 / 11, "quality_at_half_cost": 2 / 3 + 0.5 / 18})
    oracle = pooled["routers"]["oracle"]
    assert oracle["quality_at_half_cost"] is None
    assert {k: v for k, v in oracle.items() if v is not None} == pytest.approx({
        "aiq": 5 / 11, "max_perf": 1.0, "max_perf_cost": 6.0, "cost_ratio_at_best_quality": 6 / 11,
        "cost_ratio_at_95": 6 / 11})
    assert pooled["routers"]["r"] == pytest.approx({
        "aiq": (0.25 + 25 / 6 + 3) / 11, "max_perf": 1.0, "max_perf_cost": 8.0, "cost_ratio_at_best_quality": 8 / 11,
        "cost_ratio_at_95": 7.25 / 11, "quality_at_half_cost": 2 / 3 + 2.5 / 15})


def test_hull_cost_and_perf_at() -> None:
    hull = np.array([[1.0, 0.2], [3.0, 0.6], [7.0, 0.8]])
    assert hull_cost_at(hull, 0.1) == 1.0 and hull_cost_at(hull, 0.2) == 1.0
    assert hull_cost_at(hull, 0.4) == pytest.approx(2.0)
    assert hull_cost_at(hull, 0.7) == pytest.approx(5.0)
    assert hull_cost_at(hull, 0.8) == 7.0 and hull_cost_at(hull, 0.81) is None
    assert hull_perf_at(hull, 0.5) is None
    assert hull_perf_at(hull, 2.0) == pytest.approx(0.4) and hull_perf_at(hull, 100.0) == pytest.approx(0.8)


def _independent_pooled_aiq(points: list[tuple[float, float]], max_cost: float) -> float:
    """AIQ written from its definition, not from router.evaluation: the area under the best perf reachable at
    each cost by mixing two raw points (or one point alone), made non-decreasing, on a fine grid."""
    grid = np.linspace(0.0, max_cost, 200_001)
    best = np.full(grid.size, -np.inf)
    for x1, y1 in points:
        best = np.where(grid >= x1, np.maximum(best, y1), best)  # the point alone, and anything costlier
        for x2, y2 in points:
            if x2 > x1:
                inside = (grid >= x1) & (grid <= x2)
                mix = y1 + (y2 - y1) * (grid - x1) / (x2 - x1)
                best = np.where(inside, np.maximum(best, mix), best)
    best = np.maximum.accumulate(np.where(np.isfinite(best), best, 0.0))
    return float(np.sum((best[1:] + best[:-1]) / 2 * np.diff(grid)) / max_cost)


def test_pooled_reference_aiqs_match_an_independent_recomputation() -> None:
    rng = np.random.default_rng(7)
    n, m = 40, 4
    q = (rng.random((n, m)) < [0.3, 0.5, 0.6, 0.8]).astype(float)
    q[rng.random((n, m)) < 0.05] = np.nan
    c = rng.random((n, m)) * [0.01, 0.05, 0.1, 0.4]
    evals = np.where(np.arange(n) % 3 == 0, "a", "b")
    metrics = evaluate({"r": (np.nan_to_num(q, nan=0.5), c, "linear")}, q, c, evals, list("ABCD")).metrics
    pooled = metrics["pooled"]

    s = np.nan_to_num(q, nan=0.0)
    singles = [(float(c[:, j].sum()), float(s[:, j].mean())) for j in range(m)]
    oracle_cost = oracle_perf = 0.0
    for i in range(n):  # best true score, ties to the cheapest true cost
        j = min(range(m), key=lambda k: (-s[i, k], c[i, k]))
        oracle_cost, oracle_perf = oracle_cost + c[i, j], oracle_perf + s[i, j] / n
    assert pooled["aiq_max_cost"] >= max(x for x, _ in singles)
    max_cost = pooled["aiq_max_cost"]
    assert pooled["routers"]["zero_router"]["aiq"] == pytest.approx(_independent_pooled_aiq(singles, max_cost),
                                                                     abs=1e-6)
    assert pooled["routers"]["oracle"]["aiq"] == pytest.approx(
        _independent_pooled_aiq([(oracle_cost, oracle_perf)], max_cost), abs=1e-6)
    best = max(range(m), key=lambda j: (singles[j][1], -singles[j][0]))
    assert pooled["best_single_model"] == pytest.approx(
        {"name": "ABCD"[best], "perf": singles[best][1], "cost": singles[best][0]})
    assert pooled["routers"]["zero_router"]["cost_ratio_at_best_quality"] == pytest.approx(1.0)


def test_paired_aiq_se_is_the_spread_of_the_aiq_difference_over_resamples_within_evals() -> None:
    """Replays the resamples (the same generator draws, eval by eval in sorted order) through evaluate() with the
    two routers alone: the standard deviation of the AIQ differences is the function's figure."""
    rng = np.random.default_rng(3)
    n, m = 60, 3
    q = (rng.random((n, m)) < [0.4, 0.6, 0.8]).astype(float)
    c = rng.random((n, m)) * [0.01, 0.05, 0.2]
    evals = np.where(np.arange(n) % 4 == 0, "b", "a")
    first = (np.clip(q + rng.normal(0, 0.3, q.shape), 0, 1), c, "linear")
    second = (np.clip(q + rng.normal(0, 0.6, q.shape), 0, 1), c * 2, "linear")
    se = paired_aiq_se(first, second, q, c, evals, replicates=30, seed=11)

    draws = np.random.default_rng(11)
    picks = {ev: draws.integers(0, int((evals == ev).sum()), size=(30, int((evals == ev).sum())))
             for ev in ("a", "b")}
    differences = []
    for b in range(30):
        rows = np.concatenate([np.flatnonzero(evals == ev)[picks[ev][b]] for ev in ("a", "b")])
        routers = evaluate({"first": (first[0][rows], first[1][rows], "linear"),
                            "second": (second[0][rows], second[1][rows], "linear")},
                           q[rows], c[rows], evals[rows], list("ABC")).metrics["routers"]
        differences.append(routers["first"]["aiq"] - routers["second"]["aiq"])
    assert se == pytest.approx(float(np.std(differences, ddof=1)), rel=1e-9) and se > 0
    assert paired_aiq_se(first, first, q, c, evals, replicates=30, seed=11) == 0.0  # a router against itself
    assert paired_aiq_se(first, second, q, c, evals, replicates=30, seed=11) == se  # seeded
    # four times the rows (each repeated): about half the noise
    tiled = paired_aiq_se(*(tuple(np.tile(a, (4, 1)) for a in p[:2]) + ("linear",) for p in (first, second)),
                          np.tile(q, (4, 1)), np.tile(c, (4, 1)), np.tile(evals, 4), replicates=200, seed=5)
    assert 0.3 * se < tiled < 0.7 * se
