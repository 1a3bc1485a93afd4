"""The onboarding table of ``docs/router.md``: a held-out model onboarded from logged outcomes vs a full retrain.

Usage::

    python -m bench.onboarding                       # builds the embedded subset first (a few minutes)
    python -m bench.onboarding /tmp/rb/subset.npz    # an .npz written by ``python -m bench.subset``

On the shipped RouterBench subset, for each held-out model (a strong, a cheap and a middle one): the attention
router is fitted on the train split without that model's column ("without"); the model is then onboarded
(``router.onboarding.onboard``) from 100, 300 and 1,000 of its train-split outcomes (a seeded sample of the
train rows; the row is fitted on all of them: the nightly would hold a slice out for its gate); and the full
retrain is the router fitted on every column. Everything is evaluated on the full test split (all models) with
RouterBench's protocol (``router.evaluation``, linear reward; AIQ = mean over eval sets). The "without" router
cannot choose the held-out model (its column gets quality 0 and an unaffordable cost). Seed 42 throughout.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from bench.tuning import load_npz
from router.evaluation import evaluate
from router.onboarding import Outcomes, onboard
from router.routers.attention import AttentionRouter
from router.routers.base import RoutingData

#: Held-out models: role -> name (the subset's strongest model, its cheapest, and one in the middle).
HELD_OUT = {"strong": "gpt-4-1106-preview", "cheap": "mistralai/mistral-7b-chat", "middle": "gpt-3.5-turbo-1106"}
SIZES = (100, 300, 1000)
UNREACHABLE_COST = 1e6


def aiq(q_hat: np.ndarray, c_hat: np.ndarray, test: RoutingData) -> float:
    result = evaluate({"r": (q_hat, c_hat, "linear")}, test.quality, test.cost, test.eval_names, test.models)
    return float(result.metrics["routers"]["r"]["aiq"])


def in_test_order(router: AttentionRouter, test: RoutingData) -> tuple[np.ndarray, np.ndarray]:
    """Predictions on ``test`` in its column order; a model the router lacks is never worth choosing."""
    q, c = router.predict(test.X, test.prompt_chars)
    q_out = np.zeros((test.n, len(test.models)))
    c_out = np.full((test.n, len(test.models)), UNREACHABLE_COST)
    for j, name in enumerate(test.models):
        if name in router.models:
            k = router.models.index(name)
            q_out[:, j], c_out[:, j] = q[:, k], c[:, k]
    return q_out, c_out


def without(data: RoutingData, model: str) -> RoutingData:
    keep = [j for j, name in enumerate(data.models) if name != model]
    return RoutingData(data.X, data.quality[:, keep], data.cost[:, keep], data.prompt_chars,
                       [data.models[j] for j in keep], data.eval_names)


def logged_outcomes(train: RoutingData, model: str, n: int, seed: int) -> Outcomes:
    """``n`` of ``model``'s train-split outcomes, a seeded sample of the rows where it was scored."""
    j = train.models.index(model)
    rows = np.flatnonzero(~np.isnan(train.quality[:, j]))
    if n > rows.size:
        raise ValueError(f"{model} has {rows.size} train outcomes, {n} asked")
    rows = np.sort(np.random.default_rng(seed).choice(rows, size=n, replace=False))
    return Outcomes(train.X[rows], train.prompt_chars[rows], train.quality[rows, j], train.cost[rows, j])


def run(train: RoutingData, test: RoutingData, held_out: dict[str, str], sizes: Sequence[int], seed: int) -> list[str]:
    start = time.perf_counter()
    full = AttentionRouter().fit(train, seed=seed)
    full_seconds = time.perf_counter() - start
    full_aiq = aiq(*in_test_order(full, test), test)
    lines = ["| held-out model | router | outcomes of the model | test AIQ | / full retrain | fit s |",
             "|---|---|---|---|---|---|"]
    for role, model in held_out.items():
        start = time.perf_counter()
        base = AttentionRouter().fit(without(train, model), seed=seed)
        base_seconds = time.perf_counter() - start
        base_aiq = aiq(*in_test_order(base, test), test)
        label = f"{model} ({role})"
        lines.append(f"| {label} | without it | 0 | {base_aiq:.4f} | {base_aiq / full_aiq:.4f} | {base_seconds:.0f} |")
        for n in sizes:
            done = onboard(base, model, logged_outcomes(train, model, n, seed))
            value = aiq(*in_test_order(done.router, test), test)
            lines.append(f"| {label} | onboarded | {n} | {value:.4f} | {value / full_aiq:.4f} | {done.seconds:.1f} |")
            print(lines[-1], flush=True)
        n_all = int((~np.isnan(train.quality[:, train.models.index(model)])).sum())
        lines.append(f"| {label} | full retrain | {n_all} | {full_aiq:.4f} | 1.0000 | {full_seconds:.0f} |")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("npz", type=Path, nargs="?", help="embedded subset (default: build it now)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="onboarding-") as tmp:
        npz = args.npz
        if npz is None:
            from bench.subset import build

            npz = Path(tmp) / "subset.npz"
            build(npz, Path(tmp) / "home")
        train, test = load_npz(npz)
    print(f"{train.n} train / {test.n} test prompts, {len(train.models)} models, torch threads {args.threads}")
    missing = [m for m in HELD_OUT.values() if m not in train.models]
    if missing:
        raise SystemExit(f"held-out models {missing} are not in the data ({train.models})")
    print("\n".join(run(train, test, HELD_OUT, SIZES, args.seed)))


if __name__ == "__main__":
    main()
