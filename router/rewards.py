"""How a model is chosen from a router's predictions.

A router predicts, for every (prompt, model) pair, a quality ``q_hat`` in [0, 1] and a cost ``c_hat`` in dollars
(see ``router.routers.base``). A :class:`Reward` turns those two ``(n, m)`` matrices into one chosen model per
prompt, given a scalar trade-off parameter. Sweeping the parameter over :meth:`Reward.sweep` traces a
quality–cost curve, which ``router.evaluation`` scores (AIQ). Every router is evaluated through the same rewards,
so routers differ only in their predictions.

Two rewards are registered in :data:`REWARDS`:

``linear``
    RouterBench's willingness-to-pay: ``argmax_j  λ·q_hat[i, j] − c_hat[i, j]`` over RouterBench's own 32 λ values
    (:data:`WILLINGNESS_TO_PAY`).
``exponential``
    A multiplicative cost discount: ``argmax_j  q_hat[i, j] · exp(−c_hat[i, j] / τ)``, i.e.
    ``argmax_j  log(q_hat[i, j]) − c_hat[i, j] / τ``, over a log-spaced τ grid (:data:`EXPONENTIAL_TAUS`).
    Its choices are not a monotone transform of the linear reward's (see ``docs/rewards.md``).

Ties (equal reward within a row) go to the model with the cheaper *predicted* cost, then to the lower column
index: models are stably sorted by ``c_hat`` per row before taking the first maximum.

Differences from RouterBench's routers (``routers/knn_router.py``): they subtract a per-token price
(completion + prompt token price + request cost / average response tokens) rather than a per-prompt cost, and
break ties by model column order (pandas ``idxmax``). Here the cost term is the router's predicted per-prompt
dollar cost and ties go to the cheaper predicted cost.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

__all__ = [
    "EXPONENTIAL_TAUS",
    "QUALITY_EPS",
    "REWARDS",
    "WILLINGNESS_TO_PAY",
    "ExponentialReward",
    "LinearReward",
    "Reward",
    "argmax_cheapest",
    "get_reward",
]

#: RouterBench's willingness-to-pay values, copied verbatim from ``WILLINGNESS_TO_PAY`` in ``utils.py`` of
#: https://github.com/withmartian/routerbench (used by ``evaluate_routers.py``): 32 values, 1e-10 … 1e9.
WILLINGNESS_TO_PAY: tuple[float, ...] = (
    1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3,
    0.005, 0.01, 0.1, 0.5, 1.0, 1.5, 2.0, 10.0,
    50.0, 100.0, 500.0, 1000.0, 2000.0, 3000.0, 4000.0, 5000.0,
    7500.0, 10000.0, 25000.0, 50000.0, 75000.0, 100000.0, 1e6, 1e9,
)  # fmt: skip

#: Default τ grid of the exponential reward: 1e-9 … 1e5 dollars, 12 values per decade (169 values; 3 per decade
#: scored lower in cross-validation, docs/router.md). At τ = 1e-9 a
#: cost gap of 1.4e-8 $ outweighs the largest possible quality ratio (1 / QUALITY_EPS), so the cheapest model wins;
#: at τ = 1e5 a 0.1 $ gap shifts the log-quality by 1e-6, so the best predicted quality wins.
EXPONENTIAL_TAUS: tuple[float, ...] = tuple(float(t) for t in np.logspace(-9.0, 5.0, 169))

#: Predicted qualities are clipped to ``[QUALITY_EPS, 1]`` before the exponential reward takes their log.
QUALITY_EPS = 1e-6


def _check_predictions(q_hat: np.ndarray, c_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    q = np.asarray(q_hat, dtype=np.float64)
    c = np.asarray(c_hat, dtype=np.float64)
    if q.ndim != 2 or q.shape != c.shape:
        raise ValueError(f"q_hat and c_hat must be (n, m) arrays of the same shape, got {q.shape} and {c.shape}")
    if q.shape[1] == 0:
        raise ValueError("cannot choose among zero models")
    if not (np.isfinite(q).all() and np.isfinite(c).all()):
        raise ValueError("q_hat and c_hat must be finite (no NaN/inf predictions)")
    return q, c


def argmax_cheapest(score: np.ndarray, c_hat: np.ndarray) -> np.ndarray:
    """Row-wise argmax of ``score``; ties go to the lowest ``c_hat``, then to the lowest column index.

    Args:
        score: ``(n, m)`` reward per prompt × model.
        c_hat: ``(n, m)`` predicted cost, used only to break ties.

    Returns:
        ``(n,)`` int64 column index of the chosen model per row.
    """
    order = np.argsort(c_hat, axis=1, kind="stable")  # cheapest first; equal costs keep column order
    best = np.argmax(np.take_along_axis(score, order, axis=1), axis=1)  # first maximum = cheapest among ties
    return order[np.arange(order.shape[0]), best].astype(np.int64, copy=False)


class Reward(ABC):
    """Turns predicted quality and cost into one chosen model per prompt, for a scalar trade-off parameter."""

    name: ClassVar[str]
    #: What the sweep parameter is called (for reports and plots).
    param_name: ClassVar[str]

    @abstractmethod
    def sweep(self) -> np.ndarray:
        """The 1-D float64 array of parameter values traced for a quality–cost curve, cheap end first."""

    @abstractmethod
    def score(self, q_hat: np.ndarray, c_hat: np.ndarray, param: float) -> np.ndarray:
        """The ``(n, m)`` reward of every (prompt, model) pair; inputs are validated float64 arrays."""

    def choose(self, q_hat: np.ndarray, c_hat: np.ndarray, param: float) -> np.ndarray:
        """Index of the chosen model per row: ``argmax`` of :meth:`score`, ties to the cheaper predicted cost.

        Args:
            q_hat: ``(n, m)`` predicted quality.
            c_hat: ``(n, m)`` predicted cost in dollars.
            param: the trade-off parameter (one value of :meth:`sweep`, or any other positive value).

        Returns:
            ``(n,)`` int64 array of column indices.
        """
        if not (np.isfinite(param) and param > 0):
            raise ValueError(f"{self.name} reward parameter must be a positive finite number, got {param!r}")
        q, c = _check_predictions(q_hat, c_hat)
        return argmax_cheapest(self.score(q, c, float(param)), c)

    def choose_sweep(self, q_hat: np.ndarray, c_hat: np.ndarray) -> np.ndarray:
        """Choices for every value of :meth:`sweep`: a ``(len(sweep), n)`` int64 array (row ``k`` = ``sweep()[k]``).

        Same result as calling :meth:`choose` per value; the per-row cost ordering is computed once.
        """
        q, c = _check_predictions(q_hat, c_hat)
        order = np.argsort(c, axis=1, kind="stable")
        q_sorted = np.take_along_axis(q, order, axis=1)
        c_sorted = np.take_along_axis(c, order, axis=1)
        rows = np.arange(q.shape[0])
        params = self.sweep()
        out = np.empty((params.size, q.shape[0]), dtype=np.int64)
        for k, param in enumerate(params):  # loop over ≤ ~50 parameter values; each step is vectorised
            out[k] = order[rows, np.argmax(self.score(q_sorted, c_sorted, float(param)), axis=1)]
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, {self.param_name}: {self.sweep().size} values)"


class LinearReward(Reward):
    """RouterBench willingness-to-pay: ``R = λ·q_hat − c_hat``, λ over RouterBench's 32 values.

    A λ of ``x`` means "one unit of quality is worth ``x`` dollars". Small λ picks the cheapest predicted model,
    large λ the best predicted one.
    """

    name: ClassVar[str] = "linear"
    param_name: ClassVar[str] = "lambda"

    def __init__(self, lambdas: np.ndarray | tuple[float, ...] = WILLINGNESS_TO_PAY) -> None:
        values = np.asarray(lambdas, dtype=np.float64)
        if values.ndim != 1 or values.size == 0 or not (np.isfinite(values).all() and (values > 0).all()):
            raise ValueError("lambdas must be a non-empty 1-D array of positive finite numbers")
        self._lambdas = np.sort(values)

    def sweep(self) -> np.ndarray:
        return self._lambdas.copy()

    def score(self, q_hat: np.ndarray, c_hat: np.ndarray, param: float) -> np.ndarray:
        return param * q_hat - c_hat


class ExponentialReward(Reward):
    """Multiplicative cost discount: ``R = q_hat · exp(−c_hat / τ)``, equivalently ``log q_hat − c_hat / τ``.

    ``τ`` (dollars) is the cost at which a model's predicted quality is discounted by a factor ``e``. Predicted
    qualities are clipped to ``[eps, 1]`` first, so a model predicted to fail is worth ~0 at any price. Unlike
    ``exp(a·q_hat − b·c_hat)`` (a monotone transform of the linear reward, hence the same choices), this reward
    trades *relative* quality against absolute cost, so its choices differ from every λ of the linear reward.
    """

    name: ClassVar[str] = "exponential"
    param_name: ClassVar[str] = "tau"

    def __init__(self, taus: np.ndarray | tuple[float, ...] = EXPONENTIAL_TAUS, eps: float = QUALITY_EPS) -> None:
        values = np.asarray(taus, dtype=np.float64)
        if values.ndim != 1 or values.size == 0 or not (np.isfinite(values).all() and (values > 0).all()):
            raise ValueError("taus must be a non-empty 1-D array of positive finite numbers")
        if not 0.0 < eps < 1.0:
            raise ValueError(f"eps must be in (0, 1), got {eps}")
        self._taus = np.sort(values)
        self.eps = float(eps)

    def sweep(self) -> np.ndarray:
        return self._taus.copy()

    def score(self, q_hat: np.ndarray, c_hat: np.ndarray, param: float) -> np.ndarray:
        # log of q·exp(−c/τ): same argmax, no underflow of exp(−c/τ) for tiny τ.
        return np.log(np.clip(q_hat, self.eps, 1.0)) - c_hat / param


#: Registry of the rewards every router is evaluated with (stateless instances).
REWARDS: dict[str, Reward] = {"linear": LinearReward(), "exponential": ExponentialReward()}


def get_reward(name: str) -> Reward:
    """The registered reward called ``name``; raises ``ValueError`` listing the valid names otherwise."""
    try:
        return REWARDS[name]
    except KeyError:
        raise ValueError(f"unknown reward {name!r}; valid names: {', '.join(sorted(REWARDS))}") from None
