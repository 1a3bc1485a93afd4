"""Hyper-parameter search for the ``attention`` router, scored by validation AIQ on the *training* split.

The training rows are split into ``k`` folds (stratified by eval set, seed 42; default ``k = 5``, so each
validation slice is 20% of train). Every configuration is fitted on ``k − 1`` folds and scored with RouterBench's
protocol (``router.evaluation``, linear reward) on the held-out fold; its score is the mean over the folds.
Cross-validating instead of using one 20% slice matters here: a slice of a small eval set (mbpp: ~60 prompts)
makes single-slice AIQ differences mostly noise. The test split is never read here but by
``--calibration``, which reports a choice made on the train split on it.

Run it on an ``.npz`` laid out like RouterBench's embedded subset (see :func:`load_npz`)::

    python -m bench.tuning /tmp/rb/subset.npz --threads 2
    python -m bench.tuning /tmp/llm/llmrouter.npz --grid quality --folds 5 --log /tmp/llm/cv.jsonl

``--grid quality`` (:data:`QUALITY_GRID`) is the search on ``data/llmrouter_9models``: the current defaults with
one change each (model embeddings from per-model statistics, the task label, sizes, epochs, regularisation, loss
weighting, ensemble size), every fit scored with the linear reward and with the exponential reward on τ grids of
3, 6 and 12 values per decade (:data:`TAU_GRIDS`), plus ``knn40`` on the same folds. ``--log`` appends each
configuration's result as a JSON line as soon as it is done, and skips configurations already in the file.
``--fallback`` instead measures what a missing task costs at prediction time (:func:`task_fallback`);
``--shrinkage`` what shrinking the quality predictions toward per-task means does (:func:`shrinkage`);
``--blend`` what blending them with ``knn40``'s does (:func:`knn_blend`);
``--calibration`` what the quality-target calibration's ensemble size and folds do (:func:`calibration_variants`:
its train-side choice, and that choice applied to a five-member router's test predictions, reported only);
``--carry`` what a calibration carried forward from an earlier one picks against a full cross-fit
(:func:`carry_variants`).

The defaults baked into :class:`router.routers.attention.AttentionConfig` are the best row of that table
(``docs/router.md`` lists the numbers).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from router.evaluation import evaluate
from router.rewards import ExponentialReward, Reward, get_reward
from router.routers import get_router
from router.routers.base import RoutingData

__all__ = ["CALIBRATION_VARIANTS", "DEFAULT_GRID", "GRID_BASE", "QUALITY_GRID", "TAU_GRIDS", "Trial", "calibration_variants", "carry_variants", "cross_validate", "fold_splits", "knn_blend", "load_npz", "main", "score", "stratified_folds", "tune"]

#: The reference point of the grid, spelled out so the grid means the same thing if the defaults change.
GRID_BASE: dict[str, Any] = {
    "hidden": 128, "model_dim": 32, "attn_dim": 32, "dropout": 0.1, "weight_decay": 1e-4, "lr": 2e-3,
    "max_epochs": 200, "patience": 20, "val_fraction": 0.1, "cost_weight": 1.0, "n_members": 1, "use_task": False,
}  # fmt: skip

_GRID_CHANGES: tuple[dict[str, Any], ...] = (
    {},
    {"hidden": 64, "model_dim": 16, "attn_dim": 16},
    {"hidden": 256, "dropout": 0.2},
    {"dropout": 0.3, "weight_decay": 1e-2},
    {"lr": 5e-4},
    {"cost_weight": 0.2},
    {"n_members": 5},
    {"val_fraction": 0.0, "max_epochs": 10},
    {"val_fraction": 0.0, "max_epochs": 10, "n_members": 5},
    {"val_fraction": 0.0, "max_epochs": 10, "n_members": 5, "use_task": True},
)

#: Configurations searched: :data:`GRID_BASE` with one change each (every value explicit). Kept small: each
#: configuration costs ``n_folds`` fits.
DEFAULT_GRID: tuple[dict[str, Any], ...] = tuple({**GRID_BASE, **change} for change in _GRID_CHANGES)


#: ``--grid quality``: the router's defaults before that search (the task label off), spelled out so the grid means
#: the same thing when the defaults change; :data:`QUALITY_GRID` is this with one change each.
QUALITY_BASE: dict[str, Any] = {
    "hidden": 128, "model_dim": 32, "attn_dim": 32, "dropout": 0.1, "weight_decay": 1e-4, "lr": 2e-3,
    "max_epochs": 10, "val_fraction": 0.0, "cost_weight": 1.0, "n_members": 5, "use_task": False,
    "model_init": "random",
}  # fmt: skip

_QUALITY_CHANGES: tuple[dict[str, Any], ...] = (  # in order of priority: the log keeps what finished
    {},
    {"model_init": "stats"},
    {"use_task": True},
    {"use_task": True, "model_init": "stats"},
    # The task label was the clear gain: the rest is searched around it.
    {"use_task": True, "max_epochs": 20},
    {"use_task": True, "max_epochs": 5},
    {"use_task": True, "dropout": 0.3, "weight_decay": 1e-2},
    {"use_task": True, "n_members": 10},
    {"use_task": True, "hidden": 256},
    {"use_task": True, "cost_weight": 0.3},
    {"use_task": True, "task_dropout": 0.2},
)

QUALITY_GRID: tuple[dict[str, Any], ...] = tuple({**QUALITY_BASE, **change} for change in _QUALITY_CHANGES)

#: Exponential-reward τ grids scored on every fit: the default (3 values per decade, 1e-9 … 1e5 $) and denser.
TAU_GRIDS: dict[str, Reward] = {
    f"exp_{per_decade}": ExponentialReward(np.logspace(-9.0, 5.0, 14 * per_decade + 1)) for per_decade in (3, 6, 12)
}


@dataclass(frozen=True)
class Trial:
    """One scored configuration (metrics are means over validation folds; ``aiq_std`` is across folds)."""

    params: dict[str, Any]
    aiq: float
    max_perf: float
    per_eval_aiq: dict[str, float]
    fit_seconds: float
    aiq_std: float = 0.0
    zero_router_aiq: float = float("nan")
    reward_aiq: dict[str, float] | None = None  # mean AIQ per reward (``linear`` and each of ``rewards``)


def load_npz(path: str | Path) -> tuple[RoutingData, RoutingData]:
    """``(train, test)`` from an ``.npz`` with arrays ``X, Q, C, chars, models, split`` and optional ``eval_name``.

    ``Q``/``C`` are (n, m) true scores/costs (NaN = unobserved), ``split`` holds ``"train"``/``"test"`` per row.
    """
    with np.load(path, allow_pickle=False) as d:
        n = d["X"].shape[0]
        evals = d["eval_name"].astype(str).astype(object) if "eval_name" in d.files else np.full(n, "", dtype=object)
        data = RoutingData(
            X=d["X"].astype(np.float32),
            quality=d["Q"].astype(np.float32),
            cost=d["C"].astype(np.float32),
            prompt_chars=d["chars"].astype(np.int64),
            models=[str(m) for m in d["models"]],
            eval_names=evals,
        )
        split = d["split"].astype(str)
    return data.subset(np.flatnonzero(split == "train")), data.subset(np.flatnonzero(split == "test"))


def stratified_folds(data: RoutingData, n_folds: int = 5, seed: int = 42) -> np.ndarray:
    """Fold number (0 … n_folds−1) of every row: each eval set's rows are shuffled and dealt round-robin."""
    if n_folds < 2:
        raise ValueError("n_folds must be >= 2")
    rng = np.random.default_rng(seed)
    labels = np.asarray(data.eval_names).astype(str)
    fold = np.empty(data.n, dtype=np.int64)
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        fold[rows] = np.arange(rows.size) % n_folds
    return fold


