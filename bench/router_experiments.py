"""Every number of ``docs/router.md``: test AIQ / max perf per router, fit times, and the full-size timing.

Usage::

    python -m bench.router_experiments /tmp/rb/subset.npz --threads 2            # test table
    python -m bench.router_experiments /tmp/rb/subset.npz --threads 2 --scale 36000   # + s/epoch at 36k prompts
    python -m bench.tuning /tmp/rb/subset.npz --threads 2                        # validation grid (train only)

The ``.npz`` holds ``X`` (n, d) embeddings, ``Q``/``C`` (n, m) true scores/costs, ``chars``, ``models``,
``split`` ("train"/"test") and ``eval_name`` (see ``bench.tuning.load_npz``). Routers are fitted on the train
rows with their registered defaults and seed 42, and evaluated on the test rows with RouterBench's protocol
(``router.evaluation``, linear reward).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from router.evaluation import evaluate
from router.routers import ROUTERS, get_router
from router.routers.base import RoutingData
from bench.tuning import load_npz

BASELINES = ("knn5", "knn10", "knn40", "mlp")


def synthetic_scale(train: RoutingData, n: int, seed: int = 0) -> RoutingData:
    """``n`` rows made by tiling ``train`` with small Gaussian noise on the embeddings (for timing only)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, train.n, size=n)
    X = train.X[idx] + rng.normal(scale=0.01, size=(n, train.X.shape[1])).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return RoutingData(X, train.quality[idx], train.cost[idx], train.prompt_chars[idx], list(train.models),
                       train.eval_names[idx])  # fmt: skip


def time_attention(train: RoutingData, n: int, epochs: int = 2) -> tuple[float, float]:
    """``(seconds per epoch, estimated seconds for a default fit)`` of ``attention`` on ``n`` synthetic rows."""
    data = synthetic_scale(train, n)
    router = get_router("attention", val_fraction=0.0, max_epochs=epochs, n_members=1)
    start = time.perf_counter()
    router.fit(data)
    per_epoch = (time.perf_counter() - start) / epochs
    defaults = get_router("attention").config
    return per_epoch, per_epoch * defaults.max_epochs * defaults.n_members


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("npz", type=Path)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--routers", nargs="*", default=sorted(ROUTERS), help="registered router names")
    parser.add_argument("--no-task", action="store_true", help="skip the attention variant without the task label")
    parser.add_argument("--scale", type=int, default=0, help="also time attention on this many synthetic rows")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    train, test = load_npz(args.npz)
    print(f"{args.npz}: {train.n} train / {test.n} test prompts, {len(train.models)} models, torch threads {args.threads}")

    variants: list[tuple[str, str, dict[str, object]]] = [(name, name, {}) for name in args.routers]
    if "attention" in args.routers and not args.no_task:
        variants.append(("attention-no-task", "attention", {"use_task": False}))
    predictions: dict[str, tuple[np.ndarray, np.ndarray, str]] = {}
    fit_seconds: dict[str, float] = {}
    for label, name, params in variants:
        start = time.perf_counter()
        router = get_router(name, **params).fit(train, seed=args.seed)
        fit_seconds[label] = time.perf_counter() - start
        q_hat, c_hat = router.predict(test.X, test.prompt_chars, test.eval_names)
        predictions[label] = (q_hat, c_hat, "linear")

    result = evaluate(predictions, test.quality, test.cost, test.eval_names, test.models,
                      dataset=str(args.npz), n_train=train.n)  # fmt: skip
    m = result.metrics
    evals = list(result.eval_names)
    print("\n| router | test AIQ | " + " | ".join(f"AIQ {e}" for e in evals) + " | max perf | fit s |")
    print("|---|---|" + "---|" * len(evals) + "---|---|")
    for name in result.router_names:
        row = m["routers"][name]
        cells = " | ".join(f"{m['per_eval'][e][name]['aiq']:.4f}" for e in evals)
        seconds = f"{fit_seconds[name]:.1f}" if name in fit_seconds else "-"
        print(f"| {name} | {row['aiq']:.4f} | {cells} | {row['max_perf']:.4f} | {seconds} |")
    best = m["best_single_model"]
    print(f"\nbest single model: {best['name']} (mean perf {best['perf']:.4f}, mean cost ${best['cost']:.4f})")
    baselines = [b for b in BASELINES if b in m["routers"]]
    if "attention" in m["routers"] and baselines:
        top = max(baselines, key=lambda b: m["routers"][b]["aiq"])
        ratio = m["routers"]["attention"]["aiq"] / m["routers"][top]["aiq"]
        print(f"attention / best baseline ({top}) AIQ: {ratio:.4f}")

    if args.scale:
        per_epoch, total = time_attention(train, args.scale)
        print(f"\nattention on {args.scale} synthetic prompts x {len(train.models)} models: "
              f"{per_epoch:.2f} s/epoch; default config (max_epochs x n_members) <= {total:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
