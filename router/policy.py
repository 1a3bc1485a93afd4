"""The default routing policy: a quality target, calibrated when a version is trained.

A quality target ``t`` (``ROUTER_ROUTE_QUALITY_TARGET`` / ``--quality-target``, default 1.0) asks for the cheapest
routing whose expected pooled quality reaches ``t`` × the best single model's. The parameter cannot be read off the
router's own predictions (they are optimistic about themselves) nor off the test split (that would be tuning on
test), so it is **calibrated on the train split with cross-fitted predictions**: the train rows with every model's
outcome observed are cut into ``folds`` folds (per task, by a seeded permutation); for each fold a fresh router of
the same kind (for the nightly's attention router: as many ensemble members as the registered one, or
``ROUTER_ROUTE_CALIBRATION_MEMBERS``; the folds fitted one per core) is fitted on the other train rows and predicts
that fold. On those out-of-fold predictions, for every value of a fine grid of the reward's parameter
(:func:`calibration_grid`), the chosen models' **true** mean quality and total cost are measured and divided by the
best single model's on the same rows, with the standard error of the quality ratio. That curve is the
:class:`Calibration`: stored with the registered version (the whole curve in ``policy.json``, the run's and the
pyfunc's, which its ``model_config`` references by sha256; the choice in MLflow params/tags ``policy.*`` and the
signature's defaults), so batch routing, ``mlflow models serve`` and any later target read the same numbers.

:meth:`Calibration.pick` resolves a target on the **hull** of the calibrated (cost, quality) points: the cheapest
hull point whose quality ratio is within :data:`NOISE_Z` standard errors of the target. Between two hull vertices
it is a **mixed policy**: the share ``w`` of prompts whose share key (:func:`share_keys`, from the sha256 of the
prompt) is below ``w`` is routed with the dearer parameter, the rest with the cheaper one, so expected quality and
cost are the chord's. When no hull point comes within the noise of the target, the cheapest point of the best
calibrated quality is used (``reached`` is then false and said so wherever the policy is reported). A best single
model that cost nothing on the calibration rows puts every point that spends at an infinite cost ratio, off the
hull: such a point is chosen only when no hull point reaches the target, the smallest grid value that does.
:func:`split_figures` reports the chosen policy honestly on the test split (the final router's predictions;
quality and cost against the best single model there).
"""

from __future__ import annotations

import logging
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from router import __version__
from router.evaluation import NOISE_Z
from router.rewards import get_reward
from router.routers.base import Router, RoutingData

if TYPE_CHECKING:
    from router.oof_cache import OutOfFold

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_FOLDS",
    "DEFAULT_QUALITY_TARGET",
    "Calibration",
    "Choice",
    "calibrate",
    "calibration_curve",
    "cross_fitted",
    "out_of_fold",
    "prompt_key",
    "share_keys",
    "split_figures",
]

DEFAULT_QUALITY_TARGET = 1.0
DEFAULT_FOLDS = 10
#: Reward parameters of the calibration grid (log-spaced over the reward's sweep; 8× the budget grid's density).
CALIBRATION_GRID = 2049
#: Fewer dense calibration rows than this and no calibration is made (the quality end of the sweep is used).
MIN_ROWS = 30
#: A calibrated quality within this (relative) of the target counts as reaching it (float sums of equal scores).
_RTOL = 1e-9
#: Hex digits of a prompt_id read as its share key (the last 8: prompt_id ranges split distributed routing by its
#: first digits, so the share does not follow the chunks).
_SHARE_DIGITS = slice(24, 32)