def fold_splits(train: RoutingData, n_folds: int, seed: int) -> Iterator[tuple[RoutingData, RoutingData]]:
    """``(fit, validation)`` of each of :func:`stratified_folds`' folds in turn: the fold held out, the rest fitted."""
    fold = stratified_folds(train, n_folds, seed)
    for k in range(n_folds):
        yield train.subset(np.flatnonzero(fold != k)), train.subset(np.flatnonzero(fold == k))


def score(
    router_name: str, params: Mapping[str, Any], fit: RoutingData, val: RoutingData, seed: int = 42,
    rewards: Mapping[str, Reward] | None = None,
) -> Trial:
    """Fit ``router_name`` with ``params`` on ``fit`` and score it on ``val`` (linear reward, mean AIQ; the
    same predictions are also scored with each of ``rewards``, in :attr:`Trial.reward_aiq`)."""
    start = time.perf_counter()
    router = get_router(router_name, **params).fit(fit, seed=seed)
    seconds = time.perf_counter() - start
    q_hat, c_hat = router.predict(val.X, val.prompt_chars, val.eval_names)
    scored = {"linear": "linear", **(rewards or {})}
    metrics = evaluate({name: (q_hat, c_hat, reward) for name, reward in scored.items()},
                       val.quality, val.cost, val.eval_names, val.models).metrics  # fmt: skip
    per_eval = {ev: float(m["linear"]["aiq"]) for ev, m in metrics["per_eval"].items()}
    summary = metrics["routers"]["linear"]
    zero = float(metrics["routers"]["zero_router"]["aiq"])
    reward_aiq = {name: float(metrics["routers"][name]["aiq"]) for name in scored}
    return Trial(dict(params), float(summary["aiq"]), float(summary["max_perf"]), per_eval, seconds, 0.0, zero,
                 reward_aiq)  # fmt: skip


