"""Rewards: RouterBench's λ list, linear choice and tie-break, and the exponential reward's distinct choices."""

from __future__ import annotations

import numpy as np
import pytest

from router.rewards import (
    EXPONENTIAL_TAUS,
    REWARDS,
    WILLINGNESS_TO_PAY,
    ExponentialReward,
    LinearReward,
    get_reward,
)


def test_lambda_list_is_routerbench_willingness_to_pay() -> None:
    lambdas = LinearReward().sweep()
    assert lambdas.shape == (32,)
    assert lambdas[0] == 1e-10 and lambdas[-1] == 1e9
    assert np.all(np.diff(lambdas) > 0)
    # Spot checks against RouterBench's utils.WILLINGNESS_TO_PAY (its 9th, 16th, 25th and 31st entries).
    assert (lambdas[8], lambdas[15], lambdas[24], lambdas[30]) == (0.005, 10.0, 7500.0, 1e6)
    np.testing.assert_array_equal(lambdas, np.asarray(WILLINGNESS_TO_PAY))


def test_exponential_grid_is_log_spaced_and_wide() -> None:
    taus = ExponentialReward().sweep()
    np.testing.assert_array_equal(taus, np.asarray(EXPONENTIAL_TAUS))
    assert taus[0] == pytest.approx(1e-9) and taus[-1] == pytest.approx(1e5)
    np.testing.assert_allclose(np.diff(np.log10(taus)), 1 / 12)


def test_linear_choice_per_row() -> None:
    reward = get_reward("linear")
    q = np.array([[0.5, 0.9, 0.7], [0.5, 0.9, 0.7]])
    c = np.array([[0.001, 0.1, 0.01], [0.001, 0.1, 0.01]])
    # λ=1: 0.499, 0.8, 0.69 → model 1.   λ=0.1: 0.049, −0.01, 0.06 → model 2.
    np.testing.assert_array_equal(reward.choose(q, c, 1.0), [1, 1])
    np.testing.assert_array_equal(reward.choose(q, c, 0.1), [2, 2])
    np.testing.assert_array_equal(reward.choose(q, c, 1e-10), [0, 0])  # cost dominates: cheapest
    np.testing.assert_array_equal(reward.choose(q, c, 1e9), [1, 1])  # quality dominates: best


def test_linear_ties_go_to_cheaper_predicted_cost_then_lower_index() -> None:
    reward = get_reward("linear")
    # λ=1: 0.75−0.5 == 0.5−0.25 == 0.25 exactly (binary fractions).
    q = np.array([[0.75, 0.5], [0.5, 0.75], [0.5, 0.5]])
    c = np.array([[0.5, 0.25], [0.25, 0.5], [0.25, 0.25]])
    np.testing.assert_array_equal(reward.choose(q, c, 1.0), [1, 0, 0])


def test_exponential_extremes_on_dollar_costs() -> None:
    reward = get_reward("exponential")
    q = np.array([[0.2, 0.9, 0.95], [0.95, 0.2, 0.9]])
    c = np.array([[1e-5, 1e-2, 1e-1], [1e-1, 1e-5, 1e-2]])
    choices = reward.choose_sweep(q, c)
    np.testing.assert_array_equal(choices[0], [0, 1])  # smallest τ: cheapest
    np.testing.assert_array_equal(choices[-1], [2, 0])  # largest τ: best predicted quality


def test_exponential_clips_zero_quality() -> None:
    reward = get_reward("exponential")
    q = np.array([[0.0, 0.0], [0.0, 1e-9], [0.0, 0.5]])
    c = np.array([[0.2, 0.1], [0.1, 0.2], [0.0, 0.3]])
    with np.errstate(all="raise"):  # no log(0) warnings
        # rows 0, 1: both clip to eps → cost decides; row 2: any finite τ prefers 0.5·e^(−0.3/τ) over eps.
        np.testing.assert_array_equal(reward.choose(q, c, 1.0), [1, 0, 1])


def test_exponential_choices_are_not_a_monotone_transform_of_linear() -> None:
    """Two prompts whose switch points are ordered differently under the two rewards.

    Linear switches A→B when λ > Δc/Δq; exponential when τ > Δc/Δlog q.
      row 0: A=(q 0.5, c 0),  B=(q 1.0,  c 1.0): λ* = 1/0.5 = 2,    τ* = 1/ln 2   ≈ 1.443
      row 1: A=(q 0.1, c 0),  B=(q 0.15, c 0.2): λ* = 0.2/0.05 = 4, τ* = 0.2/ln 1.5 ≈ 0.493
    Linear goes (A,A) → (B,A) → (B,B); exponential goes (A,A) → (A,B) → (B,B). So at τ = 1 the exponential
    reward picks (A, B), which no λ > 0 can produce.
    """
    q = np.array([[0.5, 1.0], [0.1, 0.15]])
    c = np.array([[0.0, 1.0], [0.0, 0.2]])
    exp_choice = get_reward("exponential").choose(q, c, 1.0)
    np.testing.assert_array_equal(exp_choice, [0, 1])

    linear = get_reward("linear")
    lambdas = np.concatenate([linear.sweep(), np.logspace(-12, 12, 2001)])
    linear_choices = {tuple(linear.choose(q, c, lam)) for lam in lambdas}
    assert linear_choices == {(0, 0), (1, 0), (1, 1)}
    exp_choices = {tuple(row) for row in get_reward("exponential").choose_sweep(q, c)}
    assert exp_choices == {(0, 0), (0, 1), (1, 1)}


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_choose_sweep_matches_choose(name: str) -> None:
    rng = np.random.default_rng(0)
    q = rng.random((200, 5))
    c = rng.random((200, 5)) * np.logspace(-5, -1, 5)
    c[:, 3] = c[:, 1]  # equal predicted costs exercise the stable tie order
    reward = get_reward(name)
    sweep = reward.choose_sweep(q, c)
    assert sweep.shape == (reward.sweep().size, 200)
    for k, param in enumerate(reward.sweep()):
        np.testing.assert_array_equal(sweep[k], reward.choose(q, c, param))
    assert len({tuple(row) for row in sweep}) > 2  # the sweep actually moves along the trade-off


def test_get_reward_unknown_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"'cubic'.*exponential, linear"):
        get_reward("cubic")


def test_invalid_inputs_raise() -> None:
    reward = get_reward("linear")
    with pytest.raises(ValueError, match="finite"):
        reward.choose(np.array([[np.nan, 0.5]]), np.array([[0.1, 0.2]]), 1.0)
    with pytest.raises(ValueError, match="same shape"):
        reward.choose(np.ones((2, 3)), np.ones((2, 2)), 1.0)
    with pytest.raises(ValueError, match="positive"):
        reward.choose(np.ones((1, 2)), np.ones((1, 2)), 0.0)