@dataclass(frozen=True)
class Choice:
    """One resolved policy: the reward parameter for a quality target, with its calibrated figures."""

    reward: str
    quality_target: float
    reward_param: float
    reached: bool  # the calibrated quality ratio reaches the target
    quality_ratio: float  # calibrated (out-of-fold) quality / the best single model's
    cost_ratio: float  # calibrated total cost / the best single model's
    reference_model: str
    #: The mixed policy (module docstring): the dearer parameter, routed for this share of the prompts.
    mix_param: float | None = None
    mix_share: float = 0.0
    quality_se: float = 0.0  # standard error of quality_ratio on the calibration rows

    def describe(self) -> str:
        how = "reaches" if self.reached else "falls short of"
        within = f" within {NOISE_Z:g} standard errors ({self.quality_se:.3f})" if self.reached and \
            self.quality_ratio < self.quality_target * (1.0 - _RTOL) else ""
        return (f"quality target {self.quality_target:g} × {self.reference_model}: {self.reward} parameter "
                f"{self.parameters()} ({how} it{within} on held-out train predictions: quality ratio "
                f"{self.quality_ratio:.3f} at cost ratio {self.cost_ratio:.3f})")

    def parameters(self) -> str:
        """The parameter, or the mix: ``0.0956`` or ``0.0407 (62% of prompts) / 0.0956 (38%)``."""
        if self.mix_param is None:
            return f"{self.reward_param:.4g}"
        return (f"{self.reward_param:.4g} ({1.0 - self.mix_share:.0%} of prompts) / {self.mix_param:.4g} "
                f"({self.mix_share:.0%})")

    def params_of(self, prompt_ids: Sequence[str]) -> np.ndarray:
        """The parameter each prompt is routed with (:func:`mixed_params`)."""
        mix = None if self.mix_param is None else (self.mix_param, self.mix_share)
        return mixed_params(prompt_ids, self.reward_param, mix)

    def choose(self, q_hat: np.ndarray, c_hat: np.ndarray, prompt_ids: Sequence[str]) -> np.ndarray:
        """The chosen model of every prompt under this policy (its parameter, or its mix by share key)."""
        reward = get_reward(self.reward)
        chosen = reward.choose(q_hat, c_hat, self.reward_param)
        if self.mix_param is not None and len(prompt_ids):
            dear = share_keys(prompt_ids) < self.mix_share
            if dear.any():
                chosen[dear] = reward.choose(np.asarray(q_hat)[dear], np.asarray(c_hat)[dear], self.mix_param)
        return chosen