def cross_validate(
    router_name: str, params: Mapping[str, Any], train: RoutingData, n_folds: int = 5, seed: int = 42,
    rewards: Mapping[str, Reward] | None = None,
) -> Trial:
    """Mean of :func:`score` over ``n_folds`` stratified folds of ``train`` (fit seconds: mean per fold)."""
    trials = [score(router_name, params, fit, val, seed, rewards) for fit, val in fold_splits(train, n_folds, seed)]
    aiqs = np.array([t.aiq for t in trials])
    return Trial(
        params=dict(params),
        aiq=float(aiqs.mean()),
        max_perf=float(np.mean([t.max_perf for t in trials])),
        per_eval_aiq={ev: float(np.mean([t.per_eval_aiq[ev] for t in trials])) for ev in trials[0].per_eval_aiq},
        fit_seconds=float(np.mean([t.fit_seconds for t in trials])),
        aiq_std=float(aiqs.std()),
        zero_router_aiq=float(np.mean([t.zero_router_aiq for t in trials])),
        reward_aiq={name: float(np.mean([t.reward_aiq[name] for t in trials])) for name in trials[0].reward_aiq},
    )


def tune(
    train: RoutingData,
    grid: Sequence[Mapping[str, Any]] = DEFAULT_GRID,
    router_name: str = "attention",
    n_folds: int = 5,
    seed: int = 42,
) -> list[Trial]:
    """Cross-validate every configuration of ``grid`` on ``train``; best (highest mean AIQ) first."""
    trials = [cross_validate(router_name, params, train, n_folds, seed) for params in grid]
    return sorted(trials, key=lambda t: -t.aiq)


