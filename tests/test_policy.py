"""The quality-target policy (router.policy): calibration on cross-fitted train predictions, picking, resolving."""

from __future__ import annotations

import numpy as np
import pytest

from router.policy import (
    Calibration,
    calibrate,
    calibration_curve,
    cross_fitted,
    fold_ids,
    resolve,
    split_figures,
)
from router.routers.base import Router, RoutingData

MODELS = ["cheap", "rich"]


def _curve(**overrides: object) -> Calibration:
    values = {"reward": "linear", "reference_model": "rich", "n_rows": 100, "folds": 3,
              "grid": [1.0, 2.0, 3.0, 4.0], "quality_ratio": [0.8, 0.95, 1.0, 1.0],
              "cost_ratio": [0.2, 0.4, 0.6, 0.9]}
    return Calibration(**{**values, **overrides})


def test_pick_is_the_cheapest_point_reaching_the_target() -> None:
    cal = _curve()
    assert (cal.pick(1.0).reward_param, cal.pick(1.0).reached, cal.pick(1.0).cost_ratio) == (3.0, True, 0.6)
    assert cal.pick(0.95).reward_param == 2.0 and cal.pick(0.5).reward_param == 1.0
    short = cal.pick(1.1)  # never reached: the cheapest point of the best calibrated quality, flagged
    assert (short.reward_param, short.reached, short.quality_ratio) == (3.0, False, 1.0)
    assert cal.pick().quality_target == 1.0 and "falls short" in short.describe()
    assert Calibration.from_dict(cal.as_dict()) == cal
    assert cal.defaults() == {"reward": "linear", "lambda": 3.0}
    assert _curve(reward="exponential").defaults() == {"reward": "exponential", "tau": 3.0}
    with pytest.raises(ValueError, match="positive"):
        cal.pick(0.0)


def test_calibration_curve_by_hand() -> None:
    # cheap costs 1, rich 10; quality cheap [1, 1, 0, 0], rich [1, 1, 1, 0]: rich is the best single model
    # (perf .75, cost 40). Perfect predictions, λ = 1: cheap everywhere (perf .5, cost 4); λ = 100: rich only on
    # row 2 (ties go to the cheaper model): perf .75, cost 13.
    quality = np.array([[1, 1], [1, 1], [0, 1], [0, 0]], dtype=float)
    cost = np.array([[1, 10]] * 4, dtype=float)
    cal = calibration_curve(quality, cost, quality, cost, MODELS, "linear", grid=np.array([1.0, 100.0]))
    assert cal.reference_model == "rich" and cal.n_rows == 4
    assert cal.quality_ratio == pytest.approx([0.5 / 0.75, 1.0])
    assert cal.cost_ratio == pytest.approx([4 / 40, 13 / 40])
    assert cal.pick(1.0).reward_param == 100.0 and cal.pick(0.6).reward_param == 1.0
    with pytest.raises(ValueError, match="dense"):
        calibration_curve(quality, cost, quality, np.where(cost > 5, np.nan, cost), MODELS, "linear")

    figures = split_figures(cal.pick(1.0), quality, cost, RoutingData(
        np.zeros((4, 2), np.float32), quality, cost, np.ones(4, int), MODELS))
    assert figures == pytest.approx({"rows": 4, "reference_model": "rich", "quality": 0.75, "cost": 13.0,
                                     "reference_quality": 0.75, "reference_cost": 40.0, "quality_ratio": 1.0,
                                     "cost_ratio": 13 / 40})


def test_fold_ids_deal_each_task_evenly() -> None:
    tasks = np.array(["a"] * 7 + ["b"] * 5, dtype=object)
    folds = fold_ids(tasks, 3, seed=1)
    assert np.array_equal(folds, fold_ids(tasks, 3, seed=1))
    for task in ("a", "b"):
        counts = np.bincount(folds[tasks == task], minlength=3)
        assert counts.max() - counts.min() <= 1


class _Unpackaged(Router):
    """A test router: calibration and cross-fitting never serialise it."""

    def to_artifacts(self):  # noqa: ANN201
        raise NotImplementedError("a test router is not packaged")

    @classmethod
    def from_artifacts(cls, tensors, config):  # noqa: ANN001, ANN206
        raise NotImplementedError("a test router is not packaged")


class _Memory(_Unpackaged):
    """Predicts quality 1 for every training row it saw (by embedding), 0 otherwise: shows out-of-fold use."""

    name = "memory"

    def fit(self, data: RoutingData, seed: int = 42) -> _Memory:
        self.models, self.seen = list(data.models), {tuple(x) for x in data.X}
        return self

    def predict(self, X, prompt_chars, tasks=None):  # noqa: ANN001, ANN201
        seen = np.array([tuple(x) in self.seen for x in X], dtype=float)
        return np.repeat(seen[:, None], len(self.models), axis=1), np.ones((len(X), len(self.models)))


def _data(n: int = 60, sparse: int = 6) -> RoutingData:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    hard = np.arange(n) % 2 == 1  # the cheap model fails the odd ("hard") prompts, the rich one solves all
    quality = np.column_stack([(~hard).astype(float), np.ones(n)])
    cost = np.tile([0.001, 0.01], (n, 1))
    cost[:sparse, 0] = np.nan  # sparse rows (a log): trained on, never calibrated on
    return RoutingData(X, quality, cost, np.full(n, 50), MODELS, np.where(hard, "hard", "easy").astype(object))


def test_cross_fitted_predictions_are_out_of_fold() -> None:
    data = _data()
    q_hat, _, rows = cross_fitted(lambda: _Memory(), data, folds=3, seed=0)
    assert rows.tolist() == list(range(6, 60))  # dense rows only
    assert (q_hat == 0).all()  # no row was predicted by a router that saw it


class _TaskAware(_Unpackaged):
    """Predicts each model's mean training quality per task: enough to learn 'cheap fails hard prompts'."""

    name = "task-aware"

    def fit(self, data: RoutingData, seed: int = 42) -> _TaskAware:
        self.models = list(data.models)
        self.means = {t: np.nanmean(data.quality[data.eval_names == t], axis=0) for t in set(data.eval_names)}
        self.cost = np.nanmean(data.cost, axis=0)
        return self

    def predict(self, X, prompt_chars, tasks=None):  # noqa: ANN001, ANN201
        return np.stack([self.means[t] for t in tasks]), np.tile(self.cost, (len(X), 1))


def test_calibrate_reaches_the_best_single_model_cheaper_and_resolve_reads_it() -> None:
    cal = calibrate(lambda: _TaskAware(), _data(), "linear", quality_target=1.0, folds=3, seed=0)
    choice = cal.pick()
    assert cal.reference_model == "rich" and cal.n_rows == 54 and choice.reached
    # easy prompts to cheap, hard ones to rich: rich's quality at (27·0.001 + 27·0.01) / (54·0.01) of its cost
    assert choice.quality_ratio == pytest.approx(1.0) and choice.cost_ratio == pytest.approx(0.55)

    param, info = resolve(cal.as_dict(), "linear", 1.0)
    assert param == choice.reward_param and info["kind"] == "quality_target" and info["reached"]
    loose, _ = resolve(cal.as_dict(), "linear", 0.5)
    assert loose < param
    assert resolve(None, "linear", 1.0)[0] is None
    assert resolve(cal.as_dict(), "exponential", 1.0) == (None, {
        "kind": "quality_end", "reason": "the champion is calibrated for the linear reward"})
    assert calibrate(lambda: _TaskAware(), _data(n=20, sparse=0), "linear") is None  # too few rows