@dataclass(frozen=True)
class Calibration:
    """Calibrated quality and cost ratios of every grid value of one reward (see the module docstring)."""

    reward: str
    reference_model: str  # best single model on the calibration rows
    n_rows: int
    folds: int
    grid: list[float]
    quality_ratio: list[float]
    cost_ratio: list[float]
    quality_target: float = DEFAULT_QUALITY_TARGET  # the target the version was registered with
    test: dict[str, Any] = field(default_factory=dict)  # split_figures() of the registered target
    quality_se: list[float] = field(default_factory=list)  # standard error of each quality ratio (empty: 0)
    members: int = 0  # ensemble members of each cross-fitted router (0: not recorded)
    carried_rows: int = 0  # rows whose out-of-fold predictions an earlier calibration made (router.oof_cache)
    carried_from: str = ""  # that calibration's training run id

    def pick(self, target: float | None = None) -> Choice:
        target = self.quality_target if target is None else float(target)
        if not (np.isfinite(target) and target > 0):
            raise ValueError(f"quality target must be a positive number, got {target!r}")
        grid, q, c = (np.asarray(v, dtype=np.float64) for v in (self.grid, self.quality_ratio, self.cost_ratio))
        se = np.asarray(self.quality_se, dtype=np.float64) if self.quality_se else np.zeros(grid.size)
        reaches = q >= target * (1.0 - _RTOL) - NOISE_Z * se  # each point reaches the target within its noise
        # A reference model that cost nothing puts every point that spends at an infinite cost ratio: those points
        # have no place on the hull; grid order (the reward's willingness to pay) ranks them among themselves.
        finite = np.flatnonzero(np.isfinite(c))
        hull = finite[_hull_points(grid[finite], q[finite], c[finite])] if finite.size else finite
        ok = np.flatnonzero(reaches[hull])
        if ok.size == 0:  # not on the hull: the smallest grid value that reaches it at an infinite cost ratio,
            dear = np.flatnonzero(reaches & ~np.isfinite(c))  # else the cheapest of the best quality, flagged
            if dear.size:
                k = int(dear[np.argmin(grid[dear])])
                return Choice(self.reward, target, float(grid[k]), True, float(q[k]), float(c[k]),
                              self.reference_model, quality_se=float(se[k]))
            best = np.flatnonzero(q == q.max())
            k = int(hull[-1]) if hull.size and q[hull[-1]] == q.max() else int(best[np.argmin(grid[best])])
            return Choice(self.reward, target, float(grid[k]), False, float(q[k]), float(c[k]), self.reference_model,
                          quality_se=float(se[k]))
        b = int(ok[0])
        k = hull[b]
        if b == 0:
            return Choice(self.reward, target, float(grid[k]), True, float(q[k]), float(c[k]), self.reference_model,
                          quality_se=float(se[k]))
        a = hull[b - 1]
        # On the chord a → b, share w of dearer prompts: quality q_a + w Δq and its noise se_a + w Δse (both linear
        # in w); the smallest w with q ≥ target − z·se.
        w = float(np.clip((target - NOISE_Z * se[a] - q[a]) / ((q[k] - q[a]) + NOISE_Z * (se[k] - se[a])), 0.0, 1.0))
        if w >= 1.0 - _RTOL:  # the vertex itself (within float noise)
            return Choice(self.reward, target, float(grid[k]), True, float(q[k]), float(c[k]), self.reference_model,
                          quality_se=float(se[k]))
        return Choice(self.reward, target, float(grid[a]), True, float(q[a] + w * (q[k] - q[a])),
                      float(c[a] + w * (c[k] - c[a])), self.reference_model, mix_param=float(grid[k]), mix_share=w,
                      quality_se=float(se[a] + w * (se[k] - se[a])))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def params(self) -> dict[str, Any]:
        """``policy.*`` MLflow params/tags of the registered target's choice (short values: the curve itself is
        ``policy.json``, ``router.registry.tracking``)."""
        choice = self.pick()
        out = {"policy.kind": "quality_target", "policy.quality_target": choice.quality_target,
               "policy.reward": choice.reward, "policy.reward_param": choice.reward_param,
               "policy.reached": choice.reached, "policy.reference_model": choice.reference_model,
               "policy.calibration_rows": self.n_rows, "policy.calibration_folds": self.folds,
               "policy.calibration_members": self.members, "policy.calibration_points": len(self.grid),
               "policy.calibration_carried_rows": self.carried_rows,
               "policy.calibration_carried_from": self.carried_from,
               "policy.calibrated_quality_ratio": choice.quality_ratio,
               "policy.calibrated_cost_ratio": choice.cost_ratio, "policy.calibrated_quality_se": choice.quality_se,
               "policy.mix_param": choice.mix_param, "policy.mix_share": choice.mix_share}
        out.update({f"policy.test.{k}": v for k, v in self.test.items()})
        return out

    def defaults(self) -> dict[str, Any]:
        """The pyfunc's default inference params: this reward and its calibrated (cheaper) parameter; the served
        model routes the registered target's mix itself (:meth:`Choice.choose`) when a request names no parameter."""
        reward = get_reward(self.reward)
        return {"reward": self.reward, reward.param_name: self.pick().reward_param}