def quality_search(train: RoutingData, n_folds: int, seed: int, log_path: Path | None) -> list[dict[str, Any]]:
    """Cross-validate ``knn40`` and every :data:`QUALITY_GRID` configuration of ``attention``, scored with the
    linear reward and each of :data:`TAU_GRIDS`; one JSON-able row per configuration, in grid order. Rows already
    in ``log_path`` (same router, params and folds) are read back instead of refitted; new ones are appended."""
    done: list[dict[str, Any]] = []
    if log_path is not None and log_path.exists():
        done = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    rows = []
    for router_name, params in [("knn40", {}), *(("attention", dict(p)) for p in QUALITY_GRID)]:
        key = {"router": router_name, "params": params, "folds": n_folds, "seed": seed}
        row = next((r for r in done if all(r.get(k) == v for k, v in key.items())), None)
        if row is None:
            t = cross_validate(router_name, params, train, n_folds, seed, TAU_GRIDS)
            row = {**key, "aiq": t.aiq, "aiq_std": t.aiq_std, "max_perf": t.max_perf, "fit_seconds": t.fit_seconds,
                   "zero_router_aiq": t.zero_router_aiq, "reward_aiq": t.reward_aiq, "per_eval_aiq": t.per_eval_aiq}
            if log_path is not None:
                with log_path.open("a") as f:
                    f.write(json.dumps(row) + "\n")
        rows.append(row)
        print(f"{router_name} {params}: linear {row['aiq']:.4f}, "
              + ", ".join(f"{k} {v:.4f}" for k, v in row["reward_aiq"].items()), flush=True)
    return rows


def task_fallback(train: RoutingData, n_folds: int, seed: int) -> dict[str, float]:
    """Validation AIQ (linear reward) on the first of ``n_folds`` folds of ``train``, fitted on the others: the
    default router with the task given, inferred by its task classifier (``infer_task``) and absent (all-zero
    one-hot), the same with ``task_dropout=0.2``, and a router trained without tasks; plus the task classifier's
    accuracy on the fold (docs/router.md, "Task label")."""
    fit, val = next(fold_splits(train, n_folds, seed))
    predictions = {}
    accuracy = float("nan")
    for label, params in (("default", {}), ("task_dropout 0.2", {"task_dropout": 0.2}),
                          ("trained without tasks", {"use_task": False})):
        router = get_router("attention", **params).fit(fit, seed=seed)
        predictions[f"{label}, task given"] = (*router.predict(val.X, val.prompt_chars, val.eval_names), "linear")
        if params.get("use_task", True):
            predictions[f"{label}, task inferred"] = (*router.predict(val.X, val.prompt_chars), "linear")
            if label == "default":
                inferred = np.asarray(router.tasks)[router.infer_tasks(val.X)]
                accuracy = float((inferred == np.asarray(val.eval_names).astype(str)).mean())
            router.task_classifier = None
            predictions[f"{label}, no task"] = (*router.predict(val.X, val.prompt_chars), "linear")
    metrics = evaluate(predictions, val.quality, val.cost, val.eval_names, val.models).metrics
    return {**{name: float(metrics["routers"][name]["aiq"]) for name in predictions},
            "task classifier accuracy": accuracy, "zero router": float(metrics["routers"]["zero_router"]["aiq"])}


def shrinkage(train: RoutingData, n_folds: int, seed: int,
              alphas: Sequence[float] = (1.0, 0.75, 0.5, 0.25, 0.0)) -> dict[float, float]:
    """Cross-validated AIQ (linear reward) of the default attention router's quality predictions shrunk toward
    the per-(task, model) mean quality of the fold's training rows, ``α·q̂ + (1 − α)·q̄``: ``α = 1`` is the router,
    ``α = 0`` a router that knows only each task's mean per model (docs/router.md)."""
    scores: dict[float, list[float]] = {a: [] for a in alphas}
    for fit, val in fold_splits(train, n_folds, seed):
        q_hat, c_hat = get_router("attention").fit(fit, seed=seed).predict(val.X, val.prompt_chars, val.eval_names)
        labels, val_labels = np.asarray(fit.eval_names).astype(str), np.asarray(val.eval_names).astype(str)
        observed = ~np.isnan(fit.quality)
        score = np.nan_to_num(fit.quality, nan=0.0)
        means = {t: score[labels == t].sum(0) / np.maximum(observed[labels == t].sum(0), 1) for t in np.unique(labels)}
        q_bar = np.stack([means.get(t, score.sum(0) / np.maximum(observed.sum(0), 1)) for t in val_labels])
        runs = {f"alpha={a:g}": (a * q_hat + (1.0 - a) * q_bar, c_hat, "linear") for a in alphas}
        metrics = evaluate(runs, val.quality, val.cost, val.eval_names, val.models).metrics
        for a in alphas:
            scores[a].append(float(metrics["routers"][f"alpha={a:g}"]["aiq"]))
    return {a: float(np.mean(v)) for a, v in scores.items()}


