"""The quality-target policy (router.policy): calibration on cross-fitted train predictions, picking, resolving."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from router.policy import (
    NOISE_Z,
    Calibration,
    calibrate,
    calibration_curve,
    cross_fitted,
    fold_ids,
    out_of_fold,
    prompt_key,
    resolve,
    share_keys,
    split_figures,
)
from router import oof_cache
from router.oof_cache import OutOfFold, vector_keys
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


def test_a_target_between_two_hull_points_mixes_them_at_the_interpolated_cost() -> None:
    # hull (0.2, .8) → (0.4, .9) → (0.8, 1.0); (0.5, .85) lies under it and is never used
    cal = _curve(grid=[1.0, 2.0, 2.5, 3.0, 4.0], quality_ratio=[0.8, 0.9, 0.85, 1.0, 1.0],
                 cost_ratio=[0.2, 0.4, 0.5, 0.8, 0.9])
    mixed = cal.pick(0.95)
    assert (mixed.reward_param, mixed.mix_param, mixed.reached) == (2.0, 3.0, True)
    assert mixed.mix_share == pytest.approx(0.5)
    assert (mixed.quality_ratio, mixed.cost_ratio) == pytest.approx((0.95, 0.6))  # the hull's chord, not 0.8
    low = cal.pick(0.82)  # between the first two vertices: a fifth of the prompts at the dearer parameter
    assert (low.reward_param, low.mix_param, low.mix_share) == pytest.approx((1.0, 2.0, 0.2))
    assert "of prompts" in mixed.describe() and mixed.parameters().startswith("2 (50% of prompts) / 3 (50%)")
    assert cal.pick(0.9).mix_param is None and cal.pick(0.9).reward_param == 2.0  # a vertex: no mix
    assert cal.defaults() == {"reward": "linear", "lambda": 3.0}


def test_a_target_within_the_calibration_noise_counts_as_reached() -> None:
    # the best calibrated point is 0.99 ± 0.01: a target of 1.0 is within NOISE_Z standard errors of it (and 0.95 ±
    # 0.02 is not), so the choice is the chord's point where quality + z·se reaches 1.0 (se interpolates too)
    z = NOISE_Z
    assert 0.95 + z * 0.02 < 1.0 <= 0.99 + z * 0.01
    cal = _curve(quality_ratio=[0.8, 0.95, 0.99, 0.99], quality_se=[0.02, 0.02, 0.01, 0.01])
    choice = cal.pick(1.0)
    assert choice.reached and (choice.reward_param, choice.mix_param) == (2.0, 3.0)
    w = (1.0 - z * 0.02 - 0.95) / (0.04 - z * 0.01)
    assert choice.mix_share == pytest.approx(w)
    assert choice.quality_ratio + z * choice.quality_se == pytest.approx(1.0)
    assert choice.cost_ratio == pytest.approx(0.4 + w * 0.2) and "standard errors" in choice.describe()
    assert not cal.pick(1.05).reached and cal.pick(1.05).reward_param == 3.0  # beyond the noise: flagged
    assert not _curve(quality_ratio=[0.8, 0.95, 0.99, 0.99]).pick(1.0).reached  # no noise stored: exact


def test_mixed_shares_are_reproducible_and_follow_the_prompt_hash() -> None:
    ids = [prompt_key(f"prompt {i}") for i in range(20_000)]
    keys = share_keys(ids)
    assert ((keys >= 0) & (keys < 1)).all() and np.array_equal(keys, share_keys(list(ids)))
    assert abs((keys < 0.3).mean() - 0.3) < 0.015  # uniform: the share of prompts is the mix's share
    assert prompt_key("héllo") == __import__("hashlib").sha256("héllo".encode()).hexdigest()[:32]
    choice = _curve(quality_ratio=[0.8, 0.9, 1.0, 1.0], cost_ratio=[0.2, 0.4, 0.8, 0.9]).pick(0.93)
    params = choice.params_of(ids)
    assert set(np.unique(params)) == {2.0, 3.0}
    assert np.array_equal(params == 3.0, keys < choice.mix_share)


def test_a_mixed_policy_realizes_its_expected_quality_and_cost() -> None:
    # cheap costs 1 and solves the easy half; rich costs 10 and solves everything. Predictions are the truth plus a
    # margin, so λ = 1 sends everything to cheap (perf .5, cost .1 × rich's) and λ = 100 only the hard half to rich.
    rng = np.random.default_rng(0)
    n = 4000
    hard = rng.random(n) < 0.5
    quality = np.column_stack([(~hard).astype(float), np.ones(n)])
    cost = np.tile([1.0, 10.0], (n, 1))
    ids = [prompt_key(f"q{i}") for i in range(n)]
    data = RoutingData(np.zeros((n, 2), np.float32), quality, cost, np.ones(n, int), MODELS, prompt_ids=ids)
    q_hat = np.column_stack([np.where(hard, 0.0, 0.9), np.full(n, 0.95)])
    cal = calibration_curve(q_hat, cost, quality, cost, MODELS, "linear", grid=np.array([1.0, 100.0]))
    choice = cal.pick(0.75)
    assert choice.mix_param == 100.0 and choice.reward_param == 1.0
    realized = split_figures(choice, q_hat, cost, data)  # each prompt by its share key, as routing does
    assert realized["quality_ratio"] == pytest.approx(choice.quality_ratio, abs=0.02)
    assert realized["cost_ratio"] == pytest.approx(choice.cost_ratio, abs=0.02)
    expected = split_figures(choice, q_hat, cost, RoutingData(data.X, quality, cost, data.prompt_chars, MODELS))
    assert expected["quality_ratio"] == pytest.approx(choice.quality_ratio)  # no prompt ids: the expectation


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
    # standard error of the ratio: sd(s_chosen − r·s_rich) / (√4 · 0.75); at λ = 100 the choices solve what rich does
    resid = np.array([1, 1, 0, 0]) - (0.5 / 0.75) * np.array([1, 1, 1, 0])
    assert cal.quality_se == pytest.approx([resid.std(ddof=1) / (2 * 0.75), 0.0])
    assert cal.pick(1.0).reward_param == 1.0  # on four rows, 0.667 ± 0.31 is within the noise of 1.0
    exact = Calibration(**{**cal.as_dict(), "quality_se": []})
    assert exact.pick(1.0).reward_param == 100.0 and exact.pick(0.6).reward_param == 1.0
    with pytest.raises(ValueError, match="dense"):
        calibration_curve(quality, cost, quality, np.where(cost > 5, np.nan, cost), MODELS, "linear")

    figures = split_figures(exact.pick(1.0), quality, cost, RoutingData(
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


def test_folds_fitted_on_the_cores_predict_as_one_after_another() -> None:
    """The calibration fits its attention routers' folds on worker threads: the same out-of-fold predictions as a
    sequential run (each fit seeds and draws its own initial weights), and torch's deterministic-algorithms setting
    is the caller's again afterwards."""
    import torch

    from router.routers import get_router
    from router.routers.attention_inference import on_cores

    data = _data(n=90)

    def make():
        return get_router("attention", n_members=1, max_epochs=2, hidden=16, model_dim=8, attn_dim=8)

    before = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # two workers even on a one-core runner
    try:
        sequential = cross_fitted(make, data, folds=4, seed=3)
        parallel = cross_fitted(make, data, folds=4, seed=3, parallel=True)
        again = on_cores(lambda _: cross_fitted(make, data, folds=4, seed=3, parallel=True)[0], range(2), "t")
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(sequential, parallel, strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(parallel[0]).all() and not np.allclose(parallel[0], parallel[0][0])  # fitted, per row
    for q_hat in again:  # two calibrations at once (nested threads) as well
        np.testing.assert_array_equal(q_hat, sequential[0])
    assert torch.are_deterministic_algorithms_enabled() == before


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


def test_batch_routing_decides_each_unit_with_its_share_of_the_mix() -> None:
    import polars as pl

    from router.rewards import get_reward
    from router.routing import Decisions, Units

    n = 400
    ids = [prompt_key(f"p{i}") for i in range(n)]
    units = Units(pl.Series("prompt_id", ids), pl.Series("task", ["t"] * n), np.ones(n, dtype=np.int64),
                  np.zeros((n, 2), np.float32), np.ones(n, dtype=np.int64))
    q = np.tile([0.5, 0.9], (n, 1))  # cheap .5 at $0.001, rich .9 at $0.01: λ = 0.01 → cheap, λ = 1 → rich
    c = np.tile([0.001, 0.01], (n, 1))
    decisions = Decisions(MODELS, get_reward("linear"), 0.01, None, mix=(1.0, 0.25))
    decisions.add(units, q, c)
    frame = decisions.frame()
    dear = share_keys(ids) < 0.25
    assert np.array_equal(frame["reward_param"].to_numpy(), np.where(dear, 1.0, 0.01))
    assert np.array_equal(frame["chosen"].to_numpy(), dear.astype(int))  # rich exactly where the share key says
    plain = Decisions(MODELS, get_reward("linear"), 0.01, None)
    plain.add(units, q, c)
    assert (plain.frame()["chosen"].to_numpy() == 0).all() and (plain.frame()["reward_param"] == 0.01).all()


def test_the_served_model_mixes_only_for_requests_left_to_the_defaults() -> None:
    import importlib.util

    from router.settings import PROJECT_ROOT

    spec = importlib.util.spec_from_file_location("router_model_under_test", PROJECT_ROOT / "mlflow" / "router_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.RouterModel()
    cal = _curve(quality_ratio=[0.8, 0.9, 1.0, 1.0], cost_ratio=[0.2, 0.4, 0.8, 0.9])  # target 1.0: vertex 3.0
    model.choice, model.defaults = Calibration(**{**cal.as_dict(), "quality_target": 0.95}).pick(), {}
    assert model.choice.mix_param == 3.0 and model.choice.reward_param == 2.0
    assert model._default_policy({"reward": "linear", "lambda": 2.0, "tau": 1e-3})  # MLflow fills the defaults
    assert not model._default_policy({"reward": "linear", "lambda": 5.0})  # a request's own λ
    assert not model._default_policy({"reward": "exponential", "tau": 2.0})
    model.choice = cal.pick()  # a vertex: nothing to mix
    assert not model._default_policy({"reward": "linear", "lambda": 3.0})


def test_a_free_best_single_model_is_chosen_at_no_cost_and_dearer_points_only_beyond_it() -> None:
    """The best single model costs nothing on the calibration rows: every point that spends has an infinite cost
    ratio. The target 1.0 is reached at cost ratio 0 by routing to it alone; a target only a spending point
    reaches takes the smallest grid value that does (flagged by its infinite cost ratio, not a crash)."""
    rng = np.random.default_rng(0)
    n = 40
    quality = np.column_stack([np.full(n, 0.9), (np.arange(n) % 2 == 0).astype(float)])  # "rich" helps half the rows
    cost = np.column_stack([np.zeros(n), np.full(n, 0.01)])
    q_hat = quality + rng.normal(0.0, 0.05, quality.shape)
    cal = calibration_curve(q_hat, cost + 0.001, quality, cost, ["free", "paid"], "linear")
    assert cal.reference_model == "free" and np.isinf(cal.cost_ratio).any()
    at_target = cal.pick(1.0)
    assert (at_target.reached, at_target.cost_ratio, at_target.mix_param) == (True, 0.0, None)
    assert at_target.quality_ratio == pytest.approx(1.0)
    # routing the rows where "paid" scores 1 to it: mean (0.9 + 1) / 2 = 0.95 → 1.0556 × free's 0.9
    above = cal.pick(1.05)
    assert above.reached and np.isinf(above.cost_ratio) and above.quality_ratio + NOISE_Z * above.quality_se >= 1.05
    spending = [g for g, q, c, se in zip(cal.grid, cal.quality_ratio, cal.cost_ratio, cal.quality_se)
                if np.isinf(c) and q + NOISE_Z * se >= 1.05]
    assert above.reward_param == min(spending)
    never = cal.pick(2.0)
    assert not never.reached and never.quality_ratio == max(cal.quality_ratio)


def _carried(data: RoutingData, rows: np.ndarray, value: float, added: np.ndarray | None = None) -> OutOfFold:
    """An earlier calibration's predictions of ``data``'s dense ``rows``: quality ``value`` everywhere."""
    m = len(data.models)
    return OutOfFold("20261201T000000Z-abc123", list(data.models), "same", np.asarray(data.prompt_ids)[rows],
                     vector_keys(data.X[rows]), np.full((rows.size, m), value), np.ones((rows.size, m)),
                     np.zeros(rows.size, dtype=bool) if added is None else added)


def _with_ids(data: RoutingData) -> RoutingData:
    data.prompt_ids = [f"{i:032x}" for i in range(data.n)]
    return data


def test_a_calibration_carries_unchanged_rows_and_predicts_the_new_ones_as_one_more_fold() -> None:
    """Rows an earlier calibration predicted keep its predictions; new rows, and a row whose vector changed (a
    re-embedded prompt), are predicted by one router fitted on every other train row: out of fold."""
    data = _with_ids(_data(n=60, sparse=6))
    earlier = _carried(data, np.arange(6, 54), 0.5)  # dense rows 54..59 are new tonight
    data.X[10] += 1.0  # re-embedded since: its carried prediction no longer applies
    oof, rows = out_of_fold(lambda: _Memory(), data, folds=3, seed=0, carried=earlier, max_added=0.25)
    assert rows.tolist() == list(range(6, 60))
    new = np.isin(rows, [10, 54, 55, 56, 57, 58, 59])
    assert (oof.q_hat[~new] == 0.5).all()  # carried
    assert (oof.q_hat[new] == 0).all()  # predicted by a router that did not see them
    assert oof.added.tolist() == new.tolist() and oof.carried == 47 and oof.carried_from == earlier.run_id
    np.testing.assert_array_equal(oof.vector_keys, vector_keys(data.X[rows]))


def test_a_calibration_cross_fits_from_scratch_once_too_many_rows_were_added_since_the_last_full_one() -> None:
    data = _with_ids(_data(n=60, sparse=6))
    flags = np.arange(6, 54) < 16  # ten rows carried with the "added" mark: 10 + 6 new of 54 > 25 %
    earlier = _carried(data, np.arange(6, 54), 0.5, added=flags)
    oof, _ = out_of_fold(lambda: _Memory(), data, folds=3, seed=0, carried=earlier, max_added=0.25)
    assert (oof.q_hat == 0).all() and not oof.added.any() and oof.carried == 0  # a full cross-fit
    within, _ = out_of_fold(lambda: _Memory(), data, folds=3, seed=0, carried=earlier, max_added=0.3)
    assert within.carried == 48 and int(within.added.sum()) == 16  # the marked rows carried with their mark
    full, _ = out_of_fold(lambda: _Memory(), data, folds=3, seed=0)
    np.testing.assert_array_equal(full.q_hat, oof.q_hat)


def test_kept_predictions_are_read_back_only_by_a_calibration_of_the_same_identity_and_pool(tmp_path, caplog
                                                                                            ) -> None:
    data = _with_ids(_data(n=60, sparse=6))
    earlier = _carried(data, np.arange(6, 60), 0.5, added=np.arange(6, 60) % 7 == 0)
    path = oof_cache.save(tmp_path, earlier)
    back = oof_cache.latest(tmp_path, "same", MODELS)
    assert back is not None and back.run_id == earlier.run_id and back.models == MODELS
    for name in ("prompt_ids", "vector_keys", "q_hat", "c_hat", "added"):
        np.testing.assert_array_equal(getattr(back, name), getattr(earlier, name))
    assert oof_cache.latest(tmp_path, "other settings", MODELS) is None
    assert oof_cache.latest(tmp_path, "same", MODELS[::-1]) is None
    for k in range(4):  # the newest KEEP files stay
        oof_cache.save(tmp_path, replace(earlier, run_id=f"20261202T00000{k}Z-abc123"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"20261202T00000{k}Z-abc123.npz" for k in (1, 2, 3)]
    assert not path.exists()
    (tmp_path / "20261203T000000Z-abc123.npz").write_bytes(b"not an npz")
    assert oof_cache.latest(tmp_path, "same", MODELS) is None
    assert "unreadable" in caplog.text


def test_a_retrain_carries_the_previous_calibration_forward_when_its_identity_matches(tmp_path) -> None:
    """The train step's calibration (attention routers, one member each here) keeps its out-of-fold predictions in
    the workspace; the next retrain with a few new rows reuses them, says so in its MLflow params, and is
    reproducible; other settings, or ``ROUTER_ROUTE_CALIBRATION_CARRY=0``, cross-fit from scratch."""
    from types import SimpleNamespace

    from router.policy import calibrate_training_run
    from router.routers import get_router
    from router.settings import Settings

    full = _with_ids(_data(n=96, sparse=6))

    def run(run_id: str, rows: int, **settings: object):
        s = Settings(home=tmp_path, route_calibration_members=1, route_calibration_folds=3, **settings)
        train = full.subset(np.arange(rows))
        fitted = get_router("attention", n_members=1).fit(train, seed=s.seed)
        return calibrate_training_run(s, SimpleNamespace(run_id=run_id, train=train, test=full, routers={
            "attention": fitted})), s

    first, s = run("20261201T000000Z-aaaaaa", 84)
    assert first.carried_rows == 0 and (s.calibration / "20261201T000000Z-aaaaaa.npz").is_file()
    second, _ = run("20261202T000000Z-bbbbbb", 96)  # 12 new dense rows of 90: within 25 %
    assert second.carried_rows == 78 and second.carried_from == "20261201T000000Z-aaaaaa"
    assert second.n_rows == 90 and second.params()["policy.calibration_carried_rows"] == 78
    again, _ = run("20261202T000001Z-cccccc", 96)  # from the second's file: every row carried, nothing fitted
    assert again.carried_rows == 90 and again.carried_from == "20261202T000000Z-bbbbbb"
    assert (again.grid, again.quality_ratio, again.cost_ratio) == (second.grid, second.quality_ratio,
                                                                   second.cost_ratio)
    other_seed, _ = run("20261202T000002Z-dddddd", 96, seed=7)
    assert other_seed.carried_rows == 0
    off, _ = run("20261202T000003Z-eeeeee", 96, seed=7, route_calibration_carry=0)
    assert off.carried_rows == 0