def _hull_points(grid: np.ndarray, q: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Grid indices of the vertices of the calibrated (cost, quality) points' non-decreasing upper hull (the
    evaluation's hull, :func:`router.evaluation.nondecreasing_hull`), cheapest first; a vertex shared by several
    grid values is the smallest of them."""
    from router.evaluation import nondecreasing_hull

    vertices = nondecreasing_hull(np.column_stack([c, q]))
    return np.array([int(np.flatnonzero((c == x) & (q == y))[np.argmin(grid[(c == x) & (q == y)])])
                     for x, y in vertices], dtype=np.int64)


def prompt_key(prompt: str) -> str:
    """A prompt's ``prompt_id`` as the store computes it (``router.ingest.prompt_ids``): the first 32 hex digits of
    the sha256 of its UTF-8 text (the served model hashes its input prompts with this)."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:32]


def share_keys(prompt_ids: Sequence[str]) -> np.ndarray:
    """A number in [0, 1) per prompt_id (uniform: hex digits of a sha256): the prompts of a mixed policy whose key is
    below its share go to the dearer parameter, the same ones in every run, batch or served."""
    return np.fromiter((int(str(pid)[_SHARE_DIGITS], 16) for pid in prompt_ids), dtype=np.float64,
                       count=len(prompt_ids)) / float(16 ** (_SHARE_DIGITS.stop - _SHARE_DIGITS.start))


def _pooled_ratios(choices: np.ndarray, quality: np.ndarray, cost: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """Per row of ``choices`` ``(p, n)``: (mean true quality, total true cost) / the best single model's, it, and the
    standard error of each quality ratio.

    The best single model: highest mean quality (NaN = 0), ties to the lower total cost, then the lower column. The
    standard error is the ratio estimator's (delta method, paired rows): ``sd(s_chosen − r·s_best) / (√n · mean
    s_best)``; a row where the choice is the best model adds to it only through ``1 − r``."""
    s = np.nan_to_num(quality, nan=0.0)
    rows = np.arange(s.shape[0])
    picked = s[rows, choices]
    perf = picked.mean(axis=1)
    spent = cost[rows, choices].sum(axis=1)
    single_perf, single_cost = s.mean(axis=0), cost.sum(axis=0)
    best = int(np.lexsort((np.arange(s.shape[1]), single_cost, -single_perf))[0])
    ref_perf, ref_cost = float(single_perf[best]), float(single_cost[best])
    q_ratio = perf / ref_perf if ref_perf > 0 else np.where(perf > 0, np.inf, 1.0)
    c_ratio = spent / ref_cost if ref_cost > 0 else np.where(spent > 0, np.inf, 0.0)
    n = s.shape[0]
    if ref_perf > 0 and n > 1:
        resid = picked - np.asarray(q_ratio)[:, None] * s[:, best][None, :]
        se = resid.std(axis=1, ddof=1) / (np.sqrt(n) * ref_perf)
    else:
        se = np.zeros(choices.shape[0])
    return q_ratio, c_ratio, best, se


def calibration_grid(reward_name: str) -> np.ndarray:
    """The default calibration grid: :data:`CALIBRATION_GRID` values log-spaced over the reward's sweep."""
    sweep = get_reward(reward_name).sweep()
    return np.geomspace(sweep.min(), sweep.max(), CALIBRATION_GRID)


def calibration_curve(q_hat: np.ndarray, c_hat: np.ndarray, quality: np.ndarray, cost: np.ndarray,
                      models: list[str], reward_name: str, *, grid: np.ndarray | None = None,
                      folds: int = 0) -> Calibration:
    """The :class:`Calibration` of predictions ``q_hat``/``c_hat`` against true ``quality``/``cost`` (dense costs),
    over ``grid`` (default: :func:`calibration_grid`). Runs of grid values that choose alike are stored once, by
    their smallest value (what :meth:`Calibration.pick` would take among them)."""
    reward = get_reward(reward_name)
    grid = calibration_grid(reward_name) if grid is None else np.asarray(grid, dtype=np.float64)
    cost = np.asarray(cost, dtype=np.float64)
    if np.isnan(cost).any():
        raise ValueError("calibration needs dense true costs")
    choices = np.stack([reward.choose(q_hat, c_hat, float(p)) for p in grid])
    keep = np.ones(len(choices), dtype=bool)
    keep[1:] = (choices[1:] != choices[:-1]).any(axis=1)
    grid, choices = grid[keep], choices[keep]
    q_ratio, c_ratio, best, se = _pooled_ratios(choices, np.asarray(quality, dtype=np.float64), cost)
    return Calibration(reward_name, models[best], int(quality.shape[0]), int(folds), [float(g) for g in grid],
                       [float(v) for v in q_ratio], [float(v) for v in c_ratio],
                       quality_se=[float(v) for v in se])


def fold_ids(tasks: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold id per row: within each task, a seeded permutation dealt round-robin (folds of equal task mix)."""
    rng = np.random.default_rng(seed)
    out = np.empty(len(tasks), dtype=np.int64)
    tasks = np.asarray(tasks).astype(str)
    for task in np.unique(tasks):
        idx = np.flatnonzero(tasks == task)
        out[rng.permutation(idx)] = np.arange(idx.size) % folds
    return out


def dense_rows(data: RoutingData) -> np.ndarray:
    """Indices of the rows of ``data`` with every model's cost observed: the rows a calibration is measured on."""
    return np.flatnonzero(~np.isnan(data.cost).any(axis=1))


def cross_fitted(make: Callable[[], Router], data: RoutingData, folds: int, seed: int, *, parallel: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Out-of-fold ``(q_hat, c_hat, rows)`` on the dense rows of ``data`` (every model's cost observed).

    Each fold is predicted by a router fitted on every other train row (sparse rows included). ``parallel`` fits
    the folds on worker threads, one per core (``router.routers.attention_inference.on_cores``), for routers whose
    fit is thread-safe and does not depend on the threads' timing (the attention router's); the predictions are
    then the same as one fold after another."""
    from router.routers.attention_inference import on_cores  # noqa: PLC0415 - torch, only when calibrating

    dense = dense_rows(data)
    fold = fold_ids(data.eval_names[dense], folds, seed)
    m = len(data.models)
    q_hat, c_hat = np.empty((dense.size, m)), np.empty((dense.size, m))

    def fit_and_predict(k: int) -> None:
        held = dense[fold == k]
        if held.size == 0:
            return
        keep = np.setdiff1d(np.arange(data.n), held)
        router = make().fit(data.subset(keep), seed=seed)
        q, c = router.predict(data.X[held], data.prompt_chars[held], data.eval_names[held])
        q_hat[fold == k], c_hat[fold == k] = q, c
        log.info("calibration fold %d/%d: fitted on %d rows, predicted %d", k + 1, folds, keep.size, held.size)

    if parallel:
        on_cores(fit_and_predict, range(folds), "calibration-fold")
    else:
        for k in range(folds):
            fit_and_predict(k)
    return q_hat, c_hat, dense


def out_of_fold(make: Callable[[], Router], data: RoutingData, *, folds: int, seed: int, parallel: bool = False,
                carried: OutOfFold | None = None, max_added: float = 0.0) -> tuple[OutOfFold, np.ndarray]:
    """Out-of-fold predictions of the dense rows of ``data`` and those rows' indices.

    With ``carried`` (an earlier calibration's, ``router.oof_cache``) the predictions of rows whose prompt and
    vector it holds are reused, and the other dense rows (the new ones) are predicted as one more fold: by a
    router fitted on every train row but them. That is done while the rows predicted outside a full cross-fit
    (those new ones and the carried rows so marked) are at most ``max_added`` of the dense rows; else, or
    without ``carried``, a full cross-fit (:func:`cross_fitted`). The result has no run id nor identity yet."""
    from router.oof_cache import OutOfFold, vector_keys  # noqa: PLC0415 - only when calibrating

    dense = dense_rows(data)
    ids = np.asarray([data.prompt_ids[i] for i in dense] if data.prompt_ids else [""] * dense.size, dtype=str)
    keys = vector_keys(data.X[dense])
    if carried is not None and data.prompt_ids and dense.size:
        index = {(pid, int(key)): k for k, (pid, key) in enumerate(zip(carried.prompt_ids, carried.vector_keys,
                                                                       strict=True))}
        pos = np.fromiter((index.get((pid, int(key)), -1) for pid, key in zip(ids, keys, strict=True)),
                          dtype=np.int64, count=dense.size)
        hit = pos >= 0
        added = np.where(hit, carried.added[np.maximum(pos, 0)], True)
        if added.mean() <= max_added:
            m = len(data.models)
            q_hat, c_hat = np.empty((dense.size, m)), np.empty((dense.size, m))
            q_hat[hit], c_hat[hit] = carried.q_hat[pos[hit]], carried.c_hat[pos[hit]]
            new = dense[~hit]
            if new.size:
                router = make().fit(data.subset(np.setdiff1d(np.arange(data.n), new)), seed=seed)
                q_hat[~hit], c_hat[~hit] = router.predict(data.X[new], data.prompt_chars[new], data.eval_names[new])
            log.info("calibration: %d rows' predictions carried from run %s, %d new rows predicted as one more fold",
                     int(hit.sum()), carried.run_id, new.size)
            return OutOfFold("", list(data.models), "", ids, keys, q_hat, c_hat, added, int(hit.sum()),
                             carried.run_id), dense
        log.info("calibration: %.0f%% of the rows would be predicted outside a full cross-fit (at most %.0f%%): "
                 "cross-fitting from scratch", 100 * added.mean(), 100 * max_added)
    q_hat, c_hat, rows = cross_fitted(make, data, folds, seed, parallel=parallel)
    return OutOfFold("", list(data.models), "", ids, keys, q_hat, c_hat, np.zeros(dense.size, dtype=bool)), rows


def _enough_rows(train: RoutingData, folds: int) -> bool:
    dense = dense_rows(train).size
    if dense < max(MIN_ROWS, folds):
        log.warning("only %d train rows with every model's outcome: no quality-target calibration", dense)
        return False
    return True


def _curve(oof: OutOfFold, rows: np.ndarray, train: RoutingData, reward_name: str, quality_target: float,
           folds: int) -> Calibration:
    cal = calibration_curve(oof.q_hat, oof.c_hat, train.quality[rows], train.cost[rows], list(train.models),
                            reward_name, folds=folds)
    return replace(cal, quality_target=float(quality_target), carried_rows=oof.carried,
                   carried_from=oof.carried_from)


def calibrate(make: Callable[[], Router], train: RoutingData, reward_name: str, *,
              quality_target: float = DEFAULT_QUALITY_TARGET, folds: int = DEFAULT_FOLDS,
              seed: int = 42, parallel: bool = False) -> Calibration | None:
    """Cross-fitted calibration on the train split (``None`` when it has fewer than ``MIN_ROWS`` dense rows);
    ``parallel`` as :func:`cross_fitted`."""
    if not _enough_rows(train, folds):
        return None
    oof, rows = out_of_fold(make, train, folds=folds, seed=seed, parallel=parallel)
    return _curve(oof, rows, train, reward_name, quality_target, folds)


def split_figures(choice: Choice, q_hat: np.ndarray, c_hat: np.ndarray, test: RoutingData) -> dict[str, Any]:
    """The chosen policy on the test split as one backlog: quality and cost vs the best single model there (a
    mixed policy routes each prompt by its share key, as batch routing does; without prompt ids, the expectation
    of the mix)."""
    s = np.nan_to_num(np.asarray(test.quality, dtype=np.float64), nan=0.0)
    cost = np.asarray(test.cost, dtype=np.float64)
    reward = get_reward(choice.reward)
    if choice.mix_param is None or test.prompt_ids:
        picks, weights = [choice.choose(q_hat, c_hat, test.prompt_ids)], [1.0]
    else:
        picks = [reward.choose(q_hat, c_hat, choice.reward_param), reward.choose(q_hat, c_hat, choice.mix_param)]
        weights = [1.0 - choice.mix_share, choice.mix_share]
    q_ratio, c_ratio, best, _ = _pooled_ratios(np.stack(picks), s, cost)
    rows = np.arange(test.n)
    w = np.asarray(weights)
    return {"rows": int(test.n), "reference_model": test.models[best],
            "quality": float(w @ [s[rows, p].mean() for p in picks]),
            "cost": float(w @ [cost[rows, p].sum() for p in picks]),
            "reference_quality": float(s[:, best].mean()), "reference_cost": float(cost[:, best].sum()),
            "quality_ratio": float(w @ q_ratio), "cost_ratio": float(w @ c_ratio)}


def calibrate_training_run(settings: Any, run: Any) -> Calibration | None:
    """The calibration of a training run's attention router (``router.pipeline.TrainRun``) for
    ``settings.route_reward`` and ``settings.route_quality_target``, with its test-split figures.

    The newest earlier calibration's predictions (``settings.calibration``, ``router.oof_cache``) are carried
    forward as :func:`out_of_fold` allows (``ROUTER_ROUTE_CALIBRATION_CARRY``); this one's are kept there in turn."""
    from router import oof_cache
    from router.pipeline import ATTENTION, predict
    from router.representation import Representation
    from router.resources import routers_code
    from router.routers import get_router

    members = settings.route_calibration_members or get_router(ATTENTION).config.n_members
    if not _enough_rows(run.train, settings.route_calibration_folds):
        return None
    ident = oof_cache.identity(encoder=settings.encoder, representation=Representation.from_settings(settings).key,
                               seed=settings.seed, members=members, version=__version__, code=routers_code())
    carried = (oof_cache.latest(settings.calibration, ident, list(run.train.models))
               if settings.route_calibration_carry > 0 else None)
    oof, rows = out_of_fold(lambda: get_router(ATTENTION, n_members=members), run.train,
                            folds=settings.route_calibration_folds, seed=settings.seed, parallel=True,
                            carried=carried, max_added=settings.route_calibration_carry)
    oof_cache.save(settings.calibration, replace(oof, run_id=run.run_id, identity=ident))
    cal = _curve(oof, rows, run.train, settings.route_reward, settings.route_quality_target,
                 settings.route_calibration_folds)
    test = split_figures(cal.pick(), *predict(run.routers[ATTENTION], run.test), run.test)
    cal = replace(cal, test=test, members=members)
    log.info("%s; on the test split: quality ratio %.3f at cost ratio %.3f", cal.pick().describe(),
             test["quality_ratio"], test["cost_ratio"])
    return cal


def mixed_params(prompt_ids: Sequence[str], param: float, mix: tuple[float, float] | None) -> np.ndarray:
    """The parameter each prompt is routed with: ``param``, or a mix's dearer parameter where the prompt's share
    key (:func:`share_keys`) is below the mix's share (``mix`` = (dearer parameter, share))."""
    out = np.full(len(prompt_ids), float(param), dtype=np.float64)
    if mix is not None and len(prompt_ids):
        out[share_keys(prompt_ids) < mix[1]] = mix[0]
    return out


def mix_of(policy: Mapping[str, Any]) -> tuple[float, float] | None:
    """A resolved policy's (:func:`resolve`) mix as (dearer parameter, share), or ``None``."""
    return (policy["mix_param"], policy["mix_share"]) if policy.get("mix_param") is not None else None


def resolve(stored: Mapping[str, Any] | None, reward: str, target: float) -> tuple[float | None, dict[str, Any]]:
    """(reward parameter, policy description) of a quality target for a version's stored calibration.

    Without a calibration for ``reward`` the parameter is ``None`` (the caller routes at the quality end of the
    sweep) and the description says why."""
    if not stored:
        log.warning("the champion has no quality-target calibration: routing at the quality end of the sweep")
        return None, {"kind": "quality_end", "reason": "the champion has no quality-target calibration"}
    cal = Calibration.from_dict(stored)
    if cal.reward != reward:
        log.warning("the champion is calibrated for the %s reward, not %s: routing at the quality end of the sweep",
                    cal.reward, reward)
        return None, {"kind": "quality_end", "reason": f"the champion is calibrated for the {cal.reward} reward"}
    choice = cal.pick(target)
    info = {"kind": "quality_target", **asdict(choice), "calibration_rows": cal.n_rows}
    if np.isclose(target, cal.quality_target) and cal.test:
        info["test"] = dict(cal.test)
    return choice.reward_param, info