def knn_blend(train: RoutingData, n_folds: int, seed: int, k: int = 40,
              weights: Sequence[float] = (1.0, 0.75, 0.5, 0.25, 0.0)) -> dict[str, dict[float, float]]:
    """Cross-validated AIQ of the default attention router's predictions blended with a ``knn{k}`` router's
    fitted on the same fold, ``w·attention + (1 − w)·knn``: quality only, and quality and cost together;
    each scored with the linear reward and the default exponential one. ``w = 1`` is the router alone, ``w = 0``
    the kNN alone (docs/router.md)."""
    kinds = ("quality", "quality+cost")
    rewards = {"linear": "linear", "exponential": get_reward("exponential")}
    scores: dict[str, dict[float, list[float]]] = {f"{kind} {r}": {w: [] for w in weights}
                                                   for kind in kinds for r in rewards}
    for fit, val in fold_splits(train, n_folds, seed):
        args = (val.X, val.prompt_chars, val.eval_names)
        q_att, c_att = get_router("attention").fit(fit, seed=seed).predict(*args)
        q_knn, c_knn = get_router(f"knn{k}").fit(fit, seed=seed).predict(*args)
        runs = {}
        for w in weights:
            q = w * q_att + (1.0 - w) * q_knn
            for kind, c in (("quality", c_att), ("quality+cost", w * c_att + (1.0 - w) * c_knn)):
                for name, reward in rewards.items():
                    runs[f"{kind} {name} {w:g}"] = (q, c, reward)
        metrics = evaluate(runs, val.quality, val.cost, val.eval_names, val.models).metrics
        for key in scores:
            for w in weights:
                scores[key][w].append(float(metrics["routers"][f"{key} {w:g}"]["aiq"]))
    return {key: {w: float(np.mean(v)) for w, v in by.items()} for key, by in scores.items()}


#: (members, folds) of the calibration's cross-fitted attention routers compared by ``--calibration``.
CALIBRATION_VARIANTS: tuple[tuple[int, int], ...] = ((5, 10), (1, 10), (2, 10), (1, 5), (3, 5), (5, 5))


def calibration_variants(train: RoutingData, test: RoutingData, seed: int,
                         variants: Sequence[tuple[int, int]] = CALIBRATION_VARIANTS,
                         targets: Sequence[float] = (1.0, 0.95)) -> list[dict[str, Any]]:
    """Per (members, folds) and target: seconds of ``router.policy.calibrate`` (folds on the cores, as the nightly
    fits them), the choice's calibrated (out-of-fold, train) quality and cost ratios, and the same choice applied to
    the default attention router's predictions on ``test`` (``policy.split_figures``; reported, never chosen on)."""
    from router import policy
    from router.pipeline import predict

    final = get_router("attention").fit(train, seed=seed)
    q_test, c_test = predict(final, test)
    rows = []
    for members, folds in variants:
        start = time.perf_counter()
        cal = policy.calibrate(lambda members=members: get_router("attention", n_members=members), train, "linear",
                               folds=folds, seed=seed, parallel=True)
        seconds = time.perf_counter() - start
        for target in targets:
            choice = cal.pick(target)
            on_test = policy.split_figures(choice, q_test, c_test, test)
            rows.append({"members": members, "folds": folds, "seconds": round(seconds, 1), "target": target,
                         "train_quality": choice.quality_ratio, "train_cost": choice.cost_ratio,
                         "test_quality": on_test["quality_ratio"], "test_cost": on_test["cost_ratio"]})
            print(f"{members} × {folds}: {seconds:.1f} s, target {target:g}: train {choice.quality_ratio:.4f} / "
                  f"{choice.cost_ratio:.3f}, test {on_test['quality_ratio']:.4f} / {on_test['cost_ratio']:.3f}",
                  flush=True)
    return rows


def carry_variants(train: RoutingData, test: RoutingData, seed: int, shares: Sequence[float] = (0.1, 0.2),
                   targets: Sequence[float] = (1.0, 0.95)) -> list[dict[str, Any]]:
    """What carrying a calibration forward (``router.policy.out_of_fold`` with an earlier calibration's
    predictions, the nightly's retrain) picks, against a full cross-fit on the same rows: per share ``s`` of the
    train rows held back as "tonight's new rows" (seeded), a full calibration of the other rows, then the carried
    one of all rows (timed); the default five-member router and ten folds throughout. Train side = the choice's
    out-of-fold quality and cost ratios; test side = that choice on the final router's test predictions."""
    from dataclasses import replace

    from router import policy
    from router.pipeline import predict

    train = replace(train, prompt_ids=[f"{i:032x}" for i in range(train.n)])  # the store's keys, stand-ins

    def make():
        return get_router("attention")

    q_test, c_test = predict(get_router("attention").fit(train, seed=seed), test)
    runs: list[tuple[str, Any, float]] = []
    start = time.perf_counter()
    runs.append(("full cross-fit", policy.out_of_fold(make, train, folds=policy.DEFAULT_FOLDS, seed=seed,
                                                      parallel=True), time.perf_counter() - start))
    rng = np.random.default_rng(seed)
    for share in shares:
        new = rng.permutation(train.n)[: int(round(share * train.n))]
        earlier, _ = policy.out_of_fold(make, train.subset(np.setdiff1d(np.arange(train.n), new)),
                                        folds=policy.DEFAULT_FOLDS, seed=seed, parallel=True)
        start = time.perf_counter()
        runs.append((f"carried, {share:.0%} new", policy.out_of_fold(make, train, folds=policy.DEFAULT_FOLDS,
                                                                     seed=seed, carried=earlier, max_added=1.0),
                     time.perf_counter() - start))
    rows = []
    for label, (oof, dense), seconds in runs:
        cal = policy.calibration_curve(oof.q_hat, oof.c_hat, train.quality[dense], train.cost[dense],
                                       list(train.models), "linear", folds=policy.DEFAULT_FOLDS)
        for target in targets:
            choice = cal.pick(target)
            on_test = policy.split_figures(choice, q_test, c_test, test)
            rows.append({"run": label, "seconds": round(seconds, 1), "carried": oof.carried, "target": target,
                         "train_quality": choice.quality_ratio, "train_cost": choice.cost_ratio,
                         "test_quality": on_test["quality_ratio"], "test_cost": on_test["cost_ratio"]})
            print(f"{label}: {seconds:.1f} s ({oof.carried} rows carried), target {target:g}: train "
                  f"{choice.quality_ratio:.4f} / {choice.cost_ratio:.3f}, test {on_test['quality_ratio']:.4f} / "
                  f"{on_test['cost_ratio']:.3f}", flush=True)
    return rows


def _variants(text: str) -> tuple[tuple[int, int], ...]:
    """``5x10,5x5`` as ((5, 10), (5, 5)): members × folds of ``--variants``."""
    try:
        return tuple((int(m), int(f)) for m, f in (item.lower().split("x") for item in text.split(",")))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected MEMBERSxFOLDS[,MEMBERSxFOLDS...], got {text!r}") from exc


def print_quality_table(rows: Sequence[Mapping[str, Any]], n_folds: int) -> None:
    """The markdown table of :func:`quality_search` (docs/router.md)."""
    print(f"\nzero router (hull of single models), mean validation AIQ: {rows[0]['zero_router_aiq']:.4f}\n")
    print(f"| router: change to QUALITY_BASE | linear AIQ (± std over {n_folds} folds) | "
          + " | ".join(f"exponential, τ {k.split('_')[1]}/decade" for k in TAU_GRIDS) + " | val max perf | fit s |")
    print("|---|---|" + "---|" * len(TAU_GRIDS) + "---|---|")
    for r in rows:
        change = {k: v for k, v in r["params"].items() if QUALITY_BASE.get(k, object()) != v}
        label = r["router"] if r["router"] != "attention" else f"attention: `{change or 'base'}`"
        cells = " | ".join(f"{r['reward_aiq'][k]:.4f}" for k in TAU_GRIDS)
        print(f"| {label} | {r['aiq']:.4f} ± {r['aiq_std']:.4f} | {cells} | {r['max_perf']:.4f} "
              f"| {r['fit_seconds']:.1f} |")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> list[Trial] | list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("npz", type=Path, help="RoutingData .npz (X, Q, C, chars, models, split, eval_name)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds of the train split")
    parser.add_argument("--grid", choices=("subset", "quality"), default="subset",
                        help="subset: DEFAULT_GRID; quality: QUALITY_GRID, knn40 and the τ grids")
    parser.add_argument("--log", type=Path, help="with --grid quality: JSON lines of finished configurations")
    parser.add_argument("--fallback", action="store_true", help="instead: the attention router with and without "
                        "the task at prediction time, on the first fold")
    parser.add_argument("--shrinkage", action="store_true", help="instead: quality predictions shrunk toward "
                        "per-(task, model) training means, cross-validated")
    parser.add_argument("--blend", action="store_true", help="instead: the attention router's predictions "
                        "blended with knn40's, cross-validated")
    parser.add_argument("--calibration", action="store_true", help="instead: the quality-target calibration per "
                        "ensemble size and folds (CALIBRATION_VARIANTS), train side and test side")
    parser.add_argument("--carry", action="store_true", help="instead: the calibration carried forward from one "
                        "of 90%% and of 80%% of the train rows vs a full cross-fit (carry_variants)")
    parser.add_argument("--variants", type=_variants, default=CALIBRATION_VARIANTS,
                        help="with --calibration: members x folds to compare, e.g. 5x10,5x5 (default: all of "
                        "CALIBRATION_VARIANTS)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    train, test = load_npz(args.npz)
    if args.carry:
        return carry_variants(train, test, args.seed)
    if args.calibration:
        return calibration_variants(train, test, args.seed, args.variants)
    if args.shrinkage:
        for alpha, value in shrinkage(train, args.folds, args.seed).items():
            print(f"alpha {alpha:g}: {value:.4f}")
        return []
    if args.blend:
        for key, by in knn_blend(train, args.folds, args.seed).items():
            print(f"{key}: " + ", ".join(f"w {w:g} {value:.4f}" for w, value in by.items()))
        return []
    if args.fallback:
        for name, value in task_fallback(train, args.folds, args.seed).items():
            print(f"{name}: {value:.4f}")
        return []
    if args.grid == "quality":
        rows = quality_search(train, args.folds, args.seed, args.log)
        print_quality_table(rows, args.folds)
        return rows
    trials = tune(train, n_folds=args.folds, seed=args.seed)
    evals = sorted(trials[0].per_eval_aiq)
    print(f"zero router (hull of single models), mean validation AIQ: {trials[0].zero_router_aiq:.4f}\n")
    header = ["change to GRID_BASE", f"val AIQ (± std over {args.folds} folds)", *evals, "val max perf", "fit s"]
    print("| " + " | ".join(header) + " |")
    print("|---|---|" + "---|" * len(evals) + "---|---|")
    for t in trials:
        cells = " | ".join(f"{t.per_eval_aiq[e]:.4f}" for e in evals)
        change = {k: v for k, v in t.params.items() if GRID_BASE.get(k, object()) != v}
        print(f"| `{change or 'base'}` | {t.aiq:.4f} ± {t.aiq_std:.4f} | {cells} | {t.max_perf:.4f} "
              f"| {t.fit_seconds:.1f} |")  # fmt: skip
    return trials


if __name__ == "__main__":
    main()
